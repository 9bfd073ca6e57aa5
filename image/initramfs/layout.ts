// The node's files as data: every path the node boots with, computed from the build's inputs (pure), and how
// they are split between the initramfs and the read-only root image (image/rootimg) that holds /usr.
// The paths init and auraed read (/usr/lib/aurae, /etc/aurae) are theirs: supervisor/config/node-paths.ts.
import path from 'node:path';
import {
  IMAGE_CA_CERT,
  IMAGE_CONFIG_PATH,
  IMAGE_LIB_DIR,
  IMAGE_PKI_DIR,
  IMAGE_SIGNING_CERT,
  ROOT_DISK_SERIAL,
  ROOT_IMAGE_ALIGN,
  STAGE_BUSYBOX,
  STAGE_DIR,
  STAGE_ROOT_IMAGE,
} from '../../supervisor/config/node-paths';
import type { CpioEntry } from './cpio';

export interface InitramfsInputs {
  /** Stripped node binary of the image runtime. */
  node: string;
  /** Host libraries node needs (absolute paths; installed at the same paths, /lib… under /usr: see usrPath). */
  libs: string[];
  bundles: { 'init.cjs': string; 'auraed.cjs': string; 'aer.cjs': string };
  /** auraed's V8 startup snapshot (image/bundle/snapshot.ts), beside auraed.cjs; null: init starts auraed.cjs. */
  auraedSnapshot: string | null;
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
  pki: { caCert: string; /** The image-signing certificate the config pins (image/sign), when the build has one. */ imageSigningCert?: string };
  /** The read-only root image holding /usr (built from rootImageLayout), or null: /usr unpacked from the initramfs. */
  rootImage: RootImageRef | null;
}

/** The file systems the read-only root image can be (image/rootimg builds them; the kernel has both built in). */
export type RootImageFsType = 'erofs' | 'squashfs';

/** The root image as the initramfs carries it. */
export interface RootImageRef {
  /** The built image file on the build host. */
  file: string;
  fstype: RootImageFsType;
}

const file = (p: string, mode: number, src: string | Buffer): CpioEntry => ({
  path: p,
  type: 'file',
  mode,
  data: typeof src === 'string' ? { file: src } : src,
});

/** Zeros before the root image (sorted between the busybox and the image: see initramfsLayout). */
const STAGE_PAD = `${STAGE_DIR}/pad`;
/** Where /init mounts the tmpfs that becomes the node's root. */
export const SYSROOT = '/sysroot';
/** The read-only root image is mounted here: everything the node runs (runtime, libraries, bundles, tools). */
export const ROOT_IMAGE_MOUNT = '/usr';
/** Merged /usr, as on the build host (Debian 12): these top-level names are links into /usr. */
export const USR_LINKS = ['bin', 'sbin', 'lib', 'lib64'] as const;

/**
 * /init: the kernel starts it as PID 1 on the initramfs (rootfs). pivot_root(2) refuses to move rootfs (a mount
 * with no parent: EINVAL) and crun pivot_roots into every container's root, so, as LinuxKit does, /init makes a
 * tmpfs the node's root and switch_roots into it (busybox switch_root: empties rootfs, moves the tmpfs onto /,
 * chroots, execs). The initramfs's top level (/etc, the empty directories, the /bin → usr/bin links: a few KB) is
 * copied into the tmpfs; /usr is the read-only root image, mounted through a loop device straight from the
 * initramfs and read lazily: only the pages a process touches are decompressed, and the page cache may drop them
 * again. A child's parent boots it with the initramfs minus the image and hands the image over as a read-only
 * virtio disk (supervisor/vms/child-root.ts): /init then finds that disk by its serial (ROOT_DISK_SERIAL, in
 * sysfs, mounted only for that) and mounts it instead. (Without a root image, `rootImage` null, /usr is in the initramfs and copied like the rest: the old
 * layout, kept for `npm run bench`'s comparison.) devtmpfs is mounted only to reach the loop devices and unmounted
 * again, so init's own mount table (init/mounts) finds /dev as before. Then the Node init runs, still PID 1, with
 * the kernel's arguments. Any failure here leaves no Node to run: /init says what failed and powers off.
 */
export function initScript(rootImage: Pick<RootImageRef, 'fstype'> | null): string {
  const fs = rootImage?.fstype;
  const mountImage = fs
    ? `$b mount -t devtmpfs -o mode=0755 devtmpfs /dev || fail "mounting devtmpfs on /dev (for the root image) failed"
if [ -e ${STAGE_ROOT_IMAGE} ]; then
$b mount -t ${fs} -o ro,loop ${STAGE_ROOT_IMAGE} ${SYSROOT}${ROOT_IMAGE_MOUNT} || fail "mounting the root image ${STAGE_ROOT_IMAGE} (${fs}) on ${ROOT_IMAGE_MOUNT} failed: does the kernel have ${fs.toUpperCase()}_FS and BLK_DEV_LOOP built in (image/kernel/fragment.config)?"
else
$b mount -t sysfs sysfs /sys || fail "mounting sysfs on /sys (to find the root disk) failed"
dev=
for s in /sys/block/*/serial; do [ "$($b cat $s 2>/dev/null)" = ${ROOT_DISK_SERIAL} ] && d=\${s%/serial} && dev=/dev/\${d##*/}; done
$b umount /sys || fail "unmounting /sys failed"
[ -n "$dev" ] || fail "no root image: ${STAGE_ROOT_IMAGE} is not in the initramfs and no disk has the serial ${ROOT_DISK_SERIAL} (a child is handed one by its parent)"
$b mount -t ${fs} -o ro $dev ${SYSROOT}${ROOT_IMAGE_MOUNT} || fail "mounting the root image disk $dev (${fs}) on ${ROOT_IMAGE_MOUNT} failed"
fi
$b umount /dev || fail "unmounting /dev failed"
`
    : '';
  return `#!${STAGE_BUSYBOX} sh
b=${STAGE_BUSYBOX}
fail() { echo "init: $*: powering off" >&2; $b sync; $b poweroff -f; }
$b mount -t tmpfs -o mode=0755 aurae-root ${SYSROOT} || fail "mounting the root tmpfs on ${SYSROOT} failed"
top=
for f in /*; do [ "$f" = ${SYSROOT} ] || [ "$f" = /init ] || top="$top $f"; done
$b cp -a $top ${SYSROOT}/ || fail "copying$top into the root tmpfs failed (too little memory?)"
${mountImage}exec $b switch_root ${SYSROOT} /usr/bin/node ${IMAGE_LIB_DIR}/init.cjs "$@"
`;
}

/** An absolute node path as an entry path (relative to the root, no leading slash). */
const entryPath = (absolute: string) => absolute.replace(/^\//, '');

/**
 * Where a host path lives on the node: /bin, /sbin, /lib and /lib64 are links into /usr (merged /usr), so a file
 * at /lib/x86_64-linux-gnu/libc.so.6 on the host is usr/lib/x86_64-linux-gnu/libc.so.6 in the tree.
 */
export function usrPath(absolute: string): string {
  const p = entryPath(absolute);
  const top = p.split('/')[0]!;
  return (USR_LINKS as readonly string[]).includes(top) && p !== top ? `usr/${p}` : p;
}

/** The node's whole tree (merged /usr), as one list; rootImageLayout and initramfsLayout split it. */
export function nodeTree(i: Omit<InitramfsInputs, 'rootImage'>): CpioEntry[] {
  const lib = (name: string) => `${entryPath(IMAGE_LIB_DIR)}/${name}`;
  const dirs = ['dev', 'proc', 'sys', 'run', 'tmp', 'root', entryPath(IMAGE_PKI_DIR), 'var/lib/aurae', entryPath(IMAGE_LIB_DIR), 'usr/bin', 'usr/sbin'];
  const entries: CpioEntry[] = dirs.map((d) => ({ path: d, type: 'dir', mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 }));
  for (const name of USR_LINKS) entries.push({ path: name, type: 'symlink', mode: 0o777, target: `usr/${name}` });
  entries.push(
    // The kernel opens /dev/console for PID 1's stdio before devtmpfs is mounted.
    { path: 'dev/console', type: 'char', mode: 0o600, rdevMajor: 5, rdevMinor: 1 },
    file('usr/bin/node', 0o755, i.node),
    file(lib('init.cjs'), 0o644, i.bundles['init.cjs']),
    file(lib('auraed.cjs'), 0o644, i.bundles['auraed.cjs']),
    file(lib('aer.cjs'), 0o644, i.bundles['aer.cjs']),
    ...(i.auraedSnapshot ? [file(lib('auraed.blob'), 0o644, i.auraedSnapshot)] : []),
    file(lib('syscalls.node'), 0o755, i.syscallsAddon),
    file(lib('better_sqlite3.node'), 0o755, i.sqliteAddon),
    file(lib('aurae-exec'), 0o755, i.auraeExec),
    file(entryPath(IMAGE_CONFIG_PATH), 0o644, Buffer.from(i.configJson)),
    file(entryPath(IMAGE_CA_CERT), 0o644, i.pki.caCert),
    ...(i.pki.imageSigningCert ? [file(entryPath(IMAGE_SIGNING_CERT), 0o644, i.pki.imageSigningCert)] : []),
    file('etc/passwd', 0o644, Buffer.from('root:x:0:0:root:/root:/bin/sh\n')),
    file('etc/group', 0o644, Buffer.from('root:x:0:\n')),
    file('etc/hosts', 0o644, Buffer.from('127.0.0.1 localhost\n::1 localhost\n')),
    file('usr/bin/busybox', 0o755, i.busybox),
  );
  const taken = new Set(entries.map((e) => e.path));
  const add = (e: CpioEntry) => {
    if (taken.has(e.path)) return; // never shadow a real file (e.g. a tool busybox also has an applet for)
    taken.add(e.path);
    entries.push(e);
  };
  for (const hostLib of i.libs) add(file(usrPath(hostLib), 0o755, hostLib));
  for (const tool of i.tools) add(file(usrPath(tool), 0o755, tool));
  for (const applet of i.busyboxApplets) {
    const p = usrPath(`/${applet.replace(/^\//, '')}`);
    if (p === '' || p === 'usr/') continue;
    add({ path: p, type: 'symlink', mode: 0o777, target: path.posix.relative(path.posix.dirname(`/${p}`), '/usr/bin/busybox') });
  }
  return entries;
}

const underUsr = (e: CpioEntry) => e.path.startsWith(`${entryPath(ROOT_IMAGE_MOUNT)}/`);

/** The root image's tree: everything under /usr, paths relative to /usr (where init mounts the image). */
export function rootImageLayout(i: Omit<InitramfsInputs, 'rootImage'>): CpioEntry[] {
  const prefix = `${entryPath(ROOT_IMAGE_MOUNT)}/`;
  return nodeTree(i)
    .filter(underUsr)
    .map((e) => ({ ...e, path: e.path.slice(prefix.length) }));
}

/**
 * The initramfs: /init, the boot stage (static busybox, the root image) and the rest of the node's tree (/etc,
 * empty directories, the /usr links). `i.rootImage` null puts /usr into the initramfs too (the unpacked layout).
 */
export function initramfsLayout(i: InitramfsInputs): CpioEntry[] {
  const { rootImage } = i;
  const tree = nodeTree(i);
  const entries = rootImage ? tree.filter((e) => !underUsr(e)) : tree;
  entries.push(
    { path: entryPath(SYSROOT), type: 'dir', mode: 0o755 },
    { path: entryPath(ROOT_IMAGE_MOUNT), type: 'dir', mode: 0o755 },
    file('init', 0o755, Buffer.from(initScript(rootImage))),
    file(entryPath(STAGE_BUSYBOX), 0o755, i.busybox),
  );
  if (rootImage) {
    entries.push(
      // Zeros that put the root image's data at a multiple of ROOT_IMAGE_ALIGN: a parent hands it to a child as a disk there.
      { path: entryPath(STAGE_PAD), type: 'file', mode: 0o444, data: { alignDataOf: entryPath(STAGE_ROOT_IMAGE), to: ROOT_IMAGE_ALIGN } },
      file(entryPath(STAGE_ROOT_IMAGE), 0o444, rootImage.file),
    );
  }
  return entries;
}
