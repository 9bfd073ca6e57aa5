// Validation of ObserveService requests (every field, named in the error) and the conversions between the
// cores' values and the wire messages. Pure.
import { AuraeError, checkInt64, MAX_SAFE, toInt64 } from '../errors';
import {
  type CgroupMetrics as ProtoCgroupMetrics,
  type Event as ProtoEvent,
  EventKind,
  type GetAuraeDaemonLogStreamRequest,
  type GetEventsRequest,
  type GetLogsRequest,
  type GetMetricsRequest,
  type GetMetricsResponse,
  type LogItem,
} from '../gen/aurae/observe/v0/observe';
import type { LogRingEntry } from '../log';
import type { CgroupMetrics } from '../cgroup';
import type { MetricsSnapshot } from './metrics';
import { RANGES } from '../validation';
import { isCellWithin, validateCellPath, validateExecutableName, validateVmName } from './names';
import type { LogLine, StampedEvent } from './types';

/** The most lines one request may ask for as its tail. */
export const MAX_TAIL = RANGES.logTail[1];

function validateTail(tail: number | undefined): number | undefined {
  if (tail === undefined) return undefined;
  if (!Number.isInteger(tail) || tail < 0 || tail > MAX_TAIL) {
    throw new AuraeError('INVALID_ARGUMENT', `tail: must be between 0 and ${MAX_TAIL} lines (got ${tail}); leave it unset for every line kept`);
  }
  return tail;
}

export interface DaemonLogQuery {
  tail: number | undefined;
  follow: boolean;
}

export function validateDaemonLogRequest(request: GetAuraeDaemonLogStreamRequest): DaemonLogQuery {
  return { tail: validateTail(request.tail), follow: request.follow };
}

export interface LogQuery extends DaemonLogQuery {
  cell: string;
  executable: string;
}

export function validateLogsRequest(request: GetLogsRequest): LogQuery {
  return {
    cell: validateCellPath('cell', request.cell),
    executable: validateExecutableName('executable', request.executable),
    tail: validateTail(request.tail),
    follow: request.follow,
  };
}

export interface EventQuery {
  follow: boolean;
  sinceSeq: number;
  /** Only this cell and its children (never VM events); null for all. */
  cell: string | null;
  /** Only this child VM's events; null for all. */
  vm: string | null;
}

export function validateEventsRequest(request: GetEventsRequest): EventQuery {
  const sinceSeq = checkInt64('since_seq', request.sinceSeq, 0, MAX_SAFE, '0 or a sequence number seen before');
  // Older clients do not send vm (it decodes as ""); treat absent and empty alike.
  const vmName = request.vm ?? '';
  if (request.cell !== '' && vmName !== '') {
    throw new AuraeError('INVALID_ARGUMENT', `cell and vm: give one of them (cell "${request.cell}", vm "${vmName}"): a VM's events belong to no cell`);
  }
  return {
    follow: request.follow,
    sinceSeq,
    cell: request.cell === '' ? null : validateCellPath('cell', request.cell),
    vm: vmName === '' ? null : validateVmName('vm', vmName),
  };
}

/** Whether `event` passes the query's filters (not since_seq). */
export function eventMatches(query: Pick<EventQuery, 'cell' | 'vm'>, event: StampedEvent): boolean {
  if (query.cell !== null) return 'cell' in event && isCellWithin(event.cell, query.cell);
  if (query.vm !== null) return 'vm' in event && event.vm === query.vm;
  return true;
}

/** The cell whose subtree to report, or null for every cell. */
export function validateMetricsRequest(request: GetMetricsRequest): string | null {
  return request.cell === '' ? null : validateCellPath('cell', request.cell);
}

export function logLineItem(line: LogLine): LogItem {
  return { channel: line.stream, line: line.line, timestamp: toInt64(Date.parse(line.time)) };
}

export function daemonLogItem(entry: LogRingEntry): LogItem {
  return { channel: 'auraed', line: entry.line, timestamp: toInt64(entry.time) };
}

const KINDS: Record<StampedEvent['kind'], EventKind> = {
  cell_allocated: EventKind.EVENT_KIND_CELL_ALLOCATED,
  cell_freed: EventKind.EVENT_KIND_CELL_FREED,
  executable_started: EventKind.EVENT_KIND_EXECUTABLE_STARTED,
  executable_exited: EventKind.EVENT_KIND_EXECUTABLE_EXITED,
  executable_restarted: EventKind.EVENT_KIND_EXECUTABLE_RESTARTED,
  executable_oom_killed: EventKind.EVENT_KIND_EXECUTABLE_OOM_KILLED,
  start_limit_hit: EventKind.EVENT_KIND_START_LIMIT_HIT,
  vm_started: EventKind.EVENT_KIND_VM_STARTED,
  vm_exited: EventKind.EVENT_KIND_VM_EXITED,
  vm_restarted: EventKind.EVENT_KIND_VM_RESTARTED,
  vm_failed: EventKind.EVENT_KIND_VM_FAILED,
  image_pulled: EventKind.EVENT_KIND_IMAGE_PULLED,
  container_created: EventKind.EVENT_KIND_CONTAINER_CREATED,
  container_started: EventKind.EVENT_KIND_CONTAINER_STARTED,
  container_exited: EventKind.EVENT_KIND_CONTAINER_EXITED,
  container_oom_killed: EventKind.EVENT_KIND_CONTAINER_OOM_KILLED,
};

export function eventMessage(event: StampedEvent): ProtoEvent {
  const message: ProtoEvent = {
    seq: toInt64(event.seq),
    time: event.time,
    kind: KINDS[event.kind],
    cell: 'cell' in event ? event.cell : '',
    executable: 'executable' in event ? event.executable : '',
    pid: 0,
    attempt: 0,
    delayMs: 0,
    count: 0,
    starts: 0,
    intervalMs: 0,
    vm: 'vm' in event ? event.vm : '',
    address: '',
    expected: false,
    reason: '',
    pod: 'pod' in event ? event.pod : '',
    container: 'container' in event ? event.container : '',
    image: '',
    digest: '',
    bytes: 0n,
    oomKilled: false,
  };
  switch (event.kind) {
    case 'executable_started':
      message.pid = event.pid;
      break;
    case 'executable_exited':
      message.pid = event.pid;
      if (event.code !== null) message.code = event.code;
      if (event.signal !== null) message.signal = event.signal;
      break;
    case 'executable_restarted':
      message.attempt = event.attempt;
      message.delayMs = event.delayMs;
      break;
    case 'executable_oom_killed':
      message.count = event.count;
      break;
    case 'start_limit_hit':
      message.starts = event.starts;
      message.intervalMs = event.intervalMs;
      break;
    case 'vm_started':
      message.pid = event.pid;
      message.address = event.address;
      break;
    case 'vm_exited':
      message.pid = event.pid;
      if (event.code !== null) message.code = event.code;
      if (event.signal !== null) message.signal = event.signal;
      message.expected = event.expected;
      break;
    case 'vm_restarted':
      message.attempt = event.attempt;
      message.delayMs = event.delayMs;
      break;
    case 'vm_failed':
      message.reason = event.reason;
      break;
    case 'image_pulled':
      message.image = event.image;
      message.digest = event.digest;
      message.bytes = toInt64(event.bytes);
      break;
    case 'container_created':
      message.image = event.image;
      message.digest = event.digest;
      break;
    case 'container_started':
      message.pid = event.pid;
      break;
    case 'container_exited':
      message.pid = event.pid;
      if (event.code !== null) message.code = event.code;
      if (event.signal !== null) message.signal = event.signal;
      message.oomKilled = event.oomKilled;
      break;
    case 'container_oom_killed':
      message.count = event.count;
      break;
  }
  return message;
}

export function metricsResponse(snapshot: MetricsSnapshot): GetMetricsResponse {
  return {
    timestamp: toInt64(snapshot.timestamp),
    cells: snapshot.cells.map((row) => ({ cell: row.cell, executable: row.executable ?? '', metrics: metricsMessage(row.metrics) })),
  };
}

/** Every metric present, as its 64-bit wire value (absent stays absent). */
export function metricsMessage(metrics: CgroupMetrics): ProtoCgroupMetrics {
  const out: { [K in keyof CgroupMetrics & keyof ProtoCgroupMetrics]?: bigint } = {};
  for (const key of Object.keys(metrics) as (keyof CgroupMetrics)[]) {
    const value = metrics[key];
    if (value !== undefined) out[key] = toInt64(value);
  }
  return out;
}
