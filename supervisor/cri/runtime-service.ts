// runtime.v1.RuntimeService: decode → CriRuntime (cri-runtime.ts, over the pods runtime) → CRI answer; errors to
// a status in one place (rpc.ts). Served: Version, Status, RuntimeConfig, UpdateRuntimeConfig, the pod sandbox
// and container lifecycles, ExecSync, Exec, Attach and PortForward (URLs on the streaming server), the stats, and
// GetContainerEvents, UpdateContainerResources, ListMetricDescriptors and ListPodSandboxMetrics (cri-metrics.ts).
// What stays UNIMPLEMENTED names itself and says why (NOT_SERVED): CheckpointContainer. Without a pods runtime (a host
// without one) only Version, Status, RuntimeConfig answer and the rest is UNIMPLEMENTED (NOT_YET).
import type { ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { AuraeError } from '../errors';
import {
  type AttachRequest,
  type AttachResponse,
  CgroupDriver,
  type ContainerEventResponse,
  type ContainerStatsRequest,
  type ContainerStatsResponse,
  type ContainerStatusRequest,
  type ContainerStatusResponse,
  type CreateContainerRequest,
  type CreateContainerResponse,
  type ExecRequest,
  type ExecResponse,
  type ExecSyncRequest,
  type ExecSyncResponse,
  type GetEventsRequest,
  type ListContainerStatsRequest,
  type ListContainerStatsResponse,
  type ListContainersRequest,
  type ListMetricDescriptorsRequest,
  type ListMetricDescriptorsResponse,
  type ListPodSandboxMetricsRequest,
  type ListPodSandboxMetricsResponse,
  type ListContainersResponse,
  type ListPodSandboxRequest,
  type ListPodSandboxResponse,
  type ListPodSandboxStatsRequest,
  type ListPodSandboxStatsResponse,
  type PodSandboxStatsRequest,
  type PodSandboxStatsResponse,
  type PodSandboxStatusRequest,
  type PodSandboxStatusResponse,
  type PortForwardRequest,
  type PortForwardResponse,
  type RemoveContainerRequest,
  type RemovePodSandboxRequest,
  type ReopenContainerLogRequest,
  type RunPodSandboxRequest,
  type RunPodSandboxResponse,
  type RuntimeCondition,
  type RuntimeConfigResponse,
  RuntimeServiceService,
  type StartContainerRequest,
  type StatusRequest,
  type StatusResponse,
  type StopContainerRequest,
  type StopPodSandboxRequest,
  type UpdateContainerResourcesRequest,
  type UpdateRuntimeConfigRequest,
  type VersionRequest,
  type VersionResponse,
} from '../gen/runtime/v1/api';
import type { Logger } from '../log';
import type { CriExec } from './cri-exec';
import { idMatches, labelsMatch } from './cri-mapping';
import type { CriRuntime } from './cri-runtime';
import type { CriMetrics } from './cri-metrics';
import type { CriStats } from './cri-stats';
import { criStatus, criUnary, unimplementedStatus, withUnimplemented } from './rpc';

const SERVICE = 'runtime.v1.RuntimeService';

/** What Version reports as the runtime's name (crictl info, kubectl get node -o wide). */
export const CRI_RUNTIME_NAME = 'aurae';
/** The CRI API version served. */
export const CRI_API_VERSION = 'v1';
/** VersionResponse.version: the kubelet runtime API version field, which runtimes fill with "0.1.0". */
export const KUBELET_API_VERSION = '0.1.0';

/** Why every method but Version, Status and RuntimeConfig answers UNIMPLEMENTED when no pods runtime is given. */
export const NOT_YET = 'this auraed serves no pods runtime (cgroup v2 and crun are needed): only Version, Status, RuntimeConfig and the ImageService answer';

/** Why the methods not served even with a pods runtime answer UNIMPLEMENTED. */
export const NOT_SERVED: Record<string, string> = {
  checkpointContainer: 'checkpointing needs CRIU, which this node does not have',
};

/** The runtime handlers Status reports ("" is the default: the cell sandbox). */
export const HANDLER_NAMES = ['', 'cell', 'vm'] as const;

/** Whether the pods runtime can run containers here, and if not why (a RuntimeReady condition). */
export interface RuntimeReadiness {
  ready: boolean;
  /** CamelCase, when not ready. */
  reason?: string;
  message?: string;
}

/** The streaming server's URL makers (supervisor/cri/streaming, helper D). */
export interface CriStreaming {
  getExec(req: ExecRequest): { url: string };
  getAttach(req: AttachRequest): { url: string };
  getPortForward(req: PortForwardRequest): { url: string };
}

export interface CriRuntimeServiceDeps {
  /** auraed's version (semver): runtime_version. */
  version: string;
  /** Asked on every Status call. */
  runtimeReadiness: () => RuntimeReadiness;
  log: Logger;
  /** Sandboxes and containers; absent: only Version, Status, RuntimeConfig are served. */
  runtime?: CriRuntime;
  exec?: CriExec;
  stats?: CriStats;
  /** The CRI metrics (cAdvisor's names); absent: ListMetricDescriptors / ListPodSandboxMetrics are UNIMPLEMENTED. */
  metrics?: CriMetrics;
  streaming?: CriStreaming;
  /** The node's pod network (pods.network.cidr): what UpdateRuntimeConfig compares kubelet's pod CIDR with. */
  podCidr?: string;
}

/** The conditions kubelet requires: RuntimeReady from the pods runtime, NetworkReady once sandboxes are served. */
export function runtimeConditions(readiness: RuntimeReadiness, sandboxesServed = false): RuntimeCondition[] {
  return [
    { type: 'RuntimeReady', status: readiness.ready, reason: readiness.ready ? '' : (readiness.reason ?? 'RuntimeNotReady'), message: readiness.ready ? '' : (readiness.message ?? '') },
    sandboxesServed
      ? { type: 'NetworkReady', status: true, reason: '', message: '' }
      : {
          type: 'NetworkReady',
          status: false,
          reason: 'NetworkPluginNotReady',
          message: 'pod sandboxes are not served over the CRI yet by this auraed (it has no pods runtime), so neither is their network',
        },
  ];
}

export function createCriRuntimeService(deps: CriRuntimeServiceDeps): UntypedServiceImplementation {
  const { log } = deps;
  const m = (name: string) => `${SERVICE}/${name}`;
  const served = ['Version', 'Status', 'RuntimeConfig', 'ImageService'];
  const base: UntypedServiceImplementation = {
    version: criUnary(m('Version'), log, (_request: VersionRequest): VersionResponse => ({
      version: KUBELET_API_VERSION,
      runtimeName: CRI_RUNTIME_NAME,
      runtimeVersion: deps.version,
      runtimeApiVersion: CRI_API_VERSION,
    })),
    status: criUnary(m('Status'), log, (request: StatusRequest): StatusResponse => {
      const readiness = deps.runtimeReadiness();
      return {
        status: { conditions: runtimeConditions(readiness, deps.runtime !== undefined) },
        info: request.verbose
          ? {
              config: JSON.stringify({
                runtimeName: CRI_RUNTIME_NAME,
                version: deps.version,
                cgroupDriver: 'cgroupfs',
                runtimeHandlers: { '': 'cell', cell: 'a cell of this node (namespaces + cgroup; crun)', vm: 'a child microVM per pod' },
                podCidr: deps.podCidr ?? null,
                streaming: deps.streaming !== undefined,
                served: deps.runtime ? 'RuntimeService (see UNIMPLEMENTED answers for the rest), ImageService' : served,
              }),
            }
          : {},
        // Neither handler supports recursive read-only mounts (crun 1.8) nor user namespaces yet.
        runtimeHandlers: (deps.runtime ? HANDLER_NAMES : ([''] as const)).map((name) => ({ name, features: { recursiveReadOnlyMounts: false, userNamespaces: false } })),
        features: { supplementalGroupsPolicy: false },
      };
    }),
    // auraed writes cgroupfs directly (supervisor/cgroup), no systemd.
    runtimeConfig: criUnary(m('RuntimeConfig'), log, (): RuntimeConfigResponse => ({ linux: { cgroupDriver: CgroupDriver.CGROUPFS } })),
  };
  const rt = deps.runtime;
  if (!rt) return withUnimplemented(RuntimeServiceService, base, NOT_YET);

  const exec = deps.exec;
  const stats = deps.stats;
  const metrics = deps.metrics;
  const streaming = deps.streaming;
  const need = <T>(what: T | undefined, method: string, why: string): T => {
    if (what === undefined) throw new AuraeError('UNIMPLEMENTED', `${SERVICE}/${method} is not implemented by auraed yet: ${why}`);
    return what;
  };
  const noStreaming = 'the streaming server (supervisor/cri/streaming) is not running in this auraed';
  /** A sandbox's running containers and the pid of one of them (its network namespace is the pod's). */
  const runningOf = (sandboxId: string) => {
    const resolved = rt.containersNow({ filter: { id: '', podSandboxId: sandboxId, labelSelector: {}, state: { state: 1 } } }).map((c) => rt.requireContainer(c.id));
    // A VM sandbox's pids are its child's, not this node's: its network lives inside the VM (not reported).
    const local = resolved[0]?.sandbox.runtimeHandler !== 'vm';
    return { records: resolved.map((c) => c.record), pid: local ? (resolved.find((c) => c.status?.pid)?.status?.pid ?? null) : null };
  };

  const implemented: UntypedServiceImplementation = {
    ...base,
    updateRuntimeConfig: criUnary(m('UpdateRuntimeConfig'), log, (request: UpdateRuntimeConfigRequest) => {
      const cidr = request.runtimeConfig?.networkConfig?.podCidr ?? '';
      // Pod addresses come from the node config's pods.network.cidr (one bridge per node, no CNI): kubelet's
      // pod CIDR is noted, not applied.
      if (cidr !== '') {
        if (deps.podCidr !== undefined && deps.podCidr !== cidr) {
          log.warn("kubelet's pod CIDR differs from the node's pods.network.cidr: pods keep getting addresses from pods.network.cidr; set it to the CIDR kubelet was given", { kubelet: cidr, node: deps.podCidr });
        } else log.info("kubelet's pod CIDR", { podCidr: cidr });
      }
      return {};
    }),
    runPodSandbox: criUnary(m('RunPodSandbox'), log, async (request: RunPodSandboxRequest): Promise<RunPodSandboxResponse> => ({ podSandboxId: await rt.runPodSandbox(request) })),
    stopPodSandbox: criUnary(m('StopPodSandbox'), log, async (request: StopPodSandboxRequest) => {
      await rt.stopPodSandbox(request.podSandboxId);
      return {};
    }),
    removePodSandbox: criUnary(m('RemovePodSandbox'), log, async (request: RemovePodSandboxRequest) => {
      const sandbox = rt.findSandbox(request.podSandboxId);
      await rt.removePodSandbox(request.podSandboxId);
      if (sandbox) stats?.samples.forget(`${sandbox.pod}/`);
      return {};
    }),
    podSandboxStatus: criUnary(m('PodSandboxStatus'), log, (request: PodSandboxStatusRequest): Promise<PodSandboxStatusResponse> => rt.podSandboxStatus(request.podSandboxId, request.verbose)),
    listPodSandbox: criUnary(m('ListPodSandbox'), log, async (request: ListPodSandboxRequest): Promise<ListPodSandboxResponse> => ({ items: await rt.listPodSandbox(request) })),
    createContainer: criUnary(m('CreateContainer'), log, async (request: CreateContainerRequest): Promise<CreateContainerResponse> => ({ containerId: await rt.createContainer(request) })),
    startContainer: criUnary(m('StartContainer'), log, async (request: StartContainerRequest) => {
      await rt.startContainer(request.containerId);
      return {};
    }),
    stopContainer: criUnary(m('StopContainer'), log, async (request: StopContainerRequest) => {
      await rt.stopContainer(request.containerId, request.timeout);
      return {};
    }),
    removeContainer: criUnary(m('RemoveContainer'), log, async (request: RemoveContainerRequest) => {
      await rt.removeContainer(request.containerId);
      return {};
    }),
    listContainers: criUnary(m('ListContainers'), log, async (request: ListContainersRequest): Promise<ListContainersResponse> => ({ containers: await rt.listContainers(request) })),
    containerStatus: criUnary(m('ContainerStatus'), log, (request: ContainerStatusRequest): Promise<ContainerStatusResponse> => rt.containerStatus(request.containerId, request.verbose)),
    updateContainerResources: criUnary(m('UpdateContainerResources'), log, async (request: UpdateContainerResourcesRequest) => {
      await rt.updateContainerResources(request);
      return {};
    }),
    reopenContainerLog: criUnary(m('ReopenContainerLog'), log, async (request: ReopenContainerLogRequest) => {
      await rt.reopenContainerLog(request.containerId);
      return {};
    }),
    execSync: criUnary(m('ExecSync'), log, async (request: ExecSyncRequest): Promise<ExecSyncResponse> =>
      need(exec, 'ExecSync', 'no exec backend').execSync(request.containerId, request.cmd, request.timeout),
    ),
    exec: criUnary(m('Exec'), log, async (request: ExecRequest): Promise<ExecResponse> => {
      const server = need(streaming, 'Exec', noStreaming);
      const c = await rt.requireContainerNow(request.containerId);
      if (request.cmd.length === 0) throw new AuraeError('INVALID_ARGUMENT', 'cmd: required: the program and its arguments');
      if (!request.stdin && !request.stdout && !request.stderr) throw new AuraeError('INVALID_ARGUMENT', 'stdin, stdout, stderr: at least one must be requested');
      if (request.tty && request.stderr) throw new AuraeError('INVALID_ARGUMENT', 'stderr: with tty there is no separate stderr (it is part of stdout)');
      if (c.status?.state !== 'running') throw new AuraeError('FAILED_PRECONDITION', `container "${c.record.id}" is not running (${c.status?.state ?? 'missing'}): exec needs a running container`);
      return server.getExec({ ...request, containerId: c.record.id });
    }),
    // Attach (helper T): the container's terminal or kept stdin, and its live output (container-stdio.ts).
    attach: criUnary(m('Attach'), log, async (request: AttachRequest): Promise<AttachResponse> => {
      const server = need(streaming, 'Attach', noStreaming);
      const c = await rt.requireContainerNow(request.containerId);
      if (!request.stdin && !request.stdout && !request.stderr) throw new AuraeError('INVALID_ARGUMENT', 'stdin, stdout, stderr: at least one must be requested');
      if (request.tty && request.stderr) throw new AuraeError('INVALID_ARGUMENT', 'stderr: with tty there is no separate stderr (it is part of stdout)');
      if (c.status?.state !== 'running') throw new AuraeError('FAILED_PRECONDITION', `container "${c.record.id}" is not running (${c.status?.state ?? 'missing'}): attach needs a running container`);
      if (request.stdin && !c.record.extra.stdio?.stdin) throw new AuraeError('FAILED_PRECONDITION', `container "${c.record.id}" was created without stdin: attach without stdin, or create it with config.stdin`);
      return server.getAttach({ ...request, containerId: c.record.id });
    }),
    portForward: criUnary(m('PortForward'), log, (request: PortForwardRequest): PortForwardResponse => {
      const server = need(streaming, 'PortForward', noStreaming);
      const sandbox = rt.requireSandbox(request.podSandboxId);
      request.port.forEach((p, i) => {
        if (p < 1 || p > 65_535) throw new AuraeError('INVALID_ARGUMENT', `port[${i}]: ${p} is not a port: 1..65535`);
      });
      return server.getPortForward({ ...request, podSandboxId: sandbox.id });
    }),
    containerStats: criUnary(m('ContainerStats'), log, async (request: ContainerStatsRequest): Promise<ContainerStatsResponse> => {
      const c = rt.requireContainer(request.containerId);
      const [s] = await need(stats, 'ContainerStats', 'no metrics reader').containers([{ sandbox: c.sandbox, record: c.record }]);
      return { stats: s };
    }),
    listContainerStats: criUnary(m('ListContainerStats'), log, async (request: ListContainerStatsRequest): Promise<ListContainerStatsResponse> => {
      const f = request.filter;
      const sandboxes = new Map(rt.sandboxes().map((s) => [s.id, s]));
      // kubelet asks for the stats of running containers: the others have no cgroup to read.
      const running = new Set(rt.containersNow({}).filter((c) => c.state === 1).map((c) => c.id));
      const items = rt
        .containersNow({})
        .filter((c) => running.has(c.id) && idMatches(f?.id, c.id) && idMatches(f?.podSandboxId, c.podSandboxId) && labelsMatch(f?.labelSelector, c.labels))
        .map((c) => rt.requireContainer(c.id))
        .map((c) => ({ sandbox: sandboxes.get(c.sandbox.id)!, record: c.record }));
      return { stats: await need(stats, 'ListContainerStats', 'no metrics reader').containers(items) };
    }),
    podSandboxStats: criUnary(m('PodSandboxStats'), log, async (request: PodSandboxStatsRequest): Promise<PodSandboxStatsResponse> => {
      const sandbox = rt.requireSandbox(request.podSandboxId);
      const running = runningOf(sandbox.id);
      return { stats: await need(stats, 'PodSandboxStats', 'no metrics reader').sandbox(sandbox, running.records, running.pid) };
    }),
    listPodSandboxStats: criUnary(m('ListPodSandboxStats'), log, async (request: ListPodSandboxStatsRequest): Promise<ListPodSandboxStatsResponse> => {
      const f = request.filter;
      const reader = need(stats, 'ListPodSandboxStats', 'no metrics reader');
      const ready = (await rt.listPodSandbox({})).filter((s) => s.state === 0 && idMatches(f?.id, s.id) && labelsMatch(f?.labelSelector, s.labels));
      const out = [];
      for (const item of ready) {
        const sandbox = rt.requireSandbox(item.id);
        const running = runningOf(sandbox.id);
        out.push(await reader.sandbox(sandbox, running.records, running.pid));
      }
      return { stats: out };
    }),
    listMetricDescriptors: criUnary(m('ListMetricDescriptors'), log, (_request: ListMetricDescriptorsRequest): ListMetricDescriptorsResponse => ({
      descriptors: need(metrics, 'ListMetricDescriptors', 'no metrics reader').descriptors(),
    })),
    listPodSandboxMetrics: criUnary(m('ListPodSandboxMetrics'), log, async (_request: ListPodSandboxMetricsRequest): Promise<ListPodSandboxMetricsResponse> => {
      const reader = need(metrics, 'ListPodSandboxMetrics', 'no metrics reader');
      const ready = (await rt.listPodSandbox({})).filter((s) => s.state === 0);
      const podMetrics = [];
      for (const item of ready) {
        const running = runningOf(item.id);
        podMetrics.push(await reader.sandbox(rt.requireSandbox(item.id), running.records, running.pid));
      }
      return { podMetrics };
    }),
    getContainerEvents: (call: ServerWritableStream<GetEventsRequest, ContainerEventResponse>) => {
      const onEvent = (event: ContainerEventResponse) => {
        if (!call.cancelled) call.write(event);
      };
      rt.containerEvents.on('event', onEvent);
      const stop = () => rt.containerEvents.off('event', onEvent);
      call.on('cancelled', stop);
      call.on('close', stop);
      call.on('error', (err: unknown) => {
        stop();
        log.debug('GetContainerEvents stream ended', { err: criStatus(err, log, m('GetContainerEvents')).details });
      });
    },
  };
  // CheckpointContainer and the metrics: each with its own reason.
  for (const [name, why] of Object.entries(NOT_SERVED)) {
    const method = (RuntimeServiceService as Record<string, { path: string }>)[name]!;
    const refusal = unimplementedStatus(method.path, why);
    implemented[name] = ((_call: unknown, callback: (err: unknown) => void) => callback(refusal)) as unknown as UntypedServiceImplementation[string];
  }
  return withUnimplemented(RuntimeServiceService, implemented, 'not served by auraed');
}
