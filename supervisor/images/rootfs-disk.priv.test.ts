// Root on the host: two layer directories (the top one whiting out a file of the bottom one and making a
// directory opaque) become a real ext4 file through a real overlay mount and the host's mke2fs -d; debugfs reads
// it back: the merged view (no whiteout, no hidden entry), owners, modes, symlinks, hard links, the image
// description, the label. A second ensure uses the cached file; pruning removes disks of images that are gone.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSyscallsAddon, hostNodeIncludeDir } from '../../native/build';
import { FILE_TYPE_BITS, loadSyscallsFrom, type Syscalls } from '../../native';
import { silentLogger } from '../log';
import { createRootfsDisks, pruneRootfsDisks, rootfsDiskLabel, rootfsDiskPath, type RootfsDiskMeta } from './rootfs-disk';
import type { ImageRecord } from './types';

let work: string;
let sys: Syscalls;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'aurae-rootfs-disk-priv-'));
  const addon = await buildSyscallsAddon({ nodeIncludeDir: hostNodeIncludeDir(), outFile: path.join(work, 'syscalls.node') });
  sys = loadSyscallsFrom(addon);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const DIGEST = `sha256:${'ab'.repeat(32)}`;

function record(): ImageRecord {
  return {
    name: '127.0.0.1:5000/test',
    tags: ['1'],
    digest: DIGEST,
    configDigest: `sha256:${'cd'.repeat(32)}`,
    config: { entrypoint: [], cmd: ['/bin/sh'], env: ['PATH=/bin'], workingDir: '/', user: '', exposedPorts: [], labels: {}, stopSignal: '' },
    layers: [],
    size: 0,
    pulledAt: 0,
  };
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; output: string }> {
  try {
    return Promise.resolve({ code: 0, output: execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) });
  } catch (err) {
    const e = err as { status: number | null; stdout?: string; stderr?: string };
    return Promise.resolve({ code: e.status, output: `${e.stdout ?? ''}${e.stderr ?? ''}` });
  }
}

const debugfs = (file: string, request: string) => execFileSync('debugfs', ['-R', request, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });

describe('rootfs disk (mke2fs -d over the merged overlay)', () => {
  it('holds the merged root filesystem with owners, modes and links, plus the image description', async () => {
    const bottom = path.join(work, 'layers/bottom');
    const top = path.join(work, 'layers/top');
    for (const d of ['bin', 'etc', 'opaque', 'home/app']) mkdirSync(path.join(bottom, d), { recursive: true });
    writeFileSync(path.join(bottom, 'bin/busybox'), 'BUSYBOX\n', { mode: 0o755 });
    linkSync(path.join(bottom, 'bin/busybox'), path.join(bottom, 'bin/sh'));
    symlinkSync('busybox', path.join(bottom, 'bin/ls'));
    writeFileSync(path.join(bottom, 'etc/gone'), 'removed by the top layer\n');
    writeFileSync(path.join(bottom, 'opaque/hidden'), 'hidden by the opaque dir\n');
    writeFileSync(path.join(bottom, 'home/app/owned'), 'app\n', { mode: 0o640 });
    chownSync(path.join(bottom, 'home/app/owned'), 1000, 1001);
    for (const d of ['etc', 'opaque']) mkdirSync(path.join(top, d), { recursive: true });
    sys.mknod(path.join(top, 'etc/gone'), FILE_TYPE_BITS.S_IFCHR | 0o000, 0, 0); // overlay whiteout
    sys.lsetxattr(path.join(top, 'opaque'), 'trusted.overlay.opaque', Buffer.from('y'));
    writeFileSync(path.join(top, 'opaque/new'), 'from the top layer\n');
    writeFileSync(path.join(top, 'etc/hostname'), 'top\n');

    const imagesDir = path.join(work, 'images');
    const disks = createRootfsDisks({ imagesDir, lowerDirs: () => [top, bottom], sys, run, log: silentLogger });
    const [a, b] = await Promise.all([disks.ensure(record()), disks.ensure(record())]);
    expect(a).toEqual(b); // one build for two concurrent callers
    expect(a.built).toBe(true);
    expect(a.path).toBe(rootfsDiskPath(imagesDir, DIGEST));
    expect(a.label).toBe(rootfsDiskLabel(DIGEST));

    const file = a.path;
    expect(execFileSync('e2label', [file], { encoding: 'utf8' }).trim()).toBe(a.label);
    expect(debugfs(file, 'cat /rootfs/bin/busybox')).toBe('BUSYBOX\n');
    expect(debugfs(file, 'cat /rootfs/etc/hostname')).toBe('top\n');
    expect(debugfs(file, 'cat /rootfs/opaque/new')).toBe('from the top layer\n');
    const etc = debugfs(file, 'ls -l /rootfs/etc');
    expect(etc).toContain('hostname');
    expect(etc).not.toContain('gone');
    expect(debugfs(file, 'ls /rootfs/opaque')).not.toContain('hidden');
    const owned = debugfs(file, 'stat /rootfs/home/app/owned');
    expect(owned).toMatch(/User:\s+1000\s+Group:\s+1001/);
    expect(owned).toMatch(/Mode:\s+0640/);
    // The hard link is one inode with two names; the symlink keeps its target.
    const inode = (p: string) => /Inode: (\d+)/.exec(debugfs(file, `stat ${p}`))![1];
    expect(inode('/rootfs/bin/sh')).toBe(inode('/rootfs/bin/busybox'));
    expect(debugfs(file, 'stat /rootfs/bin/ls')).toMatch(/Fast link dest: "busybox"/);
    const meta = JSON.parse(debugfs(file, 'cat /aurae-image.json')) as RootfsDiskMeta;
    expect(meta).toEqual({ digest: DIGEST, name: '127.0.0.1:5000/test', config: record().config });
    // Nothing of the build is left: no mount, no temp file.
    expect(execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' })).not.toContain(path.join(imagesDir, 'disks'));
    expect(execFileSync('ls', ['-a', path.join(imagesDir, 'disks')], { encoding: 'utf8' }).split('\n').filter((n) => n.startsWith('.tmp'))).toEqual([]);
    // The file system is clean (fsck -n finds nothing to fix).
    execFileSync('e2fsck', ['-fn', file], { stdio: 'ignore' });

    const again = await disks.ensure(record());
    expect(again).toEqual({ ...a, built: false });

    expect(pruneRootfsDisks(imagesDir, new Set([DIGEST]))).toBe(0);
    expect(existsSync(file)).toBe(true);
    expect(pruneRootfsDisks(imagesDir, new Set())).toBeGreaterThan(0);
    expect(existsSync(file)).toBe(false);
  });

  it('fails with the reason when mke2fs fails, leaving nothing behind', async () => {
    const layer = path.join(work, 'layers/single');
    mkdirSync(path.join(layer, 'bin'), { recursive: true });
    writeFileSync(path.join(layer, 'bin/x'), 'x');
    const imagesDir = path.join(work, 'images-fail');
    const disks = createRootfsDisks({ imagesDir, lowerDirs: () => [layer], sys, run, mke2fs: 'false', log: silentLogger });
    await expect(disks.ensure(record())).rejects.toThrow(/building the rootfs disk of image sha256:abab.*: mke2fs exited with 1/);
    expect(execFileSync('ls', ['-a', path.join(imagesDir, 'disks')], { encoding: 'utf8' }).trim().split('\n').sort()).toEqual(['.', '..']);
    expect(execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' })).not.toContain(imagesDir);
  });
});
