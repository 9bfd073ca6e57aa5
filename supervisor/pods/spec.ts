// PodSpec: a pod as requested, validated. Plain data (stored as JSON in the pods table), made from the API's Pod
// (aurae.pods.v0) by validatePodSpec, whose every error names the field and what is allowed.
import { isIP } from 'node:net';
import { AuraeError, checkInt64 } from '../errors';
import { EXECUTABLE_LIMITS } from '../executables';
import type { Pod, PortPublish } from '../gen/aurae/pods/v0/pods';
import { checkInt, checkLabel, invalid, RANGES, shown, utf8Bytes } from '../validation';
import type { PortMapping } from './network-plan';
import { capabilityName } from './oci-spec';

export interface ContainerSpec {
  name: string;
  image: string;
  /** Replaces the image's Entrypoint; null: the image's. */
  command: string[] | null;
  /** Replaces the image's Cmd; null: the image's (unless command is set: then none, as Kubernetes does). */
  args: string[] | null;
  env: Record<string, string>;
  workingDir: string | null;
  /** "uid", "uid:gid", "name", "name:group"; null: the image's User, else root. */
  user: string | null;
  readOnlyRootfs: boolean;
  // Optional extensions (the CRI's; absent: the defaults of oci-spec.ts). Carried to config.json by oci-spec.ts.
  /** Host paths bound into the container. */
  mounts?: ContainerMount[];
  security?: ContainerSecurity;
  /** Limits of the container's own cgroup (its executable's leaf, below the pod's cell). */
  resources?: ContainerResources;
  /** Namespaced sysctls (net.*, the IPC ones). */
  sysctls?: Record<string, string>;
  /** The process gets a terminal (crun --console-socket: auraed holds the master; the CRI's tty, Attach). */
  tty?: boolean;
  /** The process's stdin stays open for attaching (a FIFO auraed holds; with tty, the terminal is its stdin). */
  stdin?: boolean;
}

export type MountPropagation = 'private' | 'rslave' | 'rshared';

export interface ContainerMount {
  /** Absolute path on the node (it must exist). */
  hostPath: string;
  /** Absolute path in the container. */
  containerPath: string;
  readonly: boolean;
  propagation: MountPropagation;
}

export interface ContainerSecurity {
  /** Every capability, no masked or read-only paths, no seccomp filter, every device allowed. */
  privileged?: boolean;
  /** Capability names ("NET_ADMIN", "CAP_NET_ADMIN", "ALL"), added to / dropped from the default set. */
  capAdd?: string[];
  capDrop?: string[];
  /** no_new_privs (default true, as today). */
  noNewPrivs?: boolean;
  /** Replace the default masked / read-only /proc and /sys paths. */
  maskedPaths?: string[];
  readonlyPaths?: string[];
  /** Override the user (the image's or `user`): numeric ids. */
  runAsUser?: number;
  runAsGroup?: number;
  supplementalGroups?: number[];
  /** 'pod': the pod's (default for ipc and network), 'container': its own (default for pid), 'node': the node's. */
  namespaces?: { pid?: 'pod' | 'container' | 'node'; ipc?: 'pod' | 'node'; network?: 'pod' | 'node' };
}

export interface ContainerResources {
  /** cgroup v1 shares (2..262144), mapped to cpu.weight as the kubelet/runc do. */
  cpuShares?: number;
  /** cpu.max: quota µs per period µs (period default 100000). */
  cpuQuota?: number;
  cpuPeriod?: number;
  /** memory.max in bytes. */
  memoryLimit?: number;
  /** Memory + swap in bytes (the CRI's memory_swap_limit_in_bytes, ≥ memoryLimit): memory.swap.max = the difference. */
  memorySwapLimit?: number;
  /** The container's init's oom_score_adj (-1000..1000). */
  oomScoreAdj?: number;
}

export interface PodDnsSpec {
  servers: string[];
  searches: string[];
  options: string[];
}

export type PodRestart = 'never' | 'on-failure' | 'always';

export interface PodLimitsSpec {
  memoryMax: number | null;
  pidsMax: number | null;
  cpuWeight: number | null;
}

export interface PodSpec {
  name: string;
  /** "cell": namespaces + a cell on this node; "vm": inside a child microVM (vm-sandbox.ts). */
  sandbox: 'cell' | 'vm';
  containers: ContainerSpec[];
  /** Pod-wide environment; a container's own env wins. */
  env: Record<string, string>;
  restart: PodRestart;
  limits: PodLimitsSpec;
  /** Ports the containers listen on; each is published on the same node port (tcp) unless `publish` maps it. */
  expose?: number[];
  /** Node ports mapped to the pod (network-plan.ts effectivePublish adds the exposed ones). */
  publish?: PortMapping[];
  /** The pod's host name (its UTS namespace, /etc/hostname, /etc/hosts, HOSTNAME); default its name. */
  hostname?: string;
  /** The pod's /etc/resolv.conf; default the node's name servers (network-plan.ts resolvConf). */
  dns?: PodDnsSpec;
}

export const POD_LIMITS = {
  containers: 16,
  imageRefChars: 512,
  userChars: 256,
  /** Published ports per pod. */
  publish: 64,
  /** Host path mounts per container. */
  mounts: 64,
} as const;

const RESTARTS: readonly PodRestart[] = ['never', 'on-failure', 'always'];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const USER = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?$/;

/** A container as given: the API's Container, plus the optional extensions (the CRI's) in ContainerSpec's shape. */
export type ContainerInput = Pod['containers'][number] & Partial<Pick<ContainerSpec, 'mounts' | 'security' | 'resources' | 'sysctls' | 'tty' | 'stdin'>>;
/** A pod as given: the API's Pod, plus the optional pod-level extensions. */
export type PodInput = Omit<Pod, 'containers'> & { containers: ContainerInput[]; hostname?: string; dns?: PodDnsSpec };

/** Validate the API's Pod. Throws INVALID_ARGUMENT "<field>: <what is allowed>" (fields as in the proto). */
export function validatePodSpec(pod: PodInput | undefined): PodSpec {
  if (!pod) throw invalid('pod', 'required: a pod with a name and at least one container');
  return validatePod(pod, 1);
}

/**
 * Validate a sandbox (CreateSandbox): as validatePodSpec, but it may have no containers (they are added one by
 * one with createContainer). Throws INVALID_ARGUMENT "<field>: <what is allowed>".
 */
export function validateSandboxSpec(pod: PodInput | undefined): PodSpec {
  if (!pod) throw invalid('pod', 'required: a pod with a name');
  return validatePod(pod, 0);
}

/**
 * Validate one container (createContainer); `field` prefixes the field names in errors (default "container").
 * Throws INVALID_ARGUMENT "<field>.<name>: <what is allowed>".
 */
export function validateContainerSpec(c: ContainerInput | undefined, field = 'container'): ContainerSpec {
  if (!c) throw invalid(field, 'required: a container with a name and an image');
  return validateContainer(c, field);
}

function validatePod(pod: PodInput, minContainers: 0 | 1): PodSpec {
  const name = checkLabel('name', pod.name);
  const sandbox = pod.sandbox ?? '';
  if (sandbox !== '' && sandbox !== 'cell' && sandbox !== 'vm') throw invalid('sandbox', `${shown(sandbox)} is not a sandbox: "cell" (or empty) or "vm"`);
  // A VM pod's child VM is "pod-<name>", one DNS label (vm-sandbox.ts vmPodName).
  if (sandbox === 'vm' && name.length > 59) throw invalid('name', `${shown(name)} is too long for sandbox "vm": at most 59 characters (its VM is named pod-NAME)`);
  const restart = (pod.restart ?? '') === '' ? 'never' : (pod.restart as PodRestart);
  if (!RESTARTS.includes(restart)) throw invalid('restart', `${shown(pod.restart)} is not a restart policy: "never", "on-failure" or "always"`);
  const containers = pod.containers ?? [];
  if (containers.length < minContainers) throw invalid('containers', 'required: at least one container');
  if (containers.length > POD_LIMITS.containers) throw invalid('containers', `at most ${POD_LIMITS.containers} containers (got ${containers.length})`);
  const seen = new Set<string>();
  const specs = containers.map((c, i) => {
    const spec = validateContainer(c, `containers[${i}]`);
    if (seen.has(spec.name)) throw invalid(`containers[${i}].name`, `${shown(spec.name)} is used twice: container names are unique in a pod`);
    seen.add(spec.name);
    return spec;
  });
  const l = pod.limits;
  const limits: PodLimitsSpec = {
    memoryMax: checkInt64('limits.memory_max', l?.memoryMax, RANGES.memory[0], RANGES.memory[1]) ?? null,
    pidsMax: checkInt64('limits.pids_max', l?.pidsMax, RANGES.pidsMax[0], RANGES.pidsMax[1]) ?? null,
    cpuWeight: checkInt64('limits.cpu_weight', l?.cpuWeight, RANGES.cpuWeight[0], RANGES.cpuWeight[1]) ?? null,
  };
  const spec: PodSpec = { name, sandbox: sandbox === 'vm' ? 'vm' : 'cell', containers: specs, env: validateEnv('env', pod.env ?? {}), restart, limits };
  if (pod.expose?.length) spec.expose = [...pod.expose];
  const publish = validatePublish('publish', pod.publish ?? []);
  // Pod networking (network.ts) is the cell sandbox's; a VM pod's ports are not published on this node yet.
  if (publish.length && spec.sandbox === 'vm') throw new AuraeError('UNIMPLEMENTED', 'publish: publishing ports of a "vm" sandbox pod is not implemented yet: use sandbox "cell"');
  if (publish.length) spec.publish = publish;
  if (pod.hostname !== undefined && pod.hostname !== '') spec.hostname = validateHostname('hostname', pod.hostname);
  if (pod.dns !== undefined) spec.dns = validateDns('dns', pod.dns);
  if (spec.sandbox === 'vm' && (spec.hostname !== undefined || spec.dns !== undefined)) {
    throw new AuraeError('UNIMPLEMENTED', `${spec.hostname !== undefined ? 'hostname' : 'dns'}: not implemented for a "vm" sandbox pod yet: use sandbox "cell"`);
  }
  return spec;
}

const HOSTNAME = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

/** A host name: labels of letters, digits and "-", joined by ".", at most 64 characters (the kernel's limit). */
export function validateHostname(field: string, value: string): string {
  if (value.length > 64 || !HOSTNAME.test(value)) throw invalid(field, `${shown(value)} is not a host name: letters, digits, "-" and ".", at most 64 characters`);
  return value;
}

/** resolv.conf: at most 3 name servers (IP addresses), 32 search domains, 32 options, no spaces. */
export function validateDns(field: string, dns: Partial<PodDnsSpec>): PodDnsSpec {
  const servers = dns.servers ?? [];
  const searches = dns.searches ?? [];
  const options = dns.options ?? [];
  if (servers.length > 3) throw invalid(`${field}.servers`, `at most 3 name servers (got ${servers.length}): the resolver reads no more`);
  servers.forEach((s, i) => {
    if (isIP(s) === 0) throw invalid(`${field}.servers[${i}]`, `${shown(s)} is not an IP address`);
  });
  if (searches.length > 32) throw invalid(`${field}.searches`, `at most 32 search domains (got ${searches.length})`);
  searches.forEach((s, i) => {
    if (s.length > 253 || !HOSTNAME.test(s.replace(/\.$/, ''))) throw invalid(`${field}.searches[${i}]`, `${shown(s)} is not a domain name`);
  });
  if (options.length > 32) throw invalid(`${field}.options`, `at most 32 options (got ${options.length})`);
  options.forEach((o, i) => {
    if (o === '' || o.length > 256 || /[\s\p{C}]/u.test(o)) throw invalid(`${field}.options[${i}]`, `${shown(o)} is not a resolver option such as "ndots:5": printable, no spaces`);
  });
  return { servers: [...servers], searches: [...searches], options: [...options] };
}

/** Published ports: node and pod ports 1..65535, protocol "tcp" (default) or "udp", a node port once per protocol. */
export function validatePublish(field: string, list: readonly PortPublish[]): PortMapping[] {
  if (list.length > POD_LIMITS.publish) throw invalid(field, `at most ${POD_LIMITS.publish} ports (got ${list.length})`);
  const seen = new Set<string>();
  return list.map((p, i) => {
    const nodePort = checkInt(`${field}[${i}].node_port`, p.nodePort ?? 0, [1, 65_535])!;
    const podPort = checkInt(`${field}[${i}].pod_port`, p.podPort ?? 0, [1, 65_535])!;
    const protocol = (p.protocol ?? '') === '' ? 'tcp' : p.protocol;
    if (protocol !== 'tcp' && protocol !== 'udp') throw invalid(`${field}[${i}].protocol`, `${shown(p.protocol)} is not a protocol: "tcp" (the default) or "udp"`);
    const key = `${nodePort}/${protocol}`;
    if (seen.has(key)) throw invalid(`${field}[${i}].node_port`, `node port ${key} is published twice`);
    seen.add(key);
    return { nodePort, podPort, protocol };
  });
}

function validateContainer(c: ContainerInput, field: string): ContainerSpec {
  const name = checkLabel(`${field}.name`, c.name);
  const image = c.image ?? '';
  if (image === '') throw invalid(`${field}.image`, 'required: an image reference such as "busybox" or "host:5000/name:tag"');
  if (image.length > POD_LIMITS.imageRefChars || /[\s\p{C}]/u.test(image)) {
    throw invalid(`${field}.image`, `${shown(image)} is not an image reference: at most ${POD_LIMITS.imageRefChars} printable characters without spaces`);
  }
  const command = validateArgv(`${field}.command`, c.command ?? []);
  const args = validateArgv(`${field}.args`, c.args ?? []);
  const workingDir = (c.workingDir ?? '') === '' ? null : validateAbsolute(`${field}.working_dir`, c.workingDir);
  const user = (c.user ?? '') === '' ? null : c.user;
  if (user !== null && (user.length > POD_LIMITS.userChars || !USER.test(user))) {
    throw invalid(`${field}.user`, `${shown(user)} is not a user: "uid", "uid:gid", "name" or "name:group"`);
  }
  const spec: ContainerSpec = {
    name,
    image,
    command: command.length ? command : null,
    args: args.length ? args : null,
    env: validateEnv(`${field}.env`, c.env ?? {}),
    workingDir,
    user,
    readOnlyRootfs: c.readOnlyRootfs === true,
  };
  if (c.mounts !== undefined && c.mounts.length) spec.mounts = validateMounts(`${field}.mounts`, c.mounts);
  if (c.security !== undefined) spec.security = validateSecurity(`${field}.security`, c.security);
  if (c.resources !== undefined) spec.resources = validateResources(`${field}.resources`, c.resources);
  if (c.sysctls !== undefined && Object.keys(c.sysctls).length) spec.sysctls = validateSysctls(`${field}.sysctls`, c.sysctls);
  if (c.tty === true) spec.tty = true;
  if (c.stdin === true) spec.stdin = true;
  return spec;
}

const PROPAGATIONS: readonly MountPropagation[] = ['private', 'rslave', 'rshared'];

function validateMounts(field: string, mounts: readonly ContainerMount[]): ContainerMount[] {
  if (mounts.length > POD_LIMITS.mounts) throw invalid(field, `at most ${POD_LIMITS.mounts} mounts (got ${mounts.length})`);
  const seen = new Set<string>();
  return mounts.map((m, i) => {
    const f = `${field}[${i}]`;
    const hostPath = validateAbsolute(`${f}.host_path`, m.hostPath ?? '');
    const containerPath = validateAbsolute(`${f}.container_path`, m.containerPath ?? '');
    if (containerPath === '/') throw invalid(`${f}.container_path`, 'must not be "/": the root is the image\'s');
    if (seen.has(containerPath)) throw invalid(`${f}.container_path`, `${shown(containerPath)} is mounted twice`);
    seen.add(containerPath);
    const propagation = ((m.propagation as string | undefined) ?? '') === '' ? 'private' : m.propagation;
    if (!PROPAGATIONS.includes(propagation)) throw invalid(`${f}.propagation`, `${shown(String(propagation))} is not a propagation: "private" (the default), "rslave" or "rshared"`);
    return { hostPath, containerPath, readonly: m.readonly === true, propagation };
  });
}

const MAX_ID = 4_294_967_294;
const NAMESPACE_MODES = { pid: ['pod', 'container', 'node'], ipc: ['pod', 'node'], network: ['pod', 'node'] } as const;

function validateSecurity(field: string, s: ContainerSecurity): ContainerSecurity {
  const out: ContainerSecurity = {};
  if (s.privileged !== undefined) out.privileged = s.privileged === true;
  for (const key of ['capAdd', 'capDrop'] as const) {
    const list = s[key];
    if (list === undefined) continue;
    if (list.length > 64) throw invalid(`${field}.${key}`, `at most 64 capabilities (got ${list.length})`);
    out[key] = list.map((c, i) => capabilityName(`${field}.${key}[${i}]`, c));
  }
  if (s.noNewPrivs !== undefined) out.noNewPrivs = s.noNewPrivs === true;
  for (const key of ['maskedPaths', 'readonlyPaths'] as const) {
    const list = s[key];
    if (list === undefined) continue;
    if (list.length > 256) throw invalid(`${field}.${key}`, `at most 256 paths (got ${list.length})`);
    out[key] = list.map((p, i) => validateAbsolute(`${field}.${key}[${i}]`, p));
  }
  if (s.runAsUser !== undefined) out.runAsUser = checkInt(`${field}.runAsUser`, s.runAsUser, [0, MAX_ID])!;
  if (s.runAsGroup !== undefined) out.runAsGroup = checkInt(`${field}.runAsGroup`, s.runAsGroup, [0, MAX_ID])!;
  if (s.supplementalGroups !== undefined) {
    if (s.supplementalGroups.length > 64) throw invalid(`${field}.supplementalGroups`, `at most 64 groups (got ${s.supplementalGroups.length})`);
    out.supplementalGroups = s.supplementalGroups.map((g, i) => checkInt(`${field}.supplementalGroups[${i}]`, g, [0, MAX_ID])!);
  }
  if (s.namespaces !== undefined) {
    const ns: NonNullable<ContainerSecurity['namespaces']> = {};
    for (const key of ['pid', 'ipc', 'network'] as const) {
      const mode = s.namespaces[key];
      if (mode === undefined) continue;
      const allowed = NAMESPACE_MODES[key] as readonly string[];
      if (!allowed.includes(mode)) throw invalid(`${field}.namespaces.${key}`, `${shown(String(mode))} is not a mode: ${allowed.map((a) => `"${a}"`).join(', ')}`);
      // A pid namespace cannot be pinned like net/ipc/uts: it dies with its first process (no pause process here).
      if (key === 'pid' && mode === 'pod') throw new AuraeError('UNIMPLEMENTED', `${field}.namespaces.pid: "pod" (one pid namespace shared by the pod's containers) is not implemented: use "container" or "node"`);
      (ns as Record<string, string>)[key] = mode;
    }
    out.namespaces = ns;
  }
  return out;
}

/** cgroup v1 cpu shares are 2..262144 (the kubelet sends them; mapped to cpu.weight in oci-spec.ts). */
const CPU_SHARES: readonly [number, number] = [2, 262_144];
/** cgroup v2 cpu.max: period 1 ms..1 s, quota at least 1 ms. */
const CPU_PERIOD: readonly [number, number] = [1_000, 1_000_000];
const CPU_QUOTA: readonly [number, number] = [1_000, Number.MAX_SAFE_INTEGER];

export function validateResources(field: string, r: ContainerResources): ContainerResources {
  const out: ContainerResources = {};
  if (r.cpuShares !== undefined) out.cpuShares = checkInt(`${field}.cpuShares`, r.cpuShares, CPU_SHARES)!;
  if (r.cpuQuota !== undefined) out.cpuQuota = checkInt(`${field}.cpuQuota`, r.cpuQuota, CPU_QUOTA)!;
  if (r.cpuPeriod !== undefined) out.cpuPeriod = checkInt(`${field}.cpuPeriod`, r.cpuPeriod, CPU_PERIOD)!;
  if (r.memoryLimit !== undefined) out.memoryLimit = checkInt(`${field}.memoryLimit`, r.memoryLimit, [1, Number.MAX_SAFE_INTEGER])!;
  if (r.oomScoreAdj !== undefined) out.oomScoreAdj = checkInt(`${field}.oomScoreAdj`, r.oomScoreAdj, [-1000, 1000])!;
  if (r.memorySwapLimit !== undefined) {
    out.memorySwapLimit = checkInt(`${field}.memorySwapLimit`, r.memorySwapLimit, [1, Number.MAX_SAFE_INTEGER])!;
    if (out.memoryLimit === undefined || out.memorySwapLimit < out.memoryLimit) throw invalid(`${field}.memorySwapLimit`, 'memory + swap: needs memoryLimit and must be at least it');
  }
  return out;
}

function validateSysctls(field: string, sysctls: Record<string, string>): Record<string, string> {
  const entries = Object.entries(sysctls);
  if (entries.length > 64) throw invalid(field, `at most 64 sysctls (got ${entries.length})`);
  const out: Record<string, string> = {};
  for (const [key, value] of entries) {
    if (!/^[a-z0-9_]+([./][a-zA-Z0-9_-]+)+$/.test(key)) throw invalid(`${field}[${key}]`, 'not a sysctl name: use dotted form such as net.ipv4.ip_unprivileged_port_start');
    if (typeof value !== 'string' || value.includes('\0') || value.length > 4096) throw invalid(`${field}[${key}]`, 'the value must be a string of at most 4096 characters without NUL');
    // The kubelet may send slashes (net/ipv4/ip_forward): the OCI spec wants dots.
    out[key.replace(/\//g, '.')] = value;
  }
  return out;
}

/** An argv list: at most EXECUTABLE_LIMITS entries and bytes, no NUL, a non-empty program. */
export function validateArgv(field: string, argv: string[]): string[] {
  if (argv.length > EXECUTABLE_LIMITS.argvEntries) throw invalid(field, `too many entries (${argv.length}): at most ${EXECUTABLE_LIMITS.argvEntries}`);
  let bytes = 0;
  argv.forEach((arg, i) => {
    if (arg.includes('\0')) throw invalid(`${field}[${i}]`, 'NUL characters are not allowed');
    bytes += utf8Bytes(arg) + 1;
  });
  if (bytes > EXECUTABLE_LIMITS.argvBytes) throw invalid(field, `too long: ${bytes} bytes, at most ${EXECUTABLE_LIMITS.argvBytes}`);
  if (argv.length > 0 && argv[0] === '') throw invalid(`${field}[0]`, 'the program must not be empty');
  return [...argv];
}

/** An absolute path without "."/".." components or control characters. */
export function validateAbsolute(field: string, value: string): string {
  if (!value.startsWith('/')) throw invalid(field, `${shown(value)} is not an absolute path`);
  if (value.length > EXECUTABLE_LIMITS.pathChars) throw invalid(field, `too long: at most ${EXECUTABLE_LIMITS.pathChars} characters`);
  if (/\p{C}/u.test(value)) throw invalid(field, 'control, format or unassigned characters are not allowed');
  if (value.split('/').some((part) => part === '..' || part === '.')) throw invalid(field, `${shown(value)}: "." and ".." components are not allowed`);
  return value;
}

/** Environment variables: names [A-Za-z_][A-Za-z0-9_]*, no NUL, within EXECUTABLE_LIMITS. */
export function validateEnv(field: string, env: Record<string, string>): Record<string, string> {
  const entries = Object.entries(env);
  if (entries.length > EXECUTABLE_LIMITS.envEntries) throw invalid(field, `too many variables (${entries.length}): at most ${EXECUTABLE_LIMITS.envEntries}`);
  let bytes = 0;
  const out: Record<string, string> = {};
  for (const [key, value] of entries) {
    if (key.length > EXECUTABLE_LIMITS.envNameChars || !ENV_NAME.test(key)) {
      throw invalid(field, `${shown(key)} is not a variable name: [A-Za-z_][A-Za-z0-9_]*, at most ${EXECUTABLE_LIMITS.envNameChars} characters`);
    }
    if (value.includes('\0')) throw invalid(`${field}[${key}]`, 'NUL characters are not allowed');
    bytes += utf8Bytes(key) + utf8Bytes(value) + 2;
    out[key] = value;
  }
  if (bytes > EXECUTABLE_LIMITS.envBytes) throw invalid(field, `too large: ${bytes} bytes, at most ${EXECUTABLE_LIMITS.envBytes}`);
  return out;
}
