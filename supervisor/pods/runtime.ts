// The pod runtime: the core behind PodService. A pod is a cell (its limits; logs, metrics, events and `aer top` as
// for any cell); each container is an executable of that cell running `crun run` (crun.ts), so restart policy,
// stop with grace then kill, exit codes, OOM and logs come from the executables' machinery. This module pulls the
// images, prepares the sandbox (pinned namespaces, overlay root filesystems, bundles), keeps the desired state in
// the pods table, and reports PodStatus from the cell's executables.
import fs from 'node:fs';
import path from 'node:path';
import type { CellSpec, CellView } from '../cells';
import { cellTreeDir, leafDir } from '../cgroup';
import { AuraeError } from '../errors';
import type { ExecutableSnapshot, ExecutableSpec, RecordedExit } from '../executables';
import type { ImageRecord, Images, PullProgress } from '../images';
import { overlayMountPlan } from '../images';
import type { Logger } from '../log';
import type { Db } from '../store';
import { loadSyscalls } from '../../native';
import { containerProcess, resolveUser } from './container-config';
import { containerId, containerSpecInput, CRUN_STATE_ROOT, crunExecutable, findCrun, PODS_RUN_DIR, type PodPaths, podPaths } from './crun';
import { nodePodHost, type PodHost } from './host';
import { ociSpec } from './oci-spec';
import { type PodReconcileAction, podReconcilePlan } from './reconcile';
import type { ContainerSpec, PodSpec } from './spec';
import { type PodStore, sqlitePodStore } from './store';

export type ContainerState = 'pulling' | 'created' | 'running' | 'exited' | 'failed';

export interface ContainerStatus {
  name: string;
  image: string;
  imageDigest: string;
  state: ContainerState;
  pid: number | null;
  exit: { code: number | null; signal: string | null; oomKilled: boolean } | null;
  restarts: number;
}

export type PodState = 'pending' | 'running' | 'succeeded' | 'failed' | 'stopped';

export interface PodStatus {
  name: string;
  sandbox: 'cell';
  state: PodState;
  containers: ContainerStatus[];
  createdAt: number;
  /** The pod as requested. */
  spec: PodSpec;
}

export interface PodRuntime {
  run(spec: PodSpec, opts?: { onProgress?: (p: PullProgress & { image: string }) => void }): Promise<PodStatus>;
  list(): PodStatus[];
  get(name: string): PodStatus | undefined;
  stop(name: string, graceMs: number): Promise<PodStatus>;
  remove(name: string, opts: { force: boolean }): Promise<void>;
  /** After an auraed restart or a reboot with a state disk: bring back the pods that should run. */
  reconcile(): Promise<void>;
}

/** What pods need of the cell runtime (CellRuntime). */
export interface PodCells {
  allocate(spec: CellSpec): Promise<CellSpec>;
  free(name: string, force: boolean): Promise<void>;
  start(cell: string, spec: ExecutableSpec): Promise<{ pid: number }>;
  stop(cell: string, executable: string, graceMs: number): Promise<RecordedExit | null>;
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
  /** Unused so far (the executables publish the containers' events); kept for pod-level events. */
  observe?: unknown;
  log: Logger;
  /** Side effects on the node; default nodePodHost with the syscall addon (loaded on first use). */
  host?: PodHost;
  /** crun's path; default findCrun() on first use. */
  crun?: string;
  /** Per-boot files (pinned namespaces, ready markers); default /run/aurae/pods. */
  runDir?: string;
  crunStateRoot?: string;
  clock?: () => number;
}

interface PodEntry {
  spec: PodSpec;
  desiredRunning: boolean;
  /** Container → manifest digest (known once its image is pulled). */
  images: Record<string, string>;
  createdAt: number;
  /** 'creating': pulling images or preparing; 'created': its containers were handed to the cell. */
  phase: 'creating' | 'created';
}

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

/** A container's status from its executable (null: not handed to the cell yet). */
export function containerStatus(c: ContainerSpec, digest: string, exe: ExecutableSnapshot | null, creating: boolean): ContainerStatus {
  const base = { name: c.name, image: c.image, imageDigest: digest };
  if (!exe) return { ...base, state: creating && digest === '' ? 'pulling' : 'created', pid: null, exit: null, restarts: 0 };
  const exit = exe.lastExit ? { code: exe.lastExit.code, signal: exe.lastExit.signal, oomKilled: exe.lastExit.oomKilled } : null;
  const state: ContainerState =
    exe.state === 'starting' ? 'created' : exe.state === 'running' || exe.state === 'stopping' ? 'running' : exe.state === 'failed' ? 'failed' : 'exited';
  return { ...base, state, pid: exe.pid > 0 ? exe.pid : null, exit, restarts: exe.restarts };
}

/**
 * The pod's state: pending while being created or while every container is still starting; running while any
 * container runs (or waits to be restarted); stopped after Stop; then succeeded when every container exited 0,
 * else failed.
 */
export function podState(entry: { desiredRunning: boolean; creating: boolean }, exes: (ExecutableSnapshot | null)[]): PodState {
  if (entry.creating) return 'pending';
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
  private crunPath: string | undefined;
  private lock: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: PodRuntimeDeps) {
    if (!deps.store && !deps.db) throw new Error('createPodRuntime: give db or store');
    this.store = deps.store ?? sqlitePodStore(deps.db!);
    this.podsDir = path.join(deps.dir, 'pods');
    this.runDir = deps.runDir ?? PODS_RUN_DIR;
    this.stateRoot = deps.crunStateRoot ?? CRUN_STATE_ROOT;
    this.clock = deps.clock ?? Date.now;
    this.hostAdapter = deps.host;
    this.crunPath = deps.crun;
    for (const p of this.store.pods()) this.pods.set(p.spec.name, { spec: p.spec, desiredRunning: p.desiredRunning, images: p.images, createdAt: p.createdAt, phase: 'created' });
  }

  private get host(): PodHost {
    if (!this.hostAdapter) {
      // The addon is loaded only when a pod is prepared: auraed on a host without it still lists pods.
      this.hostAdapter = nodePodHost(loadSyscalls());
    }
    return this.hostAdapter;
  }

  private get crun(): string {
    this.crunPath ??= findCrun();
    return this.crunPath;
  }

  paths(pod: string): PodPaths {
    return podPaths(this.podsDir, pod, this.runDir);
  }

  async run(spec: PodSpec, opts: { onProgress?: (p: PullProgress & { image: string }) => void } = {}): Promise<PodStatus> {
    const { log } = this.deps;
    if (this.pods.has(spec.name)) throw new AuraeError('ALREADY_EXISTS', `pod "${spec.name}" already exists: remove it first (aer pod rm ${spec.name}) or choose another name`);
    const entry: PodEntry = { spec, desiredRunning: true, images: {}, createdAt: this.clock(), phase: 'creating' };
    // Reserved at once: a second Run of the name fails while the first pulls.
    this.pods.set(spec.name, entry);
    const records = new Map<string, ImageRecord>();
    let stored = false;
    let allocated = false;
    try {
      for (const c of spec.containers) {
        const record = this.deps.images.get(c.image) ?? (await this.deps.images.pull(c.image, { onProgress: (p) => opts.onProgress?.({ ...p, image: c.image }) }));
        this.deps.images.retain(record.digest, imageHolder(spec.name, c.name));
        records.set(c.name, record);
        entry.images[c.name] = record.digest;
      }
      await this.exclusive(async () => {
        this.store.insert({ spec, desiredRunning: true, images: entry.images, createdAt: entry.createdAt });
        stored = true;
        await this.deps.cells.allocate(podCellSpec(spec));
        allocated = true;
        await this.prepare(spec, records);
        entry.phase = 'created';
        for (const c of spec.containers) await this.startContainer(spec, c.name);
      });
    } catch (err) {
      log.warn('running a pod failed: undoing', { pod: spec.name, err });
      await this.undo(spec, { stored, allocated }).catch((undoErr: unknown) => log.error('undoing a failed pod run failed', { pod: spec.name, err: undoErr }));
      throw err;
    }
    log.info('pod running', { pod: spec.name, containers: spec.containers.map((c) => c.name) });
    return this.status(spec.name)!;
  }

  /** Pin the namespaces, mount and configure every container, mark the pod ready (idempotent). */
  private async prepare(spec: PodSpec, records: Map<string, ImageRecord>): Promise<void> {
    const paths = this.paths(spec.name);
    await this.pinNamespaces(spec.name, paths);
    for (const c of spec.containers) {
      this.mountRootfs(spec.name, c.name, records.get(c.name)!);
      this.writeBundle(spec, c, records.get(c.name)!);
    }
    this.markReady(paths);
  }

  private async pinNamespaces(pod: string, paths: PodPaths): Promise<void> {
    const mounts = this.host.mounts();
    if (Object.values(paths.ns).every((f) => mounts.get(f) === 'nsfs')) return;
    for (const f of Object.values(paths.ns)) if (mounts.has(f)) this.host.unmount(f);
    await this.host.pinNamespaces(paths.ns, pod);
  }

  private mountRootfs(pod: string, container: string, record: ImageRecord): void {
    const c = this.paths(pod).container(container);
    if (this.host.mounts().get(c.rootfs) === 'overlay') return;
    for (const d of [c.dir, c.upper, c.work, c.rootfs]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    this.host.mountOverlay(overlayMountPlan(this.deps.images.lowerDirs(record), c.upper, c.work, c.rootfs));
  }

  private writeBundle(spec: PodSpec, c: ContainerSpec, record: ImageRecord): void {
    const cp = this.paths(spec.name).container(c.name);
    const process = containerProcess(record.config, spec, c);
    const what = `pod "${spec.name}": container "${c.name}"`;
    const user = resolveUser(process.user, { passwd: readImageFile(cp.rootfs, 'passwd'), group: readImageFile(cp.rootfs, 'group') }, what);
    const input = containerSpecInput({
      process,
      user,
      paths: cp,
      pod: this.paths(spec.name),
      readOnlyRootfs: c.readOnlyRootfs,
      cgroupsPath: leafDir(cellTreeDir('/'), spec.name, c.name),
    });
    const tmp = `${cp.config}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(ociSpec(input), null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, cp.config);
  }

  private markReady(paths: PodPaths): void {
    fs.mkdirSync(paths.runDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(paths.ready, '');
  }

  private async startContainer(spec: PodSpec, container: string): Promise<void> {
    const paths = this.paths(spec.name);
    await this.deps.cells.start(spec.name, crunExecutable({ crun: this.crun, stateRoot: this.stateRoot, pod: spec, container, paths: paths.container(container), ready: paths.ready }));
  }

  /** Undo a run that failed part way: the cell (its processes), the files, the images, the row. */
  private async undo(spec: PodSpec, done: { stored: boolean; allocated: boolean }): Promise<void> {
    try {
      if (done.allocated) {
        await this.deps.cells.free(spec.name, true);
        await this.teardown(spec);
      }
      if (done.stored) this.store.delete(spec.name);
    } finally {
      for (const c of spec.containers) this.deps.images.release(imageHolder(spec.name, c.name));
      this.pods.delete(spec.name);
    }
  }

  /** Remove the pod's files: crun state, root filesystem mounts, pinned namespaces, directories. */
  private async teardown(spec: PodSpec): Promise<void> {
    const paths = this.paths(spec.name);
    let crun: string | null = null;
    try {
      crun = this.crun;
    } catch {
      crun = null; // no crun on this node: nothing of it to delete
    }
    if (crun) for (const c of spec.containers) await this.host.crunDelete(crun, this.stateRoot, containerId(spec.name, c.name));
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

  private status(name: string): PodStatus | undefined {
    const entry = this.pods.get(name);
    if (!entry) return undefined;
    let view: CellView | null = null;
    try {
      view = this.deps.cells.get(name);
    } catch {
      view = null; // the cell is missing (being created, or cells are unavailable on this node)
    }
    const exes = entry.spec.containers.map((c) => view?.executables.find((e) => e.spec.name === c.name) ?? null);
    const creating = entry.phase === 'creating';
    return {
      name,
      sandbox: 'cell',
      state: podState({ desiredRunning: entry.desiredRunning, creating }, exes),
      containers: entry.spec.containers.map((c, i) => containerStatus(c, entry.images[c.name] ?? '', exes[i] ?? null, creating)),
      createdAt: entry.createdAt,
      spec: entry.spec,
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
      const plan = podReconcilePlan({ pods: stored, cells, executables, mounts: stored.length || podDirs.length ? this.host.mounts() : new Map(), ready, podDirs, paths: (pod) => this.paths(pod) });
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
      if (plan.length) log.info('pods reconciled', { actions: plan.map((a) => a.kind), pods: stored.length, failed: [...failed] });
    });
  }

  private async apply(action: PodReconcileAction, stored: { spec: PodSpec; images: Record<string, string> }[]): Promise<void> {
    const pod = stored.find((p) => p.spec.name === action.pod);
    const record = (container: string): ImageRecord => {
      const digest = pod!.images[container]!;
      const r = this.deps.images.get(digest);
      if (!r) throw new AuraeError('FAILED_PRECONDITION', `pod "${action.pod}": container "${container}": its image ${digest} is no longer stored: remove the pod and run it again`);
      return r;
    };
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
        await this.pinNamespaces(action.pod, this.paths(action.pod));
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
        await this.startContainer(pod!.spec, action.container);
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

export function createPodRuntime(deps: PodRuntimeDeps): PodRuntime {
  return new PodRuntimeImpl(deps);
}
