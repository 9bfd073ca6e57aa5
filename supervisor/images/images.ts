// createImages(): the images core behind the Images interface — pull (pull.ts), the records (image-store.ts), the
// blobs (blob-store.ts), snapshots from H2's unpackLayer (unpack.ts), holders and GC (gc.ts). One per auraed.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { NodeConfig } from '../config';
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import type { Db } from '../store';
import { TokenCache } from './auth';
import { BlobStore, hexOf } from './blob-store';
import { collectGarbage } from './gc';
import { type HttpTransport, createUndiciTransport } from './http';
import { type ImageStore, sqliteImageStore } from './image-store';
import { Pins, pullImage } from './pull';
import { type Snapshots, createSnapshots } from './snapshots';
import { familiarName, parseReference } from './reference';
import type { ImageRecord, Images, Platform } from './types';

export interface ImagesDeps {
  db: Db;
  /** `<state.dir>/images` */
  dir: string;
  config: NodeConfig['images'];
  log: Logger;
  /** Default: undici with system CAs (+ per-registry CA files). */
  transport?: HttpTransport;
  /** Default: snapshots.ts over `dir` (unpack.ts's unpackLayer). */
  snapshots?: Snapshots;
  platform?: Platform;
  now?: () => number;
}

export interface ImagesCore extends Images {
  /** Close the HTTP connections (auraed shutdown, tests). */
  close(): Promise<void>;
}

const DIGEST_PREFIX = /^(?:sha256:)?([0-9a-f]{12,64})$/;

/** Preconditions: `dir` is on the state volume (writable; created when missing); `db` is the state database. */
export function createImages(deps: ImagesDeps): ImagesCore {
  const log = deps.log.child({ subsystem: 'images' });
  const store: ImageStore = sqliteImageStore(deps.db);
  const blobs = new BlobStore(deps.dir, log);
  const snapshotsDir = path.join(deps.dir, 'snapshots');
  for (const d of [blobs.blobsDir, blobs.ingestDir, snapshotsDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
  const owned = deps.transport ? null : createUndiciTransport();
  const transport = deps.transport ?? owned!;
  const tokens = new TokenCache();
  const pins = new Pins();
  const snapshots = deps.snapshots ?? createSnapshots(deps.dir);
  // What a crash left mid-unpack; before any pull of this process starts one.
  const ready = snapshots.cleanLeftovers().then(
    (n) => void (n > 0 && log.info('removed snapshot leftovers of an interrupted unpack', { count: n })),
    (err: unknown) => log.warn('cleaning snapshot leftovers failed', { error: err as Error }),
  );
  let gcChain: Promise<unknown> = Promise.resolve();

  const pullDeps = {
    config: deps.config,
    store,
    blobs,
    snapshots,
    transport,
    tokens,
    pins,
    log,
    ...(deps.platform ? { platform: deps.platform } : {}),
    ...(deps.now ? { now: deps.now } : {}),
  };

  /** The records `ref` names: a digest (prefix) matches every name of that manifest; a reference one row. */
  const resolve = (ref: string): ImageRecord[] => {
    const all = store.list();
    const hex = DIGEST_PREFIX.exec(ref)?.[1];
    if (hex !== undefined) {
      const matches = all.filter((r) => hexOf(r.digest).startsWith(hex));
      const digests = new Set(matches.map((r) => r.digest));
      if (digests.size > 1) {
        throw new AuraeError('INVALID_ARGUMENT', `reference: "${ref}" matches ${digests.size} images: give more digits`);
      }
      if (matches.length > 0 || ref.startsWith('sha256:')) return matches;
    }
    const parsed = parseReference(ref, 'reference');
    if (parsed.digest !== null) return all.filter((r) => r.name === parsed.name && r.digest === parsed.digest);
    return all.filter((r) => r.name === parsed.name && r.tags.includes(parsed.tag!));
  };

  const gc = () => {
    const run = gcChain.then(() => ready).then(() => collectGarbage({ store, blobs, snapshots, snapshotsDir, pins, log, ...(deps.now ? { now: deps.now } : {}) }));
    gcChain = run.catch(() => undefined);
    return run;
  };

  const inUse = (digest: string, what: string) => {
    const holders = store.holdersOf(digest);
    if (holders.length > 0) {
      throw new AuraeError('FAILED_PRECONDITION', `image ${what} is in use by ${holders.join(', ')}: remove those first, or force (its data stays until they release it)`);
    }
  };

  return {
    pull: async (reference, opts) => {
      await ready;
      return pullImage(pullDeps, reference, opts);
    },
    list: () => store.list(),
    get: (ref) => resolve(ref)[0],
    async remove(ref, opts = {}) {
      const matches = resolve(ref);
      if (matches.length === 0) throw new AuraeError('NOT_FOUND', `image "${ref}" is not on this node: see \`aer image list\``);
      const removed: string[] = [];
      const all = store.list();
      const byDigest = DIGEST_PREFIX.test(ref) || ref.includes('@');
      if (byDigest) {
        const digest = matches[0]!.digest;
        const others = all.filter((r) => r.digest === digest && !matches.some((m) => m.name === r.name));
        if (others.length === 0 && !opts.force) inUse(digest, ref);
        for (const r of matches) {
          store.removeImage(r.name, r.digest);
          removed.push(...r.tags.map((t) => `${familiarName(r.name)}:${t}`), `${familiarName(r.name)}@${r.digest}`);
        }
      } else {
        const parsed = parseReference(ref, 'reference');
        const record = matches[0]!;
        const tag = parsed.tag!;
        if (record.tags.length > 1) {
          store.untag(record.name, tag);
          removed.push(`${familiarName(record.name)}:${tag}`);
        } else {
          const last = all.filter((r) => r.digest === record.digest).length === 1;
          if (last && !opts.force) inUse(record.digest, ref);
          store.removeImage(record.name, record.digest);
          removed.push(`${familiarName(record.name)}:${tag}`, `${familiarName(record.name)}@${record.digest}`);
        }
      }
      log.info('image removed', { reference: ref, removed, ...(opts.force ? { force: true } : {}) });
      await gc().catch((err: unknown) => log.warn('garbage collection after remove failed', { error: err as Error }));
      return { removed };
    },
    lowerDirs: (image) => snapshots.lowerDirs(image.layers),
    retain(imageDigest, holder) {
      if (!store.hasManifest(imageDigest)) throw new AuraeError('NOT_FOUND', `image ${imageDigest} is not on this node: pull it first`);
      if (holder === '') throw new AuraeError('INVALID_ARGUMENT', 'holder: required: who retains the image, e.g. pod/web/app');
      store.retain(imageDigest, holder);
    },
    release: (holder) => store.release(holder),
    gc,
    async close() {
      await owned?.close();
    },
  };
}
