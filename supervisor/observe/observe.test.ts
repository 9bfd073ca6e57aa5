import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, parseNodeConfig } from '../config';
import { silentLogger } from '../log';
import { createEventBus } from './event-bus';
import { createObserve } from './observe';

const scratch = mkdtempSync(join(tmpdir(), 'aurae-observe-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const base = { version: 1, node: { name: 'n' }, pki: { caCert: '/a', serverCert: '/b', serverKey: '/c' } };

describe('node config: state and observe', () => {
  it('defaults: state in /var/lib/aurae, 1 MiB × 3 log files, 1000 events', () => {
    const config = parseNodeConfig(base, 'test');
    expect(config.state).toEqual({ dir: '/var/lib/aurae' });
    expect(config.observe).toEqual({ logMaxBytes: 1024 * 1024, logFiles: 3, eventHistory: 1000 });
  });

  it('rejects out-of-range values and unknown keys, naming the field', () => {
    const bad = (observe: unknown, state: unknown = { dir: '/s' }) => {
      try {
        parseNodeConfig({ ...base, observe, state }, 'test');
      } catch (err) {
        return (err as ConfigError).problems;
      }
      throw new Error('expected a ConfigError');
    };
    expect(bad({ logMaxBytes: 100 })).toEqual([expect.stringMatching(/^observe\.logMaxBytes: /)]);
    expect(bad({ logFiles: 0 })).toEqual([expect.stringMatching(/^observe\.logFiles: /)]);
    expect(bad({ logFiles: 2.5 })).toEqual([expect.stringMatching(/^observe\.logFiles: /)]);
    expect(bad({ eventHistory: 1e9 })).toEqual([expect.stringMatching(/^observe\.eventHistory: /)]);
    expect(bad({ logLines: 5 })).toEqual([expect.stringMatching(/^observe: Unrecognized key: "logLines"/)]);
    expect(bad({}, { dir: 'relative' })).toEqual(['state.dir: expected an absolute path']);
  });
});

describe('createObserve', () => {
  it('keeps executables\' logs under <state.dir>/logs with the configured bounds, and uses injected cores', async () => {
    const config = parseNodeConfig({ ...base, state: { dir: scratch }, observe: { logMaxBytes: 4096, logFiles: 2 } }, 'test');
    const observe = createObserve({ config, log: silentLogger });
    const sink = observe.logs.sink('web', 'api');
    for (let i = 0; i < 200; i++) sink.write('stdout', `line ${i}`);
    await sink.close();
    await observe.close();
    expect(existsSync(join(scratch, 'logs', 'web', 'api.log'))).toBe(true);
    expect(existsSync(join(scratch, 'logs', 'web', 'api.log.1'))).toBe(true);
    expect(existsSync(join(scratch, 'logs', 'web', 'api.log.2'))).toBe(false);

    const events = createEventBus();
    expect(createObserve({ config, log: silentLogger, overrides: { events } }).events).toBe(events);
  });
});
