// Garbage collection: what no image row and no holder references goes. The plan is pure (gcPlan); collect() reads
// the store and the directories, then deletes. Pins (in-flight pulls) protect what a pull has fetched but not yet
// recorded; partial downloads survive unless stale (they are what a pull resumes after a power cut).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log';
import type { BlobStore } from './blob-store';
import type { ImageStore, StoredManifest } from './image-store';
import type { Pins } from './pull';
import { pruneRootfsDisks } from './rootfs-disk';
import { type Snapshots, snapshotId } from './snapshots';

/** A partial download older than this is dropped by GC (a pull resumes younger ones). */
export const STALE_INGEST_MS = 24 * 3600 * 1000;

export interface GcInput {
  manifests: StoredManifest[];
  referenced: { manifests: Set<string>; indexes: Set<string> };
  /** Stored blob digests. */
  blobs: string[];
  /** Ids of the complete snapshots. */
  snapshots: string[];
  /** Pinned blob digests and snapshot ids. */
  pinned: Set<string>;
}

export interface GcPlan {
  manifests: string[];
  blobs: string[];
  snapshots: string[];
}

export function gcPlan(input: GcInput): GcPlan {
  const live = input.manifests.filter((m) => input.referenced.manifests.has(m.digest) || input.pinned.has(m.digest));
  const liveBlobs = new Set<string>([...input.referenced.indexes, ...input.pinned]);
  const liveSnapshots = new Set<string>(input.pinned);
  for (const m of live) {
    liveBlobs.add(m.digest);
    liveBlobs.add(m.configDigest);
    for (const l of m.layers) {
      liveBlobs.add(l.digest);
      liveSnapshots.add(snapshotId(l.diffId));
    }
  }
  const liveDigests = new Set(live.map((m) => m.digest));
  return {
    manifests: input.manifests.filter((m) => !liveDigests.has(m.digest)).map((m) => m.digest),
    blobs: input.blobs.filter((d) => !liveBlobs.has(d)),
    snapshots: input.snapshots.filter((id) => !liveSnapshots.has(id)),
  };
}

export interface GcDeps {
  store: ImageStore;
  blobs: BlobStore;
  snapshots: Pick<Snapshots, 'list' | 'remove'>;
  /** `<dir>/snapshots`, for sizes. */
  snapshotsDir: string;
  pins: Pins;
  log: Logger;
  now?: () => number;
}

export async function collectGarbage(deps: GcDeps): Promise<{ blobs: number; snapshots: number; bytes: number }> {
  const blobs = await deps.blobs.list();
  const snapshots = await deps.snapshots.list();
  const plan = gcPlan({
    manifests: deps.store.manifests(),
    referenced: deps.store.referenced(),
    blobs: blobs.map((b) => b.digest),
    snapshots,
    pinned: deps.pins.keys(),
  });
  let bytes = 0;
  for (const digest of plan.manifests) deps.store.deleteManifest(digest);
  for (const digest of plan.blobs) {
    if (deps.blobs.isBusy(digest) || deps.pins.has(digest)) continue;
    bytes += await deps.blobs.remove(digest);
  }
  for (const id of plan.snapshots) {
    if (deps.pins.has(id)) continue;
    bytes += await treeBytes(path.join(deps.snapshotsDir, id));
    await deps.snapshots.remove(id);
  }
  const now = (deps.now ?? Date.now)();
  // The rootfs disks of VM pods (rootfs-disk.ts) go with their images.
  bytes += pruneRootfsDisks(path.dirname(deps.snapshotsDir), new Set(deps.store.manifests().map((m) => m.digest)), now);
  for (const ingest of await deps.blobs.strayIngests()) {
    const st = await fs.stat(ingest.file).catch(() => null);
    if (st && now - st.mtimeMs > STALE_INGEST_MS) {
      bytes += st.size;
      await fs.rm(ingest.file, { force: true });
    }
  }
  const result = { blobs: plan.blobs.length, snapshots: plan.snapshots.length, bytes };
  if (result.blobs || result.snapshots || plan.manifests.length) deps.log.info('images garbage collected', { ...result, manifests: plan.manifests.length });
  return result;
}

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await treeBytes(p);
    else total += await fs.lstat(p).then((s) => s.size, () => 0);
  }
  return total;
}
