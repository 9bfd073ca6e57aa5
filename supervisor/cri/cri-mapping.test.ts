// The CRI ↔ pods mapping, pure: requests → PodSpec/ContainerSpec (and refusals naming the CRI field), pods status →
// CRI states, reasons, exit codes and ns timestamps, and the list filters (id prefix, state, labels).
import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import {
  ContainerState,
  CreateContainerRequest,
  type DeepPartial,
  MountPropagation,
  NamespaceMode,
  PodSandboxState,
  Protocol,
  RunPodSandboxRequest,
  SecurityProfile_ProfileType,
} from '../gen/runtime/v1/api';
import type { PodStatus } from '../pods';
import {
  containerMatches,
  containerNameFor,
  containerPlan,
  criContainerState,
  exitOf,
  newCriId,
  podNameFor,
  resolveId,
  sandboxMatches,
  sandboxPlan,
  sharesToWeight,
  toCriContainer,
  toCriContainerStatus,
  toPodSandbox,
  toPodSandboxStatus,
} from './cri-mapping';
import { hex, record } from './testing';

type RunPartial = DeepPartial<RunPodSandboxRequest>;
type ConfigPartial = DeepPartial<CreateContainerRequest>['config'];

const ID = hex('a');
const CID = hex('b');
const NOW = 1_700_000_000_123;

function refusal(fn: () => unknown): AuraeError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AuraeError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

const runRequest = (over: RunPartial = {}) =>
  RunPodSandboxRequest.fromPartial(<RunPartial>{
    config: { metadata: { name: 'nginx', uid: 'u-1', namespace: 'default', attempt: 1 }, logDirectory: '/var/log/pods/default_nginx_u-1', labels: { app: 'web' }, annotations: { note: 'kept' } },
    ...over,
  });

const image = record({ name: '10.0.2.100:5000/busybox', tags: ['latest'], digest: `sha256:${hex('1')}`, configDigest: `sha256:${hex('c')}` });

function sandboxRecord(over: RunPartial = {}) {
  return sandboxPlan(runRequest(over), ID, NOW).record;
}

const createRequest = (config: ConfigPartial = {}) =>
  CreateContainerRequest.fromPartial(<DeepPartial<CreateContainerRequest>>{ podSandboxId: ID, config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, logPath: 'app/0.log', ...config } });

describe('ids and names', () => {
  it('ids are 64 lowercase hex; the pod is k8s-<12 hex>, the container c-<12 hex>', () => {
    const id = newCriId();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(newCriId()).not.toBe(id);
    expect(podNameFor(ID)).toBe('k8s-aaaaaaaaaaaa');
    expect(containerNameFor(CID)).toBe('c-bbbbbbbbbbbb');
  });

  it('resolveId: exact, unique prefix, none (null), ambiguous and empty are refused naming the field', () => {
    const items = [{ id: `abc${hex('1').slice(3)}` }, { id: `abd${hex('2').slice(3)}` }];
    expect(resolveId(items, items[0]!.id, 'container_id', 'container')).toBe(items[0]);
    expect(resolveId(items, 'abc', 'container_id', 'container')).toBe(items[0]);
    expect(resolveId(items, 'ff', 'container_id', 'container')).toBeNull();
    expect(refusal(() => resolveId(items, 'ab', 'container_id', 'container')).message).toMatch(/^container_id: "ab" matches 2 containers/);
    expect(refusal(() => resolveId(items, '', 'pod_sandbox_id', 'sandbox')).message).toMatch(/^pod_sandbox_id: required/);
  });
});

describe('RunPodSandbox → a sandbox pod', () => {
  it('maps metadata, handler, hostname, DNS, port mappings, resources; the record keeps labels and annotations', () => {
    const { spec, record: rec } = sandboxPlan(
      runRequest({
        runtimeHandler: 'cell',
        config: {
          metadata: { name: 'nginx', uid: 'u-1', namespace: 'default', attempt: 2 },
          hostname: 'nginx-host',
          logDirectory: '/var/log/pods/x',
          dnsConfig: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local'], options: ['ndots:5'] },
          portMappings: [
            { protocol: Protocol.TCP, containerPort: 80, hostPort: 8080, hostIp: '' },
            { protocol: Protocol.UDP, containerPort: 53, hostPort: 5353, hostIp: '0.0.0.0' },
            { protocol: Protocol.TCP, containerPort: 443, hostPort: 0, hostIp: '' },
          ],
          labels: { app: 'web' },
          annotations: { a: 'b' },
          linux: { cgroupParent: '/kubepods/pod-u-1', resources: { memoryLimitInBytes: 64n * 1024n * 1024n, cpuShares: 1024n }, sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' } },
        },
      }),
      ID,
      NOW,
    );
    expect(spec).toEqual({
      name: 'k8s-aaaaaaaaaaaa',
      sandbox: 'cell',
      containers: [],
      env: {},
      restart: 'never',
      limits: { memoryMax: 64 * 1024 * 1024, pidsMax: null, cpuWeight: sharesToWeight(1024) },
      hostname: 'nginx-host',
      dns: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local'], options: ['ndots:5'] },
      publish: [
        { nodePort: 8080, podPort: 80, protocol: 'tcp' },
        { nodePort: 5353, podPort: 53, protocol: 'udp' },
      ],
    });
    expect(rec).toMatchObject({ id: ID, pod: 'k8s-aaaaaaaaaaaa', name: 'nginx', uid: 'u-1', namespace: 'default', attempt: 2, labels: { app: 'web' }, annotations: { a: 'b' }, runtimeHandler: 'cell', ready: true, createdAt: NOW });
    expect(rec.extra).toMatchObject({ cgroupParent: '/kubepods/pod-u-1', namespaces: { network: 'POD', pid: 'POD', ipc: 'POD' }, sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' } });
    expect(sharesToWeight(1024)).toBe(39);
    expect(sharesToWeight(2)).toBe(1);
    expect(sharesToWeight(262_144)).toBe(10_000);
  });

  it('runtime handlers: "" and "cell" → cell, "vm" → vm, anything else refused naming runtime_handler', () => {
    expect(sandboxPlan(runRequest({ runtimeHandler: '' }), ID, NOW).spec.sandbox).toBe('cell');
    expect(sandboxPlan(runRequest({ runtimeHandler: 'vm' }), ID, NOW).spec.sandbox).toBe('vm');
    const err = refusal(() => sandboxPlan(runRequest({ runtimeHandler: 'kata' }), ID, NOW));
    expect([err.code, err.message]).toEqual(['INVALID_ARGUMENT', 'runtime_handler: "kata" is not a runtime handler of this node: "cell" (the default, also "") or "vm"']);
  });

  it('refusals name the CRI field', () => {
    const cases: [RunPartial, string, string][] = [
      [{ config: undefined }, 'INVALID_ARGUMENT', 'config: required'],
      [{ config: { metadata: { name: '' } } }, 'INVALID_ARGUMENT', 'config.metadata.name: required'],
      [{ config: { metadata: { name: 'x' }, logDirectory: 'relative/dir' } }, 'INVALID_ARGUMENT', 'config.log_directory: "relative/dir" is not an absolute path'],
      [{ config: { metadata: { name: 'x' }, portMappings: [{ protocol: Protocol.SCTP, containerPort: 1, hostPort: 2 }] } }, 'UNIMPLEMENTED', 'config.port_mappings[0].protocol: only TCP and UDP'],
      [{ config: { metadata: { name: 'x' }, portMappings: [{ containerPort: 80, hostPort: 80, hostIp: '127.0.0.1' }] } }, 'UNIMPLEMENTED', 'config.port_mappings[0].host_ip: publishing on one node address'],
      [{ config: { metadata: { name: 'x' }, portMappings: [{ containerPort: 0, hostPort: 80 }] } }, 'INVALID_ARGUMENT', 'config.port_mappings[0].container_port: 0 is not a port'],
      [{ config: { metadata: { name: 'x' }, linux: { securityContext: { namespaceOptions: { network: NamespaceMode.CONTAINER } } } } }, 'INVALID_ARGUMENT', 'config.linux.security_context.namespace_options.network: CONTAINER is not a network mode'],
      [{ config: { metadata: { name: 'x' }, linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET } } } } }, 'UNIMPLEMENTED', 'config.linux.security_context.namespace_options.pid: TARGET'],
      [{ config: { metadata: { name: 'x' }, linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: NamespaceMode.POD } } } } } }, 'UNIMPLEMENTED', 'config.linux.security_context.namespace_options.userns_options.mode: user namespaces'],
      [{ config: { metadata: { name: 'x' }, linux: { securityContext: { seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: '/p.json' } } } } }, 'UNIMPLEMENTED', 'config.linux.security_context.seccomp: Localhost seccomp profiles'],
      [{ runtimeHandler: 'vm', config: { metadata: { name: 'x' }, portMappings: [{ containerPort: 80, hostPort: 80 }] } }, 'UNIMPLEMENTED', 'config.port_mappings: host ports of a "vm"'],
      [{ config: { metadata: { name: 'x' }, dnsConfig: { servers: ['not an ip'] } } }, 'INVALID_ARGUMENT', 'config.dns_config.servers[0]: "not an ip" is not an IP address'],
    ];
    for (const [over, code, message] of cases) {
      const err = refusal(() => sandboxPlan(RunPodSandboxRequest.fromPartial(over as never), ID, NOW));
      expect([err.code, err.message.slice(0, message.length)]).toEqual([code, message]);
    }
  });

  it('a host-network sandbox records NODE for its containers', () => {
    const rec = sandboxRecord({ config: { metadata: { name: 'kube-proxy' }, linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER } } } } });
    expect(rec.extra.namespaces).toEqual({ network: 'NODE', pid: 'CONTAINER', ipc: 'POD' });
  });
});

describe('CreateContainer → a container of the pod', () => {
  const sandbox = sandboxRecord();

  it('maps command, args, env, working dir, image (by manifest digest), mounts, security and resources', () => {
    const { spec, record: rec } = containerPlan(
      createRequest({
        command: ['/bin/sh'],
        args: ['-c', 'echo hi'],
        workingDir: '/work',
        envs: [
          { key: 'A', value: '1' },
          { key: 'my.dotted-name', value: 'ok' },
        ],
        mounts: [
          { containerPath: '/data', hostPath: '/var/lib/kubelet/pods/u/volumes/x', readonly: true, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER },
          { containerPath: '/shared', hostPath: '/mnt/shared', propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL },
        ],
        labels: { 'io.kubernetes.container.name': 'app' },
        annotations: { 'io.kubernetes.container.hash': '1234' },
        linux: {
          resources: { cpuShares: 512n, cpuQuota: 50_000n, cpuPeriod: 100_000n, memoryLimitInBytes: 32n * 1024n * 1024n, oomScoreAdj: 1000n, unified: { 'memory.swap.max': '0' } },
          securityContext: {
            runAsUser: { value: 1000n },
            runAsGroup: { value: 3000n },
            supplementalGroups: [4000n],
            readonlyRootfs: true,
            capabilities: { addCapabilities: ['NET_ADMIN'], dropCapabilities: ['ALL'], addAmbientCapabilities: [] },
            noNewPrivs: true,
            maskedPaths: ['/proc/kcore'],
            readonlyPaths: ['/proc/sys'],
            namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD },
          },
        },
      }),
      sandbox,
      image,
      CID,
      NOW,
    );
    expect(spec).toEqual({
      name: 'c-bbbbbbbbbbbb',
      image: `10.0.2.100:5000/busybox@sha256:${hex('1')}`,
      command: ['/bin/sh'],
      args: ['-c', 'echo hi'],
      env: { A: '1', 'my.dotted-name': 'ok' },
      workingDir: '/work',
      user: '1000:3000',
      readOnlyRootfs: true,
      mounts: [
        { hostPath: '/var/lib/kubelet/pods/u/volumes/x', containerPath: '/data', readonly: true, propagation: 'rslave' },
        { hostPath: '/mnt/shared', containerPath: '/shared', readonly: false, propagation: 'rshared' },
      ],
      security: {
        supplementalGroups: [4000],
        capAdd: ['CAP_NET_ADMIN'],
        capDrop: ['ALL'],
        noNewPrivs: true,
        maskedPaths: ['/proc/kcore'],
        readonlyPaths: ['/proc/sys'],
        namespaces: { pid: 'container', ipc: 'pod', network: 'pod' },
      },
      resources: { cpuShares: 512, cpuQuota: 50_000, cpuPeriod: 100_000, memoryLimit: 32 * 1024 * 1024, oomScoreAdj: 1000 },
    });
    expect(rec).toMatchObject({
      id: CID,
      sandboxId: ID,
      container: 'c-bbbbbbbbbbbb',
      name: 'app',
      attempt: 0,
      image: 'busybox',
      imageId: `sha256:${hex('c')}`,
      imageRef: `10.0.2.100:5000/busybox@sha256:${hex('1')}`,
      logPath: '/var/log/pods/default_nginx_u-1/app/0.log',
      extra: { user: { uid: 1000, gid: 3000, supplementalGroups: [4000] } },
    });
  });

  it('tty and stdin: the container gets a terminal / a kept stdin, the record keeps them for Attach; not in a VM sandbox', () => {
    const both = containerPlan(createRequest({ tty: true, stdin: true, stdinOnce: true }), sandboxRecord(), image, CID, NOW);
    expect([both.spec.tty, both.spec.stdin, both.record.extra.stdio]).toEqual([true, true, { tty: true, stdin: true, stdinOnce: true }]);
    const stdin = containerPlan(createRequest({ stdin: true }), sandboxRecord(), image, CID, NOW);
    expect([stdin.spec.tty, stdin.spec.stdin, stdin.record.extra.stdio]).toEqual([undefined, true, { tty: false, stdin: true, stdinOnce: false }]);
    // stdin_once alone means nothing (no stdin); neither asked: no stdio at all.
    const none = containerPlan(createRequest({ stdinOnce: true }), sandboxRecord(), image, CID, NOW);
    expect([none.spec.tty, none.spec.stdin, none.record.extra.stdio]).toEqual([undefined, undefined, undefined]);
    const vm = sandboxRecord({ runtimeHandler: 'vm' });
    const err = refusal(() => containerPlan(createRequest({ tty: true }), vm, image, CID, NOW));
    expect([err.code, err.message]).toEqual(['UNIMPLEMENTED', expect.stringMatching(/^config\.tty: .* not supported in VM sandboxes yet/)]);
  });

  it("a user by name; the sandbox's namespaces and sysctls when the container gives none", () => {
    const sb = sandboxRecord({ config: { metadata: { name: 'x' }, linux: { sysctls: { 'net.core.somaxconn': '1024' }, securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } } } });
    const { spec } = containerPlan(createRequest({ linux: { securityContext: { runAsUsername: 'nobody' } } }), sb, image, CID, NOW);
    expect(spec.user).toBe('nobody');
    expect(spec.sysctls).toEqual({ 'net.core.somaxconn': '1024' });
    // A shared (POD) pid namespace is served as the container's own (no pause process to hold it).
    expect(spec.security?.namespaces).toEqual({ pid: 'container', ipc: 'pod', network: 'node' });
  });

  it('refusals name the CRI field', () => {
    const cases: [Parameters<typeof createRequest>[0], string, string][] = [
      [{ metadata: { name: '' } }, 'INVALID_ARGUMENT', 'config.metadata.name: required'],
      [{ devices: [{ containerPath: '/dev/x', hostPath: '/dev/x', permissions: 'rw' }] }, 'UNIMPLEMENTED', 'config.devices:'],
      [{ logPath: '../escape.log' }, 'INVALID_ARGUMENT', 'config.log_path: "../escape.log" is not a path relative'],
      [{ envs: [{ key: 'A=B', value: '' }] }, 'INVALID_ARGUMENT', 'config.envs[0].key: "A=B" is not a variable name'],
      [{ workingDir: 'rel' }, 'INVALID_ARGUMENT', 'config.working_dir: "rel" is not an absolute path'],
      [{ mounts: [{ containerPath: 'data', hostPath: '/x' }] }, 'INVALID_ARGUMENT', 'config.mounts[0].container_path: "data" is not an absolute path'],
      [{ mounts: [{ containerPath: '/d', hostPath: '/x', recursiveReadOnly: true, readonly: true }] }, 'UNIMPLEMENTED', 'config.mounts[0].recursive_read_only'],
      [{ mounts: [{ containerPath: '/d', image: { image: 'busybox' } }] }, 'UNIMPLEMENTED', 'config.mounts[0].image: image volumes'],
      [{ linux: { resources: { cpusetCpus: '0-1' } } }, 'UNIMPLEMENTED', 'config.linux.resources.cpuset_cpus'],
      [{ linux: { resources: { unified: { 'memory.high': '100' } } } }, 'UNIMPLEMENTED', 'config.linux.resources.unified["memory.high"]'],
      [{ linux: { resources: { oomScoreAdj: 2000n } } }, 'INVALID_ARGUMENT', 'config.linux.resources.oom_score_adj: 2000 is out of range'],
      [{ linux: { securityContext: { runAsGroup: { value: 5n } } } }, 'INVALID_ARGUMENT', 'config.linux.security_context.run_as_group: needs run_as_user'],
      [{ linux: { securityContext: { runAsUser: { value: 1n }, runAsUsername: 'x' } } }, 'INVALID_ARGUMENT', 'config.linux.security_context.run_as_username: set either'],
      [{ linux: { securityContext: { capabilities: { addCapabilities: ['bad cap'] } } } }, 'INVALID_ARGUMENT', 'config.linux.security_context.capabilities.add_capabilities[0]: "bad cap" is not a capability'],
      [{ linux: { securityContext: { capabilities: { addAmbientCapabilities: ['NET_RAW'] } } } }, 'UNIMPLEMENTED', 'config.linux.security_context.capabilities.add_ambient_capabilities'],
    ];
    for (const [config, code, message] of cases) {
      const err = refusal(() => containerPlan(createRequest(config), sandbox, image, CID, NOW));
      expect([err.code, err.message.slice(0, message.length)]).toEqual([code, message]);
    }
  });

  it('NODE namespaces are refused in a vm sandbox', () => {
    const vm = sandboxRecord({ runtimeHandler: 'vm' });
    const err = refusal(() => containerPlan(createRequest({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.NODE } } } }), vm, image, CID, NOW));
    expect(err.message).toMatch(/^config\.linux\.security_context\.namespace_options: NODE namespaces are not possible in a "vm"/);
  });
});

describe('status → CRI', () => {
  const sandbox = sandboxRecord();
  const { record: crec } = containerPlan(createRequest(), sandbox, image, CID, NOW);
  const base = { name: crec.container, image: 'x', imageDigest: '', pid: null, restarts: 0, createdAt: NOW, startedAt: null as number | null, finishedAt: null as number | null };

  it('states: pulling/created → CREATED, running → RUNNING, exited/failed → EXITED, gone → UNKNOWN', () => {
    expect(criContainerState({ state: 'pulling' })).toBe(ContainerState.CONTAINER_CREATED);
    expect(criContainerState({ state: 'created' })).toBe(ContainerState.CONTAINER_CREATED);
    expect(criContainerState({ state: 'running' })).toBe(ContainerState.CONTAINER_RUNNING);
    expect(criContainerState({ state: 'exited' })).toBe(ContainerState.CONTAINER_EXITED);
    expect(criContainerState({ state: 'failed' })).toBe(ContainerState.CONTAINER_EXITED);
    expect(criContainerState(undefined)).toBe(ContainerState.CONTAINER_UNKNOWN);
  });

  it('reasons and exit codes: Completed (0), Error (code, or 128+N for a signal), OOMKilled', () => {
    expect(exitOf({ ...base, state: 'exited', exit: { code: 0, signal: null, oomKilled: false } })).toEqual({ exitCode: 0, reason: 'Completed', message: '' });
    expect(exitOf({ ...base, state: 'failed', exit: { code: 3, signal: null, oomKilled: false } })).toEqual({ exitCode: 3, reason: 'Error', message: '' });
    expect(exitOf({ ...base, state: 'failed', exit: { code: null, signal: 'SIGKILL', oomKilled: false } })).toEqual({ exitCode: 137, reason: 'Error', message: 'killed by SIGKILL' });
    expect(exitOf({ ...base, state: 'failed', exit: { code: 137, signal: null, oomKilled: true } })).toMatchObject({ exitCode: 137, reason: 'OOMKilled' });
    expect(exitOf({ ...base, state: 'running', exit: null })).toEqual({ exitCode: 0, reason: '', message: '' });
  });

  it('ContainerStatus: ns timestamps (0 = not yet), metadata, labels, annotations, log path, mounts, image', () => {
    const created = toCriContainerStatus(crec, { ...base, state: 'created', exit: null });
    expect(created).toMatchObject({ id: CID, state: ContainerState.CONTAINER_CREATED, createdAt: BigInt(NOW) * 1_000_000n, startedAt: 0n, finishedAt: 0n, metadata: { name: 'app', attempt: 0 } });
    const exited = toCriContainerStatus(crec, { ...base, state: 'exited', startedAt: NOW + 1, finishedAt: NOW + 2, exit: { code: 0, signal: null, oomKilled: false } });
    expect(exited).toMatchObject({
      state: ContainerState.CONTAINER_EXITED,
      startedAt: BigInt(NOW + 1) * 1_000_000n,
      finishedAt: BigInt(NOW + 2) * 1_000_000n,
      exitCode: 0,
      reason: 'Completed',
      logPath: '/var/log/pods/default_nginx_u-1/app/0.log',
      imageRef: crec.imageRef,
      imageId: crec.imageId,
      image: { image: 'busybox' },
    });
    // Running without a start time from the runtime yet: when StartContainer returned.
    const started = { ...crec, startedAt: NOW + 5 };
    expect(toCriContainerStatus(started, { ...base, state: 'running', exit: null }).startedAt).toBe(BigInt(NOW + 5) * 1_000_000n);
    // Started in this auraed's life and "created": still starting. Started before it began: it lost its process.
    expect(toCriContainerStatus(started, { ...base, state: 'created', exit: null }, NOW + 1).state).toBe(ContainerState.CONTAINER_CREATED);
    expect(toCriContainerStatus(started, { ...base, state: 'created', exit: null }, NOW + 60_000)).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 255, reason: 'Unknown', finishedAt: BigInt(NOW + 60_000) * 1_000_000n });
    // The pods runtime lost the container: UNKNOWN, with a reason.
    expect(toCriContainerStatus(crec, undefined)).toMatchObject({ state: ContainerState.CONTAINER_UNKNOWN, reason: 'Unknown' });
    expect(toCriContainer(crec, { ...base, state: 'running', exit: null })).toMatchObject({ id: CID, podSandboxId: ID, state: ContainerState.CONTAINER_RUNNING, imageRef: crec.imageRef });
  });

  it('sandbox: READY while its pod runs and it was not stopped; NOTREADY when stopped or gone; network ip', () => {
    const pod = { name: sandbox.pod, sandbox: 'cell', state: 'running', containers: [], createdAt: NOW, ip: '10.88.0.5' } as unknown as PodStatus;
    expect(toPodSandbox(sandbox, pod)).toEqual({
      id: ID,
      metadata: { name: 'nginx', uid: 'u-1', namespace: 'default', attempt: 1 },
      state: PodSandboxState.SANDBOX_READY,
      createdAt: BigInt(NOW) * 1_000_000n,
      labels: { app: 'web' },
      annotations: { note: 'kept' },
      runtimeHandler: '',
    });
    expect(toPodSandbox({ ...sandbox, ready: false }, pod).state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    expect(toPodSandbox(sandbox, { ...pod, state: 'stopped' }).state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    expect(toPodSandbox(sandbox, undefined).state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    expect(toPodSandboxStatus(sandbox, pod)).toMatchObject({ network: { ip: '10.88.0.5' }, linux: { namespaces: { options: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD } } } });
  });
});

describe('filters', () => {
  const a = { id: `aa${hex('1').slice(2)}`, state: PodSandboxState.SANDBOX_READY, labels: { app: 'web', tier: 'front' } } as unknown as ReturnType<typeof toPodSandbox>;
  const b = { id: `ab${hex('2').slice(2)}`, state: PodSandboxState.SANDBOX_NOTREADY, labels: { app: 'db' } } as unknown as ReturnType<typeof toPodSandbox>;

  it('sandboxes by id (prefix too), state and labels (all must match)', () => {
    const pick = (filter: Parameters<typeof sandboxMatches>[0]) => [a, b].filter((s) => sandboxMatches(filter, s)).map((s) => s.id.slice(0, 2));
    expect(pick(undefined)).toEqual(['aa', 'ab']);
    expect(pick({ id: a.id, labelSelector: {} })).toEqual(['aa']);
    expect(pick({ id: 'ab', labelSelector: {} })).toEqual(['ab']);
    expect(pick({ id: '', state: { state: PodSandboxState.SANDBOX_READY }, labelSelector: {} })).toEqual(['aa']);
    expect(pick({ id: '', labelSelector: { app: 'web', tier: 'front' } })).toEqual(['aa']);
    expect(pick({ id: '', labelSelector: { app: 'web', tier: 'back' } })).toEqual([]);
    expect(pick({ id: 'a', state: { state: PodSandboxState.SANDBOX_NOTREADY }, labelSelector: { app: 'db' } })).toEqual(['ab']);
  });

  it('containers by id, sandbox id (prefixes), state and labels', () => {
    const c1 = { id: hex('1'), podSandboxId: hex('a'), state: ContainerState.CONTAINER_RUNNING, labels: { x: '1' } } as unknown as ReturnType<typeof toCriContainer>;
    const c2 = { id: hex('2'), podSandboxId: hex('b'), state: ContainerState.CONTAINER_EXITED, labels: { x: '2' } } as unknown as ReturnType<typeof toCriContainer>;
    const pick = (filter: Parameters<typeof containerMatches>[0]) => [c1, c2].filter((c) => containerMatches(filter, c)).map((c) => c.id[0]);
    expect(pick({ id: '', podSandboxId: 'bbb', labelSelector: {} })).toEqual(['2']);
    expect(pick({ id: '11', podSandboxId: '', labelSelector: {} })).toEqual(['1']);
    expect(pick({ id: '', podSandboxId: '', state: { state: ContainerState.CONTAINER_EXITED }, labelSelector: {} })).toEqual(['2']);
    expect(pick({ id: '', podSandboxId: '', labelSelector: { x: '1' } })).toEqual(['1']);
  });
});
