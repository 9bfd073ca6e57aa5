// The composition root of auraed: read the PKI, build the cores and their gRPC services, start listening,
// mark everything SERVING, and hand back the ready message and a stop function.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Authz, AuthzServiceService, createAuthz, createAuthzService, createAuthzStore, createParentRulePusher, methodNames } from '../authz';
import { CGROUP_ROOT, CellRuntime, CellServiceDefinition, CgroupTree, createCellService, nodeCgroupFs, sqliteCellStore } from '../cells';
import type { NodeConfig } from '../config';
import { DiscoveryServiceService, type SystemInfo, createDiscoveryService, hostSystemInfo } from '../discovery';
import { HealthRegistry, HealthService, createHealthService, STORAGE_HEALTH_SERVICE, STORAGE_STATUS_FILE, storageHealth } from '../health';
import type { InitChannel, ReadyMessage } from '../ipc';
import type { LogRing, Logger } from '../log';
import { NodeServiceService, createNodeService, createPowerControl } from '../node';
import { type ObserveOverrides, ObserveServiceService, createObserve } from '../observe';
import { type RpcContext, type ServerPki, type ServiceBinding, createIssuerCheck, listenTargets, mtlsServerCredentials, startServer, withRouting } from '../server';
import { integrityCheck, openDatabase } from '../store';
import { type CertificateAuthority, splitPemCertificates } from '../pki';

import { type NodeGuest, VmServiceService, childBaseConfig, createNodeVms, sqliteVmStore } from '../vms';
import { GUEST_PAYLOAD_FW_CFG, buildGuestPayload, guestPayloadText, mintChildIdentity, mintParentClientCert } from '../../guest';
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
  /** Mark everything NOT_SERVING, end Watch streams, then stop the server (forced after timeoutMs). */
  stop(timeoutMs: number): Promise<'graceful' | 'forced'>;
}

/** Health service names: "" is the whole server; the others are the full gRPC service names. */
export const HEALTH_SERVICE_NAMES = ['', 'aurae.discovery.v0.DiscoveryService', 'aurae.node.v0.NodeService', 'aurae.observe.v0.ObserveService', 'aurae.authz.v0.AuthzService', 'aurae.cells.v0.CellService', 'aurae.vms.v0.VmService'] as const;

export async function startAuraed(options: AuraedOptions): Promise<RunningAuraed> {
  const { config, log } = options;
  const version = options.version ?? AURAED_VERSION;
  const pki = await readServerPki(config.pki);

  const health = new HealthRegistry();
  for (const name of HEALTH_SERVICE_NAMES) health.set(name, 'NOT_SERVING');

  // One state database for every subsystem; each owns its tables through its own migrations.
  const db = openDatabase(join(config.state.dir, 'aurae.db'));
  // After a power cut: is every page intact? (WAL + synchronous=FULL should make this always "ok".)
  const storage = storageHealth(options.storageStatusText ?? readStorageStatus(), integrityCheck(db));
  if (storage.status === 'SERVING') log.info(`storage: ${storage.summary}`);
  else log.error(`storage: degraded: ${storage.summary}`);
  const authzLog = log.child({ subsystem: 'authz' });
  // Refusals are written in batches (supervisor/authz/audit-log.ts): stop() flushes the last one.
  const authzStore = createAuthzStore(db, {
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
    knownMethods: () => methodNames(services.map((s) => s.definition)),
    log: authzLog,
    nodePath: config.node.name,
    inherited: config.authz.inherited,
  });
  // A spawned child honours aurae-on-behalf-of only from its parent (config.guest, written by the parent).
  // A child's server certificate file holds its chain: [its own certificate, its parent's spawn CA, …].
  const parentSpawnCa = config.guest ? (splitPemCertificates(pki.cert.toString('utf8'))[1] ?? null) : null;
  const ctx: RpcContext = {
    log: log.child({ subsystem: 'api' }),
    admins: new Set(config.authz.admins),
    authz,
    parentIdentity: config.guest?.parent ?? null,
    issuerOf: createIssuerCheck(pki.ca, parentSpawnCa),
  };
  const power = createPowerControl({ init: options.init, log: log.child({ subsystem: 'node' }) });
  // Events and logs are what cells and executables publish into; build them before those cores.
  const observe = createObserve({ config, log: log.child({ subsystem: 'observe' }), daemonLog: options.daemonLog, overrides: options.observe });
  // Cells: recreate stored cells' cgroups, remove strays, restart executables (in the background) before serving.
  // Without cgroup v2 (a dev host) the runtime stays disabled and CellService answers FAILED_PRECONDITION.
  const cells = new CellRuntime({
    cgroups: new CgroupTree({ fs: nodeCgroupFs, root: CGROUP_ROOT, log: log.child({ subsystem: 'cells' }) }),
    store: sqliteCellStore(db),
    events: observe.events,
    logs: observe.logs,
    log: log.child({ subsystem: 'cells' }),
  });
  await cells.init();
  // Child microVMs from this node's own kernel and initramfs, and the router that forwards calls to them.
  const rootCaPem = pki.ca.toString('utf8');
  const vms = await createNodeVms({
    config,
    rootCaPem,
    guest: options.guest === undefined ? nodeGuest(config, rootCaPem, authz) : options.guest,
    log: log.child({ subsystem: 'vms' }),
    store: sqliteVmStore(db),
    events: observe.events,
  });
  // The previous auraed's children: its QEMUs are stopped (bounded by vms.stopTimeoutMs each) before serving;
  // those that should run boot again in the background.
  await vms.init();
  // Children inherit this node's effective rules: at boot (payload) and, while they run, after every change.
  const pusher = createParentRulePusher({
    rules: () => authz.inheritable(),
    runningChildren: () => vms.runtime.list().filter((vm) => vm.state === 'running').map((vm) => vm.request.name),
    clientFor: (label) => vms.router.clientFor(label),
    log: authzLog,
  });
  const stopPushing = authz.onChange(() => pusher.pushAll());
  // A change made while a child booted is not in its payload: send the current set once it is ready.
  const stopWatchingVms = observe.events.subscribe((event) => event.kind === 'vm_started' && pusher.pushTo(event.vm));
  const services: ServiceBinding[] = [
    { definition: HealthService, implementation: createHealthService(ctx, health) },
    {
      definition: DiscoveryServiceService,
      implementation: createDiscoveryService(ctx, { nodeName: config.node.name, version, health, system: options.system ?? hostSystemInfo }),
    },
    { definition: NodeServiceService, implementation: createNodeService(ctx, power) },
    { definition: ObserveServiceService, implementation: observe.createService(ctx) },
    { definition: AuthzServiceService, implementation: createAuthzService(ctx, authz) },
    { definition: CellServiceDefinition, implementation: createCellService(ctx, cells) },
    { definition: VmServiceService, implementation: vms.createService(ctx) },
  ];

  for (const rule of authz.unmatchedConfigRules()) {
    log.warn('authz.policy rule matches no method this auraed serves', { identity: rule.identity, effect: rule.effect, pattern: rule.pattern });
  }

  const server = await startServer({
    credentials: mtlsServerCredentials(pki),
    targets: listenTargets(config.listen),
    // Every service routes calls for descendants (metadata aurae-node) to the child on the way.
    services: services.map((s) => ({ definition: s.definition, implementation: withRouting(ctx, vms.router, s.definition, s.implementation) })),
    log: log.child({ subsystem: 'server' }),
  });
  for (const name of HEALTH_SERVICE_NAMES) health.set(name, 'SERVING');
  health.set(STORAGE_HEALTH_SERVICE, storage.status);

  return {
    ready: { type: 'ready', node: config.node.name, version, socket: server.socket, tcp: server.tcp },
    stop: async (timeoutMs) => {
      health.shutdown();
      stopPushing();
      stopWatchingVms();
      pusher.close();
      // Children first: each gets an ACPI powerdown and up to timeoutMs before QMP quit (then SIGKILL).
      await vms.close(timeoutMs);
      observe.shutdown(); // follow streams end with OK, so the graceful stop need not wait for them
      const how = await server.shutdown(timeoutMs);
      cells.close(); // executables keep running; their later exits are not written to the closed database
      await observe.close();
      // After the server stopped: no refusal comes later. A failed flush must not keep the database open.
      try {
        authzStore.closeAudit();
      } catch (err) {
        authzLog.error('audit write failed at shutdown', { err });
      }
      db.close();
      return how;
    },
  };
}

function readStorageStatus(): string | null {
  try {
    return readFileSync(STORAGE_STATUS_FILE, 'utf8');
  } catch {
    return null;
  }
}

/** guest/ for this node: children's identities from its spawn CA, payloads derived from its config. */
function nodeGuest(config: NodeConfig, rootCaPem: string, authz: Authz): (spawnCa: CertificateAuthority) => NodeGuest {
  return (spawnCa) => {
    const parent = { nodePath: config.node.name, spawnCa };
    return {
      payloadName: GUEST_PAYLOAD_FW_CFG,
      mintChildIdentity: (label, depthLeft) => mintChildIdentity(parent, label, depthLeft),
      // The child inherits this node's config, except what describes this node's own machine (listeners, state dir).
      // Its rules: every rule in force here now (config, inherited, API), as the child's inherited rules.
      payloadBytes: (child) => guestPayloadText(buildGuestPayload(childBaseConfig(config), rootCaPem, child, { inheritedRules: authz.inheritable() })),
      mintClientCert: () => mintParentClientCert(parent),
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
