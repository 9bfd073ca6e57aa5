// Observe against a real auraed on the host (mTLS over the unix socket, the real SDK): in-process with
// injected cores (event bus, log store, a cgroup tree in a temp dir), and as a spawned process for the
// daemon log wiring of main.ts. No root needed; priv tier because it binds sockets and spawns daemons.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuraeClient, AuraeApiError, type LogEntry, type ObservedEvent, connect } from '../../aer/sdk';
import { parseNodeConfigText } from '../config';
import { type RunningAuraed, startAuraed } from '../daemon';
import { type PreparedNode, type RunningTestAuraed, launchAuraed, prepareTestNode } from '../daemon/testing';
import { type LogFields, createJsonLogger, createLogRing } from '../log';
import { createEventBus } from './event-bus';
import { type FileLogStore, createFileLogStore } from './log-store';

/** Collect from an async iterable until `enough` says so (then abort) or it ends; fails after timeoutMs. */
async function collect<T>(start: (signal: AbortSignal) => AsyncIterable<T>, enough: (items: T[]) => boolean, timeoutMs = 10_000): Promise<T[]> {
  const abort = new AbortController();
  const items: T[] = [];
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    for await (const item of start(abort.signal)) {
      items.push(item);
      if (enough(items)) abort.abort();
    }
  } finally {
    clearTimeout(timer);
  }
  if (!enough(items) && abort.signal.aborted) throw new Error(`timed out after ${timeoutMs} ms with ${items.length} items: ${JSON.stringify(items).slice(0, 2000)}`);
  return items;
}

async function apiError(promise: Promise<unknown>): Promise<AuraeApiError> {
  const err = await promise.then(
    () => new Error('expected the call to fail'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuraeApiError);
  return err as AuraeApiError;
}

const waitUntil = async (check: () => boolean, what: string, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('ObserveService in-process (injected event bus, log store and cgroup tree)', () => {
  let node: PreparedNode;
  let auraed: RunningAuraed;
  let client: AuraeClient;
  const records: LogFields[] = [];
  const bus = createEventBus();
  let logs: FileLogStore;
  let cgroupRoot: string;

  beforeAll(async () => {
    node = await prepareTestNode({ nodeName: 'obs-1' });
    const config = parseNodeConfigText(readFileSync(node.configPath, 'utf8'), node.configPath);
    logs = createFileLogStore({ dir: join(config.state.dir, 'logs'), maxBytes: 4096, files: 3, log: createJsonLogger({ subsystem: 'test', write: () => {} }) });
    // A cell tree as cgroup2 would show it: cell "web" with executable "api" and child cell "web/cache".
    cgroupRoot = join(node.dir, 'cgroup', 'aurae');
    const group = (dir: string, files: Record<string, string>) => {
      mkdirSync(dir, { recursive: true });
      for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    };
    group(join(cgroupRoot, 'web'), { 'cpu.stat': 'usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 900\n', 'memory.current': '8192\n', 'memory.max': 'max\n', 'pids.current': '2\n', 'pids.max': '50\n' });
    group(join(cgroupRoot, 'web', 'exe.api'), { 'cpu.stat': 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n', 'memory.events': 'low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\noom_group_kill 0\n', 'io.stat': '254:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n' });
    group(join(cgroupRoot, 'web', 'cache'), { 'pids.current': '0\n' });

    const daemonLog = createLogRing();
    const log = createJsonLogger({ subsystem: 'auraed', write: daemonLog.tee((line) => void records.push(JSON.parse(line))) });
    auraed = await startAuraed({ config, log, init: null, daemonLog, observe: { events: bus, logs, cgroupRoot } });
    client = connect({ config: node.clientConfigPath, env: {} });
  }, 30_000);

  afterAll(async () => {
    client?.close();
    await auraed?.stop(2000);
    node?.cleanup();
  });

  it('GetEvents: history since a seq, then (follow) an event published into the bus while streaming', async () => {
    bus.publish({ kind: 'cell_allocated', cell: 'web' });
    const started = bus.publish({ kind: 'executable_started', cell: 'web', executable: 'api', pid: 4242 });
    const seen: ObservedEvent[] = [];
    const streaming = collect(
      (signal) => client.observe.events({ follow: true, sinceSeq: started.seq - 1, signal }),
      (items) => (seen.splice(0, seen.length, ...items), items.length >= 2),
    );
    await waitUntil(() => seen.length === 1, 'the history event');
    bus.publish({ kind: 'executable_exited', cell: 'web', executable: 'api', pid: 4242, code: null, signal: 'SIGTERM' });
    const events = await streaming;
    expect(events).toEqual([
      { kind: 'executable_started', seq: started.seq, time: started.time, cell: 'web', executable: 'api', pid: 4242 },
      expect.objectContaining({ kind: 'executable_exited', seq: started.seq + 1, code: null, signal: 'SIGTERM' }),
    ]);
    // Without follow: the held history, then the stream ends by itself.
    const all = await collect((signal) => client.observe.events({ signal }), () => false);
    expect(all.map((e) => e.kind)).toEqual(['cell_allocated', 'executable_started', 'executable_exited']);
  });

  it('GetLogs: the tail across rotated files, then followed lines as the executable writes them', async () => {
    const sink = logs.sink('web', 'api');
    for (let i = 1; i <= 300; i++) sink.write(i % 10 ? 'stdout' : 'stderr', `line ${i}`);
    await logs.flush();
    const tail = await collect((signal) => client.observe.logs('web', 'api', { tail: 100, signal }), () => false);
    expect(tail.map((e) => e.line)).toEqual(Array.from({ length: 100 }, (_, i) => `line ${201 + i}`));
    expect(tail[99]).toEqual({ channel: 'stderr', time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), line: 'line 300' });

    const seen: LogEntry[] = [];
    const following = collect(
      (signal) => client.observe.logs('web', 'api', { tail: 1, follow: true, signal }),
      (items) => (seen.splice(0, seen.length, ...items), items.length >= 3),
    );
    await waitUntil(() => seen.length === 1, 'the tail line');
    sink.write('stdout', 'live 1');
    sink.write('stderr', 'live 2');
    expect((await following).map((e) => `${e.channel}:${e.line}`)).toEqual(['stderr:line 300', 'stdout:live 1', 'stderr:live 2']);
    await sink.close();
  });

  it('GetLogs and GetMetrics refuse bad names with INVALID_ARGUMENT naming the field; auraed keeps serving', async () => {
    const bad: Array<[string, string, string]> = [
      ['', 'api', 'cell: must not be empty'],
      ['../../etc', 'api', 'cell: "../../etc" is not a cell path'],
      ['web', 'Api', 'executable: "Api" is not an executable name'],
      ['wéb', 'api', 'cell: (3 characters, not printable ASCII)'],
      ['x'.repeat(10_000), 'api', 'cell: at most 255 characters (got 10000)'],
    ];
    for (const [cell, executable, message] of bad) {
      const err = await apiError(collect((signal) => client.observe.logs(cell, executable, { signal }), () => false));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.details).toContain(message);
    }
    const negative = await apiError(collect((signal) => client.observe.logs('web', 'api', { tail: -1, signal }), () => false));
    expect(negative).toMatchObject({ code: 'INVALID_ARGUMENT', details: expect.stringContaining('tail: must be between 0 and 100000') });
    expect(await apiError(client.observe.metrics('/web'))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await client.health.check()).toEqual({ status: 'SERVING' });
  });

  it('GetMetrics reads the cell tree: counters per cell and executable, NOT_FOUND for unknown cells', async () => {
    const all = await client.observe.metrics();
    expect(all.cells.map((r) => [r.cell, r.executable])).toEqual([
      ['web', null],
      ['web', 'api'],
      ['web/cache', null],
    ]);
    expect(all.cells[0]!.metrics).toEqual({ cpuUsageUsec: 2000, cpuUserUsec: 1500, cpuSystemUsec: 500, cpuNrPeriods: 10, cpuNrThrottled: 4, cpuThrottledUsec: 900, memoryCurrentBytes: 8192, pidsCurrent: 2, pidsMax: 50 });
    expect(all.cells[1]!.metrics).toEqual({ cpuUsageUsec: 1500, cpuUserUsec: 1000, cpuSystemUsec: 500, memoryOom: 1, memoryOomKill: 1, ioReadBytes: 100, ioWriteBytes: 200, ioReadIos: 1, ioWriteIos: 2 });
    expect(Math.abs(all.timestamp - Date.now())).toBeLessThan(10_000);
    expect((await client.observe.metrics('web/cache')).cells).toHaveLength(1);
    expect(await apiError(client.observe.metrics('nope'))).toMatchObject({ code: 'NOT_FOUND', details: expect.stringContaining('cell "nope" not found') });
  });

  it('GetAuraeDaemonLogStream shows the log lines of a request made just before', async () => {
    await apiError(client.node.shutdown({ reason: 'observe test' })); // not under init: FAILED_PRECONDITION, but logged
    const lines = await collect((signal) => client.observe.daemonLogs({ tail: 50, signal }), () => false);
    const parsed = lines.map((l) => JSON.parse(l.line) as LogFields);
    expect(lines.every((l) => l.channel === 'auraed')).toBe(true);
    expect(parsed).toContainEqual(expect.objectContaining({ msg: 'rpc', method: 'aurae.node.v0.NodeService/Shutdown', caller: 'admin' }));
    expect(records).toContainEqual(expect.objectContaining({ msg: 'rpc', method: 'aurae.node.v0.NodeService/Shutdown' })); // the tee kept stdout's copy
  });

  // Last: it stops auraed.
  it('open follow streams end cleanly (OK) when auraed stops, and the stop stays graceful', async () => {
    const ended: string[] = [];
    const follow = <T>(name: string, it: AsyncIterable<T>) =>
      (async () => {
        for await (const _ of it) {
          // draining
        }
        ended.push(name);
      })();
    const streams = [
      follow('logs', client.observe.logs('web', 'api', { tail: 0, follow: true })),
      follow('events', client.observe.events({ follow: true })),
      follow('daemon', client.observe.daemonLogs({ tail: 0, follow: true })),
    ];
    await new Promise((r) => setTimeout(r, 300)); // the calls reach the server
    const how = await auraed.stop(5000);
    await Promise.all(streams);
    expect(how).toBe('graceful');
    expect(ended.sort()).toEqual(['daemon', 'events', 'logs']);
  });
});

describe('auraed as a process: its own log over GetAuraeDaemonLogStream', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let client: AuraeClient;

  beforeAll(async () => {
    node = await prepareTestNode({ nodeName: 'obs-2' });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
    client = connect({ config: node.clientConfigPath, env: {} });
  }, 30_000);

  afterAll(async () => {
    client?.close();
    await auraed?.stop();
    node?.cleanup();
  });

  it('the ring holds startup lines; a follower sees the log line of a request made while it streams', async () => {
    const startup = await collect((signal) => client.observe.daemonLogs({ signal }), () => false);
    expect(startup.map((l) => (JSON.parse(l.line) as LogFields).msg)).toContain('ready');

    const seen: LogEntry[] = [];
    const following = collect(
      (signal) => client.observe.daemonLogs({ tail: 0, follow: true, signal }),
      (items) => (seen.splice(0, seen.length, ...items), items.some((l) => l.line.includes('NodeService/Reboot'))),
    );
    await new Promise((r) => setTimeout(r, 300)); // the follower is registered before the request
    await apiError(client.node.reboot({ reason: 'followed' }));
    const lines = (await following).map((l) => JSON.parse(l.line) as LogFields);
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'rpc', method: 'aurae.node.v0.NodeService/Reboot', caller: 'admin' }));
    // The same line went to stdout too (what init relays to the console).
    await expect.poll(() => auraed.logs, { timeout: 10_000 }).toContainEqual(expect.objectContaining({ msg: 'rpc', method: 'aurae.node.v0.NodeService/Reboot' }));
  });
});
