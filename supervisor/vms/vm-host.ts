// The real adapters of the VM core on a Linux node: QEMU through launchVm, files with private modes, free
// loopback ports, cgroup v2 confinement when available (through supervisor/cgroup), and the router that reaches running children with a
// client certificate this node mints for its own identity from its spawn CA.
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import { createServer } from 'node:net';
import { type PeerCertificate, checkServerIdentity } from 'node:tls';
import { Client, credentials } from '@grpc/grpc-js';
import { type CgroupFs, type CgroupLimits, CGROUP_ROOT, confineProcess, errnoCode, isCgroup2, nodeCgroupFs, vmDir } from '../cgroup';
import { AuraeError } from '../errors';
import { certificateFingerprint, nodeServerIdentityCheck, pemFingerprint } from '../pki/node-subtree';
import type { Logger } from '../log';
import type { ChildRouter } from '../server';
import { DEFAULTS } from '../validation/ranges';
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

/** QEMU's memory beyond the guest's RAM that its cell allows (device emulation, TCG translation cache). */
export const QEMU_OVERHEAD_MIB = 256;

/** A VM's cgroup limits: memory.max = guest RAM + QEMU's overhead, cpu.max = one period per vCPU. Pure. */
export function vmCgroupLimits(limits: { memoryMiB: number; cpus: number }): CgroupLimits {
  return {
    memory: { max: (limits.memoryMiB + QEMU_OVERHEAD_MIB) * 1024 * 1024 },
    cpu: { max: limits.cpus * DEFAULTS.cpuPeriod, period: DEFAULTS.cpuPeriod },
  };
}

/**
 * Confinement of QEMU in a cgroup v2 cell of its own (supervisor/cgroup: vmDir, beside the cells' tree, which
 * the cells reconcile owns) with vmCgroupLimits. Resolves false on a node without cgroup v2 (the caller logs
 * the warning).
 */
export function cgroupConfiner(root = CGROUP_ROOT, cgroupFs: CgroupFs = nodeCgroupFs): VmRuntimeDeps['confine'] {
  return async (name, pid, limits) => {
    if (!isCgroup2(cgroupFs, root)) return false;
    const dir = vmDir(root, name);
    try {
      confineProcess(cgroupFs, { dir, delegate: ['memory', 'cpu'], limits: vmCgroupLimits(limits), pid });
      return true;
    } catch (err) {
      throw new AuraeError('FAILED_PRECONDITION', `vm "${name}": putting QEMU into cgroup ${dir} failed (${errnoCode(err)}): are the memory and cpu controllers enabled in ${root}/cgroup.subtree_control?`);
    }
  };
}

/** Remove a freed VM's cell; it is empty once QEMU exited. A failure only leaves an empty directory behind. */
export function cgroupReleaser(root = CGROUP_ROOT, cgroupFs: CgroupFs = nodeCgroupFs): NonNullable<VmRuntimeDeps['unconfine']> {
  return (name) => {
    try {
      cgroupFs.rmdir(vmDir(root, name));
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
  /**
   * The fingerprints accepted for the child `label` whose run booted with `runCertPem` (cert-renewal.ts: the
   * renewed certificate, and those sent but not confirmed); default: that certificate only.
   */
  pinsFor?(label: string, runCertPem: string): string[];
  log: Logger;
}

/**
 * The checkServerIdentity of the router's connection to one child: the TLS name, the subtree rule (a spawn CA
 * vouches only for nodes below its own), and the pin: the leaf must be the very certificate this node minted
 * for the child's current run (`pinned`: SHA-256 of its DER; several while a renewal is being confirmed). A
 * certificate of an earlier run of a freed or re-spawned VM, one replaced by a renewal, or one minted by any
 * other spawn CA, is refused even though it chains to the root (and an expired one fails TLS itself).
 */
export function pinnedChildIdentityCheck(pinned: string | readonly string[], rootCaPem: string): (host: string, cert: PeerCertificate) => Error | undefined {
  const standard = nodeServerIdentityCheck(checkServerIdentity, rootCaPem);
  const pins: readonly string[] = typeof pinned === 'string' ? [pinned] : pinned;
  return (host, cert) => {
    const err = standard(host, cert);
    if (err) return err;
    if (!cert.raw || !pins.includes(certificateFingerprint(cert.raw))) {
      return Object.assign(new Error(`child "${host}" presented a certificate this node did not mint for its current run (pinned sha256 ${pins.map((p) => `${p.slice(0, 16)}…`).join(', ')})`), {
        code: 'ERR_AURAE_CHILD_PIN',
      });
    }
    return undefined;
  };
}

/**
 * Clients to running children, cached per child address and pinned server certificate (a restarted child gets
 * a new port, a new certificate and a new client). The client certificate's identity is this node's path, so
 * the child honours aurae-on-behalf-of from it; it is minted again once half its validity is gone.
 */
export function createChildRouter(options: ChildRouterOptions): ChildRouter & { close(): void; resetIdentity(): void } {
  const clients = new Map<string, { address: string; pin: string; generation: number; client: Client }>();
  type Minted = { certChainPem: string; keyPem: string; renewAt: number; generation: number };
  let identity: { minted: Promise<Minted>; renewAt: number } | null = null;
  let generation = 0;
  const mint = async (): Promise<Minted> => {
    if (!options.mintClientCert) throw new AuraeError('FAILED_PRECONDITION', `node "${options.nodePath}" has no spawn CA (pki.spawnCaCert/spawnCaKey): it cannot reach children`);
    const minted = await options.mintClientCert();
    const cert = new X509Certificate(minted.certChainPem);
    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    return { ...minted, renewAt: from + (to - from) / 2, generation: ++generation };
  };
  // One mint at a time; a failed one is forgotten (the next call tries again), a held one is replaced once
  // half its validity is gone, so a long-running parent never presents an expired certificate.
  const currentIdentity = (): Promise<Minted> => {
    if (!identity || Date.now() >= identity.renewAt) {
      const slot = { minted: mint(), renewAt: Infinity };
      identity = slot;
      slot.minted.then(
        (m) => void (slot.renewAt = m.renewAt),
        () => void (identity === slot && (identity = null)),
      );
    }
    return identity.minted;
  };
  return {
    nodePath: options.nodePath,
    async clientFor(label) {
      const route = options.runtime.route(label);
      if (!route.serverCertPem) throw new AuraeError('UNAVAILABLE', `child "${route.nodePath}" has no server certificate on record: start it again (\`aer vm start ${label}\`)`);
      const pins = options.pinsFor ? options.pinsFor(label, route.serverCertPem) : [pemFingerprint(route.serverCertPem)];
      const pin = pins.join(',');
      const { certChainPem, keyPem, generation: current } = await currentIdentity();
      // Another call may have made the client while this one waited for the identity.
      const cached = clients.get(label);
      if (cached && cached.address === route.address && cached.pin === pin && cached.generation === current) return cached.client;
      cached?.client.close();
      // The chain goes along: the child trusts only the root CA.
      const creds = credentials.createSsl(Buffer.from(options.rootCaPem), Buffer.from(keyPem), Buffer.from(certChainPem), {
        checkServerIdentity: pinnedChildIdentityCheck(pins, options.rootCaPem),
      });
      const client = new Client(route.address, creds, {
        'grpc.ssl_target_name_override': route.tlsName,
        'grpc.default_authority': route.tlsName,
      });
      clients.set(label, { address: route.address, pin, generation: current, client });
      options.log.debug('child client', { child: route.nodePath, address: route.address, pin: pin.slice(0, 16) });
      return client;
    },
    /** Mint this node's client certificate again on the next call (its spawn CA certificate was renewed). */
    resetIdentity() {
      identity = null;
    },
    close() {
      for (const { client } of clients.values()) client.close();
      clients.clear();
    },
  };
}
