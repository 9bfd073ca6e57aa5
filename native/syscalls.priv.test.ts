// Root on the host. Every scenario runs in a child inside new mount/UTS/net namespaces
// (and a new PID namespace for reboot), so the host's mounts, hostname, links and power
// state are untouched.
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSyscallsAddon, hostNodeIncludeDir } from './build';
import { FILE_TYPE_BITS, loadSyscallsFrom, MOUNT_FLAGS, type SyscallError } from './index';

const here = path.dirname(fileURLToPath(import.meta.url));
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
let workDir: string;
let addon: string;

beforeAll(async () => {
  workDir = mkdtempSync(path.join(tmpdir(), 'aurae-native-'));
  addon = await buildSyscallsAddon({ nodeIncludeDir: hostNodeIncludeDir(), outFile: path.join(workDir, 'syscalls.node') });
});
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

function probe(scenario: string, unshareFlags: string[] = [], extra: string[] = []) {
  const result = spawnSync(
    'unshare',
    ['--mount', '--uts', '--net', ...unshareFlags, '--fork', process.execPath, '--import', tsxLoader,
      path.join(here, 'priv-probe.ts'), scenario, ...extra],
    { encoding: 'utf8', env: { ...process.env, AURAE_SYSCALLS_ADDON: addon }, timeout: 30_000 },
  );
  const lines = result.stdout.trim().split('\n').filter(Boolean);
  return { result, lines, last: lines.length ? JSON.parse(lines[lines.length - 1]!) : undefined };
}

function ok(scenario: string) {
  const { result, last } = probe(scenario);
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  return last;
}

describe('syscall addon (in fresh namespaces)', () => {
  it('builds deterministically', async () => {
    const again = await buildSyscallsAddon({ nodeIncludeDir: hostNodeIncludeDir(), outFile: path.join(workDir, 'again.node') });
    expect(readFileSync(again).equals(readFileSync(addon))).toBe(true);
  });

  it('exports the kernel constants, matching the planners\' copies', () => {
    const sys = loadSyscallsFrom(addon);
    for (const [name, value] of Object.entries(MOUNT_FLAGS)) expect(sys[name as keyof typeof MOUNT_FLAGS], name).toBe(value);
    expect(sys.MS_LAZYTIME).toBe(1 << 25);
  });

  // File-system calls for layer unpacking: only files in a temp dir, so no namespace is needed.
  it('makes device nodes, FIFOs and whiteouts with mknod, and sets/reads xattrs without following symlinks', () => {
    const sys = loadSyscallsFrom(addon);
    const dir = mkdtempSync(path.join(workDir, 'fs-'));
    sys.mknod(path.join(dir, 'wh'), FILE_TYPE_BITS.S_IFCHR, 0, 0);
    expect(lstatSync(path.join(dir, 'wh')).isCharacterDevice()).toBe(true);
    expect(lstatSync(path.join(dir, 'wh')).rdev).toBe(0);
    sys.mknod(path.join(dir, 'null'), FILE_TYPE_BITS.S_IFCHR | 0o666, 1, 3);
    expect(lstatSync(path.join(dir, 'null')).rdev).toBe(0x103);
    sys.mknod(path.join(dir, 'fifo'), FILE_TYPE_BITS.S_IFIFO | 0o600, 0, 0);
    expect(lstatSync(path.join(dir, 'fifo')).isFIFO()).toBe(true);

    writeFileSync(path.join(dir, 'f'), '');
    symlinkSync('f', path.join(dir, 'link'));
    const binary = Buffer.from([0, 1, 2, 255]);
    sys.lsetxattr(path.join(dir, 'f'), 'user.bin', binary);
    expect(sys.lgetxattr(path.join(dir, 'f'), 'user.bin')).toEqual(binary);
    expect(sys.lgetxattr(path.join(dir, 'link'), 'user.bin')).toBeNull(); // the link itself, not its target
    sys.lsetxattr(path.join(dir, 'link'), 'trusted.overlay.opaque', Buffer.from('y'));
    expect(sys.lgetxattr(path.join(dir, 'link'), 'trusted.overlay.opaque')?.toString()).toBe('y');
    expect(sys.lgetxattr(path.join(dir, 'f'), 'trusted.overlay.opaque')).toBeNull();
    sys.syncfs(dir);

    const fail = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        const e = err as SyscallError;
        return { code: e.code, syscall: e.syscall, message: e.message };
      }
      return null;
    };
    expect(fail(() => sys.mknod(path.join(dir, 'wh'), FILE_TYPE_BITS.S_IFCHR, 0, 0))).toEqual({
      code: 'EEXIST',
      syscall: 'mknod',
      message: `mknod(${path.join(dir, 'wh')}, char 0:0): EEXIST (File exists)`,
    });
    expect(fail(() => sys.mknod(path.join(dir, 'x'), 0o100644, 0, 0))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(fail(() => sys.lsetxattr(path.join(dir, 'f'), 'user.x', 'text' as never))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(fail(() => sys.lsetxattr(path.join(dir, 'missing'), 'user.x', Buffer.from('v')))).toMatchObject({
      code: 'ENOENT',
      message: `lsetxattr(${path.join(dir, 'missing')}, user.x, 1 bytes): ENOENT (No such file or directory)`,
    });
    expect(fail(() => sys.syncfs(path.join(dir, 'missing')))).toMatchObject({ code: 'ENOENT', syscall: 'open' });
  });

  it('mounts a tmpfs and unmounts it', () => {
    const r = ok('mount');
    expect(r).toEqual({ mounted: true, umountError: null, afterUmount: false, fileSurvived: false });
  });

  it('sets the hostname inside its UTS namespace', () => {
    expect(ok('hostname')).toEqual({ hostname: 'aurae-probe' });
  });

  it('brings interfaces up, assigns an address and adds a default route', () => {
    const r = ok('net');
    const lo = r.lo[0];
    expect(lo.flags).toContain('UP');
    expect(lo.addr_info.map((a: { local: string }) => a.local)).toContain('127.0.0.1');
    const v0 = r.v0[0];
    expect(v0.flags).toContain('UP');
    expect(v0.addr_info).toContainEqual(expect.objectContaining({ family: 'inet', local: '10.99.0.2', prefixlen: 24 }));
    expect(r.routes).toContainEqual(expect.objectContaining({ dst: 'default', gateway: '10.99.0.1', dev: 'v0' }));
    expect(r.duplicate).toMatchObject({ code: 'EEXIST', syscall: 'ioctl(SIOCADDRT)' });
    expect(r.missing).toMatchObject({ code: 'ENODEV', message: 'ioctl(SIOCGIFFLAGS)(eth9): ENODEV (No such device)' });
    expect(r.unreachable).toMatchObject({ code: 'ENETUNREACH' });
  });

  it('waits for one specific (orphaned) child, exited or signaled', () => {
    const r = ok('waitpid');
    expect(r.stillRunning).toBeNull();
    expect(r.exited).toMatchObject({ exited: true, code: 7, signaled: false, signal: null });
    expect(r.killed).toMatchObject({ exited: false, code: null, signaled: true, signal: 9 });
    expect(r.notAChild).toMatchObject({ code: 'ECHILD', syscall: 'waitpid' });
  });

  it('throws errors with .code, .syscall and a message naming the argument', () => {
    const r = ok('errors');
    expect(r.mountMissingTarget).toEqual({
      code: 'ENOENT',
      syscall: 'mount',
      message: 'mount("none" on /nonexistent/aurae-probe, type tmpfs): ENOENT (No such file or directory)',
    });
    expect(r.mountBadFs).toMatchObject({ code: 'ENODEV', syscall: 'mount' });
    expect(r.umountNotMounted).toMatchObject({ code: 'EINVAL', syscall: 'umount2' });
    expect(r.badArgument).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(r.badReboot).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  // reboot(2) from PID 1 of a child PID namespace ends that namespace: its init dies with
  // SIGHUP for restart and SIGINT for poweroff, which unshare re-raises on itself.
  it.each([
    ['restart', 'SIGHUP'],
    ['poweroff', 'SIGINT'],
  ])('reboot(%s) in a PID namespace ends it with %s', (cmd, signal) => {
    const { result, lines } = probe('reboot', ['--pid', '--mount-proc'], [cmd]);
    expect(result.signal).toBe(signal);
    // Outside the initial PID namespace, ctrl-alt-del handling cannot be changed.
    expect(JSON.parse(lines[0]!)).toEqual({ cad: expect.objectContaining({ code: 'EINVAL', syscall: 'reboot' }) });
    expect(lines).toHaveLength(1);
  });
});
