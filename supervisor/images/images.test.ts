// createImages() with a fake registry (transport) and fake snapshots: a pull records the image only after every
// blob and snapshot is in place, picks amd64 from an index, reports progress per layer, shares downloads between
// racing pulls; get/remove/retain/release/gc over the SQLite store.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { silentLogger } from '../log';
import { openDatabase } from '../store';
import { gcPlan } from './gc';
import type { HttpRequest, HttpResponse } from './http';
import { type ImagesCore, createImages } from './images';
import { MEDIA_TYPES } from './manifest';
import { type Snapshots, lowerDirsFor, snapshotFs, snapshotId } from './snapshots';
import type { PullProgress } from './types';
import { failure } from './testing';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** An in-memory registry at reg.test: blobs by digest, manifests by tag or digest; counts blob GETs. */
class FakeRegistry {
  blobs = new Map<string, Buffer>();
  manifests = new Map<string, { type: string; bytes: Buffer }>();
  blobGets = new Map<string, number>();
  gate: Promise<void> | null = null;

  addBlob(bytes: Buffer): { digest: string; size: number } {
    const digest = sha(bytes);
    this.blobs.set(digest, bytes);
    return { digest, size: bytes.length };
  }
  addManifest(tags: string[], type: string, doc: object): string {
    const bytes = Buffer.from(JSON.stringify(doc));
    const digest = sha(bytes);
    for (const t of [...tags, digest]) this.manifests.set(t, { type, bytes });
    return digest;
  }
  /** An image with `layers` (their contents); returns its manifest digest and layer descriptors. */
  addImage(tags: string[], layers: string[], arch = 'amd64') {
    const layerDescs = layers.map((l) => ({ mediaType: LAYER_TYPE, ...this.addBlob(Buffer.from(l)) }));
    const config = this.addBlob(
      Buffer.from(JSON.stringify({ os: 'linux', architecture: arch, config: { Cmd: ['/bin/sh'], Env: ['A=1'], User: '1000' }, rootfs: { type: 'layers', diff_ids: layers.map((l) => sha(Buffer.from(`diff:${l}`))) } })),
    );
    const digest = this.addManifest(tags, MEDIA_TYPES.ociManifest, { schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers: layerDescs });
    return { digest, layers: layerDescs, size: this.manifests.get(digest)!.bytes.length };
  }
  transport = async (req: HttpRequest): Promise<HttpResponse> => {
    const url = new URL(req.url);
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/(.+)$/.exec(url.pathname);
    const reply = (status: number, headers: Record<string, string>, body: Buffer = Buffer.alloc(0)): HttpResponse => ({
      status,
      headers,
      body: (async function* (gate: Promise<void> | null) {
        if (gate) await gate;
        if (body.length) yield body;
      })(this.gate),
      bytes: async () => body,
      dump: async () => undefined,
    });
    if (!m) return reply(404, {});
    if (m[2] === 'manifests') {
      const found = this.manifests.get(m[3]!);
      return found ? reply(200, { 'content-type': found.type }, found.bytes) : reply(404, {});
    }
    this.blobGets.set(m[3]!, (this.blobGets.get(m[3]!) ?? 0) + 1);
    const blob = this.blobs.get(m[3]!);
    return blob ? reply(200, {}, blob) : reply(404, {});
  };
}

/** Snapshots that "unpack" by writing the layer's bytes to fs/content; diffId = sha256("diff:" + content). */
function fakeSnapshots(dir: string, opts: { failFor?: string } = {}): Snapshots & { unpacked: string[] } {
  const unpacked: string[] = [];
  const has = async (id: string) =>
    fs.stat(snapshotFs(dir, id)).then(
      () => true,
      () => false,
    );
  return {
    unpacked,
    async ensure(layer, blob) {
      const id = snapshotId(layer.diffId);
      if (await has(id)) return { id, fs: snapshotFs(dir, id), created: false };
      const content = await fs.readFile(blob);
      if (opts.failFor === content.toString()) throw new AuraeError('INVALID_ARGUMENT', 'layer entry "../../etc/passwd": escapes the snapshot');
      if (sha(Buffer.from(`diff:${content}`)) !== layer.diffId) throw new AuraeError('FAILED_PRECONDITION', 'diffId mismatch');
      mkdirSync(snapshotFs(dir, id), { recursive: true });
      writeFileSync(path.join(snapshotFs(dir, id), 'content'), content);
      unpacked.push(content.toString());
      return { id, fs: snapshotFs(dir, id), created: true };
    },
    has,
    async list() {
      return readdirSync(path.join(dir, 'snapshots')).filter((n) => /^[0-9a-f]{64}$/.test(n));
    },
    async remove(id) {
      await fs.rm(path.join(dir, 'snapshots', id), { recursive: true, force: true });
      return true;
    },
    cleanLeftovers: async () => 0,
    lowerDirs: (layers) => lowerDirsFor(dir, layers),
  };
}

let dir: string;
let registry: FakeRegistry;
let images: ImagesCore;
let snapshots: ReturnType<typeof fakeSnapshots>;
const db = () => openDatabase(':memory:');
const config = { registries: { 'reg.test': { insecure: true, caFile: null, auth: null } } };

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'images-'));
  registry = new FakeRegistry();
  snapshots = fakeSnapshots(dir);
  images = createImages({ db: db(), dir, config, log: silentLogger, transport: registry.transport, snapshots, now: () => 1_700_000_000_000 });
});
afterEach(async () => {
  await images.close();
  rmSync(dir, { recursive: true, force: true });
});


describe('Images.pull', () => {
  it('pulls an image: blobs stored, snapshots made, record with config and layers, progress per layer', async () => {
    const img = registry.addImage(['latest'], ['layer-1', 'layer-2']);
    const progress: PullProgress[] = [];
    const record = await images.pull('reg.test/app', { onProgress: (p) => progress.push(p) });
    expect(record).toMatchObject({ name: 'reg.test/app', tags: ['latest'], digest: img.digest, config: { cmd: ['/bin/sh'], env: ['A=1'], user: '1000' }, size: 14, pulledAt: 1_700_000_000_000 });
    expect(record.layers.map((l) => l.digest)).toEqual(img.layers.map((l) => l.digest));
    for (const l of img.layers) {
      expect(progress.filter((p) => p.layer === l.digest).map((p) => p.state)).toEqual(expect.arrayContaining(['downloading', 'unpacking', 'done']));
    }
    expect(images.list()).toHaveLength(1);
    expect(images.lowerDirs(record)).toEqual([...record.layers].reverse().map((l) => snapshotFs(dir, snapshotId(l.diffId))));
    // A second pull finds everything in place.
    const again: PullProgress[] = [];
    await images.pull('reg.test/app:latest', { onProgress: (p) => again.push(p) });
    expect(again.map((p) => p.state)).toEqual(['exists', 'exists']);
    expect(registry.blobGets.get(img.layers[0]!.digest)).toBe(1);
  });

  it('picks linux/amd64 from an index and records the platform manifest digest', async () => {
    const arm = registry.addImage([], ['arm-layer'], 'arm64');
    const amd = registry.addImage([], ['amd-layer']);
    registry.addManifest(['multi'], MEDIA_TYPES.ociIndex, {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: [
        { mediaType: MEDIA_TYPES.ociManifest, digest: arm.digest, size: arm.size, platform: { os: 'linux', architecture: 'arm64' } },
        { mediaType: MEDIA_TYPES.ociManifest, digest: amd.digest, size: amd.size, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    });
    const record = await images.pull('reg.test/app:multi');
    expect(record.digest).toBe(amd.digest);
    expect(snapshots.unpacked).toEqual(['amd-layer']);
    expect(registry.blobGets.has(arm.layers[0]!.digest)).toBe(false);
  });

  it('refuses an image built for another architecture', async () => {
    registry.addImage(['arm'], ['x'], 'arm64');
    const err = await failure(images.pull('reg.test/app:arm'));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/built for linux\/arm64/);
  });

  it('records nothing when a layer fails to unpack (no half image), and a later pull of a good image works', async () => {
    snapshots = fakeSnapshots(dir, { failFor: 'evil' });
    images = createImages({ db: db(), dir, config, log: silentLogger, transport: registry.transport, snapshots });
    registry.addImage(['evil'], ['good', 'evil']);
    const err = await failure(images.pull('reg.test/app:evil'));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(images.list()).toEqual([]);
    registry.addImage(['ok'], ['good']);
    expect((await images.pull('reg.test/app:ok')).tags).toEqual(['ok']);
  });

  it('refuses a blob whose content does not match its digest: nothing recorded, nothing stored', async () => {
    const img = registry.addImage(['latest'], ['layer-1']);
    registry.blobs.set(img.layers[0]!.digest, Buffer.from('layer-X'));
    const err = await failure(images.pull('reg.test/app'));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(images.list()).toEqual([]);
    expect(readdirSync(path.join(dir, 'blobs/sha256'))).not.toContain(img.layers[0]!.digest.slice(7));
  });

  it('two concurrent pulls of images sharing a layer download it once', async () => {
    registry.addImage(['a'], ['shared', 'only-a']);
    registry.addImage(['b'], ['shared', 'only-b']);
    let open!: () => void;
    registry.gate = new Promise((r) => (open = r));
    const both = Promise.all([images.pull('reg.test/app:a'), images.pull('reg.test/app:b')]);
    setImmediate(() => open());
    await both;
    const shared = sha(Buffer.from('shared'));
    expect(registry.blobGets.get(shared)).toBe(1);
    // (One unpack per layer for racing pulls is snapshots.ts's promise, tested there.)
    expect(images.list()).toHaveLength(2);
  });

  it('NOT_FOUND for an unknown tag; INVALID_ARGUMENT for a bad reference', async () => {
    expect((await failure(images.pull('reg.test/nope'))).code).toBe('NOT_FOUND');
    expect((await failure(images.pull('reg.test/UPPER'))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('Images get / remove / retain / gc', () => {
  it('finds images by reference, digest and unique prefix', async () => {
    const img = registry.addImage(['latest', 'v1'], ['l1']);
    await images.pull('reg.test/app');
    await images.pull('reg.test/app:v1');
    expect(images.get('reg.test/app')?.tags.sort()).toEqual(['latest', 'v1']);
    expect(images.get(img.digest)?.digest).toBe(img.digest);
    expect(images.get(img.digest.slice(7, 19))?.digest).toBe(img.digest);
    expect(images.get(`reg.test/app@${img.digest}`)?.digest).toBe(img.digest);
    expect(images.get('reg.test/app:v2')).toBeUndefined();
    expect(images.get('reg.test/other')).toBeUndefined();
  });

  it('untags, then removes; refuses while retained unless forced; gc frees blobs and snapshots after release', async () => {
    const img = registry.addImage(['latest', 'v1'], ['l1', 'l2']);
    await images.pull('reg.test/app');
    await images.pull('reg.test/app:v1');
    images.retain(img.digest, 'pod/web/app');
    expect(await images.remove('reg.test/app:v1')).toEqual({ removed: ['reg.test/app:v1'] });
    const refused = await failure(images.remove('reg.test/app'));
    expect(refused.code).toBe('FAILED_PRECONDITION');
    expect(refused.message).toContain('pod/web/app');
    const forced = await images.remove('reg.test/app', { force: true });
    expect(forced.removed).toEqual(['reg.test/app:latest', `reg.test/app@${img.digest}`]);
    expect(images.list()).toEqual([]);
    // Still held: its data stays.
    expect(await snapshots.list()).toHaveLength(2);
    expect((await images.gc()).blobs).toBe(0);
    images.release('pod/web/app');
    const freed = await images.gc();
    expect(freed).toMatchObject({ blobs: 4, snapshots: 2 });
    expect(freed.bytes).toBeGreaterThan(0);
    expect(await snapshots.list()).toEqual([]);
    expect(readdirSync(path.join(dir, 'blobs/sha256'))).toEqual([]);
  });

  it('remove by digest removes every name; NOT_FOUND for an unknown image; retain of an unknown digest is NOT_FOUND', async () => {
    const img = registry.addImage(['latest'], ['l1']);
    await images.pull('reg.test/app');
    expect((await images.remove(img.digest)).removed).toEqual(['reg.test/app:latest', `reg.test/app@${img.digest}`]);
    expect((await failure(images.remove('reg.test/app'))).code).toBe('NOT_FOUND');
    expect(() => images.retain(`sha256:${'0'.repeat(64)}`, 'x')).toThrow(/not on this node/);
  });

  it('retains survive a restart (persisted holders)', async () => {
    const file = path.join(dir, 'state.db');
    const first = createImages({ db: openDatabase(file), dir, config, log: silentLogger, transport: registry.transport, snapshots });
    const img = registry.addImage(['latest'], ['l1']);
    await first.pull('reg.test/app');
    first.retain(img.digest, 'pod/a');
    const second = createImages({ db: openDatabase(file), dir, config, log: silentLogger, transport: registry.transport, snapshots });
    expect((await failure(second.remove('reg.test/app'))).code).toBe('FAILED_PRECONDITION');
    await first.close();
    await second.close();
  });
});

describe('gcPlan', () => {
  const d = (n: number) => `sha256:${String(n).padStart(64, '0')}`;
  const m = (n: number, layers: number[]) => ({ digest: d(n), configDigest: d(n + 100), config: {} as never, layers: layers.map((l) => ({ digest: d(l), size: 1, mediaType: LAYER_TYPE, diffId: d(l + 1000) })), size: 1 });
  it('keeps what referenced or pinned manifests use, and index blobs of image rows', () => {
    const plan = gcPlan({
      manifests: [m(1, [10, 11]), m(2, [11, 12]), m(3, [13])],
      referenced: { manifests: new Set([d(1)]), indexes: new Set([d(50)]) },
      blobs: [d(1), d(101), d(10), d(11), d(12), d(2), d(102), d(50), d(51), d(3), d(103), d(13)],
      snapshots: [10, 11, 12, 13].map((l) => d(l + 1000).slice(7)),
      pinned: new Set([d(3)]),
    });
    expect(plan.manifests).toEqual([d(2)]);
    expect(plan.blobs).toEqual([d(12), d(2), d(102), d(51)]);
    expect(plan.snapshots).toEqual([d(1012).slice(7)]);
  });
});
