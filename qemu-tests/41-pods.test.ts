// 41: pods end to end over the real API. The host runs a registry (supervisor/images/test-registry.ts: Debian's
// docker-registry on 127.0.0.1 with a busybox image built offline); the guest reaches it as 10.0.2.100:5000 through
// QEMU's guestfwd and its node config marks that registry insecure (plain HTTP). Then, with the SDK: a pod is run
// (its image pulled, progress reported), its container's output (env and hostname) is in the logs and its exit
// code in the status, and its life in the events (image_pulled, container_created, container_started with the
// container's pid, container_exited with the code); a long-running pod is stopped with grace (SIGTERM honoured;
// ignored → killed after the grace; an image's StopSignal, SIGQUIT, sent instead of SIGTERM); an OOM kill inside a container is reported; a pod survives an auraed SIGKILL (restarted by the reconcile, in a sandbox that was kept); removing pods
// frees their cells, unmounts their root filesystems and releases the image; a registry serving a layer whose
// digest is wrong (its copy flipped on the host) is refused with nothing stored; a pod whose image has a layer
// writing ../../etc/passwd is refused, nothing written anywhere. A second node, with a state disk, pulls through a
// loopback proxy that holds the busybox layer half-way (fixture/registry-proxy.ts), loses its power (QEMU killed)
// mid-pull, boots again with no half image listed, and pulls again fetching only the held layer's missing bytes
// (Range from the partial on the state disk); then it reboots with a pod running and gets it back.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuraeClient, ObservedEvent, PodInfo } from '../aer/sdk';
import { buildTestImages, readLayoutImage, startTestRegistry, testImagesDir, type TestImages, type TestRegistry } from '../supervisor/images/test-registry';
import { type BootOptions, bootNode, createStateDisk, eventually, type BootedNode } from './fixture/node';
import { type RegistryProxy, startRegistryProxy } from './fixture/registry-proxy';
import { GUEST_REGISTRY, GUEST_REGISTRY_HOST, withGuestRegistry } from '../image/lib/guest-registry';

const REGISTRY = GUEST_REGISTRY_HOST;
const IMAGE = `${REGISTRY}/busybox:latest`;
/** StopSignal SIGQUIT; its entrypoint ignores SIGTERM and exits 0 on SIGQUIT (test-registry.ts). */
const STOPSIGNAL_IMAGE = `${REGISTRY}/stopsignal:latest`;
/** The fixture's whiteout image (busybox + two small layers); in 41's first registry its top layer is corrupt. */
const CORRUPT_IMAGE = `${REGISTRY}/corrupt:latest`;
/** busybox + a layer whose one entry is ../../etc/passwd. */
const EVIL_IMAGE = `${REGISTRY}/evil:latest`;
/** The fixture's whiteout image, pulled through the proxy in the power-cut test. */
const WHITEOUT_IMAGE = `${REGISTRY}/whiteout:latest`;
/** Where auraed keeps images: <state.dir>/images (blobs/sha256, ingest, snapshots). */
const IMAGES_DIR = '/var/lib/aurae/images';
const hexOf = (digest: string) => digest.replace(/^sha256:/, '');

/** The host registry with the busybox test image as busybox:latest (and `more` images of the fixture, tag → name). */
async function registryWithBusybox(more: Partial<Record<keyof TestImages['tags'], string>> = {}): Promise<TestRegistry> {
  const images = await buildTestImages(testImagesDir());
  const registry = await startTestRegistry();
  await registry.push(images.layout, images.tags.base, 'busybox:latest');
  await registry.push(images.layout, images.tags.stopsignal, 'stopsignal:latest');
  for (const [tag, dest] of Object.entries(more)) await registry.push(images.layout, tag, dest);
  return registry;
}

/** Boot options for a node that pulls from host port `hostPort` as 10.0.2.100:5000 (plain HTTP, marked insecure). */
function reachingRegistry(hostPort: number): Pick<BootOptions, 'guestForwards' | 'nodeConfig'> {
  return {
    guestForwards: [{ guestAddress: GUEST_REGISTRY.address, guestPort: GUEST_REGISTRY.port, hostPort }],
    nodeConfig: withGuestRegistry,
  };
}

/** The pod's events still held by auraed (its cell's: a pod is a cell), oldest first. */
async function podEvents(client: AuraeClient, pod: string): Promise<ObservedEvent[]> {
  const events: ObservedEvent[] = [];
  for await (const e of client.observe.events({ cell: pod })) events.push(e);
  return events;
}

async function podLogs(client: AuraeClient, pod: string, container: string): Promise<string> {
  const lines: string[] = [];
  for await (const entry of client.observe.logs(pod, container, { tail: 1000 })) lines.push(entry.line);
  return lines.join('\n');
}

describe('41 pods', () => {
  let registry: TestRegistry | null = null;
  let node: BootedNode | null = null;
  let sdk: AuraeClient | null = null;
  const booted = () => {
    if (!node) throw new Error('the node did not boot (see the beforeAll error)');
    return node;
  };
  const client = () => (sdk ??= booted().client());
  const image = IMAGE;

  let corrupt: Awaited<ReturnType<typeof readLayoutImage>> | null = null;
  let evil: Awaited<ReturnType<typeof readLayoutImage>> | null = null;

  beforeAll(async () => {
    const images = await buildTestImages(testImagesDir());
    registry = await registryWithBusybox({ whiteout: 'corrupt:latest', evil: 'evil:latest' });
    corrupt = await readLayoutImage(images.layout, images.tags.whiteout);
    evil = await readLayoutImage(images.layout, images.tags.evil);
    // The top layer (/data made opaque) is this image's own: the registry now serves other bytes of the same size.
    await registry.corruptBlob(corrupt.layers.at(-1)!.digest);
    node = await bootNode({ name: '41-pods', ...reachingRegistry(registry.port) });
  }, 600_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console of 41-pods (full log: ${node.consoleLog}) ---\n${node.vm.tail(60)}`);
  });
  afterAll(async () => {
    sdk?.close();
    await node?.stop();
    await registry?.stop();
  });

  const sh = async (command: string) => (await booted().shell()).ok(command);
  const logs = (pod: string, container: string) => podLogs(client(), pod, container);
  const until = (pod: string, what: string, ok: (p: PodInfo) => boolean, timeoutMs = 90_000) =>
    eventually(async () => {
      const p = await client().pods.inspect(pod);
      return ok(p) && p;
    }, timeoutMs, `pod ${pod} ${what}`);

  it('pulls the image and runs a pod: its output (env, hostname) is in the logs and its exit code in the status', async () => {
    const progress: string[] = [];
    const started = await client().pods.run(
      {
        name: 'hello',
        env: { GREETING: 'hello-from-the-pod', SHARED: 'pod' },
        containers: [
          {
            name: 'echo',
            image,
            command: ['/bin/sh', '-c', 'echo "greeting=$GREETING shared=$SHARED host=$(hostname) uid=$(id -u) pid=$$"; exit 3'],
            env: { SHARED: 'container' },
          },
        ],
      },
      { onProgress: (p) => progress.push(`${p.image} ${p.state}`) },
    );
    expect(started.containers[0]).toMatchObject({ name: 'echo', image });
    expect(started.containers[0]!.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(progress.some((p) => p.startsWith(`${image} `))).toBe(true);
    const done = await until('hello', 'to end', (p) => p.state === 'failed');
    expect(done.containers[0]).toMatchObject({ state: 'failed', exit: { code: 3, signal: null, oomKilled: false } });
    expect(await logs('hello', 'echo')).toContain('greeting=hello-from-the-pod shared=container host=hello uid=0 pid=1');
    // The pod is a cell: its container is an executable of the cell "hello".
    expect((await client().cells.get('hello')).executables.map((e) => e.name)).toEqual(['echo']);
    // Its life in the events, in order: pulled, created, started by crun (the container's pid 1 on the node), exited.
    const events = await eventually(async () => {
      const all = await podEvents(client(), 'hello');
      return all.some((e) => e.kind === 'container_exited') && all;
    }, 30_000, 'container_exited for hello');
    const kinds = events.map((e) => e.kind).filter((k) => k.startsWith('image_') || k.startsWith('container_'));
    expect(kinds).toEqual(['image_pulled', 'container_created', 'container_started', 'container_exited']);
    const byKind = <K extends ObservedEvent['kind']>(kind: K) => events.find((e): e is Extract<ObservedEvent, { kind: K }> => e.kind === kind)!;
    expect(byKind('image_pulled')).toMatchObject({ cell: 'hello', pod: 'hello', container: 'echo', image, digest: done.containers[0]!.imageDigest });
    expect(byKind('image_pulled').bytes).toBeGreaterThan(100_000); // busybox-static, compressed
    expect(byKind('container_created')).toMatchObject({ pod: 'hello', container: 'echo', image, digest: done.containers[0]!.imageDigest });
    expect(byKind('container_started').pid).toBeGreaterThan(1);
    expect(byKind('container_exited')).toMatchObject({ pod: 'hello', container: 'echo', pid: byKind('container_started').pid, code: 3, signal: null, oomKilled: false });
    // "started" comes after the executable (the start script) started: crun had to create and start the container.
    expect(byKind('container_started').seq).toBeGreaterThan(events.find((e) => e.kind === 'executable_started')!.seq);
  });

  it('stops a long-running pod with grace: SIGTERM is honoured at once, ignored it ends with SIGKILL after the grace', async () => {
    await client().pods.run({
      name: 'polite',
      containers: [{ name: 'app', image, command: ['/bin/sh', '-c', 'trap "echo got-term; exit 0" TERM; echo started; while :; do sleep 0.2; done'] }],
    });
    await eventually(async () => (await logs('polite', 'app')).includes('started'), 60_000, 'polite to start');
    // Running, and its pid is the container's init: pid 1 in its own pid namespace.
    const running = await until('polite', 'to run', (p) => p.containers[0]!.state === 'running');
    expect(running.state).toBe('running');
    const started = (await podEvents(client(), 'polite')).find((e) => e.kind === 'container_started');
    expect(started).toBeDefined();
    expect((await sh(`grep NSpid /proc/${(started as { pid: number }).pid}/status`)).trim()).toMatch(/^NSpid:\s+\d+\s+1$/);
    let t = Date.now();
    const polite = await client().pods.stop('polite', { graceMs: 30_000 });
    expect(Date.now() - t).toBeLessThan(20_000);
    expect(polite).toMatchObject({ state: 'stopped', containers: [{ state: 'exited', exit: { code: 0 } }] });
    expect(await logs('polite', 'app')).toContain('got-term');

    // sleep as the container's pid 1 has no SIGTERM handler: the signal is ignored, the grace runs out.
    await client().pods.run({ name: 'stubborn', containers: [{ name: 'app', image, command: ['/bin/sh', '-c', 'echo started; exec sleep 600'] }] });
    await eventually(async () => (await logs('stubborn', 'app')).includes('started'), 60_000, 'stubborn to start');
    t = Date.now();
    const stubborn = await client().pods.stop('stubborn', { graceMs: 2_000 });
    expect(Date.now() - t).toBeGreaterThanOrEqual(2_000);
    expect(stubborn.state).toBe('stopped');
    expect(stubborn.containers[0]!.exit).toMatchObject({ signal: 'SIGKILL' });
    expect((await sh('cat /sys/fs/cgroup/aurae/stubborn/exe.app/cgroup.procs')).trim()).toBe('');
  });

  it("stops with the image's StopSignal (SIGQUIT, like nginx): the container's init gets it, not SIGTERM", async () => {
    const pulled = await client().images.pull(STOPSIGNAL_IMAGE);
    expect(pulled.config.stopSignal).toBe('SIGQUIT');
    // No command: the image's Entrypoint traps QUIT (exit 0) and ignores TERM.
    await client().pods.run({ name: 'quitter', containers: [{ name: 'app', image: STOPSIGNAL_IMAGE }] });
    await eventually(async () => (await logs('quitter', 'app')).includes('started'), 60_000, 'quitter to start');
    const t = Date.now();
    const stopped = await client().pods.stop('quitter', { graceMs: 30_000 });
    expect(Date.now() - t).toBeLessThan(20_000); // not the grace: SIGQUIT ended it
    expect(stopped).toMatchObject({ state: 'stopped', containers: [{ state: 'exited', exit: { code: 0, signal: null } }] });
    const out = await logs('quitter', 'app');
    expect(out).toContain('got-quit');
    expect(out).not.toContain('got-term-ignored');
    const exited = (await podEvents(client(), 'quitter')).find((e) => e.kind === 'container_exited');
    expect(exited).toMatchObject({ code: 0, signal: null });
  });

  it("an OOM kill inside a container is reported (the pod's memory limit is its cell's)", async () => {
    const mem = 32 * 1024 * 1024;
    await client().pods.run({
      name: 'hog',
      limits: { memoryMax: mem },
      // dd fills a 64 MiB buffer from /dev/zero: the kernel's OOM killer ends it (it is the container's pid 1).
      containers: [{ name: 'app', image, command: ['/bin/dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'] }],
    });
    expect((await sh('cat /sys/fs/cgroup/aurae/hog/memory.max')).trim()).toBe(String(mem));
    const done = await until('hog', 'to be OOM-killed', (p) => p.state === 'failed');
    expect(done.containers[0]!.exit).toMatchObject({ oomKilled: true });
    const events = await podEvents(client(), 'hog');
    expect(events.find((e) => e.kind === 'container_oom_killed')).toMatchObject({ pod: 'hog', container: 'app' });
    expect(events.find((e) => e.kind === 'container_exited')).toMatchObject({ pod: 'hog', container: 'app', oomKilled: true });
  });

  it('a pod survives an auraed SIGKILL: reconciled, its container runs again in the same sandbox', async () => {
    await client().pods.run({
      name: 'survivor',
      restart: 'always',
      containers: [{ name: 'app', image, command: ['/bin/sh', '-c', 'echo "up host=$(hostname) net=$(readlink /proc/self/ns/net)"; exec sleep 600'] }],
    });
    const before = await until('survivor', 'to run', (p) => p.state === 'running' && p.containers[0]!.pid !== null);
    await eventually(async () => (await logs('survivor', 'app')).includes('up host=survivor'), 60_000, 'survivor to print');
    const from = booted().vm.console.length;
    await sh('kill -9 "$(cat /run/aurae/auraed.pid)"');
    await booted().waitReady(180_000, from);
    sdk?.close();
    sdk = null;
    const after = await until('survivor', 'to run again', (p) => p.state === 'running' && p.containers[0]!.pid !== null && p.containers[0]!.pid !== before.containers[0]!.pid, 120_000);
    expect(after.createdAt).toBe(before.createdAt);
    const ups = await eventually(async () => {
      const lines = (await logs('survivor', 'app')).split('\n').filter((l) => l.startsWith('up host=survivor'));
      return lines.length >= 2 && lines;
    }, 60_000, 'the restarted container to print');
    // The pinned network namespace was kept: the same one before and after.
    expect(ups[1]!.split('net=')[1]).toBe(ups[0]!.split('net=')[1]);
  });

  it('a registry answering with a wrong digest is refused: FAILED_PRECONDITION, nothing of it stored, no image', async () => {
    const bad = corrupt!.layers.at(-1)!;
    const err = await client().images.pull(CORRUPT_IMAGE).then(() => null, (e: Error) => e);
    expect(err).toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect(err!.message).toMatch(new RegExp(`blob ${bad.digest}: the registry served content whose digest is sha256:[0-9a-f]{64}: refusing it \\(nothing stored\\)`));
    expect((await client().images.list()).map((i) => i.name)).not.toContain(`${REGISTRY}/corrupt`);
    await expect(client().images.inspect(CORRUPT_IMAGE)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // Neither the blob nor a partial download of it, nor a snapshot of its layer.
    expect((await sh(`ls -A ${IMAGES_DIR}/blobs/sha256 ${IMAGES_DIR}/ingest | grep -c ${hexOf(bad.digest)} || true`)).trim()).toBe('0');
    expect((await sh(`ls -A ${IMAGES_DIR}/snapshots/${hexOf(bad.diffId)} 2>/dev/null || true`)).trim()).toBe('');
  });

  it('a pod whose image has a layer writing ../../etc/passwd is refused: INVALID_ARGUMENT, nothing written, no pod, no image', async () => {
    const passwd = await sh('cat /etc/passwd');
    const err = await client()
      .pods.run({ name: 'evil', containers: [{ name: 'app', image: EVIL_IMAGE, command: ['/bin/true'] }] })
      .then(() => null, (e: Error) => e);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(err!.message).toContain('../../etc/passwd');
    await expect(client().pods.inspect('evil')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await client().images.list()).map((i) => i.name)).not.toContain(`${REGISTRY}/evil`);
    // The hostile layer has no snapshot (not even a temp dir of the unpack); the node's files are untouched and
    // its line ("evil::0:0:…") is nowhere on the node's /etc or state.
    expect((await sh(`ls -A ${IMAGES_DIR}/snapshots/${hexOf(evil!.layers.at(-1)!.diffId)} 2>/dev/null || true`)).trim()).toBe('');
    expect(await sh('cat /etc/passwd')).toBe(passwd);
    // (The pods' root filesystems, overlays of the snapshots, are skipped: what they show is checked above.)
    const planted = await sh("find /etc /var/lib/aurae /run/aurae -path /var/lib/aurae/pods -prune -o -type f -exec grep -l '^evil::0:0' {} + 2>/dev/null || true");
    expect(planted.trim()).toBe('');
  });

  it('remove frees the cells, unmounts the root filesystems and releases the image', async () => {
    await expect(client().pods.remove('survivor')).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    // Retained by the pods that use it.
    await expect(client().images.remove(image)).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    await client().pods.remove('survivor', { force: true });
    for (const name of ['hello', 'polite', 'stubborn', 'quitter', 'hog']) await client().pods.remove(name);
    expect(await client().pods.list()).toEqual([]);
    await expect(client().cells.get('survivor')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await sh('grep -c "/var/lib/aurae/pods\\|/run/aurae/pods" /proc/mounts || true')).trim()).toBe('0');
    expect((await sh('ls /var/lib/aurae/pods /run/aurae/pods 2>/dev/null | grep -v ":$" | grep -c . || true')).trim()).toBe('0');
    await client().images.remove(image);
    await client().images.remove(STOPSIGNAL_IMAGE);
    expect((await client().images.list()).map((i) => i.name)).not.toContain(`${REGISTRY}/busybox`);
  });
});

describe('41 pods across a reboot with a state disk', () => {
  let registry: TestRegistry | null = null;
  let proxy: RegistryProxy | null = null;
  let node: BootedNode | null = null;
  let sdk: AuraeClient | null = null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-41-state-'));
  const disk = createStateDisk(dir, 256);
  const booted = () => {
    if (!node) throw new Error('the node did not boot (see the beforeAll error)');
    return node;
  };
  const client = () => (sdk ??= booted().client());
  const sh = async (command: string) => (await booted().shell()).ok(command);

  beforeAll(async () => {
    registry = await registryWithBusybox({ whiteout: 'whiteout:latest' });
    // The guest reaches the registry through a proxy that can hold a blob mid-way.
    proxy = await startRegistryProxy(registry.port);
    node = await bootNode({ name: '41-pods-reboot', disks: [disk], noReboot: false, ...reachingRegistry(proxy.port) });
  }, 600_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console of 41-pods-reboot (full log: ${node.consoleLog}) ---\n${node.vm.tail(60)}`);
  });
  afterAll(async () => {
    sdk?.close();
    await node?.stop();
    await proxy?.stop();
    await registry?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a pull cut by a power cut leaves no half image; pulled again, it completes, fetching only the bytes it lacked', async () => {
    const images = await buildTestImages(testImagesDir());
    const wanted = await readLayoutImage(images.layout, images.tags.whiteout);
    // Bottom first: the busybox layer (the big one), then the whiteout and the opaque layers (a few hundred bytes).
    const [big, ...small] = wanted.layers;
    const half = Math.floor(big!.size / 2);
    let reached = false;
    void proxy!.holdBlob(big!.digest, half).then(() => (reached = true));
    const first = client().images.pull(WHITEOUT_IMAGE).then(() => null, (e: Error) => e);
    await eventually(async () => reached, 120_000, `the proxy to send ${half} of the busybox layer's ${big!.size} bytes`);
    // On the state disk: the complete blobs (manifest, config, the small layers) and the partial, exactly as long
    // as what was sent.
    const complete = [wanted.digest, wanted.config.digest, ...small.map((l) => l.digest)].map(hexOf);
    const partial = `${hexOf(big!.digest)}.partial`;
    // Blobs (one name per line) and downloads in progress ("NAME SIZE"): a small layer fully downloaded but not yet
    // verified and moved into blobs/ is still in ingest/, and must not count as complete.
    const storeState = () => sh(`cd ${IMAGES_DIR} && ls blobs/sha256 && (cd ingest && stat -c '%n %s' * 2>/dev/null || true)`);
    const blobsIn = (out: string) => new Set(out.split('\n').map((l) => l.trim()).filter((l) => /^[0-9a-f]{64}$/.test(l)));
    await eventually(async () => {
      const out = await storeState();
      return complete.every((hex) => blobsIn(out).has(hex)) && out.includes(`${partial} ${half}`);
    }, 60_000, 'the complete blobs and the partial download in the store');
    // What the kernel's writeback does within 30 s anyway: the partial's bytes on the disk (complete blobs were
    // fsynced before their rename). Then the power cut: QEMU killed, no shutdown of any kind.
    await sh('sync');
    const vm = booted().vm;
    vm.process.kill('SIGKILL');
    await vm.exited;
    expect(await first).toBeInstanceOf(Error);
    proxy!.release();
    sdk?.close();
    sdk = null;
    await booted().stop();
    node = null;

    const mark = proxy!.requests.length;
    node = await bootNode({ name: '41-pods-reboot-after-power-cut', disks: [disk], noReboot: false, ...reachingRegistry(proxy!.port) });
    // No half image: not listed, not inspectable. The pieces are still there for the next pull.
    expect((await client().images.list()).map((i) => i.name)).not.toContain(`${REGISTRY}/whiteout`);
    await expect(client().images.inspect(WHITEOUT_IMAGE)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const kept = await storeState();
    for (const hex of complete) expect(blobsIn(kept).has(hex)).toBe(true);
    expect(kept).toContain(`${partial} ${half}`);

    const progress: string[] = [];
    const image = await client().images.pull(WHITEOUT_IMAGE, { onProgress: (p) => progress.push(`${p.layer} ${p.state}`) });
    expect(image.digest).toBe(wanted.digest);
    expect(image.layers.map((l) => l.digest)).toEqual(wanted.layers.map((l) => l.digest));
    // The registry saw one blob request: the busybox layer from where the partial ended. The config and the small
    // layers were not fetched again.
    expect(proxy!.blobGets(mark).map((r) => ({ blob: r.path.split('/blobs/')[1], range: r.range, status: r.status, sent: r.sent }))).toEqual([
      { blob: big!.digest, range: `bytes=${half}-`, status: 206, sent: big!.size - half },
    ]);
    expect(progress).toContain(`${big!.digest} done`);
    expect((await sh(`ls -A ${IMAGES_DIR}/ingest`)).trim()).toBe('');
    expect((await sh(`stat -c %s ${IMAGES_DIR}/blobs/sha256/${hexOf(big!.digest)}`)).trim()).toBe(String(big!.size));
    // And it runs: busybox from the resumed layer, /etc/motd whited out, /data opaque with only c.
    await client().pods.run({ name: 'resumed', containers: [{ name: 'app', image: WHITEOUT_IMAGE, command: ['/bin/sh', '-c', 'echo "data=$(ls /data) motd=$(cat /etc/motd 2>/dev/null || echo none)"'] }] });
    await eventually(async () => (await podLogs(client(), 'resumed', 'app')).includes('data=c motd=none'), 60_000, 'the pod of the resumed image to print');
    await client().pods.remove('resumed', { force: true });
    await client().images.remove(WHITEOUT_IMAGE);
  }, 600_000);

  it('a pod that should run comes back after the reboot: remounted, re-pinned, restarted; the same pod', async () => {
    await client().pods.run({
      name: 'keeper',
      restart: 'always',
      containers: [{ name: 'app', image: IMAGE, command: ['/bin/sh', '-c', 'echo "up boot=$(cat /proc/sys/kernel/random/boot_id)"; exec sleep 600'] }],
    });
    await eventually(async () => (await podLogs(client(), 'keeper', 'app')).includes('up boot='), 60_000, 'keeper to start');
    const before = await client().pods.inspect('keeper');
    const from = booted().vm.console.length;
    await client().node.reboot({ reason: '41: pods across a reboot' });
    sdk?.close();
    sdk = null;
    await booted().waitReady(240_000, from);
    const ups = await eventually(async () => {
      const lines = (await podLogs(client(), 'keeper', 'app')).split('\n').filter((l) => l.startsWith('up boot='));
      return lines.length >= 2 && lines;
    }, 120_000, 'keeper to run again after the reboot');
    expect(ups[1]).not.toBe(ups[0]); // another boot
    const after = await client().pods.inspect('keeper');
    expect(after).toMatchObject({ state: 'running', createdAt: before.createdAt });
    expect(after.containers[0]!.imageDigest).toBe(before.containers[0]!.imageDigest);
    await client().pods.remove('keeper', { force: true });
    expect(await client().pods.list()).toEqual([]);
  });
});
