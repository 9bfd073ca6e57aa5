// Stats from cgroup metrics and /proc/<pid>/net/dev, pure: CPU rate between samples, memory, network parsing.
import { describe, expect, it } from 'vitest';
import { CpuSamples, cpuUsage, memoryUsage, networkUsage, parseNetDev } from './cri-stats';

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    5000      40    1    0    0     0          0         0     3000      30    2    0    0     0       0          0
`;

describe('cri stats', () => {
  it('cpu: core-ns always; nano-cores from the previous sample of the same cgroup, none after a reset', () => {
    const samples = new CpuSamples();
    expect(cpuUsage({ cpuUsageUsec: 1000 }, 1000, 'p/c', samples)).toEqual({ timestamp: 1_000_000_000n, usageCoreNanoSeconds: { value: 1_000_000n } });
    expect(cpuUsage({ cpuUsageUsec: 251_000 }, 1500, 'p/c', samples)?.usageNanoCores).toEqual({ value: 500_000_000n });
    expect(cpuUsage({ cpuUsageUsec: 10 }, 2000, 'p/c', samples)?.usageNanoCores).toBeUndefined();
    expect(cpuUsage({}, 2000, 'p/c', samples)).toBeUndefined();
    samples.forget('p/');
    expect(cpuUsage({ cpuUsageUsec: 20 }, 3000, 'p/c', samples)?.usageNanoCores).toBeUndefined();
  });

  it('memory: working set and usage from memory.current, available under a limit', () => {
    expect(memoryUsage({ memoryCurrentBytes: 300, memoryMaxBytes: 1000 }, 1)).toEqual({ timestamp: 1_000_000n, workingSetBytes: { value: 300n }, usageBytes: { value: 300n }, availableBytes: { value: 700n } });
    expect(memoryUsage({ memoryCurrentBytes: 300 }, 1)?.availableBytes).toBeUndefined();
    expect(memoryUsage(undefined, 1)).toBeUndefined();
  });

  it('network: /proc/net/dev without lo; eth0 is the default interface', () => {
    expect(parseNetDev(NET_DEV)).toEqual([{ name: 'eth0', rxBytes: { value: 5000n }, rxErrors: { value: 1n }, txBytes: { value: 3000n }, txErrors: { value: 2n } }]);
    expect(networkUsage(NET_DEV, 2)).toMatchObject({ timestamp: 2_000_000n, defaultInterface: { name: 'eth0' }, interfaces: [] });
    expect(networkUsage(null, 2)).toBeUndefined();
  });
});
