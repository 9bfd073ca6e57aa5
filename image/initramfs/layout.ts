// The initramfs as data: every path the node boots with, computed from the build's inputs (pure).
// The contract with init/ and supervisor/ (paths under /usr/lib/aurae, /etc/aurae) is fixed here.
import path from 'node:path';
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
  /** Host programs copied to the same absolute paths (e2fsprogs); their libraries are in `libs`. */
  tools: string[];
  busybox: string;
  /** `busybox --list-full` output: applet paths like "bin/sh", "usr/bin/awk". */
  busyboxApplets: string[];
  /** Node config JSON text for /etc/aurae/config.json. */
  configJson: string;
  /**
   * Certificates only: the root CA the node trusts. No private key is ever in the image: the node's identity
   * (keys) reaches it separately (init/identity) and lands in /run/aurae/pki.
   */
  pki: { caCert: string };
}

/** The root CA certificate in the image (public): the trust root of the node and of every child it spawns. */
export const IMAGE_CA_CERT = '/etc/aurae/pki/ca.crt';

const file = (p: string, mode: number, src: string | Buffer): CpioEntry => ({
  path: p,
  type: 'file',
  mode,
  data: typeof src === 'string' ? { file: src } : src,
});

export const INIT_SCRIPT = "#!/usr/bin/node\nrequire('/usr/lib/aurae/init.cjs');\n";

export function initramfsLayout(i: InitramfsInputs): CpioEntry[] {
  const dirs = ['dev', 'proc', 'sys', 'run', 'tmp', 'root', 'etc/aurae/pki', 'var/lib/aurae', 'usr/lib/aurae', 'bin', 'sbin', 'usr/bin', 'usr/sbin'];
  const entries: CpioEntry[] = dirs.map((d) => ({ path: d, type: 'dir', mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 }));
  entries.push(
    // The kernel opens /dev/console for PID 1's stdio before devtmpfs is mounted.
    { path: 'dev/console', type: 'char', mode: 0o600, rdevMajor: 5, rdevMinor: 1 },
    file('init', 0o755, Buffer.from(INIT_SCRIPT)),
    file('usr/bin/node', 0o755, i.node),
    file('usr/lib/aurae/init.cjs', 0o644, i.bundles['init.cjs']),
    file('usr/lib/aurae/auraed.cjs', 0o644, i.bundles['auraed.cjs']),
    file('usr/lib/aurae/aer.cjs', 0o644, i.bundles['aer.cjs']),
    file('usr/lib/aurae/syscalls.node', 0o755, i.syscallsAddon),
    file('usr/lib/aurae/better_sqlite3.node', 0o755, i.sqliteAddon),
    file('usr/lib/aurae/aurae-exec', 0o755, i.auraeExec),
    file('etc/aurae/config.json', 0o644, Buffer.from(i.configJson)),
    file(IMAGE_CA_CERT.slice(1), 0o644, i.pki.caCert),
    file('etc/passwd', 0o644, Buffer.from('root:x:0:0:root:/root:/bin/sh\n')),
    file('etc/group', 0o644, Buffer.from('root:x:0:\n')),
    file('etc/hosts', 0o644, Buffer.from('127.0.0.1 localhost\n::1 localhost\n')),
    file('bin/busybox', 0o755, i.busybox),
  );
  for (const lib of i.libs) entries.push(file(lib.replace(/^\//, ''), 0o755, lib));
  for (const tool of i.tools) entries.push(file(tool.replace(/^\//, ''), 0o755, tool));
  const taken = new Set(entries.map((e) => e.path));
  for (const applet of i.busyboxApplets) {
    const p = applet.replace(/^\//, '');
    if (!p || taken.has(p)) continue; // never shadow a real file (e.g. a future bin/node)
    taken.add(p);
    entries.push({ path: p, type: 'symlink', mode: 0o777, target: path.posix.relative(path.posix.dirname(`/${p}`), '/bin/busybox') });
  }
  return entries;
}
