// The composition root of auraed: read the PKI, build the cores and their gRPC services, start listening,
// mark everything SERVING, and hand back the ready message and a stop function. The start is a table of named
// phases (START_PHASES, run by supervisor/phases, each logged once with its duration).
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Authz, type AuthzStore, AuthzServiceService, createAuthz, createAuthzService, createAuthzStore, createParentRulePusher, methodNames, type ParentRulePusher } from '../authz';
import { CellRuntime, CellServiceDefinition, createCellService, sqliteCellStore } from '../cells';
import { CGROUP_ROOT, CgroupTree, isCgroup2, nodeCgroupFs } from '../cgroup';
import type { NodeConfig } from '../config';
import { criSocketPath, type RunningCriServer, startCriServer } from '../cri';
import { type ContainerLogTaps, createContainerLogTaps } from '../cri/logs';
import { startStreamingServer } from '../cri/streaming';
import { type BootRecorder, type BootReport, DiscoveryServiceService, type SystemInfo, createBootRecorder, createDiscoveryService, hostSystemInfo } from '../discovery';
import { HealthRegistry, HealthService, createHealthService, STORAGE_HEALTH_SERVICE, storageHealth, type StorageHealth } from '../health';
import { STORAGE_STATUS_PATH } from '../config/node-paths';
import type { InitChannel, ReadyMessage } from '../ipc';
import type { LogRing, Logger } from '../log';
import { type ImagesCore, ImageServiceService, createImageService, createImages } from '../images';
import { type PodRuntime, PodServiceService, cellPodStore, childExecRelay, createNodeVmPods, createPodRuntime, createPodService, nodeDiskHost, sandboxedPodRuntime, sqlitePodStore, withDiskImages } from '../pods';
import { loadSyscalls } from '../../native';
import { type NodeIdentity, NodeServiceService, createNodeIdentity, createNodeService, createPowerControl } from '../node';
import { type Observe, type ObserveOverrides, ObserveServiceService, createObserve } from '../observe';
import { type ReloadableServerCredentials, type RpcContext, type RunningServer, type ServerPki, type ServiceBinding, createIssuerCheck, listenTargets, mtlsServerCredentials, startServer, withRouting } from '../server';
import { type Db, integrityCheck, openDatabase } from '../store';
import { need, PhaseError, processStartMs, runPhases, type Phase } from '../phases';
import { type CertificateAuthority, splitPemCertificates } from '../pki';

import { type NodeGuest, type NodeVms, VmServiceService, childBaseConfig, createNodeVms, sqliteVmStore } from '../vms';
import { buildGuestPayload, guestPayloadText, mintChildIdentity, mintParentClientCert, renewChildIdentity } from '../../guest';
import { UpgradeServiceService, createNodeUpgrade, createUpgradeService } from '../upgrade';
import { AURAED_VERSION } from './version';

export interface AuraedOptions {
  config: NodeConfig;
  log: Logger;
  /** The IPC channel to aurae init, or null when auraed runs on its own (power RPCs then fail). */
  init: InitChannel | null;
  version?: string;
  system?: SystemInfo;
  /** auraed's own log lines (main.ts tees its logger into this ring) for GetAuraeDaemonLogStream. */
  daemonLog?: LogRing;
  /** Observe's cores, replaced in tests (dependency injection, never an RPC). */
  observe?: ObserveOverrides;
  /** How children get their identity and payload; default guest/ (replaced in tests; null: cannot spawn). */
  guest?: ((spawnCa: CertificateAuthority) => NodeGuest) | null;
  /** init's storage status (tests); default: read /run/aurae/storage.json when it exists. */
  storageStatusText?: string | null;
  /** How long refusals wait to be written to the audit log in one batch (tests); default 1000 ms. */
  auditFlushIntervalMs?: number;
}

export interface RunningAuraed {
  ready: ReadyMessage;
  /**
   * Mark everything NOT_SERVING, end Watch streams, power the children down (each up to vms.shutdownPowerdownMs,
   * default timeoutMs), then stop the server (forced after timeoutMs).
   */
  stop(timeoutMs: number): Promise<'graceful' | 'forced'>;
  /** The boot report Discover serves (init's part once init sent it). */
  bootReport(): BootReport;
}

/** Health service names: "" is the whole server; the others are the full gRPC service names. */
export const HEALTH_SERVICE_NAMES = ['', 'aurae.discovery.v0.DiscoveryService', 'aurae.node.v0.NodeService', 'aurae.observe.v0.ObserveService', 'aurae.authz.v0.AuthzService', 'aurae.cells.v0.CellService', 'aurae.vms.v0.VmService', 'aurae.images.v0.ImageService', 'aurae.pods.v0.PodService', 'aurae.upgrade.v0.UpgradeService'] as const;

/**
 * What the start-up phases share. The first fields are settled before the phases; each optional one is set once,
 * by the phase named beside it.
 */
interface StartContext {
  readonly options: AuraedOptions;
  readonly config: NodeConfig;
  readonly log: Logger;
  readonly authzLog: Logger;
  readonly version: string;
  /** Every service NOT_SERVING until 'serving'. */
  readonly health: HealthRegistry;
  /** The boot report: each phase as it ends, and init's part from the IPC channel. */
  readonly boot: BootRecorder;
  /** 'pki' */
  pki?: ServerPki;
  /** 'database': one state database for every subsystem (each owns its tables through its own migrations). */
  db?: Db;
  storage?: StorageHealth;
  /** 'authz': the policy, and the context every RPC handler gets. */
  authzStore?: AuthzStore;
  authz?: Authz;
  rpc?: RpcContext;
  /** 'observe', 'cells', 'vms' */
  observe?: Observe;
  cells?: CellRuntime;
  /** 'cells': CRI container log files (supervisor/cri/logs), fed with executables' output; the CRI registers into it. */
  containerLogs?: ContainerLogTaps;
  vms?: NodeVms;
  /** 'images', 'pods' */
  images?: ImagesCore;
  pods?: PodRuntime;
  /** 'cri': the Kubernetes CRI endpoint; unset when it is not served. */
  cri?: RunningCriServer;
  /** 'rule-push': children inherit this node's effective rules; `unwatch` ends the subscriptions. */
  pusher?: ParentRulePusher;
  unwatch?: () => void;
  /** 'services', 'server' */
  services?: ServiceBinding[];
  /** 'services': the listeners' credentials (a spawned node's parent renews the certificate in them). */
  credentials?: ReloadableServerCredentials;
  server?: RunningServer;
}

/** auraed's start, in order; it serves only after every phase succeeded. */
const START_PHASES: readonly Phase<StartContext>[] = [
  { name: 'pki', run: async (c) => void (c.pki = await readServerPki(c.config.pki)) },
  { name: 'database', run: openStateDatabase },
  { name: 'authz', run: startAuthz },
  { name: 'observe', run: startObserve },
  { name: 'cells', run: startCells },
  { name: 'images', run: startImages },
  { name: 'pods', run: startPods },
  { name: 'cri', run: startCri },
  { name: 'vms', run: startVms },
  { name: 'rule-push', run: startRulePush },
  { name: 'services', run: bindServices },
  { name: 'server', run: listen },
  { name: 'serving', run: markServing },
  { name: 'pods-reconcile', run: reconcilePods },
];

export async function startAuraed(options: AuraedOptions): Promise<RunningAuraed> {
  const { config, log } = options;
  const health = new HealthRegistry();
  for (const name of HEALTH_SERVICE_NAMES) health.set(name, 'NOT_SERVING');
  const boot = createBootRecorder(processStartMs());
  // init sends its part of the boot report to every auraed it starts (a restart included).
  options.init?.onMessage?.(
    (message) => boot.init(message.init),
    (why) => log.warn('ignoring a malformed IPC message from aurae init', { why }),
  );
  const ctx: StartContext = { options, config, log, authzLog: log.child({ subsystem: 'authz' }), version: options.version ?? AURAED_VERSION, health, boot };
  await runPhases(START_PHASES, ctx, log, { onResult: (result) => boot.phase(result) }).catch((err: unknown) => {
    // The phase line just logged names the phase; callers get the cause's own message ("what failed: why: what to do").
    throw err instanceof PhaseError ? err.cause : err;
  });
  const server = need(ctx, 'server');
  return {
    ready: { type: 'ready', node: config.node.name, version: ctx.version, socket: server.socket, tcp: server.tcp, servingMs: boot.report().servingMs },
    stop: (timeoutMs) => stopAuraed(ctx, timeoutMs),
    bootReport: () => boot.report(),
  };
}

/** After a power cut: is every page intact? (WAL + synchronous=FULL should make this always "ok".) */
function openStateDatabase(ctx: StartContext): void {
  const db = openDatabase(join(ctx.config.state.dir, 'aurae.db'));
  const storage = storageHealth(ctx.options.storageStatusText ?? readStorageStatus(), integrityCheck(db));
  if (storage.status === 'SERVING') ctx.log.info(`storage: ${storage.summary}`);
  else ctx.log.error(`storage: degraded: ${storage.summary}`);
  ctx.db = db;
  ctx.storage = storage;
}

function startAuthz(ctx: StartContext): void {
  const { config, options, authzLog } = ctx;
  const pki = need(ctx, 'pki');
  // Refusals are written in batches (supervisor/authz/audit-log.ts): stop() flushes the last one.
  const authzStore = createAuthzStore(need(ctx, 'db'), {
    auditMaxRecords: config.authz.audit.maxRecords,
    audit: {
      onFlushError: (err, lost) => authzLog.error('audit write failed', { lost, err }),
      ...(options.auditFlushIntervalMs === undefined ? {} : { flushIntervalMs: options.auditFlushIntervalMs }),
    },
  });
  const authz = createAuthz({
    admins: config.authz.admins,
    configRules: config.authz.policy,
    store: authzStore,
    knownMethods: () => methodNames(need(ctx, 'services').map((s) => s.definition)),
    log: authzLog,
    nodePath: config.node.name,
    inherited: config.authz.inherited,
  });
  // A spawned child honours aurae-on-behalf-of only from its parent (config.guest, written by the parent).
  // A child's server certificate file holds its chain: [its own certificate, its parent's spawn CA, …].
  const parentSpawnCa = config.guest ? (splitPemCertificates(pki.cert.toString('utf8'))[1] ?? null) : null;
  ctx.authzStore = authzStore;
  ctx.authz = authz;
  ctx.rpc = {
    log: ctx.log.child({ subsystem: 'api' }),
    admins: new Set(config.authz.admins),
    authz,
    parentIdentity: config.guest?.parent ?? null,
    issuerOf: createIssuerCheck(pki.ca, parentSpawnCa),
  };
}

/** Events and logs are what cells and executables publish into; built before those cores. */
function startObserve(ctx: StartContext): void {
  const { config, options } = ctx;
  ctx.observe = createObserve({ config, log: ctx.log.child({ subsystem: 'observe' }), daemonLog: options.daemonLog, overrides: options.observe });
}

/**
 * Recreate stored cells' cgroups, remove strays, restart executables (in the background) before serving.
 * Without cgroup v2 (a dev host) the runtime stays disabled and CellService answers FAILED_PRECONDITION.
 */
async function startCells(ctx: StartContext): Promise<void> {
  const observe = need(ctx, 'observe');
  // Before the runners exist: a container restarted by reconcile writes to its CRI log once the CRI registers it.
  const containerLogs = createContainerLogTaps({ log: ctx.log.child({ subsystem: 'cri' }) });
  const cells = new CellRuntime({
    cgroups: new CgroupTree({ fs: nodeCgroupFs, root: CGROUP_ROOT, log: ctx.log.child({ subsystem: 'cells' }) }),
    store: sqliteCellStore(need(ctx, 'db')),
    events: observe.events,
    logs: observe.logs,
    outputTap: containerLogs,
    log: ctx.log.child({ subsystem: 'cells' }),
  });
  ctx.containerLogs = containerLogs;
  ctx.cells = cells;
  await cells.init();
}

/** Container images: the content-addressed store under <state.dir>/images (its tables migrate on creation). Works anywhere. */
function startImages(ctx: StartContext): void {
  ctx.images = createImages({ db: need(ctx, 'db'), dir: join(ctx.config.state.dir, 'images'), config: ctx.config.images, log: ctx.log });
}

/**
 * Pods over cells and images (their tables migrate on creation). Without cgroup v2 the cells runtime is disabled,
 * so Run, Stop and Remove answer FAILED_PRECONDITION from it, as CellService does.
 */
function startPods(ctx: StartContext): void {
  // One pods table for both sandboxes; the cell runtime sees only its own rows.
  const store = sqlitePodStore(need(ctx, 'db'));
  const log = ctx.log.child({ subsystem: 'pods' });
  const images = need(ctx, 'images');
  const vmPods = createNodeVmPods({ store, images, stateDir: ctx.config.state.dir, vms: () => need(ctx, 'vms'), vmLimits: ctx.config.vms, log });
  const cellPods = createPodRuntime({
    store: cellPodStore(store),
    dir: ctx.config.state.dir,
    // A spawned node is the pod agent of its parent's VM pods: it also runs images handed over as disks.
    images: ctx.config.guest ? withDiskImages(images, nodeDiskHost({ mount: (...a) => loadSyscalls().mount(...a) })) : images,
    cells: need(ctx, 'cells'),
    observe: need(ctx, 'observe'),
    log,
    networkConfig: ctx.config.pods.network,
    // Published ports are DNAT on every node address: the API's own port must stay the node's.
    reservedNodePorts: ctx.config.listen.tcp ? [{ port: Number(ctx.config.listen.tcp.slice(ctx.config.listen.tcp.lastIndexOf(':') + 1)), protocol: 'tcp', why: 'the aurae API' }] : [],
  });
  ctx.pods = sandboxedPodRuntime(cellPods, vmPods);
}

/**
 * The Kubernetes CRI (supervisor/cri) on its root-only socket, when cri.enabled and auraed runs as root (as
 * kubelet does). Not fatal: if it cannot listen, the error is logged and the node's own API still serves.
 */
async function startCri(ctx: StartContext): Promise<void> {
  const socket = criSocketPath(ctx.config);
  if (socket === null || process.getuid?.() !== 0) return;
  const noCgroup2 = { ready: false, reason: 'NoCgroupV2', message: `no cgroup v2 hierarchy at ${CGROUP_ROOT}: pods need cgroup2, as in the aurae image` };
  try {
    ctx.cri = await startCriServer({
      socket,
      images: need(ctx, 'images'),
      imagesDir: join(ctx.config.state.dir, 'images'),
      version: ctx.version,
      runtimeReadiness: () => (isCgroup2(nodeCgroupFs, CGROUP_ROOT) ? { ready: true } : noCgroup2),
      log: ctx.log,
      // Sandboxes and containers are aurae pods (one model, two APIs); the CRI's own ids live in the same database.
      pods: need(ctx, 'pods'),
      db: need(ctx, 'db'),
      observe: need(ctx, 'observe'),
      podCidr: ctx.config.pods.network.cidr,
      logs: ctx.containerLogs,
      // Terminals (Exec with tty, Attach): the native addon receives crun's pty masters and sets their size.
      terminals: () => loadSyscalls(),
      // Exec/PortForward URLs on loopback (kubelet on this node proxies them), backed by crun exec and TCP to the pod.
      startStreaming: (backend) => startStreamingServer({ backend, log: ctx.log }),
    });
  } catch (err) {
    ctx.log.child({ subsystem: 'cri' }).error('the Kubernetes CRI is not served', { socket, err });
  }
}

/**
 * After serving: bring back the pods that should run (an auraed restart, a reboot with a state disk). In the
 * background, like the cells' executables: a slow mount or crun must not hold the API.
 */
function reconcilePods(ctx: StartContext): void {
  const log = ctx.log.child({ subsystem: 'pods' });
  need(ctx, 'pods')
    .reconcile()
    .catch((err: unknown) => log.error('reconciling pods failed', { err }));
}

/** Child microVMs from this node's own kernel and initramfs, and the router that forwards calls to them. */
async function startVms(ctx: StartContext): Promise<void> {
  const { config, options } = ctx;
  const rootCaPem = need(ctx, 'pki').ca.toString('utf8');
  const vms = await createNodeVms({
    config,
    rootCaPem,
    guest: options.guest === undefined ? nodeGuest(config, rootCaPem, need(ctx, 'authz')) : options.guest,
    log: ctx.log.child({ subsystem: 'vms' }),
    store: sqliteVmStore(need(ctx, 'db')),
    events: need(ctx, 'observe').events,
  });
  ctx.vms = vms;
  // The previous auraed's children: its QEMUs are stopped (bounded by vms.stopTimeoutMs each) before serving;
  // those that should run boot again in the background.
  await vms.init();
}

/** Children inherit this node's effective rules: at boot (payload) and, while they run, after every change. */
function startRulePush(ctx: StartContext): void {
  const authz = need(ctx, 'authz');
  const vms = need(ctx, 'vms');
  const pusher = createParentRulePusher({
    rules: () => authz.inheritable(),
    runningChildren: () => vms.runtime.list().filter((vm) => vm.state === 'running').map((vm) => vm.request.name),
    clientFor: (label) => vms.router.clientFor(label),
    log: ctx.authzLog,
  });
  const stopPushing = authz.onChange(() => pusher.pushAll());
  // A change made while a child booted is not in its payload: send the current set once it is ready.
  const stopWatchingVms = need(ctx, 'observe').events.subscribe((event) => event.kind === 'vm_started' && pusher.pushTo(event.vm));
  ctx.pusher = pusher;
  ctx.unwatch = () => {
    stopPushing();
    stopWatchingVms();
  };
}

/** Every gRPC service over its core; then the config's rules that match none of their methods are named. */
function bindServices(ctx: StartContext): void {
  const { config, options, health, version, log } = ctx;
  const rpc = need(ctx, 'rpc');
  const authz = need(ctx, 'authz');
  const power = createPowerControl({ init: options.init, log: log.child({ subsystem: 'node' }) });
  ctx.credentials = mtlsServerCredentials(need(ctx, 'pki'));
  ctx.services = [
    { definition: HealthService, implementation: createHealthService(rpc, health) },
    {
      definition: DiscoveryServiceService,
      implementation: createDiscoveryService(rpc, { nodeName: config.node.name, version, health, system: options.system ?? hostSystemInfo, boot: () => ctx.boot.report() }),
    },
    { definition: NodeServiceService, implementation: createNodeService(rpc, power, renewableIdentity(ctx)) },
    // A pod's own cell is covered by rules scoped to that pod (its logs, events and metrics come with it).
    { definition: ObserveServiceService, implementation: need(ctx, 'observe').createService(rpc, { podOf: (cell) => (need(ctx, 'pods').get(cell) ? cell : undefined) }) },
    { definition: AuthzServiceService, implementation: createAuthzService(rpc, authz) },
    { definition: CellServiceDefinition, implementation: createCellService(rpc, need(ctx, 'cells')) },
    { definition: VmServiceService, implementation: need(ctx, 'vms').createService(rpc) },
    { definition: ImageServiceService, implementation: createImageService(rpc, need(ctx, 'images')) },
    { definition: PodServiceService, implementation: createPodService(rpc, { runtime: need(ctx, 'pods'), images: need(ctx, 'images'), vmExec: childExecRelay((vm) => need(ctx, 'vms').router.clientFor(vm)) }) },
    { definition: UpgradeServiceService, implementation: createUpgradeService(rpc, createNodeUpgrade(config, log)) },
  ];
  for (const rule of authz.unmatchedConfigRules()) {
    log.warn('authz.policy rule matches no method this auraed serves', { identity: rule.identity, effect: rule.effect, pattern: rule.pattern });
  }
}

async function listen(ctx: StartContext): Promise<void> {
  const rpc = need(ctx, 'rpc');
  const router = need(ctx, 'vms').router;
  ctx.server = await startServer({
    credentials: need(ctx, 'credentials'),
    targets: listenTargets(ctx.config.listen),
    // Every service routes calls for descendants (metadata aurae-node) to the child on the way.
    services: need(ctx, 'services').map((s) => ({ definition: s.definition, implementation: withRouting(rpc, router, s.definition, s.implementation) })),
    log: ctx.log.child({ subsystem: 'server' }),
  });
}

/**
 * A spawned node's identity, which its parent renews while it runs (NodeService/RenewIdentity): a renewal
 * replaces the certificate in the listeners' credentials, and the VM subsystem then renews this node's own
 * children. Null on a node whose certificate comes from the image build.
 */
function renewableIdentity(ctx: StartContext): NodeIdentity | null {
  const { config } = ctx;
  if (!config.guest) return null;
  const pki = need(ctx, 'pki');
  const vms = need(ctx, 'vms');
  return createNodeIdentity({
    nodePath: config.node.name,
    rootCaPem: pki.ca.toString('utf8'),
    serverCertChainPem: pki.cert.toString('utf8'),
    spawnCaCertPem: vms.spawnCaCertPem(),
    paths: { serverCert: config.pki.serverCert, serverKey: config.pki.serverKey, spawnCaCert: config.pki.spawnCaCert },
    credentials: need(ctx, 'credentials'),
    onRenewed: (spawnCaCertPem) => void vms.identityRenewed(spawnCaCertPem),
    log: ctx.log.child({ subsystem: 'node' }),
  });
}

function markServing({ health, storage }: StartContext): void {
  for (const name of HEALTH_SERVICE_NAMES) health.set(name, 'SERVING');
  health.set(STORAGE_HEALTH_SERVICE, storage!.status);
}

/** Mark everything NOT_SERVING, end Watch streams, stop the children, then the server (forced after timeoutMs). */
async function stopAuraed(ctx: StartContext, timeoutMs: number): Promise<'graceful' | 'forced'> {
  const observe = need(ctx, 'observe');
  ctx.health.shutdown();
  ctx.unwatch?.();
  ctx.pusher?.close();
  // Children first: each gets an ACPI powerdown and up to vms.shutdownPowerdownMs (default: timeoutMs) before
  // QMP quit (then SIGKILL).
  await need(ctx, 'vms').close(childPowerdownMs(ctx.config, timeoutMs));
  observe.shutdown(); // follow streams end with OK, so the graceful stop need not wait for them
  // The CRI socket stops with the API (in parallel: both within timeoutMs).
  const [how] = await Promise.all([need(ctx, 'server').shutdown(timeoutMs), ctx.cri?.shutdown(timeoutMs)]);
  need(ctx, 'cells').close(); // executables keep running; their later exits are not written to the closed database
  ctx.containerLogs?.close(); // their later output is not written to the CRI log files either (as to observe)
  await need(ctx, 'images').close();
  await observe.close();
  // After the server stopped: no refusal comes later. A failed flush must not keep the database open.
  try {
    need(ctx, 'authzStore').closeAudit();
  } catch (err) {
    ctx.authzLog.error('audit write failed at shutdown', { err });
  }
  need(ctx, 'db').close();
  return how;
}

function readStorageStatus(): string | null {
  try {
    return readFileSync(STORAGE_STATUS_PATH, 'utf8');
  } catch {
    return null;
  }
}

/** guest/ for this node: children's identities from its spawn CA, payloads derived from its config. */
function nodeGuest(config: NodeConfig, rootCaPem: string, authz: Authz): (spawnCa: CertificateAuthority) => NodeGuest {
  return (spawnCa) => {
    const parent = { nodePath: config.node.name, spawnCa };
    return {
      mintChildIdentity: (label, depthLeft) => mintChildIdentity(parent, label, depthLeft),
      // The child inherits this node's config, except what describes this node's own machine (listeners, state dir).
      // Its rules: every rule in force here now (config, inherited, API), as the child's inherited rules.
      payloadBytes: (child) => guestPayloadText(buildGuestPayload(childBaseConfig(config), rootCaPem, child, { inheritedRules: authz.inheritable() })),
      mintClientCert: () => mintParentClientCert(parent),
      renewChildIdentity: (label, spawnCaCertPem) => renewChildIdentity(parent, label, spawnCaCertPem),
    };
  };
}

/**
 * How long auraed waits for in-flight calls on SIGTERM before cancelling them: well inside init's grace
 * period (shutdown.graceMs, after which init sends SIGKILL), and never more than 3 s.
 */
export function shutdownTimeoutMs(config: NodeConfig): number {
  return Math.min(3000, Math.max(100, Math.floor(config.shutdown.graceMs * 0.6)));
}

/**
 * How long each child gets after its ACPI powerdown when auraed stops, before QMP quit: vms.shutdownPowerdownMs,
 * or by default `timeoutMs` (the in-flight call timeout, shutdownTimeoutMs: min(3 s, 0.6 × shutdown.graceMs)).
 */
export function childPowerdownMs(config: NodeConfig, timeoutMs: number): number {
  return config.vms.shutdownPowerdownMs ?? timeoutMs;
}

async function readServerPki(paths: NodeConfig['pki']): Promise<ServerPki> {
  const read = async (field: 'caCert' | 'serverCert' | 'serverKey') => {
    try {
      return await readFile(paths[field]);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new Error(`reading pki.${field} ${paths[field]} failed (${code}): is the node PKI installed (see the image build)?`);
    }
  };
  return { ca: await read('caCert'), cert: await read('serverCert'), key: await read('serverKey') };
}
