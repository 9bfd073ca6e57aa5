// Kubernetes CRI (runtime.v1, supervisor/proto/runtime/v1/api.proto) on a root-only Unix socket: kubelet and
// crictl talk to auraed as to containerd. This slice serves Version, Status, RuntimeConfig and the ImageService
// (over supervisor/images); every other RuntimeService method answers UNIMPLEMENTED naming itself.
export { criSocketPath, CRI_SOCKET_NAME } from './socket-path';
export { type CriServerOptions, type RunningCriServer, startCriServer } from './server';
export { CRI_API_VERSION, CRI_RUNTIME_NAME, type RuntimeReadiness, runtimeConditions } from './runtime-service';
export { ImageServiceClient, ImageServiceService, RuntimeServiceClient, RuntimeServiceService } from '../gen/runtime/v1/api';
