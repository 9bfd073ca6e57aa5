// The early filesystems as data (u-root libinit style): each entry says what to mount,
// where, with which flags, and why (the description goes to the log). `applyMounts`
// executes the table; `unmountPlan` is the same table reversed for shutdown. What is delegated in the cgroup2
// mount afterwards is supervisor/cgroup's (delegateRootControllers).
import { isErrno, MOUNT_FLAGS, type Syscalls } from '../../native';
import { CGROUP_ROOT } from '../../supervisor/cgroup/layout';
import { errorMessage, type Logger } from '../log';

const { MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_RELATIME, MNT_DETACH } = MOUNT_FLAGS;

export interface MountSpec {
  source: string;
  target: string;
  fstype: string;
  flags: number;
  data: string | null;
  description: string;
  /** Mode for the mount point directory when init has to create it. */
  mode: number;
}

/** Mounted in this order; /proc first so later steps can read /proc/self/mountinfo. */
export function mountTable(): MountSpec[] {
  const noSuidDevExec = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME;
  return [
    { source: 'proc', target: '/proc', fstype: 'proc', flags: noSuidDevExec, data: null, mode: 0o555, description: 'process information' },
    { source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: noSuidDevExec, data: null, mode: 0o555, description: 'kernel objects' },
    { source: 'devtmpfs', target: '/dev', fstype: 'devtmpfs', flags: MS_NOSUID | MS_RELATIME, data: 'mode=0755', mode: 0o755, description: 'device nodes' },
    { source: 'devpts', target: '/dev/pts', fstype: 'devpts', flags: MS_NOSUID | MS_NOEXEC | MS_RELATIME, data: 'newinstance,ptmxmode=0666,mode=0620', mode: 0o755, description: 'pseudo terminals' },
    { source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: MS_NOSUID | MS_NODEV | MS_RELATIME, data: 'mode=1777', mode: 0o1777, description: 'POSIX shared memory' },
    { source: 'run', target: '/run', fstype: 'tmpfs', flags: MS_NOSUID | MS_NODEV | MS_RELATIME, data: 'mode=0755', mode: 0o755, description: 'runtime state (sockets, pid files)' },
    { source: 'tmp', target: '/tmp', fstype: 'tmpfs', flags: MS_NOSUID | MS_NODEV | MS_RELATIME, data: 'mode=1777', mode: 0o1777, description: 'temporary files' },
    { source: 'cgroup2', target: CGROUP_ROOT, fstype: 'cgroup2', flags: noSuidDevExec, data: null, mode: 0o555, description: 'cgroup v2 hierarchy for cells' },
  ];
}

/** Targets currently mounted, from /proc/self/mountinfo text (field 5, octal escapes decoded). */
export function mountedTargets(mountinfo: string): Set<string> {
  const targets = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const target = line.split(' ')[4];
    if (target) targets.add(target.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8))));
  }
  return targets;
}

/** Shutdown order: the mount table reversed (children before parents). */
export function unmountPlan(table: MountSpec[] = mountTable()): MountSpec[] {
  return [...table].reverse();
}

export interface MountDeps {
  syscalls: Pick<Syscalls, 'mount' | 'umount2'>;
  /** mkdir -p with mode. */
  mkdir(path: string, mode: number): void;
  /** /proc/self/mountinfo text, or null while /proc is not mounted. */
  readMountinfo(): string | null;
  log: Logger;
}

export interface MountResult {
  target: string;
  outcome: 'mounted' | 'already-mounted' | 'failed';
}

/**
 * Mount every entry, skipping targets already mounted (e.g. by the kernel or a previous
 * init). Failures are logged and do not stop the rest: a node without /dev/shm is
 * degraded, not dead. Returns what happened to each entry.
 */
export function applyMounts(table: MountSpec[], deps: MountDeps): MountResult[] {
  const results: MountResult[] = [];
  for (const spec of table) {
    const what = `${spec.fstype} on ${spec.target} (${spec.description})`;
    const mountinfo = deps.readMountinfo();
    if (mountinfo !== null && mountedTargets(mountinfo).has(spec.target)) {
      deps.log.debug(`mount: ${spec.target} already mounted`);
      results.push({ target: spec.target, outcome: 'already-mounted' });
      continue;
    }
    try {
      deps.mkdir(spec.target, spec.mode);
      deps.syscalls.mount(spec.source, spec.target, spec.fstype, spec.flags, spec.data);
      deps.log.debug(`mounted ${what}`);
      results.push({ target: spec.target, outcome: 'mounted' });
    } catch (err) {
      if (isErrno(err, 'EBUSY')) {
        deps.log.debug(`mount: ${spec.target} already mounted (EBUSY)`);
        results.push({ target: spec.target, outcome: 'already-mounted' });
      } else {
        deps.log.error(`mounting ${what} failed: ${errorMessage(err)}: is the filesystem built into the kernel?`);
        results.push({ target: spec.target, outcome: 'failed' });
      }
    }
  }
  return results;
}

/**
 * Unmount in plan order. EBUSY falls back to a lazy detach; EINVAL (not mounted) and
 * ENOENT are logged and ignored. Never throws: shutdown continues whatever happens.
 */
export function unmountAll(plan: MountSpec[], deps: { syscalls: Pick<Syscalls, 'umount2'>; log: Logger }): void {
  for (const spec of plan) {
    try {
      deps.syscalls.umount2(spec.target, 0);
      deps.log.debug(`unmounted ${spec.target}`);
    } catch (err) {
      if (isErrno(err, 'EBUSY')) {
        try {
          deps.syscalls.umount2(spec.target, MNT_DETACH);
          deps.log.info(`unmount: ${spec.target} busy, detached lazily`);
        } catch (detachErr) {
          deps.log.warn(`unmount: detaching ${spec.target} failed: ${errorMessage(detachErr)}`);
        }
      } else if (isErrno(err, 'EINVAL', 'ENOENT')) {
        deps.log.info(`unmount: ${spec.target} was not mounted (${(err as { code: string }).code}), skipped`);
      } else {
        deps.log.warn(`unmount: ${spec.target} failed: ${errorMessage(err)}`);
      }
    }
  }
}
