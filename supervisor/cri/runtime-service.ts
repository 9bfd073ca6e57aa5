// runtime.v1.RuntimeService: what this slice serves (Version, Status, RuntimeConfig); every other method answers
// UNIMPLEMENTED naming itself (rpc.ts withUnimplemented) until pod sandboxes and containers are mapped onto
// supervisor/pods.
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import {
  CgroupDriver,
  type RuntimeCondition,
  type RuntimeConfigResponse,
  RuntimeServiceService,
  type StatusRequest,
  type StatusResponse,
  type VersionRequest,
  type VersionResponse,
} from '../gen/runtime/v1/api';
import type { Logger } from '../log';
import { criUnary, withUnimplemented } from './rpc';

const SERVICE = 'runtime.v1.RuntimeService';

/** What Version reports as the runtime's name (crictl info, kubectl get node -o wide). */
export const CRI_RUNTIME_NAME = 'aurae';
/** The CRI API version served. */
export const CRI_API_VERSION = 'v1';
/** VersionResponse.version: the kubelet runtime API version field, which runtimes fill with "0.1.0". */
export const KUBELET_API_VERSION = '0.1.0';

/** Why the other methods answer UNIMPLEMENTED (part of their status message). */
export const NOT_YET = 'this CRI slice serves Version, Status, RuntimeConfig and the ImageService; pods and containers run through the aurae API (aer pod run) for now';

/** Whether the pods runtime can run containers here, and if not why (a RuntimeReady condition). */
export interface RuntimeReadiness {
  ready: boolean;
  /** CamelCase, when not ready. */
  reason?: string;
  message?: string;
}

export interface CriRuntimeServiceDeps {
  /** auraed's version (semver): runtime_version. */
  version: string;
  /** Asked on every Status call. */
  runtimeReadiness: () => RuntimeReadiness;
  log: Logger;
}

/** The conditions kubelet requires: RuntimeReady from the pods runtime, NetworkReady false until pod networking is mapped. */
export function runtimeConditions(readiness: RuntimeReadiness): RuntimeCondition[] {
  return [
    { type: 'RuntimeReady', status: readiness.ready, reason: readiness.ready ? '' : (readiness.reason ?? 'RuntimeNotReady'), message: readiness.ready ? '' : (readiness.message ?? '') },
    {
      type: 'NetworkReady',
      status: false,
      reason: 'NetworkPluginNotReady',
      message: 'pod sandboxes are not served over the CRI yet, so neither is their network: aurae pods have their own (aer pod run)',
    },
  ];
}

export function createCriRuntimeService(deps: CriRuntimeServiceDeps): UntypedServiceImplementation {
  const { log } = deps;
  const implemented: UntypedServiceImplementation = {
    version: criUnary(`${SERVICE}/Version`, log, (_request: VersionRequest): VersionResponse => ({
      version: KUBELET_API_VERSION,
      runtimeName: CRI_RUNTIME_NAME,
      runtimeVersion: deps.version,
      runtimeApiVersion: CRI_API_VERSION,
    })),
    status: criUnary(`${SERVICE}/Status`, log, (request: StatusRequest): StatusResponse => {
      const readiness = deps.runtimeReadiness();
      return {
        status: { conditions: runtimeConditions(readiness) },
        info: request.verbose ? { config: JSON.stringify({ runtimeName: CRI_RUNTIME_NAME, version: deps.version, cgroupDriver: 'cgroupfs', served: ['Version', 'Status', 'RuntimeConfig', 'ImageService'] }) } : {},
        // The default handler only; it supports neither recursive read-only mounts nor user namespaces yet.
        runtimeHandlers: [{ name: '', features: { recursiveReadOnlyMounts: false, userNamespaces: false } }],
        features: { supplementalGroupsPolicy: false },
      };
    }),
    // auraed writes cgroupfs directly (supervisor/cgroup), no systemd.
    runtimeConfig: criUnary(`${SERVICE}/RuntimeConfig`, log, (): RuntimeConfigResponse => ({ linux: { cgroupDriver: CgroupDriver.CGROUPFS } })),
  };
  return withUnimplemented(RuntimeServiceService, implemented, NOT_YET);
}
