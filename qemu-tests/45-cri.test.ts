// 45: the Kubernetes CRI on a booted node, driven as kubelet drives it: our own grpc-js clients built from the
// generated runtime.v1 definitions (the public API, not our code) on unix:///run/aurae/cri.sock, reached from the
// host through a small relay the test starts in the guest (TCP 10010 → the socket; the guest has no network for
// the host otherwise). Images come from the host's registry (supervisor/images/test-registry.ts) as in 41. Groups
// follow cri-tools' critest: runtime info, image, pod sandbox, container (lifecycle, log file, exit reasons, OOM),
// exec sync, streaming (exec over SPDY and WebSocket, port-forward; D's clients), stats, events, idempotence, and
// a kill -9 of auraed in the middle, after which every sandbox and container is listed with its true state.
// One model, two APIs: every CRI sandbox is an aurae pod (aer pod list) and every container one of its containers.
import { type ServiceError, credentials, status } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuraeClient } from '../aer/sdk';
import {
  CgroupDriver,
  ContainerEventType,
  type ContainerEventResponse,
  ContainerState,
  CreateContainerRequest,
  type DeepPartial,
  ImageServiceClient,
  PodSandboxState,
  RunPodSandboxRequest,
  RuntimeServiceClient,
} from '../supervisor/gen/runtime/v1/api';
import { call } from '../supervisor/cri/testing';
import { spdyExec, spdyPortForward, wsExec } from '../supervisor/cri/streaming/testing';
import { buildTestImages, startTestRegistry, testImagesDir, type TestRegistry } from '../supervisor/images/test-registry';
import { freeLoopbackPort } from '../supervisor/vms';
import { GUEST_REGISTRY, GUEST_REGISTRY_HOST, withGuestRegistry } from '../image/lib/guest-registry';
import { startGuestRelay, StreamingRelay } from '../image/lib/guest-relay';
import { type BootedNode, bootNode, eventually, NESTED_HOST_CPUS } from './fixture/node';

const IMAGE = `${GUEST_REGISTRY_HOST}/busybox:latest`;
/** Guest ports of the relays the test starts: the CRI socket, then the streaming server. */
const CRI_RELAY_PORT = 10010;
const STREAM_RELAY_PORT = 10011;
const LOG_DIR = '/var/log/pods';
/** The node port a sandbox's port mapping publishes (forwarded from the host). */
const NODE_PORT = 18080;

type RunPartial = DeepPartial<RunPodSandboxRequest>;
type ConfigPartial = NonNullable<DeepPartial<CreateContainerRequest>['config']>;

async function refusal(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail');
}

describe('45 cri', () => {
  let registry: TestRegistry | null = null;
  let node: BootedNode | null = null;
  let sdk: AuraeClient | null = null;
  let criPort = 0;
  let streamPort = 0;
  let nodePortOnHost = 0;
  let runtime: InstanceType<typeof RuntimeServiceClient> | null = null;
  let images: InstanceType<typeof ImageServiceClient> | null = null;
  let streamRelay: StreamingRelay | null = null;

  const booted = () => {
    if (!node) throw new Error('the node did not boot (see the beforeAll error)');
    return node;
  };
  const sh = async (command: string) => (await booted().shell()).ok(command);
  const client = () => (sdk ??= booted().client());
  const rt = () => (runtime ??= new RuntimeServiceClient(`127.0.0.1:${criPort}`, credentials.createInsecure()));
  const img = () => (images ??= new ImageServiceClient(`127.0.0.1:${criPort}`, credentials.createInsecure()));
  const reconnect = () => {
    runtime?.close();
    images?.close();
    runtime = null;
    images = null;
  };

  /** Start a relay in the guest (the shell's child, not auraed's: it outlives an auraed restart); its pid. */
  async function startRelay(port: number, target: string): Promise<string> {
    return startGuestRelay(await booted().shell(), port, target);
  }

  /** A streaming URL of the guest (http://127.0.0.1:PORT/…) as the host reaches it through the relay. */
  const hostUrl = (url: string) => (streamRelay ??= new StreamingRelay(() => booted().shell(), STREAM_RELAY_PORT, streamPort)).hostUrl(url);

  beforeAll(async () => {
    const built = await buildTestImages(testImagesDir());
    registry = await startTestRegistry();
    await registry.push(built.layout, built.tags.base, 'busybox:latest');
    criPort = await freeLoopbackPort();
    streamPort = await freeLoopbackPort();
    nodePortOnHost = await freeLoopbackPort();
    node = await bootNode({
      name: '45-cri',
      guestForwards: [{ guestAddress: GUEST_REGISTRY.address, guestPort: GUEST_REGISTRY.port, hostPort: registry.port }],
      hostForwards: [
        { hostPort: criPort, guestPort: CRI_RELAY_PORT },
        { hostPort: streamPort, guestPort: STREAM_RELAY_PORT },
        { hostPort: nodePortOnHost, guestPort: NODE_PORT },
      ],
      nodeConfig: withGuestRegistry,
      // The "vm" runtime handler spawns a child microVM from the node's own boot artifacts.
      bootVolume: true, cpus: NESTED_HOST_CPUS,
      memoryMiB: 2048,
    });
    await startRelay(CRI_RELAY_PORT, '/run/aurae/cri.sock');
    await eventually(async () => (await call(rt(), rt().version, { version: 'v1' }, 2000)).runtimeName === 'aurae', 60_000, 'the CRI through the relay');
  }, 900_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console of 45-cri (full log: ${node.consoleLog}) ---\n${node.vm.tail(60)}`);
  });
  afterAll(async () => {
    reconnect();
    sdk?.close();
    await node?.stop();
    await registry?.stop();
  });

  const runSandbox = async (name: string, over: RunPartial['config'] = {}, runtimeHandler = '') =>
    (
      await call(
        rt(),
        rt().runPodSandbox,
        RunPodSandboxRequest.fromPartial(<RunPartial>{
          runtimeHandler,
          config: { metadata: { name, uid: `uid-${name}`, namespace: 'e2e', attempt: 0 }, logDirectory: `${LOG_DIR}/e2e_${name}`, labels: { suite: '45', app: name }, annotations: { note: `sandbox ${name}` }, ...over },
        }),
        300_000,
      )
    ).podSandboxId;
  const createContainer = async (sandbox: string, name: string, config: ConfigPartial = {}) =>
    (
      await call(
        rt(),
        rt().createContainer,
        CreateContainerRequest.fromPartial(<DeepPartial<CreateContainerRequest>>{
          podSandboxId: sandbox,
          config: { metadata: { name, attempt: 0 }, image: { image: IMAGE }, logPath: `${name}/0.log`, labels: { app: name }, annotations: { 'io.kubernetes.container.hash': '1' }, ...config },
        }),
        60_000,
      )
    ).containerId;
  const containerStatus = async (id: string) => (await call(rt(), rt().containerStatus, { containerId: id, verbose: true })).status!;
  const podOf = (id: string) => `k8s-${id.slice(0, 12)}`;
  /** What the node knows of a container (a failing wait shows it): its status, CRI log file and aurae logs. */
  const diagnose = async (id: string) => {
    const s = await containerStatus(id);
    const sandbox = (await call(rt(), rt().listContainers, { filter: { id, podSandboxId: '', labelSelector: {} } })).containers[0]!.podSandboxId;
    const logs: string[] = [];
    for await (const e of client().observe.logs(podOf(sandbox), `c-${id.slice(0, 12)}`, { tail: 50 })) logs.push(e.line);
    return `state ${ContainerState[s.state]} exit ${s.exitCode} ${s.reason} ${s.message}\nlog file:\n${await sh(`tail -20 ${s.logPath} 2>&1`)}\naurae logs:\n${logs.join('\n')}`;
  };
  /** Wait for `state`; waiting for RUNNING, an EXITED container fails at once (it will not get there). */
  const untilState = async (id: string, state: ContainerState, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const s = await containerStatus(id);
      if (s.state === state) return s;
      last = ContainerState[s.state];
      if (state === ContainerState.CONTAINER_RUNNING && s.state === ContainerState.CONTAINER_EXITED) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const why = await diagnose(id).catch((e: unknown) => `(diagnosis failed: ${String(e)})`);
    throw new Error(`container ${id.slice(0, 12)} did not become ${ContainerState[state]} (last ${last}):\n${why}`);
  };

  let web = '';
  let server = '';

  it('runtime info: Version, Status (RuntimeReady, NetworkReady), the runtime handlers, the cgroupfs driver', async () => {
    const v = await call(rt(), rt().version, { version: 'v1' });
    expect(v).toMatchObject({ runtimeName: 'aurae', runtimeApiVersion: 'v1' });
    const st = await call(rt(), rt().status, { verbose: true });
    expect(st.status?.conditions.map((c) => [c.type, c.status])).toEqual([
      ['RuntimeReady', true],
      ['NetworkReady', true],
    ]);
    expect(st.runtimeHandlers.map((h) => h.name)).toEqual(['', 'cell', 'vm']);
    expect((await call(rt(), rt().runtimeConfig, {})).linux?.cgroupDriver).toBe(CgroupDriver.CGROUPFS);
  });

  it('image: PullImage from the registry, ImageStatus and ListImages name it, ImageFsInfo measures the store', async () => {
    const pulled = await call(img(), img().pullImage, { image: { image: IMAGE, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } }, 120_000);
    expect(pulled.imageRef).toMatch(/^sha256:[0-9a-f]{64}$/);
    const st = await call(img(), img().imageStatus, { image: { image: IMAGE, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' }, verbose: false });
    expect(st.image).toMatchObject({ id: pulled.imageRef, repoTags: [IMAGE] });
    expect((await call(img(), img().listImages, {})).images.map((i) => i.id)).toContain(pulled.imageRef);
    expect((await call(img(), img().imageFsInfo, {})).imageFilesystems[0]!.usedBytes!.value).toBeGreaterThan(100_000n);
  });

  it('pod sandbox: RunPodSandbox makes an aurae pod with an address; metadata, labels and annotations round-trip', async () => {
    web = await runSandbox('web', { hostname: 'web-0', dnsConfig: { servers: ['10.0.2.3'], searches: ['e2e.svc.cluster.local'], options: ['ndots:5'] } });
    expect(web).toMatch(/^[0-9a-f]{64}$/);
    const st = await call(rt(), rt().podSandboxStatus, { podSandboxId: web, verbose: true });
    expect(st.status).toMatchObject({
      id: web,
      metadata: { name: 'web', uid: 'uid-web', namespace: 'e2e', attempt: 0 },
      state: PodSandboxState.SANDBOX_READY,
      labels: { suite: '45', app: 'web' },
      annotations: { note: 'sandbox web' },
    });
    expect(st.status!.network!.ip).toMatch(/^10\.88\.\d+\.\d+$/);
    expect(JSON.parse(st.info.info!)).toMatchObject({ pod: podOf(web), hostname: 'web-0' });
    // One model: the sandbox is an aurae pod.
    const pod = await client().pods.inspect(podOf(web));
    expect(pod.sandbox).toBe('cell');
    const list = await call(rt(), rt().listPodSandbox, { filter: { id: web.slice(0, 13), labelSelector: { app: 'web' } } });
    expect(list.items.map((s) => s.id)).toEqual([web]);
    const twice = await refusal(runSandbox('web'));
    expect(twice.code).toBe(status.ALREADY_EXISTS);
    const kata = await refusal(runSandbox('kata', {}, 'kata'));
    expect([kata.code, kata.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^runtime_handler: "kata"/)]);
  });

  let main = '';
  it('container: created → running; its output is in the CRI log file; hostname and DNS from the sandbox', async () => {
    main = await createContainer(web, 'main', {
      command: ['/bin/sh', '-c', 'echo "host=$(hostname) dns=$(grep -c ndots:5 /etc/resolv.conf) user=$(id -u)"; echo to-stderr >&2; exec sleep 600'],
      envs: [{ key: 'FROM_CRI', value: 'yes' }],
    });
    expect((await containerStatus(main)).state).toBe(ContainerState.CONTAINER_CREATED);
    await call(rt(), rt().startContainer, { containerId: main }, 60_000);
    const running = await untilState(main, ContainerState.CONTAINER_RUNNING);
    expect(running.startedAt).toBeGreaterThan(0n);
    expect(running.logPath).toBe(`${LOG_DIR}/e2e_web/main/0.log`);
    const log = await eventually(async () => {
      const text = await sh(`cat ${LOG_DIR}/e2e_web/main/0.log 2>/dev/null || true`);
      return text.includes('to-stderr') && text;
    }, 60_000, 'the CRI log file');
    const lines = log.trim().split('\n');
    expect(lines.find((l) => l.includes('host='))).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) stdout F host=web-0 dns=1 user=0$/);
    expect(lines.find((l) => l.includes('to-stderr'))).toMatch(/ stderr F to-stderr$/);
    // The container is a container of the aurae pod.
    expect((await client().pods.inspect(podOf(web))).containers.map((c) => c.name)).toEqual([`c-${main.slice(0, 12)}`]);
  });

  it('container: exit codes and reasons (Completed, Error), StopContainer with a timeout, OOMKilled under a memory limit', async () => {
    const done = await createContainer(web, 'done', { command: ['/bin/true'] });
    const fail = await createContainer(web, 'fail', { command: ['/bin/sh', '-c', 'exit 3'] });
    for (const id of [done, fail]) await call(rt(), rt().startContainer, { containerId: id });
    expect(await untilState(done, ContainerState.CONTAINER_EXITED)).toMatchObject({ exitCode: 0, reason: 'Completed' });
    const failed = await untilState(fail, ContainerState.CONTAINER_EXITED);
    expect(failed).toMatchObject({ exitCode: 3, reason: 'Error' });
    expect(failed.finishedAt).toBeGreaterThanOrEqual(failed.startedAt);

    const stubborn = await createContainer(web, 'stubborn', { command: ['/bin/sh', '-c', 'trap "" TERM; while :; do sleep 1; done'] });
    await call(rt(), rt().startContainer, { containerId: stubborn });
    await untilState(stubborn, ContainerState.CONTAINER_RUNNING);
    const t = Date.now();
    await call(rt(), rt().stopContainer, { containerId: stubborn, timeout: 2n }, 60_000);
    expect(Date.now() - t).toBeGreaterThanOrEqual(2000);
    expect(await containerStatus(stubborn)).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 137 });

    const hog = await createContainer(web, 'hog', {
      command: ['/bin/dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'],
      linux: { resources: { memoryLimitInBytes: 32n * 1024n * 1024n } },
    });
    await call(rt(), rt().startContainer, { containerId: hog });
    expect(await untilState(hog, ContainerState.CONTAINER_EXITED)).toMatchObject({ reason: 'OOMKilled' });
  });

  it('exec sync: stdout, stderr and the exit code; a timeout is DEADLINE_EXCEEDED', async () => {
    const res = await call(rt(), rt().execSync, { containerId: main, cmd: ['/bin/sh', '-c', 'echo out $FROM_CRI; echo err >&2; exit 5'], timeout: 10n });
    expect([res.stdout.toString(), res.stderr.toString(), res.exitCode]).toEqual(['out yes\n', 'err\n', 5]);
    const slow = await refusal(call(rt(), rt().execSync, { containerId: main, cmd: ['/bin/sleep', '30'], timeout: 1n }));
    expect(slow.code).toBe(status.DEADLINE_EXCEEDED);
  });

  it('streaming: exec over SPDY (v4) and WebSocket (v5) with stdin and the exit code; port-forward to a server in the pod', async () => {
    const spdy = await call(rt(), rt().exec, { containerId: main, cmd: ['/bin/sh', '-c', 'cat; echo e >&2; exit 2'], tty: false, stdin: true, stdout: true, stderr: true });
    const viaSpdy = await spdyExec(await hostUrl(spdy.url), { stdin: 'through spdy\n' });
    expect([viaSpdy.stdout.toString(), viaSpdy.stderr.toString(), viaSpdy.exitCode]).toEqual(['through spdy\n', 'e\n', 2]);
    const ws = await call(rt(), rt().exec, { containerId: main, cmd: ['/bin/sh', '-c', 'cat'], tty: false, stdin: true, stdout: true, stderr: true });
    const viaWs = await wsExec(await hostUrl(ws.url), { stdin: 'through websocket\n' });
    expect([viaWs.stdout.toString(), viaWs.exitCode]).toEqual(['through websocket\n', 0]);

    server = await runSandbox('server');
    const httpd = await createContainer(server, 'httpd', { command: ['/bin/sh', '-c', 'mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www'] });
    await call(rt(), rt().startContainer, { containerId: httpd });
    await untilState(httpd, ContainerState.CONTAINER_RUNNING);
    const got = await eventually(async () => {
      const pf = await call(rt(), rt().portForward, { podSandboxId: server, port: [8080] });
      const res = await spdyPortForward(await hostUrl(pf.url), 8080, Buffer.from('GET / HTTP/1.0\r\n\r\n'));
      return res.data.toString().includes('hello-from-the-pod') && res;
    }, 30_000, 'httpd through port-forward');
    expect(got.error).toBe('');
  });

  it('security context: run as user/group with supplemental groups, read-only rootfs, no_new_privs, capabilities added and dropped; privileged gets every capability', async () => {
    const secure = await createContainer(web, 'secure', {
      command: ['/bin/sleep', '600'],
      linux: {
        securityContext: {
          runAsUser: { value: 1000n },
          runAsGroup: { value: 3000n },
          supplementalGroups: [4000n],
          readonlyRootfs: true,
          capabilities: { addCapabilities: ['SYS_TIME'], dropCapabilities: ['NET_RAW'], addAmbientCapabilities: [] },
          noNewPrivs: true,
        },
      },
    });
    await call(rt(), rt().startContainer, { containerId: secure });
    await untilState(secure, ContainerState.CONTAINER_RUNNING);
    // Shell built-ins and busybox's in-process applets only: no exec of another program (see the next test).
    const probe = 'id -u; id -g; id -G; touch /probe 2>/dev/null && echo rw || echo ro; while read k v; do case $k in CapBnd:|NoNewPrivs:) echo "$k $v";; esac; done < /proc/self/status';
    const res = await call(rt(), rt().execSync, { containerId: secure, cmd: ['/bin/sh', '-c', probe], timeout: 10n });
    const out = res.stdout.toString().trim().split('\n');
    expect({ out, err: res.stderr.toString() }).toEqual({ out: expect.arrayContaining([expect.stringMatching(/^NoNewPrivs/)]), err: '' });
    expect(out[0]).toBe('1000');
    expect(out[1]).toBe('3000');
    expect(out[2]!.split(' ')).toContain('4000');
    expect(out[3]).toBe('ro');
    const bounding = BigInt(`0x${out[4]!.split(/\s+/)[1]}`);
    expect(out[4]).toMatch(/^CapBnd:/);
    const CAP_NET_RAW = 13n;
    const CAP_SYS_TIME = 25n;
    expect([(bounding >> CAP_NET_RAW) & 1n, (bounding >> CAP_SYS_TIME) & 1n]).toEqual([0n, 1n]);
    expect(out[5]).toMatch(/^NoNewPrivs:\s+1$/);
    expect((await containerStatus(secure)).user?.linux).toMatchObject({ uid: 1000n, gid: 3000n, supplementalGroups: [4000n] });

    const privileged = await createContainer(web, 'privileged', { command: ['/bin/sleep', '600'], linux: { securityContext: { privileged: true } } });
    await call(rt(), rt().startContainer, { containerId: privileged });
    await untilState(privileged, ContainerState.CONTAINER_RUNNING);
    const caps = (await call(rt(), rt().execSync, { containerId: privileged, cmd: ['/bin/sh', '-c', 'grep CapEff /proc/self/status'], timeout: 10n })).stdout.toString();
    expect(caps).toMatch(/^CapEff:\s+0*1?f{9,}/);
  });

  it("security context: a non-root container with every capability dropped (Kubernetes' restricted profile) runs", async () => {
    const restricted = await createContainer(web, 'restricted', {
      command: ['/bin/sh', '-c', 'echo "restricted uid=$(id -u)"; exec sleep 600'],
      linux: { securityContext: { runAsUser: { value: 1000n }, capabilities: { addCapabilities: [], dropCapabilities: ['ALL'], addAmbientCapabilities: [] }, noNewPrivs: true } },
    });
    await call(rt(), rt().startContainer, { containerId: restricted });
    await untilState(restricted, ContainerState.CONTAINER_RUNNING);
    const caps = (await call(rt(), rt().execSync, { containerId: restricted, cmd: ['/bin/sh', '-c', 'grep CapEff /proc/self/status'], timeout: 10n })).stdout.toString();
    expect(caps).toMatch(/^CapEff:\s+0+$/m);
  });

  it('mounts: a read-only and a read-write host path; ContainerStatus echoes them', async () => {
    await sh('mkdir -p /tmp/cri-host/ro /tmp/cri-host/rw && echo from-the-node > /tmp/cri-host/ro/file && rm -f /tmp/cri-host/rw/out');
    const id = await createContainer(web, 'mounts', {
      command: ['/bin/sleep', '600'],
      mounts: [
        { containerPath: '/data', hostPath: '/tmp/cri-host/ro', readonly: true },
        { containerPath: '/rw', hostPath: '/tmp/cri-host/rw', readonly: false },
      ],
    });
    await call(rt(), rt().startContainer, { containerId: id });
    await untilState(id, ContainerState.CONTAINER_RUNNING);
    const out = (await call(rt(), rt().execSync, { containerId: id, cmd: ['/bin/sh', '-c', 'cat /data/file; touch /data/x 2>/dev/null && echo rw || echo ro; echo written > /rw/out'], timeout: 10n })).stdout.toString();
    expect(out).toBe('from-the-node\nro\n');
    expect((await sh('cat /tmp/cri-host/rw/out')).trim()).toBe('written');
    expect((await containerStatus(id)).mounts.map((m) => [m.containerPath, m.hostPath, m.readonly])).toEqual([
      ['/data', '/tmp/cri-host/ro', true],
      ['/rw', '/tmp/cri-host/rw', false],
    ]);
  });

  it('networking: a port mapping publishes the node port (reached from the host); sandbox sysctls apply in the pod', async () => {
    const net = await runSandbox('net', {
      portMappings: [{ protocol: 0, containerPort: 8080, hostPort: NODE_PORT, hostIp: '' }],
      linux: { sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' } },
    });
    const httpd = await createContainer(net, 'httpd', { command: ['/bin/sh', '-c', 'mkdir -p /www && echo hello-through-the-node-port > /www/index.html && exec httpd -f -p 8080 -h /www'] });
    await call(rt(), rt().startContainer, { containerId: httpd });
    await untilState(httpd, ContainerState.CONTAINER_RUNNING);
    const page = await eventually(async () => {
      const res = await fetch(`http://127.0.0.1:${nodePortOnHost}/`, { signal: AbortSignal.timeout(5_000) });
      return res.ok && (await res.text());
    }, 60_000, 'the published node port');
    expect(page).toContain('hello-through-the-node-port');
    const sysctl = (await call(rt(), rt().execSync, { containerId: httpd, cmd: ['/bin/cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start'], timeout: 10n })).stdout.toString();
    expect(sysctl.trim()).toBe('0');
    await call(rt(), rt().stopPodSandbox, { podSandboxId: net });
    await call(rt(), rt().removePodSandbox, { podSandboxId: net });
  });

  it('logs: ReopenContainerLog after kubelet renames the file; a long line is written in partial pieces', async () => {
    const id = await createContainer(web, 'logger', {
      command: ['/bin/sh', '-c', 'head -c 40000 /dev/zero | tr "\\0" a; echo; i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.2; done'],
    });
    await call(rt(), rt().startContainer, { containerId: id });
    const file = `${LOG_DIR}/e2e_web/logger/0.log`;
    await eventually(async () => Number((await sh(`grep -c line- ${file} 2>/dev/null || true`)).trim()) >= 3, 30_000, 'lines in the log');
    const first = await sh(`cat ${file}`);
    // 40000 bytes: pieces of at most the line limit, all "P" but the last "F".
    const long = first.split('\n').filter((l) => / stdout [PF] a+$/.test(l));
    expect(long.length).toBeGreaterThan(1);
    expect(long.slice(0, -1).every((l) => l.includes(' stdout P '))).toBe(true);
    expect(long.at(-1)).toContain(' stdout F ');
    expect(long.map((l) => l.slice(l.lastIndexOf(' ') + 1)).join('').length).toBe(40000);
    await sh(`mv ${file} ${file}.1`);
    await call(rt(), rt().reopenContainerLog, { containerId: id });
    const fresh = await eventually(async () => {
      const text = await sh(`cat ${file} 2>/dev/null || true`);
      return text.includes('line-') && text;
    }, 30_000, 'lines in the reopened log');
    const last = (text: string) => Math.max(...[...text.matchAll(/line-(\d+)/g)].map((m) => Number(m[1])));
    const firstNew = Math.min(...[...fresh.matchAll(/line-(\d+)/g)].map((m) => Number(m[1])));
    expect(firstNew).toBeGreaterThan(last(await sh(`cat ${file}.1`)) - 1);
    await call(rt(), rt().stopContainer, { containerId: id, timeout: 0n });
  });

  it('stats: a running container and its sandbox report cpu and memory from their cgroups', async () => {
    const cs = (await call(rt(), rt().containerStats, { containerId: main })).stats!;
    expect(cs.attributes?.id).toBe(main);
    expect(cs.cpu?.usageCoreNanoSeconds?.value).toBeGreaterThan(0n);
    expect(cs.memory?.workingSetBytes?.value).toBeGreaterThan(0n);
    const list = (await call(rt(), rt().listContainerStats, { filter: { id: '', podSandboxId: web, labelSelector: {} } })).stats;
    expect(list.map((s) => s.attributes!.id)).toContain(main);
    const ps = (await call(rt(), rt().podSandboxStats, { podSandboxId: web })).stats!;
    expect(ps.linux?.memory?.workingSetBytes?.value).toBeGreaterThan(0n);
    // The pod's own interface, as its network namespace counts it.
    expect(ps.linux?.network?.defaultInterface).toMatchObject({ name: 'eth0' });
    expect(ps.linux!.network!.defaultInterface!.rxBytes!.value).toBeGreaterThan(0n);
    expect(ps.linux?.containers.map((c) => c.attributes!.id)).toContain(main);
  });

  it('events: GetContainerEvents streams created, started, stopped and deleted', async () => {
    const events: ContainerEventResponse[] = [];
    const stream = rt().getContainerEvents({});
    stream.on('data', (e: ContainerEventResponse) => events.push(e));
    stream.on('error', () => undefined);
    await call(rt(), rt().version, { version: 'v1' }); // the stream's request is on the server before the calls below
    const id = await createContainer(web, 'short', { command: ['/bin/sh', '-c', 'exit 0'] });
    await call(rt(), rt().startContainer, { containerId: id });
    await untilState(id, ContainerState.CONTAINER_EXITED);
    await call(rt(), rt().removeContainer, { containerId: id });
    const kinds = await eventually(async () => {
      const mine = events.filter((e) => e.containerId === id).map((e) => e.containerEventType);
      return mine.length >= 4 && mine;
    }, 30_000, 'four events');
    stream.cancel();
    expect(kinds).toEqual([
      ContainerEventType.CONTAINER_CREATED_EVENT,
      ContainerEventType.CONTAINER_STARTED_EVENT,
      ContainerEventType.CONTAINER_STOPPED_EVENT,
      ContainerEventType.CONTAINER_DELETED_EVENT,
    ]);
  });

  it('idempotence: Stop and Remove twice, and of ids that never existed, answer OK', async () => {
    const id = await runSandbox('idem');
    const c = await createContainer(id, 'c', { command: ['/bin/sleep', '600'] });
    await call(rt(), rt().startContainer, { containerId: c });
    for (let i = 0; i < 2; i++) await call(rt(), rt().stopContainer, { containerId: c, timeout: 0n });
    for (let i = 0; i < 2; i++) await call(rt(), rt().removeContainer, { containerId: c });
    for (let i = 0; i < 2; i++) await call(rt(), rt().stopPodSandbox, { podSandboxId: id });
    expect((await call(rt(), rt().podSandboxStatus, { podSandboxId: id, verbose: false })).status?.state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    for (let i = 0; i < 2; i++) await call(rt(), rt().removePodSandbox, { podSandboxId: id });
    await call(rt(), rt().stopPodSandbox, { podSandboxId: 'f'.repeat(64) });
    await call(rt(), rt().removePodSandbox, { podSandboxId: 'f'.repeat(64) });
    await call(rt(), rt().stopContainer, { containerId: 'f'.repeat(64), timeout: 1n });
    await call(rt(), rt().removeContainer, { containerId: 'f'.repeat(64) });
    expect((await client().pods.list()).map((p) => p.name)).not.toContain(podOf(id));
  });

  it('kill -9 of auraed: afterwards every sandbox and container is listed with its true state', async () => {
    const stopped = await runSandbox('stopped-before');
    await call(rt(), rt().stopPodSandbox, { podSandboxId: stopped });
    const created = await createContainer(web, 'never-started', { command: ['/bin/true'] });
    const sandboxesBefore = (await call(rt(), rt().listPodSandbox, {})).items;
    const containersBefore = (await call(rt(), rt().listContainers, {})).containers;
    const from = booted().vm.console.length;
    await sh('kill -9 "$(cat /run/aurae/auraed.pid)"');
    await booted().waitReady(180_000, from);
    reconnect();
    sdk?.close();
    sdk = null;
    await eventually(async () => (await call(rt(), rt().version, { version: 'v1' }, 2000)).runtimeName === 'aurae', 60_000, 'the CRI after the restart');
    const sandboxesAfter = (await call(rt(), rt().listPodSandbox, {})).items;
    expect(sandboxesAfter.map((s) => s.id).sort()).toEqual(sandboxesBefore.map((s) => s.id).sort());
    const stateOf = (id: string) => sandboxesAfter.find((s) => s.id === id)!.state;
    expect(stateOf(stopped)).toBe(PodSandboxState.SANDBOX_NOTREADY);
    expect(stateOf(web)).toBe(PodSandboxState.SANDBOX_READY);
    const containersAfter = (await call(rt(), rt().listContainers, {})).containers;
    expect(containersAfter.map((c) => c.id).sort()).toEqual(containersBefore.map((c) => c.id).sort());
    // Created stays created; exited stays exited with its code; labels and metadata survive.
    expect(await containerStatus(created)).toMatchObject({ state: ContainerState.CONTAINER_CREATED, metadata: { name: 'never-started' } });
    const before = new Map(containersBefore.map((c) => [c.id, c]));
    for (const c of containersAfter) {
      expect(c.labels).toEqual(before.get(c.id)!.labels);
      if (before.get(c.id)!.state === ContainerState.CONTAINER_EXITED) expect(c.state).toBe(ContainerState.CONTAINER_EXITED);
    }
    // The long-running container: whatever the CRI says is true on the node (a CRI pod never restarts it itself).
    const m = await containerStatus(main);
    if (m.state === ContainerState.CONTAINER_RUNNING) {
      expect((await call(rt(), rt().execSync, { containerId: main, cmd: ['/bin/true'], timeout: 10n })).exitCode).toBe(0);
    } else {
      expect(m.state).toBe(ContainerState.CONTAINER_EXITED);
      expect(m.finishedAt).toBeGreaterThan(0n);
      expect((await refusal(call(rt(), rt().execSync, { containerId: main, cmd: ['/bin/true'], timeout: 10n }))).code).toBe(status.FAILED_PRECONDITION);
    }
    // The aurae view agrees.
    const pods = (await client().pods.list()).map((p) => p.name);
    for (const s of sandboxesAfter) expect(pods).toContain(podOf(s.id));
  });

  it('runtime handler vm: the sandbox is a child microVM; its container runs there and ends with its code', async () => {
    const vm = await runSandbox('in-vm', {}, 'vm');
    expect((await call(rt(), rt().podSandboxStatus, { podSandboxId: vm, verbose: false })).status).toMatchObject({ state: PodSandboxState.SANDBOX_READY, runtimeHandler: 'vm' });
    expect((await client().pods.inspect(podOf(vm))).sandbox).toBe('vm');
    const id = await createContainer(vm, 'hello', { command: ['/bin/sh', '-c', 'echo hello-from-the-vm; exit 4'] });
    await call(rt(), rt().startContainer, { containerId: id }, 180_000);
    expect(await untilState(id, ContainerState.CONTAINER_EXITED, 180_000)).toMatchObject({ exitCode: 4, reason: 'Error' });
    await call(rt(), rt().removeContainer, { containerId: id }, 60_000);
    await call(rt(), rt().stopPodSandbox, { podSandboxId: vm }, 120_000);
    await call(rt(), rt().removePodSandbox, { podSandboxId: vm }, 120_000);
    expect((await client().pods.list()).map((p) => p.name)).not.toContain(podOf(vm));
  }, 600_000);

  it('cleanup: removing every sandbox removes its aurae pod; nothing is left', async () => {
    for (const s of (await call(rt(), rt().listPodSandbox, {})).items) {
      await call(rt(), rt().stopPodSandbox, { podSandboxId: s.id }, 60_000);
      await call(rt(), rt().removePodSandbox, { podSandboxId: s.id }, 60_000);
    }
    expect((await call(rt(), rt().listPodSandbox, {})).items).toEqual([]);
    expect((await call(rt(), rt().listContainers, {})).containers).toEqual([]);
    expect((await client().pods.list()).filter((p) => p.name.startsWith('k8s-'))).toEqual([]);
  });
  // Terminals and Attach (helper T): Exec with tty=true runs `crun exec --console-socket` (the pty's master comes to
  // auraed through the native addon); containers created with tty/stdin are attachable. Its own sandbox, removed
  // at the end (the cleanup above already ran).
  describe('streaming: terminals and attach', () => {
    let sandbox = '';
    let shell = '';
    beforeAll(async () => {
      // Pulled again (a no-op when the image group ran): this group also runs alone (-t "terminals and attach").
      await call(img(), img().pullImage, { image: { image: IMAGE, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } }, 120_000);
      sandbox = await runSandbox('terminals');
      shell = await createContainer(sandbox, 'sleeper', { command: ['/bin/sleep', '600'] });
      await call(rt(), rt().startContainer, { containerId: shell });
      await untilState(shell, ContainerState.CONTAINER_RUNNING);
    }, 300_000);
    afterAll(async () => {
      if (!sandbox || !node) return;
      await call(rt(), rt().stopPodSandbox, { podSandboxId: sandbox }, 60_000).catch(() => undefined);
      await call(rt(), rt().removePodSandbox, { podSandboxId: sandbox }, 60_000).catch(() => undefined);
    });

    it('exec -t over SPDY and WebSocket: the process is on /dev/pts/N, a resize is its size, its exit code comes back', async () => {
      const spdy = await call(rt(), rt().exec, { containerId: shell, cmd: ['/bin/sh'], tty: true, stdin: true, stdout: true, stderr: false });
      const viaSpdy = await spdyExec(await hostUrl(spdy.url), { tty: true, resize: [{ width: 100, height: 40 }], stdin: 'tty; stty size; exit 3\n' });
      expect(viaSpdy.stdout.toString()).toMatch(/\/dev\/pts\/\d+\r\n/);
      expect(viaSpdy.stdout.toString()).toContain('40 100\r\n');
      expect([viaSpdy.stderr.length, viaSpdy.exitCode]).toEqual([0, 3]);
      const ws = await call(rt(), rt().exec, { containerId: shell, cmd: ['/bin/sh'], tty: true, stdin: true, stdout: true, stderr: false });
      const viaWs = await wsExec(await hostUrl(ws.url), { tty: true, resize: [{ width: 132, height: 50 }], stdin: 'stty size; echo to-stderr >&2; exit 0\n' });
      // One output: a terminal's stderr is part of it.
      expect(viaWs.stdout.toString()).toContain('50 132\r\n');
      expect(viaWs.stdout.toString()).toContain('to-stderr\r\n');
      expect(viaWs.exitCode).toBe(0);
    });

    it('attach to a tty container: its terminal, its stdin and resize; its output is also its log; it ends with the container', async () => {
      const id = await createContainer(sandbox, 'tty', { command: ['/bin/sh'], tty: true, stdin: true });
      await call(rt(), rt().startContainer, { containerId: id });
      await untilState(id, ContainerState.CONTAINER_RUNNING);
      const res = await call(rt(), rt().attach, { containerId: id, tty: true, stdin: true, stdout: true, stderr: false });
      const out = await spdyExec(await hostUrl(res.url), { tty: true, resize: [{ width: 90, height: 30 }], stdin: 'stty size; echo attached-$((6*7)); exit 4\n' });
      expect(out.stdout.toString()).toContain('30 90\r\n');
      expect(out.stdout.toString()).toContain('attached-42\r\n');
      expect(await untilState(id, ContainerState.CONTAINER_EXITED)).toMatchObject({ exitCode: 4 });
      const s = await containerStatus(id);
      // CRI log format: "<time> stdout F attached-42" (a terminal's output is stdout, its CR dropped).
      expect(await sh(`cat ${s.logPath}`)).toMatch(/ stdout F attached-42$/m);
    });

    it('attach to a stdin container (stdin_once): what the client sends reaches cat, its end ends cat, the echo comes back', async () => {
      const id = await createContainer(sandbox, 'cat', { command: ['/bin/cat'], stdin: true, stdinOnce: true });
      await call(rt(), rt().startContainer, { containerId: id });
      await untilState(id, ContainerState.CONTAINER_RUNNING);
      const res = await call(rt(), rt().attach, { containerId: id, tty: false, stdin: true, stdout: true, stderr: true });
      const out = await wsExec(await hostUrl(res.url), { stdin: 'through attach\n' });
      expect(out.stdout.toString()).toBe('through attach\n');
      expect(await untilState(id, ContainerState.CONTAINER_EXITED)).toMatchObject({ exitCode: 0 });
      // Attach with stdin to a container created without it is refused.
      const noStdin = await refusal(call(rt(), rt().attach, { containerId: shell, tty: false, stdin: true, stdout: true, stderr: true }));
      expect(noStdin.code).toBe(status.FAILED_PRECONDITION);
    });
  });
});
