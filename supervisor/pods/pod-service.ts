// aurae.pods.v0.PodService: decode → validate → PodRuntime → response. No logic beyond mapping.
// Every call is authorized on the pod ({ pod, cell }: its name and its cell), so a tenant whose rules are scoped
// to pods ["nova-*"] (or to the pod's cell, e.g. cells ["web"]) runs, sees, stops, execs into and removes only
// those pods; List shows her only them. (Pod names are one label, top-level cells: a tenant's pods share a name
// prefix, `aer authz allow nova 'aurae.pods.v0.PodService/*' --pod 'nova-*'`; a "nova/*" cell scope allows none.)
// Run also declares who the containers run as (runAs, as CellService/Start does): root unless every container
// names the same numeric user, since the image's USER is known only after the pull and containers have no user
// namespace yet. Credentials in a Run request are used for that run's pulls only: never summarized or logged.
import type { ServerWritableStream } from '@grpc/grpc-js';
import type {
  ContainerStatus as ContainerStatusProto,
  Pod,
  PodServiceCreateContainerRequest,
  PodServiceCreateContainerResponse,
  PodServiceCreateSandboxRequest,
  PodServiceCreateSandboxResponse,
  PodServiceExecRequest,
  PodServicePortForwardRequest,
  PodServiceInspectRequest,
  PodServiceInspectResponse,
  PodServiceListRequest,
  PodServiceListResponse,
  PodServiceRemoveContainerRequest,
  PodServiceRemoveContainerResponse,
  PodServiceRemoveRequest,
  PodServiceRemoveResponse,
  PodServiceRunRequest,
  PodServiceRunResponse,
  PodServiceServer,
  PodServiceStartContainerRequest,
  PodServiceStartContainerResponse,
  PodServiceStopContainerRequest,
  PodServiceStopContainerResponse,
  PodServiceStopRequest,
  PodServiceStopResponse,
  PodStatus as PodStatusProto,
} from '../gen/aurae/pods/v0/pods';
import { AuraeError, toInt64 } from '../errors';
import { type Images, type PullAuth, type PullProgress, progressThrottle, progressToProto, validateAuth } from '../images';
import { type Resource, type RpcContext, bidiStream, serverStream, unary } from '../server';
import { DEFAULTS, RANGES, checkInt, checkLabel, invalid } from '../validation';
import { type ExecDeps, type ExecInput, type ExecTarget, type VmExecRelay, checkVmExec, runExec, validateExecStart } from './exec';
import type { ContainerStatus, PodRuntime, PodStatus } from './runtime';
import { type ContainerInput, type ContainerSpec, type PodInput, type PodSpec, validateContainerSpec, validatePodSpec, validateSandboxSpec } from './spec';
import { POD_VOLUMES_DIR } from './disk-images';
import { type SandboxedPodRuntime, vmPodName } from './vm-sandbox';
import { pumpPortForward, validatePortForwardStart } from './port-forward';
import net from 'node:net';

const SERVICE = 'aurae.pods.v0.PodService';

/** Most ports one pod may expose. */
export const MAX_EXPOSED_PORTS = 64;

export interface PodServiceDeps {
  runtime: Pick<PodRuntime, 'run' | 'list' | 'get' | 'stop' | 'remove'> & {
    /** Fetch fresh status where it lives elsewhere (VM pods: their child VMs); called before List and Inspect. */
    refresh?(name?: string): Promise<void>;
    /** Exec's paths and crun (PodRuntime.execTarget); without it Exec answers UNIMPLEMENTED. */
    execTarget?(pod: string, container: string): ExecTarget;
  } & Partial<Pick<PodRuntime, 'createSandbox' | 'createContainer' | 'startContainer' | 'stopContainer' | 'removeContainer'>>;
  /** Exec's process adapters and logger (tests); default: crun through node's spawn, ctx.log. */
  exec?: Partial<Omit<ExecDeps, 'targets'>>;
  /** Exec into VM-sandboxed pods, relayed to their child nodes (vm-agent.ts childExecRelay); without it: UNIMPLEMENTED. */
  vmExec?: VmExecRelay;
  /** The spec check; default validatePodSpec (names the bad field, throws INVALID_ARGUMENT). */
  validateSpec?(pod: Pod | undefined): PodSpec;
  /** The cell a pod lives in (the authorization resource); default: the pod's name (runtime.ts podCellSpec). */
  cellOf?(pod: string): string;
  /** Pulls with the request's credentials before the run (the runtime then finds the images stored). */
  images?: Pick<Images, 'pull'>;
  clock?: () => number;
}

/** What Run validated: the spec for the runtime (with its exposed ports, sorted) and the credentials for its pulls. */
export interface RunInput {
  spec: PodSpec;
  auth?: PullAuth;
}

/** The exposed ports: each 1..65535, no duplicates, at most MAX_EXPOSED_PORTS (sorted). */
export function validateExpose(field: string, ports: readonly number[] | undefined): number[] {
  const list = [...(ports ?? [])];
  if (list.length > MAX_EXPOSED_PORTS) throw invalid(field, `at most ${MAX_EXPOSED_PORTS} ports (got ${list.length})`);
  list.forEach((port, i) => checkInt(`${field}[${i}]`, port, [1, 65_535]));
  const seen = new Set<number>();
  list.forEach((port, i) => {
    if (seen.has(port)) throw invalid(`${field}[${i}]`, `port ${port} is listed twice`);
    seen.add(port);
  });
  return list.sort((a, b) => a - b);
}

/**
 * Run's request: the pod (the runtime's own check, its field names prefixed with "pod."), its ports and the
 * credentials. A missing pod is "pod: required".
 */
export function validateRunRequest(request: PodServiceRunRequest, validateSpec: (pod: Pod | undefined) => PodSpec = validatePodSpec): RunInput {
  if (!request.pod) throw invalid('pod', 'required: a pod with a name and at least one container');
  let spec: PodSpec;
  try {
    spec = validateSpec(request.pod);
  } catch (err) {
    throw prefixField(err, 'pod');
  }
  const expose = validateExpose('pod.expose', request.pod.expose);
  const auth = validateAuth('auth', request.auth);
  return { spec: expose.length ? { ...spec, expose } : spec, ...(auth ? { auth } : {}) };
}

/** An INVALID_ARGUMENT "field: …" from a nested validator, as "prefix.field: …" (other errors unchanged). */
function prefixField(err: unknown, prefix: string): unknown {
  if (!(err instanceof AuraeError) || err.code !== 'INVALID_ARGUMENT' || err.message.startsWith(`${prefix}.`) || err.message.startsWith(`${prefix}:`)) return err;
  return new AuraeError('INVALID_ARGUMENT', `${prefix}.${err.message}`, { cause: err });
}

/** Who the containers run as, for the policy: one numeric user shared by every container, else root. */
export function podRunAs(spec: Pick<PodSpec, 'containers'>): { uid: number; gid: number } {
  const users = new Set(spec.containers.map((c) => c.user ?? ''));
  const [only] = [...users];
  const m = users.size === 1 ? /^(\d{1,10})(?::(\d{1,10}))?$/.exec(only ?? '') : null;
  if (!m) return { uid: 0, gid: 0 };
  const uid = Number(m[1]);
  const gid = m[2] === undefined ? uid : Number(m[2]);
  return uid <= RANGES.id[1] && gid <= RANGES.id[1] ? { uid, gid } : { uid: 0, gid: 0 };
}

export function createPodService(ctx: RpcContext, deps: PodServiceDeps): PodServiceServer {
  const { runtime } = deps;
  const cellOf = deps.cellOf ?? ((pod: string) => pod);
  const clock = deps.clock ?? Date.now;
  const podResource = (name: string): Resource => ({ pod: name, cell: cellOf(name) });
  const podName = (request: { podName: string }) => checkLabel('pod_name', request.podName);

  return {
    run: serverStream(ctx, {
      method: `${SERVICE}/Run`,
      access: 'admin',
      validate: (request: PodServiceRunRequest) => validateRunRequest(request, deps.validateSpec ?? validatePodSpec),
      summary: ({ spec }) => `${spec.name}: ${spec.containers.map((c) => `${c.name}=${c.image}`).join(', ')}`,
      resource: ({ spec }) => ({ ...podResource(spec.name), runAs: podRunAs(spec) }),
      run: async ({ spec, auth }, call: ServerWritableStream<PodServiceRunRequest, PodServiceRunResponse>) => {
        const report = progressThrottle<PullProgress & { image: string }>(clock, ({ image, ...progress }) => {
          if (!call.cancelled) call.write({ pull: { image, progress: progressToProto(progress) } });
        });
        // With credentials: pull here (the runtime's own pulls use the node config's), then run.
        if (auth && deps.images) {
          for (const image of new Set(spec.containers.map((c) => c.image))) {
            await deps.images.pull(image, { auth, onProgress: (p) => report({ ...p, image }) });
          }
        }
        const status = await runtime.run(spec, { onProgress: report });
        if (call.cancelled) return;
        call.write({ status: podStatusToProto(status) });
        call.end();
      },
    }),
    list: unary(ctx, {
      method: `${SERVICE}/List`,
      access: 'read',
      validate: (_request: PodServiceListRequest) => undefined,
      resource: () => 'each',
      run: async (_, _caller, access): Promise<PodServiceListResponse> => {
        await runtime.refresh?.();
        return {
          pods: runtime
            .list()
            .filter((pod) => access.sees(podResource(pod.name)))
            .sort((a, b) => a.name.localeCompare(b.name))
            .map(podStatusToProto),
        };
      },
    }),
    inspect: unary(ctx, {
      method: `${SERVICE}/Inspect`,
      access: 'read',
      validate: (request: PodServiceInspectRequest) => podName(request),
      resource: podResource,
      run: async (name): Promise<PodServiceInspectResponse> => {
        await runtime.refresh?.(name);
        return { pod: podStatusToProto(requirePod(runtime, name)) };
      },
    }),
    stop: unary(ctx, {
      method: `${SERVICE}/Stop`,
      access: 'admin',
      validate: (request: PodServiceStopRequest) => ({
        name: podName(request),
        graceMs: checkInt('grace_period_ms', request.gracePeriodMs, RANGES.stopGraceMs) ?? DEFAULTS.stopGraceMs,
      }),
      summary: ({ name }) => name,
      resource: ({ name }) => podResource(name),
      run: async ({ name, graceMs }): Promise<PodServiceStopResponse> => ({ pod: podStatusToProto(await runtime.stop(name, graceMs)) }),
    }),
    remove: unary(ctx, {
      method: `${SERVICE}/Remove`,
      access: 'admin',
      validate: (request: PodServiceRemoveRequest) => ({ name: podName(request), force: request.force === true }),
      summary: ({ name, force }) => (force ? `${name} (force)` : name),
      resource: ({ name }) => podResource(name),
      run: async ({ name, force }): Promise<PodServiceRemoveResponse> => {
        await runtime.remove(name, { force });
        return {};
      },
    }),
    // The incremental API (CreateSandbox … RemoveContainer): what a parent asks of its VM sandbox's agent.
    createSandbox: unary(ctx, {
      method: `${SERVICE}/CreateSandbox`,
      access: 'admin',
      validate: (request: PodServiceCreateSandboxRequest) => validateSandboxRequest(request),
      summary: (spec) => spec.name,
      resource: (spec) => podResource(spec.name),
      run: async (spec): Promise<PodServiceCreateSandboxResponse> => ({ pod: podStatusToProto(await incremental(runtime, 'createSandbox')(spec)) }),
    }),
    createContainer: unary(ctx, {
      method: `${SERVICE}/CreateContainer`,
      access: 'admin',
      validate: (request: PodServiceCreateContainerRequest) => ({ pod: podName(request), container: validateCreateContainerRequest(request) }),
      summary: ({ pod, container }) => `${pod}/${container.name}=${container.image}`,
      resource: ({ pod, container }) => ({ ...podResource(pod), runAs: podRunAs({ containers: [container] }) }),
      run: async ({ pod, container }): Promise<PodServiceCreateContainerResponse> => ({
        container: containerStatusToProto(await incremental(runtime, 'createContainer')(pod, container)),
      }),
    }),
    startContainer: unary(ctx, {
      method: `${SERVICE}/StartContainer`,
      access: 'admin',
      validate: (request: PodServiceStartContainerRequest) => ({ pod: podName(request), container: checkLabel('container_name', request.containerName) }),
      summary: ({ pod, container }) => `${pod}/${container}`,
      resource: ({ pod }) => podResource(pod),
      run: async ({ pod, container }): Promise<PodServiceStartContainerResponse> => ({
        container: containerStatusToProto(await incremental(runtime, 'startContainer')(pod, container)),
      }),
    }),
    stopContainer: unary(ctx, {
      method: `${SERVICE}/StopContainer`,
      access: 'admin',
      validate: (request: PodServiceStopContainerRequest) => ({
        pod: podName(request),
        container: checkLabel('container_name', request.containerName),
        graceMs: checkInt('grace_period_ms', request.gracePeriodMs, RANGES.stopGraceMs) ?? DEFAULTS.stopGraceMs,
      }),
      summary: ({ pod, container }) => `${pod}/${container}`,
      resource: ({ pod }) => podResource(pod),
      run: async ({ pod, container, graceMs }): Promise<PodServiceStopContainerResponse> => ({
        container: containerStatusToProto(await incremental(runtime, 'stopContainer')(pod, container, graceMs)),
      }),
    }),
    removeContainer: unary(ctx, {
      method: `${SERVICE}/RemoveContainer`,
      access: 'admin',
      validate: (request: PodServiceRemoveContainerRequest) => ({ pod: podName(request), container: checkLabel('container_name', request.containerName), force: request.force === true }),
      summary: ({ pod, container, force }) => `${pod}/${container}${force ? ' (force)' : ''}`,
      resource: ({ pod }) => podResource(pod),
      run: async ({ pod, container, force }): Promise<PodServiceRemoveContainerResponse> => {
        await incremental(runtime, 'removeContainer')(pod, container, { force });
        return {};
      },
    }),
    exec: bidiStream(ctx, {
      method: `${SERVICE}/Exec`,
      access: 'admin',
      validate: (request: PodServiceExecRequest) => validateExecStart(request.start),
      // The program only: its arguments may carry secrets.
      summary: (input) => `${input.pod}${input.container ? `/${input.container}` : ''}: ${input.command[0]}`,
      resource: (input) => ({ ...podResource(input.pod), runAs: execRunAs(input, runtime.get(input.pod)?.spec) }),
      run: (input, first, call) => {
        const pod = runtime.get(input.pod);
        if (pod?.sandbox === 'vm') {
          // Its containers run in its child VM: the child's PodService/Exec runs it (same pod and container names).
          if (!deps.vmExec) throw new AuraeError('UNIMPLEMENTED', `pod "${input.pod}": exec into a VM-sandboxed pod is not available on this node`);
          checkVmExec(input.pod, pod.state);
          return deps.vmExec(vmPodName(input.pod), first, call);
        }
        const execTarget = runtime.execTarget?.bind(runtime);
        if (!execTarget) throw new AuraeError('UNIMPLEMENTED', 'PodService/Exec is not available on this node');
        return runExec({ log: ctx.log, ...deps.exec, targets: { get: (pod) => runtime.get(pod), execTarget } }, input, first, call);
      },
    }),
    portForward: bidiStream(ctx, {
      method: `${SERVICE}/PortForward`,
      access: 'admin',
      validate: (request: PodServicePortForwardRequest) => validatePortForwardStart(request),
      summary: ({ pod, port }) => `${pod}:${port}`,
      resource: ({ pod }) => podResource(pod),
      run: (input, first, call) => {
        const what = `pod "${input.pod}": port ${input.port}`;
        const pod = runtime.get(input.pod);
        if (!pod) throw new AuraeError('NOT_FOUND', `pod "${input.pod}" does not exist: see aer pod list for the pods there are`);
        // A VM pod's network is inside its child VM: the child connects (sandboxedPodRuntime openPort).
        const elsewhere = (runtime as Partial<Pick<SandboxedPodRuntime, 'openPort'>>).openPort?.(input.pod, input.port) ?? null;
        if (elsewhere) return pumpPortForward(elsewhere, what, first, call);
        if (pod.state !== 'running' || !pod.ip) throw new AuraeError('FAILED_PRECONDITION', `pod "${input.pod}" is ${pod.state} and has ${pod.ip ? `address ${pod.ip}` : 'no address'}: port-forward needs a running pod with its own network`);
        return pumpPortForward(net.connect({ host: pod.ip, port: input.port }), what, first, call);
      },
    }),
  };
}

/**
 * Who an exec'd process runs as, for the policy: the request's numeric user, else the container's spec user when
 * numeric, else root (a user name or the image's USER is resolved only inside the container).
 */
export function execRunAs(input: Pick<ExecInput, 'container' | 'user'>, spec: Pick<PodSpec, 'containers'> | undefined): { uid: number; gid: number } {
  const container = input.container === null ? (spec?.containers.length === 1 ? spec.containers[0] : undefined) : spec?.containers.find((c) => c.name === input.container);
  return podRunAs({ containers: [{ user: input.user ?? container?.user ?? null } as PodSpec['containers'][number]] });
}

type IncrementalMethod = 'createSandbox' | 'createContainer' | 'startContainer' | 'stopContainer' | 'removeContainer';

/** The runtime's incremental method, bound (UNIMPLEMENTED when this node's runtime has none). */
function incremental<K extends IncrementalMethod>(runtime: Partial<Pick<PodRuntime, IncrementalMethod>>, method: K): PodRuntime[K] {
  const fn = runtime[method];
  if (!fn) throw new AuraeError('UNIMPLEMENTED', `PodService/${method[0]!.toUpperCase()}${method.slice(1)} is not available on this node`);
  return fn.bind(runtime) as PodRuntime[K];
}

/** CreateSandbox's request: the pod without containers (field names prefixed with "pod."). */
export function validateSandboxRequest(request: PodServiceCreateSandboxRequest): PodSpec {
  if (!request.pod) throw invalid('pod', 'required: a pod with a name (and no containers)');
  if (request.pod.containers.length) throw invalid('pod.containers', `must be empty (got ${request.pod.containers.length}): add containers with CreateContainer`);
  const input: PodInput = { ...request.pod };
  for (const [key, value] of Object.entries(extensionsOf(request.extensionsJson ?? '', POD_EXTENSIONS))) (input as unknown as Record<string, unknown>)[key] = value;
  let spec: PodSpec;
  try {
    spec = validateSandboxSpec(input);
  } catch (err) {
    throw prefixField(err, 'pod');
  }
  const expose = validateExpose('pod.expose', request.pod.expose);
  return expose.length ? { ...spec, expose } : spec;
}

/**
 * The extension fields extensions_json may carry (ContainerInput's). Host path mounts only of the VM sandbox's
 * volumes share (POD_VOLUMES_DIR: the parent of a VM-sandboxed pod binds the container's host paths there): no
 * caller may bind other files of this node.
 */
const CONTAINER_EXTENSIONS = ['security', 'resources', 'sysctls', 'mounts'] as const;

/** CreateContainer's container: the API's Container plus the extensions from extensions_json. */
export function validateCreateContainerRequest(request: Pick<PodServiceCreateContainerRequest, 'container' | 'extensionsJson'>): ContainerSpec {
  if (!request.container) throw invalid('container', 'required: a container with a name and an image');
  const input: ContainerInput = { ...request.container };
  for (const [key, value] of Object.entries(extensionsOf(request.extensionsJson ?? '', CONTAINER_EXTENSIONS))) {
    if (key === 'mounts') {
      if (!Array.isArray(value)) throw invalid('extensions_json.mounts', 'must be a JSON array');
      value.forEach((m: { hostPath?: unknown }, i) => {
        // A volume of one container (POD_VOLUMES_DIR/<container>/<i>), never the share itself.
        const hostPath = typeof m?.hostPath === 'string' ? m.hostPath : '';
        const inShare = hostPath.startsWith(`${POD_VOLUMES_DIR}/`) ? hostPath.slice(POD_VOLUMES_DIR.length + 1) : '';
        if (!/^[^/]+\/[^/]+/.test(inShare)) {
          throw invalid(`extensions_json.mounts[${i}].hostPath`, `only paths ${POD_VOLUMES_DIR}/<container>/<n> (a VM sandbox's volumes, shared by its parent) may be mounted through this API`);
        }
      });
      input.mounts = value as ContainerInput['mounts'];
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(`extensions_json.${key}`, 'must be a JSON object');
    (input as unknown as Record<string, unknown>)[key] = value;
  }
  return validateContainerSpec(input, 'container');
}

/** The pod extensions CreateSandbox's extensions_json may carry. */
const POD_EXTENSIONS = ['hostname', 'dns'] as const;

/** extensions_json: '' (none) or a JSON object with only the `allowed` keys. */
function extensionsOf(text: string, allowed: readonly string[]): Record<string, unknown> {
  if (text === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw invalid('extensions_json', `not JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalid('extensions_json', 'must be a JSON object');
  for (const key of Object.keys(parsed)) if (!allowed.includes(key)) throw invalid(`extensions_json.${key}`, `not an extension: ${allowed.join(', ')}`);
  return parsed as Record<string, unknown>;
}

/** A pod's extensions as CreateSandbox's extensions_json ('' when it has none). */
export function podExtensionsJson(spec: PodSpec): string {
  const ext: Record<string, unknown> = {};
  for (const key of POD_EXTENSIONS) if (spec[key] !== undefined) ext[key] = spec[key];
  return Object.keys(ext).length ? JSON.stringify(ext) : '';
}

/** A container's extensions as CreateContainer's extensions_json ('' when it has none; mounts: see CONTAINER_EXTENSIONS). */
export function containerExtensionsJson(c: ContainerSpec): string {
  const ext: Record<string, unknown> = {};
  for (const key of CONTAINER_EXTENSIONS) if (c[key] !== undefined) ext[key] = c[key];
  return Object.keys(ext).length ? JSON.stringify(ext) : '';
}

/** The runtime's ContainerSpec as the API's Container (its extensions: containerExtensionsJson). */
export function containerSpecToProto(c: ContainerSpec): Pod['containers'][number] {
  return {
    name: c.name,
    image: c.image,
    command: [...(c.command ?? [])],
    args: [...(c.args ?? [])],
    env: { ...c.env },
    workingDir: c.workingDir ?? '',
    user: c.user ?? '',
    readOnlyRootfs: c.readOnlyRootfs,
  };
}

function requirePod(runtime: Pick<PodRuntime, 'get'>, name: string): PodStatus {
  const pod = runtime.get(name);
  if (!pod) throw new AuraeError('NOT_FOUND', `pod "${name}" does not exist: run it first (aer pod run ${name} --image IMAGE)`);
  return pod;
}

/** The runtime's PodSpec as the API's Pod. */
export function podSpecToProto(spec: PodSpec): Pod {
  const limits = spec.limits;
  return {
    name: spec.name,
    sandbox: spec.sandbox,
    containers: spec.containers.map(containerSpecToProto),
    env: { ...spec.env },
    restart: spec.restart,
    limits: {
      ...(limits?.memoryMax != null ? { memoryMax: toInt64(limits.memoryMax) } : {}),
      ...(limits?.pidsMax != null ? { pidsMax: toInt64(limits.pidsMax) } : {}),
      ...(limits?.cpuWeight != null ? { cpuWeight: toInt64(limits.cpuWeight) } : {}),
    },
    expose: [...(spec.expose ?? [])],
    publish: (spec.publish ?? []).map((m) => ({ nodePort: m.nodePort, podPort: m.podPort, protocol: m.protocol })),
  };
}

export function containerStatusToProto(c: ContainerStatus): ContainerStatusProto {
  return {
    name: c.name,
    image: c.image,
    imageDigest: c.imageDigest,
    state: c.state,
    pid: c.pid ?? 0,
    exit: c.exit
      ? { ...(c.exit.code !== null ? { code: c.exit.code } : {}), ...(c.exit.signal !== null ? { signal: c.exit.signal } : {}), oomKilled: c.exit.oomKilled }
      : undefined,
    restarts: c.restarts,
    ...(c.createdAt != null ? { createdAt: toInt64(c.createdAt) } : {}),
    ...(c.startedAt != null ? { startedAt: toInt64(c.startedAt) } : {}),
    ...(c.finishedAt != null ? { finishedAt: toInt64(c.finishedAt) } : {}),
  };
}

/** The runtime's PodStatus (with its spec when the runtime reports it) as the API's. */
export function podStatusToProto(status: Omit<PodStatus, 'spec' | 'ip'> & { spec?: PodSpec; ip?: string | null }): PodStatusProto {
  return {
    name: status.name,
    sandbox: status.sandbox,
    state: status.state,
    containers: status.containers.map(containerStatusToProto),
    createdAt: toInt64(status.createdAt),
    spec: status.spec ? podSpecToProto(status.spec) : undefined,
    ip: status.ip ?? '',
  };
}
