// aurae.observe.v0.ObserveService: handlers only validate, pick the source and pump the stream; the cores
// are the log ring, the log store, the event bus and the metrics reader.
import type { ServerWritableStream } from '@grpc/grpc-js';
import type {
  GetAuraeDaemonLogStreamRequest,
  GetAuraeDaemonLogStreamResponse,
  GetEventsRequest,
  GetEventsResponse,
  GetLogsRequest,
  GetLogsResponse,
  GetMetricsRequest,
  GetMetricsResponse,
  ObserveServiceServer,
} from '../gen/aurae/observe/v0/observe';
import type { LogRing } from '../log';
import { type RpcContext, serverStream, unary } from '../server';
import type { MetricsReader } from './metrics';
import {
  MAX_TAIL,
  daemonLogItem,
  eventMatches,
  eventMessage,
  logLineItem,
  metricsResponse,
  validateDaemonLogRequest,
  validateEventsRequest,
  validateLogsRequest,
  validateMetricsRequest,
} from './requests';
import { type StreamRegistry, pumpStream } from './streams';
import type { EventBus, LogStore, StampedEvent } from './types';

export interface ObserveServiceDeps {
  daemonLog: LogRing;
  logs: LogStore;
  events: EventBus;
  metrics: MetricsReader;
  /** Open follow streams; shutdown() ends them. */
  streams: StreamRegistry;
  /** Live items waiting for a slow follower before its stream is cut (default in pumpStream). */
  maxQueued?: number;
  /** The pod whose own cell `cell` is, if any (supervisor/pods): a rule scoped to that pod covers its logs too. */
  podOf?(cell: string): string | undefined;
}

const SERVICE = 'aurae.observe.v0.ObserveService';

/** What an event is about, for the policy: its cell (and its pod: pod events name it, `podOf` knows the others), or its VM. */
export function eventResource(event: StampedEvent, podOf?: (cell: string) => string | undefined): { cell: string; pod?: string } | { vm: string } {
  if (!('cell' in event)) return { vm: event.vm };
  const pod = 'pod' in event ? event.pod : podOf?.(event.cell);
  return pod === undefined ? { cell: event.cell } : { cell: event.cell, pod };
}

export function createObserveService(ctx: RpcContext, deps: ObserveServiceDeps): ObserveServiceServer {
  const { streams: registry, maxQueued } = deps;
  /** A cell as the policy sees it: with its pod when it is a pod's own cell. */
  const cellResource = (cell: string): { cell: string; pod?: string } => {
    const pod = deps.podOf?.(cell);
    return pod === undefined ? { cell } : { cell, pod };
  };
  return {
    getAuraeDaemonLogStream: serverStream(ctx, {
      method: `${SERVICE}/GetAuraeDaemonLogStream`,
      access: 'read',
      validate: validateDaemonLogRequest,
      run: (query, call: ServerWritableStream<GetAuraeDaemonLogStreamRequest, GetAuraeDaemonLogStreamResponse>) =>
        pumpStream(
          call,
          { subscribe: (listener) => deps.daemonLog.subscribe(listener), backlog: () => deps.daemonLog.recent(query.tail) },
          { follow: query.follow, registry, maxQueued, encode: (entry) => ({ item: daemonLogItem(entry) }) },
        ),
    }),

    getLogs: serverStream(ctx, {
      method: `${SERVICE}/GetLogs`,
      access: 'read',
      validate: validateLogsRequest,
      resource: (query) => cellResource(query.cell),
      run: (query, call: ServerWritableStream<GetLogsRequest, GetLogsResponse>) =>
        pumpStream(
          call,
          {
            subscribe: (listener) => deps.logs.follow(query.cell, query.executable, listener),
            // Unset means every kept line, but never more than MAX_TAIL (memory stays bounded whatever the config).
            backlog: () => deps.logs.read(query.cell, query.executable, query.tail ?? MAX_TAIL),
          },
          { follow: query.follow, registry, maxQueued, encode: (line) => ({ item: logLineItem(line) }) },
        ),
    }),

    getEvents: serverStream(ctx, {
      method: `${SERVICE}/GetEvents`,
      access: 'read',
      validate: validateEventsRequest,
      // Every event is checked: cell events against the caller's cells, VM events against its VMs.
      resource: () => 'each',
      run: (query, call: ServerWritableStream<GetEventsRequest, GetEventsResponse>, _caller, access) => {
        const wanted = (event: StampedEvent) => event.seq > query.sinceSeq && eventMatches(query, event) && access.sees(eventResource(event, deps.podOf));
        return pumpStream(
          call,
          {
            subscribe: (listener) => deps.events.subscribe((event) => wanted(event) && listener(event)),
            backlog: () => deps.events.recent().filter(wanted),
          },
          { follow: query.follow, registry, maxQueued, encode: (event) => ({ event: eventMessage(event) }) },
        );
      },
    }),

    getMetrics: unary(ctx, {
      method: `${SERVICE}/GetMetrics`,
      access: 'read',
      validate: validateMetricsRequest,
      // One cell's subtree: that cell is checked; every cell: each row is.
      resource: (cell) => (cell === null ? 'each' : cellResource(cell)),
      run: async (cell, _caller, access): Promise<GetMetricsResponse> => {
        const snapshot = await deps.metrics(cell);
        return metricsResponse({ ...snapshot, cells: snapshot.cells.filter((row) => access.sees(cellResource(row.cell))) });
      },
    }),
  };
}
