// The CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics: kubelet's PodAndContainerStatsFromCRI serves them
// as its cAdvisor endpoint). The names, help texts and label keys are cAdvisor's, as CRI-O describes them (a
// metric's labels: id, name, image, then its own); values are UInt64 (seconds truncated, as CRI-O sends them).
// Only what the node measures is described: the cells' cgroup files (cpu.stat, memory.current / peak / max,
// memory.events, pids.current, read by observe's metrics reader, as cri-stats.ts reads them) and the pod's network
// interfaces (/proc/<pid>/net/dev of one of its running containers). A sandbox's own metrics carry id = the
// sandbox id, name "POD", image "" (CRI-O's convention); its containers' carry their id, CRI name and image.
// container_memory_working_set_bytes is memory.current, as ContainerStats reports it (the reader has no
// memory.stat: inactive_file is not subtracted, so it is an upper bound).
import fs from 'node:fs';
import { AuraeError } from '../errors';
import { type Metric, type MetricDescriptor, MetricType, type PodSandboxMetrics } from '../gen/runtime/v1/api';
import type { CellMetricsRow, MetricsReader } from '../observe';
import type { CriContainerRecord, CriSandboxRecord } from './cri-store';

type Metrics = CellMetricsRow['metrics'];

const BASE = ['id', 'name', 'image'];
const d = (name: string, help: string, extra: string[] = []): MetricDescriptor => ({ name, help, labelKeys: [...BASE, ...extra] });

/** Every metric this node serves, fixed for auraed's life (kubelet drops a metric whose name is not described). */
export const METRIC_DESCRIPTORS: readonly MetricDescriptor[] = [
  d('container_cpu_user_seconds_total', 'Cumulative user CPU time consumed in seconds.'),
  d('container_cpu_system_seconds_total', 'Cumulative system CPU time consumed in seconds.'),
  d('container_cpu_usage_seconds_total', 'Cumulative CPU time consumed in seconds.', ['cpu']),
  d('container_cpu_cfs_periods_total', 'Number of elapsed enforcement period intervals.'),
  d('container_cpu_cfs_throttled_periods_total', 'Number of throttled period intervals.'),
  d('container_cpu_cfs_throttled_seconds_total', 'Total time duration the container has been throttled.'),
  d('container_memory_usage_bytes', 'Current memory usage in bytes, including all memory regardless of when it was accessed'),
  d('container_memory_max_usage_bytes', 'Maximum memory usage recorded in bytes'),
  d('container_memory_working_set_bytes', 'Current working set in bytes.'),
  d('container_spec_memory_limit_bytes', 'Memory limit for the container in bytes.'),
  d('container_oom_events_total', 'Count of out of memory events observed for the container'),
  d('container_processes', 'Number of processes running inside the container.'),
  d('container_network_receive_bytes_total', 'Cumulative count of bytes received', ['interface']),
  d('container_network_receive_packets_total', 'Cumulative count of packets received', ['interface']),
  d('container_network_receive_packets_dropped_total', 'Cumulative count of packets dropped while receiving', ['interface']),
  d('container_network_receive_errors_total', 'Cumulative count of errors encountered while receiving', ['interface']),
  d('container_network_transmit_bytes_total', 'Cumulative count of bytes transmitted', ['interface']),
  d('container_network_transmit_packets_total', 'Cumulative count of packets transmitted', ['interface']),
  d('container_network_transmit_packets_dropped_total', 'Cumulative count of packets dropped while transmitting', ['interface']),
  d('container_network_transmit_errors_total', 'Cumulative count of errors encountered while transmitting', ['interface']),
];

const COUNTER = MetricType.COUNTER;
const GAUGE = MetricType.GAUGE;

/** The cgroup metrics of one sandbox or container as CRI metrics (only those the files gave). */
export function cgroupMetricValues(m: Metrics | undefined, base: string[], at: bigint): Metric[] {
  if (!m) return [];
  const out: Metric[] = [];
  const put = (name: string, type: MetricType, value: number | undefined, extra: string[] = []) => {
    if (value === undefined || !Number.isFinite(value) || value < 0) return;
    out.push({ name, timestamp: at, metricType: type, labelValues: [...base, ...extra], value: { value: BigInt(Math.trunc(value)) } });
  };
  const seconds = (usec: number | undefined) => (usec === undefined ? undefined : Math.trunc(usec / 1e6));
  put('container_cpu_user_seconds_total', COUNTER, seconds(m.cpuUserUsec));
  put('container_cpu_system_seconds_total', COUNTER, seconds(m.cpuSystemUsec));
  put('container_cpu_usage_seconds_total', COUNTER, seconds(m.cpuUsageUsec), ['total']);
  put('container_cpu_cfs_periods_total', COUNTER, m.cpuNrPeriods);
  put('container_cpu_cfs_throttled_periods_total', COUNTER, m.cpuNrThrottled);
  put('container_cpu_cfs_throttled_seconds_total', COUNTER, seconds(m.cpuThrottledUsec));
  put('container_memory_usage_bytes', GAUGE, m.memoryCurrentBytes);
  put('container_memory_max_usage_bytes', GAUGE, m.memoryPeakBytes);
  put('container_memory_working_set_bytes', GAUGE, m.memoryCurrentBytes);
  put('container_spec_memory_limit_bytes', GAUGE, m.memoryMaxBytes);
  put('container_oom_events_total', COUNTER, m.memoryOomKill);
  put('container_processes', GAUGE, m.pidsCurrent);
  return out;
}

/** /proc/net/dev → per interface (without lo) the eight counters the network metrics name. */
export function networkMetricValues(netDev: string | null, base: string[], at: bigint): Metric[] {
  if (netDev === null) return [];
  const out: Metric[] = [];
  const names = [
    ['container_network_receive_bytes_total', 0],
    ['container_network_receive_packets_total', 1],
    ['container_network_receive_errors_total', 2],
    ['container_network_receive_packets_dropped_total', 3],
    ['container_network_transmit_bytes_total', 8],
    ['container_network_transmit_packets_total', 9],
    ['container_network_transmit_errors_total', 10],
    ['container_network_transmit_packets_dropped_total', 11],
  ] as const;
  for (const line of netDev.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const iface = line.slice(0, colon).trim();
    const f = line.slice(colon + 1).trim().split(/\s+/);
    if (iface === 'lo' || f.length < 12 || !f.every((v) => /^\d+$/.test(v))) continue;
    for (const [name, i] of names) out.push({ name, timestamp: at, metricType: COUNTER, labelValues: [...base, iface], value: { value: BigInt(f[i]!) } });
  }
  return out;
}

function readNetDev(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/net/dev`, 'utf8');
  } catch {
    return null;
  }
}

export interface CriMetricsDeps {
  metrics: MetricsReader;
  /** /proc/<pid>/net/dev (tests: a fake). */
  netDev?: (pid: number) => string | null;
}

/** ListPodSandboxMetrics' reader: one metrics read per sandbox. */
export function createCriMetrics(deps: CriMetricsDeps) {
  return {
    descriptors: (): MetricDescriptor[] => METRIC_DESCRIPTORS.map((x) => ({ ...x, labelKeys: [...x.labelKeys] })),
    /**
     * One sandbox's metrics: its cell's (and its network's, from `pid`: a running container's process, null when
     * none runs) and each of `containers`' (their executables' leaves). A sandbox whose cell has no cgroup here (a
     * VM sandbox's, a stopped one's) has none.
     */
    async sandbox(sandbox: CriSandboxRecord, containers: CriContainerRecord[], pid: number | null): Promise<PodSandboxMetrics> {
      let snap: { timestamp: number; cells: CellMetricsRow[] } | null;
      try {
        snap = await deps.metrics(sandbox.pod);
      } catch (err) {
        if (!(err instanceof AuraeError && err.code === 'NOT_FOUND')) throw err;
        snap = null;
      }
      const rows = snap?.cells.filter((r) => r.cell === sandbox.pod) ?? [];
      const at = BigInt(Math.trunc(snap?.timestamp ?? Date.now())) * 1_000_000n;
      const base = [sandbox.id, 'POD', ''];
      const metrics = cgroupMetricValues(rows.find((r) => r.executable === null)?.metrics, base, at);
      if (pid !== null && sandbox.extra.namespaces.network !== 'NODE') metrics.push(...networkMetricValues((deps.netDev ?? readNetDev)(pid), base, at));
      return {
        podSandboxId: sandbox.id,
        metrics,
        containerMetrics: containers.map((c) => ({ containerId: c.id, metrics: cgroupMetricValues(rows.find((r) => r.executable === c.container)?.metrics, [c.id, c.name, c.image], at) })),
      };
    },
  };
}

export type CriMetrics = ReturnType<typeof createCriMetrics>;
