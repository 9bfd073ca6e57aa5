// Every numeric limit of the API, [min, max] inclusive, in one table: auraed validates requests with it (naming
// the field and the range), the SDK re-exports it, and aer's options parse with it, so a limit changes here only.

export const RANGES = {
  // Cells (cgroup v2). cpu.weight and io.weight as the kernel takes them.
  cpuWeight: [1, 10_000],
  // µs. The kernel accepts a quota of at least 1 ms; 10^12 µs per period is far beyond any real limit.
  cpuMax: [1_000, 1_000_000_000_000],
  cpuPeriod: [1_000, 1_000_000],
  // Bytes, up to what a JavaScript number holds exactly.
  memory: [0, Number.MAX_SAFE_INTEGER],
  // PID_MAX_LIMIT on 64-bit Linux.
  pidsMax: [1, 4_194_304],
  ioWeight: [1, 10_000],
  // NR_CPUS is at most 8192; MAX_NUMNODES at most 1024.
  cpuId: [0, 8_191],
  memNode: [0, 1_023],

  // Executables: uids and gids (2^32 - 2: -1 means "unchanged" to the kernel), the restart policy, Stop's grace.
  id: [0, 4_294_967_294],
  restartDelayMs: [1, 3_600_000],
  startLimitBurst: [1, 1_000],
  startLimitIntervalMs: [1, 86_400_000],
  stopGraceMs: [0, 300_000],

  // Node: characters of a power-off or reboot reason.
  reasonChars: [0, 256],

  // Observe: lines of a log tail.
  logTail: [0, 100_000],

  // Authz: records of one ListAudit page.
  auditLimit: [1, 1_000],

  // Child VMs: guest RAM in MiB (each node caps it lower with vms.maxMemoryMiB) and virtual CPUs.
  vmMemoryMiB: [128, 65_536],
  vmCpus: [1, 16],
} as const satisfies Record<string, readonly [number, number]>;

/** What the API uses when a field is unset (0 or absent). */
export const DEFAULTS = {
  cpuPeriod: 100_000,
  stopGraceMs: 10_000,
  auditLimit: 100,
  vmMemoryMiB: 512,
  vmCpus: 1,
} as const;

/** "1..10000" */
export function rangeText(range: readonly [number, number]): string {
  return `${range[0]}..${range[1]}`;
}
