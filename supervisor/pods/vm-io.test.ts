// What a VM pod's containers need from the child besides their lifecycle (vm-sandbox.ts ChildPodIo), unit tier:
// following a container's output across reconnects (no line twice, none lost that the child keeps), the child's
// metrics in observe's shape, the parent's right to read them (authz PARENT_AGENT_METHODS), and PodService/
// PortForward as the child serves it for its cell pod (a real grpc-js duplex against an echo server on loopback).
// The CRI over all of it: supervisor/cri/cri-vm-pods.test.ts; the real child: qemu-tests/47-cri-more.
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { Metadata, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { decide, OPEN_METHODS, ADMIN_ONLY_METHODS, type Policy } from '../authz/policy';
import type { PodServicePortForwardRequest, PodServicePortForwardResponse } from '../gen/aurae/pods/v0/pods';
import { silentLogger } from '../log';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from '../server/testing';
import { createPodService } from './pod-service';
import { metricsSnapshotFromProto } from './vm-agent';
import { CHILD_OUTPUT_RETRY_MS, type ChildLogLine, followChildOutput } from './vm-sandbox';

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within the deadline');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("following a VM pod container's output in its child", () => {
  /** A fake child log: kept lines, the open follow, and the timers asked for (run by hand). */
  function fixture() {
    const kept: ChildLogLine[] = [];
    const opened: { tail: number | undefined; onLine: (l: ChildLogLine) => void; onEnd: (e: Error | null) => void; cancelled: boolean }[] = [];
    const timers: { fn: () => void; ms: number; cleared: boolean }[] = [];
    const sunk: string[] = [];
    const stop = followChildOutput({
      open: (tail, onLine, onEnd) => {
        const o = { tail, onLine, onEnd, cancelled: false };
        opened.push(o);
        for (const l of kept) onLine(l);
        return () => void (o.cancelled = true);
      },
      sink: (stream, text) => sunk.push(`${stream} ${text}`),
      log: silentLogger,
      timer: (fn, ms) => {
        const t = { fn, ms, cleared: false };
        timers.push(t);
        return () => void (t.cleared = true);
      },
    });
    const write = (line: string, timestamp: number, stream: 'stdout' | 'stderr' = 'stdout') => {
      const l = { stream, line, timestamp };
      kept.push(l);
      const o = opened.at(-1);
      if (o && !o.cancelled) o.onLine(l);
    };
    return { kept, opened, timers, sunk, stop, write };
  }

  it('passes every line on once, also lines of the same millisecond, across a reconnect that sends the kept lines again', () => {
    const f = fixture();
    expect(f.opened).toHaveLength(1);
    expect(f.opened[0]!.tail).toBeUndefined();
    f.write('a', 10);
    f.write('b', 10, 'stderr');
    f.opened[0]!.onEnd(new Error('connection dropped'));
    expect(f.timers.at(-1)!.ms).toBe(CHILD_OUTPUT_RETRY_MS.first);
    // Meanwhile the container wrote more, one of the same millisecond as the last passed on.
    f.kept.push({ stream: 'stdout', line: 'c', timestamp: 10 }, { stream: 'stdout', line: 'd', timestamp: 11 });
    f.timers.at(-1)!.fn();
    expect(f.opened).toHaveLength(2);
    f.write('e', 12);
    expect(f.sunk).toEqual(['stdout a', 'stderr b', 'stdout c', 'stdout d', 'stdout e']);
  });

  it('backs off while the child sends nothing (up to the maximum), and stop cancels the stream or the pending retry', () => {
    const f = fixture();
    for (let i = 0; i < 6; i++) {
      f.opened.at(-1)!.onEnd(new Error('VM down'));
      f.timers.at(-1)!.fn();
    }
    expect(f.timers.map((t) => t.ms)).toEqual([500, 1000, 2000, 4000, 5000, 5000]);
    f.stop();
    expect(f.opened.at(-1)!.cancelled).toBe(true);
    const g = fixture();
    g.opened[0]!.onEnd(null);
    g.stop();
    expect(g.timers[0]!.cleared).toBe(true);
    g.timers[0]!.fn(); // a timer that fired anyway opens nothing
    expect(g.opened).toHaveLength(1);
  });
});

describe("the child's metrics and the parent's right to read them", () => {
  it("maps GetMetrics to observe's snapshot (numbers, the cell row's executable null)", () => {
    expect(
      metricsSnapshotFromProto({ timestamp: 7n, cells: [{ cell: 'web', executable: '', metrics: { cpuUsageUsec: 5n, memoryMaxBytes: undefined } }, { cell: 'web', executable: 'app', metrics: { pidsCurrent: 2n } }] }),
    ).toEqual({ timestamp: 7, cells: [{ cell: 'web', executable: null, metrics: { cpuUsageUsec: 5 } }, { cell: 'web', executable: 'app', metrics: { pidsCurrent: 2 } }] });
  });

  it('the parent itself may read logs and metrics (its VM pods), nothing more of observe; relayed callers are not it', () => {
    const policy: Policy = { admins: new Set(['admin']), open: OPEN_METHODS, adminOnly: ADMIN_ONLY_METHODS, rules: [] };
    const target = { fromParent: true, resource: { cell: 'k8s-abc' } };
    expect(decide(policy, 'aurae', 'aurae.observe.v0.ObserveService/GetLogs', target)).toMatchObject({ allowed: true, reason: 'parent' });
    expect(decide(policy, 'aurae', 'aurae.observe.v0.ObserveService/GetMetrics', target)).toMatchObject({ allowed: true, reason: 'parent' });
    expect(decide(policy, 'aurae', 'aurae.observe.v0.ObserveService/GetAuraeDaemonLogStream', target).allowed).toBe(false);
    expect(decide(policy, 'aurae', 'aurae.observe.v0.ObserveService/GetLogs', { resource: { cell: 'k8s-abc' } }).allowed).toBe(false);
  });
});

/** A grpc-js duplex call as PodService's handler sees it. */
class FakeCall extends EventEmitter {
  cancelled = false;
  ended = false;
  sent: PodServicePortForwardResponse[] = [];
  errors: { code?: number; details?: string }[] = [];
  metadata = new Metadata();
  constructor() {
    super();
    this.on('error', (e: { code?: number; details?: string }) => void this.errors.push(e));
  }
  getPeer = () => '127.0.0.1:40000';
  getAuthContext = () => fakeAuthContext('admin');
  getDeadline = () => Infinity;
  write(m: PodServicePortForwardResponse): boolean {
    this.sent.push(m);
    return true;
  }
  end(): void {
    this.ended = true;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
}

describe('PodService/PortForward (what the child serves for a VM pod)', () => {
  const req = (over: Partial<PodServicePortForwardRequest>): PodServicePortForwardRequest => ({ podName: '', port: 0, data: Buffer.alloc(0), ...over });
  function service(ip: string | null) {
    const ctx = { log: silentLogger, admins: new Set(['admin']), authz: fakeAuthorizer(), parentIdentity: null, issuerOf: issuerByName() };
    const runtime = {
      run: async () => ({}) as never,
      list: () => [],
      get: (pod: string) => (pod === 'web' ? ({ name: 'web', sandbox: 'cell', state: 'running', ip, containers: [], spec: { containers: [] } } as never) : undefined),
      stop: async () => ({}) as never,
      remove: async () => {},
      execTarget: () => {
        throw new Error('not used');
      },
    };
    return createPodService(ctx, { runtime });
  }
  const start = async (ip: string | null, first: PodServicePortForwardRequest) => {
    const call = new FakeCall();
    service(ip).portForward(call as never);
    await new Promise((r) => setImmediate(r));
    call.emit('data', first);
    return call;
  };

  it("connects to the port at the pod's address: bytes both ways, the half-close passed on, the call ends with the connection", async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const port = (echo.address() as net.AddressInfo).port;
    try {
      const call = await start('127.0.0.1', req({ podName: 'web', port, data: Buffer.from('one ') }));
      const text = () => Buffer.concat(call.sent.map((m) => m.data)).toString();
      // (This fake call does not hold requests while paused: the next one once the first was served.)
      await waitFor(() => text() === 'one ');
      call.emit('data', req({ data: Buffer.from('two') }));
      await waitFor(() => text() === 'one two');
      call.emit('end');
      await waitFor(() => call.ended);
      expect(call.errors).toEqual([]);
    } finally {
      echo.close();
    }
  });

  it('refuses what it cannot do, naming why: a bad port, no address, nothing listening', async () => {
    const bad = await start('127.0.0.1', req({ podName: 'web', port: 70_000 }));
    await waitFor(() => bad.errors.length > 0);
    expect(bad.errors[0]).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^port: 70000 is not a TCP port/) });
    const none = await start(null, req({ podName: 'web', port: 80 }));
    await waitFor(() => none.errors.length > 0);
    expect(none.errors[0]).toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(/no address/) });
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const refused = await start('127.0.0.1', req({ podName: 'web', port }));
    await waitFor(() => refused.errors.length > 0);
    expect(refused.errors[0]).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringMatching(/ECONNREFUSED.*is something listening/) });
  });
});
