// Kubernetes CRI (runtime.v1, supervisor/proto/runtime/v1/api.proto) on a root-only Unix socket: kubelet and
// crictl talk to auraed as to containerd. The RuntimeService maps sandboxes and containers onto the pods runtime
// (one model, two APIs: a sandbox is an aurae pod, a container one of its containers; cri-runtime.ts over
// cri-mapping.ts and the CRI store), exec and port-forward go through the streaming server (streaming/), container
// output also to CRI log files (logs/), stats come from observe's metrics; the ImageService is supervisor/images.
// What is not supported answers UNIMPLEMENTED naming itself and why (runtime-service.ts NOT_SERVED).
export { criSocketPath, CRI_SOCKET_NAME } from './socket-path';
export { type CriServerOptions, type RunningCriServer, startCriServer } from './server';
export { CRI_API_VERSION, CRI_RUNTIME_NAME, HANDLER_NAMES, NOT_SERVED, type RuntimeReadiness, runtimeConditions } from './runtime-service';
export { CRI_MIGRATIONS, type CriStore, sqliteCriStore } from './cri-store';
export { type CriPods } from './pods-contract';
export { ImageServiceClient, ImageServiceService, RuntimeServiceClient, RuntimeServiceService } from '../gen/runtime/v1/api';
