// auraed supervision: command lookup, IPC messages, restart backoff, the service itself.
export { auraedCommand, locateAuraed } from './command';
export type { AuraedCommandInputs } from './command';
export { nextFailureCount, restartDelay } from './backoff';
export type { BackoffPolicy } from './backoff';
export { parseAuraedMessage, readyLine } from './messages';
export type { AuraedMessage, PowerMessage, ReadyMessage } from './messages';
export { createAuraedService, realTimers } from './service';
export type { AuraedService, AuraedServiceDeps, SpawnFn, Timers } from './service';
