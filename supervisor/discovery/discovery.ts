// Discovery core: who this node is and whether auraed is healthy. System facts come through an adapter.
import os from 'node:os';
import type { BootReport, DiscoverResponse } from '../gen/aurae/discovery/v0/discovery';
import type { HealthRegistry } from '../health';

export interface SystemInfo {
  /** Seconds since the kernel booted. */
  uptimeSeconds(): number;
  /** uname -r. */
  kernelRelease(): string;
  pid(): number;
}

export const hostSystemInfo: SystemInfo = {
  uptimeSeconds: () => os.uptime(),
  kernelRelease: () => os.release(),
  pid: () => process.pid,
};

/** What Discover answers: the generated proto type, not a copy of it. */
export type DiscoveryInfo = DiscoverResponse;

export interface DiscoveryDeps {
  nodeName: string;
  version: string;
  health: HealthRegistry;
  system: SystemInfo;
  /** The boot report as far as the boot has come (boot-report.ts); absent: Discover carries none. */
  boot?: () => BootReport;
}

export function discover(deps: DiscoveryDeps): DiscoveryInfo {
  return {
    healthy: deps.health.get('') === 'SERVING',
    version: deps.version,
    nodeName: deps.nodeName,
    uptimeSeconds: deps.system.uptimeSeconds(),
    kernelRelease: deps.system.kernelRelease(),
    pid: deps.system.pid(),
    boot: deps.boot?.(),
  };
}
