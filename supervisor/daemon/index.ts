// auraed as a whole: composition of the subsystems, and its version.
export { type AuraedOptions, type RunningAuraed, HEALTH_SERVICE_NAMES, shutdownTimeoutMs, startAuraed } from './auraed';
export { AURAED_VERSION } from './version';
