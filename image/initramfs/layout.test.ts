import { describe, expect, it } from 'vitest';
import { ROOT_DISK_SERIAL, ROOT_IMAGE_ALIGN, STAGE_BUSYBOX, STAGE_ROOT_IMAGE } from '../../supervisor/config/node-paths';
import { initramfsLayout, initScript, nodeTree, rootImageLayout, SYSROOT, usrPath, type InitramfsInputs } from './layout';

const inputs: InitramfsInputs = {
  node: '/c/node',
  libs: ['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2'],
  bundles: { 'init.cjs': '/o/init.cjs', 'auraed.cjs': '/o/auraed.cjs', 'aer.cjs': '/o/aer.cjs' },
  auraedSnapshot: '/o/auraed.blob',
  syscallsAddon: '/o/syscalls.node',
  sqliteAddon: '/o/better_sqlite3.node',
  auraeExec: '/o/aurae-exec',
  tools: ['/sbin/mke2fs', '/usr/bin/crun'],
  busybox: '/bin/busybox',
  busyboxApplets: ['bin/sh', 'usr/bin/awk', 'sbin/init', 'bin/busybox', 'sbin/mke2fs', 'linuxrc'],
  configJson: '{}',
  pki: { caCert: '/p/ca.crt' },
  rootImage: { file: '/o/root.erofs', fstype: 'erofs' },
};
const byPath = (entries: ReturnType<typeof initramfsLayout>) => new Map(entries.map((e) => [e.path, e]));

describe('nodeTree (merged /usr)', () => {
  const tree = byPath(nodeTree(inputs));

  it('puts host paths under /usr and links /bin, /sbin, /lib, /lib64 there', () => {
    expect(usrPath('/lib/x86_64-linux-gnu/libc.so.6')).toBe('usr/lib/x86_64-linux-gnu/libc.so.6');
    expect(usrPath('/sbin/mke2fs')).toBe('usr/sbin/mke2fs');
    expect(usrPath('/usr/bin/crun')).toBe('usr/bin/crun');
    expect(usrPath('/etc/hosts')).toBe('etc/hosts');
    expect(usrPath('/lib')).toBe('lib');
    for (const l of ['bin', 'sbin', 'lib', 'lib64']) expect(tree.get(l)).toMatchObject({ type: 'symlink', target: `usr/${l}` });
    expect(tree.get('usr/lib64/ld-linux-x86-64.so.2')?.data).toEqual({ file: '/lib64/ld-linux-x86-64.so.2' });
  });

  it('links busybox applets relatively and never over a real file', () => {
    expect(tree.get('usr/bin/sh')).toMatchObject({ type: 'symlink', target: 'busybox' });
    expect(tree.get('usr/bin/awk')).toMatchObject({ type: 'symlink', target: 'busybox' });
    expect(tree.get('usr/sbin/init')).toMatchObject({ type: 'symlink', target: '../bin/busybox' });
    expect(tree.get('linuxrc')).toMatchObject({ type: 'symlink', target: 'usr/bin/busybox' });
    expect(tree.get('usr/bin/busybox')).toMatchObject({ type: 'file', data: { file: '/bin/busybox' } });
    expect([...nodeTree(inputs)].filter((e) => e.path === 'usr/sbin/mke2fs')).toEqual([{ path: 'usr/sbin/mke2fs', type: 'file', mode: 0o755, data: { file: '/sbin/mke2fs' } }]);
  });

  it('has /dev/console so PID 1 gets stdio before devtmpfs', () => {
    expect(tree.get('dev/console')).toMatchObject({ type: 'char', rdevMajor: 5, rdevMinor: 1 });
  });

  it('carries the root CA certificate and nothing else of the PKI: no key, no node or spawn CA certificate', () => {
    const entries = nodeTree(inputs);
    expect(tree.get('etc/aurae/pki/ca.crt')).toMatchObject({ mode: 0o644, data: { file: '/p/ca.crt' } });
    expect(entries.filter((e) => e.path.startsWith('etc/aurae/pki/')).map((e) => e.path)).toEqual(['etc/aurae/pki/ca.crt']);
    expect(entries.filter((e) => /\.key$|node\.crt|spawn-ca/.test(e.path))).toEqual([]);
  });
});

describe('root image and initramfs', () => {
  it('the root image holds /usr (paths relative to its mount point), the initramfs everything else', () => {
    const image = byPath(rootImageLayout(inputs));
    expect(image.get('bin/node')?.data).toEqual({ file: '/c/node' });
    expect(image.get('lib/aurae/init.cjs')?.data).toEqual({ file: '/o/init.cjs' });
    expect(image.get('sbin/mke2fs')?.type).toBe('file');
    expect([...image.keys()].some((p) => p.startsWith('etc/') || p.startsWith('usr/'))).toBe(false);

    const initramfs = byPath(initramfsLayout(inputs));
    expect([...initramfs.keys()].filter((p) => p.startsWith('usr/'))).toEqual([]);
    expect(initramfs.get(STAGE_ROOT_IMAGE.slice(1))).toMatchObject({ type: 'file', data: { file: '/o/root.erofs' } });
    expect(initramfs.get(STAGE_BUSYBOX.slice(1))).toMatchObject({ type: 'file', mode: 0o755, data: { file: '/bin/busybox' } });
    // Zeros right before the image put its data at a multiple of ROOT_IMAGE_ALIGN (the writer checks the order).
    expect(initramfs.get('.stage/pad')).toMatchObject({ type: 'file', data: { alignDataOf: STAGE_ROOT_IMAGE.slice(1), to: ROOT_IMAGE_ALIGN } });
    expect(initramfs.get('etc/aurae/config.json')?.type).toBe('file');
    expect(initramfs.get('usr')).toMatchObject({ type: 'dir' });
    expect(initramfs.get(SYSROOT.slice(1))).toMatchObject({ type: 'dir', mode: 0o755 });
  });

  it('without a root image, /usr is in the initramfs (the unpacked layout)', () => {
    const initramfs = byPath(initramfsLayout({ ...inputs, rootImage: null }));
    expect(initramfs.get('usr/bin/node')?.data).toEqual({ file: '/c/node' });
    expect(initramfs.has(STAGE_ROOT_IMAGE.slice(1))).toBe(false);
    expect(initScript(null)).not.toContain('loop');
  });
});

describe('initScript', () => {
  const script = initScript({ fstype: 'erofs' });

  it('makes a tmpfs the root, mounts the root image on its /usr read-only through a loop device, then runs the Node init', () => {
    expect(script.startsWith(`#!${STAGE_BUSYBOX} sh\n`)).toBe(true);
    const order = [
      `mount -t tmpfs -o mode=0755 aurae-root ${SYSROOT}`,
      'cp -a $top /sysroot/',
      'mount -t devtmpfs -o mode=0755 devtmpfs /dev',
      `mount -t erofs -o ro,loop ${STAGE_ROOT_IMAGE} /sysroot/usr`,
      'umount /dev',
      `exec $b switch_root ${SYSROOT} /usr/bin/node /usr/lib/aurae/init.cjs "$@"`,
    ].map((s) => script.indexOf(s));
    expect(order.every((at) => at > 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(initScript({ fstype: 'squashfs' })).toContain(`mount -t squashfs -o ro,loop ${STAGE_ROOT_IMAGE} /sysroot/usr`);
  });

  it('without the image in the initramfs (a child), mounts the disk whose serial is ROOT_DISK_SERIAL instead', () => {
    const squash = initScript({ fstype: 'squashfs' });
    const order = [
      `if [ -e ${STAGE_ROOT_IMAGE} ]; then`,
      'else',
      'mount -t sysfs sysfs /sys',
      `for s in /sys/block/*/serial; do [ "$($b cat $s 2>/dev/null)" = ${ROOT_DISK_SERIAL} ] && d=\${s%/serial} && dev=/dev/\${d##*/}; done`,
      'umount /sys',
      `[ -n "$dev" ] || fail "no root image`,
      'mount -t squashfs -o ro $dev /sysroot/usr',
      'fi\n',
      'umount /dev',
    ].map((s) => squash.indexOf(s));
    expect(order.every((at) => at > 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });

  it('says what failed and powers off rather than letting PID 1 exit (a kernel panic)', () => {
    expect(script).toContain('fail() { echo "init: $*: powering off" >&2; $b sync; $b poweroff -f; }');
    expect(script).toContain('|| fail "mounting the root image');
    expect(script).toContain('BLK_DEV_LOOP');
  });
});
