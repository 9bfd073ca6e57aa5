import { describe, expect, it } from 'vitest';
import { initramfsLayout, INIT_SCRIPT, SYSROOT, type InitramfsInputs } from './layout';

const inputs: InitramfsInputs = {
  node: '/c/node',
  libs: ['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2'],
  bundles: { 'init.cjs': '/o/init.cjs', 'auraed.cjs': '/o/auraed.cjs', 'aer.cjs': '/o/aer.cjs' },
  syscallsAddon: '/o/syscalls.node',
  sqliteAddon: '/o/better_sqlite3.node',
  auraeExec: '/o/aurae-exec',
  tools: ['/sbin/mke2fs'],
  busybox: '/bin/busybox',
  busyboxApplets: ['bin/sh', 'usr/bin/awk', 'sbin/init', 'bin/busybox', 'sbin/mke2fs'],
  configJson: '{}',
  pki: { caCert: '/p/ca.crt' },
};

describe('initramfsLayout', () => {
  const entries = initramfsLayout(inputs);
  const byPath = new Map(entries.map((e) => [e.path, e]));

  it('boots /init, which moves the root into a tmpfs (so containers can pivot_root) and runs the init bundle', () => {
    expect(byPath.get('init')).toMatchObject({ type: 'file', mode: 0o755 });
    expect(INIT_SCRIPT.startsWith('#!/bin/busybox sh\n')).toBe(true);
    expect(INIT_SCRIPT).toContain(`mount -t tmpfs -o mode=0755 aurae-root ${SYSROOT}`);
    expect(INIT_SCRIPT).toContain(`exec $b switch_root ${SYSROOT} /usr/bin/node /usr/lib/aurae/init.cjs "$@"`);
    expect(INIT_SCRIPT).toContain('exec /usr/bin/node /usr/lib/aurae/init.cjs "$@"'); // the fallback on rootfs
    expect(byPath.get(SYSROOT.slice(1))).toMatchObject({ type: 'dir', mode: 0o755 });
    expect(byPath.get('bin/busybox')?.type).toBe('file');
    expect(byPath.get('usr/lib/aurae/init.cjs')?.data).toEqual({ file: '/o/init.cjs' });
  });

  it('has /dev/console so PID 1 gets stdio before devtmpfs', () => {
    expect(byPath.get('dev/console')).toMatchObject({ type: 'char', rdevMajor: 5, rdevMinor: 1 });
  });

  it('keeps libraries at their host paths', () => {
    expect(byPath.get('lib64/ld-linux-x86-64.so.2')?.data).toEqual({ file: '/lib64/ld-linux-x86-64.so.2' });
  });

  it('links busybox applets relatively and never over a real file', () => {
    expect(byPath.get('bin/sh')).toMatchObject({ type: 'symlink', target: 'busybox' });
    expect(byPath.get('usr/bin/awk')).toMatchObject({ type: 'symlink', target: '../../bin/busybox' });
    expect(byPath.get('bin/busybox')?.type).toBe('file');
  });

  it('carries the root CA certificate and nothing else of the PKI: no key, no node or spawn CA certificate', () => {
    expect(byPath.get('etc/aurae/pki/ca.crt')).toMatchObject({ mode: 0o644, data: { file: '/p/ca.crt' } });
    expect(entries.filter((e) => e.path.startsWith('etc/aurae/pki/')).map((e) => e.path)).toEqual(['etc/aurae/pki/ca.crt']);
    expect(entries.filter((e) => /\.key$|node\.crt|spawn-ca/.test(e.path))).toEqual([]);
  });
});

describe('tools', () => {
  it('copies host tools to the same path and never shadows them with a busybox applet', () => {
    const mke2fs = initramfsLayout(inputs).filter((e) => e.path === 'sbin/mke2fs');
    expect(mke2fs).toEqual([{ path: 'sbin/mke2fs', type: 'file', mode: 0o755, data: { file: '/sbin/mke2fs' } }]);
  });
});
