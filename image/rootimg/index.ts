// The node's read-only root image: /usr (Node, its libraries, the bundles and addons, busybox, the host tools) as
// one compressed file system image that /init mounts through a loop device from the initramfs (see
// image/initramfs/layout.ts initScript). The kernel reads it lazily: a page is decompressed when a process
// touches it, and the page cache may drop it again, where the unpacked initramfs kept all ~130 MB in RAM.
// Two formats, both built into the kernel (image/kernel/fragment.config), picked by AURAE_ROOT_IMAGE:
//   erofs     mkfs.erofs (erofs-utils 1.5: LZ4/LZ4HC only), 64 KiB physical clusters
//   squashfs  mksquashfs (squashfs-tools 4.5), zstd -19, 128 KiB blocks
//   none      no image: /usr is unpacked from the initramfs into RAM as before (for comparison)
// Reproducible: the tree is staged from the entry list with fixed modes, owners (--all-root), timestamps and no
// xattrs, and the tools are told every value they would otherwise take from the clock or a random source.
import fs from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import { planCpio, type CpioEntry } from '../initramfs/cpio';
import type { RootImageFsType } from '../initramfs/layout';
import { sha256, sha256File } from '../lib/cache';

export type RootImageChoice = RootImageFsType | 'none';
export const ROOT_IMAGE_CHOICES: readonly RootImageChoice[] = ['erofs', 'squashfs', 'none'];
/**
 * What the image uses unless AURAE_ROOT_IMAGE says otherwise, chosen by image/bench/root-image.ts (BENCHMARKS.md):
 * squashfs-zstd's image is 49 MB against erofs-lz4hc's 64 MB, so the initramfs, the UKI, QEMU's copy of the
 * initramfs and the boot-time peak (initrd + its unpacked copy) are smaller: a node serves in 192 MiB (erofs:
 * 256), 136 MiB in use after boot (erofs: 150). erofs reaches SERVING ~0.5 s sooner under TCG (LZ4 decompresses
 * faster than zstd on the emulated CPU); time to /init is the same.
 */
export const DEFAULT_ROOT_IMAGE: RootImageChoice = 'squashfs';

interface Format {
  /** The Debian package with the mkfs tool (image/setup.sh installs it). */
  package: string;
  tool: string;
  /** The file name of the built image (in out/image and the build cache). */
  fileName: string;
  /** argv (tool first) that builds `out` from the staged directory `src`. */
  argv(src: string, out: string, epoch: number, uuid: string): string[];
}

export const ROOT_IMAGE_FORMATS: Record<RootImageFsType, Format> = {
  erofs: {
    package: 'erofs-utils',
    tool: 'mkfs.erofs',
    fileName: 'root.erofs',
    // lz4hc level 12 in 64 KiB physical clusters: 59 MB for the ~125 MB tree against 73 MB with erofs's default
    // 4 KiB clusters; a fault decompresses one cluster (LZ4: fast even under TCG) into the page cache.
    // -T: every timestamp and the build time; -U: the UUID (else random); -x -1: no xattrs from the build host.
    argv: (src, out, epoch, uuid) => ['mkfs.erofs', '--quiet', '-zlz4hc,12', '-C65536', `-T${epoch}`, `-U${uuid}`, '--all-root', '-x', '-1', out, src],
  },
  squashfs: {
    package: 'squashfs-tools',
    tool: 'mksquashfs',
    fileName: 'root.squashfs',
    // mksquashfs 4.5 is reproducible by default; -mkfs-time/-all-time pin the clock, -all-root the owners.
    argv: (src, out, epoch) => [
      'mksquashfs', src, out, '-noappend', '-quiet', '-no-progress',
      '-comp', 'zstd', '-Xcompression-level', '19', '-b', '128K',
      '-all-root', '-no-xattrs', '-mkfs-time', String(epoch), '-all-time', String(epoch),
    ],
  },
};

/** AURAE_ROOT_IMAGE, validated. */
export function rootImageFromEnv(env = process.env): RootImageChoice {
  const v = env.AURAE_ROOT_IMAGE ?? DEFAULT_ROOT_IMAGE;
  if (!(ROOT_IMAGE_CHOICES as readonly string[]).includes(v)) throw new Error(`AURAE_ROOT_IMAGE=${v} is not allowed: use ${ROOT_IMAGE_CHOICES.join(', ')}`);
  return v as RootImageChoice;
}

/** A UUID made from `key` (the image's content key), so the same inputs give the same UUID. */
export function uuidFromKey(key: string): string {
  const h = sha256(key).slice(0, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Write `entries` under `dir` (which must be empty) exactly as listed: parents first, files copied, modes set
 * explicitly (the umask and the sources' modes do not leak in). Char devices are refused: /usr has none.
 */
export function stageTree(entries: CpioEntry[], dir: string): void {
  for (const e of planCpio(entries)) {
    const target = path.join(dir, e.path);
    switch (e.type) {
      case 'dir':
        fs.mkdirSync(target);
        break;
      case 'file':
        if (e.data === undefined) fs.writeFileSync(target, '');
        else if (Buffer.isBuffer(e.data)) fs.writeFileSync(target, e.data);
        else if ('file' in e.data) fs.copyFileSync(e.data.file, target);
        else throw new Error(`root image entry ${JSON.stringify(e.path)}: alignment padding belongs to a cpio archive, not a tree`);
        break;
      case 'symlink':
        fs.symlinkSync(e.target!, target);
        break;
      case 'char':
        throw new Error(`root image entry ${JSON.stringify(e.path)}: device nodes cannot be staged without root: keep them in the initramfs`);
    }
    if (e.type !== 'symlink') fs.chmodSync(target, e.mode);
  }
}

/** The content key of a tree: every entry's metadata and content (so "same key" means "same bytes" out). */
export async function treeKey(entries: CpioEntry[], ...extra: string[]): Promise<string> {
  const parts: string[] = [...extra];
  for (const e of entries) {
    const content =
      e.data === undefined ? '' : Buffer.isBuffer(e.data) ? sha256(e.data) : 'file' in e.data ? await sha256File(e.data.file) : JSON.stringify(e.data);
    parts.push(JSON.stringify([e.path, e.type, e.mode, e.target ?? '', e.rdevMajor ?? 0, e.rdevMinor ?? 0, content]));
  }
  return sha256(...parts);
}

export interface RootImageBuild {
  file: string;
  fstype: RootImageFsType;
  /** True when the previous image (same key) was kept. */
  unchanged: boolean;
}

/**
 * Build the root image of `entries` (paths relative to /usr) as `outDir/<format file name>`, unless the file there
 * was built from the same key. The staging folder (a copy of the tree, ~130 MB) is removed afterwards.
 */
export async function buildRootImage(
  entries: CpioEntry[],
  fstype: RootImageFsType,
  outDir: string,
  epoch: number,
  log: (line: string) => void,
): Promise<RootImageBuild> {
  const format = ROOT_IMAGE_FORMATS[fstype];
  const key = await treeKey(entries, String(epoch), JSON.stringify(format.argv('SRC', 'OUT', epoch, 'UUID')));
  const out = path.join(outDir, format.fileName);
  const keyFile = `${out}.key`;
  if (fs.existsSync(out) && fs.existsSync(keyFile) && fs.readFileSync(keyFile, 'utf8') === key) {
    log(`root image: unchanged (${format.fileName})`);
    return { file: out, fstype, unchanged: true };
  }
  const which = await $({ quiet: true, nothrow: true })`command -v ${format.tool}`;
  if (which.exitCode !== 0) throw new Error(`root image: ${format.tool} is missing: install ${format.package} (image/setup.sh does), or build with AURAE_ROOT_IMAGE=none`);
  fs.rmSync(keyFile, { force: true });
  fs.rmSync(out, { force: true });
  const staging = path.join(outDir, `.${format.fileName}.staging-${process.pid}`);
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(staging, { recursive: true });
  try {
    stageTree(entries, staging);
    // The staged root's own mode is part of the image (the mount point's mode once mounted).
    fs.chmodSync(staging, 0o755);
    log(`root image: writing ${entries.length} entries as ${fstype} (${format.tool})`);
    const [tool, ...args] = format.argv(staging, out, epoch, uuidFromKey(key));
    await $({ quiet: true })`${tool} ${args}`;
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
  fs.writeFileSync(keyFile, key);
  return { file: out, fstype, unchanged: false };
}
