import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ServerUnaryCall, type ServerWritableStream, status } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { EventKind, type GetMetricsResponse, type ObserveServiceServer } from '../gen/aurae/observe/v0/observe';
import { createLogRing, silentLogger } from '../log';
import { createEventBus } from './event-bus';
import { createFileLogStore } from './log-store';
import type { MetricsReader } from './metrics';
import { AuraeError } from '../errors';
import { createObserveService } from './observe-service';
import { StreamRegistry } from './streams';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from '../server/testing';

const scratch = mkdtempSync(join(tmpdir(), 'aurae-observe-svc-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;

const ctx = { log: silentLogger, admins: new Set(['admin']), authz: fakeAuthorizer(), parentIdentity: null, issuerOf: issuerByName() };
const auth = () => fakeAuthContext('viewer');
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** A server stream recording writes, end and error; `writable` false makes write() report a full buffer. */
function streamCall<Req>(request: Req) {
  const writes: unknown[] = [];
  const events: string[] = [];
  const state = { writable: true };
  const call = Object.assign(new EventEmitter(), {
    request,
    cancelled: false,
    getPeer: () => 'p',
    getAuthContext: auth,
    write: (m: unknown) => (writes.push(m), state.writable),
    end: () => void events.push('end'),
  });
  call.on('error', (e: { code: number; details: string }) => events.push(`error ${e.code} ${e.details}`));
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the request shape is the case under test
    call: call as unknown as ServerWritableStream<any, any>,
    writes,
    events,
    state,
    cancel: () => {
      call.cancelled = true;
      call.emit('cancelled');
    },
    drain: () => {
      state.writable = true;
      call.emit('drain');
    },
  };
}

function unaryCall<Req, Res>(handler: (call: ServerUnaryCall<Req, Res>, cb: (e: unknown, v?: Res | null) => void) => void, request: Req) {
  const call = Object.assign(new EventEmitter(), { request, getPeer: () => 'p', getAuthContext: auth }) as unknown as ServerUnaryCall<Req, Res>;
  return new Promise<{ error: unknown; value?: Res | null }>((resolve) => handler(call, (error, value) => resolve({ error, value })));
}

function setup(options: { maxQueued?: number; metrics?: MetricsReader } = {}) {
  const daemonLog = createLogRing({ clock: () => 1000 });
  const logs = createFileLogStore({ dir: join(scratch, `s${++dirs}`), log: silentLogger, clock: () => new Date('2026-01-01T00:00:00.000Z') });
  const events = createEventBus({ clock: () => new Date('2026-01-01T00:00:00.000Z') });
  const streams = new StreamRegistry();
  const metrics: MetricsReader = options.metrics ?? (async (cell) => ({ timestamp: 5, cells: [{ cell: cell ?? 'web', executable: null, metrics: { pidsCurrent: 2 } }] }));
  const svc: ObserveServiceServer = createObserveService(ctx, { daemonLog, logs, events, metrics, streams, maxQueued: options.maxQueued });
  return { svc, daemonLog, logs, events, streams };
}

const lineOf = (m: unknown) => (m as { item: { line: string } }).item.line;

describe('ObserveService request validation', () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['empty cell', { cell: '', executable: 'x' }, 'cell: must not be empty'],
    ['traversal', { cell: '../etc', executable: 'x' }, 'cell: "../etc" is not a cell path'],
    ['leading slash', { cell: '/web', executable: 'x' }, 'cell: "/web" is not a cell path'],
    ['uppercase', { cell: 'Web', executable: 'x' }, 'cell: "Web" is not a cell path'],
    ['unicode', { cell: 'wéb', executable: 'x' }, 'cell: (3 characters, not printable ASCII) is not a cell path'],
    ['too deep', { cell: 'a/b/c/d/e/f/g/h/i', executable: 'x' }, 'cell: at most 8 levels (got 9)'],
    ['huge', { cell: 'a'.repeat(300), executable: 'x' }, 'cell: at most 255 characters (got 300)'],
    ['label too long', { cell: 'a'.repeat(64), executable: 'x' }, `cell: "${'a'.repeat(64)}" is not a cell path`],
    ['bad executable', { cell: 'web', executable: 'a/b' }, 'executable: "a/b" is not an executable name'],
    ['empty executable', { cell: 'web', executable: '' }, 'executable: must not be empty'],
    ['negative tail', { cell: 'web', executable: 'x', tail: -1 }, 'tail: must be between 0 and 100000 lines (got -1)'],
    ['huge tail', { cell: 'web', executable: 'x', tail: 2 ** 31 - 1 }, 'tail: must be between 0 and 100000 lines'],
  ];
  it.each(cases)('GetLogs: %s → INVALID_ARGUMENT naming the field', async (_name, request, message) => {
    const { svc } = setup();
    const s = streamCall({ follow: false, ...request });
    svc.getLogs(s.call);
    await tick();
    expect(s.events).toEqual([expect.stringContaining(`error ${status.INVALID_ARGUMENT} ${message}`)]);
    expect(s.writes).toEqual([]);
  });

  it('GetEvents: negative since_seq and bad cell filters; GetMetrics: bad cell; daemon log: bad tail', async () => {
    const { svc } = setup();
    const e1 = streamCall({ follow: false, sinceSeq: -5, cell: '' });
    svc.getEvents(e1.call);
    const e2 = streamCall({ follow: false, sinceSeq: 0, cell: 'a//b' });
    svc.getEvents(e2.call);
    const d = streamCall({ follow: false, tail: -3 });
    svc.getAuraeDaemonLogStream(d.call);
    await tick();
    expect(e1.events).toEqual([`error ${status.INVALID_ARGUMENT} since_seq: -5 is out of range: allowed 0..9007199254740991 (0 or a sequence number seen before)`]);
    expect(e2.events).toEqual([expect.stringContaining(`error ${status.INVALID_ARGUMENT} cell: "a//b" is not a cell path`)]);
    expect(d.events).toEqual([expect.stringContaining(`error ${status.INVALID_ARGUMENT} tail: must be between 0`)]);
    const m = await unaryCall(svc.getMetrics, { cell: '..' });
    expect(m.error).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^cell: "\.\." is not a cell path/) });
  });
});

describe('GetLogs', () => {
  it('without follow: the tail, then the stream ends', async () => {
    const { svc, logs } = setup();
    const sink = logs.sink('web', 'api');
    for (let i = 1; i <= 5; i++) sink.write(i % 2 ? 'stdout' : 'stderr', `l${i}`);
    await sink.close();
    const s = streamCall({ cell: 'web', executable: 'api', tail: 2, follow: false });
    svc.getLogs(s.call);
    await tick(20);
    expect(s.writes).toEqual([
      { item: { channel: 'stderr', line: 'l4', timestamp: BigInt(Date.parse('2026-01-01T00:00:00.000Z')) } },
      { item: { channel: 'stdout', line: 'l5', timestamp: BigInt(Date.parse('2026-01-01T00:00:00.000Z')) } },
    ]);
    expect(s.events).toEqual(['end']);
  });

  it('with follow: the tail, then live lines, until the client cancels (no end, follower removed)', async () => {
    const { svc, logs, streams } = setup();
    const sink = logs.sink('web', 'api');
    sink.write('stdout', 'old');
    const s = streamCall({ cell: 'web', executable: 'api', follow: true });
    svc.getLogs(s.call);
    await tick(20);
    sink.write('stdout', 'new 1');
    sink.write('stderr', 'new 2');
    expect(s.writes.map(lineOf)).toEqual(['old', 'new 1', 'new 2']);
    expect(streams.size).toBe(1);
    s.cancel();
    sink.write('stdout', 'after cancel');
    await sink.close();
    expect(s.writes).toHaveLength(3);
    expect(s.events).toEqual([]);
    expect(streams.size).toBe(0);
  });

  it('shutdown ends follow streams with OK, and a stream opened after it ends at once after its backlog', async () => {
    const { svc, logs, streams } = setup();
    const sink = logs.sink('web', 'api');
    sink.write('stdout', 'x');
    const s = streamCall({ cell: 'web', executable: 'api', follow: true });
    svc.getLogs(s.call);
    await tick(20);
    streams.shutdown();
    expect(s.events).toEqual(['end']);
    const late = streamCall({ cell: 'web', executable: 'api', follow: true });
    svc.getLogs(late.call);
    await tick(20);
    expect(late.events).toEqual(['end']);
    await sink.close();
  });

  it('respects backpressure: waits for drain and keeps the order', async () => {
    const { svc, logs } = setup();
    const sink = logs.sink('web', 'api');
    for (let i = 1; i <= 3; i++) sink.write('stdout', `b${i}`);
    const s = streamCall({ cell: 'web', executable: 'api', follow: true });
    s.state.writable = false; // the first write fills the buffer
    svc.getLogs(s.call);
    await tick(20);
    sink.write('stdout', 'live');
    expect(s.writes.map(lineOf)).toEqual(['b1']);
    s.drain();
    expect(s.writes.map(lineOf)).toEqual(['b1', 'b2', 'b3', 'live']);
    s.cancel();
    await sink.close();
  });

  it('a follower that stops reading is cut with RESOURCE_EXHAUSTED instead of buffering without bound', async () => {
    const { svc, logs, streams } = setup({ maxQueued: 5 });
    const sink = logs.sink('web', 'api');
    const s = streamCall({ cell: 'web', executable: 'api', follow: true, tail: 0 });
    svc.getLogs(s.call);
    await tick(20);
    s.state.writable = false;
    for (let i = 0; i < 20; i++) sink.write('stdout', `${i}`);
    await tick();
    expect(s.events).toEqual([expect.stringMatching(new RegExp(`^error ${status.RESOURCE_EXHAUSTED} the client is not reading: more than 5 messages`))]);
    expect(streams.size).toBe(0);
    await sink.close();
  });
});

describe('GetEvents', () => {
  it('VM events: in the unfiltered stream, only their VM with vm=, never under a cell filter', async () => {
    const { svc, events } = setup();
    events.publish({ kind: 'vm_started', vm: 'web', pid: 77, address: '127.0.0.1:40001' });
    events.publish({ kind: 'cell_allocated', cell: 'web' });
    events.publish({ kind: 'vm_exited', vm: 'web', pid: 77, code: null, signal: 'SIGKILL', expected: false });
    events.publish({ kind: 'vm_failed', vm: 'db', reason: 'restart limit (5) reached' });
    const read = async (request: { cell?: string; vm?: string }) => {
      const s = streamCall({ follow: false, sinceSeq: 0, cell: '', vm: '', ...request });
      svc.getEvents(s.call);
      await tick();
      return s.writes.map((m) => (m as { event: Record<string, unknown> }).event);
    };
    expect((await read({})).map((e) => e.seq)).toEqual([1n, 2n, 3n, 4n]);
    const web = await read({ vm: 'web' });
    expect(web.map((e) => e.seq)).toEqual([1n, 3n]);
    expect(web[0]).toMatchObject({ kind: EventKind.EVENT_KIND_VM_STARTED, vm: 'web', cell: '', pid: 77, address: '127.0.0.1:40001' });
    // The crash: QEMU's signal and expected=false.
    expect(web[1]).toMatchObject({ kind: EventKind.EVENT_KIND_VM_EXITED, vm: 'web', pid: 77, signal: 'SIGKILL', expected: false });
    expect((await read({ cell: 'web' })).map((e) => e.seq)).toEqual([2n]);
    expect((await read({ vm: 'db' }))[0]).toMatchObject({ kind: EventKind.EVENT_KIND_VM_FAILED, reason: 'restart limit (5) reached' });
  });

  it('vm filter: one DNS label, and not together with cell', async () => {
    const { svc } = setup();
    const both = streamCall({ follow: false, sinceSeq: 0, cell: 'web', vm: 'web' });
    svc.getEvents(both.call);
    const bad = streamCall({ follow: false, sinceSeq: 0, cell: '', vm: 'a/b' });
    svc.getEvents(bad.call);
    await tick();
    expect(both.events).toEqual([expect.stringContaining(`error ${status.INVALID_ARGUMENT} cell and vm: give one of them`)]);
    expect(bad.events).toEqual([expect.stringContaining(`error ${status.INVALID_ARGUMENT} vm: "a/b" is not a VM name`)]);
  });

  it('history after since_seq, filtered by cell subtree, then live events', async () => {
    const { svc, events } = setup();
    events.publish({ kind: 'cell_allocated', cell: 'web' });
    events.publish({ kind: 'cell_allocated', cell: 'webby' });
    events.publish({ kind: 'executable_exited', cell: 'web/cache', executable: 'redis', pid: 9, code: null, signal: 'SIGKILL' });
    events.publish({ kind: 'executable_exited', cell: 'web', executable: 'api', pid: 8, code: 3, signal: null });
    const s = streamCall({ follow: true, sinceSeq: 1, cell: 'web' });
    svc.getEvents(s.call);
    await tick();
    events.publish({ kind: 'start_limit_hit', cell: 'web', executable: 'api', starts: 5, intervalMs: 10_000 });
    events.publish({ kind: 'cell_freed', cell: 'other' });
    s.cancel();
    const got = s.writes.map((m) => (m as { event: Record<string, unknown> }).event);
    expect(got.map((e) => e.seq)).toEqual([3n, 4n, 5n]);
    expect(got[0]).toEqual({
      seq: 3n,
      time: '2026-01-01T00:00:00.000Z',
      kind: EventKind.EVENT_KIND_EXECUTABLE_EXITED,
      cell: 'web/cache',
      executable: 'redis',
      pid: 9,
      signal: 'SIGKILL',
      attempt: 0,
      delayMs: 0,
      count: 0,
      starts: 0,
      intervalMs: 0,
      vm: '',
      address: '',
      expected: false,
      reason: '',
      pod: '',
      container: '',
      image: '',
      digest: '',
      bytes: 0n,
      oomKilled: false,
    });
    expect(got[1]).toMatchObject({ code: 3, pid: 8 });
    expect(got[1]).not.toHaveProperty('signal');
    expect(got[2]).toMatchObject({ kind: EventKind.EVENT_KIND_START_LIMIT_HIT, starts: 5, intervalMs: 10_000 });
  });

  it('without follow: the history, then end', async () => {
    const { svc, events } = setup();
    events.publish({ kind: 'executable_restarted', cell: 'a', executable: 'x', attempt: 2, delayMs: 400 });
    events.publish({ kind: 'executable_oom_killed', cell: 'a', executable: 'x', count: 1 });
    const s = streamCall({ follow: false, sinceSeq: 0, cell: '' });
    svc.getEvents(s.call);
    await tick();
    expect(s.writes).toMatchObject([
      { event: { kind: EventKind.EVENT_KIND_EXECUTABLE_RESTARTED, attempt: 2, delayMs: 400 } },
      { event: { kind: EventKind.EVENT_KIND_EXECUTABLE_OOM_KILLED, count: 1 } },
    ]);
    expect(s.events).toEqual(['end']);
  });
});

describe('GetAuraeDaemonLogStream', () => {
  it('the ring\'s tail, then lines as they are logged', async () => {
    const { svc, daemonLog } = setup();
    for (const l of ['a', 'b', 'c']) daemonLog.push(l);
    const s = streamCall({ tail: 2, follow: true });
    svc.getAuraeDaemonLogStream(s.call);
    await tick();
    daemonLog.push('d');
    s.cancel();
    expect(s.writes).toEqual(['b', 'c', 'd'].map((line) => ({ item: { channel: 'auraed', line, timestamp: 1000n } })));
  });
});

describe('GetMetrics', () => {
  it('passes the cell (null for all) to the reader and maps rows; reader errors keep their status', async () => {
    const seen: Array<string | null> = [];
    const { svc } = setup({
      metrics: async (cell) => {
        seen.push(cell);
        if (cell === 'gone') throw new AuraeError('NOT_FOUND', 'cell "gone" not found');
        return { timestamp: 7, cells: [{ cell: 'web', executable: null, metrics: { pidsCurrent: 2 } }, { cell: 'web', executable: 'api', metrics: {} }] };
      },
    });
    const all = await unaryCall(svc.getMetrics, { cell: '' });
    expect(all.value).toEqual({
      timestamp: 7n,
      cells: [
        { cell: 'web', executable: '', metrics: { pidsCurrent: 2n } },
        { cell: 'web', executable: 'api', metrics: {} },
      ],
    } satisfies GetMetricsResponse);
    expect((await unaryCall(svc.getMetrics, { cell: 'gone' })).error).toMatchObject({ code: status.NOT_FOUND });
    expect(seen).toEqual([null, 'gone']);
  });
});
