// The CRI RuntimeService's core: sandboxes and containers ARE aurae pods and their containers (one model, two
// APIs). Each call resolves the CRI id in the CRI store (cri-store.ts), turns the request into the pods runtime's
// terms (cri-mapping.ts), calls the pods runtime, and answers in CRI shapes. The CRI store holds only what the pods
// runtime does not (ids, metadata, labels, annotations, log paths); states always come from the pods runtime, so
// after an auraed restart every sandbox and container is listed with its true state.
//
// Idempotence as kubelet expects it: StopPodSandbox, RemovePodSandbox, StopContainer and RemoveContainer of an id
// that is not (or no longer) there answer OK. Record first, then act: a RunPodSandbox or CreateContainer cut short
// by a crash leaves a record kubelet can see and remove, never a pod it cannot name.
import { EventEmitter } from 'node:events';
import { AuraeError } from '../errors';
import {
  type Container,
  ContainerEventType,
  type ContainerEventResponse,
  ContainerState,
  type ContainerStatusResponse,
  type CreateContainerRequest,
  type ListContainersRequest,
  type ListPodSandboxRequest,
  type PodSandbox,
  type PodSandboxStatusResponse,
  type RunPodSandboxRequest,
  type UpdateContainerResourcesRequest,
} from '../gen/runtime/v1/api';
import type { ImageRecord, Images } from '../images';
import type { Logger } from '../log';
import type { EventBus, StampedEvent } from '../observe';
import type { PodStatus } from '../pods';
import type { ContainerLogTaps } from './logs';
import { consoleSocketPath, stdinFifoPath } from '../pods';
import type { ContainerStdio } from './container-stdio';
import { invalid } from '../validation';
import { findImage } from './image-mapping';
import { criResourcesOf, resourcesUpdate } from './cri-resources';
import {
  containerMatches,
  containerOf,
  containerPlan,
  newCriId,
  resolveId,
  sandboxMatches,
  sandboxPlan,
  toCriContainer,
  toCriContainerStatus,
  toNanos,
  toPodSandbox,
  toPodSandboxStatus,
} from './cri-mapping';
import { type CriContainerRecord, type CriSandboxRecord, type CriStore, CriStoreConflict } from './cri-store';
import type { CriContainerStatus, CriPods } from './pods-contract';

/** Where CRI containers' output is also written as CRI log files (supervisor/cri/logs' taps). */
export type CriLogSink = Pick<ContainerLogTaps, 'register' | 'get' | 'unregister'>;

export interface CriRuntimeDeps {
  pods: CriPods;
  store: CriStore;
  images: Pick<Images, 'list' | 'get'>;
  /** The pods' events (container_started / container_exited become CRI STARTED / STOPPED events). */
  events?: Pick<EventBus, 'subscribe'>;
  logs?: CriLogSink;
  /** Containers' terminals and kept stdin (Attach, container-stdio.ts); absent: tty/stdin containers are refused. */
  stdio?: Pick<ContainerStdio, 'prepare' | 'release'>;
  log: Logger;
  clock?: () => number;
  newId?: () => string;
}

/** A CRI container with its sandbox and pods status (null: the pod or container is gone). */
export interface ResolvedContainer {
  record: CriContainerRecord;
  sandbox: CriSandboxRecord;
  pod: PodStatus | undefined;
  status: CriContainerStatus | undefined;
}

/** How long StopPodSandbox gives containers still running (kubelet stopped them with their own grace first). */
export const SANDBOX_STOP_GRACE_MS = 0;

function isNotFound(err: unknown): boolean {
  return err instanceof AuraeError && err.code === 'NOT_FOUND';
}

export class CriRuntime {
  private readonly clock: () => number;
  private readonly newId: () => string;
  /** CRI container events (GetContainerEvents streams subscribe). */
  readonly containerEvents = new EventEmitter();
  private readonly unsubscribe: (() => void) | null;
  /** When this runtime began (ms): containers started before and "created" now have lost their process. */
  private readonly since: number;

  constructor(private readonly deps: CriRuntimeDeps) {
    this.clock = deps.clock ?? Date.now;
    this.newId = deps.newId ?? (() => newCriId());
    this.since = this.clock();
    this.containerEvents.setMaxListeners(0);
    this.unsubscribe = deps.events?.subscribe((e) => this.onPodEvent(e)) ?? null;
    this.restoreLogs();
  }

  /** After an auraed restart: every stored container with a log file writes to it again. */
  private restoreLogs(): void {
    if (!this.deps.logs) return;
    const pods = new Map(this.deps.store.sandboxes().map((s) => [s.id, s.pod]));
    for (const c of this.deps.store.containers()) {
      const pod = pods.get(c.sandboxId);
      if (pod !== undefined && c.logPath !== '') this.deps.logs.register(pod, c.container, c.logPath);
    }
  }

  close(): void {
    this.unsubscribe?.();
    this.containerEvents.removeAllListeners();
  }

  // ---- lookups ----

  /**
   * A VM sandbox's status lives in its child VM: fetch it before answering about it (`sandbox`), or about every
   * sandbox (undefined) when any is a VM's. A child that does not answer leaves the last status known.
   */
  async refresh(sandbox?: CriSandboxRecord): Promise<void> {
    const refresh = this.deps.pods.refresh?.bind(this.deps.pods);
    if (!refresh) return;
    const vm = (s: CriSandboxRecord) => s.runtimeHandler === 'vm';
    if (sandbox ? !vm(sandbox) : !this.deps.store.sandboxes().some(vm)) return;
    await refresh(sandbox?.pod).catch((err: unknown) => this.deps.log.warn('refreshing VM sandboxes failed: their last known status is reported', { err }));
  }

  sandboxes(): CriSandboxRecord[] {
    return this.deps.store.sandboxes();
  }

  /** The sandbox `id` names (or a unique prefix of it); null when none. */
  findSandbox(id: string | undefined, field = 'pod_sandbox_id'): CriSandboxRecord | null {
    return resolveId(this.deps.store.sandboxes(), id, field, 'sandbox');
  }

  requireSandbox(id: string | undefined, field = 'pod_sandbox_id'): CriSandboxRecord {
    const s = this.findSandbox(id, field);
    if (!s) throw new AuraeError('NOT_FOUND', `pod sandbox "${id}" does not exist: see ListPodSandbox (crictl pods) for the sandboxes there are`);
    return s;
  }

  /**
   * requireContainer with its status as it is now: a VM sandbox's is fetched from its child first (a start there
   * may have answered "created" while crun was still starting it).
   */
  async requireContainerNow(id: string | undefined, field = 'container_id'): Promise<ResolvedContainer> {
    const c = this.requireContainer(id, field);
    if (c.sandbox.runtimeHandler !== 'vm') return c;
    await this.refresh(c.sandbox);
    return this.requireContainer(c.record.id, field);
  }

  findContainer(id: string | undefined, field = 'container_id'): ResolvedContainer | null {
    const record = resolveId(this.deps.store.containers(), id, field, 'container');
    if (!record) return null;
    const sandbox = this.deps.store.sandboxes().find((s) => s.id === record.sandboxId)!;
    const pod = this.deps.pods.get(sandbox.pod);
    return { record, sandbox, pod, status: containerOf(pod, record) };
  }

  requireContainer(id: string | undefined, field = 'container_id'): ResolvedContainer {
    const c = this.findContainer(id, field);
    if (!c) throw new AuraeError('NOT_FOUND', `container "${id}" does not exist: see ListContainers (crictl ps -a) for the containers there are`);
    return c;
  }

  // ---- sandboxes ----

  async runPodSandbox(request: RunPodSandboxRequest): Promise<string> {
    const { spec, record } = sandboxPlan(request, this.newId(), this.clock());
    const { log } = this.deps;
    try {
      this.deps.store.insertSandbox(record);
    } catch (err) {
      if (err instanceof CriStoreConflict) {
        throw new AuraeError('ALREADY_EXISTS', `a sandbox named "${record.name}" (namespace "${record.namespace}", uid "${record.uid}", attempt ${record.attempt}) already exists: remove it first or use the next attempt`);
      }
      throw err;
    }
    try {
      await this.deps.pods.createSandbox(spec);
    } catch (err) {
      log.warn('RunPodSandbox failed: removing what was made', { id: record.id, pod: record.pod, err });
      await this.deps.pods.remove(record.pod, { force: true }).catch((undoErr: unknown) => {
        if (!isNotFound(undoErr)) log.error('removing the pod of a failed RunPodSandbox failed', { pod: record.pod, err: undoErr });
      });
      this.deps.store.deleteSandbox(record.id);
      throw err;
    }
    log.info('pod sandbox running', { id: record.id, pod: record.pod, name: record.name, namespace: record.namespace, handler: record.runtimeHandler });
    return record.id;
  }

  async stopPodSandbox(id: string): Promise<void> {
    const sandbox = this.findSandbox(id);
    if (!sandbox) return; // idempotent: already removed
    try {
      await this.deps.pods.stop(sandbox.pod, SANDBOX_STOP_GRACE_MS);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    this.deps.store.setReady(sandbox.id, false);
    this.deps.log.info('pod sandbox stopped', { id: sandbox.id, pod: sandbox.pod });
  }

  async removePodSandbox(id: string): Promise<void> {
    const sandbox = this.findSandbox(id);
    if (!sandbox) return; // idempotent
    const containers = this.deps.store.containers().filter((c) => c.sandboxId === sandbox.id);
    const pod = this.deps.pods.get(sandbox.pod);
    try {
      await this.deps.pods.remove(sandbox.pod, { force: true });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    for (const c of containers) this.deps.logs?.unregister(sandbox.pod, c.container);
    for (const c of containers) await this.deps.stdio?.release(sandbox.pod, c.container);
    this.deps.store.deleteSandbox(sandbox.id);
    for (const c of containers) this.emit(ContainerEventType.CONTAINER_DELETED_EVENT, c, sandbox, pod, undefined);
    this.deps.log.info('pod sandbox removed', { id: sandbox.id, pod: sandbox.pod, containers: containers.length });
  }

  async podSandboxStatus(id: string, verbose: boolean): Promise<PodSandboxStatusResponse> {
    const sandbox = this.requireSandbox(id);
    await this.refresh(sandbox);
    const pod = this.deps.pods.get(sandbox.pod);
    const containers = this.deps.store.containers().filter((c) => c.sandboxId === sandbox.id);
    const info: Record<string, string> = {};
    if (verbose) {
      info.info = JSON.stringify({
        pod: sandbox.pod,
        sandbox: pod?.sandbox ?? null,
        podState: pod?.state ?? 'missing',
        ip: pod?.ip ?? null,
        hostname: sandbox.extra.hostname,
        namespaces: sandbox.extra.namespaces,
        portMappings: sandbox.extra.portMappings,
        sysctls: sandbox.extra.sysctls,
        cgroupParent: sandbox.extra.cgroupParent,
        cgroupParentUsed: false,
        logDirectory: sandbox.logDirectory,
        containers: containers.map((c) => ({ id: c.id, name: c.name, container: c.container, state: containerOf(pod, c)?.state ?? 'missing' })),
        runtimeHandler: sandbox.runtimeHandler,
      });
    }
    return {
      status: toPodSandboxStatus(sandbox, pod),
      info,
      containersStatuses: containers.map((c) => toCriContainerStatus(c, containerOf(pod, c), this.since)),
      timestamp: toNanos(this.clock()),
    };
  }

  async listPodSandbox(request: ListPodSandboxRequest): Promise<PodSandbox[]> {
    await this.refresh();
    return this.deps.store
      .sandboxes()
      .map((s) => toPodSandbox(s, this.deps.pods.get(s.pod)))
      .filter((item) => sandboxMatches(request.filter, item));
  }

  // ---- containers ----

  async createContainer(request: CreateContainerRequest): Promise<string> {
    const sandbox = this.requireSandbox(request.podSandboxId);
    if (!sandbox.ready) throw new AuraeError('FAILED_PRECONDITION', `pod sandbox "${sandbox.id}" is stopped: create containers in a running sandbox (RunPodSandbox a new attempt)`);
    const image = this.image(request.config?.image?.image);
    const { spec, record } = containerPlan(request, sandbox, image, this.newId(), this.clock());
    if (record.extra.stdio && !this.deps.stdio) throw new AuraeError('UNIMPLEMENTED', 'config.tty, config.stdin: this auraed cannot hold terminals (the native addon is not loaded): create the container without them');
    try {
      this.deps.store.insertContainer(record);
    } catch (err) {
      if (err instanceof CriStoreConflict) {
        throw new AuraeError('ALREADY_EXISTS', `sandbox "${sandbox.id}" already has a container "${record.name}" attempt ${record.attempt}: remove it first or use the next attempt`);
      }
      throw err;
    }
    let status: CriContainerStatus;
    try {
      status = await this.deps.pods.createContainer(sandbox.pod, spec);
    } catch (err) {
      this.deps.store.deleteContainer(record.id);
      throw err;
    }
    if (record.extra.stdio) {
      try {
        await this.prepareStdio(sandbox, record);
      } catch (err) {
        await this.deps.pods.removeContainer(sandbox.pod, record.container, { force: true }).catch(() => undefined);
        this.deps.store.deleteContainer(record.id);
        throw err;
      }
    }
    if (record.logPath !== '') this.deps.logs?.register(sandbox.pod, record.container, record.logPath);
    this.emit(ContainerEventType.CONTAINER_CREATED_EVENT, record, sandbox, this.deps.pods.get(sandbox.pod), status);
    this.deps.log.info('container created', { id: record.id, pod: sandbox.pod, container: record.container, name: record.name, image: record.imageRef });
    return record.id;
  }

  /** The stored image an ImageSpec names (CreateContainer never pulls: kubelet pulled it first). */
  private image(spec: string | undefined): ImageRecord {
    const field = 'config.image.image';
    const { images } = this.deps;
    const group = findImage(images.list(), spec ?? '', field, (ref) => images.get(ref));
    if (!group) throw new AuraeError('NOT_FOUND', `${field}: image "${spec}" is not on this node: pull it first (PullImage, crictl pull)`);
    const byRef = (() => {
      try {
        return images.get(spec!);
      } catch {
        return undefined;
      }
    })();
    return byRef && byRef.configDigest === group.id ? byRef : group.records[0]!;
  }

  /** A tty/stdin container's console socket or stdin FIFO, before its crun starts (container-stdio.ts). Idempotent. */
  private async prepareStdio(sandbox: CriSandboxRecord, record: CriContainerRecord): Promise<void> {
    if (!record.extra.stdio || !this.deps.stdio) return;
    const runDir = this.deps.pods.execTarget(sandbox.pod, record.container).runDir;
    await this.deps.stdio.prepare(sandbox.pod, record.container, record.extra.stdio, { consoleSocket: consoleSocketPath(runDir, record.container), stdinFifo: stdinFifoPath(runDir, record.container) });
  }

  async startContainer(id: string): Promise<void> {
    const c = this.requireContainer(id);
    // Created by an earlier auraed: this one listens / holds the FIFO before crun starts.
    await this.prepareStdio(c.sandbox, c.record);
    await this.deps.pods.startContainer(c.sandbox.pod, c.record.container);
    this.deps.store.setStarted(c.record.id, this.clock());
    this.deps.log.info('container started', { id: c.record.id, pod: c.sandbox.pod, container: c.record.container });
  }

  async stopContainer(id: string, timeoutSeconds: bigint): Promise<void> {
    const c = this.findContainer(id);
    if (!c) return; // idempotent
    if (timeoutSeconds < 0n) throw invalid('timeout', 'must be ≥ 0 seconds (0: kill at once)');
    const graceMs = Number(timeoutSeconds > 300n ? 300n : timeoutSeconds) * 1000;
    try {
      await this.deps.pods.stopContainer(c.sandbox.pod, c.record.container, graceMs);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async removeContainer(id: string): Promise<void> {
    const c = this.findContainer(id);
    if (!c) return; // idempotent
    try {
      await this.deps.pods.removeContainer(c.sandbox.pod, c.record.container, { force: true });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    this.deps.logs?.unregister(c.sandbox.pod, c.record.container);
    await this.deps.stdio?.release(c.sandbox.pod, c.record.container);
    this.deps.store.deleteContainer(c.record.id);
    this.emit(ContainerEventType.CONTAINER_DELETED_EVENT, c.record, c.sandbox, this.deps.pods.get(c.sandbox.pod), undefined);
    this.deps.log.info('container removed', { id: c.record.id, pod: c.sandbox.pod, container: c.record.container });
  }

  async listContainers(request: ListContainersRequest): Promise<Container[]> {
    await this.refresh();
    return this.containersNow(request);
  }

  /** ListContainers from the statuses known now (no VM refresh). */
  containersNow(request: ListContainersRequest): Container[] {
    const sandboxes = new Map(this.deps.store.sandboxes().map((s) => [s.id, s]));
    const pods = new Map<string, PodStatus | undefined>();
    const podOf = (s: CriSandboxRecord) => {
      if (!pods.has(s.pod)) pods.set(s.pod, this.deps.pods.get(s.pod));
      return pods.get(s.pod);
    };
    return this.deps.store
      .containers()
      .map((c) => toCriContainer(c, containerOf(podOf(sandboxes.get(c.sandboxId)!), c), this.since))
      .filter((item) => containerMatches(request.filter, item));
  }

  async containerStatus(id: string, verbose: boolean): Promise<ContainerStatusResponse> {
    const c = await this.requireContainerNow(id);
    const info: Record<string, string> = {};
    if (verbose) {
      info.info = JSON.stringify({
        sandboxID: c.sandbox.id,
        pod: c.sandbox.pod,
        container: c.record.container,
        pid: c.status?.pid ?? 0,
        state: c.status?.state ?? 'missing',
        restarts: c.status?.restarts ?? 0,
        image: c.record.imageRef,
        logPath: c.record.logPath,
      });
    }
    const resources = criResourcesOf(this.specOf(c)?.resources);
    return { status: { ...toCriContainerStatus(c.record, c.status, this.since), ...(resources ? { resources } : {}) }, info };
  }

  /**
   * UpdateContainerResources: the fields set replace the container's (0 keeps one, as containerd does); applied
   * to its cgroup while it runs, persisted in its pod's spec either way. A VM sandbox's: UNIMPLEMENTED.
   */
  async updateContainerResources(request: UpdateContainerResourcesRequest): Promise<void> {
    const c = this.requireContainer(request.containerId);
    if (c.sandbox.runtimeHandler === 'vm') {
      throw new AuraeError('UNIMPLEMENTED', `container "${c.record.id}" is in a "vm" runtime handler sandbox: its resources cannot be changed in place yet (its VM's child has no update): recreate the container`);
    }
    if (!request.linux) {
      if (request.windows) throw invalid('windows', 'this is a Linux node: give linux resources');
      return;
    }
    const update = resourcesUpdate(request.linux, this.specOf(c)?.resources);
    if (Object.keys(update).length === 0) return;
    await this.deps.pods.updateContainerResources(c.sandbox.pod, c.record.container, update);
    this.deps.log.info('container resources updated', { id: c.record.id, pod: c.sandbox.pod, container: c.record.container, update });
  }

  /** The container's spec in its pod (undefined: the pod or container is gone). */
  private specOf(c: ResolvedContainer) {
    return c.pod?.spec.containers.find((x) => x.name === c.record.container);
  }

  async reopenContainerLog(id: string): Promise<void> {
    const c = await this.requireContainerNow(id);
    if (!this.deps.logs) throw new AuraeError('UNIMPLEMENTED', 'ReopenContainerLog: CRI log files are not written by this auraed');
    if (c.status?.state !== 'running') throw new AuraeError('FAILED_PRECONDITION', `container "${c.record.id}" is not running (${c.status?.state ?? 'missing'}): only a running container's log can be reopened`);
    if (c.record.logPath === '') throw new AuraeError('FAILED_PRECONDITION', `container "${c.record.id}" has no log file (its sandbox had no log_directory or it no log_path)`);
    const handle = this.deps.logs.get(c.sandbox.pod, c.record.container) ?? this.deps.logs.register(c.sandbox.pod, c.record.container, c.record.logPath);
    const failed = handle.reopen();
    if (failed !== null) throw new AuraeError('UNAVAILABLE', `reopening the log of container "${c.record.id}" (${c.record.logPath}) failed: ${failed}: is the log directory writable?`);
  }

  // ---- events ----

  private emit(type: ContainerEventType, record: CriContainerRecord, sandbox: CriSandboxRecord, pod: PodStatus | undefined, status: CriContainerStatus | undefined): void {
    if (this.containerEvents.listenerCount('event') === 0) return;
    const event: ContainerEventResponse = {
      containerId: record.id,
      containerEventType: type,
      createdAt: toNanos(this.clock()),
      podSandboxStatus: toPodSandboxStatus(sandbox, pod),
      containersStatuses: [toCriContainerStatus(record, status ?? containerOf(pod, record), this.since)],
    };
    if (type === ContainerEventType.CONTAINER_DELETED_EVENT) event.containersStatuses = [];
    this.containerEvents.emit('event', event);
  }

  /** The pods' container_started / container_exited of CRI containers, as STARTED / STOPPED. */
  private onPodEvent(event: StampedEvent): void {
    if (event.kind !== 'container_started' && event.kind !== 'container_exited') return;
    if (this.containerEvents.listenerCount('event') === 0) return;
    const sandbox = this.deps.store.sandboxes().find((s) => s.pod === event.pod);
    if (!sandbox) return;
    const record = this.deps.store.containers().find((c) => c.sandboxId === sandbox.id && c.container === event.container);
    if (!record) return;
    const pod = this.deps.pods.get(sandbox.pod);
    const type = event.kind === 'container_started' ? ContainerEventType.CONTAINER_STARTED_EVENT : ContainerEventType.CONTAINER_STOPPED_EVENT;
    let status = containerOf(pod, record);
    // The pods status may lag the event by a tick: the event is the truth about what just happened.
    const wanted = type === ContainerEventType.CONTAINER_STARTED_EVENT ? ContainerState.CONTAINER_RUNNING : ContainerState.CONTAINER_EXITED;
    if (status && toCriContainerStatus(record, status).state !== wanted && event.kind === 'container_exited') {
      status = { ...status, state: 'exited', exit: { code: event.code, signal: event.signal, oomKilled: event.oomKilled } };
    }
    this.emit(type, record, sandbox, pod, status);
  }
}
