// Layer snapshots on disk: `<dir>/snapshots/<id>/fs`, one per distinct layer content, each an overlayfs lower
// directory holding exactly that layer (whiteouts in overlay format; see unpack.ts). `<dir>` is the images
// directory (`<state.dir>/images`).
//
// The id is the hex of the layer's diffId (sha256 of its uncompressed tar), not the compressed digest and not a
// chain id: a snapshot never contains its parents (overlayfs stacks them at mount time), so its content depends
// on the uncompressed tar alone. The same layer shipped gzip- and zstd-compressed shares one snapshot, and the
// image config's rootfs.diff_ids tell which snapshots an image needs before anything is downloaded.
//
// A snapshot is visible (its `fs` exists) only once complete: unpackLayer fills a temp directory beside it and
// renames it in; removal renames the snapshot aside before deleting it. Leftovers of a cut are swept by
// cleanLeftovers() at start-up.
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { AuraeError } from '../errors';
import type { ImageLayer } from './types';
import { unpackLayer, type UnpackOptions } from './unpack';

const DIFF_ID = /^sha256:([0-9a-f]{64})$/;
const ID = /^[0-9a-f]{64}$/;
const TRASH_PREFIX = '.trash-';

/** The snapshot id for a diffId ("sha256:<hex>" → "<hex>"); INVALID_ARGUMENT for anything else. */
export function snapshotId(diffId: string): string {
  const m = DIFF_ID.exec(diffId);
  if (!m) throw new AuraeError('INVALID_ARGUMENT', `layer diffId "${diffId}": must be "sha256:" and 64 lowercase hex digits`);
  return m[1]!;
}

export function snapshotsRoot(dir: string): string {
  return path.join(dir, 'snapshots');
}

/** The lower dir of a snapshot: `<dir>/snapshots/<id>/fs`. */
export function snapshotFs(dir: string, id: string): string {
  return path.join(snapshotsRoot(dir), id, 'fs');
}

/**
 * The overlay lower dirs for an image's layers (given bottom first, manifest order), TOP layer first. A layer
 * that occurs twice (e.g. the empty layer) keeps only its topmost place: the lower copy can add nothing the
 * upper identical copy does not already show, and overlayfs refuses a directory listed twice.
 */
export function lowerDirsFor(dir: string, layers: Pick<ImageLayer, 'diffId'>[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const layer of [...layers].reverse()) {
    const id = snapshotId(layer.diffId);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(snapshotFs(dir, id));
  }
  return out;
}

export interface Snapshots {
  /** Unpack `blob` as the snapshot of `layer` unless it exists; verifies the diffId. Concurrent calls share one unpack. */
  ensure(layer: Pick<ImageLayer, 'digest' | 'mediaType' | 'diffId'>, blob: string, opts?: UnpackOptions): Promise<{ id: string; fs: string; created: boolean }>;
  has(id: string): Promise<boolean>;
  /** Ids of complete snapshots. */
  list(): Promise<string[]>;
  /** Remove one snapshot (callers check that no image or container uses it); false when it did not exist. */
  remove(id: string): Promise<boolean>;
  /** Delete what a cut left: temp unpack dirs, half-removed snapshots, ids without `fs`. Returns how many. */
  cleanLeftovers(): Promise<number>;
  lowerDirs(layers: Pick<ImageLayer, 'diffId'>[]): string[];
}

export function createSnapshots(dir: string): Snapshots {
  const root = snapshotsRoot(dir);
  const inflight = new Map<string, Promise<{ id: string; fs: string; created: boolean }>>();

  async function has(id: string): Promise<boolean> {
    try {
      return (await fsp.lstat(snapshotFs(dir, id))).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  async function ensureOnce(layer: Pick<ImageLayer, 'digest' | 'mediaType' | 'diffId'>, blob: string, opts: UnpackOptions) {
    const id = snapshotId(layer.diffId);
    const fs = snapshotFs(dir, id);
    if (await has(id)) return { id, fs, created: false };
    await fsp.mkdir(path.dirname(fs), { recursive: true });
    try {
      await unpackLayer(blob, layer.mediaType, fs, { ...opts, expectDiffId: layer.diffId });
    } catch (err) {
      // Another process finished the same snapshot first: the rename is atomic, so what is there is whole.
      if (err instanceof AuraeError && err.code === 'FAILED_PRECONDITION' && (await has(id)) && /not empty|meanwhile/.test(err.message)) {
        return { id, fs, created: false };
      }
      throw err;
    }
    return { id, fs, created: true };
  }

  return {
    ensure(layer, blob, opts = {}) {
      const id = snapshotId(layer.diffId);
      const running = inflight.get(id);
      if (running) return running;
      const p = ensureOnce(layer, blob, opts).finally(() => inflight.delete(id));
      inflight.set(id, p);
      return p;
    },
    has,
    async list() {
      const names = await fsp.readdir(root).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [] as string[];
        throw err;
      });
      const out: string[] = [];
      for (const name of names.sort()) if (ID.test(name) && (await has(name))) out.push(name);
      return out;
    },
    async remove(id) {
      if (!ID.test(id)) throw new AuraeError('INVALID_ARGUMENT', `snapshot id "${id}": must be 64 lowercase hex digits`);
      const trash = path.join(root, `${TRASH_PREFIX}${id}-${randomBytes(4).toString('hex')}`);
      try {
        await fsp.rename(path.join(root, id), trash);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      }
      await fsp.rm(trash, { recursive: true, force: true });
      return true;
    },
    async cleanLeftovers() {
      const names = await fsp.readdir(root).catch(() => [] as string[]);
      let removed = 0;
      for (const name of names) {
        const full = path.join(root, name);
        if (name.startsWith(TRASH_PREFIX)) {
          await fsp.rm(full, { recursive: true, force: true });
          removed++;
          continue;
        }
        if (!ID.test(name)) continue;
        const inside = await fsp.readdir(full).catch(() => [] as string[]);
        for (const entry of inside) {
          if (entry.startsWith('fs.unpack-')) {
            await fsp.rm(path.join(full, entry), { recursive: true, force: true });
            removed++;
          }
        }
        if (!inside.includes('fs') && !inflight.has(name)) {
          await fsp.rm(full, { recursive: true, force: true });
          removed++;
        }
      }
      return removed;
    },
    lowerDirs(layers) {
      return lowerDirsFor(dir, layers);
    },
  };
}
