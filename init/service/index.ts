// auraed supervision: command lookup, restart backoff, the service itself (the IPC messages are supervisor/ipc's).
export { auraedCommand, locateAuraed } from './command';
export type { AuraedCommandInputs } from './command';
export { nextFailureCount, restartDelay } from './backoff';
export type { BackoffPolicy } from './backoff';
export { afterExit, createAuraedService, realTimers } from './service';
export type { AfterExit, AuraedService, AuraedServiceDeps, InitBootPhases, SpawnFn, Timers } from './service';
