import { describe, expect, it } from 'vitest';
import { bytes, cellSpecFromOptions, executableSpecFromOptions, formatCells, intIn, isolation } from './cells';

describe('aer cell options', () => {
  it('parses sizes, ranges and namespaces with clear errors', () => {
    expect(bytes('64M')).toBe(64 * 1024 * 1024);
    expect(bytes('1g')).toBe(1024 ** 3);
    expect(bytes('4096')).toBe(4096);
    expect(() => bytes('-1')).toThrow(/expected bytes/);
    expect(intIn(1, 10)('10')).toBe(10);
    expect(() => intIn(1, 10)('11')).toThrow(/from 1 to 10/);
    expect(isolation('pid,mount')).toEqual({ pid: true, mount: true });
    expect(() => isolation('pid,time')).toThrow(/unknown namespace "time"/);
  });

  it('builds specs with only what was given', () => {
    expect(cellSpecFromOptions('web', { memoryMax: 1024, pidsMax: 5 })).toEqual({ name: 'web', memory: { max: 1024 }, pids: { max: 5 } });
    expect(executableSpecFromOptions('hog', ['/bin/sleep', '1'], { restart: 'always' })).toEqual({ name: 'hog', args: ['/bin/sleep', '1'], restart: { mode: 'always' } });
    expect(executableSpecFromOptions('sh', [], { shell: 'echo hi', restart: 'never', env: { A: '1' } })).toMatchObject({ command: 'echo hi', env: { A: '1' } });
    expect(() => executableSpecFromOptions('x', [], { restart: 'never' })).toThrow(/missing the program/);
    expect(() => executableSpecFromOptions('x', ['a'], { shell: 'b', restart: 'never' })).toThrow(/not both/);
  });

  it('prints the tree', () => {
    const text = formatCells([
      {
        name: 'web',
        spec: { name: 'web' },
        state: 'allocated',
        memoryCurrentBytes: 2 * 1024 * 1024,
        pidsCurrent: 1,
        cpuUsageUsec: 1_500_000,
        executables: [{ name: 'hog', state: 'failed', pid: 0, restarts: 2, desiredRunning: true, lastExit: { code: null, signal: 'SIGKILL', oomKilled: true, at: 0 }, spec: { name: 'hog' } }],
        children: [{ name: 'web/cache', spec: { name: 'web/cache' }, state: 'allocated', memoryCurrentBytes: null, pidsCurrent: null, cpuUsageUsec: null, executables: [], children: [] }],
      },
    ]);
    expect(text).toBe(
      'web  [allocated]  mem 2.0M  pids 1  cpu 1.50s\n  - hog: failed restarts 2 last exit: SIGKILL (OOM-killed)\n  web/cache  [allocated]  mem -  pids -  cpu -',
    );
    expect(formatCells([])).toBe('no cells');
  });
});
