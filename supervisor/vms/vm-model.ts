// The VM service's pure part: names and node paths, request validation against the node's limits, the state
// table, and the VmSpec a child boots with. No I/O here, so all of it is unit-tested without QEMU.
import type { NodeConfig } from '../config';
import { DEFAULT_API_SOCKET } from '../config/node-paths';
import { AuraeError } from '../errors';
import { DEFAULTS, DNS_LABEL_FORM, expectedForm, isDnsLabel, RANGES, rangeText } from '../validation';
import type { Accel, VmSpec } from './qemu-args';

export type RestartPolicy = 'never' | 'on-failure' | 'always';
export const RESTART_POLICIES: readonly RestartPolicy[] = ['never', 'on-failure', 'always'];

/** What a caller asks for (desired). */
export interface VmRequest {
  name: string;
  memoryMiB: number;
  cpus: number;
  restart: RestartPolicy;
  /**
   * Extra read-only raw disks (virtio-blk, after the boot volume), e.g. the rootfs disks of a VM-sandboxed pod.
   * Set by auraed itself (supervisor/pods/vm-sandbox.ts), never from the API: a caller must not attach node files.
   */
  disks?: string[];
  /**
   * Host directories shared over virtio-9p (tag → path; read-only unless writable; a writable one keeps what the
   * guest sets on owners, modes and special files as metadata: qemu-args.ts shareFsdevOptions), e.g. the images a
   * VM-sandboxed pod gains after boot and its volumes. Set by auraed itself, never from the API, as disks are.
   */
  shares?: { tag: string; path: string; writable?: boolean }[];
}

export const DEFAULT_VM_MEMORY_MIB = DEFAULTS.vmMemoryMiB;

/** The node's VM limits (config `vms`). */
export interface VmLimits {
  maxMemoryMiB: number;
  maxDepth: number;
}

/**
 * Validate a request (raw proto fields; 0/"" mean the default) against the limits. Throws INVALID_ARGUMENT
 * naming the field; depth is checked separately (it depends on the node, not the request).
 */
export function validateVmRequest(raw: { name?: string; memoryMiB?: number; cpus?: number; restart?: string }, limits: VmLimits): VmRequest {
  const name = validateVmName(raw.name ?? '');
  const memoryMiB = raw.memoryMiB || DEFAULT_VM_MEMORY_MIB;
  const [minMemoryMiB] = RANGES.vmMemoryMiB;
  if (!Number.isInteger(memoryMiB) || memoryMiB < minMemoryMiB || memoryMiB > limits.maxMemoryMiB) {
    throw new AuraeError(
      'INVALID_ARGUMENT',
      `vm "${name}": memory_mib ${memoryMiB} is out of range: expected ${minMemoryMiB}..${limits.maxMemoryMiB} (vms.maxMemoryMiB in the node config)`,
    );
  }
  const cpus = raw.cpus || DEFAULTS.vmCpus;
  if (!Number.isInteger(cpus) || cpus < RANGES.vmCpus[0] || cpus > RANGES.vmCpus[1]) {
    throw new AuraeError('INVALID_ARGUMENT', `vm "${name}": cpus ${cpus} is out of range: expected ${rangeText(RANGES.vmCpus)}`);
  }
  const restart = (raw.restart || 'never') as RestartPolicy;
  if (!RESTART_POLICIES.includes(restart)) {
    throw new AuraeError('INVALID_ARGUMENT', `vm "${name}": restart "${raw.restart}" is invalid: expected one of ${RESTART_POLICIES.join(', ')}`);
  }
  return { name, memoryMiB, cpus, restart };
}

/** A VM name is one DNS label: it becomes a label of the child's node path and TLS name. */
export function validateVmName(name: string, field = 'name'): string {
  if (!isDnsLabel(name)) throw new AuraeError('INVALID_ARGUMENT', expectedForm(`vm ${field}`, name, DNS_LABEL_FORM));
  return name;
}

/** "aurae" → 0, "aurae/web" → 1. */
export function nodeDepth(nodePath: string): number {
  return nodePath.split('/').length - 1;
}

/** FAILED_PRECONDITION when a child of `parentPath` would be deeper than `maxDepth`. */
export function checkSpawnDepth(parentPath: string, maxDepth: number): number {
  const depth = nodeDepth(parentPath) + 1;
  if (depth > maxDepth) {
    throw new AuraeError(
      'FAILED_PRECONDITION',
      `node "${parentPath}" cannot spawn: a child would be at depth ${depth}, past vms.maxDepth ${maxDepth} (raise it in the root node's config)`,
    );
  }
  return depth;
}

export type VmState = 'allocated' | 'starting' | 'running' | 'stopping' | 'stopped' | 'crashed' | 'failed';

/** Allowed transitions. "crashed" is QEMU exiting without being asked; the restart policy moves on from it. */
export const VM_TRANSITIONS: Readonly<Record<VmState, readonly VmState[]>> = {
  allocated: ['starting'],
  starting: ['running', 'failed', 'stopping'],
  running: ['stopping', 'crashed'],
  stopping: ['stopped', 'failed'],
  stopped: ['starting'],
  crashed: ['starting', 'failed'],
  failed: ['starting'],
};

export function canTransition(from: VmState, to: VmState): boolean {
  return VM_TRANSITIONS[from].includes(to);
}

/** States in which a QEMU process may exist. */
export function isActive(state: VmState): boolean {
  return state === 'starting' || state === 'running' || state === 'stopping';
}

/** Whether the policy restarts a VM whose QEMU exited unexpectedly with `code`. */
export function shouldRestart(policy: RestartPolicy, exit: { code: number | null; signal: string | null }): boolean {
  if (policy === 'always') return true;
  if (policy === 'on-failure') return exit.code !== 0 || exit.signal !== null;
  return false;
}

/** Restarts in a row before the VM is marked failed (bounded: a child that cannot boot must not loop forever). */
export const MAX_RESTARTS = 5;
export function restartDelayMs(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, attempt - 1));
}

export interface ChildBootPlan {
  kernel: string;
  initrd: string;
  /**
   * The root image handed over as a read-only disk (the first, vda), with `initrd` the stage initramfs that
   * lacks it (supervisor/vms/child-root.ts); null: `initrd` is the whole initramfs.
   */
  rootDisk: { path: string; offset: number; size: number; serial: string } | null;
  /** The parent's boot volume, attached read-only (the child mounts it on /boot); null: the child has none. */
  bootDisk: string | null;
  accel: Accel;
  hostPort: number;
  guestPort: number;
  qmpSocket: string;
  /** The guest payload's fw_cfg items (its parts: guest/ guestPayloadParts) and the files holding them. */
  payload: { name: string; file: string }[];
}

/**
 * The VmSpec of a child: the node's own kernel and initramfs, microvm, user-mode networking with one forwarded
 * loopback port to the child's API (self-contained: tap + bridge would need privileges and a NIC config on the
 * parent), a QMP socket, the guest payload as fw_cfg, and -no-reboot (a reboot inside the child ends QEMU;
 * the restart policy decides).
 */
export function childVmSpec(request: VmRequest, plan: ChildBootPlan): VmSpec {
  return {
    kernel: plan.kernel,
    initrd: plan.initrd,
    // No aurae.name=: the child's name and identity come with the payload, one source of truth.
    append: 'panic=-1 quiet',
    memoryMiB: request.memoryMiB,
    cpus: request.cpus,
    accel: plan.accel,
    machine: 'microvm',
    forwards: [{ hostPort: plan.hostPort, guestPort: plan.guestPort }],
    qmpSocket: plan.qmpSocket,
    debugConsoleSocket: null,
    noReboot: true,
    disks: [
      ...(plan.rootDisk ? [{ ...plan.rootDisk, readOnly: true, format: 'raw' as const }] : []),
      ...(plan.bootDisk ? [{ path: plan.bootDisk, readOnly: true, format: 'raw' as const }] : []),
      ...(request.disks ?? []).map((path) => ({ path, readOnly: true, format: 'raw' as const })),
    ],
    fwCfg: plan.payload.map((item) => ({ ...item })),
    ...(request.shares?.length ? { shares: request.shares.map((sh) => ({ ...sh })) } : {}),
    // Bound TCG's code buffer: by default it grows towards 1 GiB per child (see BENCHMARKS.md).
    tcgTbSizeMiB: CHILD_TCG_TB_SIZE_MIB,
  };
}

/** TCG translation buffer per child, MiB (ignored under KVM). */
export const CHILD_TCG_TB_SIZE_MIB = 64;

/** Where a child's auraed listens inside the guest: what the parent's user-mode forward points at. */
export const CHILD_API_PORT = 8443;

/**
 * The parent's config as the base of a child's (guest/ buildGuestPayload inherits everything from it), with the
 * parts that describe the parent's own machine reset to what the child's VM has: listeners on the guest's
 * default socket and 0.0.0.0:8443 (the forwarded port), a fresh state dir, the boot artifacts at /boot in the
 * image. Policy, trust root, limits and every other default stay the parent's.
 */
export function childBaseConfig(parent: NodeConfig): NodeConfig {
  return {
    ...parent,
    listen: { socket: DEFAULT_API_SOCKET, tcp: `0.0.0.0:${CHILD_API_PORT}` },
    state: { ...parent.state, dir: '/var/lib/aurae' },
    vms: { ...parent.vms, kernel: '/boot/vmlinuz', initrd: '/boot/initramfs', qemu: null, bootDisk: null },
  };
}
