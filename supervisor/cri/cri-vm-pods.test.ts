// The CRI for pods of runtime handler "vm", unit tier: the real CRI pieces (CriRuntime, createCriExec,
// createCriStats, the log taps with withRemoteOutput) over the real pods routing (sandboxedPodRuntime over
// createVmPodRuntime with childPodIo) whose child is a fake pod agent: a grpc-js server on loopback serving
// PodService/Exec and ObserveService GetLogs/GetMetrics as a child auraed would. ExecSync (output, exit code,
// timeout), Exec over streams (stdin in), tty refused, stats from the child's cgroups, the container's output in
// its node-side CRI log file (reopen, and a child stream that fails is followed again without repeats). The real
// child (a booted VM): qemu-tests/47-cri-more.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { Duplex, PassThrough } from 'node:stream';
import { Client, Server, type ServerDuplexStream, type ServerWritableStream, ServerCredentials, credentials, status, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateContainerRequest, RunPodSandboxRequest } from '../gen/runtime/v1/api';
import { type GetLogsRequest, type GetLogsResponse, type GetMetricsRequest, type GetMetricsResponse, ObserveServiceService } from '../gen/aurae/observe/v0/observe';
import { type PodServiceExecRequest, type PodServiceExecResponse, type PodServicePortForwardRequest, type PodServicePortForwardResponse, PodServiceService } from '../gen/aurae/pods/v0/pods';
import type { ImageRecord } from '../images';
import { silentLogger } from '../log';
import { type ContainerStatus, memoryPodStore, type PodImages, type PodRuntime, type PodStatus, type PodSpec } from '../pods';
import { pumpPortForward } from '../pods/port-forward';
import { childPodIo } from '../pods/vm-agent';
import { type ChildPodAgent, createVmPodRuntime, sandboxedPodRuntime } from '../pods/vm-sandbox';
import { openDatabase } from '../store';
import { createCriExec } from './cri-exec';
import { CriRuntime } from './cri-runtime';
import { createCriStats } from './cri-stats';
import { sqliteCriStore } from './cri-store';
import { createContainerLogTaps, parseCriLog, withRemoteOutput } from './logs';
import { fakeImages, hex, record } from './testing';
import { startStreamingServer } from './streaming';
import { spdyExec } from './streaming/testing';

const EMPTY = Buffer.alloc(0);
const busybox = record({ name: 'docker.io/library/busybox', tags: ['latest'], digest: `sha256:${hex('1')}`, configDigest: `sha256:${hex('c')}` });

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within the deadline');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The fake child: what it was asked, its kept log lines, its open GetLogs streams. */
const child = {
  execs: [] as string[][],
  cancelled: 0,
  metricsAsked: [] as string[],
  lines: [] as { channel: string; line: string; timestamp: bigint }[],
  follows: [] as ServerWritableStream<GetLogsRequest, GetLogsResponse>[],
  logRequests: [] as GetLogsRequest[],
  forwards: [] as string[],
  /** The container whose executable row GetMetrics reports. */
  containerOf: '',
  /** A line the container writes: kept, and sent to every open follow of it. */
  write(channel: string, line: string, timestamp: number) {
    const item = { channel, line, timestamp: BigInt(timestamp) };
    child.lines.push(item);
    for (const s of child.follows) if (!s.cancelled) s.write({ item });
  },
};

function fakeExec(call: ServerDuplexStream<PodServiceExecRequest, PodServiceExecResponse>): void {
  let started = false;
  let cmd: string[] = [];
  const exit = (code: number) => {
    call.write({ stdout: EMPTY, stderr: EMPTY, exit: { code } });
    call.end();
  };
  call.on('cancelled', () => void child.cancelled++);
  call.on('data', (r: PodServiceExecRequest) => {
    if (!started) {
      started = true;
      cmd = r.start!.command;
      child.execs.push([r.start!.podName, r.start!.containerName, ...cmd]);
      if (cmd[0] === 'out-err-7') {
        call.write({ stdout: Buffer.from('out\n'), stderr: EMPTY });
        call.write({ stdout: EMPTY, stderr: Buffer.from('err\n') });
        exit(7);
      }
      return;
    }
    if (r.stdin.length) call.write({ stdout: Buffer.from(r.stdin), stderr: EMPTY });
    if (r.closeStdin) exit(4);
  });
  call.on('end', () => cmd[0] === 'cat' && exit(4));
}

/** The child's PortForward: the real pump (pods/port-forward.ts) to a port on loopback (the pod's network here). */
function fakePortForward(call: ServerDuplexStream<PodServicePortForwardRequest, PodServicePortForwardResponse>): void {
  call.once('data', (first: PodServicePortForwardRequest) => {
    child.forwards.push(`${first.podName}:${first.port}`);
    pumpPortForward(net.connect({ host: '127.0.0.1', port: first.port }), `pod "${first.podName}": port ${first.port}`, first, call).catch((err: Error) =>
      call.emit('error', { code: status.UNAVAILABLE, details: err.message }),
    );
  });
}

function fakeGetLogs(call: ServerWritableStream<GetLogsRequest, GetLogsResponse>): void {
  child.logRequests.push(call.request);
  for (const item of child.lines) call.write({ item });
  child.follows.push(call);
}

function fakeGetMetrics(call: ServerUnaryCall<GetMetricsRequest, GetMetricsResponse>, done: sendUnaryData<GetMetricsResponse>): void {
  child.metricsAsked.push(call.request.cell);
  const pod = call.request.cell;
  done(null, {
    timestamp: 5_000n,
    cells: [
      { cell: pod, executable: '', metrics: { cpuUsageUsec: 2_000_000n, memoryCurrentBytes: 64n << 20n, memoryMaxBytes: 256n << 20n, pidsCurrent: 3n } },
      { cell: pod, executable: child.containerOf, metrics: { cpuUsageUsec: 1_000_000n, memoryCurrentBytes: 32n << 20n } },
    ],
  });
}

/** The child's pod agent (status only: the incremental calls as a child answers them). */
class Agent implements ChildPodAgent {
  pods = new Map<string, PodStatus>();
  async run(): Promise<PodStatus> {
    throw new Error('not used');
  }
  async inspect(_vm: string, pod: string) {
    return this.pods.get(pod) ?? null;
  }
  async stop(_vm: string, pod: string) {
    return this.pods.get(pod)!;
  }
  async createSandbox(_vm: string, s: PodSpec) {
    const p: PodStatus = { name: s.name, sandbox: 'cell', state: 'running', createdAt: 1, spec: s, containers: [] };
    this.pods.set(s.name, p);
    return p;
  }
  private set(pod: string, c: ContainerStatus): ContainerStatus {
    const p = this.pods.get(pod)!;
    this.pods.set(pod, { ...p, containers: [...p.containers.filter((x) => x.name !== c.name), c] });
    return c;
  }
  async createContainer(_vm: string, pod: string, c: PodSpec['containers'][number]) {
    return this.set(pod, { name: c.name, image: c.image, imageDigest: busybox.digest, state: 'created', pid: null, exit: null, restarts: 0, createdAt: 2 });
  }
  async startContainer(_vm: string, pod: string, name: string) {
    const c = this.pods.get(pod)!.containers.find((x) => x.name === name)!;
    this.set(pod, { ...c, state: 'running', pid: 7, startedAt: 3 });
    // As a child may answer while crun is still starting it: "created" (Inspect says running).
    return { ...c, state: 'created' as const };
  }
  async stopContainer(_vm: string, pod: string, name: string) {
    return this.pods.get(pod)!.containers.find((x) => x.name === name)!;
  }
  async removeContainer() {}
}

/** A cell runtime with no pods (the VM sandbox is what is tested). */
const noCells: PodRuntime = {
  run: async () => {
    throw new Error('no cells here');
  },
  list: () => [],
  get: () => undefined,
  stop: async () => {
    throw new Error('no cells here');
  },
  remove: async () => {},
  reconcile: async () => {},
  createSandbox: async () => {
    throw new Error('no cells here');
  },
  createContainer: async () => {
    throw new Error('no cells here');
  },
  startContainer: async () => {
    throw new Error('no cells here');
  },
  stopContainer: async () => {
    throw new Error('no cells here');
  },
  removeContainer: async () => {},
  updateContainerResources: async () => {
    throw new Error('no cells here');
  },
  execTarget: () => {
    throw new Error('no cells here');
  },
};

describe('CRI for pods of runtime handler vm (routed to the child)', () => {
  let server: Server;
  let client: Client;
  let dir: string;
  const localMetricsAsked: (string | null)[] = [];

  const setup = () => {
    const podImages: PodImages = {
      get: (ref) => (ref.includes(busybox.digest) || ref === busybox.digest ? (busybox as ImageRecord) : undefined),
      pull: async () => busybox,
      lowerDirs: () => ['/snap'],
      retain: () => undefined,
      release: () => undefined,
    };
    const vmState = { value: 'running' as const };
    const vm = createVmPodRuntime({
      store: memoryPodStore(),
      images: podImages,
      disks: { ensure: async () => ({ path: '/d.ext4' }) },
      share: { dir: (p) => `/run/shares/${p}`, add: async () => undefined, remove: () => undefined, removeAll: () => undefined },
      vms: () => ({ spawn: async () => undefined, start: async () => undefined, stop: async () => undefined, free: () => undefined, state: () => vmState.value, limits: { maxMemoryMiB: 2048, bootTimeoutMs: 1000 } }),
      agent: new Agent(),
      io: childPodIo(async () => client),
      log: silentLogger,
    });
    const pods = sandboxedPodRuntime(noCells, vm);
    const taps = withRemoteOutput(createContainerLogTaps({ log: silentLogger }), (cell, exe, sink) => pods.followOutput(cell, exe, sink), silentLogger);
    const images = fakeImages();
    images.records.push(busybox);
    const runtime = new CriRuntime({ pods, store: sqliteCriStore(openDatabase(':memory:')), images, logs: taps, log: silentLogger });
    const exec = createCriExec(runtime, pods, silentLogger, {}, { terminals: () => ({}) as never });
    const stats = createCriStats({
      metrics: pods.metricsReader(async (cell) => (localMetricsAsked.push(cell), { timestamp: 1, cells: [] })),
      netDev: () => {
        throw new Error('a VM pod has no network namespace on this node');
      },
    });
    return { pods, runtime, exec, stats, taps };
  };

  /** A running container in a new vm sandbox, its log file under `dir`. */
  const container = async (t: ReturnType<typeof setup>, name: string) => {
    const sandboxId = await t.runtime.runPodSandbox(
      RunPodSandboxRequest.fromPartial({ config: { metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 }, logDirectory: path.join(dir, name) }, runtimeHandler: 'vm' }),
    );
    const id = await t.runtime.createContainer(
      CreateContainerRequest.fromPartial({ podSandboxId: sandboxId, config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, logPath: 'app/0.log' } }),
    );
    await t.runtime.startContainer(id);
    const c = t.runtime.requireContainer(id);
    return { sandboxId, id, pod: c.sandbox.pod, container: c.record.container, logPath: c.record.logPath };
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cri-vm-'));
    server = new Server();
    server.addService(PodServiceService, { exec: fakeExec, portForward: fakePortForward } as never);
    server.addService(ObserveServiceService, { getLogs: fakeGetLogs, getMetrics: fakeGetMetrics } as never);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  afterAll(() => {
    client?.close();
    server?.forceShutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("ExecSync runs in the child's PodService/Exec: stdout, stderr, exit code; a timeout is DEADLINE_EXCEEDED and cancels the child's call", async () => {
    const t = setup();
    const c = await container(t, 'sync');
    const res = await t.exec.execSync(c.id, ['out-err-7'], 10n);
    expect([res.stdout.toString(), res.stderr.toString(), res.exitCode]).toEqual(['out\n', 'err\n', 7]);
    expect(child.execs.at(-1)).toEqual([c.pod, c.container, 'out-err-7']);
    const before = child.cancelled;
    const started = Date.now();
    const timedOut = await t.exec.execSync(c.id, ['hang'], 1n).catch((e: unknown) => e as { code: number; message: string });
    expect(timedOut).toMatchObject({ code: status.DEADLINE_EXCEEDED, message: expect.stringMatching(/timed out after 1 s/) });
    expect(Date.now() - started).toBeLessThan(5000);
    await waitFor(() => child.cancelled === before + 1);
    t.runtime.close();
  });

  it('Exec (the streaming backend, no tty): stdin reaches the child, its output and exit code come back; tty is UNIMPLEMENTED saying why', async () => {
    const t = setup();
    const c = await container(t, 'stream');
    // The start's answer was "created"; what the CRI checks before an Exec is the child's status now.
    expect(t.runtime.requireContainer(c.id).status?.state).toBe('created');
    expect((await t.runtime.requireContainerNow(c.id)).status?.state).toBe('running');
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const chunks: string[] = [];
    stdout.on('data', (d: Buffer) => chunks.push(d.toString()));
    // Written before the child is connected: nothing may be lost.
    stdin.end('hello from stdin\n');
    const res = await t.exec.exec({ containerId: c.id, cmd: ['cat'], tty: false, stdin, stdout, stderr: null, resize: new EventEmitter() });
    expect([chunks.join(''), res.exitCode]).toEqual(['hello from stdin\n', 4]);
    await expect(t.exec.exec({ containerId: c.id, cmd: ['sh'], tty: true, stdin: null, stdout, stderr: null, resize: new EventEmitter() })).rejects.toThrow(/runs in a VM sandbox.*exec without -t/);
    t.runtime.close();
  });

  it("stats come from the child's cgroups of the pod (GetMetrics of its cell), never this node's, and no network read here", async () => {
    const t = setup();
    const c = await container(t, 'stats');
    localMetricsAsked.length = 0;
    child.containerOf = c.container;
    const sandbox = t.runtime.requireSandbox(c.sandboxId);
    const s = await t.stats.sandbox(sandbox, [t.runtime.requireContainer(c.id).record], null);
    expect(s.linux?.containers[0]?.memory?.workingSetBytes?.value).toBe(32n << 20n);
    const [one] = await t.stats.containers([{ sandbox, record: t.runtime.requireContainer(c.id).record }]);
    expect(one?.cpu?.usageCoreNanoSeconds?.value).toBe(1_000_000_000n);
    expect(child.metricsAsked.at(-1)).toBe(c.pod);
    expect(localMetricsAsked).toEqual([]);
    expect(s.linux?.cpu?.usageCoreNanoSeconds?.value).toBe(2_000_000_000n);
    expect(s.linux?.memory).toMatchObject({ workingSetBytes: { value: 64n << 20n }, availableBytes: { value: 192n << 20n } });
    expect(s.linux?.process?.processCount?.value).toBe(3n);
    // A cell pod (here: none by that name) is read on this node.
    await t.pods.metricsReader(async (cell) => (localMetricsAsked.push(cell), { timestamp: 1, cells: [] }))('not-a-vm-pod');
    expect(localMetricsAsked).toEqual(['not-a-vm-pod']);
    t.runtime.close();
  });

  it("the container's output is followed in the child into its CRI log file; reopen after rotation; a failed stream is followed again without repeats", async () => {
    const t = setup();
    child.lines.length = 0;
    const c = await container(t, 'logs');
    await waitFor(() => child.follows.some((s) => s.request.cell === c.pod && !s.cancelled));
    expect(child.logRequests.at(-1)).toMatchObject({ cell: c.pod, executable: c.container, follow: true });
    child.write('stdout', 'first', 1000);
    child.write('stderr', 'second', 1000);
    const records = () => (fs.existsSync(c.logPath) ? parseCriLog(fs.readFileSync(c.logPath, 'utf8')) : []);
    await waitFor(() => {
      t.taps.flush();
      return records().length === 2;
    });
    expect(records().map((r) => [r.stream, r.partial, r.text])).toEqual([
      ['stdout', false, 'first'],
      ['stderr', false, 'second'],
    ]);
    // kubelet rotates: rename, then ReopenContainerLog.
    fs.renameSync(c.logPath, `${c.logPath}.1`);
    await t.runtime.reopenContainerLog(c.id);
    // The child's stream fails (its connection dropped): followed again; the kept lines are not written twice.
    const open = child.follows.filter((s) => s.request.cell === c.pod && !s.cancelled);
    for (const s of open) s.emit('error', { code: status.UNAVAILABLE, details: 'connection dropped' });
    const asked = child.logRequests.length;
    await waitFor(() => child.logRequests.length > asked, 5000);
    child.write('stdout', 'third', 1001);
    await waitFor(() => {
      t.taps.flush();
      return records().length === 1;
    });
    expect(records().map((r) => r.text)).toEqual(['third']);
    // RemoveContainer ends the follow.
    await t.runtime.removeContainer(c.id);
    await waitFor(() => child.follows.filter((s) => s.request.cell === c.pod).every((s) => s.cancelled));
    t.runtime.close();
  });

  it("PortForward: the child connects to the port in the pod's network; bytes both ways; nothing listening is UNAVAILABLE", async () => {
    const t = setup();
    const c = await container(t, 'pf');
    const echo = net.createServer((sock) => sock.pipe(sock));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const port = (echo.address() as net.AddressInfo).port;
    const received: Buffer[] = [];
    const stream = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        received.push(chunk);
        cb();
      },
    });
    const done = t.exec.portForward({ podSandboxId: c.sandboxId, port, stream });
    stream.push('ping');
    await waitFor(() => Buffer.concat(received).toString() === 'ping');
    expect(child.forwards.at(-1)).toBe(`${c.pod}:${port}`);
    stream.destroy();
    await done;
    await new Promise<void>((r) => echo.close(() => r()));
    // The port is closed now: the child's refusal comes back.
    const none = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
    await expect(t.exec.portForward({ podSandboxId: c.sandboxId, port, stream: none })).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/pod-.*PortForward failed.*is something listening/) });
    t.runtime.close();
  });

  it('Exec through the streaming server (SPDY, as kubectl): stdin reaches the child, output and exit code come back', async () => {
    const t = setup();
    const c = await container(t, 'spdy');
    const streaming = await startStreamingServer({ backend: t.exec, log: silentLogger });
    try {
      const { url } = streaming.getExec({ containerId: c.id, cmd: ['cat'], tty: false, stdin: true, stdout: true, stderr: true });
      const res = await spdyExec(url, { stdin: 'through spdy\n' });
      expect([res.stdout.toString(), res.exitCode]).toEqual(['through spdy\n', 4]);
    } finally {
      await streaming.close();
      t.runtime.close();
    }
  });

  it('cell pods stay on this node: no relay, no follow, no remote port', () => {
    const t = setup();
    expect(t.pods.execRelay('a-cell-pod')).toBeNull();
    expect(t.pods.followOutput('a-cell-pod', 'app', () => undefined)).toBeNull();
    expect(t.pods.openPort('a-cell-pod', 80)).toBeNull();
  });
});
