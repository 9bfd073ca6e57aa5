// The CRI ImageService end to end: a grpc-js client (built from the generated runtime.v1 definitions, as kubelet
// and crictl connect) → the CRI socket → the real images core → Debian's docker-registry on 127.0.0.1, plain and
// with Basic auth over TLS. Needs root (layers keep ownership), docker-registry, skopeo, umoci, htpasswd.
import { type ServiceError, status } from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthConfig, ImageSpec } from '../gen/runtime/v1/api';
import { type ImagesCore, createImages } from '../images';
import { type TestImages, type TestRegistry, buildTestImages, startTestRegistry } from '../images/test-registry';
import { silentLogger } from '../log';
import { openDatabase } from '../store';
import { type RunningCriServer, startCriServer } from './server';
import { type CriClients, call, criClients } from './testing';

let work: string;
let testImages: TestImages;
let plain: TestRegistry;
let tls: TestRegistry;
let core: ImagesCore;
let server: RunningCriServer;
let clients: CriClients;

const spec = (image: string): ImageSpec => ({ image, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' });
const noAuth: AuthConfig = { username: '', password: '', auth: '', serverAddress: '', identityToken: '', registryToken: '' };

async function refusal(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'cri-priv-'));
  testImages = await buildTestImages(path.join(work, 'test-images'));
  plain = await startTestRegistry({ auth: 'none' });
  await plain.push(testImages.layout, testImages.tags.base, 'busybox:latest');
  await plain.push(testImages.layout, testImages.tags.nonroot, 'nonroot:latest');
  tls = await startTestRegistry({ auth: 'basic', tls: true });
  await tls.push(testImages.layout, testImages.tags.base, 'private/busybox:1');
  const imagesDir = path.join(work, 'state', 'images');
  core = createImages({
    db: openDatabase(':memory:'),
    dir: imagesDir,
    // No credentials in the node config: they come with each PullImage.
    config: { registries: { [plain.host]: { insecure: true, caFile: null, auth: null }, [tls.host]: { insecure: false, caFile: tls.caFile, auth: null } } },
    log: silentLogger,
  });
  server = await startCriServer({ socket: path.join(work, 'run', 'cri.sock'), images: core, imagesDir, version: '0.1.0', runtimeReadiness: () => ({ ready: true }), log: silentLogger, usageCacheMs: 0 });
  clients = criClients(server.socket);
}, 180_000);

afterAll(async () => {
  clients?.close();
  await server?.shutdown(1000);
  await core?.close();
  await plain?.stop();
  await tls?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('CRI ImageService against a registry', () => {
  let busyboxId: string;

  it('PullImage answers the config digest, ListImages names the image as containerd does', async () => {
    const { images } = clients;
    const fsBefore = (await call(images, images.imageFsInfo, {})).imageFilesystems[0]!;
    const pulled = await call(images, images.pullImage, { image: spec(`${plain.host}/busybox`), auth: noAuth });
    expect(pulled.imageRef).toMatch(/^sha256:[0-9a-f]{64}$/);
    busyboxId = pulled.imageRef;
    const list = await call(images, images.listImages, {});
    expect(list.images).toEqual([
      {
        id: busyboxId,
        repoTags: [`${plain.host}/busybox:latest`],
        repoDigests: [`${plain.host}/busybox@${testImages.digests.base}`],
        size: expect.any(BigInt),
        username: '',
        spec: spec(busyboxId),
        pinned: false,
      },
    ]);
    expect(list.images[0]!.size).toBeGreaterThan(0n);
    const fsAfter = (await call(images, images.imageFsInfo, {})).imageFilesystems[0]!;
    expect(fsAfter.usedBytes!.value).toBeGreaterThan(fsBefore.usedBytes!.value);
    expect(fsAfter.inodesUsed!.value).toBeGreaterThan(fsBefore.inodesUsed!.value);
  });

  it('ImageStatus by reference, id and id prefix; verbose has the config; the non-root image has uid 1000', async () => {
    const { images } = clients;
    for (const name of [`${plain.host}/busybox:latest`, busyboxId, busyboxId.slice(7, 20)]) {
      expect((await call(images, images.imageStatus, { image: spec(name), verbose: false })).image?.id).toBe(busyboxId);
    }
    const verbose = await call(images, images.imageStatus, { image: spec(busyboxId), verbose: true });
    expect(JSON.parse(verbose.info.info!)).toMatchObject({ id: busyboxId, config: { cmd: ['/bin/sh'] } });
    const nonroot = await call(images, images.pullImage, { image: spec(`${plain.host}/nonroot:latest`) });
    const status1000 = await call(images, images.imageStatus, { image: spec(nonroot.imageRef), verbose: false });
    expect(status1000.image).toMatchObject({ uid: { value: 1000n }, username: '' });
    expect(await call(images, images.imageStatus, { image: spec(`${plain.host}/absent:1`), verbose: false })).toEqual({ info: {} });
  });

  it('PullImage with credentials: AuthConfig.auth (base64) and username/password; none or another server is UNAUTHENTICATED', async () => {
    const { images } = clients;
    const ref = spec(`${tls.host}/private/busybox:1`);
    const { username, password } = tls.credentials!;
    const anonymous = await refusal(call(images, images.pullImage, { image: ref }));
    expect(anonymous.code).toBe(status.UNAUTHENTICATED);
    const elsewhere = await refusal(call(images, images.pullImage, { image: ref, auth: { ...noAuth, username, password, serverAddress: 'https://registry.example.com' } }));
    expect(elsewhere.code).toBe(status.UNAUTHENTICATED);
    const wrong = await refusal(call(images, images.pullImage, { image: ref, auth: { ...noAuth, username, password: 'wrong-password-xyz' } }));
    expect(wrong.code).toBe(status.UNAUTHENTICATED);
    expect(wrong.details).not.toContain('wrong-password-xyz');
    const viaAuth = await call(images, images.pullImage, { image: ref, auth: { ...noAuth, auth: Buffer.from(`${username}:${password}`).toString('base64'), serverAddress: `https://${tls.host}` } });
    // The same image config as the plain registry's busybox: one CRI image, named by both.
    expect(viaAuth.imageRef).toBe(busyboxId);
    expect((await call(images, images.pullImage, { image: ref, auth: { ...noAuth, username, password } })).imageRef).toBe(busyboxId);
    const status2 = await call(images, images.imageStatus, { image: spec(busyboxId), verbose: false });
    // Both names, in no particular order (the registries' ports are random).
    expect([...(status2.image?.repoTags ?? [])].sort()).toEqual([`${plain.host}/busybox:latest`, `${tls.host}/private/busybox:1`].sort());
  });

  it('RemoveImage by id removes every name and its data; removing it again is OK', async () => {
    const { images } = clients;
    const fsBefore = (await call(images, images.imageFsInfo, {})).imageFilesystems[0]!;
    await call(images, images.removeImage, { image: spec(busyboxId) });
    expect((await call(images, images.imageStatus, { image: spec(busyboxId), verbose: false })).image).toBeUndefined();
    await call(images, images.removeImage, { image: spec(busyboxId) });
    await call(images, images.removeImage, { image: spec(`${plain.host}/busybox:latest`) });
    const remaining = (await call(images, images.listImages, {})).images.map((i) => i.repoTags);
    expect(remaining).toEqual([[`${plain.host}/nonroot:latest`]]);
    // nonroot shares busybox's layer, so the blobs stay; the manifests and configs of busybox go.
    const fsAfter = (await call(images, images.imageFsInfo, {})).imageFilesystems[0]!;
    expect(fsAfter.inodesUsed!.value).toBeLessThan(fsBefore.inodesUsed!.value);
  });
});
