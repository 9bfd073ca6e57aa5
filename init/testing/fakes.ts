// Test doubles shared by init's unit tests: a recording Syscalls and a manual clock.
import { MOUNT_FLAGS, type Syscalls, type WaitResult } from '../../native';

export class FakeErrno extends Error {
  constructor(
    readonly code: string,
    readonly syscall: string,
    detail: string,
  ) {
    super(`${syscall}(${detail}): ${code}`);
  }
}

export type SyscallCall = [name: string, ...args: unknown[]];

/**
 * Records every call in `calls`; `fail[name]` makes a call throw (a function of the
 * arguments returning an errno name, or undefined to succeed).
 */
export function fakeSyscalls(
  fail: Partial<Record<keyof Syscalls, (...args: never[]) => string | undefined>> = {},
  waitResults: Map<number, WaitResult | null> = new Map(),
): Syscalls & { calls: SyscallCall[] } {
  const calls: SyscallCall[] = [];
  const call =
    (name: keyof Syscalls) =>
    (...args: unknown[]): unknown => {
      calls.push([name, ...args]);
      const failure = (fail[name] as ((...a: unknown[]) => string | undefined) | undefined)?.(...args);
      if (failure) throw new FakeErrno(failure, name, args.map(String).join(', '));
      if (name === 'waitpid') return waitResults.get(args[0] as number) ?? null;
      return undefined;
    };
  return {
    calls,
    mount: call('mount'),
    umount2: call('umount2'),
    reboot: call('reboot'),
    setCtrlAltDel: call('setCtrlAltDel'),
    sync: call('sync'),
    mknod: call('mknod'),
    lsetxattr: call('lsetxattr'),
    lgetxattr: call('lgetxattr') as Syscalls['lgetxattr'],
    syncfs: call('syncfs'),
    sethostname: call('sethostname'),
    waitpid: call('waitpid') as Syscalls['waitpid'],
    prctlSetChildSubreaper: call('prctlSetChildSubreaper'),
    setInterfaceUp: call('setInterfaceUp'),
    setInterfaceAddress: call('setInterfaceAddress'),
    addDefaultRoute: call('addDefaultRoute'),
    ...MOUNT_FLAGS,
    MS_SYNCHRONOUS: 16,
    MS_MANDLOCK: 64,
    MS_DIRSYNC: 128,
    MS_NOATIME: 1024,
    MS_NODIRATIME: 2048,
    MS_MOVE: 8192,
    MS_SILENT: 32768,
    MS_UNBINDABLE: 1 << 17,
    MS_SLAVE: 1 << 19,
    MS_SHARED: 1 << 20,
    MS_STRICTATIME: 1 << 24,
    MS_LAZYTIME: 1 << 25,
    MNT_EXPIRE: 4,
    UMOUNT_NOFOLLOW: 8,
  } as Syscalls & { calls: SyscallCall[] };
}

/** A clock whose sleeps resolve instantly and advance `now` by the amount slept. */
export function fakeClock(start = 0) {
  const clock = {
    now: start,
    sleeps: [] as number[],
    nowMs: () => clock.now,
    sleep: async (ms: number) => {
      clock.sleeps.push(ms);
      clock.now += ms;
    },
  };
  return clock;
}
