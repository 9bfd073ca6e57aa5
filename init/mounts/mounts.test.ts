import { describe, expect, it } from 'vitest';
import { MOUNT_FLAGS } from '../../native';
import { createMemoryLogger } from '../log';
import { fakeSyscalls } from '../testing/fakes';
import {
  applyMounts,
  mountedTargets,
  mountTable,
  unmountAll,
  unmountPlan,
} from './index';

describe('mount table', () => {
  it('mounts proc first, then sys, dev and its children, run, tmp and cgroup2', () => {
    const table = mountTable();
    expect(table.map((m) => `${m.fstype} ${m.target}`)).toEqual([
      'proc /proc',
      'sysfs /sys',
      'devtmpfs /dev',
      'devpts /dev/pts',
      'tmpfs /dev/shm',
      'tmpfs /run',
      'tmpfs /tmp',
      'cgroup2 /sys/fs/cgroup',
    ]);
    const byTarget = new Map(table.map((m) => [m.target, m]));
    expect(byTarget.get('/dev/pts')!.data).toContain('newinstance');
    expect(byTarget.get('/dev/pts')!.data).toContain('ptmxmode=0666');
    expect(byTarget.get('/run')!.data).toBe('mode=0755');
    expect(byTarget.get('/tmp')!.data).toBe('mode=1777');
    expect(byTarget.get('/proc')!.flags & MOUNT_FLAGS.MS_NOEXEC).toBeTruthy();
    // Every entry names itself for the log.
    expect(table.every((m) => m.description.length > 0)).toBe(true);
    // A mount point is mounted after the filesystem that holds it.
    table.forEach((m, i) => {
      const parent = table.findIndex((p) => m.target !== p.target && m.target.startsWith(`${p.target}/`));
      if (parent !== -1) expect(parent).toBeLessThan(i);
    });
  });

  it('unmounts in reverse order', () => {
    expect(unmountPlan().map((m) => m.target)).toEqual([
      '/sys/fs/cgroup', '/tmp', '/run', '/dev/shm', '/dev/pts', '/dev', '/sys', '/proc',
    ]);
  });
});

describe('mountedTargets', () => {
  it('reads field 5 of mountinfo and decodes octal escapes', () => {
    const text = [
      '22 27 0:21 / /proc rw,relatime - proc proc rw',
      '30 27 0:30 / /mnt/with\\040space rw - tmpfs tmpfs rw',
      '',
    ].join('\n');
    expect([...mountedTargets(text)]).toEqual(['/proc', '/mnt/with space']);
  });
});

describe('applyMounts', () => {
  it('creates mount points, mounts, skips mounted targets and tolerates EBUSY', () => {
    const sys = fakeSyscalls({ mount: (_s: never, target: never) => (target === '/run' ? 'EBUSY' : undefined) });
    const made: string[] = [];
    let procMounted = false;
    const log = createMemoryLogger();
    const results = applyMounts(mountTable(), {
      syscalls: sys,
      mkdir: (p) => made.push(p),
      // /proc is readable once mounted; pretend the kernel already mounted /dev.
      readMountinfo: () => {
        if (!procMounted) {
          procMounted = sys.calls.some((c) => c[2] === '/proc');
          if (!procMounted) return null;
        }
        return '1 0 0:1 / /proc rw - proc proc rw\n2 0 0:2 / /dev rw - devtmpfs devtmpfs rw\n';
      },
      log,
    });
    expect(results.find((r) => r.target === '/dev')!.outcome).toBe('already-mounted');
    expect(results.find((r) => r.target === '/run')!.outcome).toBe('already-mounted');
    expect(results.filter((r) => r.outcome === 'mounted')).toHaveLength(6);
    expect(made).not.toContain('/dev');
    expect(sys.calls.find((c) => c[2] === '/sys/fs/cgroup')).toEqual([
      'mount', 'cgroup2', '/sys/fs/cgroup', 'cgroup2', mountTable().at(-1)!.flags, null,
    ]);
    expect(log.lines.filter((l) => l.includes('error'))).toEqual([]);
  });

  it('logs a failure with a hint and carries on', () => {
    const sys = fakeSyscalls({ mount: (_s: never, target: never) => (target === '/sys/fs/cgroup' ? 'ENODEV' : undefined) });
    const log = createMemoryLogger();
    const results = applyMounts(mountTable(), { syscalls: sys, mkdir: () => {}, readMountinfo: () => null, log });
    expect(results.at(-1)).toEqual({ target: '/sys/fs/cgroup', outcome: 'failed' });
    expect(results.slice(0, -1).every((r) => r.outcome === 'mounted')).toBe(true);
    expect(log.lines.at(-1)).toMatch(/error: mounting cgroup2 on \/sys\/fs\/cgroup .* failed: .*ENODEV.*built into the kernel/);
  });
});

describe('unmountAll', () => {
  it('detaches busy mounts, skips unmounted ones and never throws', () => {
    const sys = fakeSyscalls({
      umount2: (target: never, flags: never) => {
        if (target === '/dev' && flags === 0) return 'EBUSY';
        if (target === '/tmp') return 'EINVAL';
        if (target === '/proc') return 'EPERM';
        return undefined;
      },
    });
    const log = createMemoryLogger();
    expect(() => unmountAll(unmountPlan(), { syscalls: sys, log })).not.toThrow();
    expect(sys.calls.map((c) => `${c[1]}:${c[2]}`)).toEqual([
      '/sys/fs/cgroup:0', '/tmp:0', '/run:0', '/dev/shm:0', '/dev/pts:0', '/dev:0', `/dev:${MOUNT_FLAGS.MNT_DETACH}`, '/sys:0', '/proc:0',
    ]);
    expect(log.lines.join('\n')).toMatch(/\/dev busy, detached lazily/);
    expect(log.lines.join('\n')).toMatch(/\/tmp was not mounted \(EINVAL\), skipped/);
    expect(log.lines.join('\n')).toMatch(/warning: unmount: \/proc failed/);
  });
});
