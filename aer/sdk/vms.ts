// client.vms: child microVMs (aurae.vms.v0.VmService) with plain objects. A child is reached through its
// parent with connect({ targetNode: 'aurae/web' }) (aer --node aurae/web).
import { Metadata } from '@grpc/grpc-js';
import { VirtualMachine, type VmStatus as ProtoStatus, VmServiceClient, type VmServiceRenewResponse } from '../../supervisor/gen/aurae/vms/v0/vms';
import type { PlainMessage } from '../../supervisor/validation/plain';
import type { RestartPolicy, VmState } from '../../supervisor/vms/vm-model';
import type { SdkCallContext } from './call-context';

/** "never", "on-failure" or "always": what happens when QEMU exits without being asked to. */
export type VmRestartPolicy = RestartPolicy;

/**
 * A VM to allocate or spawn: the API's VirtualMachine, defaults for what is left out (memory 512 MiB, 1 CPU,
 * restart "never"; RANGES.vmMemoryMiB and RANGES.vmCpus, the node caps memory with vms.maxMemoryMiB). Its
 * memory_mib is `memoryMiB` here, as in VmInfo, DEFAULTS and the CLI.
 */
export type VmSpec = WithMemoryMiB<Omit<PlainMessage<VirtualMachine>, 'name' | 'restart'>> & {
  /** DNS label; the child of node "aurae" called "web" is the node "aurae/web". */
  name: string;
  restart?: VmRestartPolicy;
};

/** `T` with its memoryMib field named memoryMiB (the SDK's spelling); every other field as it is. */
type WithMemoryMiB<T> = { [K in keyof T as K extends 'memoryMib' ? 'memoryMiB' : K]: T[K] };

export type VmStateName = VmState;

/** The API's VmStatus, flattened: the machine's fields beside the status, the state and restart policy by name. */
export interface VmInfo extends Omit<ProtoStatus, 'vm' | 'state'> {
  name: string;
  state: VmStateName;
  memoryMiB: number;
  cpus: number;
  restart: VmRestartPolicy;
}

export interface VmsApi {
  list(): Promise<VmInfo[]>;
  /** Boot a child from the node's own image; resolves once its API is ready. */
  spawn(spec: VmSpec): Promise<VmInfo>;
  allocate(spec: VmSpec): Promise<VmInfo>;
  start(name: string): Promise<VmInfo>;
  /** Graceful: ACPI powerdown, then QMP quit after the node's timeout. */
  stop(name: string): Promise<VmInfo>;
  free(name: string): Promise<void>;
  /**
   * Renew a running child's certificate now (as its parent does at half-life); resolves once the child serves
   * the new one, with its SHA-256 fingerprint (hex) and end of validity (RFC 3339).
   */
  renew(name: string): Promise<VmRenewal>;
}

/** The certificate a child serves after VmsApi.renew. */
export type VmRenewal = VmServiceRenewResponse;

export function fromVmStatus(s: ProtoStatus | undefined): VmInfo {
  return {
    name: s?.vm?.name ?? '',
    nodePath: s?.nodePath ?? '',
    state: (s?.state ?? 'failed') as VmStateName,
    memoryMiB: s?.vm?.memoryMib ?? 0,
    cpus: s?.vm?.cpus ?? 0,
    restart: (s?.vm?.restart || 'never') as VmRestartPolicy,
    address: s?.address ?? '',
    tlsName: s?.tlsName ?? '',
    pid: s?.pid ?? 0,
    restarts: s?.restarts ?? 0,
    lastExit: s?.lastExit ?? '',
    confined: s?.confined ?? false,
  };
}

/** The API's message for `spec`: every field goes out (one added to the proto too), unset ones as zero values. */
export function toVirtualMachine({ memoryMiB, ...rest }: VmSpec): VirtualMachine {
  return VirtualMachine.fromPartial({ ...rest, memoryMib: memoryMiB ?? 0 });
}

/** Boots take seconds (tens under TCG): spawn and start get a longer deadline than other calls. */
const BOOT_DEADLINE_MS = 180_000;

export function createVmsApi(ctx: SdkCallContext): VmsApi {
  const client = new VmServiceClient(ctx.address, ctx.credentials, ctx.options);
  const name = (method: string) => `aurae.vms.v0.VmService/${method}`;
  const long = () => ({ deadline: Date.now() + BOOT_DEADLINE_MS });
  return {
    list: async () => {
      const r = await ctx.unary<{ machines: ProtoStatus[] }>(name('List'), (done) => client.list({}, new Metadata(), ctx.callOptions(), done));
      return r.machines.map(fromVmStatus);
    },
    spawn: async (spec) => fromVmStatus((await ctx.unary<{ status?: ProtoStatus }>(name('Spawn'), (done) => client.spawn({ machine: toVirtualMachine(spec) }, new Metadata(), long(), done))).status),
    allocate: async (spec) =>
      fromVmStatus((await ctx.unary<{ status?: ProtoStatus }>(name('Allocate'), (done) => client.allocate({ machine: toVirtualMachine(spec) }, new Metadata(), ctx.callOptions(), done))).status),
    start: async (vmId) => fromVmStatus((await ctx.unary<{ status?: ProtoStatus }>(name('Start'), (done) => client.start({ vmId }, new Metadata(), long(), done))).status),
    stop: async (vmId) => fromVmStatus((await ctx.unary<{ status?: ProtoStatus }>(name('Stop'), (done) => client.stop({ vmId }, new Metadata(), long(), done))).status),
    free: async (vmId) => {
      await ctx.unary(name('Free'), (done) => client.free({ vmId }, new Metadata(), ctx.callOptions(), done));
    },
    renew: async (vmId) => {
      const r = await ctx.unary<VmServiceRenewResponse>(name('Renew'), (done) => client.renew({ vmId }, new Metadata(), ctx.callOptions(), done));
      return { fingerprint: r.fingerprint, notAfter: r.notAfter };
    },
  };
}
