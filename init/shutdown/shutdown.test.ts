import { describe, expect, it } from 'vitest';
import { createMemoryLogger } from '../log';
import { unmountPlan } from '../mounts';
import { fakeClock, fakeSyscalls } from '../testing/fakes';
import { createShutdown, killAllProcesses, type ShutdownDeps } from './index';

const MARKERS = (action: string, reason: string) => [
  `shutdown: begin (${action}, reason: ${reason})`,
  'shutdown: stopping auraed',
  'shutdown: auraed stopped',
  'shutdown: SIGTERM to all processes',
  'shutdown: SIGKILL to remaining processes',
  'shutdown: sync',
  'shutdown: unmounting',
  `shutdown: ${action} now`,
];

function setup(overrides: Partial<ShutdownDeps> = {}, fail: Parameters<typeof fakeSyscalls>[0] = {}) {
  const log = createMemoryLogger();
  const sys = fakeSyscalls(fail);
  const clock = fakeClock(1_000);
  const events: string[] = [];
  // Processes: 50 exits 300 ms after SIGTERM, 51 ignores SIGTERM until SIGKILL.
  let termAt: number | undefined;
  let killed = false;
  let hung = 0;
  const deps: ShutdownDeps = {
    log,
    graceMs: () => 2_000,
    stopAuraed: async (grace) => {
      events.push(`stopAuraed(${grace})`);
    },
    stopRespawners: () => events.push('stopRespawners'),
    killAll: (signal) => {
      events.push(`killAll(${signal})`);
      if (signal === 'SIGTERM') termAt = clock.now;
      else killed = true;
    },
    remaining: () => {
      if (killed) return [];
      const left = [51];
      if (termAt === undefined || clock.now < termAt + 300) left.unshift(50);
      return left;
    },
    reapOrphans: () => events.push('reap'),
    syscalls: sys,
    unmountPlan: unmountPlan(),
    clock: { now: clock.nowMs, sleep: clock.sleep },
    hang: async () => {
      hung++;
    },
    ...overrides,
  };
  return { deps, log, sys, clock, events, hung: () => hung };
}

const markerLines = (lines: string[]) =>
  lines.map((l) => l.replace(/^\[\s*[\d.]+\] init: /, '')).filter((l) => /^shutdown: (begin|stopping auraed|auraed stopped|SIG|sync|unmounting|\w+ now)/.test(l));

describe('shutdown', () => {
  it('runs the steps in order and prints the markers', async () => {
    const { deps, log, sys, events, clock, hung } = setup();
    await createShutdown(deps).request('poweroff', 'signal SIGTERM');
    expect(markerLines(log.lines)).toEqual(MARKERS('poweroff', 'signal SIGTERM'));
    expect(events.filter((e) => e !== 'reap')).toEqual(['stopRespawners', 'stopAuraed(2000)', 'killAll(SIGTERM)', 'killAll(SIGKILL)']);
    // SIGKILL came after the full grace period because pid 51 ignored SIGTERM.
    expect(clock.now).toBeGreaterThanOrEqual(1_000 + 2_000);
    expect(log.lines.some((l) => l.includes('1 process(es) still running after 2000 ms: 51'))).toBe(true);
    const names = sys.calls.map((c) => c[0]);
    expect(names[0]).toBe('sync');
    expect(names.filter((n) => n === 'umount2')).toHaveLength(8);
    expect(sys.calls.at(-1)).toEqual(['reboot', 'poweroff']);
    expect(sys.calls.find((c) => c[0] === 'umount2')).toEqual(['umount2', '/sys/fs/cgroup', 0]);
    // reboot(2) "returned" in the fake, so the path parks instead of exiting.
    expect(hung()).toBe(1);
  });

  it('skips the rest of the grace period once every process is gone', async () => {
    const { deps, clock } = setup({ remaining: () => [] });
    await createShutdown(deps).request('reboot', 'power button');
    expect(clock.now).toBe(1_000);
  });

  it('maps reboot to reboot(restart)', async () => {
    const { deps, sys, log } = setup();
    await createShutdown(deps).request('reboot', 'auraed IPC (admin)');
    expect(sys.calls.at(-1)).toEqual(['reboot', 'restart']);
    expect(markerLines(log.lines)).toEqual(MARKERS('reboot', 'auraed IPC (admin)'));
  });

  it('is idempotent: a second request is logged and ignored', async () => {
    const { deps, log, sys } = setup();
    const shutdown = createShutdown(deps);
    const first = shutdown.request('poweroff', 'signal SIGTERM');
    await shutdown.request('poweroff', 'signal SIGUSR2');
    await shutdown.request('reboot', 'signal SIGINT');
    await first;
    expect(shutdown.inProgress).toBe('poweroff');
    expect(log.lines.filter((l) => l.includes('shutdown: begin'))).toHaveLength(1);
    expect(log.lines.some((l) => l.includes('already shutting down (poweroff); ignoring another request (signal SIGUSR2)'))).toBe(true);
    expect(log.lines.some((l) => l.includes('already shutting down (poweroff); ignoring the request to reboot (signal SIGINT)'))).toBe(true);
    expect(sys.calls.filter((c) => c[0] === 'reboot')).toEqual([['reboot', 'poweroff']]);
  });

  it('never throws: every failing step is logged and the path continues', async () => {
    const { deps, log, sys, hung } = setup(
      {
        stopAuraed: async () => {
          throw new Error('auraed wedged');
        },
        stopRespawners: () => {
          throw new Error('boom');
        },
        killAll: () => {
          throw new Error('EPERM');
        },
        remaining: () => {
          throw new Error('/proc gone');
        },
        graceMs: () => {
          throw new Error('no config');
        },
      },
      { sync: () => 'EIO', umount2: () => 'EPERM', reboot: () => 'EPERM' },
    );
    await expect(createShutdown(deps).request('poweroff', 'fatal error: x')).resolves.toBeUndefined();
    expect(markerLines(log.lines)).toEqual(MARKERS('poweroff', 'fatal error: x'));
    expect(log.lines.filter((l) => l.includes('error: shutdown:')).length).toBeGreaterThanOrEqual(6);
    expect(log.lines.some((l) => l.includes('reboot(2) for poweroff failed') && l.includes('PID 1 must not exit'))).toBe(true);
    expect(sys.calls.at(-1)).toEqual(['reboot', 'poweroff']);
    expect(hung()).toBe(1);
  });
});

describe('killAllProcesses', () => {
  it('refuses outside PID 1 (tests and dev hosts)', () => {
    expect(() => killAllProcesses('SIGTERM')).toThrow(/refusing kill\(-1, SIGTERM\): not PID 1/);
  });
});
