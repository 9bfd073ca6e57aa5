// Observe as auraed composes it: one event bus, one log store under <state.dir>/logs, the daemon log ring,
// the metrics reader, and the registry of open follow streams. Tests inject any of them.
import { join } from 'node:path';
import type { NodeConfig } from '../config';
import { type LogRing, type Logger, createLogRing } from '../log';
import type { RpcContext } from '../server';
import { createEventBus } from './event-bus';
import { type FileLogStore, createFileLogStore } from './log-store';
import { type MetricsFs, type MetricsReader, createMetricsReader } from './metrics';
import { type ObserveServiceDeps, createObserveService } from './observe-service';
import { StreamRegistry } from './streams';
import type { EventBus, LogStore } from './types';
import type { ObserveServiceServer } from '../gen/aurae/observe/v0/observe';

/** Replacements for tests (dependency injection; there is no RPC to publish events or write logs). */
export interface ObserveOverrides {
  events?: EventBus;
  logs?: LogStore;
  /** Cgroup of the cell tree for metrics; default supervisor/cgroup's CELL_TREE_DIR. */
  cgroupRoot?: string;
  cgroupFs?: MetricsFs;
}

export interface Observe {
  events: EventBus;
  logs: LogStore;
  daemonLog: LogRing;
  metrics: MetricsReader;
  /** `podOf`: the pod whose own cell a cell is (pod-scoped rules cover its logs, events and metrics). */
  createService(ctx: RpcContext, extra?: Pick<ObserveServiceDeps, 'podOf'>): ObserveServiceServer;
  /** End every follow stream (auraed is stopping); streams opened later end at once. */
  shutdown(): void;
  /** After the server stopped: wait until queued log lines are on disk. */
  close(): Promise<void>;
}

export interface ObserveOptions {
  config: Pick<NodeConfig, 'state' | 'observe'>;
  log: Logger;
  /** auraed's own log (main.ts tees the logger into it); an empty ring when absent. */
  daemonLog?: LogRing;
  overrides?: ObserveOverrides;
}

export function createObserve(options: ObserveOptions): Observe {
  const { config, log, overrides = {} } = options;
  const streams = new StreamRegistry();
  const events = overrides.events ?? createEventBus({ capacity: config.observe.eventHistory, log });
  const fileLogs: FileLogStore | null = overrides.logs
    ? null
    : createFileLogStore({ dir: join(config.state.dir, 'logs'), maxBytes: config.observe.logMaxBytes, files: config.observe.logFiles, log });
  const logs = overrides.logs ?? fileLogs!;
  const daemonLog = options.daemonLog ?? createLogRing();
  const metrics = createMetricsReader({ root: overrides.cgroupRoot, fs: overrides.cgroupFs });
  return {
    events,
    logs,
    daemonLog,
    metrics,
    createService: (ctx, extra) => createObserveService(ctx, { daemonLog, logs, events, metrics, streams, ...extra }),
    shutdown: () => streams.shutdown(),
    close: async () => {
      await fileLogs?.flush();
    },
  };
}
