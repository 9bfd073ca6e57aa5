// Discovery core: who this node is and whether auraed is healthy. System facts come through an adapter.
import os from 'node:os';
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

export interface DiscoveryInfo {
  healthy: boolean;
  version: string;
  nodeName: string;
  uptimeSeconds: number;
  kernelRelease: string;
  pid: number;
}

export interface DiscoveryDeps {
  nodeName: string;
  version: string;
  health: HealthRegistry;
  system: SystemInfo;
}

export function discover(deps: DiscoveryDeps): DiscoveryInfo {
  return {
    healthy: deps.health.get('') === 'SERVING',
    version: deps.version,
    nodeName: deps.nodeName,
    uptimeSeconds: deps.system.uptimeSeconds(),
    kernelRelease: deps.system.kernelRelease(),
    pid: deps.system.pid(),
  };
}
