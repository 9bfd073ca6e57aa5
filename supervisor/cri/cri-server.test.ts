// The CRI server on a Unix socket in a temp dir, driven by grpc-js clients built from the generated runtime.v1
// definitions (as kubelet and crictl connect: plain gRPC on the socket), over an in-memory Images.
import { type ServiceError, status } from '@grpc/grpc-js';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CgroupDriver } from '../gen/runtime/v1/api';
import { silentLogger } from '../log';
import { type RunningCriServer, startCriServer } from './server';
import { type CriClients, type FakeImages, call, criClients, fakeImages, hex, record } from './testing';

let dir: string;
let server: RunningCriServer;
let clients: CriClients;
let images: FakeImages;
let ready = true;

const CONFIG = `sha256:${hex('a')}`;
const busybox = record({ name: 'docker.io/library/busybox', tags: ['1.36'], digest: `sha256:${hex('1')}`, configDigest: CONFIG, size: 4096, config: { ...record({ name: 'x', digest: 'x', configDigest: 'x' }).config, user: 'nobody' } });
const app = record({ name: '127.0.0.1:5000/app', tags: ['v1'], digest: `sha256:${hex('2')}`, configDigest: `sha256:${hex('b')}`, size: 8192 });

async function refusal(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'cri-unit-'));
  const imagesDir = path.join(dir, 'state', 'images');
  mkdirSync(path.join(imagesDir, 'blobs'), { recursive: true });
  writeFileSync(path.join(imagesDir, 'blobs', 'one'), Buffer.alloc(10_000, 1));
  images = fakeImages({ 'busybox:1.36': busybox, '127.0.0.1:5000/app:v1': app });
  server = await startCriServer({
    socket: path.join(dir, 'run', 'cri.sock'),
    images,
    imagesDir,
    version: '0.1.0',
    runtimeReadiness: () => (ready ? { ready: true } : { ready: false, reason: 'NoCgroup2', message: 'no cgroup v2 hierarchy at /sys/fs/cgroup' }),
    log: silentLogger,
    usageCacheMs: 0,
  });
  clients = criClients(server.socket);
});

afterAll(async () => {
  clients?.close();
  await server?.shutdown(1000);
  rmSync(dir, { recursive: true, force: true });
});

describe('the socket', () => {
  it('is 0600 in a directory created 0700', () => {
    expect(statSync(server.socket).isSocket()).toBe(true);
    expect(statSync(server.socket).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(server.socket)).mode & 0o777).toBe(0o700);
  });

  it('a second server on the same socket is refused, naming cri.socket', async () => {
    const err = await startCriServer({ socket: server.socket, images, imagesDir: dir, version: '0', runtimeReadiness: () => ({ ready: true }), log: silentLogger }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/^cri\.socket .*cri\.sock is in use/);
  });
});

describe('RuntimeService', () => {
  it('Version: aurae, the package version, API v1', async () => {
    const { runtime } = clients;
    expect(await call(runtime, runtime.version, { version: 'v1' })).toEqual({ version: '0.1.0', runtimeName: 'aurae', runtimeVersion: '0.1.0', runtimeApiVersion: 'v1' });
  });

  it('Status: RuntimeReady from the pods runtime, NetworkReady false with a reason', async () => {
    const { runtime } = clients;
    const res = await call(runtime, runtime.status, { verbose: true });
    expect(res.status?.conditions).toEqual([
      { type: 'RuntimeReady', status: true, reason: '', message: '' },
      { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady', message: expect.stringMatching(/not served over the CRI yet/) },
    ]);
    expect(JSON.parse(res.info.config!)).toMatchObject({ runtimeName: 'aurae', cgroupDriver: 'cgroupfs' });
    expect(res.runtimeHandlers).toEqual([{ name: '', features: { recursiveReadOnlyMounts: false, userNamespaces: false } }]);
    ready = false;
    try {
      const down = await call(runtime, runtime.status, { verbose: false });
      expect(down.status?.conditions[0]).toEqual({ type: 'RuntimeReady', status: false, reason: 'NoCgroup2', message: 'no cgroup v2 hierarchy at /sys/fs/cgroup' });
      expect(down.info).toEqual({});
    } finally {
      ready = true;
    }
  });

  it('RuntimeConfig: the cgroupfs driver', async () => {
    const { runtime } = clients;
    expect(await call(runtime, runtime.runtimeConfig, {})).toEqual({ linux: { cgroupDriver: CgroupDriver.CGROUPFS } });
  });

  it('every other method answers UNIMPLEMENTED naming itself, unary and streaming', async () => {
    const { runtime } = clients;
    const run = await refusal(call(runtime, runtime.runPodSandbox, { runtimeHandler: '' }));
    expect(run.code).toBe(status.UNIMPLEMENTED);
    expect(run.details).toMatch(/^runtime\.v1\.RuntimeService\/RunPodSandbox is not implemented by auraed yet: /);
    const stop = await refusal(call(runtime, runtime.stopContainer, { containerId: 'x', timeout: 1n }));
    expect(stop.details).toMatch(/^runtime\.v1\.RuntimeService\/StopContainer is not implemented/);
    const events = runtime.getContainerEvents({});
    const streamErr = await new Promise<ServiceError>((resolve) => {
      events.on('error', resolve);
      events.on('data', () => undefined);
    });
    expect(streamErr.code).toBe(status.UNIMPLEMENTED);
    expect(streamErr.details).toMatch(/^runtime\.v1\.RuntimeService\/GetContainerEvents is not implemented/);
    // The server still answers afterwards.
    expect((await call(runtime, runtime.version, { version: '' })).runtimeName).toBe('aurae');
  });
});

describe('ImageService over Images', () => {
  it('PullImage: the reference and credentials reach the core; image_ref is the config digest', async () => {
    const { images: client } = clients;
    const res = await call(client, client.pullImage, {
      image: { image: 'busybox:1.36', annotations: {}, userSpecifiedImage: '', runtimeHandler: '' },
      auth: { username: '', password: '', auth: Buffer.from('tester:pw').toString('base64'), serverAddress: '', identityToken: '', registryToken: '' },
    });
    expect(res).toEqual({ imageRef: CONFIG });
    expect(images.pulls.at(-1)).toMatchObject({ reference: 'busybox:1.36', opts: { auth: { username: 'tester', password: 'pw' } } });
    await call(client, client.pullImage, { image: { image: '127.0.0.1:5000/app:v1', annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } });
    expect(images.pulls.at(-1)?.opts?.auth).toBeUndefined();
  });

  it('PullImage: bad input names the field; the core’s errors keep their code', async () => {
    const { images: client } = clients;
    const empty = await refusal(call(client, client.pullImage, {}));
    expect([empty.code, empty.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^image\.image: required/)]);
    const bad = await refusal(call(client, client.pullImage, { image: { image: 'UPPER/Case', annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } }));
    expect(bad.details).toMatch(/^image\.image: "UPPER\/Case" is not a valid image reference/);
    const missing = await refusal(call(client, client.pullImage, { image: { image: 'nginx:1.25', annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } }));
    expect(missing.code).toBe(status.NOT_FOUND);
  });

  it('ListImages: every image, or those an image spec names', async () => {
    const { images: client } = clients;
    const all = await call(client, client.listImages, {});
    expect(all.images.map((i) => [i.id, i.repoTags, i.username, i.size])).toEqual([
      [CONFIG, ['docker.io/library/busybox:1.36'], 'nobody', 4096n],
      [`sha256:${hex('b')}`, ['127.0.0.1:5000/app:v1'], '', 8192n],
    ]);
    const one = await call(client, client.listImages, { filter: { image: { image: 'busybox:1.36', annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } } });
    expect(one.images.map((i) => i.id)).toEqual([CONFIG]);
    const none = await call(client, client.listImages, { filter: { image: { image: 'nginx', annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } } });
    expect(none.images).toEqual([]);
  });

  it('ImageStatus: by id prefix, with verbose info; an unknown image is an empty answer', async () => {
    const { images: client } = clients;
    const res = await call(client, client.imageStatus, { image: { image: hex('a').slice(0, 13), annotations: {}, userSpecifiedImage: '', runtimeHandler: '' }, verbose: true });
    expect(res.image?.repoDigests).toEqual([`docker.io/library/busybox@sha256:${hex('1')}`]);
    expect(JSON.parse(res.info.info!)).toMatchObject({ id: CONFIG, manifests: [{ name: 'docker.io/library/busybox', tags: ['1.36'] }], config: { user: 'nobody' } });
    const unknown = await call(client, client.imageStatus, { image: { image: 'nginx:1.25', annotations: {}, userSpecifiedImage: '', runtimeHandler: '' }, verbose: false });
    expect(unknown).toEqual({ info: {} });
  });

  it('RemoveImage: removes every name; unknown is OK (idempotent); in use is FAILED_PRECONDITION', async () => {
    const { images: client } = clients;
    images.inUse.add(app.digest);
    const busy = await refusal(call(client, client.removeImage, { image: { image: `sha256:${hex('b')}`, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } }));
    expect([busy.code, busy.details]).toEqual([status.FAILED_PRECONDITION, expect.stringMatching(/in use by pod:web\/app/)]);
    images.inUse.clear();
    await call(client, client.removeImage, { image: { image: `sha256:${hex('b')}`, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } });
    await call(client, client.removeImage, { image: { image: `sha256:${hex('b')}`, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } });
    await call(client, client.removeImage, { image: { image: 'never-pulled:1', annotations: {}, userSpecifiedImage: '', runtimeHandler: '' } });
    expect(images.records.map((r) => r.configDigest)).toEqual([CONFIG]);
  });

  it('ImageFsInfo: the images directory, bytes and inodes used, timestamp in ns', async () => {
    const { images: client } = clients;
    const before = BigInt(Date.now()) * 1_000_000n;
    const res = await call(client, client.imageFsInfo, {});
    expect(res.containerFilesystems).toEqual([]);
    const [fs] = res.imageFilesystems;
    expect(fs?.fsId?.mountpoint).toBe(path.join(dir, 'state', 'images'));
    expect(fs!.usedBytes!.value).toBeGreaterThanOrEqual(10_000n);
    expect(fs!.inodesUsed!.value).toBe(3n); // images/, blobs/, blobs/one
    expect(fs!.timestamp).toBeGreaterThanOrEqual(before);
  });
});
