// Sandbox "vm": the pod runs inside a child microVM booted from the node's own image (supervisor/vms), whose
// auraed is the pod agent. This node pulls the images, turns each into a read-only ext4 rootfs disk
// (images/rootfs-disk.ts), spawns the VM `pod-<name>` with those disks attached (virtio-blk), and asks the child's
// PodService, as the child's parent, to run the pod in a cell there with each image given as `aurae-disk:<digest>`
// (the child mounts the disk: disk-images.ts). The desired state stays here, in the pods table (sandbox "vm");
// status comes from the child (refreshed on every List/Inspect), stop stops the pod in the child and then the VM
// (its memory is freed), remove frees the VM too. Reconcile after an auraed restart boots the VM again if needed
// and runs the pod in it anew (a child keeps no state across its boots).
//
// Piece by piece (the CRI's runtime handler "vm": createSandbox, then createContainer / startContainer /
// stopContainer / removeContainer): createSandbox spawns the VM with no image disk but with an image share, a
// directory of this node shared read-only with the VM over virtio-9p (microvm has no PCI hot-plug, and the guest
// kernel no loop device, so a disk cannot be added after boot nor a disk file mounted from a share), and creates
// an empty sandbox in the child. createContainer mounts the image's merged root filesystem read-only in the share
// (vm-agent.ts nodePodImageShare: the rootfs disk layout, `<label>/rootfs` and `<label>/aurae-image.json`) and
// creates the container in the child with the image as `aurae-disk:<digest>`, which the child's disk-images.ts
// finds in the share when no disk has that label. Each container's desired state is kept here (pod_containers);
// the rest goes to the child's incremental PodService methods.
//
// Host path mounts (kubelet's /etc/hosts, termination-log, service-account tokens, emptyDirs): the VM is also
// spawned with a volumes share, a directory of this node (a small tmpfs) shared writable over virtio-9p with
// security_model=mapped-file: owners, modes, setuid bits, device nodes and links the VM sets are kept as metadata,
// never applied to this node's files (vms/qemu-args.ts shareFsdevOptions). createContainer binds each of the
// container's host paths in it as
// `<container>/<i>` (read-only ones remounted read-only: the VM cannot write them), and the child binds
// /run/aurae/pod-volumes/<container>/<i> (childMountPath) into the container. Reads and writes go through to this
// node's files at once (cache=mmap); limits: a read-only bind is read-only at its top only (mounts below a
// read-only host path stay writable), propagation does not cross the share (a mount made below a host path after
// the container was created is not seen in the VM), and a VM booted before volumes were shared refuses mounts.
//
// The pure parts (names, memory, the child's spec, the status shown here) are exported for unit tests; the core
// takes its side effects as adapters (PodVms over VmRuntime, ChildPodAgent over the router: vm-agent.ts).
import type { Duplex } from 'node:stream';
import { AuraeError } from '../errors';
import type { ImageRecord, PullProgress } from '../images';
import type { Logger } from '../log';
import { DEFAULTS, RANGES } from '../validation';
import { diskImageRef, POD_VOLUMES_DIR, VM_POD_SHARE_TAG, VM_POD_VOLUMES_TAG } from './disk-images';
import type { PodServiceExecRequest } from '../gen/aurae/pods/v0/pods';
import type { MetricsReader, MetricsSnapshot } from '../observe';
import type { LogStream } from '../observe/types';
import { checkVmExec, type ExecRelay, type RelayableExecCall } from './exec';
import { type ContainerStatus, imageHolder, type PodImages, type PodRuntime, type PodStatus, SANDBOX_CONTAINERS_MAX } from './runtime';
import type { ContainerMount, ContainerSpec, PodSpec } from './spec';
import type { PodStore, StoredContainer } from './store';

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

/** Where the VM sees a container's `i`th host path: its bind in the volumes share (PodVolumeShare). */
export function childMountPath(container: string, i: number): string {
  return `${POD_VOLUMES_DIR}/${container}/${i}`;
}

/**
 * A container as the child creates it: its image the handed-over (shared) disk of its digest; its host path
 * mounts the binds of those paths in the volumes share (childMountPath), with their modes and propagation.
 */
export function childContainerSpec(c: ContainerSpec, digest: string): ContainerSpec {
  const out: ContainerSpec = { ...c, image: diskImageRef(digest) };
  if (c.mounts?.length) out.mounts = c.mounts.map((m, i) => ({ ...m, hostPath: childMountPath(c.name, i) }));
  return out;
}

/**
 * Why a container cannot be created in a VM sandbox (null: it can): host path mounts name files of this node,
 * which the VM sees only through a volumes share (`volumes`: this node has one).
 */
export function vmContainerRefusal(c: ContainerSpec, volumes = false): AuraeError | null {
  if (c.mounts?.length && !volumes) {
    return new AuraeError('UNIMPLEMENTED', `container.mounts: host path mounts are not available in a VM sandbox on this node (runtime handler vm: no volumes share): use the cell runtime handler for containers with volumes`);
  }
  return null;
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
  entry: {
    spec: PodSpec;
    desiredRunning: boolean;
    images: Record<string, string>;
    createdAt: number;
    creating: boolean;
    containers?: Map<string, StoredContainer>;
    lost?: Set<string>;
  },
  child: PodStatus | null,
  vm: PodVmState,
): PodStatus {
  const status = vmPodStatusOf(entry, child, vm);
  if (!entry.containers?.size) return status;
  // Containers created one by one: their times from this node's rows where the child does not say; one whose run
  // was lost with the VM's previous boot (the child has it created anew, never to start: restart never) ended.
  return {
    ...status,
    containers: status.containers.map((c) => {
      const row = entry.containers!.get(c.name);
      if (!row) return c;
      const lost = entry.lost?.has(c.name) === true && c.state === 'created';
      const state = lost ? ('exited' as const) : c.state;
      const ended = state === 'exited' || state === 'failed';
      return {
        ...c,
        state,
        ...(lost ? { pid: null } : {}),
        createdAt: c.createdAt ?? row.createdAt,
        startedAt: c.startedAt ?? row.startedAt,
        finishedAt: c.finishedAt ?? (ended ? (row.finishedAt ?? row.startedAt) : null),
      };
    }),
  };
}

function vmPodStatusOf(
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
  spawn(request: { name: string; memoryMiB: number; cpus: number; restart: 'never'; disks: string[]; shares?: { tag: string; path: string; writable?: boolean }[] }): Promise<unknown>;
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
  /** The child's incremental methods (PodService CreateSandbox … RemoveContainer). */
  createSandbox(vm: string, spec: PodSpec): Promise<PodStatus>;
  createContainer(vm: string, pod: string, c: ContainerSpec): Promise<ContainerStatus>;
  startContainer(vm: string, pod: string, container: string): Promise<ContainerStatus>;
  stopContainer(vm: string, pod: string, container: string, graceMs: number): Promise<ContainerStatus>;
  removeContainer(vm: string, pod: string, container: string, opts: { force: boolean }): Promise<void>;
}

/** One line of a container's output as the child's log has it (observe LogItem). */
export interface ChildLogLine {
  stream: LogStream;
  /** Without its newline (a line over the child's limit is cut and marked there). */
  line: string;
  /** When the child received it (ms since the epoch, the child's clock). */
  timestamp: number;
}

/**
 * The child's side of a VM pod's containers (vm-agent.ts childPodIo, over the router as the child's parent):
 * what the CRI serves for cell pods from this node's crun, cgroups and executables' output is read there.
 */
export interface ChildPodIo {
  /** Relay an exec call (its first request `first`) to the child's PodService/Exec (vm-agent.ts childExecRelay). */
  exec(vm: string, first: PodServiceExecRequest, call: RelayableExecCall): Promise<void>;
  /** The child's cgroup metrics of the pod's cell and its containers (ObserveService/GetMetrics of cell `pod`). */
  metrics(vm: string, pod: string): Promise<MetricsSnapshot>;
  /**
   * Follow a container's output in the child (ObserveService/GetLogs of cell `pod`, executable `container`,
   * follow): the kept lines (`tail` of them; undefined: all), then each new one, to `onLine`; `onEnd` once
   * when the stream ends (null) or fails. Returns the cancel (no onEnd after it).
   */
  followLogs(vm: string, pod: string, container: string, tail: number | undefined, onLine: (line: ChildLogLine) => void, onEnd: (err: Error | null) => void): () => void;
  /** A connection to `port` in the pod's network in the child (its PodService/PortForward), as a Duplex. */
  portForward(vm: string, pod: string, port: number): Duplex;
}

/** How long a child's output is waited for again after its stream ended (its VM rebooting, down, or not up yet). */
export const CHILD_OUTPUT_RETRY_MS = { first: 500, max: 5000 } as const;

/**
 * Follow a container's output in its child for as long as it is wanted (until the returned stop), opening the
 * child's stream again whenever it ends (backing off while the child does not answer). Each opening asks for
 * every kept line and passes on only those after the last one passed on (by the child's timestamp, counting the
 * lines of that same millisecond), so a reconnect neither repeats nor drops a line the child still keeps.
 * Precondition: `open` calls onEnd at most once per opening and never after its cancel.
 */
export function followChildOutput(options: {
  open: (tail: number | undefined, onLine: (line: ChildLogLine) => void, onEnd: (err: Error | null) => void) => () => void;
  sink: (stream: LogStream, text: string) => void;
  log: Logger;
  timer?: (fn: () => void, ms: number) => () => void;
}): () => void {
  const timer =
    options.timer ??
    ((fn: () => void, ms: number) => {
      const t = setTimeout(fn, ms);
      t.unref?.();
      return () => clearTimeout(t);
    });
  let stopped = false;
  let cancel: (() => void) | null = null;
  let last = { at: -Infinity, count: 0 };
  let delay: number = CHILD_OUTPUT_RETRY_MS.first;
  const connect = () => {
    if (stopped) return;
    // What this opening has passed over so far of the lines at `last.at` (the child sends them again).
    let seenAtLast = 0;
    const before = { ...last };
    let delivered = false;
    cancel = options.open(
      undefined,
      (item) => {
        if (stopped) return;
        if (item.timestamp < before.at) return;
        if (item.timestamp === before.at && seenAtLast < before.count) {
          seenAtLast++;
          return;
        }
        last = item.timestamp === last.at ? { at: last.at, count: last.count + 1 } : { at: item.timestamp, count: 1 };
        delivered = true;
        delay = CHILD_OUTPUT_RETRY_MS.first;
        options.sink(item.stream, item.line);
      },
      (err) => {
        cancel = null;
        if (stopped) return;
        if (err) options.log.debug("a VM pod container's output: the child's stream failed: opening it again", { err: err.message, retryMs: delay });
        const wait = delay;
        if (!delivered) delay = Math.min(CHILD_OUTPUT_RETRY_MS.max, delay * 2);
        const clear = timer(connect, wait);
        cancel = () => clear();
      },
    );
  };
  connect();
  return () => {
    stopped = true;
    cancel?.();
    cancel = null;
  };
}

/**
 * The directory of images shared with a pod's VM (vm-agent.ts nodePodImageShare): images added after the VM
 * booted. add is idempotent; remove takes one image out; removeAll the whole directory.
 */
export interface PodImageShare {
  /** The pod's share directory (created): what the VM is spawned with. */
  dir(pod: string): string;
  add(pod: string, image: ImageRecord): Promise<void>;
  remove(pod: string, digest: string): void;
  removeAll(pod: string): void;
}

/**
 * A VM sandbox's volumes (vm-agent.ts nodePodVolumeShare): a directory shared writable with the VM (virtio-9p tag
 * VM_POD_VOLUMES_TAG) in which each container's host paths are bound as `<container>/<i>` (read-only ones
 * read-only) when it is created. Per boot (binds under /run): reconcile adds them again.
 */
export interface PodVolumeShare {
  /** The pod's volumes directory (made): what the VM is spawned with. */
  dir(pod: string): string;
  /** Bind the container's host paths (a missing one is made a directory, as containerd does); idempotent. */
  add(pod: string, container: string, mounts: readonly ContainerMount[]): void;
  remove(pod: string, container: string): void;
  removeAll(pod: string): void;
}

export interface VmPodRuntimeDeps {
  /** The pods table, shared with cell pods (rows with spec.sandbox "vm" are this runtime's). */
  store: PodStore;
  images: PodImages;
  /** Rootfs disks (images/rootfs-disk.ts createRootfsDisks). */
  disks: { ensure(image: ImageRecord): Promise<{ path: string }> };
  /** Images shared with the VM after its boot (containers created one by one). */
  share: PodImageShare;
  /** Host path mounts of containers created one by one; absent: such containers are refused (UNIMPLEMENTED). */
  volumes?: PodVolumeShare;
  /** The node's VMs; a function because the VM subsystem starts after pods in auraed. */
  vms: () => PodVms;
  agent: ChildPodAgent;
  /** Exec, output and metrics of the containers in the children; absent: those answer UNIMPLEMENTED. */
  io?: ChildPodIo;
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
  /** Made by createSandbox (its VM has the image share; its containers have rows); false: by run. */
  incremental: boolean;
  /** Each container's desired state and times (containers created one by one only). */
  containers: Map<string, StoredContainer>;
  /** Containers that had started before the VM booted again: created anew in the child, shown as exited. */
  lost?: Set<string>;
}

export interface VmPodRuntime extends Omit<PodRuntime, 'execTarget'> {
  /** Ask the children of running VM pods for their status (List/Inspect call it first). */
  refresh(name?: string): Promise<void>;
  /** The relay serving exec into the pod's containers in its child (checks the pod can be exec'd into, at the call). */
  execRelay(pod: string): ExecRelay;
  /** The pod's cell metrics from its child (NOT_FOUND while its VM is not running: no cgroup to read). */
  metrics(pod: string): Promise<MetricsSnapshot>;
  /** Follow a container's output in the child until the returned stop (followChildOutput). */
  followOutput(pod: string, container: string, sink: (stream: LogStream, text: string) => void): () => void;
  /** A connection to `port` in the pod's network, made by its child (FAILED_PRECONDITION while its VM is down). */
  openPort(pod: string, port: number): Duplex;
}

export function createVmPodRuntime(deps: VmPodRuntimeDeps): VmPodRuntime {
  const { store, images, log } = deps;
  const clock = deps.clock ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const pods = new Map<string, VmPodEntry>();
  const rows = store.containers();
  for (const p of store.pods()) {
    if (p.spec.sandbox !== 'vm') continue;
    // A pod of run has no container rows; one of createSandbox has a row per container (or no container yet).
    const own = rows.get(p.spec.name);
    const incremental = p.spec.containers.length === 0 || (own !== undefined && own.size > 0);
    pods.set(p.spec.name, { spec: p.spec, desiredRunning: p.desiredRunning, images: p.images, createdAt: p.createdAt, creating: false, child: null, incremental, containers: new Map(own ?? []) });
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
  /** The VM of a pod made piece by piece: no disk, the image share (with the images of its containers). */
  const spawnShared = async (spec: PodSpec, digests: Record<string, string>) => {
    const vms = deps.vms();
    const memoryMiB = vmPodMemoryMiB(spec, vms.limits.maxMemoryMiB);
    const dir = deps.share.dir(spec.name);
    for (const c of spec.containers) await deps.share.add(spec.name, storedImage(spec, digests, c.name));
    const volumes = deps.volumes ? [{ tag: VM_POD_VOLUMES_TAG, path: deps.volumes.dir(spec.name), writable: true }] : [];
    for (const c of spec.containers) if (c.mounts?.length) deps.volumes?.add(spec.name, c.name, c.mounts);
    await vms.spawn({ name: vmPodName(spec.name), memoryMiB, cpus: 1, restart: 'never', disks: [], shares: [{ tag: VM_POD_SHARE_TAG, path: dir }, ...volumes] });
  };
  const storedImage = (spec: PodSpec, digests: Record<string, string>, container: string): ImageRecord => {
    const record = digests[container] ? images.get(digests[container]) : undefined;
    if (!record) throw new AuraeError('FAILED_PRECONDITION', `pod "${spec.name}": container "${container}": its image ${digests[container] ?? '(unknown)'} is no longer stored: remove the container and create it again`);
    return record;
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
  /** Per pod, one incremental change at a time (a promise chain). */
  const locks = new Map<string, Promise<unknown>>();
  const exclusive = <T>(pod: string, fn: () => Promise<T>): Promise<T> => {
    const next = (locks.get(pod) ?? Promise.resolve()).then(fn, fn);
    const settled = next.catch(() => undefined);
    locks.set(pod, settled);
    void settled.then(() => {
      if (locks.get(pod) === settled) locks.delete(pod);
    });
    return next;
  };
  /** A pod made piece by piece, ready for changes (FAILED_PRECONDITION for a pod of run: its containers are fixed). */
  const requireIncremental = (name: string, what: string): VmPodEntry => {
    const e = require(name);
    if (!e.incremental) throw new AuraeError('FAILED_PRECONDITION', `pod "${name}" was run whole (aer pod run): its containers cannot be ${what} one by one: create a sandbox for that`);
    return e;
  };
  const requireContainer = (e: VmPodEntry, container: string): StoredContainer => {
    if (!e.spec.containers.some((c) => c.name === container)) {
      const names = e.spec.containers.map((c) => c.name);
      throw new AuraeError('NOT_FOUND', `pod "${e.spec.name}" has no container "${container}" (${names.length ? `it has ${names.join(', ')}` : 'it has none'}): create it first`);
    }
    return e.containers.get(container) ?? { desired: 'created', createdAt: e.createdAt, startedAt: null, finishedAt: null };
  };
  const requireVmRunning = (name: string, what: string) => {
    const state = vmState(name);
    if (state !== 'running') throw new AuraeError('FAILED_PRECONDITION', `pod "${name}": its VM ${vmPodName(name)} is ${state ?? 'gone'}, not running: ${what} needs it (stop and remove the pod, then create it again)`);
  };
  const setRow = (e: VmPodEntry, container: string, row: StoredContainer) => {
    store.putContainer(e.spec.name, container, row);
    e.containers.set(container, row);
  };
  /** The child's answer for one container, into the pod's last child status. */
  const noteChild = (e: VmPodEntry, c: ContainerStatus) => {
    if (!e.child) return;
    const others = e.child.containers.filter((x) => x.name !== c.name);
    e.child = { ...e.child, containers: [...others, c] };
  };
  const containerStatus = (name: string, container: string): ContainerStatus => {
    const c = status(name)?.containers.find((x) => x.name === container);
    if (!c) throw new AuraeError('NOT_FOUND', `pod "${name}" has no container "${container}"`);
    return c;
  };
  /** Take an image out of the pod's share once no container of the pod uses it. */
  const unshareUnused = (e: VmPodEntry, digest: string) => {
    if (Object.values(e.images).includes(digest)) return;
    try {
      deps.share.remove(e.spec.name, digest);
    } catch (err) {
      log.warn("taking an image out of a VM pod's share failed", { pod: e.spec.name, image: digest, err });
    }
  };
  /** The child's sandbox and containers anew (a VM booted again keeps nothing); started only when the policy restarts. */
  const recreateInChild = async (e: VmPodEntry): Promise<PodStatus> => {
    const vm = vmPodName(e.spec.name);
    await deps.agent.createSandbox(vm, { ...e.spec, sandbox: 'cell', containers: [] });
    e.lost = new Set();
    for (const c of e.spec.containers) {
      await deps.agent.createContainer(vm, e.spec.name, childContainerSpec(c, e.images[c.name]!));
      const row = e.containers.get(c.name);
      if (row?.desired === 'running' && e.spec.restart !== 'never') await deps.agent.startContainer(vm, e.spec.name, c.name);
      else if (row && row.desired !== 'created') e.lost.add(c.name);
    }
    return (await deps.agent.inspect(vm, e.spec.name)) ?? (() => {
      throw new AuraeError('UNAVAILABLE', `VM pod agent "${vm}": the sandbox just created is not there`);
    })();
  };

  return {
    async run(spec, opts = {}) {
      if (spec.sandbox !== 'vm') throw new AuraeError('INTERNAL', `pod "${spec.name}": the VM sandbox runs sandbox "vm" pods only`);
      if (pods.has(spec.name)) throw new AuraeError('ALREADY_EXISTS', `pod "${spec.name}" already exists: remove it first (aer pod rm ${spec.name}) or choose another name`);
      const entry: VmPodEntry = { spec, desiredRunning: true, images: {}, createdAt: clock(), creating: true, child: null, incremental: false, containers: new Map() };
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

    async createSandbox(spec) {
      if (spec.sandbox !== 'vm') throw new AuraeError('INTERNAL', `pod "${spec.name}": the VM sandbox creates sandbox "vm" pods only`);
      if (spec.containers.length) throw new AuraeError('INVALID_ARGUMENT', `containers: a sandbox is created without containers (got ${spec.containers.length}): add them with createContainer`);
      if (pods.has(spec.name)) throw new AuraeError('ALREADY_EXISTS', `pod "${spec.name}" already exists: remove it first (aer pod rm ${spec.name}) or choose another name`);
      const entry: VmPodEntry = { spec, desiredRunning: true, images: {}, createdAt: clock(), creating: true, child: null, incremental: true, containers: new Map() };
      pods.set(spec.name, entry);
      const done = { stored: false };
      try {
        vmPodMemoryMiB(spec, deps.vms().limits.maxMemoryMiB);
        store.insert({ spec, desiredRunning: true, images: {}, createdAt: entry.createdAt });
        done.stored = true;
        await spawnShared(spec, {});
        entry.child = await deps.agent.createSandbox(vmPodName(spec.name), { ...spec, sandbox: 'cell' });
        entry.creating = false;
      } catch (err) {
        log.warn('creating a VM sandbox failed: undoing', { pod: spec.name, err });
        try {
          if (vmState(spec.name) !== null) {
            await haltVm(spec.name);
            deps.vms().free(vmPodName(spec.name));
          }
          deps.share.removeAll(spec.name);
          deps.volumes?.removeAll(spec.name);
          if (done.stored) store.delete(spec.name);
        } catch (undoErr) {
          log.error('undoing a failed VM sandbox creation failed', { pod: spec.name, err: undoErr });
        } finally {
          pods.delete(spec.name);
        }
        throw err;
      }
      log.info('vm sandbox created', { pod: spec.name, vm: vmPodName(spec.name) });
      return status(spec.name)!;
    },

    createContainer(pod, c) {
      return exclusive(pod, async () => {
        const e = requireIncremental(pod, 'added');
        if (!e.desiredRunning) throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}" is stopped: containers cannot be added to a stopped pod: create a new one`);
        if (e.spec.containers.some((x) => x.name === c.name)) throw new AuraeError('ALREADY_EXISTS', `pod "${pod}": container "${c.name}" already exists: remove it first or choose another name`);
        if (e.spec.containers.length >= SANDBOX_CONTAINERS_MAX) throw new AuraeError('RESOURCE_EXHAUSTED', `pod "${pod}" has ${e.spec.containers.length} containers, the most a pod may have: remove exited ones first`);
        const refusal = vmContainerRefusal(c, deps.volumes !== undefined);
        if (refusal) throw refusal;
        requireVmRunning(pod, 'adding a container');
        const record = images.get(c.image);
        if (!record) throw new AuraeError('NOT_FOUND', `pod "${pod}": container "${c.name}": image ${c.image} is not stored on this node: pull it first`);
        const holder = imageHolder(pod, c.name);
        images.retain(record.digest, holder);
        const spec: PodSpec = { ...e.spec, containers: [...e.spec.containers, c] };
        const digests = { ...e.images, [c.name]: record.digest };
        const row: StoredContainer = { desired: 'created', createdAt: clock(), startedAt: null, finishedAt: null };
        let created = false;
        try {
          await deps.share.add(pod, record);
          if (c.mounts?.length) deps.volumes!.add(pod, c.name, c.mounts);
          const child = await deps.agent.createContainer(vmPodName(pod), pod, childContainerSpec(c, record.digest));
          created = true;
          store.putContainer(pod, c.name, row, { spec, images: digests });
          e.spec = spec;
          e.images = digests;
          e.containers.set(c.name, row);
          noteChild(e, child);
        } catch (err) {
          log.warn('creating a container in a VM sandbox failed: undoing', { pod, container: c.name, err });
          if (created) await deps.agent.removeContainer(vmPodName(pod), pod, c.name, { force: true }).catch(() => undefined);
          try {
            deps.volumes?.remove(pod, c.name);
          } catch (undoErr) {
            log.error("undoing a container's volume binds failed", { pod, container: c.name, err: undoErr });
          }
          images.release(holder);
          unshareUnused(e, record.digest);
          throw err;
        }
        log.info('container created', { pod, container: c.name, image: c.image, sandbox: 'vm' });
        return containerStatus(pod, c.name);
      });
    },

    startContainer(pod, container) {
      return exclusive(pod, async () => {
        const e = requireIncremental(pod, 'started');
        const row = requireContainer(e, container);
        if (!e.desiredRunning) throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}" is stopped: its containers cannot be started: create a new pod`);
        if (row.desired !== 'created') {
          throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}": container "${container}" was started before (it is ${containerStatus(pod, container).state}): only a created container can be started: create a new one`);
        }
        requireVmRunning(pod, 'starting a container');
        const child = await deps.agent.startContainer(vmPodName(pod), pod, container);
        setRow(e, container, { ...row, desired: 'running', startedAt: child.startedAt ?? clock() });
        noteChild(e, child);
        log.info('container started', { pod, container, sandbox: 'vm' });
        return containerStatus(pod, container);
      });
    },

    async updateContainerResources(pod, container) {
      requireContainer(require(pod), container);
      throw new AuraeError('UNIMPLEMENTED', `pod "${pod}" runs in a VM sandbox (runtime handler vm): its containers' resources cannot be changed in place yet (the VM's child has no update): recreate the container, or size the pod's VM with its limits`);
    },
    async stopContainer(pod, container, graceMs) {
      // Not under the pod's lock: the grace period may be long (the child's stop is idempotent).
      const e = requireIncremental(pod, 'stopped');
      const row = requireContainer(e, container);
      if (row.desired === 'running') setRow(e, container, { ...row, desired: 'stopped' });
      if (vmState(pod) === 'running') {
        const child = await deps.agent.stopContainer(vmPodName(pod), pod, container, graceMs);
        if (child.finishedAt != null) setRow(e, container, { ...e.containers.get(container)!, finishedAt: child.finishedAt });
        noteChild(e, child);
      }
      log.info('container stopped', { pod, container, graceMs, sandbox: 'vm' });
      return containerStatus(pod, container);
    },

    removeContainer(pod, container, opts) {
      return exclusive(pod, async () => {
        const e = requireIncremental(pod, 'removed');
        requireContainer(e, container);
        const state = containerStatus(pod, container).state;
        const vmUp = vmState(pod) === 'running';
        if (!opts.force && vmUp && state === 'running') {
          throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}": container "${container}" is running: stop it first, or remove it with force`);
        }
        if (vmUp) {
          await deps.agent.removeContainer(vmPodName(pod), pod, container, opts).catch((err: unknown) => {
            // The child lost it (booted again): nothing there to remove.
            if (!(err instanceof AuraeError && err.code === 'NOT_FOUND')) throw err;
          });
        }
        const digest = e.images[container];
        const spec: PodSpec = { ...e.spec, containers: e.spec.containers.filter((c) => c.name !== container) };
        const digests = { ...e.images };
        delete digests[container];
        store.deleteContainer(pod, container, { spec, images: digests });
        e.spec = spec;
        e.images = digests;
        e.containers.delete(container);
        e.lost?.delete(container);
        if (e.child) e.child = { ...e.child, containers: e.child.containers.filter((c) => c.name !== container) };
        images.release(imageHolder(pod, container));
        if (digest) unshareUnused(e, digest);
        deps.volumes?.remove(pod, container);
        log.info('container removed', { pod, container, force: opts.force, sandbox: 'vm' });
      });
    },

    list: () => [...pods.keys()].sort().map((n) => status(n)!),
    get: status,

    execRelay(pod) {
      return (first, call) => {
        const current = status(pod);
        if (!current) return Promise.reject(new AuraeError('NOT_FOUND', `pod "${pod}" does not exist: see aer pod list for the pods there are`));
        checkVmExec(pod, current.state);
        if (!deps.io) return Promise.reject(new AuraeError('UNIMPLEMENTED', `pod "${pod}": exec into a VM-sandboxed pod is not available on this node`));
        return deps.io.exec(vmPodName(pod), first, call);
      };
    },

    async metrics(pod) {
      require(pod);
      if (!deps.io) throw new AuraeError('UNIMPLEMENTED', `pod "${pod}": the metrics of a VM-sandboxed pod are not available on this node`);
      // Not running: no cgroup to read (as a stopped cell pod's), not an error for the stats.
      if (vmState(pod) !== 'running') throw new AuraeError('NOT_FOUND', `pod "${pod}": its VM ${vmPodName(pod)} is not running: no metrics`);
      return deps.io.metrics(vmPodName(pod), pod);
    },

    openPort(pod, port) {
      require(pod);
      if (!deps.io) throw new AuraeError('UNIMPLEMENTED', `pod "${pod}": port-forward into a VM-sandboxed pod is not available on this node`);
      requireVmRunning(pod, 'port-forward');
      return deps.io.portForward(vmPodName(pod), pod, port);
    },

    followOutput(pod, container, sink) {
      const io = deps.io;
      if (!io) throw new AuraeError('UNIMPLEMENTED', `pod "${pod}": the output of a VM-sandboxed pod's containers is not available on this node`);
      return followChildOutput({
        open: (tail, onLine, onEnd) => {
          // The VM not (yet) running: nothing to ask; try again later.
          if (vmState(pod) !== 'running') {
            const t = setTimeout(() => onEnd(new Error(`its VM ${vmPodName(pod)} is not running`)), 0);
            return () => clearTimeout(t);
          }
          return io.followLogs(vmPodName(pod), pod, container, tail, onLine, onEnd);
        },
        sink,
        log: log.child({ pod, container }),
      });
    },

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
      if (e.incremental) {
        deps.share.removeAll(name);
        deps.volumes?.removeAll(name);
      }
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
          if (e.incremental) {
            // The share's mounts are per boot: make them again before the VM (re)starts.
            deps.share.dir(name);
            for (const c of e.spec.containers) await deps.share.add(name, storedImage(e.spec, e.images, c.name));
            if (deps.volumes) {
              deps.volumes.dir(name);
              for (const c of e.spec.containers) if (c.mounts?.length) deps.volumes.add(name, c.name, c.mounts);
            }
          }
          if (state === null) await (e.incremental ? spawnShared(e.spec, e.images) : spawn(e.spec, e.images));
          else if (state !== 'running') await startVm(name);
          state = vmState(name);
          if (state !== 'running') throw new AuraeError('UNAVAILABLE', `its VM is ${state ?? 'gone'}`);
          e.child =
            (await deps.agent.inspect(vmPodName(name), name)) ??
            (e.incremental ? await recreateInChild(e) : await deps.agent.run(vmPodName(name), childPodSpec(e.spec, e.images)));
          log.info('vm pod reconciled', { pod: name });
        } catch (err) {
          log.error('vm pods reconcile: bringing a pod back failed', { pod: name, err });
        }
      }
    },
  };
}

/**
 * Both sandboxes behind one runtime, with what differs for a pod whose containers run in a child VM put behind
 * four calls that are no-ops (null, the local reader) for cell pods: the CRI and PodService use them alike.
 */
export interface SandboxedPodRuntime extends PodRuntime {
  refresh(name?: string): Promise<void>;
  /** The relay serving exec into the pod elsewhere (its child VM), null when its containers run here. */
  execRelay(pod: string): ExecRelay | null;
  /** `local` (observe's metrics of this node's cells), with the cells of VM pods read in their children. */
  metricsReader(local: MetricsReader): MetricsReader;
  /**
   * Follow the output of a container that runs elsewhere (a VM pod's, in its child) until the returned stop;
   * null when it runs here (its output reaches the executables' output tap of this node already).
   */
  followOutput(pod: string, container: string, sink: (stream: LogStream, text: string) => void): (() => void) | null;
  /** A connection to `port` in the pod's network when that network is elsewhere (a VM pod's); null: connect here. */
  openPort(pod: string, port: number): Duplex | null;
}

/**
 * One PodRuntime over both sandboxes: Run goes by the spec's sandbox, everything else to the runtime that has
 * the pod (names are unique across both: they share the pods table). List merges both, sorted by name.
 */
export function sandboxedPodRuntime(cell: PodRuntime, vm: VmPodRuntime): SandboxedPodRuntime {
  const owner = (name: string): Omit<PodRuntime, 'execTarget'> => (vm.get(name) ? vm : cell);
  return {
    createSandbox(spec) {
      if (cell.get(spec.name) || vm.get(spec.name)) {
        return Promise.reject(new AuraeError('ALREADY_EXISTS', `pod "${spec.name}" already exists: remove it first (aer pod rm ${spec.name}) or choose another name`));
      }
      return spec.sandbox === 'vm' ? vm.createSandbox(spec) : cell.createSandbox(spec);
    },
    createContainer: (pod, c) => owner(pod).createContainer(pod, c),
    startContainer: (pod, c) => owner(pod).startContainer(pod, c),
    stopContainer: (pod, c, graceMs) => owner(pod).stopContainer(pod, c, graceMs),
    removeContainer: (pod, c, opts) => owner(pod).removeContainer(pod, c, opts),
    updateContainerResources: (pod, c, resources) => owner(pod).updateContainerResources(pod, c, resources),
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
    execRelay: (pod) => (vm.get(pod) ? vm.execRelay(pod) : null),
    metricsReader: (local) => (cellPath) => {
      // A pod's cell path is its name; the VM pod's cell lives in its child (every cell: this node's only).
      const pod = cellPath?.split('/')[0];
      return pod !== undefined && vm.get(pod) ? vm.metrics(pod) : local(cellPath);
    },
    followOutput: (pod, container, sink) => (vm.get(pod) ? vm.followOutput(pod, container, sink) : null),
    openPort: (pod, port) => (vm.get(pod) ? vm.openPort(pod, port) : null),
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
