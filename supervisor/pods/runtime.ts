// The pod runtime: the core behind PodService. A pod is a cell (its limits; logs, metrics, events and `aer top` as
// for any cell); each container is an executable of that cell running `crun run` (crun.ts), so restart policy,
// stop with grace then kill, exit codes, OOM and logs come from the executables' machinery. This module pulls the
// images, prepares the sandbox (pinned namespaces, overlay root filesystems, bundles), keeps the desired state in
// the pods table, and reports PodStatus from the cell's executables. Pods are made whole (run: pull, sandbox,
// every container, start) or piece by piece (the CRI: createSandbox, then createContainer / startContainer /
// stopContainer / removeContainer per container, each container's desired state persisted: store.ts). It
// publishes the pod's own events
// (image_pulled, container_created; container_started when crun's pid file appears; container_exited and
// container_oom_killed from its executables' events) and reports a container running only once crun started it.
import fs from 'node:fs';
import path from 'node:path';
import type { CellSpec, CellView } from '../cells';
import { CGROUP_ROOT, type CgroupLimits, CgroupTree, cellTreeDir, leafDir, nodeCgroupFs } from '../cgroup';
import { AuraeError } from '../errors';
import type { ExecutableSnapshot, ExecutableSpec, RecordedExit } from '../executables';
import type { ImageRecord, Images, PullProgress } from '../images';
import { overlayMountPlan } from '../images';
import type { Logger } from '../log';
import type { EventBus, StampedEvent } from '../observe';
import type { Db } from '../store';
import { loadSyscalls } from '../../native';
import { containerProcess, containerUser } from './container-config';
import { POD_VOLUMES_DIR } from './disk-images';
import { CGROUP_LIMITS_FILE, cgroupLimitsText, containerCgroupLimits, containerId, containerSpecInput, CRUN_STATE_ROOT, crunExecutable, findCrun, PODS_RUN_DIR, type PodPaths, podPaths, stopSignalOf } from './crun';
import type { ExecTarget } from './exec';
import { nodePodHost, type PodHost } from './host';
import { nodePodNetwork, type PodNetwork } from './network';
import {
  allocatePodAddress,
  DEFAULT_POD_NETWORK,
  effectivePublish,
  hostnameFile,
  hostsFile,
  type NetworkedPod,
  parseCidr,
  type PodNetworkConfig,
  podResolvConf,
  type PortProtocol,
  publishConflict,
  resolvConf,
} from './network-plan';
import { ociSpec, type OciSpecInput } from './oci-spec';
import { type PodReconcileAction, podReconcilePlan } from './reconcile';
import { type ContainerResources, type ContainerSpec, type PodSpec, validateResources } from './spec';
import { type PodStore, sqlitePodStore, type StoredContainer } from './store';

export type ContainerState = 'pulling' | 'created' | 'running' | 'exited' | 'failed';

export interface ContainerStatus {
  name: string;
  image: string;
  imageDigest: string;
  state: ContainerState;
  pid: number | null;
  exit: { code: number | null; signal: string | null; oomKilled: boolean } | null;
  restarts: number;
  /** ms since the epoch: created (bundle written); last started by crun; last ended. null: not yet. Always set by
   *  the cell runtime; absent from the VM sandbox's statuses. */
  createdAt?: number | null;
  startedAt?: number | null;
  finishedAt?: number | null;
}

export type PodState = 'pending' | 'running' | 'succeeded' | 'failed' | 'stopped';

export interface PodStatus {
  name: string;
  sandbox: PodSpec['sandbox'];
  state: PodState;
  containers: ContainerStatus[];
  createdAt: number;
  /** The pod as requested. */
  spec: PodSpec;
  /** Its address in the node's pod network (held until it is removed); null/absent when it has none. */
  ip?: string | null;
}

export interface PodRuntime {
  run(spec: PodSpec, opts?: { onProgress?: (p: PullProgress & { image: string }) => void }): Promise<PodStatus>;
  list(): PodStatus[];
  get(name: string): PodStatus | undefined;
  stop(name: string, graceMs: number): Promise<PodStatus>;
  remove(name: string, opts: { force: boolean }): Promise<void>;
  /** After an auraed restart or a reboot with a state disk: bring back the pods that should run. */
  reconcile(): Promise<void>;
  /**
   * A pod with no containers yet (spec.containers must be []: validateSandboxSpec): its cell, pinned namespaces,
   * network (address, /etc files), ready marker; persisted. ALREADY_EXISTS for a taken name, FAILED_PRECONDITION
   * for a published node port another pod has.
   */
  createSandbox(spec: PodSpec): Promise<PodStatus>;
  /**
   * Add a container in state "created": root filesystem mounted, bundle written, NOT started; persisted (the pod's
   * spec gains it), container_created published. Its image must be stored (images.get(ref)), else NOT_FOUND: no
   * pull here. ALREADY_EXISTS for a name the pod has; FAILED_PRECONDITION while the pod is created or stopped.
   */
  createContainer(pod: string, c: ContainerSpec): Promise<ContainerStatus>;
  /** Hand a created container to the pod's cell (crun run). FAILED_PRECONDITION unless it is "created" (never started). */
  startContainer(pod: string, container: string): Promise<ContainerStatus>;
  /** Stop with grace (the image's StopSignal), then kill; never restarted after. Idempotent (created or stopped is fine). */
  stopContainer(pod: string, container: string, graceMs: number): Promise<ContainerStatus>;
  /**
   * crun delete, unmount, delete its files and its executable, drop it from the spec, release its image.
   * FAILED_PRECONDITION while it runs unless force (then it is killed); NOT_FOUND for an unknown pod or container.
   */
  removeContainer(pod: string, container: string, opts: { force: boolean }): Promise<void>;
  /** Where `crun exec` finds container `container` of `pod` (exec.ts; the caller checked it exists and runs). */
  execTarget(pod: string, container: string): ExecTarget;
  /**
   * Change a container's resources (the CRI's UpdateContainerResources): the fields given replace the stored ones
   * (absent ones are kept), are persisted in the pod's spec (every later start applies them) and, while the
   * container runs, written to its cgroup (the executable's leaf) and oom_score_adj to its init. INVALID_ARGUMENT
   * naming the field; NOT_FOUND for an unknown pod or container; UNIMPLEMENTED for a VM sandbox's.
   */
  updateContainerResources(pod: string, container: string, resources: ContainerResources): Promise<ContainerStatus>;
}

/** What pods need of the cell runtime (CellRuntime). */
export interface PodCells {
  allocate(spec: CellSpec): Promise<CellSpec>;
  free(name: string, force: boolean): Promise<void>;
  start(cell: string, spec: ExecutableSpec): Promise<{ pid: number }>;
  stop(cell: string, executable: string, graceMs: number): Promise<RecordedExit | null>;
  /** Forget a stopped executable: its runner, row, leaf cgroup and logs (removeContainer). */
  removeExecutable(cell: string, executable: string): Promise<void>;
  get(name: string): CellView;
}

export type PodImages = Pick<Images, 'pull' | 'get' | 'lowerDirs' | 'retain' | 'release'>;

export interface PodRuntimeDeps {
  db?: Db;
  /** Instead of db (tests). */
  store?: PodStore;
  /** The node's state directory (config state.dir): pods keep their files under <dir>/pods. */
  dir: string;
  images: PodImages;
  cells: PodCells;
  /**
   * Where the pods' events go (image_pulled, container_created/started/exited/oom_killed); the containers' own
   * executable events come from the cells. Without it no pod event is published and no start is watched.
   */
  observe?: { events: EventBus };
  log: Logger;
  /** Side effects on the node; default nodePodHost with the syscall addon (loaded on first use). */
  host?: PodHost;
  /** crun's path; default findCrun() on first use. */
  crun?: string;
  /** Per-boot files (pinned namespaces, ready markers); default /run/aurae/pods. */
  runDir?: string;
  crunStateRoot?: string;
  clock?: () => number;
  /** Pod networking's side effects; default nodePodNetwork (iproute2 ip, nsenter, nft). */
  network?: PodNetwork;
  /** The node config's pods.network; default DEFAULT_POD_NETWORK. */
  networkConfig?: PodNetworkConfig;
  /** Node ports a pod may not publish (the node's own, e.g. the API's). */
  reservedNodePorts?: { port: number; protocol: PortProtocol; why: string }[];
  /** The cgroup tree, for a running container's limits (updateContainerResources); default the node's. */
  cgroups?: Pick<CgroupTree, 'setLeafLimits'>;
  /** Write a process's /proc/PID/oom_score_adj; default node:fs. */
  setOomScoreAdj?: (pid: number, value: number) => void;
}

interface PodEntry {
  spec: PodSpec;
  desiredRunning: boolean;
  /** Container → manifest digest (known once its image is pulled). */
  images: Record<string, string>;
  createdAt: number;
  /** 'creating': pulling images or preparing; 'created': its containers were handed to the cell. */
  phase: 'creating' | 'created';
  /** Each container's desired state and times (store.ts pod_containers). */
  containers: Map<string, StoredContainer>;
}

/** Containers a sandbox may gain one by one (the CRI keeps exited ones until the kubelet removes them). */
export const SANDBOX_CONTAINERS_MAX = 64;

/** Who retains a container's image (images.retain/release). */
export function imageHolder(pod: string, container: string): string {
  return `pod:${pod}/${container}`;
}

/** The pod's cell: its name, no isolation of its own (crun makes the namespaces), the pod's limits. */
export function podCellSpec(spec: PodSpec): CellSpec {
  const cell: CellSpec = { name: spec.name, isolation: { pid: false, mount: false, uts: false, ipc: false, network: false } };
  if (spec.limits.memoryMax !== null) cell.memory = { max: spec.limits.memoryMax };
  if (spec.limits.pidsMax !== null) cell.pids = { max: spec.limits.pidsMax };
  if (spec.limits.cpuWeight !== null) cell.cpu = { weight: spec.limits.cpuWeight };
  return cell;
}

const STARTING = new Set(['starting']);
const ACTIVE = new Set(['starting', 'running', 'stopping', 'backoff']);

/**
 * A container's status from its executable (null: not handed to the cell yet) and its stored row (when given,
 * createdAt/startedAt/finishedAt are set; finishedAt only once it ended, from the executable's last exit).
 */
export function containerStatus(c: ContainerSpec, digest: string, exe: ExecutableSnapshot | null, creating: boolean, row?: StoredContainer): ContainerStatus {
  const base = { name: c.name, image: c.image, imageDigest: digest };
  if (!exe) {
    // Started once (its row says so) and no executable now: it ended while auraed was down (e.g. a SIGKILL) and was
    // not started again, so it has exited, with an exit status nobody saw (exit null).
    if (row && row.startedAt !== null && !creating) {
      return { ...base, state: 'exited', pid: null, exit: null, restarts: 0, createdAt: row.createdAt, startedAt: row.startedAt, finishedAt: row.finishedAt ?? row.startedAt };
    }
    const state = creating && digest === '' ? 'pulling' : 'created';
    return { ...base, state, pid: null, exit: null, restarts: 0, ...(row ? { createdAt: row.createdAt, startedAt: null, finishedAt: null } : {}) };
  }
  const exit = exe.lastExit ? { code: exe.lastExit.code, signal: exe.lastExit.signal, oomKilled: exe.lastExit.oomKilled } : null;
  const state: ContainerState =
    exe.state === 'starting' ? 'created' : exe.state === 'running' || exe.state === 'stopping' ? 'running' : exe.state === 'failed' ? 'failed' : 'exited';
  const ended = state === 'exited' || state === 'failed';
  const times = row ? { createdAt: row.createdAt, startedAt: row.startedAt, finishedAt: ended ? (exe.lastExit?.time ?? row.finishedAt) : null } : {};
  return { ...base, state, pid: exe.pid > 0 ? exe.pid : null, exit, restarts: exe.restarts, ...times };
}

/**
 * The pod's state: pending while being created or while every container is still starting; running while any
 * container runs (or waits to be restarted); stopped after Stop; then succeeded when every container exited 0,
 * else failed.
 */
export function podState(entry: { desiredRunning: boolean; creating: boolean }, exes: (ExecutableSnapshot | null)[]): PodState {
  if (entry.creating) return 'pending';
  // A sandbox whose containers are yet to come (or only created): ready while it should run.
  if (exes.length === 0) return entry.desiredRunning ? 'running' : 'stopped';
  const active = exes.filter((e) => e !== null && ACTIVE.has(e.state));
  if (!entry.desiredRunning && active.every((e) => e!.state === 'stopping')) return active.length ? 'running' : 'stopped';
  if (exes.some((e) => e === null)) return 'pending';
  if (active.length) return active.every((e) => STARTING.has(e!.state)) ? 'pending' : 'running';
  return exes.every((e) => e!.state === 'exited' && e!.lastExit?.code === 0) ? 'succeeded' : 'failed';
}

export class PodRuntimeImpl implements PodRuntime {
  private readonly pods = new Map<string, PodEntry>();
  private readonly store: PodStore;
  private readonly podsDir: string;
  private readonly runDir: string;
  private readonly stateRoot: string;
  private readonly clock: () => number;
  private hostAdapter: PodHost | undefined;
  private cgroupTree: Pick<CgroupTree, 'setLeafLimits'> | undefined;
  private crunPath: string | undefined;
  private lock: Promise<unknown> = Promise.resolve();
  /** Containers whose executable started and whose crun has not written its pid file yet: stop watching. */
  private readonly startWatches = new Map<string, { check(before?: boolean): void; stop(): void }>();
  /** "pod/container" → the pid of the container's init in its current run (from container_started). */
  private readonly startedPids = new Map<string, number>();
  /** Pod → its address in the pod network (the pod_addresses table). */
  private readonly addresses: Map<string, string>;
  private networkAdapter: PodNetwork | undefined;
  /** The node's pod network was set up by this process (the nftables table is ours to keep current). */
  private networkUsed = false;

  constructor(private readonly deps: PodRuntimeDeps) {
    if (!deps.store && !deps.db) throw new Error('createPodRuntime: give db or store');
    this.store = deps.store ?? sqlitePodStore(deps.db!);
    this.podsDir = path.join(deps.dir, 'pods');
    this.runDir = deps.runDir ?? PODS_RUN_DIR;
    this.stateRoot = deps.crunStateRoot ?? CRUN_STATE_ROOT;
    this.clock = deps.clock ?? Date.now;
    this.hostAdapter = deps.host;
    this.crunPath = deps.crun;
    this.networkAdapter = deps.network;
    this.addresses = this.store.addresses();
    const rows = this.store.containers();
    for (const p of this.store.pods()) {
      this.pods.set(p.spec.name, { spec: p.spec, desiredRunning: p.desiredRunning, images: p.images, createdAt: p.createdAt, phase: 'created', containers: storedContainers(p, rows.get(p.spec.name)) });
    }
    deps.observe?.events.subscribe((event) => this.onExecutableEvent(event));
  }

  private get host(): PodHost {
    if (!this.hostAdapter) {
      // The addon is loaded only when a pod is prepared: auraed on a host without it still lists pods.
      this.hostAdapter = nodePodHost(loadSyscalls());
    }
    return this.hostAdapter;
  }

  private get cgroups(): Pick<CgroupTree, 'setLeafLimits'> {
    this.cgroupTree ??= this.deps.cgroups ?? new CgroupTree({ fs: nodeCgroupFs, root: CGROUP_ROOT, log: this.deps.log });
    return this.cgroupTree;
  }

  private get crun(): string {
    this.crunPath ??= findCrun();
    return this.crunPath;
  }

  private get network(): PodNetwork {
    this.networkAdapter ??= nodePodNetwork();
    return this.networkAdapter;
  }

  private get networkConfig(): PodNetworkConfig {
    return this.deps.networkConfig ?? DEFAULT_POD_NETWORK;
  }

  paths(pod: string): PodPaths {
    return podPaths(this.podsDir, pod, this.runDir);
  }

  async run(spec: PodSpec, opts: { onProgress?: (p: PullProgress & { image: string }) => void } = {}): Promise<PodStatus> {
    const { log } = this.deps;
    const entry = this.reserve(spec);
    for (const c of spec.containers) entry.containers.set(c.name, { desired: 'running', createdAt: entry.createdAt, startedAt: null, finishedAt: null });
    const records = new Map<string, ImageRecord>();
    let stored = false;
    let allocated = false;
    try {
      for (const c of spec.containers) {
        const stored = this.deps.images.get(c.image);
        const record = stored ?? (await this.deps.images.pull(c.image, { onProgress: (p) => opts.onProgress?.({ ...p, image: c.image }) }));
        if (!stored) this.publish({ kind: 'image_pulled', cell: spec.name, pod: spec.name, container: c.name, image: c.image, digest: record.digest, bytes: record.size });
        this.deps.images.retain(record.digest, imageHolder(spec.name, c.name));
        records.set(c.name, record);
        entry.images[c.name] = record.digest;
      }
      await this.exclusive(async () => {
        this.store.insert({ spec, desiredRunning: true, images: entry.images, createdAt: entry.createdAt }, Object.fromEntries(entry.containers));
        stored = true;
        await this.deps.cells.allocate(podCellSpec(spec));
        allocated = true;
        await this.prepareSandbox(spec);
        for (const c of spec.containers) this.prepareContainer(spec, c, records.get(c.name)!);
        this.markReady(this.paths(spec.name));
        entry.phase = 'created';
        for (const c of spec.containers) await this.launchContainer(spec, c.name, records.get(c.name)!);
      });
    } catch (err) {
      log.warn('running a pod failed: undoing', { pod: spec.name, err });
      await this.undo(spec, { stored, allocated }).catch((undoErr: unknown) => log.error('undoing a failed pod run failed', { pod: spec.name, err: undoErr }));
      throw err;
    }
    log.info('pod running', { pod: spec.name, containers: spec.containers.map((c) => c.name) });
    return this.status(spec.name)!;
  }

  async createSandbox(spec: PodSpec): Promise<PodStatus> {
    const { log } = this.deps;
    if (spec.containers.length) throw new AuraeError('INVALID_ARGUMENT', `containers: a sandbox is created without containers (got ${spec.containers.length}): add them with createContainer`);
    if (spec.sandbox !== 'cell') throw new AuraeError('INTERNAL', `pod "${spec.name}": the cell runtime creates sandbox "cell" pods only`);
    const entry = this.reserve(spec);
    let stored = false;
    let allocated = false;
    try {
      await this.exclusive(async () => {
        this.store.insert({ spec, desiredRunning: true, images: entry.images, createdAt: entry.createdAt });
        stored = true;
        await this.deps.cells.allocate(podCellSpec(spec));
        allocated = true;
        await this.prepareSandbox(spec);
        this.markReady(this.paths(spec.name));
        entry.phase = 'created';
      });
    } catch (err) {
      log.warn('creating a sandbox failed: undoing', { pod: spec.name, err });
      await this.undo(spec, { stored, allocated }).catch((undoErr: unknown) => log.error('undoing a failed sandbox creation failed', { pod: spec.name, err: undoErr }));
      throw err;
    }
    log.info('sandbox created', { pod: spec.name });
    return this.status(spec.name)!;
  }

  /** Check the name and the published ports, and hold the name (a second Run of it fails while the first pulls). */
  private reserve(spec: PodSpec): PodEntry {
    if (this.pods.has(spec.name)) throw new AuraeError('ALREADY_EXISTS', `pod "${spec.name}" already exists: remove it first (aer pod rm ${spec.name}) or choose another name`);
    const conflict = publishConflict(
      { name: spec.name, publish: effectivePublish(spec) },
      [...this.pods.values()].map((e) => ({ name: e.spec.name, publish: effectivePublish(e.spec) })),
      this.deps.reservedNodePorts ?? [],
    );
    if (conflict) throw new AuraeError('FAILED_PRECONDITION', `pod "${spec.name}": publish: ${conflict}`);
    const entry: PodEntry = { spec, desiredRunning: true, images: {}, createdAt: this.clock(), phase: 'creating', containers: new Map() };
    this.pods.set(spec.name, entry);
    return entry;
  }

  async createContainer(pod: string, c: ContainerSpec): Promise<ContainerStatus> {
    return this.exclusive(async () => {
      const entry = this.requireReadyPod(pod, 'add containers to it');
      if (!entry.desiredRunning) throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}" is stopped: containers cannot be added to a stopped pod: create a new one`);
      if (entry.spec.containers.some((x) => x.name === c.name)) {
        throw new AuraeError('ALREADY_EXISTS', `pod "${pod}": container "${c.name}" already exists: remove it first or choose another name`);
      }
      if (entry.spec.containers.length >= SANDBOX_CONTAINERS_MAX) {
        throw new AuraeError('RESOURCE_EXHAUSTED', `pod "${pod}" has ${entry.spec.containers.length} containers, the most a pod may have: remove exited ones first`);
      }
      const record = this.deps.images.get(c.image);
      if (!record) throw new AuraeError('NOT_FOUND', `pod "${pod}": container "${c.name}": image ${c.image} is not stored on this node: pull it first`);
      const holder = imageHolder(pod, c.name);
      this.deps.images.retain(record.digest, holder);
      const spec: PodSpec = { ...entry.spec, containers: [...entry.spec.containers, c] };
      const images = { ...entry.images, [c.name]: record.digest };
      const row: StoredContainer = { desired: 'created', createdAt: this.clock(), startedAt: null, finishedAt: null };
      try {
        this.prepareContainer(spec, c, record);
        this.store.putContainer(pod, c.name, row, { spec, images });
      } catch (err) {
        this.deps.log.warn('creating a container failed: undoing', { pod, container: c.name, err });
        try {
          this.removeContainerFiles(pod, c.name);
        } catch (undoErr) {
          this.deps.log.error('undoing a failed container creation failed', { pod, container: c.name, err: undoErr });
        }
        this.deps.images.release(holder);
        throw err;
      }
      entry.spec = spec;
      entry.images = images;
      entry.containers.set(c.name, row);
      this.deps.log.info('container created', { pod, container: c.name, image: c.image });
      return this.containerStatusOf(pod, c.name);
    });
  }

  async startContainer(pod: string, container: string): Promise<ContainerStatus> {
    return this.exclusive(async () => {
      const entry = this.requireReadyPod(pod, 'start its containers');
      const { row } = this.requireContainer(entry, container);
      if (!entry.desiredRunning) throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}" is stopped: its containers cannot be started: create a new pod`);
      if (row.desired !== 'created') {
        const state = this.containerStatusOf(pod, container).state;
        throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}": container "${container}" was started before (it is ${state}): only a created container can be started: create a new one`);
      }
      const record = this.storedImage(entry, container);
      this.setContainer(entry, container, { ...row, desired: 'running' });
      try {
        await this.launchContainer(entry.spec, container, record);
      } catch (err) {
        // Not handed to the cell at all (no executable): still only created. Otherwise its executable says why it failed.
        if (this.exeState(pod, container) === null) this.setContainer(entry, container, row);
        throw err;
      }
      this.deps.log.info('container started', { pod, container });
      return this.containerStatusOf(pod, container);
    });
  }

  async stopContainer(pod: string, container: string, graceMs: number): Promise<ContainerStatus> {
    const entry = this.requireReadyPod(pod, 'stop its containers');
    const { row } = this.requireContainer(entry, container);
    if (row.desired === 'running') this.setContainer(entry, container, { ...row, desired: 'stopped' });
    // Not under the lock: the grace period may be long. Concurrent stops share one (the runner's).
    await this.deps.cells.stop(pod, container, graceMs).catch((err: unknown) => {
      // Created and never started: nothing to stop.
      if (!(err instanceof AuraeError && err.code === 'NOT_FOUND')) throw err;
    });
    this.deps.log.info('container stopped', { pod, container, graceMs });
    return this.containerStatusOf(pod, container);
  }

  async removeContainer(pod: string, container: string, opts: { force: boolean }): Promise<void> {
    return this.exclusive(async () => {
      const entry = this.requireReadyPod(pod, 'remove its containers');
      const { row } = this.requireContainer(entry, container);
      const state = this.exeState(pod, container);
      if (!opts.force && ACTIVE.has(state ?? '')) {
        throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}": container "${container}" is ${state}: stop it first, or remove it with force`);
      }
      if (row.desired === 'running') this.setContainer(entry, container, { ...row, desired: 'stopped' });
      const ignoreMissing = (err: unknown) => {
        if (!(err instanceof AuraeError && err.code === 'NOT_FOUND')) throw err;
      };
      await this.deps.cells.stop(pod, container, 0).catch(ignoreMissing);
      await this.deps.cells.removeExecutable(pod, container).catch(ignoreMissing);
      let crun: string | null = null;
      try {
        crun = this.crun;
      } catch {
        crun = null; // no crun on this node: nothing of it to delete
      }
      if (crun) await this.host.crunDelete(crun, this.stateRoot, containerId(pod, container));
      this.removeContainerFiles(pod, container);
      const spec: PodSpec = { ...entry.spec, containers: entry.spec.containers.filter((c) => c.name !== container) };
      const images = { ...entry.images };
      delete images[container];
      this.store.deleteContainer(pod, container, { spec, images });
      entry.spec = spec;
      entry.images = images;
      entry.containers.delete(container);
      this.deps.images.release(imageHolder(pod, container));
      this.deps.log.info('container removed', { pod, container, force: opts.force });
    });
  }

  async updateContainerResources(pod: string, container: string, update: ContainerResources): Promise<ContainerStatus> {
    return this.exclusive(async () => {
      const entry = this.requireReadyPod(pod, 'update its containers');
      const { spec: c, row } = this.requireContainer(entry, container);
      const resources = validateResources('resources', { ...(c.resources ?? {}), ...update });
      const what = `pod "${pod}": container "${container}"`;
      const cp = this.paths(pod).container(container);
      // The start script's file first (a start racing with this applies the new values), then the running
      // container's cgroup (a refused value puts the file back and changes nothing stored), then the spec.
      this.writeCgroupLimits(cp.bundle, resources);
      const live = ACTIVE.has(this.exeState(pod, container) ?? '');
      if (live) {
        try {
          this.cgroups.setLeafLimits(pod, container, cgroupLimitsOf(update, resources), ['memory.swap.max']);
        } catch (err) {
          // Between the state read and the write the container ended: its next start applies the stored values.
          if (!(err instanceof AuraeError && err.code === 'NOT_FOUND')) {
            this.writeCgroupLimits(cp.bundle, c.resources);
            throw err;
          }
        }
        const pid = update.oomScoreAdj === undefined ? null : this.containerPid(pod, container);
        if (pid !== null) {
          try {
            (this.deps.setOomScoreAdj ?? writeOomScoreAdj)(pid, update.oomScoreAdj!);
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'ENOENT' && code !== 'ESRCH') throw new AuraeError('INTERNAL', `${what}: writing oom_score_adj ${update.oomScoreAdj} of its process ${pid} failed: ${(err as Error).message}`);
          }
        }
      }
      const spec: PodSpec = { ...entry.spec, containers: entry.spec.containers.map((x) => (x.name === container ? { ...x, resources } : x)) };
      this.store.putContainer(pod, container, row, { spec, images: entry.images });
      entry.spec = spec;
      if (update.oomScoreAdj !== undefined) patchBundleOomScoreAdj(cp.config, resources.oomScoreAdj!, what);
      this.deps.log.info('container resources updated', { pod, container, resources, live });
      return this.containerStatusOf(pod, container);
    });
  }

  /** The container's limits as its start script reads them (<bundle>/cgroup-limits), written atomically. */
  private writeCgroupLimits(bundle: string, resources: ContainerResources | undefined): void {
    const file = path.join(bundle, CGROUP_LIMITS_FILE);
    const text = cgroupLimitsText(containerCgroupLimits(resources));
    if (text === '' && !fs.existsSync(file)) return;
    fs.mkdirSync(bundle, { recursive: true, mode: 0o700 });
    fs.writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
  }

  /** A container's pid file watch, pid file, mounts and directory (idempotent). */
  private removeContainerFiles(pod: string, container: string): void {
    const key = `${pod}/${container}`;
    this.unwatchStart(key);
    this.startedPids.delete(key);
    fs.rmSync(this.paths(pod).pidFile(container), { force: true });
    const dir = this.paths(pod).container(container).dir;
    this.unmountUnder([dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  }

  private requireReadyPod(name: string, what: string): PodEntry {
    const entry = this.requirePod(name);
    if (entry.phase === 'creating') throw new AuraeError('FAILED_PRECONDITION', `pod "${name}" is still being created: wait for it to be ready, then ${what}`);
    return entry;
  }

  private requireContainer(entry: PodEntry, container: string): { spec: ContainerSpec; row: StoredContainer } {
    const spec = entry.spec.containers.find((c) => c.name === container);
    if (!spec) {
      const names = entry.spec.containers.map((c) => c.name);
      throw new AuraeError('NOT_FOUND', `pod "${entry.spec.name}" has no container "${container}" (${names.length ? `it has ${names.join(', ')}` : 'it has none'}): create it first`);
    }
    return { spec, row: this.containerRow(entry, container) };
  }

  private containerRow(entry: PodEntry, container: string): StoredContainer {
    return entry.containers.get(container) ?? defaultContainerRow(entry);
  }

  /** Change a container's row, here and in the store. */
  private setContainer(entry: PodEntry, container: string, row: StoredContainer): void {
    this.store.putContainer(entry.spec.name, container, row);
    entry.containers.set(container, row);
  }

  /** The image a container was created from, still stored (FAILED_PRECONDITION when it was deleted since). */
  private storedImage(entry: { spec: PodSpec; images: Record<string, string> }, container: string): ImageRecord {
    const digest = entry.images[container] ?? '';
    const r = digest === '' ? undefined : this.deps.images.get(digest);
    if (!r) throw new AuraeError('FAILED_PRECONDITION', `pod "${entry.spec.name}": container "${container}": its image ${digest || '(unknown)'} is no longer stored: remove the container and create it again`);
    return r;
  }

  private containerStatusOf(pod: string, container: string): ContainerStatus {
    const status = this.status(pod)!.containers.find((c) => c.name === container);
    if (!status) throw new AuraeError('NOT_FOUND', `pod "${pod}" has no container "${container}"`);
    return status;
  }

  /** The sandbox: pinned namespaces, the network, the node's port rules (idempotent). */
  private async prepareSandbox(spec: PodSpec): Promise<void> {
    await this.pinNamespaces(spec, this.paths(spec.name));
    await this.connectNetwork(spec);
    await this.syncPorts();
  }

  /** A container's root filesystem and bundle; container_created (its start waits for the pod's ready marker). */
  private prepareContainer(spec: PodSpec, c: ContainerSpec, record: ImageRecord): void {
    this.mountRootfs(spec.name, c.name, record);
    this.writeBundle(spec, c, record);
    this.publish({ kind: 'container_created', cell: spec.name, pod: spec.name, container: c.name, image: c.image, digest: record.digest });
  }

  private async pinNamespaces(spec: PodSpec, paths: PodPaths): Promise<void> {
    const mounts = this.host.mounts();
    if (Object.values(paths.ns).every((f) => mounts.get(f) === 'nsfs')) return;
    for (const f of Object.values(paths.ns)) if (mounts.has(f)) this.host.unmount(f);
    await this.host.pinNamespaces(paths.ns, podHostname(spec));
  }

  /**
   * The pod's address (the stored one when still valid), the node's bridge, the pod's veth, and the files its
   * containers get as /etc/hosts, /etc/resolv.conf and /etc/hostname (idempotent).
   */
  private async connectNetwork(spec: PodSpec): Promise<void> {
    if ((spec.sandbox as string) !== 'cell') return;
    const config = this.networkConfig;
    const held = this.addresses.get(spec.name) ?? null;
    const taken = [...this.addresses].filter(([pod]) => pod !== spec.name).map(([, a]) => a);
    const address = allocatePodAddress(parseCidr(config.cidr), taken, held);
    if (address !== held) {
      this.store.setAddress(spec.name, address);
      this.addresses.set(spec.name, address);
      if (held !== null) this.deps.log.warn("a pod's address changed: its old one is outside pods.network.cidr or taken", { pod: spec.name, from: held, to: address });
    }
    this.networkUsed = true;
    await this.network.ensureNode(config);
    await this.network.connectPod(config, { pod: spec.name, address, netns: this.paths(spec.name).ns.net });
    const files = this.networkFiles(spec.name);
    fs.mkdirSync(path.dirname(files.hosts), { recursive: true, mode: 0o755 });
    const nodeResolv = resolvConf(this.network.nodeResolvConf(), config.nameservers);
    const resolv = spec.dns ? podResolvConf(spec.dns, nodeResolv) : nodeResolv;
    if (resolv.source === 'default') this.deps.log.info("the node has no usable name server: pods get the default ones in /etc/resolv.conf", { pod: spec.name, resolvConf: resolv.text });
    const hostname = podHostname(spec);
    for (const [file, text] of [[files.hosts, hostsFile(hostname, address)], [files.resolvConf, resolv.text], [files.hostname, hostnameFile(hostname)]] as const) {
      fs.writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
      fs.renameSync(`${file}.tmp`, file);
    }
  }

  /** Where the pod's /etc/hosts, /etc/resolv.conf and /etc/hostname are kept (per boot, beside its namespaces). */
  private networkFiles(pod: string): { hosts: string; resolvConf: string; hostname: string } {
    const dir = path.join(this.paths(pod).runDir, 'etc');
    return { hosts: path.join(dir, 'hosts'), resolvConf: path.join(dir, 'resolv.conf'), hostname: path.join(dir, 'hostname') };
  }

  /** Delete the pod's veth (its address stays held until the pod is removed). */
  private async disconnectNetwork(pod: string): Promise<void> {
    if (!this.addresses.has(pod)) return;
    await this.network.disconnectPod(pod);
  }

  /** The nftables table for the pods that should run and have an address: masquerade, published ports. */
  private async syncPorts(): Promise<void> {
    if (!this.networkUsed) return;
    const pods: NetworkedPod[] = [];
    for (const e of this.pods.values()) {
      const address = this.addresses.get(e.spec.name);
      if (e.desiredRunning && address !== undefined) pods.push({ name: e.spec.name, address, publish: effectivePublish(e.spec) });
    }
    await this.network.applyRuleset(this.networkConfig, pods);
  }

  private mountRootfs(pod: string, container: string, record: ImageRecord): void {
    const c = this.paths(pod).container(container);
    if (this.host.mounts().get(c.rootfs) === 'overlay') return;
    for (const d of [c.dir, c.upper, c.work, c.rootfs]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    // The container's / takes the upper directory's mode: 0755 as an image's root, or a non-root user without
    // CAP_DAC_OVERRIDE (Kubernetes' "restricted" profile) could not look up any path. (An older pod's is 0700.)
    fs.chmodSync(c.upper, 0o755);
    this.host.mountOverlay(overlayMountPlan(this.deps.images.lowerDirs(record), c.upper, c.work, c.rootfs));
  }

  private writeBundle(spec: PodSpec, c: ContainerSpec, record: ImageRecord): void {
    const cp = this.paths(spec.name).container(c.name);
    const process = containerProcess(record.config, spec, c);
    const what = `pod "${spec.name}": container "${c.name}"`;
    const files = { passwd: readImageFile(cp.rootfs, 'passwd'), group: readImageFile(cp.rootfs, 'group') };
    const user = containerUser(process.user, c.security, files, what);
    const input: OciSpecInput = containerSpecInput({
      process,
      user,
      paths: cp,
      pod: this.paths(spec.name),
      readOnlyRootfs: c.readOnlyRootfs,
      cgroupsPath: leafDir(cellTreeDir('/'), spec.name, c.name),
      container: c,
    });
    // As containerd does, a bind mount's missing host directory is made (the kubelet makes its volumes itself).
    for (const m of c.mounts ?? []) {
      if (fs.existsSync(m.hostPath)) continue;
      // In a VM sandbox, a path of the parent's volumes share: missing means the share is (no directory made here).
      if (m.hostPath.startsWith(`${POD_VOLUMES_DIR}/`)) {
        throw new AuraeError('FAILED_PRECONDITION', `${what}: mount ${m.containerPath}: ${m.hostPath} is not in this VM: its parent shares no volumes with it (a VM booted by an older auraed): recreate the sandbox`);
      }
      fs.mkdirSync(m.hostPath, { recursive: true, mode: 0o755 });
    }
    if (this.addresses.has(spec.name) && c.security?.namespaces?.network !== 'node') {
      const files = this.networkFiles(spec.name);
      const bind = (destination: string, source: string) => ({ destination, type: 'bind', source, options: ['rbind', 'rprivate'] });
      // First: the container's own mounts of the same paths (the kubelet's /etc/hosts) replace these.
      input.mounts = [bind('/etc/hosts', files.hosts), bind('/etc/resolv.conf', files.resolvConf), bind('/etc/hostname', files.hostname), ...(input.mounts ?? [])];
    }
    const tmp = `${cp.config}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(ociSpec(input), null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, cp.config);
  }

  private markReady(paths: PodPaths): void {
    fs.mkdirSync(paths.runDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(paths.ready, '');
  }

  /** Hand the container to the pod's cell: its executable runs the start script (crun run once the pod is ready). */
  private async launchContainer(spec: PodSpec, container: string, record: ImageRecord): Promise<void> {
    const paths = this.paths(spec.name);
    let stopSignal = stopSignalOf(record.config.stopSignal);
    if (stopSignal === null) {
      this.deps.log.warn("the image's StopSignal is not a signal of this node: stopping with SIGTERM", { pod: spec.name, container, stopSignal: record.config.stopSignal });
      stopSignal = 'SIGTERM';
    }
    fs.rmSync(paths.pidFile(container), { force: true }); // "running" only once this run's crun wrote it
    const c = spec.containers.find((x) => x.name === container);
    // The limits go in a file the start script reads (not its arguments): an update reaches every later start.
    this.writeCgroupLimits(paths.container(container).bundle, c?.resources);
    // A terminal or a kept stdin (the CRI's tty/stdin): the CRI listens on / holds these (supervisor/cri/container-stdio.ts).
    const stdio = { ...(c?.tty ? { consoleSocket: paths.consoleSocket(container) } : {}), ...(c?.stdin && !c.tty ? { stdinFifo: paths.stdinFifo(container) } : {}) };
    await this.deps.cells.start(
      spec.name,
      crunExecutable({ crun: this.crun, stateRoot: this.stateRoot, pod: spec, container, paths: paths.container(container), ready: paths.ready, pidFile: paths.pidFile(container), stopSignal, ...stdio }),
    );
  }

  private publish(event: Parameters<EventBus['publish']>[0]): void {
    this.deps.observe?.events.publish(event);
  }

  /**
   * The pid crun wrote for this run of the container, or null: no file yet (crun has not started it), or a
   * stale one whose process is gone (an auraed restart killed the old run before the start script replaced it).
   */
  private containerPid(pod: string, container: string): number | null {
    const pid = this.pidFileValue(pod, container);
    if (pid === null) return null;
    try {
      process.kill(pid, 0);
      return pid;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
    }
  }

  /** What crun wrote in the pid file (null: none yet, or still empty). */
  private pidFileValue(pod: string, container: string): number | null {
    let text: string;
    try {
      text = fs.readFileSync(this.paths(pod).pidFile(container), 'utf8').trim();
    } catch {
      return null;
    }
    const pid = Number(text);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  }

  /** The containers' executables' events, as pod events; a started executable is watched until crun runs it. */
  private onExecutableEvent(event: StampedEvent): void {
    if (!('executable' in event)) return;
    const entry = this.pods.get(event.cell);
    if (!entry || !entry.spec.containers.some((c) => c.name === event.executable)) return;
    const pod = event.cell;
    const container = event.executable;
    const key = `${pod}/${container}`;
    switch (event.kind) {
      case 'executable_started':
        this.watchStart(pod, container);
        return;
      case 'executable_exited': {
        // A short-lived container may end before inotify told us of its pid file: it did start.
        if (this.startWatches.has(key)) this.startWatches.get(key)!.check();
        this.unwatchStart(key);
        const pid = this.startedPids.get(key) ?? 0;
        this.startedPids.delete(key);
        let lastExit: RecordedExit | null = null;
        try {
          lastExit = this.deps.cells.get(pod).executables.find((e) => e.spec.name === container)?.lastExit ?? null;
        } catch {
          lastExit = null; // the cell is being freed
        }
        const oomKilled = lastExit?.oomKilled ?? false;
        this.recordTimes(pod, container, { finishedAt: lastExit?.time ?? this.clock() });
        fs.rmSync(this.paths(pod).pidFile(container), { force: true });
        this.publish({ kind: 'container_exited', cell: pod, pod, container, pid, code: event.code, signal: event.signal, oomKilled });
        return;
      }
      case 'executable_oom_killed':
        this.publish({ kind: 'container_oom_killed', cell: pod, pod, container, count: event.count });
        return;
      default:
        return;
    }
  }

  /**
   * Wait (inotify on the pod's run directory, no polling) for crun's pid file: then the container runs and
   * container_started is published. Ends at the executable's exit or the pod's removal.
   */
  private watchStart(pod: string, container: string): void {
    const key = `${pod}/${container}`;
    this.unwatchStart(key);
    const file = this.paths(pod).pidFile(container);
    const name = path.basename(file);
    let watcher: fs.FSWatcher;
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      watcher = fs.watch(path.dirname(file), { persistent: false }, (_type, changed) => {
        if (changed === null || changed === name) check(false);
      });
    } catch (err) {
      this.deps.log.warn("watching for a container's start failed: no container_started event for this run", { pod, container, err });
      return;
    }
    // A file written while watching is this run's, even when the container already ended (no liveness check);
    // one there before (an auraed restart cut the previous run short) counts only while its process lives.
    const check = (before = false) => {
      if (this.startWatches.get(key) !== handle) return;
      const pid = before ? this.containerPid(pod, container) : this.pidFileValue(pod, container);
      if (pid === null) return;
      this.unwatchStart(key);
      this.startedPids.set(key, pid);
      // crun writes the pid file as the container starts: its mtime is the start, even when seen late.
      let startedAt: number;
      try {
        startedAt = Math.floor(fs.statSync(file).mtimeMs);
      } catch {
        startedAt = this.clock(); // already gone: the container ended at once
      }
      this.recordTimes(pod, container, { startedAt, finishedAt: null });
      this.publish({ kind: 'container_started', cell: pod, pod, container, pid });
    };
    const handle = { check, stop: () => watcher.close() };
    watcher.on('error', () => this.unwatchStart(key));
    this.startWatches.set(key, handle);
    check(true);
  }

  /** Keep a container's start or end time (its row; a failed write is logged: the container is not affected). */
  private recordTimes(pod: string, container: string, times: Partial<Pick<StoredContainer, 'startedAt' | 'finishedAt'>>): void {
    const entry = this.pods.get(pod);
    if (!entry || !entry.spec.containers.some((c) => c.name === container)) return;
    try {
      this.setContainer(entry, container, { ...this.containerRow(entry, container), ...times });
    } catch (err) {
      this.deps.log.warn("recording a container's start or end time failed", { pod, container, err });
    }
  }

  private unwatchStart(key: string): void {
    const handle = this.startWatches.get(key);
    this.startWatches.delete(key);
    handle?.stop();
  }

  /** Undo a run that failed part way: the cell (its processes), the files, the images, the row. */
  private async undo(spec: PodSpec, done: { stored: boolean; allocated: boolean }): Promise<void> {
    try {
      if (done.allocated) {
        await this.deps.cells.free(spec.name, true);
        await this.teardown(spec);
      }
      if (done.stored) {
        this.store.delete(spec.name);
        this.addresses.delete(spec.name);
      }
    } finally {
      for (const c of spec.containers) this.deps.images.release(imageHolder(spec.name, c.name));
      this.pods.delete(spec.name);
    }
    await this.exclusive(() => this.syncPorts());
  }

  /** Remove the pod's files: crun state, root filesystem mounts, pinned namespaces, directories. */
  private async teardown(spec: PodSpec): Promise<void> {
    const paths = this.paths(spec.name);
    for (const c of spec.containers) {
      this.unwatchStart(`${spec.name}/${c.name}`);
      this.startedPids.delete(`${spec.name}/${c.name}`);
    }
    let crun: string | null = null;
    try {
      crun = this.crun;
    } catch {
      crun = null; // no crun on this node: nothing of it to delete
    }
    if (crun) for (const c of spec.containers) await this.host.crunDelete(crun, this.stateRoot, containerId(spec.name, c.name));
    await this.disconnectNetwork(spec.name);
    this.unmountUnder([paths.dir, paths.runDir]);
    fs.rmSync(paths.dir, { recursive: true, force: true });
    fs.rmSync(paths.runDir, { recursive: true, force: true });
  }

  /** Unmount everything mounted below these directories (deepest first); throws if anything stays mounted. */
  private unmountUnder(dirs: string[]): void {
    const below = (m: string) => dirs.some((d) => m.startsWith(`${d}/`));
    const targets = [...this.host.mounts().keys()].filter(below).sort().reverse();
    for (const t of targets) this.host.unmount(t);
    const left = [...this.host.mounts().keys()].filter(below);
    if (left.length) throw new AuraeError('INTERNAL', `unmounting ${left.join(', ')} failed: they are still mounted: is a process still using them?`);
  }

  list(): PodStatus[] {
    return [...this.pods.keys()].sort().map((name) => this.status(name)!);
  }

  get(name: string): PodStatus | undefined {
    return this.status(name);
  }

  execTarget(pod: string, container: string): ExecTarget {
    const paths = this.paths(pod);
    const c = paths.container(container);
    return { pod, container, containerId: containerId(pod, container), crun: this.crun, stateRoot: this.stateRoot, config: c.config, rootfs: c.rootfs, runDir: paths.runDir };
  }

  private status(name: string): PodStatus | undefined {
    const entry = this.pods.get(name);
    if (!entry) return undefined;
    let view: CellView | null = null;
    try {
      view = this.deps.cells.get(name);
    } catch {
      view = null; // the cell is missing (being created, or cells are unavailable on this node)
    }
    // An executable runs as soon as its start script does; its container runs once crun wrote the pid file.
    const exes = entry.spec.containers.map((c) => {
      const exe = view?.executables.find((e) => e.spec.name === c.name) ?? null;
      return exe?.state === 'running' && this.containerPid(name, c.name) === null ? { ...exe, state: 'starting' as const } : exe;
    });
    const creating = entry.phase === 'creating';
    const rows = entry.spec.containers.map((c) => this.containerRow(entry, c.name));
    // Containers created and never started do not make the pod pending: they wait for a startContainer.
    const counted = exes.filter((e, i) => e !== null || rows[i]!.desired !== 'created');
    return {
      name,
      sandbox: 'cell',
      state: podState({ desiredRunning: entry.desiredRunning, creating }, counted),
      containers: entry.spec.containers.map((c, i) => containerStatus(c, entry.images[c.name] ?? '', exes[i] ?? null, creating, rows[i])),
      createdAt: entry.createdAt,
      spec: entry.spec,
      ip: this.addresses.get(name) ?? null,
    };
  }

  async stop(name: string, graceMs: number): Promise<PodStatus> {
    const entry = this.requirePod(name);
    if (entry.phase === 'creating') throw new AuraeError('FAILED_PRECONDITION', `pod "${name}" is still being created: wait for its Run to finish, then stop it`);
    this.store.setDesired(name, false);
    entry.desiredRunning = false;
    await Promise.all(
      entry.spec.containers.map((c) =>
        this.deps.cells.stop(name, c.name, graceMs).catch((err: unknown) => {
          // A container never handed to the cell (a run cut short) has nothing to stop.
          if (!(err instanceof AuraeError && err.code === 'NOT_FOUND')) throw err;
        }),
      ),
    );
    await this.exclusive(async () => {
      await this.disconnectNetwork(name);
      await this.syncPorts();
    });
    this.deps.log.info('pod stopped', { pod: name, graceMs });
    return this.status(name)!;
  }

  async remove(name: string, opts: { force: boolean }): Promise<void> {
    return this.exclusive(async () => {
      const entry = this.requirePod(name);
      if (entry.phase === 'creating') throw new AuraeError('FAILED_PRECONDITION', `pod "${name}" is still being created: wait for its Run to finish, then remove it`);
      const running = entry.spec.containers.filter((c) => ACTIVE.has(this.exeState(name, c.name) ?? ''));
      if (!opts.force && running.length) {
        throw new AuraeError('FAILED_PRECONDITION', `pod "${name}" has running containers (${running.map((c) => c.name).join(', ')}): stop it first (aer pod stop ${name}), or remove with force`);
      }
      try {
        await this.deps.cells.free(name, true);
      } catch (err) {
        if (!(err instanceof AuraeError && err.code === 'NOT_FOUND')) throw err;
      }
      await this.teardown(entry.spec);
      for (const c of entry.spec.containers) this.deps.images.release(imageHolder(name, c.name));
      this.store.delete(name);
      this.pods.delete(name);
      this.addresses.delete(name);
      await this.syncPorts();
      this.deps.log.info('pod removed', { pod: name, force: opts.force });
    });
  }

  private exeState(pod: string, container: string): string | null {
    try {
      return this.deps.cells.get(pod).executables.find((e) => e.spec.name === container)?.state ?? null;
    } catch {
      return null;
    }
  }

  async reconcile(): Promise<void> {
    return this.exclusive(async () => {
      const { log } = this.deps;
      const stored = this.store.pods();
      const cells = new Set<string>();
      const executables = new Map<string, Set<string>>();
      for (const p of stored) {
        try {
          const view = this.deps.cells.get(p.spec.name);
          cells.add(p.spec.name);
          executables.set(p.spec.name, new Set(view.executables.map((e) => e.spec.name)));
        } catch {
          // missing: the plan recreates it
        }
      }
      const podDirs = fs.existsSync(this.podsDir) ? fs.readdirSync(this.podsDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name) : [];
      const ready = new Set(stored.filter((p) => fs.existsSync(this.paths(p.spec.name).ready)).map((p) => p.spec.name));
      const rows = this.store.containers();
      const pods = stored.map((p) => ({ ...p, containers: new Map([...storedContainers(p, rows.get(p.spec.name))].map(([c, row]) => [c, row.desired])) }));
      const plan = podReconcilePlan({ pods, cells, executables, mounts: stored.length || podDirs.length ? this.host.mounts() : new Map(), ready, podDirs, paths: (pod) => this.paths(pod) });
      const failed = new Set<string>();
      for (const action of plan) {
        if (failed.has(action.pod)) continue;
        try {
          await this.apply(action, stored);
        } catch (err) {
          // One pod's trouble must not keep the others down; its containers wait for a ready marker that never comes.
          failed.add(action.pod);
          log.error('pods reconcile: an action failed', { action: action.kind, pod: action.pod, err });
        }
      }
      await this.syncPorts().catch((err: unknown) => log.error('pods reconcile: loading the nftables ruleset failed', { err }));
      if (plan.length) log.info('pods reconciled', { actions: plan.map((a) => a.kind), pods: stored.length, failed: [...failed] });
    });
  }

  private async apply(action: PodReconcileAction, stored: { spec: PodSpec; images: Record<string, string> }[]): Promise<void> {
    const pod = stored.find((p) => p.spec.name === action.pod);
    const record = (container: string): ImageRecord => this.storedImage(pod!, container);
    switch (action.kind) {
      case 'remove_stray':
        this.deps.log.info('removing the files of a pod that is not stored', { pod: action.pod });
        for (const t of action.unmount) this.host.unmount(t);
        fs.rmSync(this.paths(action.pod).dir, { recursive: true, force: true });
        fs.rmSync(this.paths(action.pod).runDir, { recursive: true, force: true });
        return;
      case 'create_cell':
        await this.deps.cells.allocate(podCellSpec(pod!.spec));
        return;
      case 'pin_namespaces':
        await this.pinNamespaces(pod!.spec, this.paths(action.pod));
        return;
      case 'connect_network':
        await this.connectNetwork(pod!.spec);
        return;
      case 'mount_rootfs':
        this.mountRootfs(action.pod, action.container, record(action.container));
        return;
      case 'write_bundle':
        this.writeBundle(pod!.spec, pod!.spec.containers.find((c) => c.name === action.container)!, record(action.container));
        return;
      case 'mark_ready':
        this.markReady(this.paths(action.pod));
        return;
      case 'start_container':
        await this.launchContainer(pod!.spec, action.container, record(action.container));
        return;
    }
  }

  private requirePod(name: string): PodEntry {
    const entry = this.pods.get(name);
    if (!entry) throw new AuraeError('NOT_FOUND', `pod "${name}" does not exist: run it first (see List for the pods there are)`);
    return entry;
  }

  /** Run `fn` after every earlier mutation finished (a promise-chain lock). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => undefined);
    return next;
  }
}

/**
 * Read a small file of the image's /etc (passwd, group) without following a symbolic link out of the root
 * filesystem: /etc and the file must be a real directory and a regular file. null when absent.
 */
export function readImageFile(rootfs: string, name: string): string | null {
  const etc = path.join(rootfs, 'etc');
  const file = path.join(etc, name);
  try {
    if (!fs.lstatSync(etc).isDirectory()) return null;
    const st = fs.lstatSync(file);
    if (!st.isFile() || st.size > 4 * 1024 * 1024) return null;
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/**
 * The cgroup writes of an update: the fields it gives, with what they need of the merged values (a new period
 * keeps the stored quota; memory.swap.max follows memory.max when a swap limit is stored).
 */
export function cgroupLimitsOf(update: ContainerResources, merged: ContainerResources): CgroupLimits {
  const limits: CgroupLimits = {};
  const cpu: NonNullable<CgroupLimits['cpu']> = {};
  if (update.cpuShares !== undefined) cpu.weight = Number(containerCgroupLimits({ cpuShares: merged.cpuShares! })[0]![1]);
  if (update.cpuQuota !== undefined || update.cpuPeriod !== undefined) {
    if (merged.cpuQuota !== undefined) cpu.max = merged.cpuQuota;
    cpu.period = merged.cpuPeriod ?? 100_000;
  }
  if (Object.keys(cpu).length) limits.cpu = cpu;
  if (update.memoryLimit !== undefined || update.memorySwapLimit !== undefined) {
    limits.memory = { max: merged.memoryLimit! };
    if (merged.memorySwapLimit !== undefined) limits.memory.swapMax = Math.max(0, merged.memorySwapLimit - merged.memoryLimit!);
  }
  return limits;
}

function writeOomScoreAdj(pid: number, value: number): void {
  fs.writeFileSync(`/proc/${pid}/oom_score_adj`, String(value));
}

/** Set process.oomScoreAdj in a written bundle: a later start of the container runs with it. */
function patchBundleOomScoreAdj(config: string, value: number, what: string): void {
  let spec: { process?: { oomScoreAdj?: number } };
  try {
    spec = JSON.parse(fs.readFileSync(config, 'utf8')) as typeof spec;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // written from the spec when it is needed
    throw new AuraeError('INTERNAL', `${what}: reading its bundle ${config} failed: ${(err as Error).message}`);
  }
  if (!spec.process) return;
  spec.process.oomScoreAdj = value;
  fs.writeFileSync(`${config}.tmp`, `${JSON.stringify(spec, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(`${config}.tmp`, config);
}

/** The pod's host name: its own, else its name. */
export function podHostname(spec: Pick<PodSpec, 'name' | 'hostname'>): string {
  return spec.hostname ?? spec.name;
}

/** A container without a row (stored before pod_containers, or a cut-short write) has the pod's desired state. */
function defaultContainerRow(p: { desiredRunning: boolean; createdAt: number }): StoredContainer {
  return { desired: p.desiredRunning ? 'running' : 'stopped', createdAt: p.createdAt, startedAt: null, finishedAt: null };
}

/** Every container of a stored pod with its row (or the default one). */
function storedContainers(p: { spec: PodSpec; desiredRunning: boolean; createdAt: number }, rows: Map<string, StoredContainer> | undefined): Map<string, StoredContainer> {
  return new Map(p.spec.containers.map((c) => [c.name, rows?.get(c.name) ?? defaultContainerRow(p)]));
}

export function createPodRuntime(deps: PodRuntimeDeps): PodRuntime {
  return new PodRuntimeImpl(deps);
}
