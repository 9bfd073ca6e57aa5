// A child's root without a copy: the node's initramfs carries the read-only root image (/usr) as one file,
// .stage/root.img, whose data the build aligns to ROOT_IMAGE_ALIGN (image/initramfs). Rather than have QEMU load
// the whole initramfs (~50 MB) into the child's RAM and the child's kernel unpack it again, a child boots a
// small "stage" initramfs (the same archive without that entry) and gets the image as a read-only virtio disk:
// the initramfs file itself, at the entry's offset. Its /init finds the disk by its serial (ROOT_DISK_SERIAL) and
// mounts it on /usr, and the child reads only the blocks it touches.
// An initramfs without such an entry (compressed, the unpacked layout, another build) boots as it is.
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT_DISK_SERIAL, ROOT_IMAGE_ALIGN, STAGE_ROOT_IMAGE } from '../config/node-paths';

/** One entry of a newc archive: where its header, data and end (the next header) are in the file. */
export interface NewcEntry {
  name: string;
  headerStart: number;
  dataStart: number;
  size: number;
  end: number;
}

const NEWC_MAGIC = '070701';
const NEWC_HEADER = 110;
/** An archive with more entries than this is not an initramfs of ours: stop reading it. */
const MAX_ENTRIES = 100_000;
const align4 = (n: number) => (n + 3) & ~3;

/**
 * The entries of a newc ("070701") cpio archive up to its trailer, reading headers and names only (file data is
 * skipped, never read). Null when the file is not such an archive (a compressed initramfs) or is cut short. Pure
 * but for `read`.
 */
export function scanNewc(read: (offset: number, length: number) => Buffer, fileSize: number): NewcEntry[] | null {
  const entries: NewcEntry[] = [];
  let at = 0;
  while (entries.length < MAX_ENTRIES) {
    if (at + NEWC_HEADER > fileSize) return null;
    const header = read(at, NEWC_HEADER).toString('latin1');
    if (!header.startsWith(NEWC_MAGIC)) return null;
    const field = (i: number) => Number.parseInt(header.slice(6 + i * 8, 14 + i * 8), 16);
    const size = field(6);
    const nameSize = field(11);
    if (!Number.isSafeInteger(size) || !Number.isSafeInteger(nameSize) || nameSize < 1) return null;
    const dataStart = align4(at + NEWC_HEADER + nameSize);
    const end = align4(dataStart + size);
    if (dataStart > fileSize || dataStart + size > fileSize) return null;
    const name = read(at + NEWC_HEADER, nameSize - 1).toString('utf8');
    if (name === 'TRAILER!!!') return entries;
    entries.push({ name, headerStart: at, dataStart, size, end });
    at = end;
  }
  return null;
}

/** What a child boots from when its root image is handed over as a disk. */
export interface ChildRoot {
  /** The stage initramfs: the node's, without the root image. */
  initrd: string;
  /** The root image inside the node's initramfs file. */
  rootDisk: { path: string; offset: number; size: number; serial: string };
}

/**
 * The child root for `initrd`, with its stage initramfs written once under `cacheDir` (named by the initramfs's
 * size and modification time, so an upgraded image gets its own and the old one is removed). Null when the
 * initramfs has no aligned root image entry: the child then boots the whole initramfs.
 */
export function childRootFor(initrd: string, cacheDir: string): ChildRoot | null {
  const fd = openSync(initrd, 'r');
  try {
    const st = fstatSync(fd);
    const read = (offset: number, length: number) => {
      const buf = Buffer.alloc(length);
      const n = readSync(fd, buf, 0, length, offset);
      return buf.subarray(0, n);
    };
    const entries = scanNewc(read, st.size);
    const root = entries?.find((e) => e.name === STAGE_ROOT_IMAGE.slice(1));
    if (!root || root.dataStart % ROOT_IMAGE_ALIGN !== 0 || root.size % 512 !== 0 || root.size === 0) return null;
    const name = `stage-${st.size}-${Math.round(st.mtimeMs)}-${st.ino}.cpio`;
    const stage = join(cacheDir, name);
    mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
    if (!readdirSync(cacheDir).includes(name)) {
      const tmp = `${stage}.tmp-${process.pid}`;
      const out = openSync(tmp, 'w', 0o600);
      try {
        for (const [from, to] of [[0, root.headerStart], [root.end, st.size]] as const) {
          for (let at = from; at < to; ) {
            const chunk = read(at, Math.min(1 << 20, to - at));
            if (chunk.length === 0) throw new Error(`${initrd} ended at ${at} bytes while being read`);
            writeSync(out, chunk);
            at += chunk.length;
          }
        }
      } finally {
        closeSync(out);
      }
      renameSync(tmp, stage);
      for (const old of readdirSync(cacheDir)) if (old !== name) rmSync(join(cacheDir, old), { force: true });
    }
    return { initrd: stage, rootDisk: { path: initrd, offset: root.dataStart, size: root.size, serial: ROOT_DISK_SERIAL } };
  } finally {
    closeSync(fd);
  }
}
