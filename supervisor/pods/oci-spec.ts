// The OCI runtime spec (a bundle's config.json) of one container, for crun 1.8.1 on cgroup v2 (pure).
//
// Defaults follow containerd's (oci/spec.go populateDefaultUnixSpec and oci.WithDefaultUnixDevices): its
// capability set in bounding/effective/permitted (never inheritable or ambient), no_new_privileges, its masked
// and read-only /proc and /sys paths, its mounts, RLIMIT_NOFILE 1024, devices denied but the standard ones. On
// top, a small seccomp deny-list (DEFAULT_SECCOMP). Inputs crun would only refuse later (a relative cwd, an
// unknown capability, a sysctl without its namespace, …) are refused here with the field named.
import { invalid } from '../validation';

/** crun 1.8.1 accepts any ociVersion containing "1.0" (it prints "1.0.0" in `crun spec`); 1.1.x is refused. */
export const OCI_VERSION = '1.0.2-dev';

export type NamespaceType = 'pid' | 'network' | 'ipc' | 'uts' | 'mount' | 'cgroup';
export const NAMESPACE_TYPES: readonly NamespaceType[] = ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup'];

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface OciSpecInput {
  args: string[];
  /** "KEY=value" entries. */
  env: string[];
  /** Absolute path inside the container. */
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  /** Set only when the UTS namespace is a new one (a joined one keeps the hostname its creator set). */
  hostname?: string;
  /** The root filesystem: absolute, or relative to the bundle directory. */
  rootfs: string;
  readOnlyRootfs: boolean;
  /** true: the process gets a pty (crun sends its master to --console-socket: the CRI's tty, container-stdio.ts). */
  terminal: boolean;
  /** A namespace with `path` is joined (/proc/PID/ns/TYPE of an existing process); without, a new one is made. */
  namespaces: { type: NamespaceType; path?: string }[];
  /** The container's cgroup relative to the cgroup2 root, e.g. "/aurae/web/ctr.app" (crun --cgroup-manager=cgroupfs). */
  cgroupsPath: string;
  resources?: { memoryMax?: number; pidsMax?: number; cpuWeight?: number };
  /** Names with or without "CAP_", any case; "ALL" in drop clears the default set, "ALL" in add grants every capability. */
  capabilities?: { add: string[]; drop: string[] };
  noNewPrivileges: boolean;
  /** Extra mounts; one whose destination is a default mount's replaces it. */
  mounts?: OciMount[];
  /** Namespaced sysctls only (net.* needs a network namespace, IPC ones an ipc namespace, …). */
  sysctl?: Record<string, string>;
  /** Extension of the plan's contract: 'default' (DEFAULT_SECCOMP, the default) or 'unconfined' (no filter). */
  seccomp?: 'default' | 'unconfined';
  /** Replace MASKED_PATHS / READONLY_PATHS ([] for none, as a privileged container has). */
  maskedPaths?: string[];
  readonlyPaths?: string[];
  /** Device cgroup rules: 'default' (defaultDeviceRules) or 'all' (every device allowed: privileged). */
  devices?: 'default' | 'all';
  /** /sys and /sys/fs/cgroup writable (privileged). */
  sysfsWritable?: boolean;
  /** The container's init's oom_score_adj (-1000..1000); crun writes it. */
  oomScoreAdj?: number;
  /** Propagation of the root's mount: 'rslave' or 'rshared' when a bind mount asks for it (default private). */
  rootfsPropagation?: 'rslave' | 'rshared';
}

// --- The config.json shape (the subset of opencontainers/runtime-spec v1.0.2 we write) ---------------------------
export interface OciCapabilities {
  bounding: string[];
  effective: string[];
  inheritable: string[];
  permitted: string[];
  ambient: string[];
}
export interface OciDeviceRule {
  allow: boolean;
  type?: 'a' | 'c' | 'b';
  major?: number;
  minor?: number;
  access: string;
}
export interface OciSeccomp {
  defaultAction: string;
  architectures: string[];
  syscalls: { names: string[]; action: string; errnoRet?: number }[];
}
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: OciCapabilities;
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
    oomScoreAdj?: number;
  };
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  linux: {
    cgroupsPath: string;
    namespaces: { type: NamespaceType; path?: string }[];
    resources: {
      devices: OciDeviceRule[];
      memory?: { limit: number };
      pids?: { limit: number };
      unified?: Record<string, string>;
    };
    sysctl?: Record<string, string>;
    seccomp?: OciSeccomp;
    maskedPaths: string[];
    readonlyPaths: string[];
    rootfsPropagation?: string;
  };
}

/** containerd's default capabilities (and Docker's). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Every capability Linux 6.1 knows (capability.h, 0..40), in number order. */
export const ALL_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/** containerd's masked paths: bind-mounted over with /dev/null (files) or an empty read-only tmpfs (dirs). */
export const MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
  '/proc/scsi',
];

/** containerd's read-only paths (remounted read-only inside the container). */
export const READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** containerd's default mounts, plus the read-only cgroup2 view of the container's own cgroup. */
export function defaultMounts(): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
}

/**
 * Device cgroup rules (crun enforces them with an eBPF program on cgroup v2): everything denied, then containerd's
 * defaults — mknod of any node (the device rules still gate its use), and the devices crun creates in /dev.
 */
export function defaultDeviceRules(): OciDeviceRule[] {
  const rwm = (major: number, minor: number): OciDeviceRule => ({ allow: true, type: 'c', major, minor, access: 'rwm' });
  return [
    { allow: false, access: 'rwm' },
    { allow: true, type: 'c', access: 'm' },
    { allow: true, type: 'b', access: 'm' },
    rwm(1, 3), // /dev/null
    rwm(1, 5), // /dev/zero
    rwm(1, 7), // /dev/full
    rwm(1, 8), // /dev/random
    rwm(1, 9), // /dev/urandom
    rwm(5, 0), // /dev/tty
    rwm(5, 2), // /dev/ptmx
    { allow: true, type: 'c', major: 136, access: 'rwm' }, // /dev/pts/*
  ];
}

/**
 * The default seccomp profile: a deny-list (EPERM) of syscalls that reach kernel-wide state no container should
 * touch — keyrings (not namespaced), kernel modules, kexec/reboot, clocks, swap, accounting, BPF, perf, userfaultfd,
 * mounts and namespace creation or entry (unshare(CLONE_NEWUSER) needs no capability, so only seccomp stops it),
 * handle-based opens that escape the root. Docker blocks the same ones in its allow-list profile; a deny-list keeps
 * this readable and lets every other syscall (and new ones) through.
 */
export const DEFAULT_SECCOMP_DENIED: readonly string[] = [
  'acct',
  'add_key',
  'bpf',
  'clock_adjtime',
  'clock_settime',
  'delete_module',
  'finit_module',
  'fsconfig',
  'fsmount',
  'fsopen',
  'fspick',
  'init_module',
  'ioperm',
  'iopl',
  'kcmp',
  'kexec_file_load',
  'kexec_load',
  'keyctl',
  'lookup_dcookie',
  'mount',
  'mount_setattr',
  'move_mount',
  'name_to_handle_at',
  'open_by_handle_at',
  'open_tree',
  'perf_event_open',
  'pivot_root',
  'quotactl',
  'reboot',
  'request_key',
  'setns',
  'settimeofday',
  'swapoff',
  'swapon',
  'syslog',
  'umount2',
  'unshare',
  'uselib',
  'userfaultfd',
  'ustat',
  'vhangup',
];

export const DEFAULT_SECCOMP: OciSeccomp = {
  defaultAction: 'SCMP_ACT_ALLOW',
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  syscalls: [{ names: [...DEFAULT_SECCOMP_DENIED], action: 'SCMP_ACT_ERRNO', errnoRet: 1 /* EPERM */ }],
};

/** The default PATH when the image's env has none (containerd's). */
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const MAX_ID = 0xffff_fffe; // (uid_t)-1 means "unchanged" to the kernel
const MAX_CPU_WEIGHT = 10_000;

/** Sysctl prefixes that are per namespace, and the namespace each needs (crun refuses any other sysctl). */
const SYSCTL_NAMESPACES: readonly { match: (key: string) => boolean; ns: NamespaceType }[] = [
  { match: (k) => k.startsWith('net.'), ns: 'network' },
  { match: (k) => ['kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall', 'kernel.shmmax', 'kernel.shmmni', 'kernel.shm_rmid_forced'].includes(k) || k.startsWith('fs.mqueue.'), ns: 'ipc' },
  { match: (k) => k === 'kernel.hostname' || k === 'kernel.domainname', ns: 'uts' },
];

function checkString(field: string, value: unknown, opts: { nonEmpty?: boolean; absolute?: boolean } = {}): string {
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  if (value.includes('\0')) throw invalid(field, 'must not contain NUL characters');
  if (opts.nonEmpty && value === '') throw invalid(field, 'required: must not be empty');
  if (opts.absolute && !value.startsWith('/')) throw invalid(field, `${JSON.stringify(value)} is not an absolute path: start it with "/"`);
  return value;
}

function checkId(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > MAX_ID) {
    throw invalid(field, `${String(value)} is not a valid id: allowed 0..${MAX_ID}`);
  }
  return value;
}

function checkPositive(field: string, value: number | undefined, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw invalid(field, `${String(value)} is out of range: allowed 1..${max}`);
  }
  return value;
}

/** "net_admin", "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; "all" → "ALL". */
export function capabilityName(field: string, raw: unknown): string {
  const name = checkString(field, raw, { nonEmpty: true }).toUpperCase();
  if (name === 'ALL') return 'ALL';
  const full = name.startsWith('CAP_') ? name : `CAP_${name}`;
  if (!ALL_CAPABILITIES.includes(full)) throw invalid(field, `unknown capability ${JSON.stringify(raw)}: use a name like NET_ADMIN or CAP_NET_ADMIN`);
  return full;
}

/**
 * The capability set: containerd's defaults; drop ALL clears them, add ALL grants every capability, then named
 * additions, then named drops (a capability both added and dropped is dropped).
 */
export function capabilitySet(caps: { add: string[]; drop: string[] } | undefined): string[] {
  const add = (caps?.add ?? []).map((c, i) => capabilityName(`capabilities.add[${i}]`, c));
  const drop = (caps?.drop ?? []).map((c, i) => capabilityName(`capabilities.drop[${i}]`, c));
  let set = new Set<string>(drop.includes('ALL') ? [] : DEFAULT_CAPABILITIES);
  if (add.includes('ALL')) set = new Set(ALL_CAPABILITIES);
  for (const c of add) if (c !== 'ALL') set.add(c);
  for (const c of drop) set.delete(c);
  return ALL_CAPABILITIES.filter((c) => set.has(c));
}

function checkNamespaces(namespaces: unknown): { type: NamespaceType; path?: string }[] {
  if (!Array.isArray(namespaces)) throw invalid('namespaces', 'must be a list');
  const seen = new Set<string>();
  const out = namespaces.map((ns: { type?: unknown; path?: unknown }, i) => {
    const field = `namespaces[${i}]`;
    if (!NAMESPACE_TYPES.includes(ns?.type as NamespaceType)) throw invalid(`${field}.type`, `${JSON.stringify(ns?.type)} is not allowed: use one of ${NAMESPACE_TYPES.join(', ')}`);
    const type = ns.type as NamespaceType;
    if (seen.has(type)) throw invalid(`${field}.type`, `namespace ${type} is listed twice`);
    seen.add(type);
    if (ns.path === undefined) return { type };
    return { type, path: checkString(`${field}.path`, ns.path, { nonEmpty: true, absolute: true }) };
  });
  const mount = out.find((ns) => ns.type === 'mount');
  // Without its own mount namespace crun would mount /proc, /dev, … over the node's own.
  if (!mount) throw invalid('namespaces', 'a new mount namespace is required: add { type: "mount" }');
  if (mount.path !== undefined) throw invalid('namespaces', 'the mount namespace must be a new one (no path): the container gets its own root');
  return out;
}

function checkCgroupsPath(value: unknown): string {
  const p = checkString('cgroupsPath', value, { nonEmpty: true, absolute: true });
  const parts = p.split('/').slice(1);
  if (parts.length === 0 || parts.some((s) => s === '' || s === '.' || s === '..')) {
    throw invalid('cgroupsPath', `${JSON.stringify(p)} is not a cgroup path: use "/a/b/leaf" (no empty, "." or ".." parts, no trailing "/")`);
  }
  return p;
}

function checkEnv(env: unknown): string[] {
  if (!Array.isArray(env)) throw invalid('env', 'must be a list of "KEY=value" strings');
  const out = env.map((e, i) => {
    const s = checkString(`env[${i}]`, e);
    const eq = s.indexOf('=');
    if (eq <= 0) throw invalid(`env[${i}]`, `${JSON.stringify(s)} is not "KEY=value" (KEY non-empty)`);
    return s;
  });
  return out.some((e) => e.startsWith('PATH=')) ? out : [DEFAULT_PATH, ...out];
}

function mergeMounts(extra: OciMount[] | undefined, sysfsWritable: boolean): OciMount[] {
  const mounts = defaultMounts().map((m) => (sysfsWritable && m.destination.startsWith('/sys') ? { ...m, options: m.options!.filter((o) => o !== 'ro').concat('rw') } : m));
  (extra ?? []).forEach((m, i) => {
    const field = `mounts[${i}]`;
    const destination = checkString(`${field}.destination`, m?.destination, { nonEmpty: true, absolute: true });
    const type = checkString(`${field}.type`, m.type, { nonEmpty: true });
    const source = checkString(`${field}.source`, m.source, { nonEmpty: true });
    const options = m.options === undefined ? undefined : m.options.map((o, j) => checkString(`${field}.options[${j}]`, o, { nonEmpty: true }));
    const mount: OciMount = { destination, type, source, ...(options ? { options } : {}) };
    const at = mounts.findIndex((d) => d.destination === destination);
    if (at >= 0) mounts[at] = mount;
    else mounts.push(mount);
  });
  return mounts;
}

function checkSysctl(sysctl: Record<string, string> | undefined, namespaces: { type: NamespaceType }[]): Record<string, string> | undefined {
  if (sysctl === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(sysctl)) {
    const field = `sysctl[${key}]`;
    if (!/^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$/.test(key)) throw invalid(field, 'not a sysctl name: use dotted form such as net.ipv4.ip_unprivileged_port_start');
    const rule = SYSCTL_NAMESPACES.find((r) => r.match(key));
    if (!rule) throw invalid(field, 'not a namespaced sysctl: only net.*, the IPC ones (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*) and kernel.hostname/domainname can be set per container');
    if (!namespaces.some((ns) => ns.type === rule.ns)) throw invalid(field, `needs a ${rule.ns} namespace: add { type: "${rule.ns}" } to namespaces`);
    out[key] = checkString(field, value);
  }
  return out;
}

/**
 * The config.json of one container. Precondition: none (every field is checked); throws AuraeError
 * INVALID_ARGUMENT "<field>: <what is allowed>" (fields as named in OciSpecInput).
 */
export function ociSpec(input: OciSpecInput): OciSpec {
  if (!Array.isArray(input.args) || input.args.length === 0) throw invalid('args', 'required: at least the program to run');
  const args = input.args.map((a, i) => checkString(`args[${i}]`, a, { nonEmpty: i === 0 }));
  const env = checkEnv(input.env);
  const cwd = checkString('cwd', input.cwd, { nonEmpty: true, absolute: true });
  const uid = checkId('uid', input.uid);
  const gid = checkId('gid', input.gid);
  if (!Array.isArray(input.additionalGids)) throw invalid('additionalGids', 'must be a list of group ids');
  const additionalGids = input.additionalGids.map((g, i) => checkId(`additionalGids[${i}]`, g));
  if (typeof input.terminal !== 'boolean') throw invalid('terminal', 'must be true (a pty, crun --console-socket) or false (pipes to the executable\'s logs)');
  const rootfs = checkString('rootfs', input.rootfs, { nonEmpty: true });
  const namespaces = checkNamespaces(input.namespaces);
  const cgroupsPath = checkCgroupsPath(input.cgroupsPath);
  const memoryMax = checkPositive('resources.memoryMax', input.resources?.memoryMax);
  const pidsMax = checkPositive('resources.pidsMax', input.resources?.pidsMax);
  const cpuWeight = checkPositive('resources.cpuWeight', input.resources?.cpuWeight, MAX_CPU_WEIGHT);
  const capabilities = capabilitySet(input.capabilities);
  const uts = namespaces.find((ns) => ns.type === 'uts');
  let hostname: string | undefined;
  if (input.hostname !== undefined) {
    hostname = checkString('hostname', input.hostname, { nonEmpty: true });
    if (!/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/.test(hostname) || hostname.length > 64) {
      throw invalid('hostname', `${JSON.stringify(hostname)} is not a host name: letters, digits, "-" and ".", at most 64 characters`);
    }
    // Setting it without a uts namespace would rename the node (crun refuses); a joined one keeps its creator's.
    if (!uts) throw invalid('hostname', 'needs a uts namespace: add { type: "uts" } to namespaces');
    if (uts.path !== undefined) hostname = undefined;
  }
  const sysctl = checkSysctl(input.sysctl, namespaces);
  const pathList = (field: 'maskedPaths' | 'readonlyPaths', fallback: readonly string[]) => {
    const list = input[field];
    if (list === undefined) return [...fallback];
    if (!Array.isArray(list)) throw invalid(field, 'must be a list of absolute paths');
    return list.map((p, i) => checkString(`${field}[${i}]`, p, { nonEmpty: true, absolute: true }));
  };
  const maskedPaths = pathList('maskedPaths', MASKED_PATHS);
  const readonlyPaths = pathList('readonlyPaths', READONLY_PATHS);
  const devices = input.devices ?? 'default';
  if (devices !== 'default' && devices !== 'all') throw invalid('devices', `${JSON.stringify(devices)} is not allowed: use "default" or "all"`);
  let oomScoreAdj: number | undefined;
  if (input.oomScoreAdj !== undefined) {
    if (!Number.isSafeInteger(input.oomScoreAdj) || input.oomScoreAdj < -1000 || input.oomScoreAdj > 1000) throw invalid('oomScoreAdj', `${String(input.oomScoreAdj)} is out of range: allowed -1000..1000`);
    oomScoreAdj = input.oomScoreAdj;
  }
  const rootfsPropagation = input.rootfsPropagation;
  if (rootfsPropagation !== undefined && rootfsPropagation !== 'rslave' && rootfsPropagation !== 'rshared') {
    throw invalid('rootfsPropagation', `${JSON.stringify(rootfsPropagation)} is not allowed: use "rslave" or "rshared" (or leave it out: private)`);
  }
  const seccomp = input.seccomp ?? 'default';
  if (seccomp !== 'default' && seccomp !== 'unconfined') throw invalid('seccomp', `${JSON.stringify(seccomp)} is not allowed: use "default" or "unconfined"`);

  const resources: OciSpec['linux']['resources'] = { devices: devices === 'all' ? [{ allow: true, access: 'rwm' }] : defaultDeviceRules() };
  if (memoryMax !== undefined) resources.memory = { limit: memoryMax };
  if (pidsMax !== undefined) resources.pids = { limit: pidsMax };
  // cgroup v2 weight as is: crun 1.8.1 would turn cpu.shares into a weight with its own (lossy) formula.
  if (cpuWeight !== undefined) resources.unified = { 'cpu.weight': String(cpuWeight) };

  return {
    ociVersion: OCI_VERSION,
    process: {
      terminal: input.terminal,
      user: { uid, gid, ...(additionalGids.length > 0 ? { additionalGids } : {}) },
      args,
      env,
      cwd,
      capabilities: { bounding: capabilities, effective: [...capabilities], inheritable: [], permitted: [...capabilities], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: input.noNewPrivileges === true,
      ...(oomScoreAdj !== undefined ? { oomScoreAdj } : {}),
    },
    root: { path: rootfs, readonly: input.readOnlyRootfs === true },
    ...(hostname !== undefined ? { hostname } : {}),
    mounts: mergeMounts(input.mounts, input.sysfsWritable === true),
    linux: {
      cgroupsPath,
      namespaces,
      resources,
      ...(sysctl !== undefined && Object.keys(sysctl).length > 0 ? { sysctl } : {}),
      ...(seccomp === 'default' ? { seccomp: structuredClone(DEFAULT_SECCOMP) } : {}),
      maskedPaths,
      readonlyPaths,
      ...(rootfsPropagation !== undefined ? { rootfsPropagation } : {}),
    },
  };
}
