// Discovery: aurae.discovery.v0.DiscoveryService (node name, version, health, uptime, kernel, pid).
export { type DiscoveryDeps, type DiscoveryInfo, type SystemInfo, discover, hostSystemInfo } from './discovery';
export { createDiscoveryService } from './discovery-service';
export { DiscoveryServiceService } from '../gen/aurae/discovery/v0/discovery';
