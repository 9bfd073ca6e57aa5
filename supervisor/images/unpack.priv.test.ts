// Root on the host, with the real syscall addon (built fresh into a temp dir): ownership, device nodes, binary
// xattrs and overlay-format whiteouts really land on disk, and a real overlayfs mount of two unpacked snapshots
// plus an upper shows the whiteout hiding the lower file and the opaque directory hiding the lower entries.
import { execFileSync } from 'node:child_process';
import { chownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSyscallsAddon, hostNodeIncludeDir } from '../../native/build';
import { loadSyscallsFrom, type Syscalls } from '../../native';
import { mountOverlay, overlayMountPlan } from './overlay';
import { createSnapshots, lowerDirsFor } from './snapshots';
import { gzip, OCI_GZIP, sha256, tarOf, TEST_MTIME, type TestEntry } from './test-layers';
import { unpackLayer } from './unpack';

let work: string;
let sys: Syscalls;
const mounted: string[] = [];

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'aurae-unpack-priv-'));
  const addon = await buildSyscallsAddon({ nodeIncludeDir: hostNodeIncludeDir(), outFile: path.join(work, 'syscalls.node') });
  sys = loadSyscallsFrom(addon);
});
afterAll(() => {
  for (const target of mounted.reverse()) {
    try {
      sys.umount2(target, 0);
    } catch {
      sys.umount2(target, sys.MNT_DETACH);
    }
  }
  rmSync(work, { recursive: true, force: true });
});

/** Every entry under `root` with what unpacking must keep: type, mode, owner, size, link target, content. */
function describeTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = lstatSync(abs);
      const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? `l->${readlinkSync(abs)}` : st.isFIFO() ? 'p' : st.isFile() ? `f:${readFileSync(abs, 'utf8')}` : '?';
      out[r] = `${kind} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} nlink=${st.isDirectory() ? '-' : st.nlink}${st.isDirectory() ? '' : ` mtime=${Math.floor(st.mtimeMs / 1000)}`}`;
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

const hasUmoci = (() => {
  try {
    execFileSync('umoci', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function mounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '');
}

async function layer(entries: TestEntry[]) {
  const tar = tarOf(entries);
  const file = path.join(work, `blob-${sha256(tar).slice(7, 19)}`);
  writeFileSync(file, gzip(tar));
  return { file, layer: { digest: sha256(gzip(tar)), mediaType: OCI_GZIP, diffId: sha256(tar) } };
}

describe('unpackLayer as root (real addon)', () => {
  it.runIf(process.getuid?.() === 0)('keeps ownership, setuid modes, binary xattrs; makes device nodes, FIFOs, whiteouts and opaque dirs', async () => {
    // struct vfs_cap_data v2, effective, permitted = CAP_NET_RAW (13).
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const dest = path.join(work, 'one', 'fs');
    const entries: TestEntry[] = [
      { path: 'home/app/', type: 'dir', mode: 0o750, uid: 1234, gid: 5678 },
      { path: 'home/app/data', body: 'd', mode: 0o600, uid: 1234, gid: 5678 },
      { path: 'bin/ping', body: 'p', mode: 0o4755, uid: 0, gid: 0, xattrs: { 'security.capability': cap, 'user.origin': 'test' } },
      { path: 'bin/su', body: 's', mode: 0o4755, uid: 1234, gid: 5678 },
      { path: 'bin/link', type: 'symlink', linkpath: '/bin/ping', uid: 7, gid: 8 },
      { path: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
      { path: 'dev/sda1', type: 'block', devmajor: 8, devminor: 1, mode: 0o660, gid: 6 },
      { path: 'run/fifo', type: 'fifo', mode: 0o620 },
      { path: 'etc/.wh.motd', uid: 0, gid: 0 },
      { path: 'var/cache/.wh..wh..opq' },
    ];
    const { diffId } = await unpackLayer((await layer(entries)).file, OCI_GZIP, dest, { syscalls: sys });
    expect(diffId).toBe(sha256(tarOf(entries)));

    const st = (p: string) => lstatSync(path.join(dest, p));
    expect(st('home/app')).toMatchObject({ uid: 1234, gid: 5678 });
    expect(st('home/app').mode & 0o7777).toBe(0o750);
    expect(st('home/app/data')).toMatchObject({ uid: 1234, gid: 5678 });
    expect(st('bin/su')).toMatchObject({ uid: 1234, gid: 5678 });
    expect(st('bin/su').mode & 0o7777).toBe(0o4755); // chmod after chown: setuid survives
    expect(st('bin/link')).toMatchObject({ uid: 7, gid: 8 });
    expect(readlinkSync(path.join(dest, 'bin/link'))).toBe('/bin/ping');
    expect(sys.lgetxattr(path.join(dest, 'bin/ping'), 'security.capability')).toEqual(cap); // set after chown
    expect(sys.lgetxattr(path.join(dest, 'bin/ping'), 'user.origin')?.toString()).toBe('test');
    expect(st('dev/null').isCharacterDevice()).toBe(true);
    expect(st('dev/null').rdev).toBe(0x103);
    expect(st('dev/null').mode & 0o7777).toBe(0o666);
    expect(st('dev/sda1').isBlockDevice()).toBe(true);
    expect(st('dev/sda1')).toMatchObject({ rdev: 0x801, gid: 6 });
    expect(st('run/fifo').isFIFO()).toBe(true);
    expect(st('run/fifo').mode & 0o7777).toBe(0o620);
    expect(st('etc/motd').isCharacterDevice()).toBe(true);
    expect(st('etc/motd').rdev).toBe(0);
    expect(readdirSync(path.join(dest, 'etc'))).toEqual(['motd']);
    expect(sys.lgetxattr(path.join(dest, 'var/cache'), 'trusted.overlay.opaque')?.toString()).toBe('y');
    expect(sys.lgetxattr(path.join(dest, 'etc'), 'trusted.overlay.opaque')).toBeNull();
    expect(st('home/app/data').mtime.getTime()).toBe(TEST_MTIME.getTime());
  });

  it.runIf(process.getuid?.() === 0).each(['gnu', 'posix'])('unpacks what GNU tar (--format=%s) packs exactly as it was (long names, owners, links, FIFOs, file capabilities)', async (format) => {
    const src = path.join(work, `gnu-src-${format}`);
    const long = path.join(src, 'deep', 'x'.repeat(110), 'y'.repeat(60));
    mkdirSync(long, { recursive: true });
    writeFileSync(path.join(long, 'file-with-a-long-name'), 'long');
    writeFileSync(path.join(src, 'owned'), 'o', { mode: 0o640 });
    chownSync(path.join(src, 'owned'), 1234, 5678);
    writeFileSync(path.join(src, 'ping'), 'p', { mode: 0o755 });
    // cap_net_raw+ep, set the way setcap(8) does (struct vfs_cap_data v2), without needing libcap2-bin.
    sys.lsetxattr(path.join(src, 'ping'), 'security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex'));
    linkSync(path.join(src, 'owned'), path.join(src, 'hardlink'));
    symlinkSync('../../etc/passwd', path.join(src, 'dangling'));
    execFileSync('mkfifo', ['-m', '0600', path.join(src, 'fifo')]);
    const blobFile = path.join(work, `gnu-${format}.tgz`);
    const xattrs = format === 'posix' ? ['--xattrs', '--xattrs-include=*'] : [];
    execFileSync('tar', [`--format=${format}`, ...xattrs, '--numeric-owner', '-C', src, '-czf', blobFile, '.']);

    const dest = path.join(work, `gnu-${format}`, 'fs');
    const { diffId } = await unpackLayer(blobFile, OCI_GZIP, dest, { syscalls: sys });
    expect(diffId).toBe(sha256(execFileSync('gzip', ['-dc', blobFile], { maxBuffer: 1 << 28 })));
    expect(describeTree(dest)).toEqual(describeTree(src));
    expect(lstatSync(path.join(dest, 'hardlink')).ino).toBe(lstatSync(path.join(dest, 'owned')).ino);
    if (format === 'posix') {
      expect(sys.lgetxattr(path.join(dest, 'ping'), 'security.capability')).toEqual(sys.lgetxattr(path.join(src, 'ping'), 'security.capability'));
    }
  });

  it.runIf(process.getuid?.() === 0)('a real overlay of two snapshots and an upper: the whiteout hides the lower file, the opaque dir its lower entries', async () => {
    const images = path.join(work, 'images');
    const snaps = createSnapshots(images);
    const base = await layer([
      { path: 'etc/', type: 'dir' },
      { path: 'etc/keep', body: 'kept' },
      { path: 'etc/motd', body: 'old motd' },
      { path: 'var/cache/', type: 'dir' },
      { path: 'var/cache/old1', body: '1' },
      { path: 'var/cache/sub/old2', body: '2' },
      { path: 'bin/sh', body: 'sh', mode: 0o755 },
    ]);
    const top = await layer([
      { path: 'etc/.wh.motd' },
      { path: 'var/cache/.wh..wh..opq' },
      { path: 'var/cache/new', body: 'new' },
      { path: 'etc/added', body: 'added' },
    ]);
    await snaps.ensure(base.layer, base.file, { syscalls: sys });
    await snaps.ensure(top.layer, top.file, { syscalls: sys });
    const lowers = lowerDirsFor(images, [base.layer, top.layer]);
    const ctr = path.join(work, 'ctr');
    for (const d of ['upper', 'work', 'rootfs']) mkdirSync(path.join(ctr, d), { recursive: true, mode: 0o700 });
    const rootfs = path.join(ctr, 'rootfs');
    const plan = overlayMountPlan(lowers, path.join(ctr, 'upper'), path.join(ctr, 'work'), rootfs);
    expect(plan.cwd).toBeNull();
    mountOverlay(plan, sys, true); // with index=off, as on a kernel that indexes by default
    mounted.push(rootfs);
    expect(mounts()).toContain(rootfs);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).toMatch(new RegExp(`${rootfs} .* - overlay overlay rw,lowerdir=${lowers.join(':')},upperdir=`));

    expect(readdirSync(path.join(rootfs, 'etc')).sort()).toEqual(['added', 'keep']);
    expect(readFileSync(path.join(rootfs, 'etc/keep'), 'utf8')).toBe('kept');
    expect(readdirSync(path.join(rootfs, 'var/cache'))).toEqual(['new']);
    expect(readFileSync(path.join(rootfs, 'bin/sh'), 'utf8')).toBe('sh');
    // Writes land in the container's upper dir, never in a snapshot.
    writeFileSync(path.join(rootfs, 'etc/keep'), 'changed');
    expect(readFileSync(path.join(ctr, 'upper/etc/keep'), 'utf8')).toBe('changed');
    expect(readFileSync(path.join(lowers[1]!, 'etc/keep'), 'utf8')).toBe('kept');

    sys.umount2(rootfs, 0);
    mounted.pop();
    expect(mounts()).not.toContain(rootfs);
  });

  it.runIf(process.getuid?.() === 0 && hasUmoci)(
    `an umoci-built two-layer image with deletions, mounted as overlay, equals umoci's own unpack${hasUmoci ? '' : ' (skipped: umoci is not installed)'}`,
    async () => {
      const dir = path.join(work, 'umoci');
      mkdirSync(dir);
      const umoci = (...args: string[]) => execFileSync('umoci', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
      umoci('init', '--layout', 'img');
      umoci('new', '--image', 'img:t');
      umoci('unpack', '--image', 'img:t', 'b1');
      const r1 = path.join(dir, 'b1/rootfs');
      mkdirSync(path.join(r1, 'd'));
      mkdirSync(path.join(r1, 'e'));
      for (const [f, body] of [['a', 'a'], ['d/x', 'x'], ['d/y', 'y'], ['e/keep', 'k']] as const) writeFileSync(path.join(r1, f), body);
      chownSync(path.join(r1, 'e/keep'), 1000, 1000);
      umoci('repack', '--image', 'img:t', 'b1');
      umoci('unpack', '--image', 'img:t', 'b2');
      const r2 = path.join(dir, 'b2/rootfs');
      rmSync(path.join(r2, 'a'));
      rmSync(path.join(r2, 'd'), { recursive: true });
      mkdirSync(path.join(r2, 'd'));
      writeFileSync(path.join(r2, 'd/z'), 'z');
      umoci('repack', '--image', 'img:t', 'b2');
      umoci('unpack', '--image', 'img:t', 'final');

      const blobPath = (digest: string) => path.join(dir, 'img/blobs/sha256', digest.slice('sha256:'.length));
      const index = JSON.parse(readFileSync(path.join(dir, 'img/index.json'), 'utf8'));
      const manifest = JSON.parse(readFileSync(blobPath(index.manifests[0].digest), 'utf8'));
      const config = JSON.parse(readFileSync(blobPath(manifest.config.digest), 'utf8'));
      const layers = manifest.layers.map((l: { digest: string; mediaType: string }, i: number) => ({ ...l, diffId: config.rootfs.diff_ids[i] }));
      const images = path.join(work, 'umoci-images');
      const snaps = createSnapshots(images);
      for (const l of layers) await snaps.ensure(l, blobPath(l.digest), { syscalls: sys }); // verifies each diffId

      const ctr = path.join(work, 'umoci-ctr');
      for (const d of ['upper', 'work', 'rootfs']) mkdirSync(path.join(ctr, d), { recursive: true, mode: 0o700 });
      const rootfs = path.join(ctr, 'rootfs');
      mountOverlay(overlayMountPlan(snaps.lowerDirs(layers), path.join(ctr, 'upper'), path.join(ctr, 'work'), rootfs), sys);
      mounted.push(rootfs);
      const want = describeTree(path.join(dir, 'final/rootfs'));
      expect(Object.keys(want).sort()).toEqual(['d', 'd/z', 'e', 'e/keep']);
      expect(describeTree(rootfs)).toEqual(want);
      sys.umount2(rootfs, 0);
      mounted.pop();
    },
  );

  it.runIf(process.getuid?.() === 0)('mounts an image too deep for absolute lowerdir paths (relative to the snapshots dir)', async () => {
    const images = path.join(work, 'deep-images');
    const snapshots = path.join(images, 'snapshots');
    const ids = Array.from({ length: 45 }, (_, i) => i.toString(16).padStart(64, 'a'));
    for (const [i, id] of ids.entries()) {
      mkdirSync(path.join(snapshots, id, 'fs'), { recursive: true });
      writeFileSync(path.join(snapshots, id, 'fs', `layer-${i}`), String(i));
    }
    const lowers = lowerDirsFor(images, ids.map((id) => ({ diffId: `sha256:${id}` })));
    const ctr = path.join(work, 'deep-ctr');
    for (const d of ['upper', 'work', 'rootfs']) mkdirSync(path.join(ctr, d), { recursive: true, mode: 0o700 });
    const rootfs = path.join(ctr, 'rootfs');
    const plan = overlayMountPlan(lowers, path.join(ctr, 'upper'), path.join(ctr, 'work'), rootfs);
    expect(plan.cwd).toBe(snapshots);
    const cwd = process.cwd();
    mountOverlay(plan, sys);
    mounted.push(rootfs);
    expect(process.cwd()).toBe(cwd);
    expect(readdirSync(rootfs)).toHaveLength(45);
    expect(statSync(path.join(rootfs, 'layer-44')).isFile()).toBe(true);
    sys.umount2(rootfs, 0);
    mounted.pop();
  });
});
