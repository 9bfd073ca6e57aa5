// The typed SDK: one mTLS channel to auraed, promise-based methods per service.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { type CallOptions, type ChannelOptions, type Interceptor, InterceptingCall, Metadata, type ServiceError, credentials, status } from '@grpc/grpc-js';
import { type DiscoverResponse, DiscoveryServiceClient } from '../../supervisor/gen/aurae/discovery/v0/discovery';
// The file, not the pki index: the index loads the x509 library, which a client never needs.
import { nodeServerIdentityCheck } from '../../supervisor/pki/node-subtree';
import { expectedForm, isNodePath, NODE_PATH_FORM } from '../../supervisor/validation';
import { NodeServiceClient } from '../../supervisor/gen/aurae/node/v0/node';
import {
  type HealthCheckResponse,
  HealthClient,
  type HealthListResponse,
  healthCheckResponse_ServingStatusToJSON,
} from '../../supervisor/gen/grpc/health/v1/health';
import { type AuthzApi, createAuthzApi } from './authz';
import { type CellsApi, createCellsApi } from './cells';
import { type ImagesApi, createImagesApi } from './images';
import { type PodRuntimeApi, type PodsApi, createPodsApi } from './pods';
import { type ClientConfigOverrides, ClientConfigError, type ResolvedClientConfig, loadClientConfig } from './client-config';
import { toApiError } from './errors';
import { type ObserveApi, createObserveApi } from './observe';
import { type VmsApi, createVmsApi } from './vms';
import { type UpgradeApi, createUpgradeApi } from './upgrade';

export interface ConnectOptions extends ClientConfigOverrides {
  /** Deadline for each unary call; default 10 s. */
  timeoutMs?: number;
  /** Environment for AURAE_CONFIG / AURAE_ADDRESS; default process.env. */
  env?: Record<string, string | undefined>;
  /**
   * Send every call to this node path through the configured node, e.g. "aurae/web" (a child it spawned):
   * each call carries the metadata `aurae-node`, and the parent forwards it. Default: the node itself.
   */
  targetNode?: string;
}

/** Metadata that asks a node to route a call to one of its descendants. */
export const NODE_METADATA = 'aurae-node';

/** A client interceptor that adds `aurae-node: <path>` to every call (unary and streaming). */
export function routeToNode(path: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(NODE_METADATA, path);
        next(metadata, listener);
      },
    });
}

export type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/** What Discover reports about the node (with `boot`: where the node's boot time went). */
export type NodeInfo = DiscoverResponse;
export type { BootPhase, BootReport } from '../../supervisor/gen/aurae/discovery/v0/discovery';

export interface PowerOptions {
  /** Why (shown in the node's logs and console); at most 256 printable characters. */
  reason?: string;
}

export interface AuraeClient {
  /** The effective config (after overrides). */
  readonly config: ResolvedClientConfig;
  health: {
    /** Serving status of `service` ("" or omitted: the whole server). Rejects NOT_FOUND for unknown services. */
    check(service?: string): Promise<{ status: HealthStatus }>;
    /** Every known service and its status. */
    list(): Promise<Record<string, HealthStatus>>;
    /** Current status, then every change, until `signal` aborts, the loop breaks or the server ends the stream. */
    watch(service?: string, options?: { signal?: AbortSignal }): AsyncIterable<HealthStatus>;
  };
  discovery: {
    discover(): Promise<NodeInfo>;
  };
  node: {
    /** Ask the node to power off; resolves once init accepted the request (the node goes down right after). */
    shutdown(options?: PowerOptions): Promise<void>;
    reboot(options?: PowerOptions): Promise<void>;
  };
  /** The authorization policy and the audit log (aurae.authz.v0.AuthzService). */
  authz: AuthzApi;
  /** Cells and their executables (aurae.cells.v0.CellService). */
  cells: CellsApi;
  /** Logs, lifecycle events and per-cell metrics (aurae.observe.v0.ObserveService). */
  observe: ObserveApi;
  /** Child microVMs (aurae.vms.v0.VmService). */
  vms: VmsApi;
  /** Container images stored on the node (aurae.images.v0.ImageService). */
  images: ImagesApi;
  /** Pods of containers (aurae.pods.v0.PodService). */
  pods: PodsApi;
  /** The node's boot image: A/B entries, signed upgrades, rollback (aurae.upgrade.v0.UpgradeService). */
  upgrade: UpgradeApi;
  /** The seeds' `auae.runtime()`: `runtime().run(pod)` is `pods.run(pod)`. */
  runtime(): PodRuntimeApi;
  /** Close the channel. */
  close(): void;
}

/**
 * Load the client config, read the PEM files and create the channel. Synchronous: nothing touches the
 * network until the first call (grpc-js connects lazily), so config problems throw here and connection
 * problems reject the first call (UNAVAILABLE).
 */
export function connect(options: ConnectOptions = {}): AuraeClient {
  const config = loadClientConfig(options, options.env ?? process.env);
  const target = options.targetNode;
  if (target !== undefined && !isNodePath(target)) {
    throw new ClientConfigError('CLIENT_CONFIG_INVALID', expectedForm('node path', target, `a node path such as ${config.node}/web: ${NODE_PATH_FORM}`));
  }
  const pem = (field: 'ca' | 'cert' | 'key') => {
    try {
      return readFileSync(config[field]);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new ClientConfigError('CLIENT_CONFIG_UNREADABLE', `cannot read ${field} ${config[field]} (${code}): check the client config ${config.path}`);
    }
  };
  let secureContext: tls.SecureContext;
  const caPem = pem('ca');
  try {
    secureContext = tls.createSecureContext({ ca: caPem, cert: pem('cert'), key: pem('key'), minVersion: 'TLSv1.3' });
  } catch (err) {
    throw new ClientConfigError('CLIENT_CONFIG_INVALID', `the ca, cert or key of client config ${config.path} is not usable PEM (${(err as Error).message}): check the client config`);
  }
  // Beyond the chain and the host name: a certificate a spawn CA issued must name a node below that CA's node,
  // and exactly the node we connect to (a child's spawn CA cannot pose as "aurae"; supervisor/pki/node-subtree.ts).
  const channelCredentials = credentials.createFromSecureContext(secureContext, { checkServerIdentity: nodeServerIdentityCheck(tls.checkServerIdentity, caPem) });
  // The server certificate names the node; over a unix socket or a forwarded port the address does not, so
  // the TLS server name is always the node name.
  const channelOptions: ChannelOptions = {
    'grpc.ssl_target_name_override': config.node,
    'grpc.default_authority': config.node,
    ...(options.targetNode ? { interceptors: [routeToNode(options.targetNode)] } : {}),
  };
  const healthClient = new HealthClient(config.address, channelCredentials, channelOptions);
  const shared = { ...channelOptions, channelOverride: healthClient.getChannel() };
  const discoveryClient = new DiscoveryServiceClient(config.address, channelCredentials, shared);
  const nodeClient = new NodeServiceClient(config.address, channelCredentials, shared);

  const timeoutMs = options.timeoutMs ?? 10_000;
  const callOptions = (): Partial<CallOptions> => ({ deadline: Date.now() + timeoutMs });
  const unary = <Res>(method: string, start: (done: (err: ServiceError | null, res: Res) => void) => void): Promise<Res> =>
    new Promise((resolve, reject) => {
      start((err, res) => (err ? reject(toApiError(err, method, config.address)) : resolve(res)));
    });
  const pods = createPodsApi({ address: config.address, credentials: channelCredentials, options: shared, unary, callOptions });
  const statusOf = (s: number) => healthCheckResponse_ServingStatusToJSON(s) as HealthStatus;

  return {
    config,
    health: {
      check: (service = '') =>
        unary<HealthCheckResponse>('grpc.health.v1.Health/Check', (done) => healthClient.check({ service }, new Metadata(), callOptions(), done)).then((r) => ({ status: statusOf(r.status) })),
      list: () =>
        unary<HealthListResponse>('grpc.health.v1.Health/List', (done) => healthClient.list({}, new Metadata(), callOptions(), done)).then((r) =>
          Object.fromEntries(Object.entries(r.statuses).map(([name, s]) => [name, statusOf(s.status)])),
        ),
      watch: (service = '', watchOptions = {}) => ({
        async *[Symbol.asyncIterator]() {
          const { signal } = watchOptions;
          if (signal?.aborted) return;
          const call = healthClient.watch({ service });
          const onAbort = () => call.cancel();
          signal?.addEventListener('abort', onAbort, { once: true });
          try {
            for await (const message of call) yield statusOf((message as { status: number }).status);
          } catch (err) {
            if ((err as Partial<ServiceError>).code === status.CANCELLED && signal?.aborted) return;
            throw toApiError(err, 'grpc.health.v1.Health/Watch', config.address);
          } finally {
            signal?.removeEventListener('abort', onAbort);
            call.cancel();
          }
        },
      }),
    },
    discovery: {
      discover: () => unary<DiscoverResponse>('aurae.discovery.v0.DiscoveryService/Discover', (done) => discoveryClient.discover({}, new Metadata(), callOptions(), done)),
    },
    node: {
      shutdown: async (power = {}) => {
        await unary('aurae.node.v0.NodeService/Shutdown', (done) => nodeClient.shutdown({ reason: power.reason ?? '' }, new Metadata(), callOptions(), done));
      },
      reboot: async (power = {}) => {
        await unary('aurae.node.v0.NodeService/Reboot', (done) => nodeClient.reboot({ reason: power.reason ?? '' }, new Metadata(), callOptions(), done));
      },
    },
    authz: createAuthzApi({ address: config.address, credentials: channelCredentials, options: shared, unary, callOptions }),
    cells: createCellsApi({ address: config.address, credentials: channelCredentials, options: shared, unary, callOptions }),
    observe: createObserveApi({ address: config.address, credentials: channelCredentials, options: shared, unary, callOptions }),
    vms: createVmsApi({ address: config.address, credentials: channelCredentials, options: shared, unary, callOptions }),
    images: createImagesApi({ address: config.address, credentials: channelCredentials, options: shared, unary, callOptions }),
    pods,
    upgrade: createUpgradeApi({ address: config.address, credentials: channelCredentials, options: shared, unary, callOptions }),
    runtime: () => ({ run: (pod, runOptions) => pods.run(pod, runOptions) }),
    close: () => {
      // All three clients share healthClient's channel; closing it closes the connection.
      healthClient.close();
    },
  };
}
