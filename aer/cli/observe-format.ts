// Text renderings for aer logs / events / top (-o json prints the SDK's objects, one per line).
import type { CellMetrics, LogEntry, MetricsSnapshot, ObservedEvent } from '../sdk';

/** 1536 → "1.5K"; binary units, one decimal below 10. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${value}B`;
  return `${value < 10 ? value.toFixed(1) : Math.round(value)}${units[unit]}`;
}

/** An executable's line: as written, or with -t "TIME STREAM line". */
export function formatLogEntry(entry: LogEntry, timestamps: boolean): string {
  return timestamps ? `${entry.time} ${entry.channel.padEnd(6)} ${entry.line}` : entry.line;
}

/**
 * One of auraed's JSON log lines made readable: "TIME LEVEL subsystem: msg key=value …"; anything that is not
 * such a line is shown as it is.
 */
export function formatDaemonLine(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof record !== 'object' || record === null || typeof record.msg !== 'string') return line;
  const { time, level, subsystem, msg, ...fields } = record;
  const rest = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`);
  return [String(time ?? ''), String(level ?? '').toUpperCase().padEnd(5), `${String(subsystem ?? '')}:`, msg, ...rest].join(' ');
}

/**
 * "SEQ TIME KIND CELL[/EXECUTABLE] details", "SEQ TIME KIND vm:NAME details" for a child VM, or
 * "SEQ TIME KIND pod:POD/CONTAINER details" for a pod's container.
 */
export function formatEvent(e: ObservedEvent): string {
  const where = 'vm' in e ? `vm:${e.vm}` : 'container' in e ? `pod:${e.pod}/${e.container}` : 'executable' in e ? `${e.cell}/${e.executable}` : e.cell;
  let details = '';
  switch (e.kind) {
    case 'executable_started':
      details = `pid=${e.pid}`;
      break;
    case 'executable_exited':
      details = `pid=${e.pid} ${e.signal !== null ? `signal=${e.signal}` : `code=${e.code}`}`;
      break;
    case 'executable_restarted':
      details = `attempt=${e.attempt} after=${e.delayMs}ms`;
      break;
    case 'executable_oom_killed':
      details = `count=${e.count}`;
      break;
    case 'start_limit_hit':
      details = `starts=${e.starts} within=${e.intervalMs}ms`;
      break;
    case 'vm_started':
      details = `pid=${e.pid} address=${e.address}`;
      break;
    case 'vm_exited':
      // A crash is what an operator looks for: say so rather than leave it to expected=false.
      details = `pid=${e.pid} ${e.signal !== null ? `signal=${e.signal}` : `code=${e.code}`} ${e.expected ? 'stopped' : 'crashed'}`;
      break;
    case 'vm_restarted':
      details = `attempt=${e.attempt} after=${e.delayMs}ms`;
      break;
    case 'vm_failed':
      details = `reason=${JSON.stringify(e.reason)}`;
      break;
    case 'image_pulled':
      details = `image=${e.image} digest=${e.digest} bytes=${e.bytes}`;
      break;
    case 'container_created':
      details = `image=${e.image} digest=${e.digest}`;
      break;
    case 'container_started':
      details = `pid=${e.pid}`;
      break;
    case 'container_exited':
      details = `pid=${e.pid} ${e.signal !== null ? `signal=${e.signal}` : `code=${e.code}`}${e.oomKilled ? ' oom-killed' : ''}`;
      break;
    case 'container_oom_killed':
      details = `count=${e.count}`;
      break;
  }
  return [String(e.seq), e.time, e.kind, where, details].filter(Boolean).join(' ');
}

export interface TopRow extends CellMetrics {
  /** CPU use over the sampling interval, percent of one CPU; null without a previous sample. */
  cpuPercent: number | null;
}

/** Rows of `current` with CPU% computed against `previous` (same cell and executable). */
export function topRows(current: MetricsSnapshot, previous: MetricsSnapshot | null): TopRow[] {
  const before = new Map((previous?.cells ?? []).map((r) => [`${r.cell}\0${r.executable ?? ''}`, r.metrics.cpuUsageUsec]));
  const elapsedUsec = previous ? (current.timestamp - previous.timestamp) * 1000 : 0;
  return current.cells.map((row) => {
    const was = before.get(`${row.cell}\0${row.executable ?? ''}`);
    const now = row.metrics.cpuUsageUsec;
    const cpuPercent = was !== undefined && now !== undefined && elapsedUsec > 0 ? Math.max(0, ((now - was) / elapsedUsec) * 100) : null;
    return { ...row, cpuPercent };
  });
}

const dash = '-';

/** A table like top's: one row per cell (executable "-") and per executable. */
export function formatTop(rows: TopRow[]): string {
  if (rows.length === 0) return 'no cells';
  const header = ['CELL', 'EXECUTABLE', 'CPU%', 'CPU TIME', 'MEMORY', 'PEAK', 'MEM MAX', 'PIDS', 'OOM KILLS', 'IO READ', 'IO WRITE', 'THROTTLED'];
  const bytes = (n: number | undefined) => (n === undefined ? dash : formatBytes(n));
  const num = (n: number | undefined) => (n === undefined ? dash : String(n));
  const body = rows.map((r) => {
    const m = r.metrics;
    return [
      r.cell,
      r.executable ?? dash,
      r.cpuPercent === null ? dash : r.cpuPercent.toFixed(1),
      m.cpuUsageUsec === undefined ? dash : `${(m.cpuUsageUsec / 1e6).toFixed(2)}s`,
      bytes(m.memoryCurrentBytes),
      bytes(m.memoryPeakBytes),
      bytes(m.memoryMaxBytes),
      m.pidsCurrent === undefined ? dash : m.pidsMax === undefined ? String(m.pidsCurrent) : `${m.pidsCurrent}/${m.pidsMax}`,
      num(m.memoryOomKill),
      bytes(m.ioReadBytes),
      bytes(m.ioWriteBytes),
      num(m.cpuNrThrottled),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  // Names left-aligned, numbers right-aligned.
  const render = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [render(header), ...body.map(render)].join('\n');
}

export function topJson(snapshot: MetricsSnapshot, rows: TopRow[]): unknown {
  return { timestamp: snapshot.timestamp, cells: rows };
}
