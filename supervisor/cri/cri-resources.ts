// UpdateContainerResources and ContainerStatus.resources (pure): the CRI's LinuxContainerResources as a change of
// the pods container's resources, and the stored resources as the CRI reports them. The fields are those of
// CreateContainer (cri-mapping.ts containerResources: cpu shares/quota/period, memory limit, oom_score_adj; what
// the node cannot apply is refused there with the field named), plus memory_swap_limit_in_bytes. As containerd
// does, a field left 0 keeps its value: kubelet sends every field on each update.
import type { ContainerResources, LinuxContainerResources } from '../gen/runtime/v1/api';
import { invalid } from '../validation';
import { containerResources } from './cri-mapping';
import type { ContainerResourcesSpec } from './pods-contract';

/** The change `linux` makes to `current` (only the fields it sets). Errors name the request's field (linux.*). */
export function resourcesUpdate(linux: LinuxContainerResources, current: ContainerResourcesSpec | undefined): ContainerResourcesSpec {
  const field = 'linux';
  const update = containerResources(linux, field);
  // -1 is kubelet's "unlimited swap" (UnlimitedSwap): like 0, it asks no limit (the node has no swap to bound).
  if (linux.memorySwapLimitInBytes < -1n) throw invalid(`${field}.memory_swap_limit_in_bytes`, `${linux.memorySwapLimitInBytes} is negative (allowed: -1 for unlimited, 0 to keep, or memory + swap in bytes)`);
  if (linux.memorySwapLimitInBytes > 0n) {
    const memory = update.memoryLimit ?? current?.memoryLimit;
    const swap = linux.memorySwapLimitInBytes;
    if (memory === undefined) throw invalid(`${field}.memory_swap_limit_in_bytes`, 'memory + swap needs a memory limit: set memory_limit_in_bytes');
    if (swap < BigInt(memory)) throw invalid(`${field}.memory_swap_limit_in_bytes`, `${swap} is below the memory limit ${memory}: it is memory + swap`);
    if (swap > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${field}.memory_swap_limit_in_bytes`, `${swap} is out of range`);
    update.memorySwapLimit = Number(swap);
  } else if (update.memoryLimit !== undefined && current?.memorySwapLimit !== undefined && current.memorySwapLimit < update.memoryLimit) {
    throw invalid(`${field}.memory_limit_in_bytes`, `${update.memoryLimit} is above the memory + swap limit ${current.memorySwapLimit}: raise memory_swap_limit_in_bytes with it`);
  }
  return update;
}

/** The container's resources as ContainerStatus.resources reports them (undefined when none were set). */
export function criResourcesOf(r: ContainerResourcesSpec | undefined): ContainerResources | undefined {
  if (!r || Object.keys(r).length === 0) return undefined;
  return {
    linux: {
      cpuPeriod: BigInt(r.cpuPeriod ?? 0),
      cpuQuota: BigInt(r.cpuQuota ?? 0),
      cpuShares: BigInt(r.cpuShares ?? 0),
      memoryLimitInBytes: BigInt(r.memoryLimit ?? 0),
      oomScoreAdj: BigInt(r.oomScoreAdj ?? 0),
      cpusetCpus: '',
      cpusetMems: '',
      hugepageLimits: [],
      unified: {},
      memorySwapLimitInBytes: BigInt(r.memorySwapLimit ?? 0),
    },
  };
}
