// The composition root of auraed: read the PKI, build the cores and their gRPC services, start listening,
// mark everything SERVING, and hand back the ready message and a stop function.
import { readFile } from 'node:fs/promises';
import type { NodeConfig } from '../config';
import { DiscoveryServiceService, type SystemInfo, createDiscoveryService, hostSystemInfo } from '../discovery';
import { HealthRegistry, HealthService, createHealthService } from '../health';
import type { InitChannel, ReadyMessage } from '../ipc';
import type { Logger } from '../log';
import { NodeServiceService, createNodeService, createPowerControl } from '../node';
import { type RpcContext, type ServerPki, type ServiceBinding, listenTargets, mtlsServerCredentials, startServer } from '../server';
import { AURAED_VERSION } from './version';

export interface AuraedOptions {
  config: NodeConfig;
  log: Logger;
  /** The IPC channel to aurae init, or null when auraed runs on its own (power RPCs then fail). */
  init: InitChannel | null;
  version?: string;
  system?: SystemInfo;
}

export interface RunningAuraed {
  ready: ReadyMessage;
  /** Mark everything NOT_SERVING, end Watch streams, then stop the server (forced after timeoutMs). */
  stop(timeoutMs: number): Promise<'graceful' | 'forced'>;
}

/** Health service names: "" is the whole server; the others are the full gRPC service names. */
export const HEALTH_SERVICE_NAMES = ['', 'aurae.discovery.v0.DiscoveryService', 'aurae.node.v0.NodeService'] as const;

export async function startAuraed(options: AuraedOptions): Promise<RunningAuraed> {
  const { config, log } = options;
  const version = options.version ?? AURAED_VERSION;
  const pki = await readServerPki(config.pki);

  const health = new HealthRegistry();
  for (const name of HEALTH_SERVICE_NAMES) health.set(name, 'NOT_SERVING');

  const ctx: RpcContext = { log: log.child({ subsystem: 'api' }), admins: new Set(config.authz.admins) };
  const power = createPowerControl({ init: options.init, log: log.child({ subsystem: 'node' }) });
  const services: ServiceBinding[] = [
    { definition: HealthService, implementation: createHealthService(ctx, health) },
    {
      definition: DiscoveryServiceService,
      implementation: createDiscoveryService(ctx, { nodeName: config.node.name, version, health, system: options.system ?? hostSystemInfo }),
    },
    { definition: NodeServiceService, implementation: createNodeService(ctx, power) },
  ];

  const server = await startServer({
    credentials: mtlsServerCredentials(pki),
    targets: listenTargets(config.listen),
    services,
    log: log.child({ subsystem: 'server' }),
  });
  for (const name of HEALTH_SERVICE_NAMES) health.set(name, 'SERVING');

  return {
    ready: { type: 'ready', node: config.node.name, version, socket: server.socket, tcp: server.tcp },
    stop: (timeoutMs) => {
      health.shutdown();
      return server.shutdown(timeoutMs);
    },
  };
}

/**
 * How long auraed waits for in-flight calls on SIGTERM before cancelling them: well inside init's grace
 * period (shutdown.graceMs, after which init sends SIGKILL), and never more than 3 s.
 */
export function shutdownTimeoutMs(config: NodeConfig): number {
  return Math.min(3000, Math.max(100, Math.floor(config.shutdown.graceMs * 0.6)));
}

async function readServerPki(paths: NodeConfig['pki']): Promise<ServerPki> {
  const read = async (field: keyof NodeConfig['pki']) => {
    try {
      return await readFile(paths[field]);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new Error(`reading pki.${field} ${paths[field]} failed (${code}): is the node PKI installed (see the image build)?`);
    }
  };
  return { ca: await read('caCert'), cert: await read('serverCert'), key: await read('serverKey') };
}
