// VM pods, unit tier: the pure pieces (VM name and memory, the child's spec, the status shown on this node, the
// ext4 label read from a superblock, disk references) and the runtime over fakes of the VMs, the child's pod
// agent, the images and the disks: run, status from the child, stop (then the VM), remove (then free),
// undo of a failed run, reconcile after a restart, and the dispatch between the cell and VM sandboxes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import type { ImageRecord } from '../images';
import { rootfsDiskLabel } from '../images/rootfs-disk';
import { silentLogger } from '../log';
import { childVmSpec } from '../vms';
import { qemuArgs } from '../vms/qemu-args';
import { diskImageRef, type DiskHost, ext4Label, parseDiskImageRef, withDiskImages } from './disk-images';
import type { ContainerStatus, PodImages, PodRuntime, PodStatus } from './runtime';
import type { ContainerMount, PodSpec } from './spec';
import { memoryPodStore } from './store';
import { containerExtensionsJson, podExtensionsJson, podSpecToProto, validateCreateContainerRequest, validateSandboxRequest } from './pod-service';
import { nodePodImageShare, nodePodVolumeShare, podStatusFromProto } from './vm-agent';
import { cellPodStore, type ChildPodAgent, childPodSpec, createVmPodRuntime, type PodImageShare, type PodVms, type PodVmState, type PodVolumeShare, sandboxedPodRuntime, vmPodMemoryMiB, vmPodName, vmPodStatus } from './vm-sandbox';

const DIGEST = `sha256:${'12'.repeat(32)}`;
const MiB = 1024 * 1024;

function spec(over: Partial<PodSpec> = {}): PodSpec {
  return {
    name: 'web',
    sandbox: 'vm',
    containers: [{ name: 'app', image: 'busybox', command: ['/bin/sh', '-c', 'uname -n'], args: null, env: {}, workingDir: null, user: null, readOnlyRootfs: false }],
    env: { A: '1' },
    restart: 'never',
    limits: { memoryMax: null, pidsMax: null, cpuWeight: null },
    ...over,
  };
}

function record(digest = DIGEST): ImageRecord {
  return { name: 'docker.io/library/busybox', tags: ['latest'], digest, configDigest: '', config: { entrypoint: [], cmd: ['sh'], env: [], workingDir: '', user: '', exposedPorts: [], labels: {}, stopSignal: '' }, layers: [], size: 0, pulledAt: 0 };
}

describe('VM pod planning', () => {
  it('names the VM pod-NAME and sizes it from the pod memory limit', () => {
    expect(vmPodName('web')).toBe('pod-web');
    expect(vmPodMemoryMiB(spec())).toBe(512);
    expect(vmPodMemoryMiB(spec({ limits: { memoryMax: 64 * MiB, pidsMax: null, cpuWeight: null } }))).toBe(512);
    expect(vmPodMemoryMiB(spec({ limits: { memoryMax: 1024 * MiB, pidsMax: null, cpuWeight: null } }))).toBe(1408);
    expect(() => vmPodMemoryMiB(spec({ limits: { memoryMax: 4096 * MiB, pidsMax: null, cpuWeight: null } }), 2048)).toThrow(/limits.memory_max: a VM-sandboxed pod needs a 4480 MiB VM for it, over vms.maxMemoryMiB 2048/);
  });

  it('gives the child the same pod in a cell with each image as its handed-over disk', () => {
    const child = childPodSpec(spec(), { app: DIGEST });
    expect(child).toEqual({ ...spec(), sandbox: 'cell', containers: [{ ...spec().containers[0], image: `aurae-disk:${DIGEST}` }] });
    expect(() => childPodSpec(spec(), {})).toThrow(/container "app" has no image digest/);
  });

  it('attaches the rootfs disks read-only after the boot volume (vms childVmSpec)', () => {
    const plan = { kernel: '/k', initrd: '/i', rootDisk: null, bootDisk: '/dev/vda', accel: 'tcg' as const, hostPort: 1, guestPort: 2, qmpSocket: '/q', payload: [{ name: 'opt/aurae/payload/0', file: '/p' }] };
    const vm = childVmSpec({ name: 'pod-web', memoryMiB: 512, cpus: 1, restart: 'never', disks: ['/d/a.ext4', '/d/b.ext4'] }, plan);
    expect(vm.disks).toEqual([
      { path: '/dev/vda', readOnly: true, format: 'raw' },
      { path: '/d/a.ext4', readOnly: true, format: 'raw' },
      { path: '/d/b.ext4', readOnly: true, format: 'raw' },
    ]);
    expect(childVmSpec({ name: 'web', memoryMiB: 512, cpus: 1, restart: 'never' }, plan).disks).toHaveLength(1);
  });

  it('disk references and ext4 labels', () => {
    expect(diskImageRef(DIGEST)).toBe(`aurae-disk:${DIGEST}`);
    expect(parseDiskImageRef(diskImageRef(DIGEST))).toBe(DIGEST);
    expect(parseDiskImageRef('busybox')).toBeNull();
    expect(parseDiskImageRef('aurae-disk:sha256:12')).toBeNull();
    const sb = Buffer.alloc(1024);
    expect(ext4Label(sb)).toBeNull();
    sb.writeUInt16LE(0xef53, 0x38);
    sb.write('aurae-1212121212', 0x78, 'latin1');
    expect(ext4Label(sb)).toBe('aurae-1212121212');
    expect(rootfsDiskLabel(DIGEST)).toBe('aurae-1212121212');
  });

  it('shows the child status under this node (its name, sandbox, spec, images) and the VM state', () => {
    const entry = { spec: spec(), desiredRunning: true, images: { app: DIGEST }, createdAt: 5, creating: false };
    const child: PodStatus = {
      name: 'web',
      sandbox: 'cell',
      state: 'running',
      containers: [{ name: 'app', image: `aurae-disk:${DIGEST}`, imageDigest: DIGEST, state: 'running', pid: 7, exit: null, restarts: 0 }],
      createdAt: 9,
      spec: childPodSpec(spec(), { app: DIGEST }),
    };
    const running = vmPodStatus(entry, child, 'running');
    expect(running).toEqual({ name: 'web', sandbox: 'vm', state: 'running', createdAt: 5, spec: spec(), ip: null, containers: [{ name: 'app', image: 'busybox', imageDigest: DIGEST, state: 'running', pid: 7, exit: null, restarts: 0 }] });
    expect(vmPodStatus({ ...entry, creating: true, images: {} }, null, null)).toMatchObject({ state: 'pending', containers: [{ state: 'pulling', imageDigest: '' }] });
    expect(vmPodStatus(entry, null, 'starting').state).toBe('pending');
    // Stopped here and the VM down: stopped, nothing running any more.
    expect(vmPodStatus({ ...entry, desiredRunning: false }, child, 'stopped')).toMatchObject({ state: 'stopped', containers: [{ state: 'exited', pid: null }] });
    // The VM died under a pod that should run.
    expect(vmPodStatus(entry, child, 'crashed').state).toBe('failed');
    expect(vmPodStatus(entry, { ...child, state: 'succeeded' }, 'running').state).toBe('succeeded');
  });
});

class FakeVms implements PodVms {
  vms = new Map<string, { state: Exclude<PodVmState, null>; disks: string[]; memoryMiB: number }>();
  calls: string[] = [];
  failSpawn: Error | null = null;
  limits = { maxMemoryMiB: 2048, bootTimeoutMs: 1000 };
  shares = new Map<string, { tag: string; path: string; writable?: boolean }[]>();
  async spawn(r: { name: string; memoryMiB: number; disks: string[]; shares?: { tag: string; path: string; writable?: boolean }[] }) {
    this.calls.push(`spawn ${r.name} ${r.memoryMiB} ${r.disks.join(',')}`);
    if (r.shares) this.shares.set(r.name, r.shares);
    if (this.failSpawn) throw this.failSpawn;
    this.vms.set(r.name, { state: 'running', disks: r.disks, memoryMiB: r.memoryMiB });
  }
  async start(name: string) {
    this.calls.push(`start ${name}`);
    this.vms.get(name)!.state = 'running';
  }
  async stop(name: string) {
    this.calls.push(`stop ${name}`);
    this.vms.get(name)!.state = 'stopped';
  }
  free(name: string) {
    this.calls.push(`free ${name}`);
    this.vms.delete(name);
  }
  state(name: string): PodVmState {
    return this.vms.get(name)?.state ?? null;
  }
}

class FakeAgent implements ChildPodAgent {
  pods = new Map<string, PodStatus>();
  calls: string[] = [];
  failRun: Error | null = null;
  async run(vm: string, s: PodSpec) {
    this.calls.push(`run ${vm} ${s.containers.map((c) => c.image).join(',')}`);
    if (this.failRun) throw this.failRun;
    const status: PodStatus = { name: s.name, sandbox: 'cell', state: 'running', createdAt: 1, spec: s, containers: s.containers.map((c) => ({ name: c.name, image: c.image, imageDigest: DIGEST, state: 'running', pid: 42, exit: null, restarts: 0 })) };
    this.pods.set(`${vm}/${s.name}`, status);
    return status;
  }
  async inspect(vm: string, pod: string) {
    this.calls.push(`inspect ${vm}`);
    return this.pods.get(`${vm}/${pod}`) ?? null;
  }
  async stop(vm: string, pod: string, graceMs: number) {
    this.calls.push(`stop ${vm} ${graceMs}`);
    const s = this.pods.get(`${vm}/${pod}`)!;
    const stopped: PodStatus = { ...s, state: 'stopped', containers: s.containers.map((c) => ({ ...c, state: 'exited', pid: null, exit: { code: 0, signal: null, oomKilled: false } })) };
    this.pods.set(`${vm}/${pod}`, stopped);
    return stopped;
  }
  failCreateSandbox: Error | null = null;
  async createSandbox(vm: string, s: PodSpec) {
    this.calls.push(`createSandbox ${vm} ${s.sandbox} ${s.containers.length}`);
    if (this.failCreateSandbox) throw this.failCreateSandbox;
    const status: PodStatus = { name: s.name, sandbox: 'cell', state: 'running', createdAt: 1, spec: s, containers: [] };
    this.pods.set(`${vm}/${s.name}`, status);
    return status;
  }
  private change(vm: string, pod: string, name: string, fn: (c: ContainerStatus | undefined) => ContainerStatus | null): ContainerStatus {
    const p = this.pods.get(`${vm}/${pod}`);
    if (!p) throw new AuraeError('NOT_FOUND', `pod "${pod}" does not exist`);
    const next = fn(p.containers.find((c) => c.name === name));
    this.pods.set(`${vm}/${pod}`, { ...p, containers: [...p.containers.filter((c) => c.name !== name), ...(next ? [next] : [])] });
    return next!;
  }
  created: PodSpec['containers'][number][] = [];
  async createContainer(vm: string, pod: string, c: PodSpec['containers'][number]) {
    this.calls.push(`createContainer ${vm} ${c.name} ${c.image}`);
    this.created.push(c);
    return this.change(vm, pod, c.name, () => ({ name: c.name, image: c.image, imageDigest: DIGEST, state: 'created', pid: null, exit: null, restarts: 0, createdAt: 1500 }));
  }
  async startContainer(vm: string, pod: string, name: string) {
    this.calls.push(`startContainer ${vm} ${name}`);
    return this.change(vm, pod, name, (c) => ({ ...c!, state: 'running', pid: 7, startedAt: 2000 }));
  }
  async stopContainer(vm: string, pod: string, name: string, graceMs: number) {
    this.calls.push(`stopContainer ${vm} ${name} ${graceMs}`);
    return this.change(vm, pod, name, (c) => (c!.state === 'running' ? { ...c!, state: 'exited', pid: null, exit: { code: 0, signal: null, oomKilled: false }, finishedAt: 3000 } : c!));
  }
  async removeContainer(vm: string, pod: string, name: string, opts: { force: boolean }) {
    this.calls.push(`removeContainer ${vm} ${name}${opts.force ? ' force' : ''}`);
    this.change(vm, pod, name, (c) => {
      if (!c) throw new AuraeError('NOT_FOUND', `no container "${name}"`);
      return null;
    });
  }
}

class FakeVolumes implements PodVolumeShare {
  calls: string[] = [];
  dir(pod: string) {
    return `/run/volumes/${pod}`;
  }
  add(pod: string, container: string, mounts: readonly ContainerMount[]) {
    this.calls.push(`add ${pod} ${container} ${mounts.map((m) => `${m.hostPath}${m.readonly ? ':ro' : ''}`).join(' ')}`);
  }
  remove(pod: string, container: string) {
    this.calls.push(`remove ${pod} ${container}`);
  }
  removeAll(pod: string) {
    this.calls.push(`removeAll ${pod}`);
  }
}

class FakeShare implements PodImageShare {
  calls: string[] = [];
  dir(pod: string) {
    return `/run/shares/${pod}`;
  }
  async add(pod: string, image: ImageRecord) {
    this.calls.push(`add ${pod} ${image.digest}`);
  }
  remove(pod: string, digest: string) {
    this.calls.push(`remove ${pod} ${digest}`);
  }
  removeAll(pod: string) {
    this.calls.push(`removeAll ${pod}`);
  }
}

function fakeImages() {
  const held = new Map<string, string>();
  const images: PodImages = {
    get: (ref) => (ref === 'busybox' || ref === DIGEST ? record() : undefined),
    pull: async () => record(),
    lowerDirs: () => ['/snap'],
    retain: (digest, holder) => void held.set(holder, digest),
    release: (holder) => void held.delete(holder),
  };
  return { images, held };
}

function setup(opts: { volumes?: boolean } = {}) {
  const volumes = opts.volumes ? new FakeVolumes() : undefined;
  const store = memoryPodStore();
  const vms = new FakeVms();
  const agent = new FakeAgent();
  const { images, held } = fakeImages();
  const built: string[] = [];
  const share = new FakeShare();
  const make = () =>
    createVmPodRuntime({
      store,
      images,
      disks: { ensure: async (r) => (built.push(r.digest), { path: `/state/images/disks/${r.digest.slice(7)}.ext4` }) },
      share,
      ...(volumes ? { volumes } : {}),
      vms: () => vms,
      agent,
      log: silentLogger,
      clock: () => 1000,
      sleep: async () => undefined,
    });
  return { store, vms, agent, held, built, share, volumes, runtime: make(), make };
}

describe('VM pod runtime', () => {
  it('runs: pulls, builds the disk, spawns pod-NAME with it, runs the pod in the child; status comes from the child', async () => {
    const t = setup();
    const status = await t.runtime.run(spec());
    const disk = `/state/images/disks/${'12'.repeat(32)}.ext4`;
    expect(t.vms.calls).toEqual([`spawn pod-web 512 ${disk}`]);
    expect(t.agent.calls).toEqual([`run pod-web aurae-disk:${DIGEST}`]);
    expect(status).toMatchObject({ name: 'web', sandbox: 'vm', state: 'running', containers: [{ name: 'app', image: 'busybox', imageDigest: DIGEST, state: 'running', pid: 42 }] });
    expect(t.held.get('pod:web/app')).toBe(DIGEST);
    expect(t.store.pods()).toEqual([{ spec: spec(), desiredRunning: true, images: { app: DIGEST }, createdAt: 1000 }]);
    await expect(t.runtime.run(spec())).rejects.toThrow(/pod "web" already exists/);
    // The child's pod ends: a refresh shows it.
    t.agent.pods.set('pod-web/web', { ...t.agent.pods.get('pod-web/web')!, state: 'succeeded' });
    await t.runtime.refresh('web');
    expect(t.runtime.get('web')!.state).toBe('succeeded');
  });

  it('stop stops the pod in the child, then the VM; remove frees the VM and releases the images', async () => {
    const t = setup();
    await t.runtime.run(spec());
    const stopped = await t.runtime.stop('web', 3000);
    expect(t.agent.calls.at(-1)).toBe('stop pod-web 3000');
    expect(t.vms.calls.at(-1)).toBe('stop pod-web');
    expect(stopped).toMatchObject({ state: 'stopped', containers: [{ state: 'exited', exit: { code: 0 } }] });
    expect(t.store.pods()[0]!.desiredRunning).toBe(false);
    await t.runtime.remove('web', { force: false });
    expect(t.vms.calls.at(-1)).toBe('free pod-web');
    expect(t.held.size).toBe(0);
    expect(t.store.pods()).toEqual([]);
    expect(t.runtime.get('web')).toBeUndefined();
  });

  it('refuses to remove a running pod without force; with force the VM goes down and is freed', async () => {
    const t = setup();
    await t.runtime.run(spec());
    await expect(t.runtime.remove('web', { force: false })).rejects.toThrow(/pod "web" has running containers \(app\): stop it first/);
    await t.runtime.remove('web', { force: true });
    expect(t.vms.calls.slice(-2)).toEqual(['stop pod-web', 'free pod-web']);
  });

  it('undoes a run whose child refused the pod: VM stopped and freed, row deleted, images released', async () => {
    const t = setup();
    t.agent.failRun = new AuraeError('FAILED_PRECONDITION', 'crun failed');
    await expect(t.runtime.run(spec())).rejects.toThrow('crun failed');
    expect(t.vms.calls.slice(-2)).toEqual(['stop pod-web', 'free pod-web']);
    expect(t.store.pods()).toEqual([]);
    expect(t.held.size).toBe(0);
    expect(t.runtime.list()).toEqual([]);
  });

  it('refuses a pod whose memory limit needs a VM over vms.maxMemoryMiB before pulling anything', async () => {
    const t = setup();
    await expect(t.runtime.run(spec({ limits: { memoryMax: 4096 * MiB, pidsMax: null, cpuWeight: null } }))).rejects.toThrow(/over vms.maxMemoryMiB 2048/);
    expect(t.vms.calls).toEqual([]);
    expect(t.held.size).toBe(0);
  });

  it('reconcile after an auraed restart: the VM is booted again (or spawned anew) and the pod run in it', async () => {
    const t = setup();
    await t.runtime.run(spec());
    // A new auraed: the VM's QEMU is gone (VmRuntime restored it as stopped); the child knows no pod.
    t.vms.vms.get('pod-web')!.state = 'stopped';
    t.agent.pods.clear();
    const next = t.make();
    await next.reconcile();
    expect(t.vms.calls.at(-1)).toBe('start pod-web');
    expect(t.agent.calls.at(-1)).toBe(`run pod-web aurae-disk:${DIGEST}`);
    expect(next.get('web')!.state).toBe('running');
    // VmRuntime is booting it itself (a start is refused as busy, then it runs): the pod agent waits for it.
    t.vms.vms.get('pod-web')!.state = 'stopped';
    t.agent.pods.clear();
    let refusals = 0;
    const realStart = t.vms.start.bind(t.vms);
    t.vms.start = async (name: string) => {
      if (refusals++ < 2) {
        if (refusals === 2) t.vms.vms.get(name)!.state = 'running';
        throw new AuraeError('FAILED_PRECONDITION', `vm "${name}" is stopped: stop it first`);
      }
      return realStart(name);
    };
    await t.make().reconcile();
    expect(refusals).toBe(2);
    expect(t.agent.calls.at(-1)).toBe(`run pod-web aurae-disk:${DIGEST}`);
    t.vms.start = realStart;
    // The VM was freed meanwhile: spawned again with the disk.
    t.vms.vms.delete('pod-web');
    t.agent.pods.clear();
    await t.make().reconcile();
    expect(t.vms.calls.at(-1)).toMatch(/^spawn pod-web 512 /);
  });

  it('dispatches by sandbox; the cell runtime does not see VM pod rows', async () => {
    const t = setup();
    const cellCalls: string[] = [];
    const cell = {
      run: async (s: PodSpec) => (cellCalls.push(`run ${s.name}`), { name: s.name } as PodStatus),
      list: () => [],
      get: () => undefined,
      stop: async () => ({}) as PodStatus,
      remove: async () => undefined,
      reconcile: async () => void cellCalls.push('reconcile'),
      execTarget: () => ({}) as ReturnType<PodRuntime['execTarget']>,
      createSandbox: async (s: PodSpec) => (cellCalls.push(`createSandbox ${s.name}`), { name: s.name } as PodStatus),
      createContainer: async (p: string) => (cellCalls.push(`createContainer ${p}`), {}) as ContainerStatus,
      startContainer: async () => ({}) as ContainerStatus,
      stopContainer: async () => ({}) as ContainerStatus,
      removeContainer: async () => undefined,
      updateContainerResources: async () => ({}) as ContainerStatus,
    } satisfies PodRuntime;
    const both = sandboxedPodRuntime(cell, t.runtime);
    await both.run(spec({ name: 'inside', sandbox: 'vm' }));
    await both.run(spec({ name: 'beside', sandbox: 'cell' }));
    expect(cellCalls).toEqual(['run beside']);
    expect(both.get('inside')?.sandbox).toBe('vm');
    await expect(both.run(spec({ name: 'inside', sandbox: 'cell' }))).rejects.toThrow(/pod "inside" already exists/);
    expect(() => both.execTarget('inside', 'app')).toThrow(/runs in a VM sandbox/);
    expect(cellPodStore(t.store).pods()).toEqual([]);
  });
});

describe('the child status on the wire', () => {
  it('maps the child PodStatus to the runtime one (pids, exits, the spec given)', () => {
    const s = podStatusFromProto(
      {
        name: 'web',
        sandbox: 'cell',
        state: 'failed',
        createdAt: 7n,
        ip: '10.88.0.2',
        containers: [
          { name: 'app', image: `aurae-disk:${DIGEST}`, imageDigest: DIGEST, state: 'exited', pid: 0, exit: { code: 3, oomKilled: false }, restarts: 1 },
          { name: 'side', image: `aurae-disk:${DIGEST}`, imageDigest: DIGEST, state: 'running', pid: 9, exit: undefined, restarts: 0 },
        ],
      },
      spec(),
    );
    expect(s).toEqual({
      name: 'web',
      sandbox: 'cell',
      state: 'failed',
      createdAt: 7,
      spec: spec(),
      containers: [
        { name: 'app', image: `aurae-disk:${DIGEST}`, imageDigest: DIGEST, state: 'exited', pid: null, exit: { code: 3, signal: null, oomKilled: false }, restarts: 1 },
        { name: 'side', image: `aurae-disk:${DIGEST}`, imageDigest: DIGEST, state: 'running', pid: 9, exit: null, restarts: 0 },
      ],
    });
  });
});

describe('disk images in the child', () => {
  const label = rootfsDiskLabel(DIGEST);
  const superblock = (l: string) => {
    const sb = Buffer.alloc(1024);
    sb.writeUInt16LE(0xef53, 0x38);
    sb.write(l, 0x78, 'latin1');
    return sb;
  };
  function host(meta: unknown): DiskHost & { mounted: string[] } {
    const mounted: string[] = [];
    return {
      mounted,
      devices: () => ['vda', 'vdb'],
      superblock: (name) => (name === 'vdb' ? superblock(label) : superblock('AURAE_BOOT')),
      isMounted: (target) => mounted.some((m) => m.endsWith(` ${target}`)),
      mountReadOnly: (name, target) => void mounted.push(`${name} ${target}`),
      readFile: () => JSON.stringify(meta),
    };
  }
  const base = fakeImages().images;

  it('finds the disk by label, mounts it once, and gives its rootfs as the only lower dir', async () => {
    const h = host({ digest: DIGEST, name: 'docker.io/library/busybox', config: record().config });
    const images = withDiskImages(base, h, '/run/disks');
    const r = images.get(diskImageRef(DIGEST))!;
    expect(r).toMatchObject({ digest: DIGEST, name: 'docker.io/library/busybox', config: record().config });
    expect(await images.pull(diskImageRef(DIGEST))).toBe(r);
    expect(images.get(DIGEST)).toBe(r);
    expect(h.mounted).toEqual([`vdb /run/disks/${label}`]);
    expect(images.lowerDirs(r)).toEqual([`/run/disks/${label}/rootfs`]);
    images.retain(DIGEST, 'pod:web/app'); // no-op for disks: nothing thrown
    expect(images.get('busybox')).toEqual(record());
  });

  it('refuses a disk that is missing or holds another image', () => {
    const other = withDiskImages(base, host({ digest: `sha256:${'34'.repeat(32)}`, name: 'x', config: record().config }), '/run/disks');
    expect(() => other.get(diskImageRef(DIGEST))).toThrow(/holds image sha256:3434.*, not sha256:1212.*: the parent attached the wrong disk/);
    const none = withDiskImages(base, host({}), '/run/disks');
    expect(() => none.get(diskImageRef(`sha256:${'56'.repeat(32)}`))).toThrow(/no disk labelled aurae-5656565656 is attached/);
  });
});

describe('VM sandbox piece by piece (the CRI runtime handler vm)', () => {
  const sandbox = (over: Partial<PodSpec> = {}) => spec({ containers: [], ...over });
  const app = (over: Partial<PodSpec['containers'][number]> = {}): PodSpec['containers'][number] => ({ ...spec().containers[0]!, ...over });

  it('creates the sandbox: the VM spawned with the image share and no disk, an empty cell sandbox in the child', async () => {
    const t = setup();
    const status = await t.runtime.createSandbox(sandbox());
    expect(t.vms.calls).toEqual(['spawn pod-web 512 ']);
    expect(t.vms.shares.get('pod-web')).toEqual([{ tag: 'aurae-images', path: '/run/shares/web' }]);
    expect(t.agent.calls).toEqual(['createSandbox pod-web cell 0']);
    expect(status).toMatchObject({ name: 'web', sandbox: 'vm', state: 'running', containers: [] });
    expect(t.store.pods()).toEqual([{ spec: sandbox(), desiredRunning: true, images: {}, createdAt: 1000 }]);
    await expect(t.runtime.createSandbox(sandbox())).rejects.toThrow(/pod "web" already exists/);
    await expect(t.runtime.createSandbox(sandbox({ name: 'x', containers: [app()] }))).rejects.toThrow(/created without containers/);
  });

  it('creates, starts, stops and removes a container: image shared, aurae-disk reference in the child, rows kept, image released', async () => {
    const t = setup();
    await t.runtime.createSandbox(sandbox());
    const created = await t.runtime.createContainer('web', app());
    expect(t.share.calls).toEqual([`add web ${DIGEST}`]);
    expect(t.agent.calls.at(-1)).toBe(`createContainer pod-web app aurae-disk:${DIGEST}`);
    expect(created).toMatchObject({ name: 'app', image: 'busybox', imageDigest: DIGEST, state: 'created', createdAt: 1500 });
    expect(t.held.get('pod:web/app')).toBe(DIGEST);
    expect(t.store.containers().get('web')?.get('app')).toEqual({ desired: 'created', createdAt: 1000, startedAt: null, finishedAt: null });
    expect(t.store.pods()[0]!.spec.containers.map((c) => c.name)).toEqual(['app']);
    await expect(t.runtime.createContainer('web', app())).rejects.toThrow(/container "app" already exists/);

    const started = await t.runtime.startContainer('web', 'app');
    expect(started).toMatchObject({ state: 'running', pid: 7, startedAt: 2000 });
    expect(t.store.containers().get('web')?.get('app')?.desired).toBe('running');
    await expect(t.runtime.startContainer('web', 'app')).rejects.toThrow(/was started before \(it is running\)/);
    await expect(t.runtime.removeContainer('web', 'app', { force: false })).rejects.toThrow(/is running: stop it first/);

    const stopped = await t.runtime.stopContainer('web', 'app', 5000);
    expect(t.agent.calls.at(-1)).toBe('stopContainer pod-web app 5000');
    expect(stopped).toMatchObject({ state: 'exited', exit: { code: 0 }, finishedAt: 3000 });
    expect(t.store.containers().get('web')?.get('app')).toMatchObject({ desired: 'stopped', finishedAt: 3000 });
    expect(await t.runtime.stopContainer('web', 'app', 5000)).toMatchObject({ state: 'exited' }); // idempotent

    await t.runtime.removeContainer('web', 'app', { force: false });
    expect(t.agent.calls.at(-1)).toBe('removeContainer pod-web app');
    expect(t.share.calls.at(-1)).toBe(`remove web ${DIGEST}`);
    expect(t.held.size).toBe(0);
    expect(t.runtime.get('web')!.containers).toEqual([]);
    expect(t.store.pods()[0]!.spec.containers).toEqual([]);
    await expect(t.runtime.removeContainer('web', 'app', { force: false })).rejects.toMatchObject({ code: 'NOT_FOUND' });

    // Removing the sandbox: the VM down and freed, the share gone.
    await t.runtime.stop('web', 1000);
    await t.runtime.remove('web', { force: false });
    expect(t.vms.calls.slice(-2)).toEqual(['stop pod-web', 'free pod-web']);
    expect(t.share.calls.at(-1)).toBe('removeAll web');
    expect(t.store.pods()).toEqual([]);
  });

  it('keeps an image shared while another container of the pod uses it', async () => {
    const t = setup();
    await t.runtime.createSandbox(sandbox());
    await t.runtime.createContainer('web', app({ name: 'a' }));
    await t.runtime.createContainer('web', app({ name: 'b' }));
    await t.runtime.removeContainer('web', 'a', { force: false });
    expect(t.share.calls.filter((c) => c.startsWith('remove '))).toEqual([]);
    await t.runtime.removeContainer('web', 'b', { force: false });
    expect(t.share.calls.filter((c) => c.startsWith('remove '))).toEqual([`remove web ${DIGEST}`]);
  });

  it('refuses what it cannot do, naming why', async () => {
    const t = setup();
    await t.runtime.createSandbox(sandbox());
    await expect(t.runtime.createContainer('web', app({ image: 'nginx' }))).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/image nginx is not stored on this node: pull it first/) });
    const mounts = [{ hostPath: '/data', containerPath: '/data', readonly: false, propagation: 'private' as const }];
    await expect(t.runtime.createContainer('web', app({ mounts }))).rejects.toMatchObject({ code: 'UNIMPLEMENTED', message: expect.stringMatching(/^container.mounts: host path mounts/) });
    await expect(t.runtime.startContainer('web', 'nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(t.held.size).toBe(0);
    // A pod run whole keeps its containers.
    await t.runtime.run(spec({ name: 'whole' }));
    await expect(t.runtime.createContainer('whole', app({ name: 'more' }))).rejects.toThrow(/was run whole/);
    // A VM that went down: no container is added.
    t.vms.vms.get('pod-web')!.state = 'crashed';
    await expect(t.runtime.createContainer('web', app())).rejects.toThrow(/its VM pod-web is crashed, not running/);
  });

  it('undoes a sandbox the child refused: VM stopped and freed, share removed, row deleted', async () => {
    const t = setup();
    t.agent.failCreateSandbox = new AuraeError('FAILED_PRECONDITION', 'no cgroup');
    await expect(t.runtime.createSandbox(sandbox())).rejects.toThrow('no cgroup');
    expect(t.vms.calls.slice(-2)).toEqual(['stop pod-web', 'free pod-web']);
    expect(t.share.calls).toEqual(['removeAll web']);
    expect(t.store.pods()).toEqual([]);
    expect(t.runtime.list()).toEqual([]);
  });

  it('reconcile: a sandbox whose VM is gone is spawned again with its share, recreated in the child, containers not restarted (restart never)', async () => {
    const t = setup();
    await t.runtime.createSandbox(sandbox());
    await t.runtime.createContainer('web', app());
    await t.runtime.startContainer('web', 'app');
    t.vms.vms.delete('pod-web');
    t.agent.pods.clear();
    t.agent.calls = [];
    t.share.calls = [];
    const next = t.make();
    await next.reconcile();
    expect(t.share.calls).toEqual([`add web ${DIGEST}`, `add web ${DIGEST}`]);
    expect(t.vms.calls.at(-1)).toBe('spawn pod-web 512 ');
    expect(t.agent.calls).toEqual(['inspect pod-web', 'createSandbox pod-web cell 0', `createContainer pod-web app aurae-disk:${DIGEST}`, 'inspect pod-web']);
    // Its run was lost with the VM: shown as ended (the child has it created anew, never to start: restart never).
    expect(next.get('web')).toMatchObject({ state: 'running', containers: [{ name: 'app', state: 'exited', pid: null, startedAt: 2000, finishedAt: 2000 }] });
    // The new runtime knows the pod as made piece by piece.
    await next.removeContainer('web', 'app', { force: true });
    expect(t.agent.calls.at(-1)).toBe('removeContainer pod-web app force');
  });

  it('dispatches the incremental calls of a VM pod to the VM sandbox', async () => {
    const t = setup();
    const cellCalls: string[] = [];
    const cell = {
      run: async () => ({}) as PodStatus,
      list: () => [],
      get: () => undefined,
      stop: async () => ({}) as PodStatus,
      remove: async () => undefined,
      reconcile: async () => undefined,
      execTarget: () => ({}) as ReturnType<PodRuntime['execTarget']>,
      createSandbox: async (s: PodSpec) => (cellCalls.push(`createSandbox ${s.name}`), { name: s.name } as PodStatus),
      createContainer: async (p: string) => (cellCalls.push(`createContainer ${p}`), {}) as ContainerStatus,
      startContainer: async () => ({}) as ContainerStatus,
      stopContainer: async () => ({}) as ContainerStatus,
      removeContainer: async () => undefined,
      updateContainerResources: async () => ({}) as ContainerStatus,
    } satisfies PodRuntime;
    const both = sandboxedPodRuntime(cell, t.runtime);
    await both.createSandbox(sandbox({ name: 'inside' }));
    await both.createSandbox(sandbox({ name: 'beside', sandbox: 'cell' }));
    await both.createContainer('inside', app());
    await both.createContainer('beside', app());
    expect(cellCalls).toEqual(['createSandbox beside', 'createContainer beside']);
    expect(t.agent.calls).toEqual(['createSandbox pod-inside cell 0', `createContainer pod-inside app aurae-disk:${DIGEST}`]);
    expect(await both.startContainer('inside', 'app')).toMatchObject({ state: 'running' });
  });
});

describe('the image share', () => {
  it('the child finds a shared image when no disk has its label (the share mounted once)', () => {
    const label = rootfsDiskLabel(DIGEST);
    const mounted: string[] = [];
    const h: DiskHost = {
      devices: () => ['vda'],
      superblock: () => null,
      isMounted: (target) => mounted.includes(target),
      mountReadOnly: () => {
        throw new Error('no disk to mount');
      },
      readFile: (file) => (file === `/run/share/${label}/aurae-image.json` ? JSON.stringify({ digest: DIGEST, name: 'busybox', config: record().config }) : ''),
      mountShare: (tag, target, writable) => void mounted.push(target, `${tag}${writable ? ' rw' : ''}`),
      exists: (file) => file === `/run/share/${label}/aurae-image.json`,
    };
    const images = withDiskImages(fakeImages().images, h, '/run/disks', '/run/share', '/run/vols');
    const r = images.get(diskImageRef(DIGEST))!;
    expect(r).toMatchObject({ digest: DIGEST, name: 'busybox' });
    expect(images.lowerDirs(r)).toEqual([`/run/share/${label}/rootfs`]);
    // With the image share, the volumes share, writable (containers' host path mounts name files there).
    expect(mounted).toEqual(['/run/share', 'aurae-images', '/run/vols', 'aurae-volumes rw']);
    expect(() => images.get(diskImageRef(`sha256:${'56'.repeat(32)}`))).toThrow(/nor shared in aurae-images/);
    expect(mounted).toHaveLength(4);
  });

  it('shares a directory read-only over virtio-9p (qemu argv of a child VM)', () => {
    const vmSpec = childVmSpec(
      { name: 'pod-web', memoryMiB: 512, cpus: 1, restart: 'never', disks: [], shares: [{ tag: 'aurae-images', path: '/run/aurae/vm-pod-shares/web' }] },
      { kernel: '/k', initrd: '/i', rootDisk: null, bootDisk: null, accel: 'tcg', hostPort: 1, guestPort: 2, qmpSocket: '/q', payload: [{ name: 'opt/aurae/guest/0', file: '/p' }] },
    );
    const args = qemuArgs(vmSpec);
    const i = args.indexOf('-fsdev');
    expect(args.slice(i, i + 4)).toEqual([
      '-fsdev',
      'local,id=fs0,path=/run/aurae/vm-pod-shares/web,security_model=none,readonly=on,multidevs=remap',
      '-device',
      'virtio-9p-device,fsdev=fs0,mount_tag=aurae-images',
    ]);
    expect(() => qemuArgs({ ...vmSpec, shares: [{ tag: 'a,b', path: '/x' }] })).toThrow(/shares\[0\].tag/);
  });

  it("mounts an image's layers read-only in the pod's share with its description (the rootfs disk layout); removes them", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'share-'));
    try {
      const mounts: string[] = [];
      const calls: string[] = [];
      const share = nodePodImageShare({
        dir,
        lowerDirs: (image) => (image.digest === DIGEST ? ['/snap/b', '/snap/a'] : ['/snap/one']),
        mounts: () => mounts,
        sys: {
          mount: (source, target, fstype, flags, data) => {
            calls.push(`mount ${source} ${target} ${fstype} ${flags} ${data}`);
            if (!mounts.includes(target)) mounts.push(target);
          },
          umount2: (target) => {
            calls.push(`umount ${target}`);
            mounts.splice(mounts.indexOf(target), 1);
          },
        },
      });
      const label = rootfsDiskLabel(DIGEST);
      await share.add('web', record());
      await share.add('web', record()); // idempotent
      expect(calls).toEqual([`mount overlay ${dir}/web/${label}/rootfs overlay 1 lowerdir=/snap/b:/snap/a`]);
      expect(JSON.parse(fs.readFileSync(`${dir}/web/${label}/aurae-image.json`, 'utf8'))).toEqual({ digest: DIGEST, name: record().name, config: record().config });
      const single = `sha256:${'ab'.repeat(32)}`;
      await share.add('web', record(single));
      expect(calls.slice(1)).toEqual([`mount /snap/one ${dir}/web/${rootfsDiskLabel(single)}/rootfs null 4096 null`, `mount null ${dir}/web/${rootfsDiskLabel(single)}/rootfs null 4129 null`]);
      share.remove('web', DIGEST);
      expect(fs.existsSync(`${dir}/web/${label}`)).toBe(false);
      share.removeAll('web');
      expect(mounts).toEqual([]);
      expect(fs.existsSync(`${dir}/web`)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('CreateContainer carries the extensions as JSON, validated again by the child', () => {
    const c = validateCreateContainerRequest({
      container: { name: 'app', image: 'busybox', command: [], args: [], env: {}, workingDir: '', user: '', readOnlyRootfs: false },
      extensionsJson: containerExtensionsJson({ ...spec().containers[0]!, security: { capAdd: ['NET_ADMIN'] }, resources: { memoryLimit: 1 << 20 }, sysctls: { 'net.ipv4.ping_group_range': '0 0' } }),
    });
    expect(c).toMatchObject({ name: 'app', security: { capAdd: ['CAP_NET_ADMIN'] }, resources: { memoryLimit: 1 << 20 }, sysctls: { 'net.ipv4.ping_group_range': '0 0' } });
    const container = { name: 'app', image: 'busybox', command: [], args: [], env: {}, workingDir: '', user: '', readOnlyRootfs: false };
    expect(() => validateCreateContainerRequest({ container, extensionsJson: '{' })).toThrow(/^extensions_json: not JSON/);
    expect(() => validateCreateContainerRequest({ container, extensionsJson: '{"mounts":{}}' })).toThrow(/^extensions_json.mounts: must be a JSON array/);
    // Host path mounts only of the VM sandbox's volumes share: no other file of the node.
    expect(() => validateCreateContainerRequest({ container, extensionsJson: '{"mounts":[{"hostPath":"/etc","containerPath":"/x"}]}' })).toThrow(/^extensions_json.mounts\[0\].hostPath: only paths \/run\/aurae\/pod-volumes\/<container>\/<n>/);
    // Nor the whole share (every container's volumes), nor one container's folder of them.
    for (const hostPath of ['/run/aurae/pod-volumes/', '/run/aurae/pod-volumes/app', '/run/aurae/pod-volumes/app/']) {
      expect(() => validateCreateContainerRequest({ container, extensionsJson: JSON.stringify({ mounts: [{ hostPath, containerPath: '/x' }] }) })).toThrow(/^extensions_json.mounts\[0\].hostPath: only paths/);
    }
    const vol = { hostPath: '/run/aurae/pod-volumes/app/0', containerPath: '/etc/hosts', readonly: true, propagation: 'private' as const };
    expect(validateCreateContainerRequest({ container, extensionsJson: containerExtensionsJson({ ...spec().containers[0]!, mounts: [vol] }) }).mounts).toEqual([vol]);
    expect(() => validateCreateContainerRequest({ container, extensionsJson: '{"resources":{"memoryLimit":0}}' })).toThrow(/^container.resources.memoryLimit/);
    expect(containerExtensionsJson(spec().containers[0]!)).toBe('');
  });

  it("CreateSandbox carries the pod's hostname and DNS as JSON (the child's pod is a cell pod: it takes them)", () => {
    const withExt = { ...spec({ sandbox: 'cell', containers: [] }), hostname: 'web-0', dns: { servers: ['10.96.0.10'], searches: ['svc.local'], options: ['ndots:5'] } };
    const request = { pod: podSpecToProto(withExt), extensionsJson: podExtensionsJson(withExt) };
    expect(validateSandboxRequest(request)).toMatchObject({ name: 'web', hostname: 'web-0', dns: withExt.dns });
    expect(() => validateSandboxRequest({ ...request, extensionsJson: '{"publish":[]}' })).toThrow(/^extensions_json.publish: not an extension/);
    expect(() => validateSandboxRequest({ ...request, extensionsJson: '{"hostname":"-bad-"}' })).toThrow(/^pod.hostname/);
    expect(podExtensionsJson(spec())).toBe('');
  });
});

describe('VM sandbox volumes (host path mounts)', () => {
  const sandbox = () => spec({ containers: [] });
  const app = (over: Partial<PodSpec['containers'][number]> = {}): PodSpec['containers'][number] => ({ ...spec().containers[0]!, ...over });
  const kubelet: ContainerMount[] = [
    { hostPath: '/var/lib/kubelet/pods/u/etc-hosts', containerPath: '/etc/hosts', readonly: false, propagation: 'private' },
    { hostPath: '/var/lib/kubelet/pods/u/containers/app/1', containerPath: '/dev/termination-log', readonly: false, propagation: 'private' },
    { hostPath: '/var/lib/kubelet/pods/u/volumes/kubernetes.io~projected/token', containerPath: '/var/run/secrets/kubernetes.io/serviceaccount', readonly: true, propagation: 'private' },
  ];

  it('the VM gets a writable volumes share; a container\'s host paths are bound there and the child mounts those binds', async () => {
    const t = setup({ volumes: true });
    await t.runtime.createSandbox(sandbox());
    expect(t.vms.shares.get('pod-web')).toEqual([
      { tag: 'aurae-images', path: '/run/shares/web' },
      { tag: 'aurae-volumes', path: '/run/volumes/web', writable: true },
    ]);
    await t.runtime.createContainer('web', app({ mounts: kubelet }));
    expect(t.volumes!.calls).toEqual([`add web app ${kubelet.map((m) => `${m.hostPath}${m.readonly ? ':ro' : ''}`).join(' ')}`]);
    expect(t.agent.created.at(-1)!.mounts).toEqual([
      { hostPath: '/run/aurae/pod-volumes/app/0', containerPath: '/etc/hosts', readonly: false, propagation: 'private' },
      { hostPath: '/run/aurae/pod-volumes/app/1', containerPath: '/dev/termination-log', readonly: false, propagation: 'private' },
      { hostPath: '/run/aurae/pod-volumes/app/2', containerPath: '/var/run/secrets/kubernetes.io/serviceaccount', readonly: true, propagation: 'private' },
    ]);
    // This node keeps the container's own host paths (the CRI reports them).
    expect(t.runtime.get('web')!.spec.containers[0]!.mounts).toEqual(kubelet);
    await t.runtime.removeContainer('web', 'app', { force: true });
    expect(t.volumes!.calls.at(-1)).toBe('remove web app');
    await t.runtime.stop('web', 0);
    await t.runtime.remove('web', { force: false });
    expect(t.volumes!.calls.at(-1)).toBe('removeAll web');
  });

  it('a child that refuses the container: its binds are taken away again', async () => {
    const t = setup({ volumes: true });
    await t.runtime.createSandbox(sandbox());
    t.agent.createContainer = async () => Promise.reject(new AuraeError('INVALID_ARGUMENT', 'no'));
    await expect(t.runtime.createContainer('web', app({ mounts: kubelet }))).rejects.toThrow('no');
    expect(t.volumes!.calls.slice(-1)).toEqual(['remove web app']);
  });

  it('nodePodVolumeShare: a tmpfs per pod (nosuid, nodev) shared with the VM; recursive binds (read-only ones remounted), a file for a file; unmounts before it deletes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'volumes-'));
    try {
      const host = path.join(dir, 'host');
      fs.mkdirSync(path.join(host, 'dir'), { recursive: true });
      fs.writeFileSync(path.join(host, 'file'), 'x');
      const mounts: string[] = [];
      const calls: string[] = [];
      let stuck = false;
      const share = nodePodVolumeShare({
        dir: path.join(dir, 'vols'),
        stage: path.join(dir, 'stage'),
        mounts: () => mounts,
        sys: {
          mount: (source, target, fstype, flags, data) => {
            calls.push(`mount ${source?.replace(dir, '') ?? null} ${target.slice(dir.length)} ${fstype} ${flags} ${data}`);
            if (!mounts.includes(target)) mounts.push(target);
            // What a bind of the stage shows at the shared path (the test's plain directories stand in for mounts).
            if (source === path.join(dir, 'stage', 'web') && target === path.join(dir, 'vols', 'web')) {
              fs.rmSync(target, { recursive: true });
              fs.symlinkSync(source, target);
            }
          },
          umount2: (target) => {
            calls.push(`umount ${target.slice(dir.length)}`);
            if (!stuck) mounts.splice(mounts.indexOf(target), 1);
          },
        },
      });
      const list: ContainerMount[] = [
        { hostPath: path.join(host, 'file'), containerPath: '/etc/hosts', readonly: true, propagation: 'private' },
        { hostPath: path.join(host, 'dir'), containerPath: '/data', readonly: false, propagation: 'private' },
        { hostPath: path.join(host, 'new'), containerPath: '/new', readonly: false, propagation: 'private' },
      ];
      share.add('web', 'app', list);
      share.add('web', 'app', list); // idempotent
      expect(calls).toEqual([
        'mount tmpfs /stage/web tmpfs 6 size=1m,mode=0755',
        'mount /stage/web /vols/web null 4096 null',
        // nosuid, nodev; writable: the metadata of a bind's top (mapped-file) lives in the tmpfs.
        'mount null /vols/web null 4134 null',
        `mount /host/file /vols/web/app/0 null 20480 null`,
        'mount null /vols/web/app/0 null 4129 null',
        `mount /host/dir /vols/web/app/1 null 20480 null`,
        `mount /host/new /vols/web/app/2 null 20480 null`,
      ]);
      // The mount points are made in the stage (what the shared path shows).
      expect(fs.statSync(`${dir}/stage/web/app/0`).isFile()).toBe(true);
      expect(fs.statSync(`${dir}/stage/web/app/1`).isDirectory()).toBe(true);
      expect(fs.statSync(`${host}/new`).isDirectory()).toBe(true); // made, as containerd does
      // A bind that does not go away: nothing is deleted (never a recursive delete through a bind).
      stuck = true;
      expect(() => share.remove('web', 'app')).toThrow(/still mounted: nothing was deleted/);
      expect(fs.existsSync(`${dir}/stage/web/app/1`)).toBe(true);
      stuck = false;
      share.remove('web', 'app');
      expect(fs.existsSync(`${dir}/stage/web/app`)).toBe(false);
      expect(fs.readFileSync(`${host}/file`, 'utf8')).toBe('x');
      share.removeAll('web');
      expect(mounts).toEqual([]);
      expect(fs.existsSync(`${dir}/vols/web`)).toBe(false);
      expect(fs.existsSync(`${dir}/stage/web`)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a writable share is served with security_model=mapped-file, never none (qemu argv)', () => {
    const vmSpec = childVmSpec(
      { name: 'pod-web', memoryMiB: 512, cpus: 1, restart: 'never', disks: [], shares: [{ tag: 'aurae-volumes', path: '/run/aurae/vm-pod-volumes/web', writable: true }] },
      { kernel: '/k', initrd: '/i', rootDisk: null, bootDisk: null, accel: 'tcg', hostPort: 1, guestPort: 2, qmpSocket: '/q', payload: [{ name: 'opt/aurae/guest/0', file: '/p' }] },
    );
    const args = qemuArgs(vmSpec);
    expect(args[args.indexOf('-fsdev') + 1]).toBe('local,id=fs0,path=/run/aurae/vm-pod-volumes/web,security_model=mapped-file,fmode=0600,dmode=0700,multidevs=remap');
  });
});

describe('VM sandbox resources', () => {
  it('updateContainerResources: UNIMPLEMENTED saying why (NOT_FOUND for an unknown container)', async () => {
    const t = setup();
    await t.runtime.createSandbox(spec({ containers: [] }));
    await t.runtime.createContainer('web', spec().containers[0]!);
    await expect(t.runtime.updateContainerResources('web', 'app', { cpuShares: 2 })).rejects.toMatchObject({ code: 'UNIMPLEMENTED', message: expect.stringMatching(/runs in a VM sandbox .*cannot be changed in place/) });
    await expect(t.runtime.updateContainerResources('web', 'nope', { cpuShares: 2 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
