// Composition of the VM subsystem for auraed: the core with its real adapters (QEMU, the state database, /proc
// for a previous auraed's leftovers), the router to children and the gRPC service. auraed calls createNodeVms
// once, init() before serving (reconcile), and close() (children first) on shutdown. VM lifecycle events go to
// the observe event bus and to the log.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeConfig } from '../config';
import type { Logger } from '../log';
import type { EventBus } from '../observe';
import type { CertificateAuthority } from '../pki';
import type { ChildRouter, RpcContext } from '../server';
import type { VmServiceServer } from '../gen/aurae/vms/v0/vms';
import { CHILD_API_PORT } from './vm-model';
import { cgroupConfiner, cgroupReleaser, createChildRouter, freeLoopbackPort, hostAccel, nodeVmFiles, qemuLauncher, resolveBootDisk, resolveQemu } from './vm-host';
import { procLeftovers } from './vm-leftovers';
import type { VmReconcileAction } from './vm-reconcile';
import { type GuestAdapter, type VmEvent, VmRuntime, type VmRuntimeDeps } from './vm-runtime';
import type { VmStore } from './vm-store';
import { createVmService } from './vm-service';

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
}

export interface NodeVms {
  runtime: VmRuntime;
  router: ChildRouter;
  createService(ctx: RpcContext): VmServiceServer;
  /** Reconcile with the previous auraed's VMs (stop its leftover QEMUs, start again what should run). Once. */
  init(): Promise<VmReconcileAction[]>;
  /** Stop every child (graceful, bounded by timeoutMs each, in parallel) and close the child clients. */
  close(timeoutMs: number): Promise<void>;
}

export async function createNodeVms(options: NodeVmsOptions): Promise<NodeVms> {
  const { config, log } = options;
  const spawnCa = await readSpawnCa(config);
  const guest = spawnCa && options.guest ? options.guest(spawnCa) : null;
  const onEvent = (event: VmEvent) => {
    // A crash is worth a warning in the log; the event stream carries every one of them either way.
    if (event.kind === 'vm_failed' || (event.kind === 'vm_exited' && !event.expected)) log.warn('vm event', { ...event });
    else log.info('vm event', { ...event });
    options.events?.publish(event);
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
  const router = createChildRouter({ nodePath: config.node.name, runtime, rootCaPem: options.rootCaPem, mintClientCert: guest ? () => guest.mintClientCert() : null, log });
  return {
    runtime,
    router,
    createService: (ctx) => createVmService(ctx, runtime, config.vms),
    init: () => runtime.init(),
    close: async (timeoutMs) => {
      await runtime.close(timeoutMs);
      router.close();
    },
  };
}

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
