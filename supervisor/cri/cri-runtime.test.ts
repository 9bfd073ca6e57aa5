// The CRI RuntimeService served over a fake pods runtime (the incremental API in memory) and a real SQLite CRI
// store, driven as kubelet drives it: grpc-js clients from the generated runtime.v1 definitions on the socket.
// Sandbox and container lifecycles, idempotent Stop/Remove, filters, events, restart (a new server over the same
// database), ExecSync through the pods' exec machinery (a stand-in for crun), stats from a metrics reader,
// streaming URLs, and what stays UNIMPLEMENTED.
import { type ChildProcess, spawn as nodeSpawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Duplex } from 'node:stream';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ContainerEventResponse,
  ContainerEventType,
  ContainerState,
  CreateContainerRequest,
  type ExecRequest,
  PodSandboxState,
  type PortForwardRequest,
  RunPodSandboxRequest,
} from '../gen/runtime/v1/api';
import { silentLogger } from '../log';
import { createEventBus, type MetricsSnapshot } from '../observe';
import { openDatabase, type Db } from '../store';
import { createCriExec } from './cri-exec';
import { networkMetricValues } from './cri-metrics';
import { CriRuntime } from './cri-runtime';
import { sqliteCriStore } from './cri-store';
import { type RunningCriServer, startCriServer } from './server';
import { type CriClients, call, criClients, fakeImages, type FakePods, fakePods, hex, record } from './testing';

let dir: string;
let db: Db;
let pods: FakePods;
let server: RunningCriServer;
let clients: CriClients;
let now = 1_700_000_000_000;
const clock = () => now;
const bus = createEventBus({ capacity: 100, log: silentLogger });
const taps: string[] = [];
const metricsRows: MetricsSnapshot['cells'] = [];
const streamed: { kind: string; req: ExecRequest | PortForwardRequest }[] = [];

const busybox = record({ name: 'docker.io/library/busybox', tags: ['latest'], digest: `sha256:${hex('1')}`, configDigest: `sha256:${hex('c')}` });
const images = fakeImages();
images.records.push(busybox);

const logTaps = {
  register(cell: string, exe: string, p: string) {
    taps.push(`register ${cell}/${exe} ${p}`);
    return { path: p, reopen: () => (taps.push(`reopen ${cell}/${exe}`), null), close: () => taps.push(`close ${cell}/${exe}`) };
  },
  get: () => undefined,
  unregister(cell: string, exe: string) {
    taps.push(`unregister ${cell}/${exe}`);
  },
};

async function refusal(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail');
}

const sandboxConfig = (name: string, over: Record<string, unknown> = {}) => ({
  metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
  logDirectory: path.join(os.tmpdir(), 'cri-logs', name),
  labels: { app: name },
  annotations: { 'kubernetes.io/config.source': 'api' },
  ...over,
});

async function start(): Promise<void> {
  server = await startCriServer({
    socket: path.join(dir, 'run', 'cri.sock'),
    images,
    imagesDir: dir,
    version: '0.1.0',
    runtimeReadiness: () => ({ ready: true }),
    log: silentLogger,
    usageCacheMs: 0,
    clock,
    pods,
    db,
    observe: { events: bus, metrics: async (cell) => ({ timestamp: now, cells: metricsRows.filter((r) => r.cell === cell) }) },
    logs: logTaps,
    podCidr: '10.88.0.0/16',
    startStreaming: async () => ({
      getExec: (req) => (streamed.push({ kind: 'exec', req }), { url: `http://127.0.0.1:1/exec/${req.containerId}` }),
      getAttach: () => ({ url: 'http://127.0.0.1:1/attach' }),
      getPortForward: (req) => (streamed.push({ kind: 'portforward', req }), { url: `http://127.0.0.1:1/portforward/${req.podSandboxId}` }),
      close: async () => undefined,
    }),
  });
  clients = criClients(server.socket);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cri-runtime-'));
  db = openDatabase(':memory:');
  pods = fakePods(clock);
  await start();
});

afterAll(async () => {
  clients?.close();
  await server?.shutdown(1000);
  db?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const rt = () => clients.runtime;
const run = async (name: string, over: Record<string, unknown> = {}, handler = '') =>
  (await call(rt(), rt().runPodSandbox, RunPodSandboxRequest.fromPartial({ config: sandboxConfig(name, over), runtimeHandler: handler }))).podSandboxId;
const create = async (sandboxId: string, name: string, over: Record<string, unknown> = {}) =>
  (
    await call(
      rt(),
      rt().createContainer,
      CreateContainerRequest.fromPartial({ podSandboxId: sandboxId, config: { metadata: { name, attempt: 0 }, image: { image: 'busybox' }, logPath: `${name}/0.log`, labels: { c: name }, ...over }, sandboxConfig: sandboxConfig('x') }),
    )
  ).containerId;
const podOf = (id: string) => `k8s-${id.slice(0, 12)}`;
const containerOf = (id: string) => `c-${id.slice(0, 12)}`;

describe('runtime info', () => {
  it('Status: RuntimeReady and NetworkReady, handlers "", cell and vm', async () => {
    const res = await call(rt(), rt().status, { verbose: true });
    expect(res.status?.conditions.map((c) => [c.type, c.status])).toEqual([
      ['RuntimeReady', true],
      ['NetworkReady', true],
    ]);
    expect(res.runtimeHandlers.map((h) => h.name)).toEqual(['', 'cell', 'vm']);
    expect(JSON.parse(res.info.config!)).toMatchObject({ podCidr: '10.88.0.0/16', streaming: true });
  });

  it('UpdateRuntimeConfig accepts the pod CIDR', async () => {
    expect(await call(rt(), rt().updateRuntimeConfig, { runtimeConfig: { networkConfig: { podCidr: '10.244.1.0/24' } } })).toEqual({});
  });

  it('what is not served answers UNIMPLEMENTED with its reason', async () => {
    const attach = await refusal(call(rt(), rt().attach, { containerId: 'x', stdin: false, tty: false, stdout: true, stderr: true }));
    expect(attach.code).toBe(status.NOT_FOUND); // served (container-stdio.ts): an unknown container
    const cp = await refusal(call(rt(), rt().checkpointContainer, { containerId: 'x', location: '/x', timeout: 0n }));
    expect(cp.details).toMatch(/CRIU/);
  });
});

describe('pod sandbox lifecycle', () => {
  it('RunPodSandbox makes an aurae pod k8s-<id>; List and Status show it READY with its metadata, labels, annotations', async () => {
    const id = await run('web', { hostname: 'web-0', portMappings: [{ protocol: 0, containerPort: 80, hostPort: 8080, hostIp: '' }] }, 'cell');
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const pod = pods.pods.get(podOf(id))!;
    expect(pod.spec).toMatchObject({ sandbox: 'cell', containers: [], restart: 'never', hostname: 'web-0', publish: [{ nodePort: 8080, podPort: 80, protocol: 'tcp' }] });
    const list = await call(rt(), rt().listPodSandbox, {});
    expect(list.items.find((s) => s.id === id)).toMatchObject({
      metadata: { name: 'web', uid: 'uid-web', namespace: 'default', attempt: 0 },
      state: PodSandboxState.SANDBOX_READY,
      labels: { app: 'web' },
      annotations: { 'kubernetes.io/config.source': 'api' },
      runtimeHandler: 'cell',
      createdAt: BigInt(now) * 1_000_000n,
    });
    const st = await call(rt(), rt().podSandboxStatus, { podSandboxId: id.slice(0, 13), verbose: true });
    expect(st.status).toMatchObject({ id, network: { ip: '10.88.0.2' } });
    expect(JSON.parse(st.info.info!)).toMatchObject({ pod: podOf(id), hostname: 'web-0', portMappings: [{ nodePort: 8080 }] });
  });

  it('the same metadata twice is ALREADY_EXISTS; an unknown handler is INVALID_ARGUMENT naming runtime_handler', async () => {
    await run('twice');
    const again = await refusal(run('twice'));
    expect([again.code, again.details]).toEqual([status.ALREADY_EXISTS, expect.stringMatching(/^a sandbox named "twice"/)]);
    const bad = await refusal(run('kata', {}, 'kata'));
    expect([bad.code, bad.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^runtime_handler: "kata"/)]);
  });

  it('a failed createSandbox leaves nothing behind (record and pod)', async () => {
    pods.failNext.set('createSandbox', Object.assign(new Error('boom'), {}));
    const err = await refusal(run('broken'));
    expect(err.code).toBe(status.INTERNAL);
    expect((await call(rt(), rt().listPodSandbox, {})).items.some((s) => s.metadata?.name === 'broken')).toBe(false);
  });

  it('Stop then Remove; both are idempotent, also for an id never seen', async () => {
    const id = await run('gone');
    await call(rt(), rt().stopPodSandbox, { podSandboxId: id });
    expect((await call(rt(), rt().podSandboxStatus, { podSandboxId: id, verbose: false })).status?.state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    await call(rt(), rt().stopPodSandbox, { podSandboxId: id });
    await call(rt(), rt().removePodSandbox, { podSandboxId: id });
    await call(rt(), rt().removePodSandbox, { podSandboxId: id });
    await call(rt(), rt().stopPodSandbox, { podSandboxId: id });
    await call(rt(), rt().stopPodSandbox, { podSandboxId: hex('9') });
    await call(rt(), rt().removePodSandbox, { podSandboxId: hex('9') });
    expect(pods.pods.has(podOf(id))).toBe(false);
    const missing = await refusal(call(rt(), rt().podSandboxStatus, { podSandboxId: id, verbose: false }));
    expect(missing.code).toBe(status.NOT_FOUND);
  });

  it('ListPodSandbox filters by id prefix, state and labels', async () => {
    const a = await run('filter-a');
    const b = await run('filter-b');
    await call(rt(), rt().stopPodSandbox, { podSandboxId: b });
    const names = async (filter: object) => (await call(rt(), rt().listPodSandbox, { filter: { id: '', labelSelector: {}, ...filter } })).items.map((s) => s.metadata!.name).sort();
    expect(await names({ id: a.slice(0, 8) })).toEqual(['filter-a']);
    expect(await names({ labelSelector: { app: 'filter-b' } })).toEqual(['filter-b']);
    expect(await names({ state: { state: PodSandboxState.SANDBOX_NOTREADY }, labelSelector: { app: 'filter-b' } })).toEqual(['filter-b']);
    expect(await names({ state: { state: PodSandboxState.SANDBOX_READY }, labelSelector: { app: 'filter-b' } })).toEqual([]);
  });
});

describe('container lifecycle', () => {
  let sandbox: string;
  beforeAll(async () => {
    sandbox = await run('app');
  });

  it('CreateContainer needs the image stored (NOT_FOUND naming config.image.image) and a known sandbox', async () => {
    const noImage = await refusal(create(sandbox, 'x', { image: { image: 'nginx:1.25' } }));
    expect([noImage.code, noImage.details]).toEqual([status.NOT_FOUND, expect.stringMatching(/^config\.image\.image: image "nginx:1\.25" is not on this node: pull it first/)]);
    const noSandbox = await refusal(create(hex('8'), 'x'));
    expect(noSandbox.code).toBe(status.NOT_FOUND);
  });

  it('created → running → exited (Stop with the timeout as grace) → removed; events for each step', async () => {
    const events: ContainerEventResponse[] = [];
    const stream = rt().getContainerEvents({});
    stream.on('data', (e: ContainerEventResponse) => events.push(e));
    stream.on('error', () => undefined);
    // One round trip on the same connection: the stream's request reached the server before the calls below.
    await call(rt(), rt().version, { version: 'v1' });

    now += 1000;
    const id = await create(sandbox, 'main');
    const name = containerOf(id);
    expect(pods.calls).toContain(`createContainer ${podOf(sandbox)}/${name}`);
    expect(pods.pods.get(podOf(sandbox))!.spec.containers[0]).toMatchObject({ name, image: `docker.io/library/busybox@sha256:${hex('1')}` });
    expect(taps).toContain(`register ${podOf(sandbox)}/${name} ${path.join(os.tmpdir(), 'cri-logs', 'app', 'main', '0.log')}`);
    let st = (await call(rt(), rt().containerStatus, { containerId: id, verbose: true })).status!;
    expect(st).toMatchObject({ state: ContainerState.CONTAINER_CREATED, createdAt: BigInt(now) * 1_000_000n, startedAt: 0n, metadata: { name: 'main', attempt: 0 }, imageId: busybox.configDigest });

    now += 1000;
    await call(rt(), rt().startContainer, { containerId: id.slice(0, 12) });
    bus.publish({ kind: 'container_started', cell: podOf(sandbox), pod: podOf(sandbox), container: name, pid: 4242 });
    st = (await call(rt(), rt().containerStatus, { containerId: id, verbose: false })).status!;
    expect(st).toMatchObject({ state: ContainerState.CONTAINER_RUNNING, startedAt: BigInt(now) * 1_000_000n });
    const again = await refusal(call(rt(), rt().startContainer, { containerId: id }));
    expect(again.code).toBe(status.FAILED_PRECONDITION);

    now += 1000;
    await call(rt(), rt().stopContainer, { containerId: id, timeout: 5n });
    expect(pods.calls).toContain(`stopContainer ${podOf(sandbox)}/${name} 5000`);
    bus.publish({ kind: 'container_exited', cell: podOf(sandbox), pod: podOf(sandbox), container: name, pid: 4242, code: 137, signal: null, oomKilled: false });
    st = (await call(rt(), rt().containerStatus, { containerId: id, verbose: false })).status!;
    expect(st).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 137, reason: 'Error', finishedAt: BigInt(now) * 1_000_000n });
    await call(rt(), rt().stopContainer, { containerId: id, timeout: 0n });

    await call(rt(), rt().removeContainer, { containerId: id });
    await call(rt(), rt().removeContainer, { containerId: id });
    await call(rt(), rt().stopContainer, { containerId: id, timeout: 1n });
    expect(taps).toContain(`unregister ${podOf(sandbox)}/${name}`);
    expect(pods.pods.get(podOf(sandbox))!.containers).toEqual([]);
    expect((await refusal(call(rt(), rt().containerStatus, { containerId: id, verbose: false }))).code).toBe(status.NOT_FOUND);

    const deadline = Date.now() + 5000;
    while (events.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    stream.cancel();
    expect(events.map((e) => [e.containerEventType, e.containerId])).toEqual([
      [ContainerEventType.CONTAINER_CREATED_EVENT, id],
      [ContainerEventType.CONTAINER_STARTED_EVENT, id],
      [ContainerEventType.CONTAINER_STOPPED_EVENT, id],
      [ContainerEventType.CONTAINER_DELETED_EVENT, id],
    ]);
    expect(events[2]!.containersStatuses[0]).toMatchObject({ state: ContainerState.CONTAINER_EXITED });
    expect(events[0]!.podSandboxStatus?.id).toBe(sandbox);
  });

  it('reasons: Completed, Error with the code, OOMKilled; ListContainers filters by sandbox, state and labels', async () => {
    const ok = await create(sandbox, 'ok');
    const bad = await create(sandbox, 'bad');
    const oom = await create(sandbox, 'oom');
    for (const id of [ok, bad, oom]) await call(rt(), rt().startContainer, { containerId: id });
    pods.exit(podOf(sandbox), containerOf(ok), { code: 0 });
    pods.exit(podOf(sandbox), containerOf(bad), { code: 3 });
    pods.exit(podOf(sandbox), containerOf(oom), { code: 137, oomKilled: true });
    const reason = async (id: string) => {
      const s = (await call(rt(), rt().containerStatus, { containerId: id, verbose: false })).status!;
      return [s.state, s.exitCode, s.reason];
    };
    expect(await reason(ok)).toEqual([ContainerState.CONTAINER_EXITED, 0, 'Completed']);
    expect(await reason(bad)).toEqual([ContainerState.CONTAINER_EXITED, 3, 'Error']);
    expect(await reason(oom)).toEqual([ContainerState.CONTAINER_EXITED, 137, 'OOMKilled']);
    const running = await create(sandbox, 'runs');
    await call(rt(), rt().startContainer, { containerId: running });
    const ids = async (filter: object) => (await call(rt(), rt().listContainers, { filter: { id: '', podSandboxId: '', labelSelector: {}, ...filter } })).containers.map((c) => c.metadata!.name).sort();
    expect(await ids({ podSandboxId: sandbox.slice(0, 10) })).toEqual(['bad', 'ok', 'oom', 'runs']);
    expect(await ids({ state: { state: ContainerState.CONTAINER_RUNNING } })).toEqual(['runs']);
    expect(await ids({ labelSelector: { c: 'oom' } })).toEqual(['oom']);
    expect(await ids({ id: ok })).toEqual(['ok']);
  });

  it('the same name and attempt twice in a sandbox is ALREADY_EXISTS; a stopped sandbox takes no new container', async () => {
    const err = await refusal(create(sandbox, 'ok'));
    expect(err.code).toBe(status.ALREADY_EXISTS);
    const stopped = await run('stopped');
    await call(rt(), rt().stopPodSandbox, { podSandboxId: stopped });
    expect((await refusal(create(stopped, 'x'))).code).toBe(status.FAILED_PRECONDITION);
  });

  it('ReopenContainerLog: a running container reopens its file; an exited one is FAILED_PRECONDITION', async () => {
    const c = (await call(rt(), rt().listContainers, { filter: { id: '', podSandboxId: sandbox, labelSelector: { c: 'runs' } } })).containers[0]!;
    await call(rt(), rt().reopenContainerLog, { containerId: c.id });
    expect(taps.at(-1)).toMatch(/^reopen |^register /);
    const exited = (await call(rt(), rt().listContainers, { filter: { id: '', podSandboxId: sandbox, labelSelector: { c: 'ok' } } })).containers[0]!;
    expect((await refusal(call(rt(), rt().reopenContainerLog, { containerId: exited.id }))).code).toBe(status.FAILED_PRECONDITION);
  });

  it('Exec and PortForward hand out streaming URLs; exec needs a running container', async () => {
    const c = (await call(rt(), rt().listContainers, { filter: { id: '', podSandboxId: sandbox, labelSelector: { c: 'runs' } } })).containers[0]!;
    const res = await call(rt(), rt().exec, { containerId: c.id.slice(0, 12), cmd: ['sh'], tty: false, stdin: true, stdout: true, stderr: true });
    expect(res.url).toBe(`http://127.0.0.1:1/exec/${c.id}`);
    const exited = (await call(rt(), rt().listContainers, { filter: { id: '', podSandboxId: sandbox, labelSelector: { c: 'ok' } } })).containers[0]!;
    expect((await refusal(call(rt(), rt().exec, { containerId: exited.id, cmd: ['sh'], tty: false, stdin: false, stdout: true, stderr: false }))).code).toBe(status.FAILED_PRECONDITION);
    const pf = await call(rt(), rt().portForward, { podSandboxId: sandbox, port: [80] });
    expect(pf.url).toBe(`http://127.0.0.1:1/portforward/${sandbox}`);
  });

  it('Attach hands out a streaming URL for a running container; stdin only if it was created with it; tty/stdin need the addon', async () => {
    const c = (await call(rt(), rt().listContainers, { filter: { id: '', podSandboxId: sandbox, labelSelector: { c: 'runs' } } })).containers[0]!;
    expect((await call(rt(), rt().attach, { containerId: c.id, tty: false, stdin: false, stdout: true, stderr: true })).url).toBe('http://127.0.0.1:1/attach');
    const noStdin = await refusal(call(rt(), rt().attach, { containerId: c.id, tty: false, stdin: true, stdout: true, stderr: true }));
    expect([noStdin.code, noStdin.details]).toEqual([status.FAILED_PRECONDITION, expect.stringMatching(/was created without stdin/)]);
    const exited = (await call(rt(), rt().listContainers, { filter: { id: '', podSandboxId: sandbox, labelSelector: { c: 'ok' } } })).containers[0]!;
    expect((await refusal(call(rt(), rt().attach, { containerId: exited.id, tty: false, stdin: false, stdout: true, stderr: false }))).code).toBe(status.FAILED_PRECONDITION);
    // This server has no native addon (no `terminals`): a container with a terminal cannot be made here.
    const tty = await refusal(create(sandbox, 'tty', { tty: true, stdin: true }));
    expect([tty.code, tty.details]).toEqual([status.UNIMPLEMENTED, expect.stringMatching(/^config\.tty, config\.stdin: this auraed cannot hold terminals/)]);
  });

  it('stats: cpu (core-ns, then nano-cores), memory working set and available, process count', async () => {
    const c = (await call(rt(), rt().listContainers, { filter: { id: '', podSandboxId: sandbox, labelSelector: { c: 'runs' } } })).containers[0]!;
    const pod = podOf(sandbox);
    metricsRows.splice(0, metricsRows.length, { cell: pod, executable: null, metrics: { cpuUsageUsec: 1000, memoryCurrentBytes: 4096, memoryMaxBytes: 8192, pidsCurrent: 3 } }, { cell: pod, executable: containerOf(c.id), metrics: { cpuUsageUsec: 500, memoryCurrentBytes: 1024 } });
    const first = (await call(rt(), rt().containerStats, { containerId: c.id })).stats!;
    expect(first.attributes).toMatchObject({ id: c.id, metadata: { name: 'runs' }, labels: { c: 'runs' } });
    expect(first.cpu).toEqual({ timestamp: BigInt(now) * 1_000_000n, usageCoreNanoSeconds: { value: 500_000n } });
    expect(first.memory).toMatchObject({ workingSetBytes: { value: 1024n }, usageBytes: { value: 1024n } });
    now += 1000;
    metricsRows[1]!.metrics.cpuUsageUsec = 500_500; // 0.5 s of CPU in 1 s: half a core
    const second = (await call(rt(), rt().listContainerStats, { filter: { id: '', podSandboxId: sandbox, labelSelector: {} } })).stats;
    expect(second.map((s) => s.attributes!.id)).toEqual([c.id]); // running containers only
    expect(second[0]!.cpu?.usageNanoCores).toEqual({ value: 500_000_000n });
    const ps = (await call(rt(), rt().podSandboxStats, { podSandboxId: sandbox })).stats!;
    expect(ps.attributes).toMatchObject({ id: sandbox, metadata: { name: 'app' } });
    expect(ps.linux).toMatchObject({ memory: { workingSetBytes: { value: 4096n }, availableBytes: { value: 4096n } }, process: { processCount: { value: 3n } } });
    expect(ps.linux!.containers.map((s) => s.attributes!.id)).toEqual([c.id]);
    const all = (await call(rt(), rt().listPodSandboxStats, {})).stats.map((s) => s.attributes!.metadata!.name);
    expect(all).toContain('app');
    expect(all).not.toContain('stopped');
  });
});

describe('restart', () => {
  it('a new server over the same database lists every sandbox and container with the state the pods runtime reports', async () => {
    const before = await call(rt(), rt().listContainers, {});
    const sandboxes = await call(rt(), rt().listPodSandbox, {});
    clients.close();
    await server.shutdown(1000);
    await start();
    expect(await call(rt(), rt().listPodSandbox, {})).toEqual(sandboxes);
    expect(await call(rt(), rt().listContainers, {})).toEqual(before);
    // The log files of containers that had one are written again.
    expect(taps.filter((t) => t.startsWith('register ')).length).toBeGreaterThan(before.containers.length);
  });
});

describe('exec', () => {
  /** A container of a sandbox whose exec target is a temp bundle, and a stand-in for crun that runs the process. */
  function execFixture() {
    const bundle = fs.mkdtempSync(path.join(dir, 'bundle-'));
    fs.mkdirSync(path.join(bundle, 'rootfs/etc'), { recursive: true });
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ process: { args: ['sleep'], env: [`PATH=${process.env.PATH}`], cwd: '/', user: { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 } } }));
    const spawn = (_file: string, args: string[], { stdin }: { stdin: boolean }): ChildProcess => {
      const at = (flag: string) => args[args.indexOf(flag) + 1]!;
      const proc = JSON.parse(fs.readFileSync(at('--process'), 'utf8')) as { args: string[] };
      const child = nodeSpawn(proc.args[0]!, proc.args.slice(1), { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
      if (child.pid) fs.writeFileSync(at('--pid-file'), String(child.pid));
      return child;
    };
    return { bundle, spawn };
  }

  it('ExecSync: stdout, stderr and the exit code; a timeout is DEADLINE_EXCEEDED and kills the command', async () => {
    const sandbox = await run('exec');
    const id = await create(sandbox, 'sh');
    await call(rt(), rt().startContainer, { containerId: id });
    const { bundle, spawn } = execFixture();
    pods.execTargets.set(`${podOf(sandbox)}/${containerOf(id)}`, { pod: podOf(sandbox), container: containerOf(id), containerId: 'x', crun: '/bin/false', stateRoot: bundle, config: path.join(bundle, 'config.json'), rootfs: path.join(bundle, 'rootfs'), runDir: path.join(bundle, 'run') });
    const runtime = new CriRuntime({ pods, store: sqliteCriStore(db), images, log: silentLogger });
    const exec = createCriExec(runtime, pods, silentLogger, { spawn, exitIdleMs: 200 });
    const res = await exec.execSync(id, ['/bin/sh', '-c', 'echo out; echo err >&2; exit 7'], 10n);
    expect([res.stdout.toString(), res.stderr.toString(), res.exitCode]).toEqual(['out\n', 'err\n', 7]);
    const t = Date.now();
    const timedOut = await exec.execSync(id, ['/bin/sleep', '30'], 1n).catch((e: unknown) => e as { code: number; message: string });
    expect(timedOut).toMatchObject({ code: status.DEADLINE_EXCEEDED, message: expect.stringMatching(/timed out after 1 s/) });
    expect(Date.now() - t).toBeLessThan(10_000);
    // The streaming backend: stdin in, stdout and stderr out, the exit code back.
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const chunks: string[] = [];
    stdout.on('data', (d: Buffer) => chunks.push(d.toString()));
    stderr.resume();
    stdin.end('hello from stdin\n');
    const streamed = await exec.exec({ containerId: id, cmd: ['/bin/sh', '-c', 'cat; exit 4'], tty: false, stdin, stdout, stderr, resize: new EventEmitter() });
    expect([chunks.join(''), streamed.exitCode]).toEqual(['hello from stdin\n', 4]);
    runtime.close();
  });

  it('port-forward: a TCP connection to the pod address, bytes both ways', async () => {
    const sandbox = await run('pf');
    pods.pods.get(podOf(sandbox))!.ip = '127.0.0.1';
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const port = (echo.address() as net.AddressInfo).port;
    const runtime = new CriRuntime({ pods, store: sqliteCriStore(db), images, log: silentLogger });
    const exec = createCriExec(runtime, pods, silentLogger);
    const received: Buffer[] = [];
    const stream = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        received.push(chunk);
        cb();
      },
    });
    const done = exec.portForward({ podSandboxId: sandbox, port, stream });
    stream.push('ping');
    const deadline = Date.now() + 5000;
    while (Buffer.concat(received).toString() !== 'ping' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(Buffer.concat(received).toString()).toBe('ping');
    stream.destroy();
    await done;
    echo.close();
    runtime.close();
  });
});

describe('UpdateContainerResources', () => {
  const linux = (over: Record<string, bigint> = {}) => ({
    cpuPeriod: 0n,
    cpuQuota: 0n,
    cpuShares: 0n,
    memoryLimitInBytes: 0n,
    oomScoreAdj: 0n,
    cpusetCpus: '',
    cpusetMems: '',
    hugepageLimits: [],
    unified: {},
    memorySwapLimitInBytes: 0n,
    ...over,
  });

  it('the fields set reach the pods runtime (0 keeps a value); ContainerStatus.resources reports them', async () => {
    const sandbox = await run('resize');
    const id = await create(sandbox, 'r', { linux: { resources: linux({ memoryLimitInBytes: 64n << 20n, cpuShares: 512n }) } });
    await call(rt(), rt().updateContainerResources, { containerId: id, linux: linux({ cpuQuota: 50_000n, cpuPeriod: 100_000n, memoryLimitInBytes: 32n << 20n, memorySwapLimitInBytes: 32n << 20n }), annotations: {} });
    expect(pods.calls.at(-1)).toBe(`updateContainerResources ${podOf(sandbox)}/${containerOf(id)} ${JSON.stringify({ cpuQuota: 50_000, cpuPeriod: 100_000, memoryLimit: 32 << 20, memorySwapLimit: 32 << 20 })}`);
    const st = (await call(rt(), rt().containerStatus, { containerId: id, verbose: false })).status!;
    expect(st.resources?.linux).toMatchObject({ cpuShares: 512n, cpuQuota: 50_000n, cpuPeriod: 100_000n, memoryLimitInBytes: 32n << 20n, memorySwapLimitInBytes: 32n << 20n, oomScoreAdj: 0n });
    // Nothing set: nothing to do (no call).
    const calls = pods.calls.length;
    await call(rt(), rt().updateContainerResources, { containerId: id, linux: linux(), annotations: {} });
    // kubelet's unlimited swap (-1) asks no limit either.
    await call(rt(), rt().updateContainerResources, { containerId: id, linux: linux({ memorySwapLimitInBytes: -1n }), annotations: {} });
    expect(pods.calls.length).toBe(calls);
  });

  it('refusals name the field: out of range, swap below memory, cpusets, an unknown container', async () => {
    const sandbox = await run('resize-bad');
    const id = await create(sandbox, 'r');
    const bad = async (l: ReturnType<typeof linux> | Record<string, unknown>) => refusal(call(rt(), rt().updateContainerResources, { containerId: id, linux: l as ReturnType<typeof linux>, annotations: {} }));
    expect((await bad(linux({ cpuPeriod: 10n }))).details).toMatch(/^linux\.cpu_period: 10 is out of range/);
    expect((await bad(linux({ memorySwapLimitInBytes: 1n << 20n }))).details).toMatch(/^linux\.memory_swap_limit_in_bytes: memory \+ swap needs a memory limit/);
    expect((await bad(linux({ memorySwapLimitInBytes: -2n }))).details).toMatch(/^linux\.memory_swap_limit_in_bytes: -2 is negative \(allowed: -1 for unlimited/);
    expect((await bad(linux({ memoryLimitInBytes: 2n << 20n, memorySwapLimitInBytes: 1n << 20n }))).details).toMatch(/^linux\.memory_swap_limit_in_bytes: 1048576 is below the memory limit/);
    const cpuset = await bad({ ...linux(), cpusetCpus: '0' });
    expect([cpuset.code, cpuset.details]).toEqual([status.UNIMPLEMENTED, expect.stringMatching(/^linux\.cpuset_cpus: /)]);
    const unknown = await refusal(call(rt(), rt().updateContainerResources, { containerId: hex('9'), linux: linux({ cpuShares: 2n }), annotations: {} }));
    expect(unknown.code).toBe(status.NOT_FOUND);
  });

  it('a "vm" runtime handler sandbox: UNIMPLEMENTED saying why', async () => {
    const sandbox = await run('resize-vm', {}, 'vm');
    const id = await create(sandbox, 'r');
    const vm = await refusal(call(rt(), rt().updateContainerResources, { containerId: id, linux: linux({ cpuShares: 2n }), annotations: {} }));
    expect([vm.code, vm.details]).toEqual([status.UNIMPLEMENTED, expect.stringMatching(/"vm" runtime handler sandbox: its resources cannot be changed in place/)]);
  });
});

describe('CRI metrics', () => {
  it('ListMetricDescriptors: cAdvisor names with id, name, image (and their own) label keys', async () => {
    const { descriptors } = await call(rt(), rt().listMetricDescriptors, {});
    const byName = new Map(descriptors.map((x) => [x.name, x]));
    expect(byName.get('container_cpu_usage_seconds_total')?.labelKeys).toEqual(['id', 'name', 'image', 'cpu']);
    expect(byName.get('container_memory_working_set_bytes')?.labelKeys).toEqual(['id', 'name', 'image']);
    expect(byName.get('container_network_receive_bytes_total')?.labelKeys).toEqual(['id', 'name', 'image', 'interface']);
    expect(new Set(descriptors.map((x) => x.name)).size).toBe(descriptors.length);
  });

  it('ListPodSandboxMetrics: the sandbox (name POD) and its running containers, from the cgroup files; described names only', async () => {
    const sandbox = await run('metered');
    const id = await create(sandbox, 'm');
    await call(rt(), rt().startContainer, { containerId: id });
    const pod = podOf(sandbox);
    metricsRows.splice(
      0,
      metricsRows.length,
      { cell: pod, executable: null, metrics: { cpuUsageUsec: 3_500_000, cpuUserUsec: 2_000_000, cpuSystemUsec: 1_500_000, memoryCurrentBytes: 8192, pidsCurrent: 2 } },
      { cell: pod, executable: containerOf(id), metrics: { cpuUsageUsec: 1_200_000, memoryCurrentBytes: 4096, memoryMaxBytes: 1 << 20, memoryOomKill: 1, cpuNrPeriods: 10, cpuNrThrottled: 3, cpuThrottledUsec: 2_000_000 } },
    );
    const { descriptors } = await call(rt(), rt().listMetricDescriptors, {});
    const described = new Map(descriptors.map((x) => [x.name, x.labelKeys.length]));
    const { podMetrics } = await call(rt(), rt().listPodSandboxMetrics, {});
    const mine = podMetrics.find((p) => p.podSandboxId === sandbox)!;
    const value = (ms: typeof mine.metrics, name: string) => ms.filter((x) => x.name === name).map((x) => [x.labelValues, x.value?.value]);
    expect(value(mine.metrics, 'container_cpu_usage_seconds_total')).toEqual([[[sandbox, 'POD', '', 'total'], 3n]]);
    expect(value(mine.metrics, 'container_processes')).toEqual([[[sandbox, 'POD', ''], 2n]]);
    expect(mine.containerMetrics.map((c) => c.containerId)).toEqual([id]);
    const c = mine.containerMetrics[0]!.metrics;
    expect(value(c, 'container_memory_working_set_bytes')).toEqual([[[id, 'm', 'busybox'], 4096n]]);
    expect(value(c, 'container_spec_memory_limit_bytes')).toEqual([[[id, 'm', 'busybox'], 1048576n]]);
    expect(value(c, 'container_cpu_cfs_throttled_seconds_total')).toEqual([[[id, 'm', 'busybox'], 2n]]);
    expect(value(c, 'container_oom_events_total')).toEqual([[[id, 'm', 'busybox'], 1n]]);
    // Nothing the files did not give (no memory.peak here), and every metric is described with its label count.
    expect(value(c, 'container_memory_max_usage_bytes')).toEqual([]);
    for (const x of [...mine.metrics, ...c]) expect([x.name, x.labelValues.length]).toEqual([x.name, described.get(x.name)]);
  });

  it('network metrics: every interface but lo, eight counters each', () => {
    const text = [
      'Inter-|   Receive                                                |  Transmit',
      ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
      '    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0',
      '  eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0',
    ].join('\n');
    const ms = networkMetricValues(text, ['s', 'POD', ''], 7n);
    expect(ms).toHaveLength(8);
    expect(ms.map((x) => [x.name, x.value?.value])).toEqual([
      ['container_network_receive_bytes_total', 5000n],
      ['container_network_receive_packets_total', 40n],
      ['container_network_receive_errors_total', 1n],
      ['container_network_receive_packets_dropped_total', 2n],
      ['container_network_transmit_bytes_total', 3000n],
      ['container_network_transmit_packets_total', 30n],
      ['container_network_transmit_errors_total', 3n],
      ['container_network_transmit_packets_dropped_total', 4n],
    ]);
    expect(ms[0]!.labelValues).toEqual(['s', 'POD', '', 'eth0']);
    expect(networkMetricValues(null, [], 0n)).toEqual([]);
  });
});
