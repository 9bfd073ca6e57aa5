import { describe, expect, it } from 'vitest';
import { createMemoryLogger } from '../log';
import { fakeSyscalls } from '../testing/fakes';
import { applyNetwork, networkPlan } from './index';

describe('networkPlan', () => {
  it('brings up lo only when eth0 is not configured', () => {
    expect(networkPlan({ eth0: { mode: 'none' } })).toEqual([{ kind: 'up', ifname: 'lo' }]);
  });

  it('configures a static eth0 with and without a gateway', () => {
    expect(networkPlan({ eth0: { mode: 'static', address: '10.0.2.15/24', gateway: '10.0.2.2' } })).toEqual([
      { kind: 'up', ifname: 'lo' },
      { kind: 'address', ifname: 'eth0', address: '10.0.2.15', prefixLen: 24 },
      { kind: 'up', ifname: 'eth0' },
      { kind: 'default-route', ifname: 'eth0', gateway: '10.0.2.2' },
    ]);
    expect(networkPlan({ eth0: { mode: 'static', address: '192.168.7.2/30' } })).toHaveLength(3);
  });
});

describe('applyNetwork', () => {
  const plan = networkPlan({ eth0: { mode: 'static', address: '10.0.2.15/24', gateway: '10.0.2.2' } });

  it('runs the steps in order through the syscalls', () => {
    const sys = fakeSyscalls();
    const log = createMemoryLogger();
    expect(applyNetwork(plan, { syscalls: sys, log })).toHaveLength(4);
    expect(sys.calls).toEqual([
      ['setInterfaceUp', 'lo'],
      ['setInterfaceAddress', 'eth0', '10.0.2.15', 24],
      ['setInterfaceUp', 'eth0'],
      ['addDefaultRoute', '10.0.2.2'],
    ]);
  });

  it('treats a missing eth0 as a warning and skips its other steps', () => {
    const sys = fakeSyscalls({ setInterfaceAddress: () => 'ENODEV' });
    const log = createMemoryLogger();
    const done = applyNetwork(plan, { syscalls: sys, log });
    expect(done).toEqual([{ kind: 'up', ifname: 'lo' }]);
    expect(sys.calls.map((c) => c[0])).toEqual(['setInterfaceUp', 'setInterfaceAddress']);
    expect(log.lines.filter((l) => l.includes('warning'))).toEqual([
      expect.stringMatching(/warning: network: eth0 not present, skipping its configuration/),
    ]);
  });

  it('logs other failures and continues', () => {
    const sys = fakeSyscalls({ addDefaultRoute: () => 'ENETUNREACH', setInterfaceUp: (n: never) => (n === 'lo' ? 'EPERM' : undefined) });
    const log = createMemoryLogger();
    const done = applyNetwork(plan, { syscalls: sys, log });
    expect(done.map((s) => s.kind)).toEqual(['address', 'up']);
    expect(log.lines.filter((l) => l.includes('warning'))).toHaveLength(2);
  });
});
