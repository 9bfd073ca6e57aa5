// The aer SDK: typed, promise-based access to auraed.
//   const aurae = await connect();            // ~/.config/aurae/client.json, or AURAE_CONFIG
//   const info = await aurae.discovery.discover();
//   aurae.close();
export { type AuraeClient, type BootPhase, type BootReport, type ConnectOptions, type HealthStatus, type NodeInfo, type PowerOptions, connect, NODE_METADATA, routeToNode } from './connect';
export { type ImageInfo, type ImageLayerInfo, type ImagesApi, type LayerPullState, type PullOptions, type PullProgress, type RegistryAuth } from './images';
export {
  type ContainerInfo,
  type ContainerSpec,
  type PodInfo,
  type PodPullProgress,
  type PodRestart,
  type PodRuntimeApi,
  type PodSpec,
  type PodsApi,
  type PortPublish,
  type RunOptions,
  ContainerBuilder,
  PodBuilder,
  container,
  pod,
} from './pods';
export { type ExecExit, type ExecOptions, type ExecResult, type ExecSession, type ExecStartOptions } from './pod-exec';
export {
  type BootEntryInfo,
  type HttpGet,
  type ReleaseSource,
  type UpgradeApi,
  type UpgradeStatusInfo,
  type UploadOptions,
  type UploadProgressInfo,
  type UploadResult,
  releaseFromDir,
  releaseFromUrl,
} from './upgrade';
export { type VmInfo, type VmRenewal, type VmRestartPolicy, type VmSpec, type VmStateName, type VmsApi } from './vms';
export {
  type ClientConfig,
  type ClientConfigOverrides,
  type ResolvedClientConfig,
  ClientConfigError,
  ClientConfigSchema,
  clientConfigPath,
  loadClientConfig,
  parseClientConfigText,
} from './client-config';
export { AuraeApiError, type GrpcStatusName } from './errors';
/** The API's numeric limits (what auraed accepts) and defaults; aer's options parse with them. */
export { DEFAULTS, RANGES } from '../../supervisor/validation/ranges';
export {
  type AuditQuery,
  type AuditRecord,
  type AuthzApi,
  type AuthzChange,
  type AuthzEffect,
  type AuthzPolicy,
  type AuthzRevocation,
  type AuthzRule,
  type AuthzRuleSource,
  type AuthzIdentity,
  type AuthzScope,
} from './authz';
export {
  type CellInfo,
  type CellSpec,
  type CellsApi,
  type ExecutableExit,
  type ExecutableInfo,
  type ExecutableSpec,
  type ExecutableStateName,
  type RestartModeName,
} from './cells';
export {
  type CellCounters,
  type CellMetrics,
  type EventStreamOptions,
  type LogEntry,
  type LogStreamOptions,
  type MetricsSnapshot,
  type ObserveApi,
  type ObservedEvent,
} from './observe';
