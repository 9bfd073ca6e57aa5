// One pull: reference → manifest (an index picks linux/amd64) → config → every layer's blob stored and unpacked into
// its snapshot → the filesystem synced → the image row committed. Nothing is recorded before the end, so a pull cut
// by an error, an abort or a power loss never shows a half image (its blobs and partials stay for the next try).
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import type { TokenCache } from './auth';
import type { BlobStore } from './blob-store';
import type { HttpTransport } from './http';
import type { ImageStore, StoredManifest } from './image-store';
import { type Descriptor, MAX_MANIFEST_BYTES, checkLayers, parseImageConfig, selectPlatform } from './manifest';
import { formatReference, parseReference } from './reference';
import { type Snapshots, snapshotId } from './snapshots';
import { RegistryClient } from './registry-client';
import { type ImageLayer, type ImageRecord, type ImagesConfig, NODE_PLATFORM, type Platform, type PullOptions } from './types';

/** Layers fetched and unpacked at the same time. */
const LAYER_CONCURRENCY = 3;

/** What an in-flight pull or GC must not delete: blob digests and snapshot ids, counted. */
export class Pins {
  private readonly counts = new Map<string, number>();
  add(keys: Iterable<string>): () => void {
    const list = [...keys];
    for (const k of list) this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const k of list) {
        const n = (this.counts.get(k) ?? 1) - 1;
        if (n <= 0) this.counts.delete(k);
        else this.counts.set(k, n);
      }
    };
  }
  has(key: string): boolean {
    return this.counts.has(key);
  }
  keys(): Set<string> {
    return new Set(this.counts.keys());
  }
}

export interface PullDeps {
  config: ImagesConfig;
  store: ImageStore;
  blobs: BlobStore;
  /** H2's snapshots (snapshots.ts): one unpack per layer content, verified against its diffId, renamed in whole. */
  snapshots: Pick<Snapshots, 'ensure' | 'has'>;
  transport: HttpTransport;
  tokens: TokenCache;
  pins: Pins;
  log: Logger;
  platform?: Platform;
  now?: () => number;
}

export async function pullImage(deps: PullDeps, reference: string, opts: PullOptions = {}): Promise<ImageRecord> {
  const ref = parseReference(reference, 'reference');
  const what = formatReference(ref);
  const signal = opts.signal;
  const platform = deps.platform ?? NODE_PLATFORM;
  const client = new RegistryClient({ ref, config: deps.config, ...(opts.auth ? { auth: opts.auth } : {}), transport: deps.transport, tokens: deps.tokens });
  const log = deps.log.child({ image: what });
  const started = Date.now();

  const unpin: (() => void)[] = [];
  try {
    let top = await client.getManifest(ref.digest ?? ref.tag!, signal);
    let indexDigest: string | null = null;
    let chosen: Descriptor | null = null;
    if (top.parsed.kind === 'index') {
      chosen = selectPlatform(top.parsed.manifests, platform, `image ${what}`);
      indexDigest = top.digest;
      unpin.push(deps.pins.add([top.digest]));
      await deps.blobs.put({ digest: top.digest, size: top.bytes.length }, top.bytes);
      top = await client.getManifest(chosen.digest, signal);
      if (top.parsed.kind !== 'manifest') {
        throw new AuraeError('UNIMPLEMENTED', `image ${what}: the index entry for ${platform.os}/${platform.architecture} is itself an index: nested indexes are not supported`);
      }
    }
    const manifest = top.parsed;
    if (manifest.kind !== 'manifest') throw new AuraeError('INTERNAL', `image ${what}: unexpected document kind`);
    unpin.push(deps.pins.add([top.digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)]));
    await deps.blobs.put({ digest: top.digest, size: top.bytes.length }, top.bytes);

    if (manifest.config.size > MAX_MANIFEST_BYTES) {
      throw new AuraeError('FAILED_PRECONDITION', `image ${what}: its config is ${manifest.config.size} bytes, more than ${MAX_MANIFEST_BYTES}: refusing it`);
    }
    await deps.blobs.ensure(manifest.config, (offset, s) => client.getBlob(manifest.config.digest, offset, s), signal ? { signal } : {});
    const imageConfig = parseImageConfig(await deps.blobs.read(manifest.config.digest), `image ${what}: config`);
    if (imageConfig.os && imageConfig.architecture && (imageConfig.os !== platform.os || imageConfig.architecture !== platform.architecture)) {
      throw new AuraeError('FAILED_PRECONDITION', `image ${what} is built for ${imageConfig.os}/${imageConfig.architecture}, not ${platform.os}/${platform.architecture}: pull an image for this node's platform`);
    }
    checkLayers(manifest.layers, imageConfig.diffIds, `image ${what}`);
    const layers: ImageLayer[] = manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: imageConfig.diffIds[i]! }));
    unpin.push(deps.pins.add(layers.map((l) => snapshotId(l.diffId))));

    await eachLimited(layers, LAYER_CONCURRENCY, async (layer) => {
      const report = (done: number, state: 'exists' | 'downloading' | 'unpacking' | 'done') =>
        opts.onProgress?.({ layer: layer.digest, done, total: layer.size, state });
      const haveSnapshot = await deps.snapshots.has(snapshotId(layer.diffId));
      const fetched = await deps.blobs.ensure(layer, (offset, s) => client.getBlob(layer.digest, offset, s), {
        ...(signal ? { signal } : {}),
        onProgress: (done) => report(done, 'downloading'),
      });
      if (haveSnapshot && fetched === 'exists') {
        report(layer.size, 'exists');
        return;
      }
      report(layer.size, 'unpacking');
      // Not cancelled by this pull's signal: another pull may wait for the same snapshot.
      await deps.snapshots.ensure(layer, deps.blobs.path(layer.digest));
      report(layer.size, 'done');
    });

    // Durable before visible: blobs are fsynced as they land and snapshots synced (syncfs) before their rename.
    const stored: StoredManifest = {
      digest: top.digest,
      configDigest: manifest.config.digest,
      config: imageConfig.runtime,
      layers,
      size: layers.reduce((n, l) => n + l.size, 0),
    };
    const pulledAt = (deps.now ?? Date.now)();
    deps.store.put({ name: ref.name, tag: ref.tag, indexDigest, manifest: stored, pulledAt });
    log.info('image pulled', { digest: stored.digest, layers: layers.length, bytes: stored.size, ms: Date.now() - started, ...(chosen ? { index: indexDigest } : {}) });
    const record = deps.store.list().find((r) => r.name === ref.name && r.digest === stored.digest);
    if (!record) throw new AuraeError('INTERNAL', `image ${what}: recorded but not listed`);
    return record;
  } catch (err) {
    if (signal?.aborted) {
      throw new AuraeError('UNAVAILABLE', `image ${what}: the pull was cancelled: what was downloaded is kept; pull again to resume`, { cause: err });
    }
    throw err;
  } finally {
    for (const u of unpin) u();
  }
}

/** Run `fn` over `items`, at most `limit` at once; the first failure wins (the others are awaited). */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | null = null;
  const worker = async () => {
    while (failure === null && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== null) throw (failure as { err: unknown }).err;
}
