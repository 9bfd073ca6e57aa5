// The real adapters of VM pods (vm-sandbox.ts): the child's PodService called over this node's router (its own
// client certificate: the child lets its parent run pods there, authz policy.ts PARENT_AGENT_METHODS), the
// node's VmRuntime as PodVms, the image share (nodePodImageShare: images mounted read-only in a directory the VM
// sees over virtio-9p), and createNodeVmPods, the composition auraed uses.
import { execFile } from 'node:child_process';
import fs, { existsSync } from 'node:fs';
import path from 'node:path';
import { type Client, Metadata, type ServiceError, status as grpcStatus } from '@grpc/grpc-js';
import { loadSyscalls } from '../../native';
import { AuraeError, type AuraeErrorCode, fromInt64 } from '../errors';
import { DEFAULT_PATH } from '../executables';
import { createRootfsDisks, type ImageRecord, type Images, mountOverlay, overlayMountPlan, ROOTFS_DISK_META, ROOTFS_DISK_ROOT, type RootfsDiskMeta, rootfsDiskLabel } from '../images';
import type { Logger } from '../log';
import { type ContainerStatus as ProtoContainerStatus, type PodServiceRunResponse, PodServiceService, type PodStatus as ProtoPodStatus } from '../gen/aurae/pods/v0/pods';
import { containerExtensionsJson, containerSpecToProto, podExtensionsJson, podSpecToProto } from './pod-service';
import type { ContainerStatus, PodStatus } from './runtime';
import type { ContainerSpec, PodSpec } from './spec';
import type { PodStore } from './store';
import { type ChildLogLine, type ChildPodAgent, type ChildPodIo, createVmPodRuntime, type PodImageShare, type PodVms, type PodVmState, type PodVolumeShare, type VmPodRuntime } from './vm-sandbox';
import type { RelayableExecCall } from './exec';
import { portForwardDuplex } from './port-forward';
import { Duplex, PassThrough } from 'node:stream';
import { type CgroupMetrics as ProtoCgroupMetrics, type GetLogsResponse, type GetMetricsResponse, ObserveServiceService } from '../gen/aurae/observe/v0/observe';
import type { MetricsSnapshot } from '../observe';
import { relayStream } from '../server';

/** Deadlines of the calls to the child: Run starts crun in a microVM (slow under nested TCG). */
const RUN_DEADLINE_MS = 180_000;
const CALL_DEADLINE_MS = 30_000;
/** Inspect runs before every List/Inspect on this node: a child that does not answer must not hold them long. */
const INSPECT_DEADLINE_MS = 10_000;

/** A child's PodStatus as this node's runtime type (the spec is the parent's own: the child's is not used). */
export function podStatusFromProto(p: ProtoPodStatus, spec: PodSpec): PodStatus {
  const containers: ContainerStatus[] = p.containers.map(containerStatusFromProto);
  return { name: p.name, sandbox: 'cell', state: p.state as PodStatus['state'], containers, createdAt: fromInt64(p.createdAt), spec };
}

/** A child's ContainerStatus as this node's runtime type (times only when the child reports them). */
export function containerStatusFromProto(c: ProtoContainerStatus): ContainerStatus {
  const times = {
    ...(c.createdAt !== undefined ? { createdAt: fromInt64(c.createdAt) } : {}),
    ...(c.startedAt !== undefined ? { startedAt: fromInt64(c.startedAt) } : {}),
    ...(c.finishedAt !== undefined ? { finishedAt: fromInt64(c.finishedAt) } : {}),
  };
  return {
    name: c.name,
    image: c.image,
    imageDigest: c.imageDigest,
    state: c.state as ContainerStatus['state'],
    pid: c.pid > 0 ? c.pid : null,
    exit: c.exit ? { code: c.exit.code ?? null, signal: c.exit.signal ?? null, oomKilled: c.exit.oomKilled } : null,
    restarts: c.restarts,
    ...times,
  };
}

const CODES: Partial<Record<number, AuraeErrorCode>> = {
  [grpcStatus.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [grpcStatus.NOT_FOUND]: 'NOT_FOUND',
  [grpcStatus.ALREADY_EXISTS]: 'ALREADY_EXISTS',
  [grpcStatus.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
  [grpcStatus.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [grpcStatus.UNAUTHENTICATED]: 'UNAUTHENTICATED',
  [grpcStatus.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [grpcStatus.UNIMPLEMENTED]: 'UNIMPLEMENTED',
};

/** The child's error, with its code, said to come from the pod's VM. */
function childError(vm: string, what: string, err: ServiceError): AuraeError {
  return new AuraeError(CODES[err.code] ?? 'UNAVAILABLE', `VM pod agent "${vm}": ${what} failed: ${err.details || err.message}`, { cause: err });
}

export function childPodAgent(clientFor: (vm: string) => Promise<Client>): ChildPodAgent {
  const unary = async <Req, Res>(vm: string, def: { path: string; requestSerialize: (r: Req) => Buffer; responseDeserialize: (b: Buffer) => Res }, request: Req, what: string, deadlineMs = CALL_DEADLINE_MS): Promise<Res> => {
    const client = await clientFor(vm);
    return new Promise<Res>((resolve, reject) => {
      client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
        err ? reject(childError(vm, what, err)) : resolve(res!),
      );
    });
  };
  return {
    async run(vm, spec) {
      const client = await clientFor(vm);
      const def = PodServiceService.run;
      const last = await new Promise<PodServiceRunResponse | null>((resolve, reject) => {
        let final: PodServiceRunResponse | null = null;
        const stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, { pod: podSpecToProto(spec), auth: undefined }, new Metadata(), {
          deadline: Date.now() + RUN_DEADLINE_MS,
        });
        stream.on('data', (m: PodServiceRunResponse) => void (m.status && (final = m)));
        stream.on('error', (err: ServiceError) => reject(childError(vm, 'Run', err)));
        stream.on('end', () => resolve(final));
      });
      if (!last?.status) throw new AuraeError('UNAVAILABLE', `VM pod agent "${vm}": Run ended without the pod's status`);
      return podStatusFromProto(last.status, spec);
    },
    async inspect(vm, pod) {
      try {
        const res = await unary(vm, PodServiceService.inspect, { podName: pod }, 'Inspect', INSPECT_DEADLINE_MS);
        return res.pod ? podStatusFromProto(res.pod, specOf(res.pod)) : null;
      } catch (err) {
        if (err instanceof AuraeError && err.code === 'NOT_FOUND') return null;
        throw err;
      }
    },
    async stop(vm, pod, graceMs) {
      const res = await unary(vm, PodServiceService.stop, { podName: pod, gracePeriodMs: graceMs }, 'Stop', graceMs + CALL_DEADLINE_MS);
      if (!res.pod) throw new AuraeError('UNAVAILABLE', `VM pod agent "${vm}": Stop answered without the pod's status`);
      return podStatusFromProto(res.pod, specOf(res.pod));
    },
    async createSandbox(vm, spec) {
      const res = await unary(vm, PodServiceService.createSandbox, { pod: podSpecToProto(spec), extensionsJson: podExtensionsJson(spec) }, 'CreateSandbox', RUN_DEADLINE_MS);
      if (!res.pod) throw new AuraeError('UNAVAILABLE', `VM pod agent "${vm}": CreateSandbox answered without the pod's status`);
      return podStatusFromProto(res.pod, spec);
    },
    async createContainer(vm, pod, c) {
      const request = { podName: pod, container: containerSpecToProto(c), extensionsJson: containerExtensionsJson(c) };
      return containerOf(vm, 'CreateContainer', (await unary(vm, PodServiceService.createContainer, request, 'CreateContainer', RUN_DEADLINE_MS)).container);
    },
    async startContainer(vm, pod, container) {
      const res = await unary(vm, PodServiceService.startContainer, { podName: pod, containerName: container }, 'StartContainer', RUN_DEADLINE_MS);
      return containerOf(vm, 'StartContainer', res.container);
    },
    async stopContainer(vm, pod, container, graceMs) {
      const res = await unary(vm, PodServiceService.stopContainer, { podName: pod, containerName: container, gracePeriodMs: graceMs }, 'StopContainer', graceMs + CALL_DEADLINE_MS);
      return containerOf(vm, 'StopContainer', res.container);
    },
    async removeContainer(vm, pod, container, opts) {
      await unary(vm, PodServiceService.removeContainer, { podName: pod, containerName: container, force: opts.force }, 'RemoveContainer', CALL_DEADLINE_MS);
    },
  };
}

function containerOf(vm: string, what: string, c: ProtoContainerStatus | undefined): ContainerStatus {
  if (!c) throw new AuraeError('UNAVAILABLE', `VM pod agent "${vm}": ${what} answered without the container's status`);
  return containerStatusFromProto(c);
}

/** Where the image shares of VM pods are (per boot: the mounts in them are). */
export const VM_POD_SHARES_DIR = '/run/aurae/vm-pod-shares';

/** What nodePodImageShare needs: the images' layer dirs and the mount syscalls. */
export interface ImageShareDeps {
  lowerDirs(image: ImageRecord): string[];
  sys: { mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void; umount2(target: string, flags: number): void };
  /** Default VM_POD_SHARES_DIR. */
  dir?: string;
  /** Mount points (default: /proc/self/mountinfo). */
  mounts?(): string[];
}

function mountPoints(): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/**
 * The image share of VM pods: `<dir>/<pod>` is shared with the pod's VM (read-only, virtio-9p); add mounts an
 * image's merged root filesystem read-only at `<pod>/<label>/rootfs` (an overlay of its layers, or a read-only
 * bind of a single layer) and writes `<label>/aurae-image.json` beside it, the layout of a rootfs disk, so the
 * child's disk-images.ts finds it the same way.
 */
export function nodePodImageShare(deps: ImageShareDeps): PodImageShare {
  const root = deps.dir ?? VM_POD_SHARES_DIR;
  const mounts = deps.mounts ?? mountPoints;
  const MS_RDONLY = 1;
  const MS_REMOUNT = 32;
  const MS_BIND = 4096;
  const MNT_DETACH = 2;
  const podDir = (pod: string) => path.join(root, pod);
  const unmountBelow = (dir: string) => {
    for (const m of mounts().filter((m) => m.startsWith(`${dir}/`)).sort().reverse()) deps.sys.umount2(m, MNT_DETACH);
  };
  const ensureDir = (pod: string) => {
    const dir = podDir(pod);
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    return dir;
  };
  return {
    dir: ensureDir,
    async add(pod, image) {
      const dir = path.join(ensureDir(pod), rootfsDiskLabel(image.digest));
      const rootfs = path.join(dir, ROOTFS_DISK_ROOT);
      if (mounts().includes(rootfs)) return;
      fs.mkdirSync(rootfs, { recursive: true, mode: 0o755 });
      const meta: RootfsDiskMeta = { digest: image.digest, name: image.name, config: image.config };
      fs.writeFileSync(path.join(dir, `${ROOTFS_DISK_META}.tmp`), `${JSON.stringify(meta)}\n`, { mode: 0o644 });
      const lowers = [...new Set(deps.lowerDirs(image))];
      try {
        if (lowers.length >= 2) {
          mountOverlay({ ...overlayMountPlan(lowers, null, null, rootfs), flags: MS_RDONLY }, deps.sys);
        } else {
          deps.sys.mount(lowers[0]!, rootfs, null, MS_BIND, null);
          deps.sys.mount(null, rootfs, null, MS_REMOUNT | MS_BIND | MS_RDONLY, null);
        }
      } catch (err) {
        if (mounts().includes(rootfs)) deps.sys.umount2(rootfs, MNT_DETACH);
        throw new AuraeError('FAILED_PRECONDITION', `sharing image ${image.digest} with the VM of pod "${pod}": mounting it at ${rootfs} failed: ${(err as Error).message}`, { cause: err });
      }
      // The description last: the child takes an image as there once its aurae-image.json is.
      fs.renameSync(path.join(dir, `${ROOTFS_DISK_META}.tmp`), path.join(dir, ROOTFS_DISK_META));
    },
    remove(pod, digest) {
      const dir = path.join(podDir(pod), rootfsDiskLabel(digest));
      unmountBelow(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    },
    removeAll(pod) {
      const dir = podDir(pod);
      unmountBelow(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Where the volumes shares of VM pods are (per boot: a small tmpfs per pod, holding binds), as the VMs see them. */
export const VM_POD_VOLUMES_DIR = '/run/aurae/vm-pod-volumes';
/** The same tmpfs, where this node makes the mount points (the VMs never see this path). */
export const VM_POD_VOLUMES_STAGE = '/run/aurae/vm-pod-volumes.stage';
/** A pod's volumes tmpfs: only mount points live there. */
export const VM_POD_VOLUMES_TMPFS = 'size=1m,mode=0755';

/**
 * The volumes share of VM pods (vm-sandbox.ts PodVolumeShare). Per pod a small tmpfs (nosuid, nodev), mounted at
 * `<stage>/<pod>` (where this node makes the mount points) and bound at `<dir>/<pod>` (what the VM is shared).
 * add binds a container's host paths at `<dir>/<pod>/<container>/<i>` (recursive binds; read-only ones remounted
 * read-only), making a missing host path a directory as containerd does. remove unmounts before it deletes
 * anything, and refuses to delete while a bind stays (never a recursive delete through a bind).
 *
 * The share is writable, served by QEMU (root) with security_model=mapped-file (vms/qemu-args.ts
 * shareFsdevOptions): what the VM sets on these files (owners, modes, setuid bits, device nodes, symbolic links)
 * is kept as metadata, never applied to this node's files. The tmpfs itself is writable too so that the metadata
 * of a bind's top (a container's chown of its volume) has a place to live; the VM can leave only plain 0600/0700
 * QEMU-owned entries there (no symbolic link of its own can redirect a bind made later).
 */
export function nodePodVolumeShare(deps: Pick<ImageShareDeps, 'sys' | 'mounts'> & { dir?: string; stage?: string }): PodVolumeShare {
  const root = deps.dir ?? VM_POD_VOLUMES_DIR;
  const stage = deps.stage ?? VM_POD_VOLUMES_STAGE;
  const mounts = deps.mounts ?? mountPoints;
  const MS_RDONLY = 1;
  const MS_NOSUID = 2;
  const MS_NODEV = 4;
  const MS_REMOUNT = 32;
  const MS_BIND = 4096;
  const MS_REC = 16384;
  const MNT_DETACH = 2;
  const unmountBelow = (dir: string, self: boolean) => {
    const below = (m: string) => m.startsWith(`${dir}/`) || (self && m === dir);
    for (const m of mounts().filter(below).sort().reverse()) deps.sys.umount2(m, MNT_DETACH);
    const left = mounts().filter(below);
    if (left.length) throw new AuraeError('INTERNAL', `unmounting the volume binds ${left.join(', ')} failed: they are still mounted: nothing was deleted`);
  };
  const ensure = (pod: string) => {
    const shared = path.join(root, pod);
    const staged = path.join(stage, pod);
    fs.mkdirSync(shared, { recursive: true, mode: 0o755 });
    fs.mkdirSync(staged, { recursive: true, mode: 0o700 });
    const now = mounts();
    if (!now.includes(staged)) deps.sys.mount('tmpfs', staged, 'tmpfs', MS_NOSUID | MS_NODEV, VM_POD_VOLUMES_TMPFS);
    if (!now.includes(shared)) {
      deps.sys.mount(staged, shared, null, MS_BIND, null);
      deps.sys.mount(null, shared, null, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, null);
    }
    return shared;
  };
  return {
    dir: ensure,
    add(pod, container, list) {
      const shared = path.join(ensure(pod), container);
      const staged = path.join(stage, pod, container);
      fs.mkdirSync(staged, { recursive: true, mode: 0o755 });
      const mounted = new Set(mounts());
      list.forEach((m, i) => {
        const target = path.join(shared, String(i));
        if (mounted.has(target)) return;
        if (!fs.existsSync(m.hostPath)) fs.mkdirSync(m.hostPath, { recursive: true, mode: 0o755 });
        const point = path.join(staged, String(i));
        if (fs.statSync(m.hostPath).isDirectory()) fs.mkdirSync(point, { recursive: true, mode: 0o755 });
        else if (!fs.existsSync(point)) fs.writeFileSync(point, '', { mode: 0o644 });
        try {
          deps.sys.mount(m.hostPath, target, null, MS_BIND | MS_REC, null);
          if (m.readonly) deps.sys.mount(null, target, null, MS_REMOUNT | MS_BIND | MS_RDONLY, null);
        } catch (err) {
          if (mounts().includes(target)) deps.sys.umount2(target, MNT_DETACH);
          throw new AuraeError('FAILED_PRECONDITION', `sharing ${m.hostPath} with the VM of pod "${pod}" (container "${container}"): binding it at ${target} failed: ${(err as Error).message}`, { cause: err });
        }
      });
    },
    remove(pod, container) {
      unmountBelow(path.join(root, pod, container), false);
      // The stage's binds too (on a host whose /run is shared they are peers of the share's): never a recursive
      // delete through a bind.
      unmountBelow(path.join(stage, pod, container), false);
      fs.rmSync(path.join(stage, pod, container), { recursive: true, force: true });
    },
    removeAll(pod) {
      unmountBelow(path.join(root, pod), true);
      unmountBelow(path.join(stage, pod), true);
      fs.rmSync(path.join(root, pod), { recursive: true, force: true });
      fs.rmSync(path.join(stage, pod), { recursive: true, force: true });
    },
  };
}

/**
 * Exec into a VM pod (PodService/Exec on this node for a pod with sandbox "vm"): the child's PodService/Exec, called
 * as its parent, for the same pod and container (the child runs them under the same names: vm-sandbox.ts
 * childPodSpec), so the first request goes as it came. Everything after it is relayed both ways with back-pressure
 * (server/relay.ts); the caller's cancel and deadline reach the child, the child's status comes back naming the VM.
 */
export function childExecRelay(clientFor: (vm: string) => Promise<Client>): ChildPodIo['exec'] {
  return async (vm, first, call: RelayableExecCall) => {
    const client = await clientFor(vm);
    if (call.cancelled) return;
    const def = PodServiceService.exec;
    const deadline = call.getDeadline?.();
    const options = deadline instanceof Date || (typeof deadline === 'number' && Number.isFinite(deadline)) ? { deadline } : {};
    const upstream = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, new Metadata(), options);
    upstream.write(first);
    const outcome = await relayStream(call, upstream, { requests: true, responses: true });
    if (outcome.kind === 'error') throw childError(vm, 'Exec', Object.assign(new Error(outcome.error.details), outcome.error) as ServiceError);
    if (outcome.kind === 'ok') call.end();
  };
}

/** A child's GetMetrics answer as observe's MetricsSnapshot (the shape this node's own reader gives). */
export function metricsSnapshotFromProto(res: GetMetricsResponse): MetricsSnapshot {
  const metrics = (m: ProtoCgroupMetrics | undefined) => {
    const out: Record<string, number> = {};
    for (const [key, value] of Object.entries(m ?? {})) if (typeof value === 'bigint') out[key] = fromInt64(value);
    return out;
  };
  return { timestamp: fromInt64(res.timestamp), cells: res.cells.map((row) => ({ cell: row.cell, executable: row.executable === '' ? null : row.executable, metrics: metrics(row.metrics) })) };
}

/**
 * The child's side of VM pods' containers (vm-sandbox.ts ChildPodIo), called as the child's parent (authz
 * PARENT_AGENT_METHODS): exec relayed to its PodService/Exec, metrics and output from its ObserveService.
 */
export function childPodIo(clientFor: (vm: string) => Promise<Client>): ChildPodIo {
  return {
    exec: childExecRelay(clientFor),
    async metrics(vm, pod) {
      const client = await clientFor(vm);
      const def = ObserveServiceService.getMetrics;
      const res = await new Promise<GetMetricsResponse>((resolve, reject) => {
        client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, { cell: pod }, new Metadata(), { deadline: Date.now() + INSPECT_DEADLINE_MS }, (err, r) =>
          err ? reject(childError(vm, 'GetMetrics', err)) : resolve(r!),
        );
      });
      return metricsSnapshotFromProto(res);
    },
    portForward(vm, pod, port) {
      // The Duplex exists at once; the call is made once the child's client is there (writes wait for it).
      const pending = new PassThrough();
      const out = new PassThrough();
      const duplex = Duplex.from({ writable: pending, readable: out });
      clientFor(vm).then(
        (client) => {
          if (duplex.destroyed) return;
          const def = PodServiceService.portForward;
          const upstream = portForwardDuplex(client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, new Metadata(), {}), { pod, port }, (err) => childError(vm, 'PortForward', err));
          pending.pipe(upstream).pipe(out);
          upstream.on('error', (err) => duplex.destroy(err));
          duplex.once('close', () => upstream.destroy());
        },
        (err: unknown) => duplex.destroy(err instanceof Error ? err : new Error(String(err))),
      );
      return duplex;
    },
    followLogs(vm, pod, container, tail, onLine, onEnd) {
      let cancelled = false;
      let stream: ReturnType<Client['makeServerStreamRequest']> | null = null;
      let ended = false;
      const end = (err: Error | null) => {
        if (ended || cancelled) return;
        ended = true;
        onEnd(err);
      };
      clientFor(vm).then(
        (client) => {
          if (cancelled) return;
          const def = ObserveServiceService.getLogs;
          stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, { cell: pod, executable: container, tail, follow: true }, new Metadata(), {});
          stream.on('data', (m: GetLogsResponse) => {
            if (cancelled || !m.item) return;
            const line: ChildLogLine = { stream: m.item.channel === 'stderr' ? 'stderr' : 'stdout', line: m.item.line, timestamp: fromInt64(m.item.timestamp) };
            onLine(line);
          });
          stream.on('error', (err: ServiceError) => end(childError(vm, 'GetLogs', err)));
          stream.on('end', () => end(null));
        },
        (err: unknown) => end(err instanceof Error ? err : new Error(String(err))),
      );
      return () => {
        cancelled = true;
        stream?.cancel();
      };
    },
  };
}

/** The spec field is replaced by the parent's own (vm-sandbox vmPodStatus): a placeholder of the right shape. */
function specOf(p: ProtoPodStatus): PodSpec {
  return { name: p.name, sandbox: 'cell', containers: [], env: {}, restart: 'never', limits: { memoryMax: null, pidsMax: null, cpuWeight: null } };
}

/** What vm-sandbox needs of the node's VmRuntime. */
export interface VmRuntimeLike {
  spawn(request: { name: string; memoryMiB: number; cpus: number; restart: 'never'; disks?: string[]; shares?: { tag: string; path: string; writable?: boolean }[] }): Promise<unknown>;
  start(name: string): Promise<unknown>;
  stop(name: string): Promise<unknown>;
  free(name: string): void;
  list(): { request: { name: string }; state: Exclude<PodVmState, null> }[];
}

export function nodePodVms(runtime: VmRuntimeLike, limits: { maxMemoryMiB: number; bootTimeoutMs: number }): PodVms {
  return {
    spawn: (request) => runtime.spawn(request),
    start: (name) => runtime.start(name),
    stop: (name) => runtime.stop(name),
    free: (name) => runtime.free(name),
    state: (name) => runtime.list().find((vm) => vm.request.name === name)?.state ?? null,
    limits,
  };
}

/** What createNodeVmPods needs of the node's VM subsystem (vms createNodeVms's NodeVms). */
export interface NodeVmsLike {
  runtime: VmRuntimeLike;
  router: { clientFor(label: string): Promise<Client> };
}

/**
 * VM pods for auraed: rootfs disks under `<stateDir>/images/disks` (mke2fs from PATH; the image has
 * /sbin/mke2fs), the node's VMs (`vms()`: the VM subsystem starts after pods), the children reached through
 * its router.
 */
export function createNodeVmPods(options: {
  store: PodStore;
  images: Pick<Images, 'pull' | 'get' | 'lowerDirs' | 'retain' | 'release'>;
  stateDir: string;
  vms: () => NodeVmsLike;
  vmLimits: { maxMemoryMiB: number; bootTimeoutMs: number };
  log: Logger;
}): VmPodRuntime {
  const env = { PATH: process.env.PATH ?? DEFAULT_PATH };
  let sys: ReturnType<typeof loadSyscalls> | null = null;
  const syscalls = () => (sys ??= loadSyscalls());
  const disks = createRootfsDisks({
    imagesDir: path.join(options.stateDir, 'images'),
    lowerDirs: (image) => options.images.lowerDirs(image),
    sys: { mount: (...a) => syscalls().mount(...a), umount2: (...a) => syscalls().umount2(...a) },
    run: (cmd, args) =>
      new Promise((resolve) => {
        execFile(cmd, args, { env, timeout: 300_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
          resolve({ code, output: `${stdout}${stderr}${err && code === null ? err.message : ''}` });
        });
      }),
    // The image ships /sbin/mke2fs (IMAGE_TOOLS); auraed's PATH may not name /sbin.
    mke2fs: existsSync('/sbin/mke2fs') ? '/sbin/mke2fs' : 'mke2fs',
    log: options.log,
  });
  return createVmPodRuntime({
    store: options.store,
    images: options.images,
    disks,
    share: nodePodImageShare({
      lowerDirs: (image) => options.images.lowerDirs(image),
      sys: { mount: (...a) => syscalls().mount(...a), umount2: (...a) => syscalls().umount2(...a) },
    }),
    volumes: nodePodVolumeShare({ sys: { mount: (...a) => syscalls().mount(...a), umount2: (...a) => syscalls().umount2(...a) } }),
    vms: () => nodePodVms(options.vms().runtime, options.vmLimits),
    agent: childPodAgent((vm) => options.vms().router.clientFor(vm)),
    io: childPodIo((vm) => options.vms().router.clientFor(vm)),
    log: options.log,
  });
}
