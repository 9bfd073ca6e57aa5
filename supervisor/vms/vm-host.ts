// The real adapters of the VM core on a Linux node: QEMU through launchVm, files with private modes, free
// loopback ports, cgroup v2 confinement when available, and the router that reaches running children with a
// client certificate this node mints for its own identity from its spawn CA.
import fs from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Client, credentials } from '@grpc/grpc-js';
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import type { ChildRouter } from '../server';
import { detectAccel } from './accel';
import { launchVm } from './launch';
import type { VmRuntime, VmRuntimeDeps } from './vm-runtime';

export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export const nodeVmFiles: VmRuntimeDeps['files'] = {
  exists: (path) => fs.existsSync(path),
  mkdirPrivate: (path) => fs.mkdirSync(path, { recursive: true, mode: 0o700 }),
  writePrivate: (path, data) => {
    // Create with 0600 (not chmod after): the payload holds the child's private key.
    fs.rmSync(path, { force: true });
    fs.writeFileSync(path, data, { mode: 0o600, flag: 'wx' });
  },
  remove: (path) => fs.rmSync(path, { recursive: true, force: true }),
};

/** QEMU as the boot volume ships it (image/disk: relocated with its own loader and libraries). */
export const BOOT_VOLUME_QEMU = '/boot/qemu/qemu-system-x86_64';

/** vms.qemu, or the boot volume's QEMU when present, or qemu-system-x86_64 from PATH. */
export function resolveQemu(configured: string | null, exists: (path: string) => boolean = fs.existsSync): string {
  return configured ?? (exists(BOOT_VOLUME_QEMU) ? BOOT_VOLUME_QEMU : 'qemu-system-x86_64');
}

/** vms.bootDisk, or the block device mounted on /boot (from /proc/self/mountinfo text), or null. Pure. */
export function resolveBootDisk(configured: string | null, mountinfo: string | null): string | null {
  if (configured) return configured;
  for (const line of (mountinfo ?? '').split('\n')) {
    // id parent major:minor root mountpoint options ... - fstype source superoptions
    const [left, right] = line.split(' - ');
    if (left?.split(' ')[4] !== '/boot' || !right) continue;
    const source = right.split(' ')[1];
    if (source?.startsWith('/dev/')) return source;
  }
  return null;
}

export function qemuLauncher(binary: string): VmRuntimeDeps['launch'] {
  return (spec, onConsoleLine) => launchVm(spec, { onConsoleLine, qemuBinary: binary });
}

export const launchQemu: VmRuntimeDeps['launch'] = qemuLauncher('qemu-system-x86_64');

/** QEMU's memory beyond the guest's RAM that its cell allows (device emulation, TCG translation cache). */
export const QEMU_OVERHEAD_MIB = 256;

/**
 * Confinement of QEMU in a cgroup v2 cell `<root>/aurae-vms/<name>`: memory.max = guest RAM + overhead,
 * cpu.max = cpus × period. Resolves false on a node without cgroup v2 (the caller logs the warning).
 * Kept beside the cells' own tree (not inside /sys/fs/cgroup/aurae, which the cells reconcile owns).
 */
export function cgroupConfiner(root = '/sys/fs/cgroup'): VmRuntimeDeps['confine'] {
  return async (name, pid, limits) => {
    if (!fs.existsSync(join(root, 'cgroup.controllers'))) return false;
    const dir = join(root, 'aurae-vms', name);
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(join(root, 'aurae-vms', 'cgroup.subtree_control'), '+memory +cpu');
      fs.writeFileSync(join(dir, 'memory.max'), String((limits.memoryMiB + QEMU_OVERHEAD_MIB) * 1024 * 1024));
      fs.writeFileSync(join(dir, 'cpu.max'), `${limits.cpus * 100_000} 100000`);
      fs.writeFileSync(join(dir, 'cgroup.procs'), String(pid));
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new AuraeError('FAILED_PRECONDITION', `vm "${name}": putting QEMU into cgroup ${dir} failed (${code}): are the memory and cpu controllers enabled in ${root}/cgroup.subtree_control?`);
    }
  };
}

/** Remove a freed VM's cell; it is empty once QEMU exited. A failure only leaves an empty directory behind. */
export function cgroupReleaser(root = '/sys/fs/cgroup'): NonNullable<VmRuntimeDeps['unconfine']> {
  return (name) => {
    try {
      fs.rmdirSync(join(root, 'aurae-vms', name));
    } catch {
      // absent (never confined: no cgroup v2) or still busy: nothing to do
    }
  };
}

export function hostAccel(): VmRuntimeDeps['accel'] {
  let accel: ReturnType<typeof detectAccel> | null = null;
  return () => (accel ??= detectAccel());
}

export interface ChildRouterOptions {
  nodePath: string;
  runtime: Pick<VmRuntime, 'route'>;
  /** The root CA (trust for the children's server certificates). */
  rootCaPem: string;
  /**
   * Mint this node's client certificate (CN = its node path) from its spawn CA, with the spawn CA chain after
   * it (guest/ mintParentClientCert); null when the node has no spawn CA.
   */
  mintClientCert: (() => Promise<{ certChainPem: string; keyPem: string }>) | null;
  log: Logger;
}

/**
 * Clients to running children, cached per child address (a restarted child gets a new port and a new client).
 * The client certificate's identity is this node's path, so the child honours aurae-on-behalf-of from it.
 */
export function createChildRouter(options: ChildRouterOptions): ChildRouter & { close(): void } {
  const clients = new Map<string, { address: string; client: Client }>();
  let identity: Promise<{ certChainPem: string; keyPem: string }> | null = null;
  const mint = async () => {
    if (!options.mintClientCert) throw new AuraeError('FAILED_PRECONDITION', `node "${options.nodePath}" has no spawn CA (pki.spawnCaCert/spawnCaKey): it cannot reach children`);
    return options.mintClientCert();
  };
  return {
    nodePath: options.nodePath,
    async clientFor(label) {
      const route = options.runtime.route(label);
      const cached = clients.get(label);
      if (cached && cached.address === route.address) return cached.client;
      cached?.client.close();
      identity ??= mint().catch((err: unknown) => {
        identity = null;
        throw err;
      });
      const { certChainPem, keyPem } = await identity;
      // Another call may have made the client while this one waited for the identity.
      const made = clients.get(label);
      if (made && made.address === route.address) return made.client;
      // The chain goes along: the child trusts only the root CA.
      const creds = credentials.createSsl(Buffer.from(options.rootCaPem), Buffer.from(keyPem), Buffer.from(certChainPem));
      const client = new Client(route.address, creds, {
        'grpc.ssl_target_name_override': route.tlsName,
        'grpc.default_authority': route.tlsName,
      });
      clients.set(label, { address: route.address, client });
      options.log.debug('child client', { child: route.nodePath, address: route.address });
      return client;
    },
    close() {
      for (const { client } of clients.values()) client.close();
      clients.clear();
    },
  };
}
