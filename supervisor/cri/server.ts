// The CRI endpoint: plain gRPC (no TLS, as kubelet expects) on a Unix socket only — never TCP — mode 0600 in a
// directory created 0700, serving runtime.v1.RuntimeService and ImageService. With a pods runtime and the state
// database, sandboxes and containers are served over it (cri-runtime.ts), exec and port-forward through the
// streaming server (supervisor/cri/streaming, started here with this runtime as its backend), stats from observe's
// metrics, log files through supervisor/cri/logs' taps.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ServerCredentials } from '@grpc/grpc-js';
import { ImageServiceService, RuntimeServiceService } from '../gen/runtime/v1/api';
import type { Images } from '../images';
import type { Logger } from '../log';
import type { EventBus, MetricsReader } from '../observe';
import type { Db } from '../store';
import { type CriExec, type CriExecAdapters, createCriExec } from './cri-exec';
import { CriRuntime, type CriLogSink } from './cri-runtime';
import { ContainerStdio, type StdioSyscalls } from './container-stdio';
import { type ContainerLogTaps, withRemoteOutput } from './logs';
import { createCriMetrics } from './cri-metrics';
import { createCriStats } from './cri-stats';
import { sqliteCriStore } from './cri-store';
import type { CriPods } from './pods-contract';
import { ListenError, type RunningServer, startServer } from '../server';
import { cachedUsage, diskUsage } from './disk-usage';
import { createCriImageService } from './image-service';
import { createCriRuntimeService, type CriStreaming, type RuntimeReadiness } from './runtime-service';

/** How long ImageFsInfo reuses one walk of the images directory. */
export const USAGE_CACHE_MS = 5000;

export interface CriServerOptions {
  /** Absolute path of the Unix socket (criSocketPath). */
  socket: string;
  images: Pick<Images, 'pull' | 'list' | 'get' | 'remove'>;
  /** `<state.dir>/images`: what ImageFsInfo measures. */
  imagesDir: string;
  version: string;
  runtimeReadiness: () => RuntimeReadiness;
  log: Logger;
  /** ImageFsInfo's cache (tests: 0). */
  usageCacheMs?: number;
  clock?: () => number;
  /** The pods runtime: with `db`, sandboxes and containers are served. */
  pods?: CriPods;
  /** The state database (the CRI's own tables migrate on it). */
  db?: Db;
  /** Container events and the cells' metrics (GetContainerEvents, the stats). */
  observe?: { events: Pick<EventBus, 'subscribe'>; metrics: MetricsReader };
  /** CRI log files (supervisor/cri/logs createContainerLogTaps, fed by the executables' output tap). */
  logs?: CriLogSink | ContainerLogTaps;
  /**
   * The native addon's terminal calls (loadSyscalls: recvFd, setWindowSize, mknod), loaded on first use. With it
   * and `logs` being the taps: Exec with tty, tty/stdin containers and Attach; without: those answer UNIMPLEMENTED.
   */
  terminals?: () => StdioSyscalls;
  /** Start the streaming server with this runtime's exec/port-forward backend (supervisor/cri/streaming). */
  startStreaming?: (backend: CriExec) => Promise<CriStreaming & { close(): Promise<void> }>;
  /** The node's pods.network.cidr (UpdateRuntimeConfig compares kubelet's pod CIDR with it). */
  podCidr?: string;
  /** Exec's process adapters (tests). */
  execAdapters?: CriExecAdapters;
}

/** Whether the log sink is the taps themselves (output can be fed and listened to), not only a register/unregister. */
function isTaps(logs: CriServerOptions['logs']): logs is ContainerLogTaps {
  return logs !== undefined && 'onLine' in logs && 'subscribe' in logs;
}

export interface RunningCriServer {
  socket: string;
  /** Graceful, then forced after timeoutMs. */
  shutdown(timeoutMs: number): Promise<'graceful' | 'forced'>;
}

/**
 * Start serving. Precondition: `socket` is absolute. A directory that does not exist is created 0700 (an existing
 * one, e.g. init's /run/aurae, keeps its mode); the socket is 0600 once bound; a stale socket of a dead auraed is
 * replaced, a live one is an error.
 */
export async function startCriServer(options: CriServerOptions): Promise<RunningCriServer> {
  const log = options.log.child({ subsystem: 'cri' });
  const clock = options.clock ?? Date.now;
  await mkdir(dirname(options.socket), { recursive: true, mode: 0o700 });
  const usage = cachedUsage(() => diskUsage(options.imagesDir), options.usageCacheMs ?? USAGE_CACHE_MS, clock);
  let runtime: CriRuntime | undefined;
  let exec: CriExec | undefined;
  let stdio: ContainerStdio | undefined;
  let streaming: (CriStreaming & { close(): Promise<void> }) | undefined;
  if (options.pods && options.db) {
    const pods = options.pods;
    // Containers that run elsewhere (a VM sandbox's, in its child): their output is followed there into the taps.
    const follow = pods.followOutput?.bind(pods);
    const taps = isTaps(options.logs) ? options.logs : undefined;
    const logs = taps && follow ? withRemoteOutput(taps, follow, log) : options.logs;
    stdio = options.terminals && isTaps(logs) ? new ContainerStdio({ sys: options.terminals, output: logs, log }) : undefined;
    runtime = new CriRuntime({ pods, store: sqliteCriStore(options.db), images: options.images, events: options.observe?.events, logs, stdio, log, clock });
    exec = createCriExec(runtime, pods, log, options.execAdapters, { terminals: options.terminals, stdio });
    if (options.startStreaming) {
      try {
        streaming = await options.startStreaming(exec);
      } catch (err) {
        // Not fatal: Exec and PortForward answer UNIMPLEMENTED saying the streaming server is not running.
        log.error('the CRI streaming server did not start: Exec and PortForward are not served', { err });
      }
    }
  }
  // The cells of pods whose containers run elsewhere (a VM sandbox's) are read there (the pods runtime's reader).
  const reader = options.observe && (options.pods?.metricsReader?.(options.observe.metrics) ?? options.observe.metrics);
  const stats = runtime && reader ? createCriStats({ metrics: reader }) : undefined;
  const metrics = runtime && reader ? createCriMetrics({ metrics: reader }) : undefined;
  let server: RunningServer;
  try {
    server = await startServer({
      credentials: ServerCredentials.createInsecure(),
      targets: [{ kind: 'unix', path: options.socket, address: `unix://${options.socket}` }],
      services: [
        {
          definition: RuntimeServiceService,
          implementation: createCriRuntimeService({ version: options.version, runtimeReadiness: options.runtimeReadiness, log, runtime, exec, stats, metrics, streaming, podCidr: options.podCidr }),
        },
        { definition: ImageServiceService, implementation: createCriImageService({ images: options.images, imagesDir: options.imagesDir, usage, log, clock }) },
      ],
      log,
    });
  } catch (err) {
    runtime?.close();
    await stdio?.close();
    await streaming?.close().catch(() => undefined);
    // The listener's messages name the API's field; this socket is cri.socket's.
    if (err instanceof ListenError) throw new ListenError(err.message.replace(/^listen\.socket/, 'cri.socket'));
    throw err;
  }
  return {
    socket: options.socket,
    async shutdown(timeoutMs) {
      const how = await server.shutdown(timeoutMs);
      runtime?.close();
      await streaming?.close().catch((err: unknown) => log.warn('closing the CRI streaming server failed', { err }));
      await stdio?.close();
      return how;
    },
  };
}
