import { describe, expect, it } from 'vitest';
import { createJsonLogger } from './index';

describe('createJsonLogger', () => {
  it('writes one JSON object per line with time, level, subsystem, msg and fields; children rebind', () => {
    const lines: string[] = [];
    const log = createJsonLogger({ subsystem: 'auraed', write: (l) => void lines.push(l), clock: () => new Date(0), level: 'info' });
    log.debug('hidden');
    log.info('ready', { node: 'n1' });
    log.child({ subsystem: 'api', conn: 7 }).warn('slow', { ms: 12 });
    log.error('failed', { err: Object.assign(new Error('boom'), { code: 'EPERM' }) });
    expect(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
    const records = lines.map((l) => JSON.parse(l));
    expect(records[0]).toEqual({ time: '1970-01-01T00:00:00.000Z', level: 'info', subsystem: 'auraed', msg: 'ready', node: 'n1' });
    expect(records[1]).toEqual({ time: '1970-01-01T00:00:00.000Z', level: 'warn', subsystem: 'api', conn: 7, msg: 'slow', ms: 12 });
    expect(records[2].err).toMatchObject({ name: 'Error', message: 'boom', code: 'EPERM' });
    expect(records).toHaveLength(3);
  });
});
