// Pods: containers from OCI images (supervisor/images) run by crun, grouped in a sandbox sharing network, IPC and
// UTS namespaces. Sandbox "cell": the pod is a cell and each container an executable of it (see crun.ts for the
// layout, the pinned namespaces and the cgroup placement); its desired state is in the pods table, reconciled at
// start (reconcile.ts). PodService (pod-service.ts) is the API over PodRuntime; oci-spec.ts writes config.json.
export { type ContainerProcess, containerProcess, type ResolvedUser, resolveUser } from './container-config';
export { containerId, CRUN_STATE_ROOT, crunExecutable, findCrun, PODS_RUN_DIR, type PodPaths, podPaths, START_SCRIPT } from './crun';
export { nodePodHost, parseMountInfo, type PodHost } from './host';
export { type PodReconcileAction, podReconcilePlan } from './reconcile';
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
  podState,
} from './runtime';
export { type ContainerSpec, type PodLimitsSpec, type PodRestart, type PodSpec, POD_LIMITS, validatePodSpec } from './spec';
export { memoryPodStore, PODS_MIGRATIONS, type PodStore, sqlitePodStore, type StoredPod } from './store';
export { createPodService, type PodServiceDeps } from './pod-service';
export { PodServiceService } from '../gen/aurae/pods/v0/pods';
