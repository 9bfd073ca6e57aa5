// Sandbox "vm": the pod runs inside a child microVM booted from the node's own image (supervisor/vms), whose
// auraed is the pod agent. This node pulls the images, turns each into a read-only ext4 rootfs disk
// (images/rootfs-disk.ts), spawns the VM `pod-<name>` with those disks attached (virtio-blk), and asks the child's
// PodService, as the child's parent, to run the pod in a cell there with each image given as `aurae-disk:<digest>`
// (the child mounts the disk: disk-images.ts). The desired state stays here, in the pods table (sandbox "vm");
// status comes from the child (refreshed on every List/Inspect), stop stops the pod in the child and then the VM
// (its memory is freed), remove frees the VM too. Reconcile after an auraed restart boots the VM again if needed
// and runs the pod in it anew (a child keeps no state across its boots).
//
// The pure parts (names, memory, the child's spec, the status shown here) are exported for unit tests; the core
// takes its side effects as adapters (PodVms over VmRuntime, ChildPodAgent over the router: vm-agent.ts).
import { AuraeError } from '../errors';
import type { ImageRecord, PullProgress } from '../images';
import type { Logger } from '../log';
import { DEFAULTS, RANGES } from '../validation';
import { diskImageRef } from './disk-images';
import { type ContainerStatus, imageHolder, type PodImages, type PodRuntime, type PodStatus } from './runtime';
import type { PodSpec } from './spec';
import type { PodStore } from './store';

/** The child VM of pod `pod`: `pod-<name>` (a VM name is one DNS label, so pod names of VM pods are ≤ 59 chars). */
export function vmPodName(pod: string): string {
  return `pod-${pod}`;
}
export const VM_POD_NAME_MAX = 63 - 'pod-'.length;

/**
 * The child VM's memory in MiB: the VM default (the child's own Node PID 1 and auraed need ~200 MiB), or with a
 * pod memory limit that limit plus 384 MiB for the child itself, whichever is larger; at most `maxMiB`.
 */
export function vmPodMemoryMiB(spec: Pick<PodSpec, 'limits'>, maxMiB: number = RANGES.vmMemoryMiB[1]): number {
  const base = DEFAULTS.vmMemoryMiB;
  const limit = spec.limits.memoryMax;
  const wanted = limit === null ? base : Math.max(base, 384 + Math.ceil(limit / (1024 * 1024)));
  if (wanted > maxMiB) {
    throw new AuraeError('INVALID_ARGUMENT', `limits.memory_max: a VM-sandboxed pod needs a ${wanted} MiB VM for it, over vms.maxMemoryMiB ${maxMiB}: lower the limit or raise vms.maxMemoryMiB`);
  }
  return wanted;
}

/** The spec the child runs: the same pod in a cell, each container's image the handed-over disk of its digest. */
export function childPodSpec(spec: PodSpec, digests: Record<string, string>): PodSpec {
  return {
    ...spec,
    sandbox: 'cell',
    containers: spec.containers.map((c) => {
      const digest = digests[c.name];
      if (!digest) throw new AuraeError('INTERNAL', `pod "${spec.name}": container "${c.name}" has no image digest`);
      return { ...c, image: diskImageRef(digest) };
    }),
  };
}

/** A VM's state as the pod sees it (VmRuntime's VmState; null: no such VM). */
export type PodVmState = 'allocated' | 'starting' | 'running' | 'stopping' | 'stopped' | 'crashed' | 'failed' | null;

/**
 * What this node shows for a VM pod (pure): while creating, pending with each container pulling (no digest yet)
 * or created; then the child's last status with this node's name, sandbox, spec, creation time and image
 * references (the child only knows the disks); stopped once stopped here and the VM is down; failed when the VM
 * died under a pod that should run.
 */
export function vmPodStatus(
  entry: { spec: PodSpec; desiredRunning: boolean; images: Record<string, string>; createdAt: number; creating: boolean },
  child: PodStatus | null,
  vm: PodVmState,
): PodStatus {
  // No address here: the pod's network is inside its VM (the VM is reached through this node's router).
  const base = { name: entry.spec.name, sandbox: 'vm' as const, createdAt: entry.createdAt, spec: entry.spec, ip: null };
  const fromSpec = (state: ContainerStatus['state']): ContainerStatus[] =>
    entry.spec.containers.map((c) => ({ name: c.name, image: c.image, imageDigest: entry.images[c.name] ?? '', state: entry.images[c.name] ? state : 'pulling', pid: null, exit: null, restarts: 0 }));
  if (entry.creating) return { ...base, state: 'pending', containers: fromSpec('created') };
  const containers = child
    ? entry.spec.containers.map((c) => {
        const seen = child.containers.find((s) => s.name === c.name);
        const own = { name: c.name, image: c.image, imageDigest: entry.images[c.name] ?? '' };
        return seen ? { ...seen, ...own } : { ...own, state: 'created' as const, pid: null, exit: null, restarts: 0 };
      })
    : fromSpec('created');
  const vmUp = vm === 'starting' || vm === 'running' || vm === 'stopping';
  // Once the VM is down nothing runs: no pid is current.
  const settled = vmUp ? containers : containers.map((c) => ({ ...c, pid: null, state: c.state === 'running' || c.state === 'created' ? ('exited' as const) : c.state }));
  let state: PodStatus['state'];
  if (!entry.desiredRunning && !vmUp) state = 'stopped';
  else if (entry.desiredRunning && (vm === 'crashed' || vm === 'failed' || vm === null)) state = 'failed';
  else if (vm === 'starting' || !child) state = 'pending';
  else state = child.state;
  return { ...base, state, containers: settled };
}

/** What VM pods need of the VM runtime (VmRuntime through vm-agent.ts nodePodVms). */
export interface PodVms {
  spawn(request: { name: string; memoryMiB: number; cpus: number; restart: 'never'; disks: string[] }): Promise<unknown>;
  start(name: string): Promise<unknown>;
  stop(name: string): Promise<unknown>;
  free(name: string): void;
  state(name: string): PodVmState;
  /** vms.maxMemoryMiB and vms.bootTimeoutMs of this node. */
  limits: { maxMemoryMiB: number; bootTimeoutMs: number };
}

/** The child's PodService, called as its parent (vm-agent.ts childPodAgent). */
export interface ChildPodAgent {
  run(vm: string, spec: PodSpec): Promise<PodStatus>;
  /** null: the child has no such pod. */
  inspect(vm: string, pod: string): Promise<PodStatus | null>;
  stop(vm: string, pod: string, graceMs: number): Promise<PodStatus>;
}

export interface VmPodRuntimeDeps {
  /** The pods table, shared with cell pods (rows with spec.sandbox "vm" are this runtime's). */
  store: PodStore;
  images: PodImages;
  /** Rootfs disks (images/rootfs-disk.ts createRootfsDisks). */
  disks: { ensure(image: ImageRecord): Promise<{ path: string }> };
  /** The node's VMs; a function because the VM subsystem starts after pods in auraed. */
  vms: () => PodVms;
  agent: ChildPodAgent;
  log: Logger;
  clock?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

interface VmPodEntry {
  spec: PodSpec;
  desiredRunning: boolean;
  images: Record<string, string>;
  createdAt: number;
  creating: boolean;
  /** The child's last answer (null: none yet, or the child had no such pod). */
  child: PodStatus | null;
}

export interface VmPodRuntime extends Omit<PodRuntime, 'execTarget'> {
  /** Ask the children of running VM pods for their status (List/Inspect call it first). */
  refresh(name?: string): Promise<void>;
}

export function createVmPodRuntime(deps: VmPodRuntimeDeps): VmPodRuntime {
  const { store, images, log } = deps;
  const clock = deps.clock ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const pods = new Map<string, VmPodEntry>();
  for (const p of store.pods()) {
    if (p.spec.sandbox === 'vm') pods.set(p.spec.name, { spec: p.spec, desiredRunning: p.desiredRunning, images: p.images, createdAt: p.createdAt, creating: false, child: null });
  }
  const vmState = (pod: string): PodVmState => {
    try {
      return deps.vms().state(vmPodName(pod));
    } catch {
      return null;
    }
  };
  const status = (name: string): PodStatus | undefined => {
    const e = pods.get(name);
    return e && vmPodStatus(e, e.child, vmState(name));
  };
  const require = (name: string): VmPodEntry => {
    const e = pods.get(name);
    if (!e) throw new AuraeError('NOT_FOUND', `pod "${name}" does not exist: run it first (see List for the pods there are)`);
    if (e.creating) throw new AuraeError('FAILED_PRECONDITION', `pod "${name}" is still being created: wait for its Run to finish`);
    return e;
  };
  /** The disks of the pod's images (one per distinct image), in container order. */
  const diskPaths = async (spec: PodSpec, digests: Record<string, string>): Promise<string[]> => {
    const out: string[] = [];
    for (const c of spec.containers) {
      const record = images.get(digests[c.name]!);
      if (!record) throw new AuraeError('FAILED_PRECONDITION', `pod "${spec.name}": container "${c.name}": its image ${digests[c.name]} is no longer stored: remove the pod and run it again`);
      const { path } = await deps.disks.ensure(record);
      if (!out.includes(path)) out.push(path);
    }
    return out;
  };
  const spawn = async (spec: PodSpec, digests: Record<string, string>) => {
    const vms = deps.vms();
    await vms.spawn({ name: vmPodName(spec.name), memoryMiB: vmPodMemoryMiB(spec, vms.limits.maxMemoryMiB), cpus: 1, restart: 'never', disks: await diskPaths(spec, digests) });
  };
  /** Wait for a VM that is being booted (by VmRuntime's own reconcile) to be running; its final state otherwise. */
  const settle = async (pod: string): Promise<PodVmState> => {
    const deadline = clock() + deps.vms().limits.bootTimeoutMs + 30_000;
    let state = vmState(pod);
    while ((state === 'starting' || state === 'stopping') && clock() < deadline) {
      await sleep(250);
      state = vmState(pod);
    }
    return state;
  };
  /**
   * Start a stopped VM. VmRuntime's own reconcile may be about to boot it (its state still says stopped while it
   * prepares): a start refused as busy is retried until the VM runs or the boot deadline passes.
   */
  const startVm = async (pod: string) => {
    const deadline = clock() + deps.vms().limits.bootTimeoutMs + 30_000;
    for (;;) {
      try {
        await deps.vms().start(vmPodName(pod));
        return;
      } catch (err) {
        const state = await settle(pod);
        if (state === 'running') return;
        if (!(err instanceof AuraeError && err.code === 'FAILED_PRECONDITION') || clock() >= deadline) throw err;
        await sleep(500);
      }
    }
  };
  const haltVm = async (pod: string) => {
    const state = vmState(pod);
    if (state === 'starting' || state === 'running' || state === 'stopping' || state === 'crashed') await deps.vms().stop(vmPodName(pod));
  };

  return {
    async run(spec, opts = {}) {
      if (spec.sandbox !== 'vm') throw new AuraeError('INTERNAL', `pod "${spec.name}": the VM sandbox runs sandbox "vm" pods only`);
      if (pods.has(spec.name)) throw new AuraeError('ALREADY_EXISTS', `pod "${spec.name}" already exists: remove it first (aer pod rm ${spec.name}) or choose another name`);
      const entry: VmPodEntry = { spec, desiredRunning: true, images: {}, createdAt: clock(), creating: true, child: null };
      pods.set(spec.name, entry);
      const done = { retained: false, stored: false, spawned: false };
      try {
        vmPodMemoryMiB(spec, deps.vms().limits.maxMemoryMiB); // refused before any pull
        for (const c of spec.containers) {
          const record = images.get(c.image) ?? (await images.pull(c.image, { onProgress: (p: PullProgress) => opts.onProgress?.({ ...p, image: c.image }) }));
          images.retain(record.digest, imageHolder(spec.name, c.name));
          done.retained = true;
          entry.images[c.name] = record.digest;
        }
        store.insert({ spec, desiredRunning: true, images: entry.images, createdAt: entry.createdAt });
        done.stored = true;
        await spawn(spec, entry.images);
        done.spawned = true;
        entry.child = await deps.agent.run(vmPodName(spec.name), childPodSpec(spec, entry.images));
        entry.creating = false;
      } catch (err) {
        log.warn('running a VM pod failed: undoing', { pod: spec.name, err });
        try {
          if (done.spawned || vmState(spec.name) !== null) {
            await haltVm(spec.name);
            deps.vms().free(vmPodName(spec.name));
          }
          if (done.stored) store.delete(spec.name);
        } catch (undoErr) {
          log.error('undoing a failed VM pod run failed', { pod: spec.name, err: undoErr });
        } finally {
          for (const c of spec.containers) images.release(imageHolder(spec.name, c.name));
          pods.delete(spec.name);
        }
        throw err;
      }
      log.info('vm pod running', { pod: spec.name, vm: vmPodName(spec.name), containers: spec.containers.map((c) => c.name) });
      return status(spec.name)!;
    },

    list: () => [...pods.keys()].sort().map((n) => status(n)!),
    get: status,

    async refresh(name) {
      const names = name === undefined ? [...pods.keys()] : pods.has(name) ? [name] : [];
      await Promise.all(
        names.map(async (n) => {
          const e = pods.get(n)!;
          if (e.creating || vmState(n) !== 'running') return;
          try {
            e.child = await deps.agent.inspect(vmPodName(n), n);
          } catch (err) {
            log.debug('vm pod status: the child did not answer', { pod: n, err: (err as Error).message });
          }
        }),
      );
    },

    async stop(name, graceMs) {
      const e = require(name);
      store.setDesired(name, false);
      e.desiredRunning = false;
      if (vmState(name) === 'running') {
        try {
          e.child = await deps.agent.stop(vmPodName(name), name, graceMs);
        } catch (err) {
          // The VM goes down next either way; its containers with it.
          log.warn('stopping a VM pod in its child failed; stopping the VM', { pod: name, err: (err as Error).message });
        }
      }
      await haltVm(name);
      log.info('vm pod stopped', { pod: name, graceMs });
      return status(name)!;
    },

    async remove(name, opts) {
      const e = require(name);
      const current = status(name)!;
      const running = current.containers.filter((c) => c.state === 'running');
      if (!opts.force && running.length && vmState(name) === 'running') {
        throw new AuraeError('FAILED_PRECONDITION', `pod "${name}" has running containers (${running.map((c) => c.name).join(', ')}): stop it first (aer pod stop ${name}), or remove with force`);
      }
      e.desiredRunning = false;
      await haltVm(name);
      if (vmState(name) !== null) deps.vms().free(vmPodName(name));
      for (const c of e.spec.containers) images.release(imageHolder(name, c.name));
      store.delete(name);
      pods.delete(name);
      log.info('vm pod removed', { pod: name, force: opts.force });
    },

    async reconcile() {
      for (const [name, e] of pods) {
        if (e.creating) continue;
        try {
          let state = await settle(name);
          if (!e.desiredRunning) {
            await haltVm(name);
            continue;
          }
          if (state === null) await spawn(e.spec, e.images);
          else if (state !== 'running') await startVm(name);
          state = vmState(name);
          if (state !== 'running') throw new AuraeError('UNAVAILABLE', `its VM is ${state ?? 'gone'}`);
          e.child = (await deps.agent.inspect(vmPodName(name), name)) ?? (await deps.agent.run(vmPodName(name), childPodSpec(e.spec, e.images)));
          log.info('vm pod reconciled', { pod: name });
        } catch (err) {
          log.error('vm pods reconcile: bringing a pod back failed', { pod: name, err });
        }
      }
    },
  };
}

/**
 * One PodRuntime over both sandboxes: Run goes by the spec's sandbox, everything else to the runtime that has
 * the pod (names are unique across both: they share the pods table). List merges both, sorted by name.
 */
export function sandboxedPodRuntime(cell: PodRuntime, vm: VmPodRuntime): PodRuntime & { refresh(name?: string): Promise<void> } {
  const owner = (name: string): Pick<PodRuntime, 'stop' | 'remove'> => (vm.get(name) ? vm : cell);
  return {
    run(spec, opts) {
      if (cell.get(spec.name) || vm.get(spec.name)) {
        return Promise.reject(new AuraeError('ALREADY_EXISTS', `pod "${spec.name}" already exists: remove it first (aer pod rm ${spec.name}) or choose another name`));
      }
      return spec.sandbox === 'vm' ? vm.run(spec, opts) : cell.run(spec, opts);
    },
    list: () => [...cell.list(), ...vm.list()].sort((a, b) => a.name.localeCompare(b.name)),
    get: (name) => cell.get(name) ?? vm.get(name),
    stop: (name, graceMs) => owner(name).stop(name, graceMs),
    remove: (name, opts) => owner(name).remove(name, opts),
    async reconcile() {
      await cell.reconcile();
      await vm.reconcile();
    },
    refresh: (name) => vm.refresh(name),
    execTarget(pod, container) {
      if (vm.get(pod)) {
        throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}" runs in a VM sandbox: exec into its containers is not available through this node yet (its agent is node pod-${pod} below this one)`);
      }
      return cell.execTarget(pod, container);
    },
  };
}

/** The pods table as the cell runtime sees it: without the VM pods' rows (which it must not reconcile as cells). */
export function cellPodStore(store: PodStore): PodStore {
  return { ...store, pods: () => store.pods().filter((p) => p.spec.sandbox !== 'vm') };
}
