// Pods: containers from OCI images (supervisor/images) run by crun, grouped in a sandbox sharing network, IPC and
// UTS namespaces. Sandbox "cell": the pod is a cell and each container an executable of it (see crun.ts for the
// layout, the pinned namespaces and the cgroup placement); its desired state (and each container's) is in the pods
// tables, reconciled at start (reconcile.ts). Pods are run whole (run) or built piece by piece (createSandbox,
// createContainer, startContainer, stopContainer, removeContainer: the CRI's mapping, supervisor/cri). PodService
// (pod-service.ts) is the API over PodRuntime; oci-spec.ts writes config.json.
export { type ContainerProcess, containerProcess, containerUser, type ResolvedUser, resolveUser } from './container-config';
export { consoleSocketPath, containerCgroupLimits, containerId, CRUN_STATE_ROOT, crunExecutable, findCrun, PODS_RUN_DIR, type PodPaths, podPaths, START_SCRIPT, stdinFifoPath, stopSignalOf } from './crun';
export { nodePodHost, parseMountInfo, type PodHost } from './host';
export { type PodReconcileAction, podReconcilePlan } from './reconcile';
// Pod networking: the plan (network-plan.ts: CIDR, veth, nftables, /etc files) and its executor (network.ts).
export { nodePodNetwork, type PodNetwork } from './network';
export { DEFAULT_NAMESERVERS, DEFAULT_POD_NETWORK, effectivePublish, type PodNetworkConfig, type PortMapping, type PortProtocol } from './network-plan';
export {
  type ContainerState,
  type ContainerStatus,
  containerStatus,
  createPodRuntime,
  imageHolder,
  type PodCells,
  podCellSpec,
  type PodImages,
  type PodRuntime,
  type PodRuntimeDeps,
  type PodState,
  type PodStatus,
  podHostname,
  podState,
  SANDBOX_CONTAINERS_MAX,
} from './runtime';
export {
  type ContainerInput,
  type ContainerMount,
  type ContainerResources,
  type ContainerSecurity,
  type ContainerSpec,
  type MountPropagation,
  type PodDnsSpec,
  type PodInput,
  type PodLimitsSpec,
  type PodRestart,
  type PodSpec,
  POD_LIMITS,
  validateContainerSpec,
  validatePodSpec,
  validateSandboxSpec,
} from './spec';
export { type ContainerDesired, memoryPodStore, PODS_MIGRATIONS, type PodStore, sqlitePodStore, type StoredContainer, type StoredPod } from './store';
export { createPodService, type PodServiceDeps } from './pod-service';
export { type ExecDeps, type ExecRelay, type ExecTarget, killExecProcess, type RelayableExecCall, runExec } from './exec';
// The CRI's exec with a terminal (supervisor/cri/tty-exec.ts) reuses exec's pure parts.
export { EXEC_LIMITS, type ExecTargets, execContainer, execFiles, execOutcome, execProcess, type OciProcess } from './exec';
export { PodServiceService } from '../gen/aurae/pods/v0/pods';
export { PORT_FORWARD_LIMITS, portForwardDuplex, pumpPortForward, validatePortForwardStart } from './port-forward';
// Sandbox "vm": the pod in a child microVM (vm-sandbox.ts), the child's side (disk-images.ts), the adapters (vm-agent.ts).
export { cellPodStore, type ChildLogLine, type ChildPodIo, childPodSpec, createVmPodRuntime, followChildOutput, sandboxedPodRuntime, type SandboxedPodRuntime, vmPodMemoryMiB, vmPodName, vmPodStatus, type VmPodRuntime } from './vm-sandbox';
export { DISK_IMAGE_PREFIX, diskImageRef, ext4Label, nodeDiskHost, parseDiskImageRef, withDiskImages } from './disk-images';
export { childExecRelay, childPodAgent, childPodIo, createNodeVmPods, metricsSnapshotFromProto, nodePodVms, podStatusFromProto } from './vm-agent';
