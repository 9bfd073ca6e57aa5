// The CRI endpoint: plain gRPC (no TLS, as kubelet expects) on a Unix socket only — never TCP — mode 0600 in a
// directory created 0700, serving runtime.v1.RuntimeService and ImageService.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ServerCredentials } from '@grpc/grpc-js';
import { ImageServiceService, RuntimeServiceService } from '../gen/runtime/v1/api';
import type { Images } from '../images';
import type { Logger } from '../log';
import { ListenError, type RunningServer, startServer } from '../server';
import { cachedUsage, diskUsage } from './disk-usage';
import { createCriImageService } from './image-service';
import { createCriRuntimeService, type RuntimeReadiness } from './runtime-service';

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
  let server: RunningServer;
  try {
    server = await startServer({
      credentials: ServerCredentials.createInsecure(),
      targets: [{ kind: 'unix', path: options.socket, address: `unix://${options.socket}` }],
      services: [
        { definition: RuntimeServiceService, implementation: createCriRuntimeService({ version: options.version, runtimeReadiness: options.runtimeReadiness, log }) },
        { definition: ImageServiceService, implementation: createCriImageService({ images: options.images, imagesDir: options.imagesDir, usage, log, clock }) },
      ],
      log,
    });
  } catch (err) {
    // The listener's messages name the API's field; this socket is cri.socket's.
    if (err instanceof ListenError) throw new ListenError(err.message.replace(/^listen\.socket/, 'cri.socket'));
    throw err;
  }
  return { socket: options.socket, shutdown: (timeoutMs) => server.shutdown(timeoutMs) };
}
