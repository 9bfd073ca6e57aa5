import { describe, expect, it } from 'vitest';
import type { AuraeClient, LogEntry, LogStreamOptions, MetricsSnapshot, ObservedEvent } from '../sdk';
import { formatBytes, formatDaemonLine, formatEvent, formatTop, topRows } from './observe-format';
import { runAer } from './program';

function iterable<T>(items: T[]): AsyncIterable<T> {
  return {
    async *[Symbol.asyncIterator]() {
      yield* items;
    },
  };
}

const entry = (line: string, channel: LogEntry['channel'] = 'stdout'): LogEntry => ({ channel, time: '2026-01-01T00:00:00.000Z', line });

/** A fake client whose observe methods record their arguments and answer from fixtures. */
function fakeClient(snapshots: MetricsSnapshot[] = []) {
  const calls: unknown[] = [];
  let metricsCall = 0;
  const client = {
    config: { path: '/c.json', node: 'node-1', address: 'unix:///s', version: 1, ca: '', cert: '', key: '' },
    observe: {
      logs: (cell: string, executable: string, options: LogStreamOptions) => {
        calls.push(['logs', cell, executable, options]);
        return iterable([entry('hello'), entry('oops', 'stderr')]);
      },
      daemonLogs: (options: LogStreamOptions) => {
        calls.push(['daemonLogs', options]);
        return iterable([entry('{"time":"2026-01-01T00:00:00.000Z","level":"info","subsystem":"api","msg":"rpc","method":"a.B/C","caller":"admin"}', 'auraed')]);
      },
      events: (options: unknown) => {
        calls.push(['events', options]);
        const events: ObservedEvent[] = [
          { kind: 'executable_exited', seq: 4, time: '2026-01-01T00:00:00.000Z', cell: 'web', executable: 'api', pid: 9, code: null, signal: 'SIGKILL' },
        ];
        return iterable(events);
      },
      metrics: async (cell?: string) => {
        calls.push(['metrics', cell]);
        return snapshots[Math.min(metricsCall++, snapshots.length - 1)]!;
      },
    },
    close: () => {},
  } as unknown as AuraeClient;
  return { client, calls };
}

async function run(argv: string[], client: AuraeClient) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runAer(argv, { out: (t) => void out.push(t), err: (t) => void err.push(t), env: {}, connect: () => client });
  return { code, out, err };
}

describe('aer logs', () => {
  it('prints an executable\'s lines, passing -n and -f; -t adds time and stream; -o json one object per line', async () => {
    const { client, calls } = fakeClient();
    expect(await run(['logs', 'web', 'api', '-n', '5', '-f'], client)).toEqual({ code: 0, out: ['hello', 'oops'], err: [] });
    expect(calls[0]).toEqual(['logs', 'web', 'api', { tail: 5, follow: true }]);
    expect((await run(['logs', 'web', 'api', '-t'], client)).out).toEqual(['2026-01-01T00:00:00.000Z stdout hello', '2026-01-01T00:00:00.000Z stderr oops']);
    expect((await run(['-o', 'json', 'logs', 'web', 'api'], client)).out.map((l) => JSON.parse(l))).toEqual([entry('hello'), entry('oops', 'stderr')]);
    expect(calls[2]).toEqual(['logs', 'web', 'api', { tail: undefined, follow: false }]);
  });

  it('--daemon shows auraed\'s own log, readable', async () => {
    const { client, calls } = fakeClient();
    expect((await run(['logs', '--daemon', '-n', '10'], client)).out).toEqual(['2026-01-01T00:00:00.000Z INFO  api: rpc method=a.B/C caller=admin']);
    expect(calls[0]).toEqual(['daemonLogs', { tail: 10, follow: false }]);
  });

  it('usage errors exit 2: missing names, names with --daemon, a bad -n', async () => {
    const { client, calls } = fakeClient();
    expect(await run(['logs', 'web'], client)).toMatchObject({ code: 2, err: [expect.stringContaining('aer logs needs CELL and EXECUTABLE (or --daemon)'), expect.anything()] });
    expect(await run(['logs', '--daemon', 'web'], client)).toMatchObject({ code: 2, err: [expect.stringContaining('takes no CELL or EXECUTABLE'), expect.anything()] });
    expect((await run(['logs', 'web', 'api', '-n', '-1'], client)).code).toBe(2);
    expect((await run(['logs', 'web', 'api', '-n', 'lots'], client)).code).toBe(2);
    expect(calls).toEqual([]);
  });
});

describe('aer events', () => {
  it('prints events, passing --since, --cell and -f', async () => {
    const { client, calls } = fakeClient();
    expect((await run(['events', '-f', '--since', '3', '--cell', 'web'], client)).out).toEqual(['4 2026-01-01T00:00:00.000Z executable_exited web/api pid=9 signal=SIGKILL']);
    expect(calls[0]).toEqual(['events', { follow: true, sinceSeq: 3, cell: 'web' }]);
    expect(JSON.parse((await run(['events', '-o', 'json'], client)).out[0]!)).toMatchObject({ kind: 'executable_exited', seq: 4, signal: 'SIGKILL', code: null });
  });

  it('--vm filters on the node; --cell with --vm is a usage error that calls nothing', async () => {
    const { client, calls } = fakeClient();
    expect((await run(['events', '--vm', 'web'], client)).code).toBe(0);
    expect(calls[0]).toEqual(['events', { follow: false, vm: 'web' }]);
    const both = await run(['events', '--vm', 'web', '--cell', 'web'], client);
    expect(both.code).toBe(2);
    expect(both.err.join('\n')).toMatch(/--cell or --vm, not both/);
    expect(calls).toHaveLength(1);
  });
});

describe('aer top', () => {
  const snap = (timestamp: number, usage: number): MetricsSnapshot => ({
    timestamp,
    cells: [
      { cell: 'web', executable: null, metrics: { cpuUsageUsec: usage, memoryCurrentBytes: 3 * 1024 * 1024, memoryMaxBytes: 64 * 1024 * 1024, pidsCurrent: 3, pidsMax: 100, memoryOomKill: 0 } },
      { cell: 'web', executable: 'api', metrics: { cpuUsageUsec: usage / 2 } },
    ],
  });

  it('samples twice and shows CPU% over the interval; -o json carries cpuPercent', async () => {
    const { client, calls } = fakeClient([snap(1000, 1_000_000), snap(2000, 1_500_000)]);
    const text = await run(['top', 'web', '--interval', '1'], client);
    expect(text.code).toBe(0);
    expect(text.out[0]!.split('\n')).toEqual([
      'CELL  EXECUTABLE  CPU%  CPU TIME  MEMORY  PEAK  MEM MAX   PIDS  OOM KILLS  IO READ  IO WRITE  THROTTLED',
      'web   -           50.0     1.50s    3.0M     -      64M  3/100          0        -         -          -',
      'web   api         25.0     0.75s       -     -        -      -          -        -         -          -',
    ]);
    expect(calls).toEqual([['metrics', 'web'], ['metrics', 'web']]);
    const json = await run(['-o', 'json', 'top', '--interval', '0'], fakeClient([snap(1000, 10)]).client);
    expect(JSON.parse(json.out[0]!)).toEqual({ timestamp: 1000, cells: [expect.objectContaining({ cell: 'web', cpuPercent: null }), expect.objectContaining({ executable: 'api' })] });
  });

  it('-n prints that many tables', async () => {
    const { client } = fakeClient([snap(0, 0), snap(1000, 100_000), snap(2000, 300_000)]);
    const result = await run(['top', '--interval', '1', '-n', '2'], client);
    expect(result.out).toHaveLength(2);
    expect(result.out[1]).toContain('20.0');
  });
});

describe('observe formatting', () => {
  it('formatBytes', () => {
    expect([0, 1023, 1536, 10 * 1024 * 1024, 5 * 1024 ** 3].map(formatBytes)).toEqual(['0B', '1023B', '1.5K', '10M', '5.0G']);
  });

  it('formatDaemonLine keeps non-JSON lines as they are and quotes values with spaces', () => {
    expect(formatDaemonLine('plain text')).toBe('plain text');
    expect(formatDaemonLine('{"time":"t","level":"warn","subsystem":"x","msg":"m","why":"two words","n":1}')).toBe('t WARN  x: m why="two words" n=1');
  });

  it('formatEvent for every kind', () => {
    const t = { seq: 1, time: 'T', cell: 'c' };
    expect(formatEvent({ kind: 'cell_allocated', ...t })).toBe('1 T cell_allocated c');
    expect(formatEvent({ kind: 'executable_started', ...t, executable: 'x', pid: 5 })).toBe('1 T executable_started c/x pid=5');
    expect(formatEvent({ kind: 'executable_exited', ...t, executable: 'x', pid: 5, code: 0, signal: null })).toBe('1 T executable_exited c/x pid=5 code=0');
    expect(formatEvent({ kind: 'executable_restarted', ...t, executable: 'x', attempt: 2, delayMs: 200 })).toBe('1 T executable_restarted c/x attempt=2 after=200ms');
    expect(formatEvent({ kind: 'executable_oom_killed', ...t, executable: 'x', count: 1 })).toBe('1 T executable_oom_killed c/x count=1');
    expect(formatEvent({ kind: 'start_limit_hit', ...t, executable: 'x', starts: 5, intervalMs: 10000 })).toBe('1 T start_limit_hit c/x starts=5 within=10000ms');
    const v = { seq: 2, time: 'T', vm: 'web' };
    expect(formatEvent({ kind: 'vm_started', ...v, pid: 7, address: '127.0.0.1:4000' })).toBe('2 T vm_started vm:web pid=7 address=127.0.0.1:4000');
    expect(formatEvent({ kind: 'vm_exited', ...v, pid: 7, code: 0, signal: null, expected: true })).toBe('2 T vm_exited vm:web pid=7 code=0 stopped');
    expect(formatEvent({ kind: 'vm_exited', ...v, pid: 7, code: null, signal: 'SIGKILL', expected: false })).toBe('2 T vm_exited vm:web pid=7 signal=SIGKILL crashed');
    expect(formatEvent({ kind: 'vm_restarted', ...v, attempt: 1, delayMs: 1000 })).toBe('2 T vm_restarted vm:web attempt=1 after=1000ms');
    expect(formatEvent({ kind: 'vm_failed', ...v, reason: 'restart limit (5) reached' })).toBe('2 T vm_failed vm:web reason="restart limit (5) reached"');
    const p = { seq: 3, time: 'T', cell: 'web', pod: 'web', container: 'app' };
    expect(formatEvent({ kind: 'image_pulled', ...p, image: 'busybox', digest: 'sha256:ab', bytes: 1024 })).toBe('3 T image_pulled pod:web/app image=busybox digest=sha256:ab bytes=1024');
    expect(formatEvent({ kind: 'container_created', ...p, image: 'busybox', digest: 'sha256:ab' })).toBe('3 T container_created pod:web/app image=busybox digest=sha256:ab');
    expect(formatEvent({ kind: 'container_started', ...p, pid: 9 })).toBe('3 T container_started pod:web/app pid=9');
    expect(formatEvent({ kind: 'container_exited', ...p, pid: 9, code: 3, signal: null, oomKilled: false })).toBe('3 T container_exited pod:web/app pid=9 code=3');
    expect(formatEvent({ kind: 'container_exited', ...p, pid: 9, code: 137, signal: null, oomKilled: true })).toBe('3 T container_exited pod:web/app pid=9 code=137 oom-killed');
    expect(formatEvent({ kind: 'container_oom_killed', ...p, count: 2 })).toBe('3 T container_oom_killed pod:web/app count=2');
  });

  it('topRows: CPU% only where both samples have the row; no cells → a plain message', () => {
    const a: MetricsSnapshot = { timestamp: 0, cells: [{ cell: 'a', executable: null, metrics: { cpuUsageUsec: 0 } }] };
    const b: MetricsSnapshot = { timestamp: 500, cells: [{ cell: 'a', executable: null, metrics: { cpuUsageUsec: 250_000 } }, { cell: 'b', executable: null, metrics: {} }] };
    expect(topRows(b, a).map((r) => r.cpuPercent)).toEqual([50, null]);
    expect(formatTop([])).toBe('no cells');
  });
});
