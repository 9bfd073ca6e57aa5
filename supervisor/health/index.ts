// Health: the serving-status registry and the standard grpc.health.v1.Health service over it.
export { type HealthWatcher, type ServingStatus, HealthRegistry } from './health-registry';
export { HEALTH_LIST_LIMIT, createHealthService } from './health-service';
export { STORAGE_HEALTH_SERVICE, storageHealth, type StorageHealth } from './storage';
export { HealthService } from '../gen/grpc/health/v1/health';
