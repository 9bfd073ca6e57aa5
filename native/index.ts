// The syscall addon's TypeScript face. Everything in init that touches the kernel goes
// through a `Syscalls` value, so unit tests pass a fake and only priv/qemu tests load the addon.
import { existsSync } from 'node:fs';
import { locateInstalled } from '../supervisor/config/node-paths';

export interface WaitResult {
  pid: number;
  /** Raw wait status. */
  status: number;
  exited: boolean;
  /** Exit code when `exited`, else null. */
  code: number | null;
  signaled: boolean;
  /** Terminating signal number when `signaled`, else null. */
  signal: number | null;
}

export type RebootCommand = 'poweroff' | 'restart' | 'halt';

/**
 * The kernel calls init needs. Every function throws an Error with `.code` = errno name
 * ("EBUSY"), `.syscall`, and a message naming the argument.
 */
export interface Syscalls {
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  /** Does not return on success. */
  reboot(cmd: RebootCommand): void;
  /** false: ctrl-alt-del sends SIGINT to PID 1 (graceful); true: the kernel reboots at once. */
  setCtrlAltDel(enabled: boolean): void;
  sync(): void;
  /** mknod(2): `mode` = file type (FILE_TYPE_BITS.S_IFCHR | S_IFBLK | S_IFIFO) | permission bits (umask applies). */
  mknod(path: string, mode: number, major: number, minor: number): void;
  /** lsetxattr(2) on the path itself (a symlink is never followed). */
  lsetxattr(path: string, name: string, value: Buffer): void;
  /** lgetxattr(2); null when the attribute is not set (ENODATA). */
  lgetxattr(path: string, name: string): Buffer | null;
  /** syncfs(2) on the filesystem holding `path`. */
  syncfs(path: string): void;
  sethostname(name: string): void;
  /** Wait for one specific pid; with nohang, null while it still runs. Never pass -1 (DESIGN.md §3). */
  waitpid(pid: number, nohang: boolean): WaitResult | null;
  prctlSetChildSubreaper(): void;
  setInterfaceUp(name: string): void;
  setInterfaceAddress(name: string, ipv4: string, prefixLen: number): void;
  addDefaultRoute(gatewayIpv4: string): void;
  /**
   * The descriptor carried (SCM_RIGHTS) by the next message on a connected Unix socket, close-on-exec: how crun's
   * --console-socket hands over a pty master. Waits on the thread pool, at most timeoutMs (1..600000); rejects
   * with code ETIMEDOUT, EBADMSG (no descriptor in the message), ECONNRESET (closed without one) or the errno.
   */
  recvFd(socketFd: number, timeoutMs: number): Promise<number>;
  /** TIOCSWINSZ: a terminal's size in rows and columns (0..65535); the process on a pty's slave gets SIGWINCH. */
  setWindowSize(fd: number, rows: number, cols: number): void;

  readonly MS_RDONLY: number;
  readonly MS_NOSUID: number;
  readonly MS_NODEV: number;
  readonly MS_NOEXEC: number;
  readonly MS_SYNCHRONOUS: number;
  readonly MS_REMOUNT: number;
  readonly MS_MANDLOCK: number;
  readonly MS_DIRSYNC: number;
  readonly MS_NOATIME: number;
  readonly MS_NODIRATIME: number;
  readonly MS_BIND: number;
  readonly MS_MOVE: number;
  readonly MS_REC: number;
  readonly MS_SILENT: number;
  readonly MS_UNBINDABLE: number;
  readonly MS_PRIVATE: number;
  readonly MS_SLAVE: number;
  readonly MS_SHARED: number;
  readonly MS_RELATIME: number;
  readonly MS_STRICTATIME: number;
  readonly MS_LAZYTIME: number;
  readonly MNT_FORCE: number;
  readonly MNT_DETACH: number;
  readonly MNT_EXPIRE: number;
  readonly UMOUNT_NOFOLLOW: number;
}

/** An error thrown by the addon. */
export interface SyscallError extends Error {
  code: string;
  syscall?: string;
  errno?: number;
}

/** True when `err` came from a failed syscall with errno name `code` (e.g. 'EBUSY'). */
export function isErrno(err: unknown, ...codes: string[]): err is SyscallError {
  return err instanceof Error && typeof (err as SyscallError).code === 'string' && codes.includes((err as SyscallError).code);
}

/** Linux mount flag values, for planners that must not load the addon (they are ABI constants). */
export const MOUNT_FLAGS = {
  MS_RDONLY: 1,
  MS_NOSUID: 2,
  MS_NODEV: 4,
  MS_NOEXEC: 8,
  MS_REMOUNT: 32,
  MS_BIND: 4096,
  MS_REC: 16384,
  MS_PRIVATE: 1 << 18,
  MS_RELATIME: 1 << 21,
  MNT_FORCE: 1,
  MNT_DETACH: 2,
} as const;

/** File type bits for mknod (ABI constants, <sys/stat.h>). */
export const FILE_TYPE_BITS = {
  S_IFMT: 0o170000,
  S_IFIFO: 0o010000,
  S_IFCHR: 0o020000,
  S_IFBLK: 0o060000,
} as const;

/**
 * Where loadSyscalls looks for the .node file, in order: env AURAE_SYSCALLS_ADDON, beside the running bundle
 * (the image's /usr/lib/aurae), native/build/ in the checkout (run from source: tsx, vitest).
 */
export function addonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  return locateInstalled('syscalls.node', 'native/build/syscalls.node', { override: env.AURAE_SYSCALLS_ADDON }).candidates;
}

/** Load a specific addon file. process.dlopen works the same from ESM sources and the CJS bundle. */
export function loadSyscallsFrom(file: string): Syscalls {
  const mod: { exports: unknown } = { exports: {} };
  try {
    process.dlopen(mod, file);
  } catch (err) {
    throw new Error(
      `loading the syscall addon ${file} failed: ${(err as Error).message}: rebuild it with \`npx tsx native/build.ts\``,
    );
  }
  return mod.exports as Syscalls;
}

/**
 * Load the syscall addon from the first existing candidate (env AURAE_SYSCALLS_ADDON, beside
 * the bundle, native/build/ in the repo). Throws naming the paths tried and how to build it.
 */
export function loadSyscalls(env: NodeJS.ProcessEnv = process.env): Syscalls {
  const candidates = addonCandidates(env);
  if (env.AURAE_SYSCALLS_ADDON && !existsSync(env.AURAE_SYSCALLS_ADDON)) {
    throw new Error(`AURAE_SYSCALLS_ADDON=${env.AURAE_SYSCALLS_ADDON}: no such file`);
  }
  const found = candidates.find((file) => existsSync(file));
  if (!found) {
    throw new Error(
      `syscall addon not found (looked in ${candidates.join(', ')}): run \`npx tsx native/build.ts\` ` +
        `or set AURAE_SYSCALLS_ADDON to the syscalls.node file`,
    );
  }
  return loadSyscallsFrom(found);
}
