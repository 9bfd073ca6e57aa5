// The stat files of a cgroup v2 group (Documentation/admin-guide/cgroup-v2.rst): pure parsers for flat keyed
// files (cpu.stat, memory.events: "key value" per line), single values (memory.current: "123", memory.max:
// "max") and io.stat (nested keyed: "MAJ:MIN rbytes=1 wbytes=2 ..." per device), and the readers that fetch
// them through the CgroupFs (GetMetrics, a cell's usage, an executable's OOM kills).
import { type CgroupFs, isGone } from './fs';
import { join } from './layout';

/** "key value" lines → map; lines that do not match are ignored (newer kernels add keys, never change them). */
export function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(\S+) (\d+)$/.exec(line.trim());
    if (match) out.set(match[1]!, Number(match[2]));
  }
  return out;
}

/** A single-value file: a number, or null for "max" (no limit); undefined when it holds neither. */
export function parseSingleValue(text: string): number | null | undefined {
  const value = text.trim();
  if (value === 'max') return null;
  return /^\d+$/.test(value) ? Number(value) : undefined;
}

export interface IoTotals {
  rbytes: number;
  wbytes: number;
  rios: number;
  wios: number;
}

/** io.stat summed over every device. */
export function parseIoStat(text: string): IoTotals {
  const totals: IoTotals = { rbytes: 0, wbytes: 0, rios: 0, wios: 0 };
  for (const line of text.split('\n')) {
    const [device, ...fields] = line.trim().split(/\s+/);
    if (!device || !/^\d+:\d+$/.test(device)) continue;
    for (const field of fields) {
      const [key, value] = field.split('=');
      if (key !== undefined && key in totals && value !== undefined && /^\d+$/.test(value)) totals[key as keyof IoTotals] += Number(value);
    }
  }
  return totals;
}

/** What GetMetrics reports for one cgroup; a field is undefined when its file is missing. */
export interface CgroupMetrics {
  cpuUsageUsec?: number;
  cpuUserUsec?: number;
  cpuSystemUsec?: number;
  cpuNrPeriods?: number;
  cpuNrThrottled?: number;
  cpuThrottledUsec?: number;
  memoryCurrentBytes?: number;
  memoryPeakBytes?: number;
  /** undefined also when the limit is "max". */
  memoryMaxBytes?: number;
  memoryOom?: number;
  memoryOomKill?: number;
  pidsCurrent?: number;
  /** undefined also when the limit is "max". */
  pidsMax?: number;
  ioReadBytes?: number;
  ioWriteBytes?: number;
  ioReadIos?: number;
  ioWriteIos?: number;
}

/** The files read for one cgroup, by name; a missing file is absent (or undefined). */
export type CgroupFiles = Partial<Record<(typeof CGROUP_METRIC_FILES)[number], string>>;

export const CGROUP_METRIC_FILES = ['cpu.stat', 'memory.current', 'memory.peak', 'memory.max', 'memory.events', 'pids.current', 'pids.max', 'io.stat'] as const;

/** Turn the raw files of one cgroup into metrics. */
export function cgroupMetrics(files: CgroupFiles): CgroupMetrics {
  const m: CgroupMetrics = {};
  const single = (name: keyof CgroupFiles) => {
    const text = files[name];
    return text === undefined ? undefined : (parseSingleValue(text) ?? undefined);
  };
  if (files['cpu.stat'] !== undefined) {
    const cpu = parseFlatKeyed(files['cpu.stat']);
    m.cpuUsageUsec = cpu.get('usage_usec');
    m.cpuUserUsec = cpu.get('user_usec');
    m.cpuSystemUsec = cpu.get('system_usec');
    // nr_periods etc. exist only when the cpu controller is enabled for this cgroup.
    m.cpuNrPeriods = cpu.get('nr_periods');
    m.cpuNrThrottled = cpu.get('nr_throttled');
    m.cpuThrottledUsec = cpu.get('throttled_usec');
  }
  m.memoryCurrentBytes = single('memory.current');
  m.memoryPeakBytes = single('memory.peak');
  m.memoryMaxBytes = single('memory.max');
  if (files['memory.events'] !== undefined) {
    const events = parseFlatKeyed(files['memory.events']);
    m.memoryOom = events.get('oom');
    m.memoryOomKill = events.get('oom_kill');
  }
  m.pidsCurrent = single('pids.current');
  m.pidsMax = single('pids.max');
  if (files['io.stat'] !== undefined) {
    const io = parseIoStat(files['io.stat']);
    m.ioReadBytes = io.rbytes;
    m.ioWriteBytes = io.wbytes;
    m.ioReadIos = io.rios;
    m.ioWriteIos = io.wios;
  }
  // Leave no explicit undefineds: they would read as "present but empty" in JSON and tests.
  for (const key of Object.keys(m) as Array<keyof CgroupMetrics>) if (m[key] === undefined) delete m[key];
  return m;
}

/** A stat file that exists but could not be read (EACCES, EIO…); `cause` is the fs error. */
export class CgroupReadError extends Error {
  constructor(
    readonly file: string,
    override readonly cause: unknown,
  ) {
    super(`reading ${file} failed (${(cause as NodeJS.ErrnoException)?.code ?? 'error'})`);
  }
}

type MetricFile = (typeof CGROUP_METRIC_FILES)[number];

/**
 * Read `names` from the cgroup `dir`: a file that is gone (controller not enabled, cgroup just removed) is
 * absent. Another failure throws a CgroupReadError, or with `unreadable: 'skip'` leaves the file absent too.
 */
export function readStatFiles(
  fs: Pick<CgroupFs, 'read'>,
  dir: string,
  names: readonly MetricFile[] = CGROUP_METRIC_FILES,
  unreadable: 'throw' | 'skip' = 'throw',
): CgroupFiles {
  const files: CgroupFiles = {};
  for (const name of names) {
    const file = join(dir, name);
    try {
      files[name] = fs.read(file);
    } catch (err) {
      if (isGone(err) || unreadable === 'skip') continue;
      throw new CgroupReadError(file, err);
    }
  }
  return files;
}

/** What a cell's List/Get shows of its usage; a field is undefined when its file is missing or unreadable. */
export interface CgroupUsage {
  memoryCurrentBytes?: number;
  pidsCurrent?: number;
  cpuUsageUsec?: number;
}

/** A cgroup's current memory, pids and CPU time. Never throws. */
export function readUsage(fs: Pick<CgroupFs, 'read'>, dir: string): CgroupUsage {
  const m = cgroupMetrics(readStatFiles(fs, dir, ['memory.current', 'pids.current', 'cpu.stat'], 'skip'));
  const usage: CgroupUsage = {};
  if (m.memoryCurrentBytes !== undefined) usage.memoryCurrentBytes = m.memoryCurrentBytes;
  if (m.pidsCurrent !== undefined) usage.pidsCurrent = m.pidsCurrent;
  if (m.cpuUsageUsec !== undefined) usage.cpuUsageUsec = m.cpuUsageUsec;
  return usage;
}

/** memory.events oom_kill of a cgroup (0 when unreadable). */
export function readOomKills(fs: Pick<CgroupFs, 'read'>, dir: string): number {
  return cgroupMetrics(readStatFiles(fs, dir, ['memory.events'], 'skip')).memoryOomKill ?? 0;
}
