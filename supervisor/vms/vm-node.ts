// Composition of the VM subsystem for auraed: the core with its real adapters (QEMU, the state database, /proc
// for a previous auraed's leftovers), the router to children and the gRPC service. auraed calls createNodeVms
// once, init() before serving (reconcile), and close() (children first) on shutdown. VM lifecycle events go to
// the observe event bus and to the log.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeConfig } from '../config';
import { AuraeError, isAuraeError } from '../errors';
import type { Logger } from '../log';
import type { EventBus } from '../observe';
import type { CertificateAuthority } from '../pki';
import { pemFingerprint } from '../pki/node-subtree';
import type { ChildRouter, RpcContext } from '../server';
import type { VmServiceServer } from '../gen/aurae/vms/v0/vms';
import { type Client, Metadata } from '@grpc/grpc-js';
import { NodeServiceService } from '../gen/aurae/node/v0/node';
import { type ChildCertRenewer, type ChildRenewal, createChildCertRenewer } from './cert-renewal';
import { childRootFor } from './child-root';
import { CHILD_API_PORT } from './vm-model';
import { cgroupConfiner, cgroupReleaser, createChildRouter, freeLoopbackPort, hostAccel, nodeVmFiles, qemuLauncher, resolveBootDisk, resolveQemu } from './vm-host';
import { procLeftovers } from './vm-leftovers';
import type { VmReconcileAction } from './vm-reconcile';
import { type GuestAdapter, type VmEvent, VmRuntime, type VmRuntimeDeps } from './vm-runtime';
import type { VmStore } from './vm-store';
import { createVmService, type RenewChild } from './vm-service';

export interface NodeVmsOptions {
  config: NodeConfig;
  rootCaPem: string;
  /**
   * What guest/ provides, given this node's spawn CA: the children's identities and payloads, and this node's
   * client certificate for calls to them. Called only when the config names a spawn CA; null: cannot spawn.
   */
  guest: ((spawnCa: CertificateAuthority) => NodeGuest) | null;
  log: Logger;
  /** Where VMs are persisted (auraed: sqliteVmStore over the state database); in memory when absent. */
  store?: VmStore;
  /** The observe event bus VM lifecycle events are published to (besides the log). */
  events?: Pick<EventBus, 'publish'>;
  /** Replace adapters in tests. */
  overrides?: Partial<VmRuntimeDeps>;
}

export interface NodeGuest extends GuestAdapter {
  mintClientCert(): Promise<{ certChainPem: string; keyPem: string }>;
  /**
   * A renewal of the running child `label`'s identity, re-certifying its spawn CA `spawnCaCertPem` (guest/
   * renewChildIdentity). Absent: children keep the identity they booted with (tests with fake identities).
   */
  renewChildIdentity?(label: string, spawnCaCertPem: string | null): Promise<ChildRenewal>;
}

export interface NodeVms {
  runtime: VmRuntime;
  router: ChildRouter;
  createService(ctx: RpcContext): VmServiceServer;
  /** Reconcile with the previous auraed's VMs (stop its leftover QEMUs, start again what should run). Once. */
  init(): Promise<VmReconcileAction[]>;
  /** Stop every child (graceful, bounded by timeoutMs each, in parallel) and close the child clients. */
  close(timeoutMs: number): Promise<void>;
  /** Renews the children's short-lived identities (started by createNodeVms, stopped by close). */
  renewer: ChildCertRenewer;
  /**
   * This node's own identity was renewed by its parent (NodeService/RenewIdentity): hold its re-certified spawn
   * CA certificate (same key), mint the client certificate for children again, and renew every child now so
   * their chains carry the new certificate. Resolves when those renewals ended.
   */
  identityRenewed(spawnCaCertPem: string | null): Promise<void>;
  /** This node's spawn CA certificate (chain) as it holds it now; null when it has none. */
  spawnCaCertPem(): string | null;
}

export async function createNodeVms(options: NodeVmsOptions): Promise<NodeVms> {
  const { config, log } = options;
  const spawnCa = await readSpawnCa(config);
  const nodeGuest = spawnCa && options.guest ? options.guest(spawnCa) : null;
  // Forward-declared: the renewer needs the runtime and router, which need the guest it wraps.
  let runtimeRef: VmRuntime | null = null;
  let routerRef: ReturnType<typeof createChildRouter> | null = null;
  const renewer = createChildCertRenewer({
    runningChildren: () => runtimeRef?.list().filter((vm) => vm.state === 'running').map((vm) => vm.request.name) ?? [],
    runCertOf: (label) => {
      try {
        return runtimeRef?.route(label).serverCertPem ?? null;
      } catch {
        return null;
      }
    },
    mint: (label, childSpawnCa) => {
      if (!nodeGuest?.renewChildIdentity) throw new Error(`node "${config.node.name}" cannot renew its children's identities`);
      return nodeGuest.renewChildIdentity(label, childSpawnCa);
    },
    send: async (label, renewal) => sendRenewal(await routerRef!.clientFor(label), renewal),
    log,
    ...(nodeGuest?.renewChildIdentity ? {} : { checkEveryMs: 0 }),
  });
  // Each identity minted for a new run is recorded, so the renewer knows what the child serves and holds.
  const guest: NodeGuest | null = nodeGuest && {
    payloadBytes: (child) => nodeGuest.payloadBytes(child),
    mintClientCert: () => nodeGuest.mintClientCert(),
    mintChildIdentity: async (label, depthLeft) => {
      const identity = await nodeGuest.mintChildIdentity(label, depthLeft);
      renewer.minted(label, identity.serverCertChainPem, identity.spawnCa?.certPem ?? null);
      return identity;
    },
  };
  const onEvent = (event: VmEvent) => {
    // A crash is worth a warning in the log; the event stream carries every one of them either way.
    if (event.kind === 'vm_failed' || (event.kind === 'vm_exited' && !event.expected)) log.warn('vm event', { ...event });
    else log.info('vm event', { ...event });
    options.events?.publish(event);
    if (event.kind === 'vm_started') warmConnection(event.vm);
  };
  // A child that just started gets this node's connection at once (client certificate, TLS handshake on both
  // emulated CPUs), in the background: the first call routed to it then does not wait for that.
  const warmConnection = (label: string) => {
    routerRef?.clientFor(label).then(
      (client) =>
        client.waitForReady(Date.now() + WARM_CONNECTION_MS, (err) => {
          if (err) log.debug('vm: the connection to a started child is not ready yet', { vm: label, err: err.message });
        }),
      (err: Error) => log.debug('vm: no client for a started child', { vm: label, err: err.message }),
    );
  };
  const deps: VmRuntimeDeps = {
    nodePath: config.node.name,
    limits: config.vms,
    kernel: config.vms.kernel,
    initrd: config.vms.initrd,
    bootDisk: resolveBootDisk(config.vms.bootDisk, readOrNull('/proc/self/mountinfo')),
    stateDir: join(config.state.dir, 'vms'),
    guestPort: CHILD_API_PORT,
    guest,
    launch: qemuLauncher(resolveQemu(config.vms.qemu)),
    // A dot folder beside the VMs' own (their names cannot start with a dot).
    childRoot: (initrd) => childRootFor(initrd, join(config.state.dir, 'vms', '.stage-initrd')),
    accel: hostAccel(),
    freePort: freeLoopbackPort,
    files: nodeVmFiles,
    confine: cgroupConfiner(),
    unconfine: cgroupReleaser(),
    onEvent,
    log,
    store: options.store,
    leftovers: procLeftovers(),
    ...options.overrides,
  };
  const runtime = new VmRuntime(deps);
  const router = createChildRouter({
    nodePath: config.node.name,
    runtime,
    rootCaPem: options.rootCaPem,
    mintClientCert: guest ? () => guest.mintClientCert() : null,
    pinsFor: (label, runCertPem) => renewer.pinsFor(label, runCertPem),
    log,
  });
  runtimeRef = runtime;
  routerRef = router;
  renewer.start();
  return {
    runtime,
    router,
    renewer,
    createService: (ctx) => createVmService(ctx, runtime, config.vms, renewChildNow(runtime, renewer, nodeGuest !== null && nodeGuest.renewChildIdentity !== undefined, config.node.name)),
    init: () => runtime.init(),
    close: async (timeoutMs) => {
      renewer.close();
      await runtime.close(timeoutMs);
      router.close();
    },
    spawnCaCertPem: () => spawnCa?.certPem ?? null,
    identityRenewed: async (spawnCaCertPem) => {
      if (spawnCa && spawnCaCertPem !== null) {
        // The guest adapter holds this object: its next identities chain to the new certificate (same key).
        spawnCa.certPem = spawnCaCertPem;
        router.resetIdentity();
        await renewer.check(true);
      }
    },
  };
}

/** VmService/Renew: the renewer's own renewal of one running child, its failures as the API's errors. */
function renewChildNow(runtime: VmRuntime, renewer: ChildCertRenewer, canRenew: boolean, nodePath: string): RenewChild {
  return async (name) => {
    runtime.route(name); // NOT_FOUND, or UNAVAILABLE when it does not run
    if (!canRenew) throw new AuraeError('FAILED_PRECONDITION', `node "${nodePath}" cannot renew its children's identities: it has no spawn CA (pki.spawnCaCert/spawnCaKey)`);
    let chain: string;
    try {
      chain = await renewer.renewNow(name);
    } catch (err) {
      if (isAuraeError(err)) throw err;
      throw new AuraeError('UNAVAILABLE', `vm "${name}": renewing its certificate failed: ${(err as Error).message}: it keeps its current certificate; try again with \`aer vm renew ${name}\``);
    }
    return { fingerprint: pemFingerprint(chain), notAfter: new Date(new X509Certificate(chain).validTo).toISOString() };
  };
}

/** NodeService/RenewIdentity on a child, over the router's client (this node's own certificate: the parent's). */
function sendRenewal(client: Client, renewal: ChildRenewal): Promise<void> {
  const def = NodeServiceService.renewIdentity;
  const request = { serverCertChain: renewal.serverCertChainPem, serverKey: renewal.serverKeyPem, spawnCaCert: renewal.spawnCaCertPem ?? '' };
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, new Metadata(), { deadline: Date.now() + RENEW_DEADLINE_MS }, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

const RENEW_DEADLINE_MS = 20_000;
/** How long the connection made to a just-started child may take before it is left to the first call. */
const WARM_CONNECTION_MS = 30_000;

async function readSpawnCa(config: NodeConfig): Promise<CertificateAuthority | null> {
  const { spawnCaCert, spawnCaKey } = config.pki;
  if (spawnCaCert === null || spawnCaKey === null) return null;
  const read = async (field: string, path: string) => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new Error(`reading pki.${field} ${path} failed (${code}): is the node's spawn CA installed (see the image build)?`);
    }
  };
  return { certPem: await read('spawnCaCert', spawnCaCert), keyPem: await read('spawnCaKey', spawnCaKey) };
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
