// The CRI RuntimeService's requests and answers in terms of the pods runtime. Pure: a RunPodSandbox request becomes
// a PodSpec with no containers (a sandbox) and a CRI store record; a CreateContainer request a ContainerSpec and a
// record; a pod's and its containers' status become PodSandbox(Status) and Container(Status) with the CRI's states
// (CONTAINER_CREATED / RUNNING / EXITED), reasons (Completed, Error, OOMKilled), exit codes and ns timestamps; and
// the list filters (id or id prefix, as crictl sends; state; label selector by equality). Every refusal names the
// request's field (as in the proto, snake_case): INVALID_ARGUMENT for what is wrong, UNIMPLEMENTED for what this
// node cannot do yet, with why.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:os';
import path from 'node:path';
import { AuraeError } from '../errors';
import { EXECUTABLE_LIMITS } from '../executables';
import {
  type Container,
  type ContainerConfig,
  ContainerState,
  type ContainerStatus as CriContainerStatusProto,
  type CreateContainerRequest,
  type Mount,
  MountPropagation,
  NamespaceMode,
  type NamespaceOption,
  type PodSandbox,
  type PodSandboxFilter,
  PodSandboxState,
  type PodSandboxStatus,
  type PortMapping as CriPortMapping,
  Protocol,
  type RunPodSandboxRequest,
  SecurityProfile_ProfileType,
  type ContainerFilter,
} from '../gen/runtime/v1/api';
import type { ImageRecord } from '../images';
import type { PodStatus } from '../pods';
import { invalid, shown } from '../validation';
import type { ContainerExtra, CriContainerRecord, CriSandboxRecord, SandboxExtra } from './cri-store';
import type { ContainerResourcesSpec, ContainerSecuritySpec, CriContainerSpec, CriContainerStatus, CriPodSpec, MountPropagationMode } from './pods-contract';

/** The runtime handlers (RuntimeClass handler names) and the sandbox each selects; "" is the default. */
export const RUNTIME_HANDLERS = { '': 'cell', cell: 'cell', vm: 'vm' } as const satisfies Record<string, 'cell' | 'vm'>;

export const CRI_LIMITS = {
  labels: 256,
  annotations: 256,
  /** Bytes of one map's keys and values together. */
  mapBytes: 256 * 1024,
  metadataChars: 253,
  mounts: 64,
  portMappings: 64,
} as const;

/** A new sandbox or container id: 64 lowercase hex, as containerd's. */
export function newCriId(random: (n: number) => Buffer = randomBytes): string {
  return random(32).toString('hex');
}

/** The aurae pod of a CRI sandbox: `k8s-` and the id's first 12 hex digits (one DNS label). */
export function podNameFor(id: string): string {
  return `k8s-${id.slice(0, 12)}`;
}

/** A CRI container's name in its aurae pod. */
export function containerNameFor(id: string): string {
  return `c-${id.slice(0, 12)}`;
}

/** ms → ns since the epoch (every CRI timestamp); 0 for null (the CRI's "not yet"). */
export function toNanos(ms: number | null | undefined): bigint {
  return ms === null || ms === undefined ? 0n : BigInt(Math.trunc(ms)) * 1_000_000n;
}

export function sandboxOfHandler(handler: string): 'cell' | 'vm' {
  if (Object.hasOwn(RUNTIME_HANDLERS, handler)) return RUNTIME_HANDLERS[handler as keyof typeof RUNTIME_HANDLERS];
  throw invalid('runtime_handler', `${shown(handler)} is not a runtime handler of this node: "cell" (the default, also "") or "vm"`);
}

function checkMap(field: string, map: Record<string, string> | undefined, max: number): Record<string, string> {
  const entries = Object.entries(map ?? {});
  if (entries.length > max) throw invalid(field, `at most ${max} entries (got ${entries.length})`);
  let bytes = 0;
  for (const [k, v] of entries) {
    if (k === '') throw invalid(field, 'keys must not be empty');
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  if (bytes > CRI_LIMITS.mapBytes) throw invalid(field, `too large: ${bytes} bytes, at most ${CRI_LIMITS.mapBytes}`);
  return Object.fromEntries(entries);
}

function checkText(field: string, value: string | undefined, required: boolean): string {
  const text = value ?? '';
  if (required && text === '') throw invalid(field, 'required');
  if (text.length > CRI_LIMITS.metadataChars || /[\p{C}]/u.test(text)) throw invalid(field, `${shown(text)}: at most ${CRI_LIMITS.metadataChars} printable characters`);
  return text;
}

function checkAbsolute(field: string, value: string): string {
  if (!value.startsWith('/')) throw invalid(field, `${shown(value)} is not an absolute path`);
  if (value.length > EXECUTABLE_LIMITS.pathChars || /\p{C}/u.test(value)) throw invalid(field, `${shown(value)}: at most ${EXECUTABLE_LIMITS.pathChars} printable characters`);
  if (value.split('/').some((p) => p === '..')) throw invalid(field, `${shown(value)}: ".." components are not allowed`);
  return value;
}

function namespaceMode(field: string, mode: NamespaceMode | undefined): 'POD' | 'CONTAINER' | 'NODE' {
  switch (mode ?? NamespaceMode.POD) {
    case NamespaceMode.POD:
      return 'POD';
    case NamespaceMode.CONTAINER:
      return 'CONTAINER';
    case NamespaceMode.NODE:
      return 'NODE';
    case NamespaceMode.TARGET:
      throw new AuraeError('UNIMPLEMENTED', `${field}: TARGET (another container's namespace, for debug containers) is not supported by auraed yet`);
    default:
      throw invalid(field, `${String(mode)} is not a namespace mode: POD, CONTAINER or NODE`);
  }
}

/** Namespace modes as the CRI names them, checked for what a sandbox kind allows. */
export function namespaceModes(field: string, options: NamespaceOption | undefined): SandboxExtra['namespaces'] {
  const network = namespaceMode(`${field}.network`, options?.network);
  const pid = namespaceMode(`${field}.pid`, options?.pid);
  const ipc = namespaceMode(`${field}.ipc`, options?.ipc);
  if (network === 'CONTAINER') throw invalid(`${field}.network`, 'CONTAINER is not a network mode: POD or NODE');
  if (ipc === 'CONTAINER') throw invalid(`${field}.ipc`, 'CONTAINER is not an IPC mode: POD or NODE');
  if (options?.usernsOptions && options.usernsOptions.mode !== NamespaceMode.NODE) {
    throw new AuraeError('UNIMPLEMENTED', `${field}.userns_options.mode: user namespaces are not supported by auraed yet (the runtime handlers report user_namespaces false): use NODE`);
  }
  return { network, pid, ipc };
}

function checkProfile(field: string, profile: { profileType: SecurityProfile_ProfileType; localhostRef: string } | undefined, what: string): void {
  if (profile?.profileType === SecurityProfile_ProfileType.Localhost) {
    throw new AuraeError('UNIMPLEMENTED', `${field}: Localhost ${what} profiles are not supported: the node's kernel has no ${what}; use RuntimeDefault or Unconfined`);
  }
}

/** CRI shares (2..262144) → cgroup v2 cpu.weight (1..10000), as runc and crun convert. */
export function sharesToWeight(shares: number): number {
  if (shares <= 0) return 0;
  const s = Math.min(Math.max(shares, 2), 262_144);
  return Math.trunc(1 + ((s - 2) * 9999) / 262_142);
}

export interface SandboxPlan {
  spec: CriPodSpec;
  record: CriSandboxRecord;
}

/**
 * RunPodSandbox → the aurae pod (no containers: a sandbox) and the CRI record. `id` is the new sandbox id,
 * `now` ms since the epoch.
 */
export function sandboxPlan(request: RunPodSandboxRequest, id: string, now: number): SandboxPlan {
  const sandbox = sandboxOfHandler(request.runtimeHandler ?? '');
  const config = request.config;
  if (!config) throw invalid('config', 'required: the sandbox config with its metadata');
  if (!config.metadata) throw invalid('config.metadata', 'required: name, uid, namespace and attempt');
  const md = config.metadata;
  const name = checkText('config.metadata.name', md.name, true);
  const uid = checkText('config.metadata.uid', md.uid, false);
  const namespace = checkText('config.metadata.namespace', md.namespace, false);
  const labels = checkMap('config.labels', config.labels, CRI_LIMITS.labels);
  const annotations = checkMap('config.annotations', config.annotations, CRI_LIMITS.annotations);
  const logDirectory = (config.logDirectory ?? '') === '' ? '' : checkAbsolute('config.log_directory', config.logDirectory);
  const linux = config.linux;
  const sc = linux?.securityContext;
  const namespaces = namespaceModes('config.linux.security_context.namespace_options', sc?.namespaceOptions);
  checkProfile('config.linux.security_context.seccomp', sc?.seccomp, 'seccomp');
  checkProfile('config.linux.security_context.apparmor', sc?.apparmor, 'AppArmor');
  const hostname = checkText('config.hostname', config.hostname, false);
  if (hostname !== '' && !/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/i.test(hostname)) throw invalid('config.hostname', `${shown(hostname)} is not a host name: letters, digits, "-" and ".", at most 63 characters`);
  const sysctls = checkMap('config.linux.sysctls', linux?.sysctls, 128);

  const pod = podNameFor(id);
  const spec: CriPodSpec = {
    name: pod,
    sandbox,
    containers: [],
    env: {},
    // kubelet decides about restarts: an exited container stays exited.
    restart: 'never',
    limits: { memoryMax: null, pidsMax: null, cpuWeight: null },
  };
  const res = linux?.resources;
  if (res) {
    if (res.memoryLimitInBytes > 0n) spec.limits.memoryMax = Number(res.memoryLimitInBytes);
    if (res.cpuShares > 0n) spec.limits.cpuWeight = sharesToWeight(Number(res.cpuShares));
  }
  if (hostname !== '') spec.hostname = hostname;
  const dns = config.dnsConfig;
  if (dns && (dns.servers.length || dns.searches.length || dns.options.length)) {
    dns.servers.forEach((s, i) => {
      if (!/^[0-9a-fA-F:.]{2,45}$/.test(s)) throw invalid(`config.dns_config.servers[${i}]`, `${shown(s)} is not an IP address`);
    });
    spec.dns = { servers: [...dns.servers], searches: [...dns.searches], options: [...dns.options] };
  }
  const publish = portPublish(config.portMappings ?? []);
  if (publish.length) {
    if (sandbox === 'vm') throw new AuraeError('UNIMPLEMENTED', 'config.port_mappings: host ports of a "vm" runtime handler sandbox are not published yet: use the "cell" handler');
    if (namespaces.network === 'NODE') throw invalid('config.port_mappings', 'a sandbox in the node network namespace has no ports to map: its containers listen on the node directly');
    spec.publish = publish;
  }
  const record: CriSandboxRecord = {
    id,
    pod,
    name,
    uid,
    namespace,
    attempt: md.attempt ?? 0,
    labels,
    annotations,
    runtimeHandler: request.runtimeHandler ?? '',
    logDirectory,
    ready: true,
    extra: { hostname, namespaces, cgroupParent: linux?.cgroupParent ?? '', sysctls, portMappings: spec.publish ?? [] },
    createdAt: now,
  };
  return { spec, record };
}

/** CRI port mappings with a host port → published node ports (a mapping without one publishes nothing). */
export function portPublish(mappings: readonly CriPortMapping[]): { nodePort: number; podPort: number; protocol: 'tcp' | 'udp' }[] {
  if (mappings.length > CRI_LIMITS.portMappings) throw invalid('config.port_mappings', `at most ${CRI_LIMITS.portMappings} (got ${mappings.length})`);
  const out: { nodePort: number; podPort: number; protocol: 'tcp' | 'udp' }[] = [];
  const seen = new Set<string>();
  mappings.forEach((m, i) => {
    const field = `config.port_mappings[${i}]`;
    if (m.hostPort === 0) return;
    const protocol = m.protocol === Protocol.TCP ? 'tcp' : m.protocol === Protocol.UDP ? 'udp' : null;
    if (protocol === null) throw new AuraeError('UNIMPLEMENTED', `${field}.protocol: only TCP and UDP ports are published by auraed (SCTP is not)`);
    if (m.hostPort < 1 || m.hostPort > 65_535) throw invalid(`${field}.host_port`, `${m.hostPort} is not a port: 1..65535`);
    if (m.containerPort < 1 || m.containerPort > 65_535) throw invalid(`${field}.container_port`, `${m.containerPort} is not a port: 1..65535`);
    if (!['', '0.0.0.0', '::'].includes(m.hostIp)) {
      throw new AuraeError('UNIMPLEMENTED', `${field}.host_ip: publishing on one node address (${shown(m.hostIp)}) is not supported: a published port is on every node address; leave host_ip empty`);
    }
    const key = `${m.hostPort}/${protocol}`;
    if (seen.has(key)) throw invalid(`${field}.host_port`, `node port ${key} is mapped twice`);
    seen.add(key);
    out.push({ nodePort: m.hostPort, podPort: m.containerPort, protocol });
  });
  return out;
}

function checkArgv(field: string, argv: string[]): string[] {
  if (argv.length > EXECUTABLE_LIMITS.argvEntries) throw invalid(field, `too many entries (${argv.length}): at most ${EXECUTABLE_LIMITS.argvEntries}`);
  let bytes = 0;
  argv.forEach((a, i) => {
    if (a.includes('\0')) throw invalid(`${field}[${i}]`, 'NUL characters are not allowed');
    bytes += Buffer.byteLength(a) + 1;
  });
  if (bytes > EXECUTABLE_LIMITS.argvBytes) throw invalid(field, `too long: ${bytes} bytes, at most ${EXECUTABLE_LIMITS.argvBytes}`);
  return [...argv];
}

function checkEnv(field: string, envs: { key: string; value: string }[]): Record<string, string> {
  if (envs.length > EXECUTABLE_LIMITS.envEntries) throw invalid(field, `too many variables (${envs.length}): at most ${EXECUTABLE_LIMITS.envEntries}`);
  const out: Record<string, string> = {};
  envs.forEach((e, i) => {
    // Kubernetes allows any printable name without "=" (RelaxedEnvironmentVariableValidation).
    if (e.key === '' || e.key.includes('=') || /[\p{C}\s]/u.test(e.key)) throw invalid(`${field}[${i}].key`, `${shown(e.key)} is not a variable name: printable, without "=" or spaces`);
    if (e.value.includes('\0')) throw invalid(`${field}[${i}].value`, 'NUL characters are not allowed');
    out[e.key] = e.value; // a later entry wins, as in a process environment
  });
  return out;
}

const PROPAGATION: Record<number, MountPropagationMode> = {
  [MountPropagation.PROPAGATION_PRIVATE]: 'private',
  [MountPropagation.PROPAGATION_HOST_TO_CONTAINER]: 'rslave',
  [MountPropagation.PROPAGATION_BIDIRECTIONAL]: 'rshared',
};

function containerMounts(mounts: Mount[]): ContainerExtra['mounts'] {
  if (mounts.length > CRI_LIMITS.mounts) throw invalid('config.mounts', `at most ${CRI_LIMITS.mounts} (got ${mounts.length})`);
  const seen = new Set<string>();
  return mounts.map((m, i) => {
    const field = `config.mounts[${i}]`;
    if (m.image) throw new AuraeError('UNIMPLEMENTED', `${field}.image: image volumes are not supported by auraed yet: use a host_path`);
    if (m.uidMappings.length || m.gidMappings.length) throw new AuraeError('UNIMPLEMENTED', `${field}.uid_mappings: idmapped mounts are not supported (no user namespaces yet)`);
    if (m.recursiveReadOnly) throw new AuraeError('UNIMPLEMENTED', `${field}.recursive_read_only: not supported by crun 1.8 (the runtime handlers report recursive_read_only_mounts false)`);
    const containerPath = checkAbsolute(`${field}.container_path`, m.containerPath);
    const hostPath = checkAbsolute(`${field}.host_path`, m.hostPath);
    if (seen.has(containerPath)) throw invalid(`${field}.container_path`, `${shown(containerPath)} is mounted twice`);
    seen.add(containerPath);
    if (!(m.propagation in PROPAGATION)) throw invalid(`${field}.propagation`, `${String(m.propagation)} is not a propagation: PROPAGATION_PRIVATE, PROPAGATION_HOST_TO_CONTAINER or PROPAGATION_BIDIRECTIONAL`);
    return { containerPath, hostPath, readonly: m.readonly, propagation: m.propagation };
  });
}

const CAPABILITY = /^(CAP_)?[A-Z_]{2,32}$|^ALL$/;

function capabilities(field: string, list: string[]): string[] {
  return list.map((c, i) => {
    const up = c.toUpperCase();
    if (!CAPABILITY.test(up)) throw invalid(`${field}[${i}]`, `${shown(c)} is not a capability: e.g. NET_ADMIN, CAP_SYS_TIME or ALL`);
    return up === 'ALL' || up.startsWith('CAP_') ? up : `CAP_${up}`;
  });
}

function idNumber(field: string, v: bigint): number {
  if (v < 0n || v > 4_294_967_294n) throw invalid(field, `${v} is not a user or group id: 0..4294967294`);
  return Number(v);
}

export interface ContainerPlan {
  spec: CriContainerSpec;
  record: CriContainerRecord;
}

/**
 * CreateContainer → the container of the sandbox's pod and its CRI record. `image` is the stored image the
 * request's image spec named (resolved by the caller: a container is created only from a pulled image).
 */
export function containerPlan(request: CreateContainerRequest, sandbox: CriSandboxRecord, image: ImageRecord, id: string, now: number): ContainerPlan {
  const config: ContainerConfig | undefined = request.config;
  if (!config) throw invalid('config', 'required: the container config with its metadata and image');
  if (!config.metadata) throw invalid('config.metadata', 'required: name and attempt');
  const name = checkText('config.metadata.name', config.metadata.name, true);
  const labels = checkMap('config.labels', config.labels, CRI_LIMITS.labels);
  const annotations = checkMap('config.annotations', config.annotations, CRI_LIMITS.annotations);
  // A terminal and/or a kept stdin (Attach: container-stdio.ts); the VM sandbox's containers run in its child node.
  const stdio = config.tty || config.stdin ? { tty: config.tty, stdin: config.stdin, stdinOnce: config.stdin && config.stdinOnce } : null;
  if (stdio && sandbox.runtimeHandler === 'vm') throw new AuraeError('UNIMPLEMENTED', `config.${config.tty ? 'tty' : 'stdin'}: containers with a terminal or an open stdin are not supported in VM sandboxes yet (runtime handler "vm"): use the cell handler`);
  if (config.devices.length) throw new AuraeError('UNIMPLEMENTED', 'config.devices: device nodes in containers are not supported by auraed yet');
  if (config.CDIDevices.length) throw new AuraeError('UNIMPLEMENTED', 'config.CDI_devices: CDI devices are not supported by auraed');
  const logPath = config.logPath ?? '';
  if (logPath !== '' && (logPath.startsWith('/') || logPath.split('/').some((p) => p === '..' || p === '') || /\p{C}/u.test(logPath))) {
    throw invalid('config.log_path', `${shown(logPath)} is not a path relative to the sandbox's log_directory (no "..", no leading "/")`);
  }
  const mounts = containerMounts(config.mounts ?? []);
  const container = containerNameFor(id);
  const spec: CriContainerSpec = {
    name: container,
    image: `${image.name}@${image.digest}`,
    command: config.command.length ? checkArgv('config.command', config.command) : null,
    args: config.args.length ? checkArgv('config.args', config.args) : null,
    env: checkEnv('config.envs', config.envs ?? []),
    workingDir: (config.workingDir ?? '') === '' ? null : checkAbsolute('config.working_dir', config.workingDir),
    user: null,
    readOnlyRootfs: false,
  };
  if (spec.command?.[0] === '') throw invalid('config.command[0]', 'the program must not be empty');
  if (mounts.length) spec.mounts = mounts.map((m) => ({ hostPath: m.hostPath, containerPath: m.containerPath, readonly: m.readonly, propagation: PROPAGATION[m.propagation]! }));
  if (Object.keys(sandbox.extra.sysctls ?? {}).length) spec.sysctls = { ...sandbox.extra.sysctls };
  if (stdio?.tty) spec.tty = true;
  if (stdio?.stdin) spec.stdin = true;

  let user: ContainerExtra['user'] = null;
  const linux = config.linux;
  const sc = linux?.securityContext;
  const security: ContainerSecuritySpec = {};
  if (sc) {
    const f = 'config.linux.security_context';
    if (sc.runAsUser && sc.runAsUsername !== '') throw invalid(`${f}.run_as_username`, 'set either run_as_user or run_as_username, not both');
    if (sc.runAsGroup && !sc.runAsUser && sc.runAsUsername === '') throw invalid(`${f}.run_as_group`, 'needs run_as_user or run_as_username');
    const gid = sc.runAsGroup ? idNumber(`${f}.run_as_group.value`, sc.runAsGroup.value) : null;
    if (sc.runAsUser) {
      const uid = idNumber(`${f}.run_as_user.value`, sc.runAsUser.value);
      spec.user = gid === null ? String(uid) : `${uid}:${gid}`;
      user = { uid, gid: gid ?? uid, supplementalGroups: [] };
    } else if (sc.runAsUsername !== '') {
      if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,255}$/.test(sc.runAsUsername)) throw invalid(`${f}.run_as_username`, `${shown(sc.runAsUsername)} is not a user name`);
      spec.user = gid === null ? sc.runAsUsername : `${sc.runAsUsername}:${gid}`;
    }
    const groups = sc.supplementalGroups.map((g, i) => idNumber(`${f}.supplemental_groups[${i}]`, g));
    if (groups.length) {
      security.supplementalGroups = groups;
      if (user) user.supplementalGroups = groups;
    }
    spec.readOnlyRootfs = sc.readonlyRootfs;
    if (sc.privileged) security.privileged = true;
    if (sc.capabilities) {
      if (sc.capabilities.addAmbientCapabilities.length) throw new AuraeError('UNIMPLEMENTED', `${f}.capabilities.add_ambient_capabilities: ambient capabilities are not supported by auraed yet`);
      if (sc.capabilities.addCapabilities.length) security.capAdd = capabilities(`${f}.capabilities.add_capabilities`, sc.capabilities.addCapabilities);
      if (sc.capabilities.dropCapabilities.length) security.capDrop = capabilities(`${f}.capabilities.drop_capabilities`, sc.capabilities.dropCapabilities);
    }
    if (sc.noNewPrivs) security.noNewPrivs = true;
    if (sc.maskedPaths.length) security.maskedPaths = sc.maskedPaths.map((p, i) => checkAbsolute(`${f}.masked_paths[${i}]`, p));
    if (sc.readonlyPaths.length) security.readonlyPaths = sc.readonlyPaths.map((p, i) => checkAbsolute(`${f}.readonly_paths[${i}]`, p));
    checkProfile(`${f}.seccomp`, sc.seccomp, 'seccomp');
    checkProfile(`${f}.apparmor`, sc.apparmor, 'AppArmor');
  }
  // The container's namespace options (kubelet copies the pod's), else the sandbox's.
  const modes = sc?.namespaceOptions ? namespaceModes('config.linux.security_context.namespace_options', sc.namespaceOptions) : sandbox.extra.namespaces;
  if (sandbox.runtimeHandler === 'vm' && (modes.network === 'NODE' || modes.pid === 'NODE' || modes.ipc === 'NODE')) {
    throw invalid('config.linux.security_context.namespace_options', 'NODE namespaces are not possible in a "vm" runtime handler sandbox: its containers run in their own VM');
  }
  security.namespaces = {
    // POD (one pid namespace for the pod: shareProcessNamespace) is not possible without a pause process: each
    // container gets its own (PodSandboxStatus reports CONTAINER). kubelet asks for CONTAINER unless told otherwise.
    pid: modes.pid === 'NODE' ? 'node' : 'container',
    ipc: modes.ipc === 'NODE' ? 'node' : 'pod',
    network: modes.network === 'NODE' ? 'node' : 'pod',
  };
  spec.security = security;
  const res = linux?.resources;
  if (res) spec.resources = containerResources(res, 'config.linux.resources');

  const record: CriContainerRecord = {
    id,
    sandboxId: sandbox.id,
    container,
    name,
    attempt: config.metadata.attempt ?? 0,
    labels,
    annotations,
    image: config.image?.image ?? '',
    imageId: image.configDigest,
    imageRef: `${image.name}@${image.digest}`,
    logPath: logPath !== '' && sandbox.logDirectory !== '' ? path.join(sandbox.logDirectory, logPath) : '',
    extra: { mounts, user, ...(stdio ? { stdio } : {}) },
    createdAt: now,
    startedAt: null,
  };
  return { spec, record };
}

/** LinuxContainerResources → the container's resources; what crun or this node cannot apply is refused. */
export function containerResources(res: NonNullable<NonNullable<ContainerConfig['linux']>['resources']>, field: string): ContainerResourcesSpec {
  if (res.cpusetCpus !== '' || res.cpusetMems !== '') throw new AuraeError('UNIMPLEMENTED', `${field}.cpuset_cpus: cpusets are not applied by auraed yet`);
  if (res.hugepageLimits.some((h) => h.limit > 0n)) throw new AuraeError('UNIMPLEMENTED', `${field}.hugepage_limits: hugepages are not supported by auraed`);
  for (const [key, value] of Object.entries(res.unified ?? {})) {
    // kubelet sets memory.swap.max 0 for NoSwap: the node has no swap, so it holds.
    if (key === 'memory.swap.max' && value === '0') continue;
    throw new AuraeError('UNIMPLEMENTED', `${field}.unified[${shown(key)}]: raw cgroup v2 settings are not applied by auraed yet`);
  }
  const out: ContainerResourcesSpec = {};
  const num = (f: string, v: bigint, min: number, max: number) => {
    if (v < BigInt(min) || v > BigInt(max)) throw invalid(`${field}.${f}`, `${v} is out of range ${min}..${max}`);
    return Number(v);
  };
  if (res.cpuShares > 0n) out.cpuShares = num('cpu_shares', res.cpuShares, 2, 262_144);
  if (res.cpuQuota > 0n) out.cpuQuota = num('cpu_quota', res.cpuQuota, 1000, Number.MAX_SAFE_INTEGER);
  if (res.cpuPeriod > 0n) out.cpuPeriod = num('cpu_period', res.cpuPeriod, 1000, 1_000_000);
  if (res.memoryLimitInBytes > 0n) out.memoryLimit = num('memory_limit_in_bytes', res.memoryLimitInBytes, 4096, Number.MAX_SAFE_INTEGER);
  if (res.oomScoreAdj !== 0n) out.oomScoreAdj = num('oom_score_adj', res.oomScoreAdj, -1000, 1000);
  return out;
}

// ---- status ----

const SIGNALS = constants.signals as Record<string, number>;

/** A pods container state → the CRI state. */
export function criContainerState(status: Pick<CriContainerStatus, 'state'> | undefined): ContainerState {
  if (!status) return ContainerState.CONTAINER_UNKNOWN;
  switch (status.state) {
    case 'pulling':
    case 'created':
      return ContainerState.CONTAINER_CREATED;
    case 'running':
      return ContainerState.CONTAINER_RUNNING;
    case 'exited':
    case 'failed':
      return ContainerState.CONTAINER_EXITED;
    default:
      return ContainerState.CONTAINER_UNKNOWN;
  }
}

/** Exit code, reason and message of an exited container (128+N for a signal death, as kubelet shows it). */
export function exitOf(status: CriContainerStatus): { exitCode: number; reason: string; message: string } {
  if (criContainerState(status) !== ContainerState.CONTAINER_EXITED) return { exitCode: 0, reason: '', message: '' };
  const exit = status.exit;
  if (!exit) return { exitCode: 255, reason: 'Unknown', message: 'the container ended while auraed was not running: its exit status is unknown' };
  const signal = exit.signal ?? null;
  const exitCode = exit.code ?? (signal !== null && SIGNALS[signal] !== undefined ? 128 + SIGNALS[signal]! : 1);
  if (exit.oomKilled) return { exitCode, reason: 'OOMKilled', message: 'the container was OOM-killed: it went over its memory limit' };
  if (exitCode === 0) return { exitCode, reason: 'Completed', message: '' };
  return { exitCode, reason: 'Error', message: signal !== null ? `killed by ${signal}` : '' };
}

export function sandboxState(record: CriSandboxRecord, pod: PodStatus | undefined): PodSandboxState {
  return record.ready && pod !== undefined && pod.state !== 'stopped' ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY;
}

export function toPodSandbox(record: CriSandboxRecord, pod: PodStatus | undefined): PodSandbox {
  return {
    id: record.id,
    metadata: { name: record.name, uid: record.uid, namespace: record.namespace, attempt: record.attempt },
    state: sandboxState(record, pod),
    createdAt: toNanos(record.createdAt),
    labels: { ...record.labels },
    annotations: { ...record.annotations },
    runtimeHandler: record.runtimeHandler,
  };
}

const MODE: Record<string, NamespaceMode> = { POD: NamespaceMode.POD, CONTAINER: NamespaceMode.CONTAINER, NODE: NamespaceMode.NODE };

export function toPodSandboxStatus(record: CriSandboxRecord, pod: PodStatus | undefined): PodSandboxStatus {
  const ns = record.extra.namespaces;
  return {
    ...toPodSandbox(record, pod),
    // In the node's network namespace the pod has no address of its own (kubelet uses the node's).
    network: { ip: ns.network === 'NODE' ? '' : (pod?.ip ?? ''), additionalIps: [] },
    // What the containers get: a shared (POD) pid namespace is served as CONTAINER (see containerPlan).
    linux: { namespaces: { options: { network: MODE[ns.network]!, pid: ns.pid === 'NODE' ? NamespaceMode.NODE : NamespaceMode.CONTAINER, ipc: MODE[ns.ipc]!, targetId: '' } } },
  };
}

/** The container's status in its pod (undefined: the pod or container is gone). */
export function containerOf(pod: PodStatus | undefined, record: CriContainerRecord): CriContainerStatus | undefined {
  return pod?.containers.find((c) => c.name === record.container);
}

export function toCriContainer(record: CriContainerRecord, runtimeStatus: CriContainerStatus | undefined, since?: number): Container {
  const status = effectiveStatus(record, runtimeStatus, since);
  return {
    id: record.id,
    podSandboxId: record.sandboxId,
    metadata: { name: record.name, attempt: record.attempt },
    image: { image: record.image, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' },
    imageRef: record.imageRef,
    state: criContainerState(status),
    createdAt: toNanos(status?.createdAt ?? record.createdAt),
    labels: { ...record.labels },
    annotations: { ...record.annotations },
    imageId: record.imageId,
  };
}

const PROPAGATION_ENUM: Record<number, MountPropagation> = { 0: MountPropagation.PROPAGATION_PRIVATE, 1: MountPropagation.PROPAGATION_HOST_TO_CONTAINER, 2: MountPropagation.PROPAGATION_BIDIRECTIONAL };

/**
 * The pods status as the CRI must see it, given the CRI record. A container StartContainer started before this
 * auraed began (`since`, ms) that the pods runtime reports "created" has no process any more (it ended while auraed
 * was down and was not restarted: a CRI pod is restart "never"): it has exited with an unknown status
 * (containerd's rule: exit code 255, reason Unknown). One started since is only starting (crun has not reported it
 * yet). And a started one without a start time yet gets StartContainer's (kubelet needs one).
 */
export function effectiveStatus(record: Pick<CriContainerRecord, 'startedAt'>, status: CriContainerStatus | undefined, since?: number): CriContainerStatus | undefined {
  if (!status || record.startedAt === null) return status;
  if ((status.state === 'created' || status.state === 'pulling') && since !== undefined && record.startedAt < since) {
    return { ...status, state: 'exited', exit: status.exit ?? null, startedAt: status.startedAt ?? record.startedAt, finishedAt: status.finishedAt ?? since };
  }
  if (status.state === 'created' || status.state === 'pulling') return status;
  return (status.startedAt ?? null) === null ? { ...status, startedAt: record.startedAt } : status;
}

export function toCriContainerStatus(record: CriContainerRecord, runtimeStatus: CriContainerStatus | undefined, since?: number): CriContainerStatusProto {
  const status = effectiveStatus(record, runtimeStatus, since);
  const state = criContainerState(status);
  const exit = status ? exitOf(status) : { exitCode: 0, reason: 'Unknown', message: 'the container is no longer known to the pods runtime' };
  // An exited container without a finish time from the runtime still needs one (kubelet reads finished_at != 0).
  const finishedAt = state === ContainerState.CONTAINER_EXITED ? (status?.finishedAt ?? status?.startedAt ?? record.createdAt) : null;
  return {
    id: record.id,
    metadata: { name: record.name, attempt: record.attempt },
    state,
    createdAt: toNanos(status?.createdAt ?? record.createdAt),
    startedAt: toNanos(state === ContainerState.CONTAINER_CREATED ? null : (status?.startedAt ?? null)),
    finishedAt: toNanos(finishedAt),
    exitCode: exit.exitCode,
    image: { image: record.image, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' },
    imageRef: record.imageRef,
    reason: exit.reason,
    message: exit.message,
    labels: { ...record.labels },
    annotations: { ...record.annotations },
    mounts: record.extra.mounts.map((m) => ({
      containerPath: m.containerPath,
      hostPath: m.hostPath,
      readonly: m.readonly,
      selinuxRelabel: false,
      propagation: PROPAGATION_ENUM[m.propagation] ?? MountPropagation.PROPAGATION_PRIVATE,
      uidMappings: [],
      gidMappings: [],
      recursiveReadOnly: false,
      imageSubPath: '',
    })),
    logPath: record.logPath,
    imageId: record.imageId,
    ...(record.extra.user
      ? { user: { linux: { uid: BigInt(record.extra.user.uid), gid: BigInt(record.extra.user.gid), supplementalGroups: record.extra.user.supplementalGroups.map(BigInt) } } }
      : {}),
  };
}

// ---- filters and ids ----

/** An id filter: the full id or a prefix of it (crictl sends what the user typed); "" matches all. */
export function idMatches(filter: string | undefined, id: string): boolean {
  return (filter ?? '') === '' || id.startsWith(filter!);
}

/** Every selector label is present with the same value (the CRI's equality-only selector). */
export function labelsMatch(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

export function sandboxMatches(filter: PodSandboxFilter | undefined, item: PodSandbox): boolean {
  if (!filter) return true;
  return idMatches(filter.id, item.id) && (filter.state === undefined || filter.state.state === item.state) && labelsMatch(filter.labelSelector, item.labels);
}

export function containerMatches(filter: ContainerFilter | undefined, item: Container): boolean {
  if (!filter) return true;
  return (
    idMatches(filter.id, item.id) &&
    idMatches(filter.podSandboxId, item.podSandboxId) &&
    (filter.state === undefined || filter.state.state === item.state) &&
    labelsMatch(filter.labelSelector, item.labels)
  );
}

/**
 * The one item whose id is `id` or starts with it. null: none (the caller decides: NOT_FOUND, or OK for an
 * idempotent Stop/Remove). INVALID_ARGUMENT naming `field` when empty or ambiguous.
 */
export function resolveId<T extends { id: string }>(items: readonly T[], id: string | undefined, field: string, what: string): T | null {
  const wanted = id ?? '';
  if (wanted === '') throw invalid(field, `required: the ${what} id (or a unique prefix of it)`);
  const exact = items.find((i) => i.id === wanted);
  if (exact) return exact;
  const matches = items.filter((i) => i.id.startsWith(wanted));
  if (matches.length > 1) throw invalid(field, `${shown(wanted)} matches ${matches.length} ${what}s: give more of the id`);
  return matches[0] ?? null;
}
