// Discovery: aurae.discovery.v0.DiscoveryService (node name, version, health, uptime, kernel, pid, boot report).
export { type DiscoveryDeps, type DiscoveryInfo, type SystemInfo, discover, hostSystemInfo } from './discovery';
export { createDiscoveryService } from './discovery-service';
export { type BootRecorder, createBootRecorder, LISTENING_PHASE, SERVING_PHASE } from './boot-report';
export type { BootPhase, BootReport } from '../gen/aurae/discovery/v0/discovery';
export { DiscoveryServiceService } from '../gen/aurae/discovery/v0/discovery';
