// client.vms: child microVMs (aurae.vms.v0.VmService) with plain objects. A child is reached through its
// parent with connect({ targetNode: 'aurae/web' }) (aer --node aurae/web).
import { Metadata } from '@grpc/grpc-js';
import { type VmStatus as ProtoStatus, VmServiceClient } from '../../supervisor/gen/aurae/vms/v0/vms';
import type { RestartPolicy, VmState } from '../../supervisor/vms/vm-model';
import type { SdkCallContext } from './call-context';

/** "never", "on-failure" or "always": what happens when QEMU exits without being asked to. */
export type VmRestartPolicy = RestartPolicy;

/** A VM to allocate or spawn: the API's VirtualMachine, with defaults for what is left out. */
export interface VmSpec {
  /** DNS label; the child of node "aurae" called "web" is the node "aurae/web". */
  name: string;
  /** Guest RAM in MiB; default 512 (RANGES.vmMemoryMiB; the node caps it with vms.maxMemoryMiB). */
  memoryMiB?: number;
  /** RANGES.vmCpus; default 1. */
  cpus?: number;
  /** Default "never". */
  restart?: VmRestartPolicy;
}

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
}

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

/** Boots take seconds (tens under TCG): spawn and start get a longer deadline than other calls. */
const BOOT_DEADLINE_MS = 180_000;

export function createVmsApi(ctx: SdkCallContext): VmsApi {
  const client = new VmServiceClient(ctx.address, ctx.credentials, ctx.options);
  const name = (method: string) => `aurae.vms.v0.VmService/${method}`;
  const machine = (spec: VmSpec) => ({ name: spec.name, memoryMib: spec.memoryMiB ?? 0, cpus: spec.cpus ?? 0, restart: spec.restart ?? '' });
  const long = () => ({ deadline: Date.now() + BOOT_DEADLINE_MS });
  return {
    list: async () => {
      const r = await ctx.unary<{ machines: ProtoStatus[] }>(name('List'), (done) => client.list({}, new Metadata(), ctx.callOptions(), done));
      return r.machines.map(fromVmStatus);
    },
    spawn: async (spec) => fromVmStatus((await ctx.unary<{ status?: ProtoStatus }>(name('Spawn'), (done) => client.spawn({ machine: machine(spec) }, new Metadata(), long(), done))).status),
    allocate: async (spec) =>
      fromVmStatus((await ctx.unary<{ status?: ProtoStatus }>(name('Allocate'), (done) => client.allocate({ machine: machine(spec) }, new Metadata(), ctx.callOptions(), done))).status),
    start: async (vmId) => fromVmStatus((await ctx.unary<{ status?: ProtoStatus }>(name('Start'), (done) => client.start({ vmId }, new Metadata(), long(), done))).status),
    stop: async (vmId) => fromVmStatus((await ctx.unary<{ status?: ProtoStatus }>(name('Stop'), (done) => client.stop({ vmId }, new Metadata(), long(), done))).status),
    free: async (vmId) => {
      await ctx.unary(name('Free'), (done) => client.free({ vmId }, new Metadata(), ctx.callOptions(), done));
    },
  };
}
