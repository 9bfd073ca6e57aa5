// aurae.vms.v0.VmService: decode → validate → VmRuntime → response. No logic beyond mapping.
import {
  type VmServiceServer,
  type VmStatus as VmStatusProto,
  type VirtualMachine,
  type VmServiceAllocateRequest,
  type VmServiceFreeRequest,
  type VmServiceListResponse,
  type VmServiceRenewRequest,
  type VmServiceRenewResponse,
  type VmServiceSpawnRequest,
  type VmServiceStartRequest,
  type VmServiceStopRequest,
} from '../gen/aurae/vms/v0/vms';
import { type RpcContext, unary } from '../server';
import { validateVmName, validateVmRequest, type VmLimits } from './vm-model';
import type { VmRuntime, VmStatus } from './vm-runtime';

const SERVICE = 'aurae.vms.v0.VmService';

/**
 * Renew the running child `name`'s certificate now (vm-node: the renewer's renewNow); resolves once the child
 * installed it. Throws AuraeError (NOT_FOUND, UNAVAILABLE, FAILED_PRECONDITION).
 */
export type RenewChild = (name: string) => Promise<VmServiceRenewResponse>;

export function createVmService(ctx: RpcContext, runtime: VmRuntime, limits: VmLimits, renewChild: RenewChild): VmServiceServer {
  const machine = (m: VirtualMachine | undefined) =>
    validateVmRequest({ name: m?.name, memoryMiB: m?.memoryMib, cpus: m?.cpus, restart: m?.restart }, limits);
  const id = (request: { vmId: string }) => validateVmName(request.vmId, 'vm_id');
  return {
    allocate: unary(ctx, {
      method: `${SERVICE}/Allocate`,
      access: 'admin',
      validate: (request: VmServiceAllocateRequest) => machine(request.machine),
      summary: (r) => r.name,
      resource: (r) => ({ vm: r.name }),
      run: (r) => ({ status: vmStatusToProto(runtime.allocate(r)) }),
    }),
    free: unary(ctx, {
      method: `${SERVICE}/Free`,
      access: 'admin',
      validate: (request: VmServiceFreeRequest) => id(request),
      summary: (name) => name,
      resource: (name) => ({ vm: name }),
      run: (name) => {
        runtime.free(name);
        return {};
      },
    }),
    start: unary(ctx, {
      method: `${SERVICE}/Start`,
      access: 'admin',
      validate: (request: VmServiceStartRequest) => id(request),
      summary: (name) => name,
      resource: (name) => ({ vm: name }),
      run: async (name) => ({ status: vmStatusToProto(await runtime.start(name)) }),
    }),
    stop: unary(ctx, {
      method: `${SERVICE}/Stop`,
      access: 'admin',
      validate: (request: VmServiceStopRequest) => id(request),
      summary: (name) => name,
      resource: (name) => ({ vm: name }),
      run: async (name) => ({ status: vmStatusToProto(await runtime.stop(name)) }),
    }),
    list: unary(ctx, {
      method: `${SERVICE}/List`,
      access: 'read',
      validate: () => undefined,
      resource: () => 'each',
      run: (_, _caller, access): VmServiceListResponse => ({ machines: runtime.list().filter((s) => access.sees({ vm: s.request.name })).map(vmStatusToProto) }),
    }),
    spawn: unary(ctx, {
      method: `${SERVICE}/Spawn`,
      access: 'admin',
      validate: (request: VmServiceSpawnRequest) => machine(request.machine),
      resource: (r) => ({ vm: r.name }),
      summary: (r) => `${r.name} (${r.memoryMiB} MiB, ${r.cpus} cpu)`,
      run: async (r) => ({ status: vmStatusToProto(await runtime.spawn(r)) }),
    }),
    renew: unary(ctx, {
      method: `${SERVICE}/Renew`,
      access: 'admin',
      validate: (request: VmServiceRenewRequest) => id(request),
      summary: (name) => name,
      resource: (name) => ({ vm: name }),
      run: (name) => renewChild(name),
    }),
  };
}

export function vmStatusToProto(s: VmStatus): VmStatusProto {
  return {
    vm: { name: s.request.name, memoryMib: s.request.memoryMiB, cpus: s.request.cpus, restart: s.request.restart },
    nodePath: s.nodePath,
    state: s.state,
    address: s.address,
    tlsName: s.tlsName,
    pid: s.pid,
    restarts: s.restarts,
    lastExit: s.lastExit,
    confined: s.confined,
  };
}
