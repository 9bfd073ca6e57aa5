// What a directory tree occupies, as `du` counts it: allocated blocks and inodes, each hard-linked inode once.
// ImageFsInfo reports this for the images directory (blobs, snapshots, ingest), kubelet polls it for image GC.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface DiskUsage {
  bytes: bigint;
  inodes: bigint;
}

/**
 * Walk `dir` (not following symlinks). Entries that vanish during the walk (a GC, a pull's temp file) are skipped;
 * a missing `dir` is zero. Other errors (EACCES) reject: the caller reports them.
 */
export async function diskUsage(dir: string): Promise<DiskUsage> {
  const seen = new Set<string>();
  let bytes = 0n;
  const walk = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    bytes += st.blocks * 512n;
    if (!st.isDirectory()) return;
    let names: string[];
    try {
      names = await readdir(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) await walk(join(path, name));
  };
  await walk(dir);
  return { bytes, inodes: BigInt(seen.size) };
}

/** `measure` at most once per `ttlMs` (kubelet asks every few seconds; a walk of many snapshots is not free). */
export function cachedUsage(measure: () => Promise<DiskUsage>, ttlMs: number, now: () => number = Date.now): () => Promise<DiskUsage> {
  let last: { at: number; value: Promise<DiskUsage> } | null = null;
  return () => {
    const t = now();
    if (last === null || t - last.at >= ttlMs) {
      const value = measure();
      last = { at: t, value };
      // A failed walk is not cached: the next call tries again.
      value.catch(() => {
        if (last?.value === value) last = null;
      });
    }
    return last.value;
  };
}
