import { describe, expect, it } from 'vitest';
import { initramfsLayout, INIT_SCRIPT, type InitramfsInputs } from './layout';

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
  pki: { caCert: '/p/ca.crt', nodeCert: '/p/node.crt', nodeKey: '/p/node.key' },
};

describe('initramfsLayout', () => {
  const entries = initramfsLayout(inputs);
  const byPath = new Map(entries.map((e) => [e.path, e]));

  it('boots /init as a node script that loads the init bundle', () => {
    expect(byPath.get('init')).toMatchObject({ type: 'file', mode: 0o755 });
    expect(INIT_SCRIPT.startsWith('#!/usr/bin/node\n')).toBe(true);
    expect(byPath.get('usr/lib/aurae/init.cjs')?.data).toEqual({ file: '/o/init.cjs' });
  });

  it('has /dev/console so PID 1 gets stdio before devtmpfs', () => {
    expect(byPath.get('dev/console')).toMatchObject({ type: 'char', rdevMajor: 5, rdevMinor: 1 });
  });

  it('keeps the node key private and libraries at their host paths', () => {
    expect(byPath.get('etc/aurae/pki/node.key')?.mode).toBe(0o600);
    expect(byPath.get('lib64/ld-linux-x86-64.so.2')?.data).toEqual({ file: '/lib64/ld-linux-x86-64.so.2' });
  });

  it('links busybox applets relatively and never over a real file', () => {
    expect(byPath.get('bin/sh')).toMatchObject({ type: 'symlink', target: 'busybox' });
    expect(byPath.get('usr/bin/awk')).toMatchObject({ type: 'symlink', target: '../../bin/busybox' });
    expect(byPath.get('bin/busybox')?.type).toBe('file');
  });

  it('carries the spawn CA (key private) when given, and nothing of it otherwise', () => {
    const withSpawn = new Map(initramfsLayout({ ...inputs, pki: { ...inputs.pki, spawnCaCert: '/p/spawn-ca.crt', spawnCaKey: '/p/spawn-ca.key' } }).map((e) => [e.path, e]));
    expect(withSpawn.get('etc/aurae/pki/spawn-ca.crt')).toMatchObject({ mode: 0o644, data: { file: '/p/spawn-ca.crt' } });
    expect(withSpawn.get('etc/aurae/pki/spawn-ca.key')).toMatchObject({ mode: 0o600, data: { file: '/p/spawn-ca.key' } });
    expect([...byPath.keys()].filter((p) => p.includes('spawn-ca'))).toEqual([]);
  });
});

describe('tools', () => {
  it('copies host tools to the same path and never shadows them with a busybox applet', () => {
    const mke2fs = initramfsLayout(inputs).filter((e) => e.path === 'sbin/mke2fs');
    expect(mke2fs).toEqual([{ path: 'sbin/mke2fs', type: 'file', mode: 0o755, data: { file: '/sbin/mke2fs' } }]);
  });
});
