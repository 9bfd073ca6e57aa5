// The real adapters of VM pods (vm-sandbox.ts): the child's PodService called over this node's router (its own
// client certificate: the child lets its parent run pods there, authz policy.ts PARENT_AGENT_METHODS), the
// node's VmRuntime as PodVms, and createNodeVmPods, the composition auraed uses.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { type Client, Metadata, type ServiceError, status as grpcStatus } from '@grpc/grpc-js';
import { loadSyscalls } from '../../native';
import { AuraeError, type AuraeErrorCode, fromInt64 } from '../errors';
import { DEFAULT_PATH } from '../executables';
import { createRootfsDisks, type Images } from '../images';
import type { Logger } from '../log';
import { type PodServiceRunResponse, PodServiceService, type PodStatus as ProtoPodStatus } from '../gen/aurae/pods/v0/pods';
import { podSpecToProto } from './pod-service';
import type { ContainerStatus, PodStatus } from './runtime';
import type { PodSpec } from './spec';
import type { PodStore } from './store';
import { type ChildPodAgent, createVmPodRuntime, type PodVms, type PodVmState, type VmPodRuntime } from './vm-sandbox';

/** Deadlines of the calls to the child: Run starts crun in a microVM (slow under nested TCG). */
const RUN_DEADLINE_MS = 180_000;
const CALL_DEADLINE_MS = 30_000;
/** Inspect runs before every List/Inspect on this node: a child that does not answer must not hold them long. */
const INSPECT_DEADLINE_MS = 10_000;

/** A child's PodStatus as this node's runtime type (the spec is the parent's own: the child's is not used). */
export function podStatusFromProto(p: ProtoPodStatus, spec: PodSpec): PodStatus {
  const containers: ContainerStatus[] = p.containers.map((c) => ({
    name: c.name,
    image: c.image,
    imageDigest: c.imageDigest,
    state: c.state as ContainerStatus['state'],
    pid: c.pid > 0 ? c.pid : null,
    exit: c.exit ? { code: c.exit.code ?? null, signal: c.exit.signal ?? null, oomKilled: c.exit.oomKilled } : null,
    restarts: c.restarts,
  }));
  return { name: p.name, sandbox: 'cell', state: p.state as PodStatus['state'], containers, createdAt: fromInt64(p.createdAt), spec };
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
  };
}

/** The spec field is replaced by the parent's own (vm-sandbox vmPodStatus): a placeholder of the right shape. */
function specOf(p: ProtoPodStatus): PodSpec {
  return { name: p.name, sandbox: 'cell', containers: [], env: {}, restart: 'never', limits: { memoryMax: null, pidsMax: null, cpuWeight: null } };
}

/** What vm-sandbox needs of the node's VmRuntime. */
export interface VmRuntimeLike {
  spawn(request: { name: string; memoryMiB: number; cpus: number; restart: 'never'; disks?: string[] }): Promise<unknown>;
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
    vms: () => nodePodVms(options.vms().runtime, options.vmLimits),
    agent: childPodAgent((vm) => options.vms().router.clientFor(vm)),
    log: options.log,
  });
}
