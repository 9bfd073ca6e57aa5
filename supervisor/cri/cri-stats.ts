// Container and sandbox stats for the CRI from the cells' cgroup metrics (observe's metrics reader): a sandbox is
// its pod's cell, a container its executable's leaf. CPU: usage_usec as core-nanoseconds, and nano-cores from the
// previous sample of the same cgroup (none on the first). Memory: memory.current as usage and working set (the
// metrics reader does not read memory.stat, so inactive_file is not subtracted: the working set is an upper
// bound), available = memory.max − working set when limited. Processes: pids.current. Network: the pod's
// interfaces as its namespace counts them (/proc/<pid>/net/dev of one of its running containers' processes). The
// writable layer is not reported yet.
import { AuraeError } from '../errors';
import fs from 'node:fs';
import type { ContainerAttributes, ContainerStats, CpuUsage, MemoryUsage, NetworkInterfaceUsage, NetworkUsage, PodSandboxStats } from '../gen/runtime/v1/api';
import type { CellMetricsRow, MetricsReader } from '../observe';
import { toNanos } from './cri-mapping';
import type { CriContainerRecord, CriSandboxRecord } from './cri-store';

type Metrics = CellMetricsRow['metrics'];

/** The previous CPU sample of each cgroup (for usage_nano_cores). */
export class CpuSamples {
  private readonly last = new Map<string, { at: number; usec: number }>();

  /** nano-cores since the previous sample of `key`, or undefined on the first (or a counter reset). */
  rate(key: string, at: number, usec: number): number | undefined {
    const prev = this.last.get(key);
    this.last.set(key, { at, usec });
    if (!prev || at <= prev.at || usec < prev.usec) return undefined;
    return Math.round(((usec - prev.usec) * 1000 * 1e9) / ((at - prev.at) * 1e6));
  }

  forget(prefix: string): void {
    for (const k of this.last.keys()) if (k.startsWith(prefix)) this.last.delete(k);
  }
}

export function cpuUsage(m: Metrics | undefined, at: number, key: string, samples: CpuSamples): CpuUsage | undefined {
  if (m?.cpuUsageUsec === undefined) return undefined;
  const nanoCores = samples.rate(key, at, m.cpuUsageUsec);
  return {
    timestamp: toNanos(at),
    usageCoreNanoSeconds: { value: BigInt(m.cpuUsageUsec) * 1000n },
    ...(nanoCores === undefined ? {} : { usageNanoCores: { value: BigInt(nanoCores) } }),
  };
}

export function memoryUsage(m: Metrics | undefined, at: number): MemoryUsage | undefined {
  if (m?.memoryCurrentBytes === undefined) return undefined;
  const ws = m.memoryCurrentBytes;
  return {
    timestamp: toNanos(at),
    workingSetBytes: { value: BigInt(ws) },
    usageBytes: { value: BigInt(ws) },
    ...(m.memoryMaxBytes === undefined ? {} : { availableBytes: { value: BigInt(Math.max(0, m.memoryMaxBytes - ws)) } }),
  };
}

export function containerAttributes(record: CriContainerRecord): ContainerAttributes {
  return { id: record.id, metadata: { name: record.name, attempt: record.attempt }, labels: { ...record.labels }, annotations: { ...record.annotations } };
}

/** /proc/net/dev's interfaces (without lo): name, rx/tx bytes and errors. */
export function parseNetDev(text: string): NetworkInterfaceUsage[] {
  const out: NetworkInterfaceUsage[] = [];
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const f = line.slice(colon + 1).trim().split(/\s+/).map((v) => BigInt(/^\d+$/.test(v) ? v : '0'));
    if (name === 'lo' || f.length < 11) continue;
    out.push({ name, rxBytes: { value: f[0]! }, rxErrors: { value: f[2]! }, txBytes: { value: f[8]! }, txErrors: { value: f[10]! } });
  }
  return out;
}

/** The pod's network usage from a process in its network namespace (eth0 is the default interface). */
export function networkUsage(text: string | null, at: number): NetworkUsage | undefined {
  if (text === null) return undefined;
  const all = parseNetDev(text);
  if (all.length === 0) return undefined;
  const def = all.find((i) => i.name === 'eth0') ?? all[0]!;
  return { timestamp: toNanos(at), defaultInterface: def, interfaces: all.filter((i) => i !== def) };
}

function readNetDev(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/net/dev`, 'utf8');
  } catch {
    return null;
  }
}

export interface CriStatsDeps {
  metrics: MetricsReader;
  samples?: CpuSamples;
  /** /proc/<pid>/net/dev (tests: a fake). */
  netDev?: (pid: number) => string | null;
}

/** Stats readers: one metrics read per pod per call. */
export function createCriStats(deps: CriStatsDeps) {
  const samples = deps.samples ?? new CpuSamples();

  /** The pod's rows, or null when its cell has no cgroup (stopped, removed, or a VM sandbox's). */
  const podRows = async (pod: string): Promise<{ at: number; rows: CellMetricsRow[] } | null> => {
    try {
      const snap = await deps.metrics(pod);
      return { at: snap.timestamp, rows: snap.cells.filter((r) => r.cell === pod) };
    } catch (err) {
      if (err instanceof AuraeError && err.code === 'NOT_FOUND') return null;
      throw err;
    }
  };

  const containerStats = (pod: string, record: CriContainerRecord, snap: { at: number; rows: CellMetricsRow[] } | null): ContainerStats => {
    const m = snap?.rows.find((r) => r.executable === record.container)?.metrics;
    const at = snap?.at ?? Date.now();
    const cpu = cpuUsage(m, at, `${pod}/${record.container}`, samples);
    const memory = memoryUsage(m, at);
    return { attributes: containerAttributes(record), ...(cpu ? { cpu } : {}), ...(memory ? { memory } : {}) };
  };

  return {
    samples,
    async containers(items: { sandbox: CriSandboxRecord; record: CriContainerRecord }[]): Promise<ContainerStats[]> {
      const byPod = new Map<string, Promise<{ at: number; rows: CellMetricsRow[] } | null>>();
      const out: ContainerStats[] = [];
      for (const { sandbox, record } of items) {
        if (!byPod.has(sandbox.pod)) byPod.set(sandbox.pod, podRows(sandbox.pod));
        out.push(containerStats(sandbox.pod, record, await byPod.get(sandbox.pod)!));
      }
      return out;
    },
    /** `pid`: a process in the pod's network namespace (a running container's), null when none runs. */
    async sandbox(sandbox: CriSandboxRecord, containers: CriContainerRecord[], pid: number | null = null): Promise<PodSandboxStats> {
      const snap = await podRows(sandbox.pod);
      const at = snap?.at ?? Date.now();
      const m = snap?.rows.find((r) => r.executable === null)?.metrics;
      const cpu = cpuUsage(m, at, `${sandbox.pod}/`, samples);
      const memory = memoryUsage(m, at);
      // A sandbox in the node's network namespace has no network of its own to report.
      const network = pid !== null && sandbox.extra.namespaces.network !== 'NODE' ? networkUsage((deps.netDev ?? readNetDev)(pid), at) : undefined;
      return {
        attributes: {
          id: sandbox.id,
          metadata: { name: sandbox.name, uid: sandbox.uid, namespace: sandbox.namespace, attempt: sandbox.attempt },
          labels: { ...sandbox.labels },
          annotations: { ...sandbox.annotations },
        },
        linux: {
          ...(cpu ? { cpu } : {}),
          ...(memory ? { memory } : {}),
          ...(network ? { network } : {}),
          ...(m?.pidsCurrent === undefined ? {} : { process: { timestamp: toNanos(at), processCount: { value: BigInt(m.pidsCurrent) } } }),
          containers: containers.map((c) => containerStats(sandbox.pod, c, snap)),
        },
      };
    },
  };
}

export type CriStats = ReturnType<typeof createCriStats>;
