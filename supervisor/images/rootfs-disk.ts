// Rootfs disks: an image's root filesystem as one read-only ext4 file, the way a VM-sandboxed pod hands it to its
// child microVM (a virtio-blk disk; supervisor/pods/vm-sandbox.ts). One file per image (manifest digest), built
// once and cached under `<images dir>/disks/<hex>.ext4`, removed by GC with the image (pruneRootfsDisks).
//
// Layout of the file system (self-describing, so the child needs nothing but the disk):
//   /aurae-image.json   { digest, name, config }: the image's manifest digest, name and runtime config
//   /rootfs/            the image's merged root filesystem (what a container sees)
// The label is `aurae-<12 hex of the digest>` (ext4 labels hold 16 bytes): the child finds its disk by label.
//
// Build (plan, then apply): mount the image's layer snapshots as an overlay on a temp dir (with an empty upper, so
// a single-layer image works too, and overlay applies whiteouts and opaque dirs: the merged view is what goes in),
// `mke2fs -d` that dir into a temp file, unmount, fsync, rename into place. No loop device, no root beyond the
// overlay mount. mke2fs keeps owners, modes, hard links, symlinks and device nodes.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Syscalls } from '../../native';
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import { mountOverlay, overlayMountPlan } from './overlay';
import type { ImageRecord, ImageRuntimeConfig } from './types';

/** The file at the top of a rootfs disk describing the image in it. */
export const ROOTFS_DISK_META = 'aurae-image.json';
/** The directory of a rootfs disk holding the image's root filesystem. */
export const ROOTFS_DISK_ROOT = 'rootfs';
const LABEL_PREFIX = 'aurae-';
const HEX = /^(?:sha256:)?([0-9a-f]{64})$/;
const BLOCK = 4096;
const INODE_SIZE = 256;

/** What /aurae-image.json holds. */
export interface RootfsDiskMeta {
  digest: string;
  name: string;
  config: ImageRuntimeConfig;
}

function hexOfDigest(digest: string): string {
  const m = HEX.exec(digest);
  if (!m) throw new AuraeError('INVALID_ARGUMENT', `image digest "${digest}": must be "sha256:" and 64 lowercase hex digits`);
  return m[1]!;
}

/** `<imagesDir>/disks` */
export function rootfsDisksDir(imagesDir: string): string {
  return path.join(imagesDir, 'disks');
}

/** Where the disk of the image `digest` is cached: `<imagesDir>/disks/<hex>.ext4`. */
export function rootfsDiskPath(imagesDir: string, digest: string): string {
  return path.join(rootfsDisksDir(imagesDir), `${hexOfDigest(digest)}.ext4`);
}

/** The ext4 label of the disk of `digest` (at most 16 bytes): `aurae-` and the digest's first 10 hex digits. */
export function rootfsDiskLabel(digest: string): string {
  return `${LABEL_PREFIX}${hexOfDigest(digest).slice(0, 10)}`;
}

/** Whether an ext4 label is a rootfs disk's. */
export function isRootfsDiskLabel(label: string): boolean {
  return new RegExp(`^${LABEL_PREFIX}[0-9a-f]{10}$`).test(label);
}

/** Totals of a directory tree, for the size of the file system that holds it. */
export interface TreeUsage {
  /** Bytes in data blocks (each regular file and symlink target rounded up to BLOCK; directories one block each). */
  blockBytes: number;
  /** Files, directories, links, devices (hard links counted once). */
  inodes: number;
}

/**
 * The ext4 size in bytes for a tree: its blocks and inode tables with a quarter more for metadata (bitmaps,
 * group descriptors, extent blocks, large directories), plus 4 MiB, in whole MiB. No journal: the disk is
 * read-only. Pure.
 */
export function rootfsDiskSize(usage: TreeUsage, inodes: number = rootfsDiskInodes(usage)): number {
  const raw = usage.blockBytes + inodes * INODE_SIZE;
  const mib = 1024 * 1024;
  return Math.ceil((raw * 1.25 + 4 * mib) / mib) * mib;
}

/** Inodes to create: those of the tree, a tenth more, and 64 for the layout and lost+found. */
export function rootfsDiskInodes(usage: TreeUsage): number {
  return Math.ceil(usage.inodes * 1.1) + 64;
}

/** mke2fs's argv for the disk (pure): ext4, 4 KiB blocks, no journal, no reserved blocks, the tree from `dir`. */
export function mke2fsArgs(opts: { dir: string; file: string; label: string; sizeBytes: number; inodes: number }): string[] {
  return [
    '-q',
    '-F',
    '-t', 'ext4',
    '-b', String(BLOCK),
    '-I', String(INODE_SIZE),
    '-N', String(opts.inodes),
    '-m', '0',
    '-O', '^has_journal',
    '-E', 'root_owner=0:0',
    '-L', opts.label,
    '-d', opts.dir,
    opts.file,
    `${opts.sizeBytes / 1024}k`,
  ];
}

/** Walk a tree (lstat, no symlink followed, one file system): its usage. */
export function treeUsage(dir: string): TreeUsage {
  let blockBytes = 0;
  let inodes = 0;
  const seen = new Set<string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p, { bigint: false });
      if (st.nlink > 1 && !st.isDirectory()) {
        const key = `${st.dev}:${st.ino}`;
        if (seen.has(key)) continue;
        seen.add(key);
      }
      inodes += 1;
      if (st.isDirectory()) {
        blockBytes += BLOCK;
        walk(p);
      } else if (st.isFile() || st.isSymbolicLink()) {
        blockBytes += Math.ceil(st.size / BLOCK) * BLOCK;
      }
    }
  };
  walk(dir);
  return { blockBytes, inodes: inodes + 1 };
}

export interface RootfsDiskDeps {
  /** `<state.dir>/images` */
  imagesDir: string;
  /** The image's overlay lower dirs, TOP first (Images.lowerDirs). */
  lowerDirs(image: ImageRecord): string[];
  sys: Pick<Syscalls, 'mount' | 'umount2'>;
  /** Run a program; resolves with its exit code and combined output. */
  run(cmd: string, args: string[]): Promise<{ code: number | null; output: string }>;
  /** mke2fs's path (default: "mke2fs" on PATH; the image has /sbin/mke2fs). */
  mke2fs?: string;
  log: Logger;
}

export interface RootfsDisks {
  /** The disk of `image`: built unless cached. Concurrent calls for one image share one build. */
  ensure(image: ImageRecord): Promise<{ path: string; label: string; sizeBytes: number; built: boolean }>;
}

export function createRootfsDisks(deps: RootfsDiskDeps): RootfsDisks {
  const building = new Map<string, Promise<{ path: string; label: string; sizeBytes: number; built: boolean }>>();
  const dir = rootfsDisksDir(deps.imagesDir);
  return {
    ensure(image) {
      const file = rootfsDiskPath(deps.imagesDir, image.digest);
      const label = rootfsDiskLabel(image.digest);
      if (fs.existsSync(file)) return Promise.resolve({ path: file, label, sizeBytes: fs.statSync(file).size, built: false });
      const pending = building.get(file);
      if (pending) return pending;
      const run = build(deps, dir, image, file, label).finally(() => building.delete(file));
      building.set(file, run);
      return run;
    },
  };
}

async function build(deps: RootfsDiskDeps, dir: string, image: ImageRecord, file: string, label: string) {
  const started = Date.now();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.tmp-${path.basename(file, '.ext4')}-${randomBytes(4).toString('hex')}`);
  const stage = path.join(tmp, 'stage');
  const root = path.join(stage, ROOTFS_DISK_ROOT);
  const upper = path.join(tmp, 'upper');
  const work = path.join(tmp, 'work');
  const tmpFile = `${tmp}.ext4`;
  const what = `building the rootfs disk of image ${image.digest}`;
  let mounted = false;
  try {
    for (const d of [root, upper, work]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    fs.chmodSync(stage, 0o755);
    const meta: RootfsDiskMeta = { digest: image.digest, name: image.name, config: image.config };
    fs.writeFileSync(path.join(stage, ROOTFS_DISK_META), `${JSON.stringify(meta)}\n`, { mode: 0o644 });
    // An empty upper makes a single-layer image mountable too (overlay without upper needs two lowers); nothing
    // is written to it: mke2fs only reads.
    mountOverlay(overlayMountPlan(deps.lowerDirs(image), upper, work, root), deps.sys);
    mounted = true;
    const usage = treeUsage(stage);
    const inodes = rootfsDiskInodes(usage);
    const sizeBytes = rootfsDiskSize(usage, inodes);
    const mk = await deps.run(deps.mke2fs ?? 'mke2fs', mke2fsArgs({ dir: stage, file: tmpFile, label, sizeBytes, inodes }));
    if (mk.code !== 0) {
      throw new AuraeError('FAILED_PRECONDITION', `${what}: mke2fs exited with ${mk.code}: ${mk.output.trim().slice(-500)}: is e2fsprogs (≥ 1.43, for -d) installed?`);
    }
    deps.sys.umount2(root, 0);
    mounted = false;
    const fd = fs.openSync(tmpFile, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmpFile, file);
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
    deps.log.info('rootfs disk built', { image: image.digest, file, sizeBytes, inodes: usage.inodes, ms: Date.now() - started });
    return { path: file, label, sizeBytes, built: true };
  } catch (err) {
    if (err instanceof AuraeError) throw err;
    throw new AuraeError('FAILED_PRECONDITION', `${what} failed: ${(err as Error).message}`, { cause: err });
  } finally {
    if (mounted) {
      try {
        deps.sys.umount2(root, 2 /* MNT_DETACH */);
        mounted = false;
      } catch (err) {
        deps.log.warn('unmounting a rootfs disk stage failed', { dir: root, err: (err as Error).message });
      }
    }
    fs.rmSync(tmpFile, { force: true });
    if (!mounted) fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** A build's temp file or stage older than this is a leftover of a crash (a build takes seconds). */
export const STALE_DISK_BUILD_MS = 3600 * 1000;

/**
 * GC: delete the disks of images no longer stored (`liveDigests`: manifest digests still recorded) and the temp
 * files of builds cut short (older than STALE_DISK_BUILD_MS). Returns the bytes freed.
 */
export function pruneRootfsDisks(imagesDir: string, liveDigests: Set<string>, now: number = Date.now()): number {
  const dir = rootfsDisksDir(imagesDir);
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  const live = new Set([...liveDigests].map((d) => HEX.exec(d)?.[1]).filter((h): h is string => h !== undefined));
  let bytes = 0;
  for (const e of entries) {
    const p = path.join(dir, e.name);
    const m = /^([0-9a-f]{64})\.ext4$/.exec(e.name);
    try {
      const stale = m ? !live.has(m[1]!) : e.name.startsWith('.tmp-') && now - fs.lstatSync(p).mtimeMs > STALE_DISK_BUILD_MS;
      if (!stale) continue;
      bytes += e.isFile() ? fs.statSync(p).size : 0;
      fs.rmSync(p, { recursive: true, force: true });
    } catch {
      // a stage still mounted (a build in another process): left for the next GC
    }
  }
  return bytes;
}
