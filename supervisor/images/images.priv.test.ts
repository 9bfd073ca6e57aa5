// Pulls from Debian's docker-registry on 127.0.0.1 (started here): plain HTTP, Basic auth over TLS with the CA
// file, Bearer tokens from the fixture's ES256 token server; OCI and Docker schema 2 manifests, a multi-platform
// index, whiteouts unpacked for overlayfs, a hostile layer refused, a corrupted blob refused, remove and GC.
// Needs root (layers keep ownership, whiteouts are device nodes), docker-registry, skopeo, umoci, htpasswd.
import { lstatSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../log';
import { openDatabase } from '../store';
import { type HttpTransport, createUndiciTransport } from './http';
import { type ImagesCore, createImages } from './images';
import { TokenCache } from './auth';
import { parseReference } from './reference';
import { RegistryClient } from './registry-client';
import { type TestImages, type TestRegistry, buildTestImages, startTestRegistry } from './test-registry';
import type { ImagesConfig, PullProgress } from './types';
import { failure } from './testing';

let work: string;
let images: TestImages;
const registries: TestRegistry[] = [];
const cores: ImagesCore[] = [];

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'images-priv-'));
  images = await buildTestImages(path.join(work, 'test-images'));
}, 120_000);

afterAll(async () => {
  for (const c of cores) await c.close();
  for (const r of registries) await r.stop();
  rmSync(work, { recursive: true, force: true });
});

async function registry(opts: Parameters<typeof startTestRegistry>[0]): Promise<TestRegistry> {
  const r = await startTestRegistry(opts);
  registries.push(r);
  return r;
}

let n = 0;
function core(config: ImagesConfig, transport?: HttpTransport): ImagesCore {
  const c = createImages({ db: openDatabase(':memory:'), dir: path.join(work, `images-${++n}`), config, log: silentLogger, ...(transport ? { transport } : {}) });
  cores.push(c);
  return c;
}


describe('plain HTTP registry (marked insecure)', () => {
  let reg: TestRegistry;
  let core1: ImagesCore;
  beforeAll(async () => {
    reg = await registry({ auth: 'none' });
    await reg.push(images.layout, images.tags.base, 'busybox:latest');
    await reg.push(images.layout, images.tags.base, 'busybox:docker', { format: 'v2s2' });
    await reg.push(images.layout, images.tags.whiteout, 'whiteout:latest');
    await reg.push(images.layout, images.tags.nonroot, 'nonroot:latest');
    await reg.push(images.layout, images.tags.multi, 'multi:latest');
    await reg.push(images.layout, images.tags.evil, 'evil:latest');
    core1 = core({ registries: { [reg.host]: { insecure: true, caFile: null, auth: null } } });
  }, 60_000);

  it('pulls an OCI image into snapshots that hold busybox, with progress per layer', async () => {
    const progress: PullProgress[] = [];
    const image = await core1.pull(`${reg.host}/busybox`, { onProgress: (p) => progress.push(p) });
    expect(image).toMatchObject({ name: `${reg.host}/busybox`, tags: ['latest'], digest: images.digests.base, config: { cmd: ['/bin/sh'], labels: { 'org.aurae.test': 'base' } } });
    expect(image.layers).toHaveLength(1);
    expect(progress.map((p) => p.state)).toEqual(expect.arrayContaining(['downloading', 'unpacking', 'done']));
    const [top] = core1.lowerDirs(image);
    expect(lstatSync(path.join(top!, 'bin/busybox')).isFile()).toBe(true);
    expect(lstatSync(path.join(top!, 'bin/sh')).isSymbolicLink()).toBe(true);
    expect(lstatSync(path.join(top!, 'home/app')).uid).toBe(1000);
    expect(readFileSync(path.join(top!, 'etc/motd'), 'utf8')).toBe('aurae test image\n');
  });

  it('pulls the same image as Docker schema 2: another manifest digest, the same snapshot', async () => {
    const oci = core1.get(`${reg.host}/busybox`)!;
    const docker = await core1.pull(`${reg.host}/busybox:docker`);
    expect(docker.digest).not.toBe(oci.digest);
    expect(docker.layers[0]!.mediaType).toBe('application/vnd.docker.image.rootfs.diff.tar.gzip');
    expect(core1.lowerDirs(docker)).toEqual(core1.lowerDirs(oci));
  });

  it('unpacks whiteouts and opaque directories in overlay format', async () => {
    const image = await core1.pull(`${reg.host}/whiteout`);
    expect(image.layers).toHaveLength(3);
    const [opaque, whiteout] = core1.lowerDirs(image);
    const wh = lstatSync(path.join(whiteout!, 'etc/motd'));
    expect(wh.isCharacterDevice()).toBe(true);
    expect(wh.rdev).toBe(0);
    expect(readFileSync(path.join(opaque!, 'data/c'), 'utf8')).toBe('c\n');
  });

  it('keeps the non-root USER in the config', async () => {
    const image = await core1.pull(`${reg.host}/nonroot:latest`);
    expect(image.config).toMatchObject({ user: '1000:1000', workingDir: '/home/app' });
  });

  it('picks linux/amd64 from a multi-platform index', async () => {
    const image = await core1.pull(`${reg.host}/multi`);
    expect(image.digest).toBe(images.digests.base);
    expect(image.digest).not.toBe(images.digests.arm64);
  });

  it('refuses a layer with ../../etc/passwd: INVALID_ARGUMENT, no image recorded', async () => {
    const err = await failure(core1.pull(`${reg.host}/evil`));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('../../etc/passwd');
    expect(core1.get(`${reg.host}/evil`)).toBeUndefined();
  });

  it('says NOT_FOUND for an unknown tag and UNAVAILABLE for plain HTTP when not marked insecure', async () => {
    expect((await failure(core1.pull(`${reg.host}/busybox:nope`))).code).toBe('NOT_FOUND');
    const strict = core({ registries: {} });
    const err = await failure(strict.pull(`${reg.host}/busybox`));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(/insecure/);
  });

  it('removes images and GC frees what nothing references, respecting holders', async () => {
    const base = core1.get(`${reg.host}/busybox`)!;
    core1.retain(base.digest, 'pod/test/ctr');
    expect((await failure(core1.remove(base.digest))).code).toBe('FAILED_PRECONDITION');
    for (const ref of ['whiteout', 'nonroot', 'busybox:docker', 'multi']) await core1.remove(`${reg.host}/${ref}`);
    // busybox:latest remains (and is held): its snapshot stays; the whiteout image's own layers are gone.
    const left = core1.lowerDirs(base);
    expect(lstatSync(left[0]!).isDirectory()).toBe(true);
    await core1.remove(`${reg.host}/busybox`, { force: true });
    expect(lstatSync(left[0]!).isDirectory()).toBe(true);
    core1.release('pod/test/ctr');
    const freed = await core1.gc();
    expect(freed.snapshots).toBe(1);
    expect(freed.bytes).toBeGreaterThan(1_000_000);
    expect(() => lstatSync(left[0]!)).toThrow();
    expect(core1.list()).toEqual([]);
  });
});

describe('a download cut mid-layer', () => {
  it('resumes with a Range request against the real registry and verifies the whole blob', async () => {
    const reg = await registry({ auth: 'none' });
    await reg.push(images.layout, images.tags.base, 'cut:latest');
    const real = createUndiciTransport();
    const seen: { url: string; range: string | undefined; status: number }[] = [];
    let cuts = 0;
    const cutting: HttpTransport = async (req) => {
      const res = await real(req);
      seen.push({ url: req.url, range: req.headers.range, status: res.status });
      if (!req.url.includes('/blobs/') || res.status !== 200 || cuts > 0) return res;
      const length = Number(res.headers['content-length']);
      if (length < 100_000) return res;
      cuts++;
      const body = res.body;
      // Pass 64 KiB, then fail like a dropped connection.
      return {
        ...res,
        body: (async function* () {
          let sent = 0;
          try {
            for await (const chunk of body) {
              const room = 65_536 - sent;
              if (chunk.length >= room) {
                yield chunk.subarray(0, room);
                throw new Error('socket hang up (cut by the test)');
              }
              sent += chunk.length;
              yield chunk;
            }
          } finally {
            await res.dump().catch(() => undefined);
          }
        })(),
      };
    };
    const c = core({ registries: { [reg.host]: { insecure: true, caFile: null, auth: null } } }, cutting);
    const image = await c.pull(`${reg.host}/cut`);
    await real.close();
    expect(cuts).toBe(1);
    const layerRequests = seen.filter((r) => r.url.endsWith(image.layers[0]!.digest));
    expect(layerRequests.map((r) => [r.range, r.status])).toEqual([
      [undefined, 200],
      ['bytes=65536-', 206],
    ]);
    expect(image.digest).toBe(images.digests.base);
  });
});

describe('a resume from the end of a blob', () => {
  // The blob store no longer asks for it (a complete partial is verified locally), but a registry whose blob is
  // shorter than the manifest says still answers 416: the client refetches from the start.
  it('gets a 416 from the real registry and refetches the whole blob', async () => {
    const reg = await registry({ auth: 'none' });
    await reg.push(images.layout, images.tags.base, 'ranged:latest');
    const real = createUndiciTransport();
    const statuses: number[] = [];
    const transport: HttpTransport = async (req) => {
      const res = await real(req);
      statuses.push(res.status);
      return res;
    };
    try {
      const client = new RegistryClient({ ref: parseReference(`${reg.host}/ranged`), config: { registries: { [reg.host]: { insecure: true, caFile: null, auth: null } } }, transport, tokens: new TokenCache() });
      const manifest = (await client.getManifest('latest')).parsed;
      if (manifest.kind !== 'manifest') throw new Error(`expected an image manifest, got ${manifest.kind}`);
      const blob = await client.getBlob(manifest.config.digest, manifest.config.size);
      const chunks: Buffer[] = [];
      for await (const c of blob.body) chunks.push(Buffer.from(c));
      expect(blob.start).toBe(0);
      expect(Buffer.concat(chunks).length).toBe(manifest.config.size);
      expect(statuses).toEqual([200, 416, 200]);
    } finally {
      await real.close();
    }
  });
});

describe('a registry serving a corrupted blob', () => {
  it('refuses it: FAILED_PRECONDITION, nothing stored, no image', async () => {
    const reg = await registry({ auth: 'none' });
    await reg.push(images.layout, images.tags.nonroot, 'app:latest');
    const c = core({ registries: { [reg.host]: { insecure: true, caFile: null, auth: null } } });
    const probe = await c.pull(`${reg.host}/app`);
    await c.remove(`${reg.host}/app`);
    await reg.corruptBlob(probe.layers[0]!.digest);
    const err = await failure(c.pull(`${reg.host}/app`));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/digest is sha256:[0-9a-f]{64}.*nothing stored/);
    expect(c.list()).toEqual([]);
  });
});

describe('Basic auth over TLS', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await registry({ auth: 'basic', tls: true });
    await reg.push(images.layout, images.tags.base, 'private/busybox:1');
  }, 60_000);

  it('pulls with the CA file and the config credentials', async () => {
    const c = core({ registries: { [reg.host]: { insecure: false, caFile: reg.caFile, auth: reg.credentials } } });
    expect((await c.pull(`${reg.host}/private/busybox:1`)).digest).toBe(images.digests.base);
  });

  it('pulls with credentials given with the request', async () => {
    const c = core({ registries: { [reg.host]: { insecure: false, caFile: reg.caFile, auth: null } } });
    expect((await c.pull(`${reg.host}/private/busybox:1`, { auth: reg.credentials! })).digest).toBe(images.digests.base);
  });

  it('says UNAUTHENTICATED for a wrong password or none, never showing it', async () => {
    const c = core({ registries: { [reg.host]: { insecure: false, caFile: reg.caFile, auth: { username: 'tester', password: 'wrong-password-xyz' } } } });
    const err = await failure(c.pull(`${reg.host}/private/busybox:1`));
    expect(err.code).toBe('UNAUTHENTICATED');
    expect(err.message).toMatch(/credentials were rejected/);
    expect(err.message).not.toContain('wrong-password-xyz');
    const anon = core({ registries: { [reg.host]: { insecure: false, caFile: reg.caFile, auth: null } } });
    expect((await failure(anon.pull(`${reg.host}/private/busybox:1`))).message).toMatch(/requires a username and password/);
  });

  it('says how to trust the registry when its CA is unknown', async () => {
    const c = core({ registries: { [reg.host]: { insecure: false, caFile: null, auth: reg.credentials } } });
    const err = await failure(c.pull(`${reg.host}/private/busybox:1`));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(/caFile/);
  });
});

describe('Bearer tokens', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await registry({ auth: 'bearer' });
    await reg.push(images.layout, images.tags.multi, 'team/multi:latest');
  }, 60_000);

  it('gets a token with credentials, pulls amd64 from the index, and reuses the token for the next pull', async () => {
    const c = core({ registries: { [reg.host]: { insecure: true, caFile: null, auth: reg.credentials } } });
    const before = reg.tokensIssued();
    expect((await c.pull(`${reg.host}/team/multi`)).digest).toBe(images.digests.base);
    const afterFirst = reg.tokensIssued();
    expect(afterFirst - before).toBe(1);
    await c.pull(`${reg.host}/team/multi`);
    expect(reg.tokensIssued()).toBe(afterFirst);
  });

  it('says UNAUTHENTICATED for wrong credentials and for anonymous access the token server does not grant', async () => {
    const wrong = core({ registries: { [reg.host]: { insecure: true, caFile: null, auth: { username: 'tester', password: 'nope' } } } });
    const err = await failure(wrong.pull(`${reg.host}/team/multi`));
    expect(err.code).toBe('UNAUTHENTICATED');
    expect(err.message).toMatch(/rejected the credentials/);
    const anon = core({ registries: { [reg.host]: { insecure: true, caFile: null, auth: null } } });
    const anonErr = await failure(anon.pull(`${reg.host}/team/multi`));
    expect(anonErr.code).toBe('UNAUTHENTICATED');
    expect(anonErr.message).toMatch(/requires authentication and no credentials were given/);
  });

  it('pulls anonymously from a token server that grants anonymous pulls', async () => {
    const open = await registry({ auth: 'bearer', anonymousPull: true });
    await open.push(images.layout, images.tags.base, 'pub/busybox:latest');
    const c = core({ registries: { [open.host]: { insecure: true, caFile: null, auth: null } } });
    expect((await c.pull(`${open.host}/pub/busybox`)).digest).toBe(images.digests.base);
  });
});
