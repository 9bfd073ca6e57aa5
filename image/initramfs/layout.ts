// The initramfs as data: every path the node boots with, computed from the build's inputs (pure).
// The paths init and auraed read (/usr/lib/aurae, /etc/aurae) are theirs: supervisor/config/node-paths.ts.
import path from 'node:path';
import { IMAGE_CA_CERT, IMAGE_CONFIG_PATH, IMAGE_LIB_DIR, IMAGE_PKI_DIR } from '../../supervisor/config/node-paths';
import type { CpioEntry } from './cpio';

export interface InitramfsInputs {
  /** Stripped node binary of the image runtime. */
  node: string;
  /** Host libraries node needs (absolute paths; copied to the same paths). */
  libs: string[];
  bundles: { 'init.cjs': string; 'auraed.cjs': string; 'aer.cjs': string };
  syscallsAddon: string;
  sqliteAddon: string;
  /** The cell executable launcher (native/aurae-exec.c, static). */
  auraeExec: string;
  /** Host programs copied to the same absolute paths (build.ts IMAGE_TOOLS: e2fsprogs, crun); their libraries are in `libs`. */
  tools: string[];
  busybox: string;
  /** `busybox --list-full` output: applet paths like "bin/sh", "usr/bin/awk". */
  busyboxApplets: string[];
  /** Node config JSON text for IMAGE_CONFIG_PATH (/etc/aurae/config.json). */
  configJson: string;
  /**
   * Certificates only: the root CA the node trusts. No private key is ever in the image: the node's identity
   * (keys) reaches it separately (init/identity) and lands in /run/aurae/pki.
   */
  pki: { caCert: string };
}

const file = (p: string, mode: number, src: string | Buffer): CpioEntry => ({
  path: p,
  type: 'file',
  mode,
  data: typeof src === 'string' ? { file: src } : src,
});

/** Where /init mounts the tmpfs it moves the node's root into. */
export const SYSROOT = '/sysroot';

/**
 * /init: the kernel starts it as PID 1 on the initramfs (rootfs). pivot_root(2) refuses to move rootfs (a mount
 * with no parent: EINVAL) and crun pivot_roots into every container's root, so, as LinuxKit does, /init first
 * copies the image into a tmpfs and switch_roots into it (busybox switch_root: empties rootfs, moves the tmpfs
 * onto /, chroots, execs). An empty rootfs is also what a process that climbs out of a container's root finds
 * underneath. Then the Node init runs, still PID 1, with the kernel's arguments. Costs a copy of the image in RAM
 * at boot (rootfs is freed right after). If the copy fails (too little memory), the node boots on rootfs and
 * says so: everything but containers works there.
 */
export const INIT_SCRIPT = `#!/bin/busybox sh
b=/bin/busybox
if $b mount -t tmpfs -o mode=0755 aurae-root ${SYSROOT}; then
  ok=1
  for f in /*; do
    [ "$f" = ${SYSROOT} ] || $b cp -a "$f" ${SYSROOT}/ || ok=0
  done
  [ $ok = 1 ] && exec $b switch_root ${SYSROOT} /usr/bin/node ${IMAGE_LIB_DIR}/init.cjs "$@"
  $b umount ${SYSROOT}
fi
echo "init: could not move the root into a tmpfs: running on the initramfs, where containers cannot start (pivot_root)" >&2
exec /usr/bin/node ${IMAGE_LIB_DIR}/init.cjs "$@"
`;

/** An absolute node path as a cpio entry path (relative to the archive's root). */
const entryPath = (absolute: string) => absolute.replace(/^\//, '');

export function initramfsLayout(i: InitramfsInputs): CpioEntry[] {
  const lib = (name: string) => `${entryPath(IMAGE_LIB_DIR)}/${name}`;
  const dirs = ['dev', 'proc', 'sys', 'run', 'tmp', 'root', entryPath(SYSROOT), entryPath(IMAGE_PKI_DIR), 'var/lib/aurae', entryPath(IMAGE_LIB_DIR), 'bin', 'sbin', 'usr/bin', 'usr/sbin'];
  const entries: CpioEntry[] = dirs.map((d) => ({ path: d, type: 'dir', mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 }));
  entries.push(
    // The kernel opens /dev/console for PID 1's stdio before devtmpfs is mounted.
    { path: 'dev/console', type: 'char', mode: 0o600, rdevMajor: 5, rdevMinor: 1 },
    file('init', 0o755, Buffer.from(INIT_SCRIPT)),
    file('usr/bin/node', 0o755, i.node),
    file(lib('init.cjs'), 0o644, i.bundles['init.cjs']),
    file(lib('auraed.cjs'), 0o644, i.bundles['auraed.cjs']),
    file(lib('aer.cjs'), 0o644, i.bundles['aer.cjs']),
    file(lib('syscalls.node'), 0o755, i.syscallsAddon),
    file(lib('better_sqlite3.node'), 0o755, i.sqliteAddon),
    file(lib('aurae-exec'), 0o755, i.auraeExec),
    file(entryPath(IMAGE_CONFIG_PATH), 0o644, Buffer.from(i.configJson)),
    file(entryPath(IMAGE_CA_CERT), 0o644, i.pki.caCert),
    file('etc/passwd', 0o644, Buffer.from('root:x:0:0:root:/root:/bin/sh\n')),
    file('etc/group', 0o644, Buffer.from('root:x:0:\n')),
    file('etc/hosts', 0o644, Buffer.from('127.0.0.1 localhost\n::1 localhost\n')),
    file('bin/busybox', 0o755, i.busybox),
  );
  for (const hostLib of i.libs) entries.push(file(entryPath(hostLib), 0o755, hostLib));
  for (const tool of i.tools) entries.push(file(entryPath(tool), 0o755, tool));
  const taken = new Set(entries.map((e) => e.path));
  for (const applet of i.busyboxApplets) {
    const p = applet.replace(/^\//, '');
    if (!p || taken.has(p)) continue; // never shadow a real file (e.g. a future bin/node)
    taken.add(p);
    entries.push({ path: p, type: 'symlink', mode: 0o777, target: path.posix.relative(path.posix.dirname(`/${p}`), '/bin/busybox') });
  }
  return entries;
}
