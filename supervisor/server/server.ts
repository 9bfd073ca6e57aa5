// The grpc-js server: services in, listeners up, graceful-then-forced shutdown out.
import { chmod } from 'node:fs/promises';
import { Server, type ServerCredentials, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../log';
import { lenientService } from './decode';
import { type ListenTarget, ListenError, prepareUnixSocket, withPort } from './listeners';

export interface ServiceBinding {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

export interface ServerOptions {
  credentials: ServerCredentials;
  targets: ListenTarget[];
  services: ServiceBinding[];
  log: Logger;
}

export interface RunningServer {
  /** The unix socket path, or null. */
  socket: string | null;
  /** The bound TCP address (host:port with the real port), or null. */
  tcp: string | null;
  /** tryShutdown; after `timeoutMs` forceShutdown (cancels in-flight calls). Resolves once the server stopped. */
  shutdown(timeoutMs: number): Promise<'graceful' | 'forced'>;
}

/** Start serving on every target. Rejects (and stops what was started) if any listener fails. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { log } = options;
  const server = new Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  for (const service of options.services) {
    // Bytes that are not the method's message get INVALID_ARGUMENT, not grpc-js's INTERNAL (see decode.ts).
    const lenient = lenientService(service.definition, service.implementation);
    server.addService(lenient.definition, lenient.implementation);
  }

  let socket: string | null = null;
  let tcp: string | null = null;
  try {
    for (const target of options.targets) {
      if (target.kind === 'unix') {
        const prepared = await prepareUnixSocket(target.path);
        if (prepared === 'removed-stale') log.warn('removed stale socket', { path: target.path });
        await bind(server, target.address, options.credentials);
        // Defence in depth beside mTLS: only root may connect to the local socket.
        await chmod(target.path, 0o600);
        socket = target.path;
      } else {
        const port = await bind(server, target.address, options.credentials);
        tcp = withPort(target.address, port);
      }
      log.info('listening', { address: target.kind === 'unix' ? target.address : tcp });
    }
  } catch (err) {
    server.forceShutdown();
    throw err;
  }

  return {
    socket,
    tcp,
    shutdown: (timeoutMs) =>
      new Promise((resolve) => {
        let settled = false;
        const timer = setTimeout(() => {
          if (settled) return;
          settled = true;
          log.warn('graceful shutdown timed out; cancelling in-flight calls', { timeoutMs });
          server.forceShutdown();
          resolve('forced');
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          if (settled) return;
          settled = true;
          resolve('graceful');
        });
      }),
  };
}

function bind(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => {
      if (err) reject(new ListenError(`cannot listen on ${address}: ${err.message}: is the address free and valid on this node?`));
      else resolve(port);
    });
  });
}
