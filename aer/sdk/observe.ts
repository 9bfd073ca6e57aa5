// client.observe: logs (an executable's, auraed's own), lifecycle events and per-cell metrics
// (aurae.observe.v0.ObserveService). Streams are async iterables, like health.watch: they end when the server
// ends the stream (no follow, or the node stopping), when the loop breaks, or when `signal` aborts.
import { type ClientReadableStream, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import type { SdkCallContext } from './call-context';
import {
  type Event as ProtoEvent,
  EventKind,
  type GetMetricsResponse,
  type LogItem,
  ObserveServiceClient,
} from '../../supervisor/gen/aurae/observe/v0/observe';
import type { CgroupMetrics } from '../../supervisor/cgroup/stats';
import type { StampedEvent } from '../../supervisor/observe/types';
import { fromWireInt, fromWireInts, toWireInt } from './int64';
import { toApiError } from './errors';

/** One log line: an executable's stdout/stderr, or a JSON line of auraed's own log. */
export interface LogEntry {
  channel: 'stdout' | 'stderr' | 'auraed';
  /** ISO 8601 time auraed received the line. */
  time: string;
  line: string;
}

export interface LogStreamOptions {
  /** The last N lines first (0: none, at most 100000); when omitted, every kept line up to the last 100000. */
  tail?: number;
  /** Keep streaming new lines. */
  follow?: boolean;
  signal?: AbortSignal;
}

/** A lifecycle event with its seq (monotonic per auraed run) and ISO time; `kind` tells the shape. */
export type ObservedEvent = StampedEvent;

export interface EventStreamOptions {
  follow?: boolean;
  /** Only events after this seq (0 or omitted: every event auraed still holds). */
  sinceSeq?: number;
  /** Only this cell and its child cells (VM events belong to no cell). */
  cell?: string;
  /** Only this child VM's events (vm_started, vm_exited, vm_restarted, vm_failed); not with `cell`. */
  vm?: string;
  signal?: AbortSignal;
}

/** Counters of one cgroup; a field is absent when auraed could not read it (controller off, "max"). */
export type CellCounters = CgroupMetrics;

export interface CellMetrics {
  cell: string;
  /** null for the cell as a whole (it includes its executables and child cells). */
  executable: string | null;
  metrics: CellCounters;
}

export interface MetricsSnapshot {
  /** When auraed read the cgroups, ms since the Unix epoch. */
  timestamp: number;
  /** Tree order: each cell, its executables, then its child cells. */
  cells: CellMetrics[];
}

export interface ObserveApi {
  /** An executable's output. */
  logs(cell: string, executable: string, options?: LogStreamOptions): AsyncIterable<LogEntry>;
  /** auraed's own log (JSON lines), from its in-memory ring. */
  daemonLogs(options?: LogStreamOptions): AsyncIterable<LogEntry>;
  events(options?: EventStreamOptions): AsyncIterable<ObservedEvent>;
  /** Metrics of `cell` and its subtree, or of every cell when omitted. */
  metrics(cell?: string): Promise<MetricsSnapshot>;
}

const SERVICE = 'aurae.observe.v0.ObserveService';

export function createObserveApi(ctx: SdkCallContext): ObserveApi {
  const client = new ObserveServiceClient(ctx.address, ctx.credentials, ctx.options);

  /** A server stream as an async iterable of mapped messages; cancelling the call when the loop stops. */
  const stream = <M, T>(method: string, start: () => ClientReadableStream<M>, map: (message: M) => T | undefined, signal?: AbortSignal): AsyncIterable<T> => ({
    async *[Symbol.asyncIterator]() {
      if (signal?.aborted) return;
      const call = start();
      const onAbort = () => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        for await (const message of call) {
          const item = map(message as M);
          if (item !== undefined) yield item;
        }
      } catch (err) {
        if ((err as Partial<ServiceError>).code === status.CANCELLED && signal?.aborted) return;
        throw toApiError(err, `${SERVICE}/${method}`, ctx.address);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        call.cancel();
      }
    },
  });

  return {
    logs: (cell, executable, options = {}) =>
      stream(
        'GetLogs',
        () => client.getLogs({ cell, executable, tail: options.tail, follow: options.follow ?? false }),
        (m: { item?: LogItem }) => (m.item ? fromLogItem(m.item) : undefined),
        options.signal,
      ),
    daemonLogs: (options = {}) =>
      stream(
        'GetAuraeDaemonLogStream',
        () => client.getAuraeDaemonLogStream({ tail: options.tail, follow: options.follow ?? false }),
        (m: { item?: LogItem }) => (m.item ? fromLogItem(m.item) : undefined),
        options.signal,
      ),
    events: (options = {}) =>
      stream(
        'GetEvents',
        () => client.getEvents({ follow: options.follow ?? false, sinceSeq: toWireInt('sinceSeq', options.sinceSeq ?? 0), cell: options.cell ?? '', vm: options.vm ?? '' }),
        (m: { event?: ProtoEvent }) => (m.event ? fromProtoEvent(m.event) : undefined),
        options.signal,
      ),
    metrics: async (cell = '') => {
      const r = await ctx.unary<GetMetricsResponse>(`${SERVICE}/GetMetrics`, (done) => client.getMetrics({ cell }, new Metadata(), ctx.callOptions(), done));
      return {
        timestamp: fromWireInt(r.timestamp),
        cells: r.cells.map((row) => ({ cell: row.cell, executable: row.executable || null, metrics: fromWireInts(row.metrics ?? {}) })),
      };
    },
  };
}

function fromLogItem(item: LogItem): LogEntry {
  const channel = item.channel === 'stderr' || item.channel === 'auraed' ? item.channel : 'stdout';
  return { channel, time: new Date(fromWireInt(item.timestamp)).toISOString(), line: item.line };
}

/** The wire event back to the shape auraed published (one union member per kind); unknown kinds are skipped. */
export function fromProtoEvent(e: ProtoEvent): ObservedEvent | undefined {
  const seq = fromWireInt(e.seq);
  const stamp = { seq, time: e.time, cell: e.cell };
  const vm = { seq, time: e.time, vm: e.vm };
  const pod = { ...stamp, pod: e.pod, container: e.container };
  switch (e.kind) {
    case EventKind.EVENT_KIND_CELL_ALLOCATED:
      return { kind: 'cell_allocated', ...stamp };
    case EventKind.EVENT_KIND_CELL_FREED:
      return { kind: 'cell_freed', ...stamp };
    case EventKind.EVENT_KIND_EXECUTABLE_STARTED:
      return { kind: 'executable_started', ...stamp, executable: e.executable, pid: e.pid };
    case EventKind.EVENT_KIND_EXECUTABLE_EXITED:
      return { kind: 'executable_exited', ...stamp, executable: e.executable, pid: e.pid, code: e.code ?? null, signal: e.signal ?? null };
    case EventKind.EVENT_KIND_EXECUTABLE_RESTARTED:
      return { kind: 'executable_restarted', ...stamp, executable: e.executable, attempt: e.attempt, delayMs: e.delayMs };
    case EventKind.EVENT_KIND_EXECUTABLE_OOM_KILLED:
      return { kind: 'executable_oom_killed', ...stamp, executable: e.executable, count: e.count };
    case EventKind.EVENT_KIND_START_LIMIT_HIT:
      return { kind: 'start_limit_hit', ...stamp, executable: e.executable, starts: e.starts, intervalMs: e.intervalMs };
    case EventKind.EVENT_KIND_VM_STARTED:
      return { kind: 'vm_started', ...vm, pid: e.pid, address: e.address };
    case EventKind.EVENT_KIND_VM_EXITED:
      return { kind: 'vm_exited', ...vm, pid: e.pid, code: e.code ?? null, signal: e.signal ?? null, expected: e.expected };
    case EventKind.EVENT_KIND_VM_RESTARTED:
      return { kind: 'vm_restarted', ...vm, attempt: e.attempt, delayMs: e.delayMs };
    case EventKind.EVENT_KIND_VM_FAILED:
      return { kind: 'vm_failed', ...vm, reason: e.reason };
    case EventKind.EVENT_KIND_IMAGE_PULLED:
      return { kind: 'image_pulled', ...pod, image: e.image, digest: e.digest, bytes: fromWireInt(e.bytes) };
    case EventKind.EVENT_KIND_CONTAINER_CREATED:
      return { kind: 'container_created', ...pod, image: e.image, digest: e.digest };
    case EventKind.EVENT_KIND_CONTAINER_STARTED:
      return { kind: 'container_started', ...pod, pid: e.pid };
    case EventKind.EVENT_KIND_CONTAINER_EXITED:
      return { kind: 'container_exited', ...pod, pid: e.pid, code: e.code ?? null, signal: e.signal ?? null, oomKilled: e.oomKilled };
    case EventKind.EVENT_KIND_CONTAINER_OOM_KILLED:
      return { kind: 'container_oom_killed', ...pod, count: e.count };
    default:
      return undefined; // a newer auraed's kind: not ours to guess
  }
}
