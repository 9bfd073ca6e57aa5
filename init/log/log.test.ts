import { describe, expect, it } from 'vitest';
import { bootClock, createConsoleLogger, formatLogLine } from './index';

describe('console log format', () => {
  it('right-aligns seconds with 3 decimals in 8 columns', () => {
    expect(formatLogLine(12.3456, 'init', 'hello')).toBe('[  12.346] init: hello');
    expect(formatLogLine(0, 'auraed', '{"a":1}')).toBe('[   0.000] auraed: {"a":1}');
    expect(formatLogLine(12345.6789, 'init', 'x')).toBe('[12345.679] init: x');
  });

  it('prefixes levels, splits multi-line messages and hides debug unless enabled', () => {
    const out: string[] = [];
    const write = (t: string) => out.push(t);
    const quiet = createConsoleLogger({ clock: () => 1.5, write });
    quiet.info('a');
    quiet.warn('b');
    quiet.error('c\nd');
    quiet.debug('hidden');
    quiet.relay('auraed', 'line');
    quiet.raw('AURAE_READY {}');
    expect(out.join('')).toBe(
      [
        '[   1.500] init: a',
        '[   1.500] init: warning: b',
        '[   1.500] init: error: c',
        '[   1.500] init: d',
        '[   1.500] auraed: line',
        'AURAE_READY {}',
        '',
      ].join('\n'),
    );
    const loud = createConsoleLogger({ clock: () => 0, write, debug: true });
    loud.debug('shown');
    expect(out.at(-1)).toBe('[   0.000] init: debug: shown\n');
  });

  it('never throws when the console write fails', () => {
    const log = createConsoleLogger({ clock: () => 0, write: () => { throw new Error('EIO'); } });
    expect(() => log.info('x')).not.toThrow();
  });
});

describe('bootClock', () => {
  it('starts from /proc/uptime once it is readable', () => {
    let mounted = false;
    let reads = 0;
    const clock = bootClock(() => {
      reads++;
      if (!mounted) throw new Error('ENOENT');
      return '100.25 80.00\n';
    });
    expect(clock()).toBeLessThan(100); // process.uptime() fallback
    mounted = true;
    expect(clock()).toBeGreaterThanOrEqual(100.25);
    expect(clock()).toBeLessThan(101);
    expect(reads).toBe(2);
  });
});
