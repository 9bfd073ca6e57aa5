// Pods runtime, unit tier: the spec check, the container's process and user, crun's executable and its start
// script (run for real with a stand-in crun), the reconcile plan, and the runtime over the real CellRuntime with
// fakes underneath (in-memory cgroupfs, fake launcher, fake images, fake node host; files in a temp directory).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CellRuntime, memoryCellStore, sqliteCellStore, type CellStore } from '../cells';
import { CgroupTree } from '../cgroup';
import { FakeCgroupFs } from '../cgroup/testing';
import { FakeClock, FakeLauncher, flush, MemoryEventBus, MemoryLogStore } from '../executables/testing';
import type { Pod } from '../gen/aurae/pods/v0/pods';
import type { ImageRecord, ImageRuntimeConfig, PullProgress } from '../images';
import { silentLogger } from '../log';
import { migrate, openDatabase } from '../store';
import { containerProcess, resolveUser } from './container-config';
import { containerCgroupLimits, containerId, containerSpecInput, crunExecutable, podPaths, START_SCRIPT, stopSignalOf } from './crun';
import { parseMountInfo, type PodHost } from './host';
import { podReconcilePlan } from './reconcile';
import { createPodRuntime, podState, type PodRuntime } from './runtime';
import { ALL_CAPABILITIES, MASKED_PATHS, ociSpec } from './oci-spec';
import { type ContainerInput, type ContainerSpec, type PodSpec, validateContainerSpec, validatePodSpec, validateSandboxSpec } from './spec';
import { memoryPodStore, PODS_MIGRATIONS, type PodStore, sqlitePodStore } from './store';
import { sandboxedPodRuntime } from './vm-sandbox';
import { FakePodNetwork } from './testing';

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-pods-'));
  tmpDirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of tmpDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function rejects(fn: () => unknown, code: string, pattern: RegExp) {
  try {
    fn();
  } catch (err) {
    expect((err as { code: string }).code).toBe(code);
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('accepted');
}

const container = (extra: Partial<Pod['containers'][number]> = {}): Pod['containers'][number] => ({
  name: 'app',
  image: 'busybox',
  command: [],
  args: [],
  env: {},
  workingDir: '',
  user: '',
  readOnlyRootfs: false,
  ...extra,
});
const pod = (extra: Partial<Pod> = {}): Pod => ({ name: 'web', sandbox: '', containers: [container()], env: {}, restart: '', expose: [], publish: [], ...extra });

describe('validatePodSpec', () => {
  it('fills the defaults and keeps what was given', () => {
    expect(validatePodSpec(pod())).toEqual({
      name: 'web',
      sandbox: 'cell',
      containers: [{ name: 'app', image: 'busybox', command: null, args: null, env: {}, workingDir: null, user: null, readOnlyRootfs: false }],
      env: {},
      restart: 'never',
      limits: { memoryMax: null, pidsMax: null, cpuWeight: null },
    });
    const full = validatePodSpec(
      pod({
        sandbox: 'cell',
        restart: 'on-failure',
        env: { A: '1' },
        limits: { memoryMax: 64n << 20n, pidsMax: 100n, cpuWeight: 50n },
        expose: [80],
        containers: [container({ command: ['/bin/sh', '-c'], args: ['echo hi'], env: { B: '2' }, workingDir: '/srv', user: 'www-data:web', readOnlyRootfs: true })],
      }),
    );
    expect(full).toMatchObject({ restart: 'on-failure', env: { A: '1' }, limits: { memoryMax: 64 << 20, pidsMax: 100, cpuWeight: 50 }, expose: [80] });
    expect(full.containers[0]).toEqual({ name: 'app', image: 'busybox', command: ['/bin/sh', '-c'], args: ['echo hi'], env: { B: '2' }, workingDir: '/srv', user: 'www-data:web', readOnlyRootfs: true });
  });

  it('names the bad field and what is allowed', () => {
    rejects(() => validatePodSpec(undefined), 'INVALID_ARGUMENT', /^pod: required/);
    rejects(() => validatePodSpec(pod({ name: 'Web' })), 'INVALID_ARGUMENT', /^name: "Web" is not a DNS label/);
    rejects(() => validatePodSpec(pod({ name: 'a/b' })), 'INVALID_ARGUMENT', /^name: /);
    expect(validatePodSpec(pod({ sandbox: 'vm' })).sandbox).toBe('vm');
    rejects(() => validatePodSpec(pod({ sandbox: 'vm', name: 'a'.repeat(60) })), 'INVALID_ARGUMENT', /^name: "a+" is too long for sandbox "vm": at most 59/);
    rejects(() => validatePodSpec(pod({ sandbox: 'jail' })), 'INVALID_ARGUMENT', /^sandbox: "jail" is not a sandbox/);
    rejects(() => validatePodSpec(pod({ restart: 'sometimes' })), 'INVALID_ARGUMENT', /^restart: "sometimes" is not a restart policy: "never", "on-failure" or "always"/);
    rejects(() => validatePodSpec(pod({ containers: [] })), 'INVALID_ARGUMENT', /^containers: required: at least one container/);
    rejects(() => validatePodSpec(pod({ containers: Array.from({ length: 17 }, (_, i) => container({ name: `c${i}` })) })), 'INVALID_ARGUMENT', /^containers: at most 16/);
    rejects(() => validatePodSpec(pod({ containers: [container(), container()] })), 'INVALID_ARGUMENT', /^containers\[1\]\.name: "app" is used twice/);
    rejects(() => validatePodSpec(pod({ containers: [container({ name: '' })] })), 'INVALID_ARGUMENT', /^containers\[0\]\.name: required/);
    rejects(() => validatePodSpec(pod({ containers: [container({ image: '' })] })), 'INVALID_ARGUMENT', /^containers\[0\]\.image: required/);
    rejects(() => validatePodSpec(pod({ containers: [container({ image: 'bad ref' })] })), 'INVALID_ARGUMENT', /^containers\[0\]\.image: "bad ref" is not an image reference/);
    rejects(() => validatePodSpec(pod({ containers: [container({ command: [''] })] })), 'INVALID_ARGUMENT', /^containers\[0\]\.command\[0\]: the program must not be empty/);
    rejects(() => validatePodSpec(pod({ containers: [container({ args: ['a\0b'] })] })), 'INVALID_ARGUMENT', /^containers\[0\]\.args\[0\]: NUL/);
    rejects(() => validatePodSpec(pod({ containers: [container({ workingDir: 'srv' })] })), 'INVALID_ARGUMENT', /^containers\[0\]\.working_dir: "srv" is not an absolute path/);
    rejects(() => validatePodSpec(pod({ containers: [container({ workingDir: '/a/../b' })] })), 'INVALID_ARGUMENT', /^containers\[0\]\.working_dir: .*"\.\."/);
    rejects(() => validatePodSpec(pod({ containers: [container({ user: 'a:b:c' })] })), 'INVALID_ARGUMENT', /^containers\[0\]\.user: "a:b:c" is not a user/);
    rejects(() => validatePodSpec(pod({ containers: [container({ env: { '1X': 'y' } })] })), 'INVALID_ARGUMENT', /^containers\[0\]\.env: "1X" is not a variable name/);
    rejects(() => validatePodSpec(pod({ env: { A: 'x\0' } })), 'INVALID_ARGUMENT', /^env\[A\]: NUL/);
    rejects(() => validatePodSpec(pod({ limits: { pidsMax: 0n } })), 'INVALID_ARGUMENT', /^limits\.pids_max: /);
    rejects(() => validatePodSpec(pod({ limits: { cpuWeight: 10_001n } })), 'INVALID_ARGUMENT', /^limits\.cpu_weight: /);
    rejects(() => validatePodSpec(pod({ limits: { memoryMax: -1n } })), 'INVALID_ARGUMENT', /^limits\.memory_max: /);
  });
});

const imageConfig = (extra: Partial<ImageRuntimeConfig> = {}): ImageRuntimeConfig => ({
  entrypoint: [],
  cmd: ['sh'],
  env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'FROM_IMAGE=1', 'SHARED=image'],
  workingDir: '',
  user: '',
  exposedPorts: [],
  labels: {},
  stopSignal: '',
  ...extra,
});
const spec = (extra: Partial<ContainerSpec> = {}): ContainerSpec => ({ name: 'app', image: 'busybox', command: null, args: null, env: {}, workingDir: null, user: null, readOnlyRootfs: false, ...extra });

describe('containerProcess', () => {
  const p = { name: 'web', env: { SHARED: 'pod', POD: '1' } };

  it('follows Kubernetes: command replaces Entrypoint (and drops Cmd without args), args replace Cmd', () => {
    const img = imageConfig({ entrypoint: ['/entry'], cmd: ['--default'] });
    expect(containerProcess(img, p, spec()).args).toEqual(['/entry', '--default']);
    expect(containerProcess(img, p, spec({ args: ['--x'] })).args).toEqual(['/entry', '--x']);
    expect(containerProcess(img, p, spec({ command: ['/other'] })).args).toEqual(['/other']);
    expect(containerProcess(img, p, spec({ command: ['/other'], args: ['a'] })).args).toEqual(['/other', 'a']);
    rejects(() => containerProcess(imageConfig({ cmd: [] }), p, spec()), 'FAILED_PRECONDITION', /container "app": its image busybox has neither Entrypoint nor Cmd: give the container a command/);
  });

  it("layers the environment: image, HOSTNAME, pod, container (later wins, first position kept)", () => {
    const env = containerProcess(imageConfig(), p, spec({ env: { SHARED: 'container', OWN: 'x' } })).env;
    expect(env).toEqual(['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'FROM_IMAGE=1', 'SHARED=container', 'HOSTNAME=web', 'POD=1', 'OWN=x']);
    expect(containerProcess(imageConfig({ env: [] }), p, spec()).env[0]).toMatch(/^PATH=\/usr\/local\/sbin:/);
  });

  it('takes the working dir and user from the spec, else the image, else / and root', () => {
    expect(containerProcess(imageConfig(), p, spec())).toMatchObject({ cwd: '/', user: '' });
    expect(containerProcess(imageConfig({ workingDir: '/srv', user: '33' }), p, spec())).toMatchObject({ cwd: '/srv', user: '33' });
    expect(containerProcess(imageConfig({ workingDir: '/srv', user: '33' }), p, spec({ workingDir: '/tmp', user: 'root' }))).toMatchObject({ cwd: '/tmp', user: 'root' });
  });
});

describe('resolveUser', () => {
  const files = {
    passwd: 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\n# comment\nbroken:line\n',
    group: 'root:x:0:\nwww-data:x:33:\nweb:x:100:www-data,other\nlog:x:4:www-data\n',
  };
  it('resolves names through the image, numbers directly', () => {
    expect(resolveUser('', files, 'c')).toEqual({ uid: 0, gid: 0, additionalGids: [] });
    expect(resolveUser('www-data', files, 'c')).toEqual({ uid: 33, gid: 33, additionalGids: [4, 100] });
    expect(resolveUser('www-data:web', files, 'c')).toEqual({ uid: 33, gid: 100, additionalGids: [4] });
    expect(resolveUser('33', files, 'c')).toEqual({ uid: 33, gid: 33, additionalGids: [4, 100] });
    expect(resolveUser('1000', files, 'c')).toEqual({ uid: 1000, gid: 1000, additionalGids: [] });
    expect(resolveUser('1000:5', { passwd: null, group: null }, 'c')).toEqual({ uid: 1000, gid: 5, additionalGids: [] });
  });
  it('refuses names the image does not define, saying what to do', () => {
    rejects(() => resolveUser('nobody', files, 'pod "p": container "c"'), 'FAILED_PRECONDITION', /^pod "p": container "c": user "nobody": no user "nobody" in the image's \/etc\/passwd: use a numeric uid/);
    rejects(() => resolveUser('33:staff', files, 'c'), 'FAILED_PRECONDITION', /no group "staff" in the image's \/etc\/group/);
    rejects(() => resolveUser('4294967295', files, 'c'), 'FAILED_PRECONDITION', /out of range/);
  });
});

describe('crun executable and its start script', () => {
  it("is the pod cell's executable running the script with the container's id, bundle and the pod's policy", () => {
    const paths = podPaths('/var/lib/aurae/pods', 'web', '/run/aurae/pods');
    const exe = crunExecutable({ crun: '/usr/bin/crun', pod: { name: 'web', restart: 'always' }, container: 'app', paths: paths.container('app'), ready: paths.ready, pidFile: paths.pidFile('app') });
    expect(exe).toMatchObject({ name: 'app', command: '', cwd: '/', uid: null, restart: { mode: 'always' }, stopSignal: 'SIGTERM' });
    expect(exe.args).toEqual(['/bin/sh', '-c', START_SCRIPT, 'aurae-container', '/run/aurae/pods/web/ready', 'web.app', '/var/lib/aurae/pods/web/app', '/usr/bin/crun', '/run/aurae/crun', '/run/aurae/pods/web/app.pid']);
    expect(crunExecutable({ crun: 'c', pod: { name: 'web', restart: 'never' }, container: 'app', paths: paths.container('app'), ready: paths.ready, pidFile: 'p', stopSignal: 'SIGQUIT' }).stopSignal).toBe('SIGQUIT');
    expect(containerId('web', 'app')).toBe('web.app');
    expect(paths.ns).toEqual({ net: '/run/aurae/pods/web/ns/net', ipc: '/run/aurae/pods/web/ns/ipc', uts: '/run/aurae/pods/web/ns/uts' });
  });

  it("stopSignalOf: the image's StopSignal by name, short name or number; SIGTERM when unset; null when unknown", () => {
    expect(stopSignalOf('')).toBe('SIGTERM');
    expect(stopSignalOf('SIGQUIT')).toBe('SIGQUIT');
    expect(stopSignalOf('quit')).toBe('SIGQUIT');
    expect(stopSignalOf('3')).toBe('SIGQUIT');
    expect(stopSignalOf(' SIGWINCH ')).toBe('SIGWINCH');
    expect(stopSignalOf('SIGNOPE')).toBeNull();
    expect(stopSignalOf('999')).toBeNull();
  });

  it('waits for the ready marker, clears stale crun state, then execs crun run in the foreground', async () => {
    const dir = tmpDir();
    const calls = path.join(dir, 'calls');
    const ready = path.join(dir, 'ready');
    // Stand-ins on PATH: crun records its arguments; sleep records itself and makes the pod ready on its third call.
    const crun = path.join(dir, 'crun');
    fs.writeFileSync(crun, `#!/bin/sh\necho "crun $*" >> ${calls}\ncase "$*" in *" run "*) echo container-output; exit 7;; esac\n`, { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'sleep'), `#!/bin/sh\necho "sleep $*" >> ${calls}\n[ "$(grep -c sleep ${calls})" -ge 3 ] && : > ${ready}\nexit 0\n`, { mode: 0o755 });
    fs.mkdirSync(path.join(dir, 'state', 'web.app'), { recursive: true }); // a killed crun's state
    const pidFile = path.join(dir, 'app.pid');
    fs.writeFileSync(pidFile, '1'); // a previous run's: removed before crun runs
    const exe = crunExecutable({ crun, stateRoot: path.join(dir, 'state'), pod: { name: 'web', restart: 'never' }, container: 'app', paths: { bundle: path.join(dir, 'bundle') }, ready, pidFile });
    const { code, stdout } = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(exe.args[0]!, exe.args.slice(1), { env: { PATH: `${dir}:${process.env.PATH}` } }, (err, out) => resolve({ code: err ? Number(err.code) : 0, stdout: out }));
    });
    expect(code).toBe(7); // crun's (the container's) exit status is the executable's
    expect(stdout).toBe('container-output\n');
    expect(fs.readFileSync(calls, 'utf8').trim().split('\n')).toEqual([
      'sleep 0.1',
      'sleep 0.1',
      'sleep 0.1',
      `crun --root ${dir}/state delete --force web.app`,
      `crun --root ${dir}/state --cgroup-manager=disabled run --pid-file ${dir}/app.pid --bundle ${dir}/bundle web.app`,
    ]);
    expect(fs.existsSync(pidFile)).toBe(false);
  });
});

describe('parseMountInfo', () => {
  it('maps mount points (unescaped) to their filesystem type', () => {
    const text = [
      '22 1 0:21 / / rw shared:1 - rootfs rootfs rw',
      '45 26 0:4 net:[4026532179] /run/aurae/pods/web/ns/net rw - nsfs nsfs rw',
      '50 30 0:40 / /var/lib/aurae/pods/my\\040pod/app/rootfs rw,relatime - overlay overlay rw,lowerdir=/a',
      '',
    ].join('\n');
    expect([...parseMountInfo(text)]).toEqual([
      ['/', 'rootfs'],
      ['/run/aurae/pods/web/ns/net', 'nsfs'],
      ['/var/lib/aurae/pods/my pod/app/rootfs', 'overlay'],
    ]);
  });
});

describe('podReconcilePlan', () => {
  const paths = (p: string) => podPaths('/s/pods', p, '/run/pods');
  const web = validatePodSpec(pod({ containers: [container(), container({ name: 'side' })] }));
  const base = { cells: new Set<string>(), executables: new Map<string, Set<string>>(), mounts: new Map<string, string>(), ready: new Set<string>(), podDirs: [] as string[], paths };

  it('after a reboot: recreate the cell, pin, mount, rewrite the bundles, mark ready; containers the cells restart are left to them', () => {
    expect(podReconcilePlan({ ...base, pods: [{ spec: web, desiredRunning: true }], cells: new Set(['web']), executables: new Map([['web', new Set(['app'])]]) })).toEqual([
      { kind: 'pin_namespaces', pod: 'web' },
      { kind: 'connect_network', pod: 'web' },
      { kind: 'mount_rootfs', pod: 'web', container: 'app' },
      { kind: 'mount_rootfs', pod: 'web', container: 'side' },
      { kind: 'write_bundle', pod: 'web', container: 'app' },
      { kind: 'write_bundle', pod: 'web', container: 'side' },
      { kind: 'mark_ready', pod: 'web' },
      { kind: 'start_container', pod: 'web', container: 'side' },
    ]);
    expect(podReconcilePlan({ ...base, pods: [{ spec: web, desiredRunning: true }] })[0]).toEqual({ kind: 'create_cell', pod: 'web' });
  });

  it('after an auraed restart (mounts and marker still there): only checks the network and marks ready again', () => {
    const p = paths('web');
    const mounts = new Map([...Object.values(p.ns).map((f) => [f, 'nsfs'] as const), [p.container('app').rootfs, 'overlay'], [p.container('side').rootfs, 'overlay']]);
    expect(
      podReconcilePlan({ ...base, pods: [{ spec: web, desiredRunning: true }], cells: new Set(['web']), executables: new Map([['web', new Set(['app', 'side'])]]), mounts, ready: new Set(['web']) }),
    ).toEqual([{ kind: 'connect_network', pod: 'web' }, { kind: 'mark_ready', pod: 'web' }]);
  });

  it('leaves stopped pods alone and removes the files of pods not stored, unmounting deepest first', () => {
    const gone = paths('gone');
    const mounts = new Map([[gone.container('a').rootfs, 'overlay'], [gone.ns.net, 'nsfs'], ['/s/pods/gone-but-not-this/x', 'overlay']]);
    expect(podReconcilePlan({ ...base, pods: [{ spec: web, desiredRunning: false }], podDirs: ['web', 'gone'], mounts })).toEqual([
      { kind: 'remove_stray', pod: 'gone', unmount: ['/s/pods/gone/a/rootfs', '/run/pods/gone/ns/net'] },
    ]);
  });
});

// --- the runtime over the real CellRuntime ----------------------------------------------------------------------

const CGROUP_ROOT = '/sys/fs/cgroup';

class FakeImages {
  readonly records = new Map<string, ImageRecord>();
  readonly retained = new Map<string, string>();
  pulls: string[] = [];
  failPull: Error | null = null;
  constructor(private readonly lower: string) {}
  add(ref: string, config: Partial<ImageRuntimeConfig> = {}): ImageRecord {
    const digest = `sha256:${String(this.records.size + 1).padStart(64, '0')}`;
    const r: ImageRecord = { name: ref, tags: ['latest'], digest, configDigest: digest, config: imageConfig(config), layers: [], size: 10, pulledAt: 0 };
    this.records.set(ref, r);
    return r;
  }
  get(ref: string): ImageRecord | undefined {
    return this.records.get(ref) ?? [...this.records.values()].find((r) => r.digest === ref);
  }
  async pull(ref: string, opts?: { onProgress?: (p: PullProgress) => void }): Promise<ImageRecord> {
    this.pulls.push(ref);
    if (this.failPull) throw this.failPull;
    opts?.onProgress?.({ layer: 'sha256:aa', done: 5, total: 10, state: 'downloading' });
    opts?.onProgress?.({ layer: 'sha256:aa', done: 10, total: 10, state: 'done' });
    return this.add(ref);
  }
  lowerDirs(): string[] {
    return [this.lower];
  }
  retain(digest: string, holder: string): void {
    this.retained.set(holder, digest);
  }
  release(holder: string): void {
    this.retained.delete(holder);
  }
}

/** The node as the runtime sees it: a mount table; an "overlay" copies the lower dir into the target. */
class FakeHost implements PodHost {
  table = new Map<string, string>();
  pins: string[] = [];
  deleted: string[] = [];
  async pinNamespaces(files: { net: string; ipc: string; uts: string }, hostname: string): Promise<void> {
    this.pins.push(hostname);
    for (const f of Object.values(files)) {
      fs.mkdirSync(path.dirname(f), { recursive: true });
      fs.writeFileSync(f, '');
      this.table.set(f, 'nsfs');
    }
  }
  mounts(): Map<string, string> {
    return new Map(this.table);
  }
  mountOverlay(plan: { target: string; data: string }): void {
    const lower = /lowerdir=([^,]+)/.exec(plan.data)![1]!;
    fs.cpSync(lower, plan.target, { recursive: true });
    this.table.set(plan.target, 'overlay');
  }
  unmount(target: string): void {
    if (this.table.get(target) === 'overlay') fs.rmSync(target, { recursive: true, force: true }), fs.mkdirSync(target);
    this.table.delete(target);
  }
  async crunDelete(_crun: string, _root: string, id: string): Promise<void> {
    this.deleted.push(id);
  }
}

function world(options: { db?: ReturnType<typeof openDatabase>; dir?: string; host?: FakeHost; images?: FakeImages; network?: FakePodNetwork } = {}) {
  const dir = options.dir ?? tmpDir();
  const lower = path.join(dir, 'lower');
  fs.mkdirSync(path.join(lower, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n');
  fs.writeFileSync(path.join(lower, 'etc/group'), 'root:x:0:\nwww-data:x:33:\n');
  const cgfs = new FakeCgroupFs(CGROUP_ROOT);
  const launcher = new FakeLauncher();
  launcher.onLaunch = (p) => {
    cgfs.addProc(p.plan.args[1]!, p.pid);
    void p.exited.then(() => cgfs.removeProc(p.pid));
  };
  cgfs.onKill = (pids) => pids.forEach((pid) => launcher.byPid(pid)?.signal('SIGKILL'));
  const events = new MemoryEventBus();
  const logs = new MemoryLogStore();
  const cellStore: CellStore = options.db ? sqliteCellStore(options.db) : memoryCellStore();
  const podStore: PodStore = options.db ? sqlitePodStore(options.db) : memoryPodStore();
  const cgroups = new CgroupTree({ fs: cgfs, root: CGROUP_ROOT, log: silentLogger, sleep: async () => {} });
  const cells = new CellRuntime({ cgroups, store: cellStore, events, logs, log: silentLogger, launcher, clock: new FakeClock(), helper: '/usr/lib/aurae/aurae-exec', signal: launcher.signal });
  const images = options.images ?? new FakeImages(lower);
  const host = options.host ?? new FakeHost();
  const network = options.network ?? new FakePodNetwork();
  const oomWrites: [number, number][] = [];
  const runtime: PodRuntime = createPodRuntime({
    store: podStore,
    dir: path.join(dir, 'state'),
    images,
    cells,
    observe: { events },
    log: silentLogger,
    host,
    network,
    crun: '/usr/bin/crun',
    runDir: path.join(dir, 'run'),
    clock: () => 1_700_000_000_000,
    cgroups,
    setOomScoreAdj: (pid, value) => void oomWrites.push([pid, value]),
  });
  const run = path.join(dir, 'run');
  /** What crun does once the container runs: write its pid (a live one: the runtime checks it). */
  const crunStarted = (pod: string, container: string, pid = process.pid) => fs.writeFileSync(path.join(run, pod, `${container}.pid`), String(pid));
  return { dir, cgfs, launcher, events, logs, cells, images, host, network, runtime, state: path.join(dir, 'state'), run, crunStarted, oomWrites, podStore };
}

/** Wait (bounded) until the runtime published an event of this kind: inotify delivers crun's pid file asynchronously. */
async function eventOf(events: MemoryEventBus, kind: string, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = events.events.find((e) => e.kind === kind);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no ${kind} event within ${timeoutMs} ms (events: ${events.kinds().join(', ')})`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('PodRuntime', () => {
  it('runs a pod: pulls (progress forwarded), retains, allocates the cell with the limits, prepares and starts crun', async () => {
    const w = world();
    await w.cells.init();
    const progress: string[] = [];
    const spec = validatePodSpec(pod({ env: { GREETING: 'hi' }, limits: { memoryMax: 64n << 20n, pidsMax: 50n }, containers: [container({ user: 'www-data', args: ['echo', 'x'] })] }));
    const status = await w.runtime.run(spec, { onProgress: (p) => progress.push(`${p.image} ${p.state} ${p.done}/${p.total}`) });
    expect(progress).toEqual(['busybox downloading 5/10', 'busybox done 10/10']);
    expect(w.images.retained).toEqual(new Map([['pod:web/app', w.images.get('busybox')!.digest]]));
    // The start script runs, but crun has not started the container yet: created, the pod pending.
    expect(status).toMatchObject({ name: 'web', sandbox: 'cell', state: 'pending', createdAt: 1_700_000_000_000, spec });
    expect(status.containers).toEqual([{ name: 'app', image: 'busybox', imageDigest: w.images.get('busybox')!.digest, state: 'created', pid: 1000, exit: null, restarts: 0, createdAt: 1_700_000_000_000, startedAt: null, finishedAt: null }]);
    w.crunStarted('web', 'app');
    expect(w.runtime.get('web')).toMatchObject({ state: 'running', containers: [{ state: 'running', pid: 1000 }] });
    // The cell: the pod's limits, no isolation of its own; one executable per container.
    expect(w.cells.get('web').spec).toEqual({ name: 'web', isolation: { pid: false, mount: false, uts: false, ipc: false, network: false }, memory: { max: 64 << 20 }, pids: { max: 50 } });
    expect(w.cgfs.read(`${CGROUP_ROOT}/aurae/web/memory.max`).trim()).toBe(String(64 << 20));
    const argv = w.launcher.last.plan.args;
    expect(argv.slice(0, 2)).toEqual(['--cgroup', `${CGROUP_ROOT}/aurae/web/exe.app`]);
    expect(argv.slice(argv.indexOf('--') + 1)).toEqual(['/bin/sh', '-c', START_SCRIPT, 'aurae-container', `${w.run}/web/ready`, 'web.app', `${w.state}/pods/web/app`, '/usr/bin/crun', '/run/aurae/crun', `${w.run}/web/app.pid`]);
    // The sandbox and the bundle.
    expect(w.host.pins).toEqual(['web']);
    expect(w.host.table.get(`${w.state}/pods/web/app/rootfs`)).toBe('overlay');
    expect(fs.existsSync(`${w.run}/web/ready`)).toBe(true);
    const config = JSON.parse(fs.readFileSync(`${w.state}/pods/web/app/config.json`, 'utf8'));
    expect(config.process).toMatchObject({ args: ['echo', 'x'], user: { uid: 33, gid: 33 }, cwd: '/', terminal: false });
    expect(config.process.env).toEqual(['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'FROM_IMAGE=1', 'SHARED=image', 'HOSTNAME=web', 'GREETING=hi']);
    expect(config.root).toEqual({ path: `${w.state}/pods/web/app/rootfs`, readonly: false });
    expect(config.linux.namespaces).toEqual([
      { type: 'pid' },
      { type: 'mount' },
      { type: 'cgroup' },
      { type: 'network', path: `${w.run}/web/ns/net` },
      { type: 'ipc', path: `${w.run}/web/ns/ipc` },
      { type: 'uts', path: `${w.run}/web/ns/uts` },
    ]);
    expect(config.hostname).toBeUndefined(); // the pinned UTS namespace has it
  });

  it('reports exits: succeeded when every container exited 0, failed otherwise; uses stored images without pulling', async () => {
    const w = world();
    await w.cells.init();
    w.images.add('busybox');
    await w.runtime.run(validatePodSpec(pod({ containers: [container(), container({ name: 'b' })] })));
    expect(w.images.pulls).toEqual([]);
    w.crunStarted('web', 'b');
    w.launcher.processes[0]!.exit(0, null);
    await flush();
    expect(w.runtime.get('web')!.state).toBe('running');
    w.launcher.processes[1]!.exit(0, null);
    await flush();
    expect(w.runtime.get('web')).toMatchObject({ state: 'succeeded', containers: [{ state: 'exited', exit: { code: 0, signal: null, oomKilled: false } }, { state: 'exited' }] });
    await w.runtime.run(validatePodSpec(pod({ name: 'bad' })));
    w.launcher.last.exit(3, null);
    await flush();
    expect(w.runtime.get('bad')).toMatchObject({ state: 'failed', containers: [{ state: 'failed', exit: { code: 3 } }] });
    expect(w.runtime.list().map((p) => p.name)).toEqual(['bad', 'web']);
  });

  it('refuses a second pod of the same name, even while the first is pulling', async () => {
    const w = world();
    await w.cells.init();
    const first = w.runtime.run(validatePodSpec(pod()));
    await expect(w.runtime.run(validatePodSpec(pod()))).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringMatching(/^pod "web" already exists: remove it first/) });
    await first;
  });

  it('a failed pull leaves nothing behind: no cell, no row, no files, nothing retained', async () => {
    const w = world();
    await w.cells.init();
    w.images.failPull = Object.assign(new Error('pulling busybox failed: registry unreachable'), { code: 'UNAVAILABLE' });
    await expect(w.runtime.run(validatePodSpec(pod()))).rejects.toThrow(/registry unreachable/);
    expect(w.runtime.list()).toEqual([]);
    expect(() => w.cells.get('web')).toThrow(/does not exist/);
    expect(w.images.retained.size).toBe(0);
    expect(fs.existsSync(`${w.state}/pods/web`)).toBe(false);
  });

  it('a failure while preparing undoes the cell, the mounts and the files', async () => {
    const w = world();
    await w.cells.init();
    await expect(w.runtime.run(validatePodSpec(pod({ containers: [container({ user: 'nobody' })] })))).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/user "nobody"/) });
    expect(() => w.cells.get('web')).toThrow(/does not exist/);
    expect([...w.host.table.keys()]).toEqual([]);
    expect(fs.existsSync(`${w.state}/pods/web`)).toBe(false);
    expect(fs.existsSync(`${w.run}/web`)).toBe(false);
    expect(w.images.retained.size).toBe(0);
    // The name is free again.
    await w.runtime.run(validatePodSpec(pod()));
  });

  it('stops with grace (SIGTERM, then the cgroup is killed) and keeps the pod as stopped', async () => {
    const w = world();
    await w.cells.init();
    await w.runtime.run(validatePodSpec(pod({ restart: 'always' })));
    w.launcher.last.onTerm = 'ignore';
    const stopping = w.runtime.stop('web', 2_000);
    await flush();
    expect(w.launcher.last.signals).toEqual(['SIGTERM']);
    expect(w.runtime.get('web')!.state).toBe('running');
    // The fake clock never fires the grace timer by itself: end it like cgroup.kill would.
    w.launcher.last.signal('SIGKILL');
    const status = await stopping;
    expect(status).toMatchObject({ state: 'stopped', containers: [{ state: 'exited', exit: { signal: 'SIGKILL' } }] });
    await expect(w.runtime.stop('nope', 0)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it("publishes the pod's life: image_pulled, container_created, container_started once crun wrote its pid, container_exited, container_oom_killed", async () => {
    const w = world();
    await w.cells.init();
    await w.runtime.run(validatePodSpec(pod({ restart: 'never' })));
    const record = w.images.get('busybox')!;
    const podEvents = () => w.events.events.filter((e) => e.kind.startsWith('image_') || e.kind.startsWith('container_'));
    expect(podEvents()).toEqual([
      expect.objectContaining({ kind: 'image_pulled', cell: 'web', pod: 'web', container: 'app', image: 'busybox', digest: record.digest, bytes: 10 }),
      expect.objectContaining({ kind: 'container_created', cell: 'web', pod: 'web', container: 'app', image: 'busybox', digest: record.digest }),
    ]);
    // The executable started (the script), crun not yet: no container_started.
    expect(w.events.kinds()).toContain('executable_started');
    w.crunStarted('web', 'app', process.pid);
    expect(await eventOf(w.events, 'container_started')).toMatchObject({ cell: 'web', pod: 'web', container: 'app', pid: process.pid });
    w.cgfs.oomKill(`${CGROUP_ROOT}/aurae/web/exe.app`);
    expect(w.events.events.at(-1)).toMatchObject({ kind: 'container_oom_killed', pod: 'web', container: 'app', count: 1 });
    w.launcher.last.exit(137, null); // crun: the container's init died of SIGKILL (128 + 9)
    await flush();
    expect(w.events.events.at(-1)).toMatchObject({ kind: 'container_exited', pod: 'web', container: 'app', pid: process.pid, code: 137, signal: null, oomKilled: true });
    expect(podEvents().map((e) => e.kind)).toEqual(['image_pulled', 'container_created', 'container_started', 'container_oom_killed', 'container_exited']);
    // The pid file of the ended run is gone: a restart is "created" until its crun writes a new one.
    expect(fs.existsSync(`${w.run}/web/app.pid`)).toBe(false);
    // A stored image is not pulled again: no image_pulled for the second pod.
    await w.runtime.run(validatePodSpec(pod({ name: 'again' })));
    expect(podEvents().filter((e) => e.kind === 'image_pulled')).toHaveLength(1);
    expect(podEvents().at(-1)).toMatchObject({ kind: 'container_created', pod: 'again' });
  });

  it('a container that ends before inotify reports its pid file still gets container_started, before container_exited', async () => {
    const w = world();
    await w.cells.init();
    await w.runtime.run(validatePodSpec(pod()));
    w.crunStarted('web', 'app', 4321); // crun wrote the pid, the container ran and ended at once
    w.launcher.last.exit(0, null);
    await flush();
    const kinds = w.events.events.filter((e) => e.kind.startsWith('container_')).map((e) => e.kind);
    expect(kinds).toEqual(['container_created', 'container_started', 'container_exited']);
    expect(w.events.events.at(-1)).toMatchObject({ kind: 'container_exited', pid: 4321, code: 0 });
  });

  it("stops with the image's StopSignal, sent to crun alone (it forwards it to the container), then the grace", async () => {
    const w = world();
    await w.cells.init();
    w.images.add('nginx', { stopSignal: 'SIGQUIT' });
    await w.runtime.run(validatePodSpec(pod({ containers: [container({ image: 'nginx' })] })));
    const crun = w.launcher.last;
    const stopping = w.runtime.stop('web', 30_000);
    await flush();
    expect(crun.signals).toEqual(['SIGQUIT']);
    expect(w.runtime.get('web')!.containers[0]!.state).toBe('running');
    crun.exit(0, null); // the container's init handled SIGQUIT and exited 0
    expect(await stopping).toMatchObject({ state: 'stopped', containers: [{ state: 'exited', exit: { code: 0, signal: null } }] });
    // An image whose StopSignal this node does not know stops with SIGTERM.
    w.images.add('odd', { stopSignal: 'SIGNOPE' });
    await w.runtime.run(validatePodSpec(pod({ name: 'odd', containers: [container({ image: 'odd' })] })));
    void w.runtime.stop('odd', 30_000);
    await flush();
    expect(w.launcher.last.signals).toEqual(['SIGTERM']);
  });

  it('remove: refused while a container runs unless forced; frees the cell, unmounts, deletes crun state and files, releases images', async () => {
    const w = world();
    await w.cells.init();
    await w.runtime.run(validatePodSpec(pod()));
    await expect(w.runtime.remove('web', { force: false })).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/^pod "web" has running containers \(app\): stop it first/) });
    await w.runtime.remove('web', { force: true });
    expect(w.runtime.get('web')).toBeUndefined();
    expect(() => w.cells.get('web')).toThrow(/does not exist/);
    expect(w.launcher.last.alive).toBe(false);
    expect([...w.host.table.keys()]).toEqual([]);
    expect(w.host.deleted).toEqual(['web.app']);
    expect(fs.existsSync(`${w.state}/pods/web`)).toBe(false);
    expect(fs.existsSync(`${w.run}/web`)).toBe(false);
    expect(w.images.retained.size).toBe(0);
    await expect(w.runtime.remove('web', { force: false })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // A stopped pod is removed without force.
    await w.runtime.run(validatePodSpec(pod({ name: 'done' })));
    w.launcher.last.exit(0, null);
    await flush();
    await w.runtime.remove('done', { force: false });
  });

  it('reconcile after a reboot: cells restart the containers, pods re-pin, remount, rewrite and mark ready', async () => {
    const dir = tmpDir();
    const db = openDatabase(':memory:');
    const before = world({ db, dir });
    await before.cells.init();
    await before.runtime.run(validatePodSpec(pod({ restart: 'always', containers: [container(), container({ name: 'side' })] })));
    const bundle = fs.readFileSync(`${before.state}/pods/web/app/config.json`, 'utf8');
    // The reboot: cgroups, mounts and /run are gone; the state directory and the database stay.
    fs.rmSync(before.run, { recursive: true });
    fs.rmSync(`${before.state}/pods/web/app/config.json`);
    const after = world({ db, dir, images: before.images });
    await after.cells.init();
    await flush();
    // The cells' reconcile already started both containers (their scripts wait for the ready marker).
    expect(after.launcher.processes.map((p) => p.plan.args.at(-6))).toEqual([`${after.run}/web/ready`, `${after.run}/web/ready`]);
    expect(fs.existsSync(`${after.run}/web/ready`)).toBe(false);
    await after.runtime.reconcile();
    expect(after.host.pins).toEqual(['web']);
    expect(after.host.table.get(`${after.state}/pods/web/side/rootfs`)).toBe('overlay');
    expect(fs.readFileSync(`${after.state}/pods/web/app/config.json`, 'utf8')).toBe(bundle);
    expect(fs.existsSync(`${after.run}/web/ready`)).toBe(true);
    expect(after.launcher.processes).toHaveLength(2); // nothing started twice
    after.crunStarted('web', 'app');
    expect(after.runtime.get('web')).toMatchObject({ state: 'running', createdAt: 1_700_000_000_000 });
    // Idempotent: a second reconcile (an auraed restart) only marks ready again.
    await after.runtime.reconcile();
    expect(after.host.pins).toEqual(['web']);
  });

  it('reconcile starts the containers a cut-short run never handed to the cell, and removes unstored pod directories', async () => {
    const dir = tmpDir();
    const db = openDatabase(':memory:');
    const w = world({ db, dir });
    await w.cells.init();
    w.images.add('busybox');
    sqlitePodStore(db).insert({ spec: validatePodSpec(pod()), desiredRunning: true, images: { app: w.images.get('busybox')!.digest }, createdAt: 5 });
    fs.mkdirSync(`${w.state}/pods/stray/app/rootfs`, { recursive: true });
    w.host.table.set(`${w.state}/pods/stray/app/rootfs`, 'overlay');
    const again = world({ db, dir, host: w.host, images: w.images });
    await again.cells.init();
    await again.runtime.reconcile();
    expect(again.runtime.get('web')).toMatchObject({ state: 'pending', createdAt: 5, containers: [{ state: 'created' }] });
    again.crunStarted('web', 'app');
    expect(again.runtime.get('web')).toMatchObject({ state: 'running', createdAt: 5 });
    expect(again.launcher.processes).toHaveLength(1);
    expect(fs.existsSync(`${w.state}/pods/stray`)).toBe(false);
    expect(w.host.table.has(`${w.state}/pods/stray/app/rootfs`)).toBe(false);
  });
});

describe('PodRuntime networking', () => {
  it('gives each pod an address, its /etc files as bind mounts, its published ports in the ruleset; stop and remove undo it', async () => {
    const w = world();
    await w.cells.init();
    const web = await w.runtime.run(validatePodSpec(pod({ expose: [9090], publish: [{ nodePort: 8080, podPort: 80, protocol: '' }], containers: [container(), container({ name: 'side' })] })));
    expect(web.ip).toBe('10.88.0.2');
    expect(w.network.calls.slice(0, 3)).toEqual(['ensureNode', 'connect web 10.88.0.2', 'ruleset web=10.88.0.2,8080:80/tcp,9090:9090/tcp']);
    expect(fs.readFileSync(`${w.run}/web/etc/hosts`, 'utf8')).toContain('10.88.0.2\tweb\n');
    expect(fs.readFileSync(`${w.run}/web/etc/hostname`, 'utf8')).toBe('web\n');
    expect(fs.readFileSync(`${w.run}/web/etc/resolv.conf`, 'utf8')).toBe('nameserver 8.8.8.8\nnameserver 8.8.4.4\n');
    for (const c of ['app', 'side']) {
      const mounts = JSON.parse(fs.readFileSync(`${w.state}/pods/web/${c}/config.json`, 'utf8')).mounts as { destination: string; source: string; type: string }[];
      expect(mounts.filter((m) => m.destination.startsWith('/etc/'))).toEqual([
        { destination: '/etc/hosts', type: 'bind', source: `${w.run}/web/etc/hosts`, options: ['rbind', 'rprivate'] },
        { destination: '/etc/resolv.conf', type: 'bind', source: `${w.run}/web/etc/resolv.conf`, options: ['rbind', 'rprivate'] },
        { destination: '/etc/hostname', type: 'bind', source: `${w.run}/web/etc/hostname`, options: ['rbind', 'rprivate'] },
      ]);
    }
    // A second pod: the next address; a node port another pod has is refused before anything is pulled or made.
    expect((await w.runtime.run(validatePodSpec(pod({ name: 'db' })))).ip).toBe('10.88.0.3');
    await expect(w.runtime.run(validatePodSpec(pod({ name: 'clash', expose: [9090] })))).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: 'pod "clash": publish: node port 9090/tcp is already published by pod "web": choose another node port, or remove pod "web" first',
    });
    expect(w.runtime.get('clash')).toBeUndefined();
    expect(w.network.ruleset!.map((p) => p.name)).toEqual(['web', 'db']);
    // Stop: the veth goes, the rules go; the address stays held until removal.
    await w.runtime.stop('web', 0);
    expect(w.network.connected.has('web')).toBe(false);
    expect(w.network.ruleset!.map((p) => p.name)).toEqual(['db']);
    expect(w.runtime.get('web')!.ip).toBe('10.88.0.2');
    await w.runtime.remove('web', { force: false });
    expect(w.runtime.get('web')).toBeUndefined();
    // The freed address is the lowest again.
    expect((await w.runtime.run(validatePodSpec(pod({ name: 'next' })))).ip).toBe('10.88.0.2');
    await w.runtime.remove('db', { force: true });
    expect(w.network.connected).toEqual(new Map([['next', '10.88.0.2']]));
    expect(w.network.ruleset!.map((p) => p.name)).toEqual(['next']);
  });

  it("refuses the node's reserved ports and frees the address of a run that failed", async () => {
    const w = world();
    await w.cells.init();
    const reserved = createPodRuntime({
      store: memoryPodStore(),
      dir: path.join(w.dir, 'state2'),
      images: w.images,
      cells: w.cells,
      log: silentLogger,
      host: w.host,
      network: w.network,
      reservedNodePorts: [{ port: 8443, protocol: 'tcp', why: 'the aurae API' }],
    });
    await expect(reserved.run(validatePodSpec(pod({ expose: [8443] })))).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringContaining("node port 8443/tcp is the node's own (the aurae API)") });
    // A bad user fails the run after the network was connected: undone, the address is free for the next pod.
    await expect(w.runtime.run(validatePodSpec(pod({ containers: [container({ user: 'nobody' })] })))).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect(w.network.connected.size).toBe(0);
    expect((await w.runtime.run(validatePodSpec(pod({ name: 'ok' })))).ip).toBe('10.88.0.2');
  });

  it('keeps the address across a restart (SQLite) and reconnects the pod on reconcile', async () => {
    const dir = tmpDir();
    const db = openDatabase(':memory:');
    const before = world({ db, dir });
    await before.cells.init();
    await before.runtime.run(validatePodSpec(pod({ name: 'a', restart: 'always' })));
    await before.runtime.run(validatePodSpec(pod({ name: 'b', restart: 'always', publish: [{ nodePort: 53, podPort: 5353, protocol: 'udp' }] })));
    expect(sqlitePodStore(db).addresses()).toEqual(new Map([['a', '10.88.0.2'], ['b', '10.88.0.3']]));
    fs.rmSync(before.run, { recursive: true }); // a reboot: /run is gone
    const after = world({ db, dir, images: before.images });
    await after.cells.init();
    await after.runtime.reconcile();
    expect(after.runtime.get('b')!.ip).toBe('10.88.0.3');
    expect(after.network.calls).toEqual(['ensureNode', 'connect a 10.88.0.2', 'ensureNode', 'connect b 10.88.0.3', 'ruleset a=10.88.0.2 b=10.88.0.3,53:5353/udp']);
    expect(fs.readFileSync(`${after.run}/b/etc/hosts`, 'utf8')).toContain('10.88.0.3\tb\n');
    // Removing frees the row.
    await after.runtime.remove('a', { force: true });
    expect(sqlitePodStore(db).addresses()).toEqual(new Map([['b', '10.88.0.3']]));
  });
});

describe('podState', () => {
  const exe = (state: string, code: number | null = null) => ({ state, lastExit: code === null ? null : { code, signal: null, oomKilled: false, time: 0 } }) as never;
  it('is a table over the containers', () => {
    expect(podState({ desiredRunning: true, creating: true }, [])).toBe('pending');
    expect(podState({ desiredRunning: true, creating: false }, [exe('starting')])).toBe('pending');
    expect(podState({ desiredRunning: true, creating: false }, [exe('starting'), exe('running')])).toBe('running');
    expect(podState({ desiredRunning: true, creating: false }, [exe('backoff', 1)])).toBe('running');
    expect(podState({ desiredRunning: true, creating: false }, [exe('exited', 0), exe('exited', 0)])).toBe('succeeded');
    expect(podState({ desiredRunning: true, creating: false }, [exe('exited', 0), exe('failed', 2)])).toBe('failed');
    expect(podState({ desiredRunning: false, creating: false }, [exe('stopping')])).toBe('running');
    expect(podState({ desiredRunning: false, creating: false }, [exe('stopped'), exe('exited', 0)])).toBe('stopped');
  });
});

// --- the incremental API (the CRI's): sandbox first, then containers one by one ------------------------------------

describe('validateSandboxSpec and validateContainerSpec', () => {
  it('a sandbox may have no containers; a container is checked alone, its fields named', () => {
    expect(validateSandboxSpec(pod({ containers: [] }))).toMatchObject({ name: 'web', sandbox: 'cell', containers: [], restart: 'never' });
    rejects(() => validateSandboxSpec(undefined), 'INVALID_ARGUMENT', /^pod: required/);
    rejects(() => validateSandboxSpec(pod({ containers: [], name: 'Web' })), 'INVALID_ARGUMENT', /^name: /);
    expect(validateContainerSpec(container({ name: 'c-0123456789ab' }))).toEqual({ name: 'c-0123456789ab', image: 'busybox', command: null, args: null, env: {}, workingDir: null, user: null, readOnlyRootfs: false });
    rejects(() => validateContainerSpec(undefined), 'INVALID_ARGUMENT', /^container: required/);
    rejects(() => validateContainerSpec(container({ image: '' })), 'INVALID_ARGUMENT', /^container\.image: required/);
    rejects(() => validateContainerSpec(container({ workingDir: 'x' }), 'config'), 'INVALID_ARGUMENT', /^config\.working_dir: "x" is not an absolute path/);
  });
});

const CREATED_AT = 1_700_000_000_000;

describe('PodRuntime, one container at a time', () => {
  const sandbox = (extra: Partial<Pod> = {}) => validateSandboxSpec(pod({ containers: [], ...extra }));
  const ctr = (name: string, extra: Partial<Pod['containers'][number]> = {}) => validateContainerSpec(container({ name, ...extra }));

  it('createSandbox: the cell, pinned namespaces, address and /etc files, the ready marker; ready with no container; persisted', async () => {
    const db = openDatabase(':memory:');
    const w = world({ db });
    await w.cells.init();
    const status = await w.runtime.createSandbox(sandbox());
    expect(status).toMatchObject({ name: 'web', sandbox: 'cell', state: 'running', containers: [], ip: '10.88.0.2', createdAt: CREATED_AT });
    expect(w.cells.get('web').executables).toEqual([]);
    expect(w.host.pins).toEqual(['web']);
    expect(fs.existsSync(`${w.run}/web/ready`)).toBe(true);
    expect(fs.readFileSync(`${w.run}/web/etc/hostname`, 'utf8')).toBe('web\n');
    expect(w.network.connected.get('web')).toBe('10.88.0.2');
    expect(sqlitePodStore(db).pods()).toEqual([{ spec: sandbox(), desiredRunning: true, images: {}, createdAt: CREATED_AT }]);
    await expect(w.runtime.createSandbox(sandbox())).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await expect(w.runtime.createSandbox(validatePodSpec(pod({ name: 'full' })))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^containers: a sandbox is created without containers/) });
    expect(w.runtime.get('full')).toBeUndefined();
    // Stopped, it is no longer ready; it is removed like any pod.
    expect(await w.runtime.stop('web', 0)).toMatchObject({ state: 'stopped' });
    await w.runtime.remove('web', { force: false });
    expect(sqlitePodStore(db).pods()).toEqual([]);
  });

  it('createContainer: needs the image stored (no pull); mounts, writes the bundle, retains, persists; does not start', async () => {
    const db = openDatabase(':memory:');
    const w = world({ db });
    await w.cells.init();
    await w.runtime.createSandbox(sandbox());
    await expect(w.runtime.createContainer('web', ctr('app'))).rejects.toMatchObject({ code: 'NOT_FOUND', message: 'pod "web": container "app": image busybox is not stored on this node: pull it first' });
    expect(w.images.pulls).toEqual([]);
    expect(w.runtime.get('web')!.containers).toEqual([]);
    const record = w.images.add('busybox');
    const created = await w.runtime.createContainer('web', ctr('app', { args: ['echo', 'hi'] }));
    expect(created).toEqual({ name: 'app', image: 'busybox', imageDigest: record.digest, state: 'created', pid: null, exit: null, restarts: 0, createdAt: CREATED_AT, startedAt: null, finishedAt: null });
    expect(w.launcher.processes).toHaveLength(0);
    expect(w.cells.get('web').executables).toEqual([]);
    expect(w.host.table.get(`${w.state}/pods/web/app/rootfs`)).toBe('overlay');
    expect(JSON.parse(fs.readFileSync(`${w.state}/pods/web/app/config.json`, 'utf8')).process.args).toEqual(['echo', 'hi']);
    expect(w.images.retained).toEqual(new Map([['pod:web/app', record.digest]]));
    expect(w.events.events.filter((e) => e.kind.startsWith('container_'))).toEqual([expect.objectContaining({ kind: 'container_created', pod: 'web', container: 'app', digest: record.digest })]);
    // The pod is ready (a created container does not make it pending); the spec gained the container.
    expect(w.runtime.get('web')).toMatchObject({ state: 'running', spec: { containers: [{ name: 'app', args: ['echo', 'hi'] }] } });
    const store = sqlitePodStore(db);
    expect(store.pods()[0]).toMatchObject({ spec: { containers: [{ name: 'app' }] }, images: { app: record.digest } });
    expect(store.containers()).toEqual(new Map([['web', new Map([['app', { desired: 'created', createdAt: CREATED_AT, startedAt: null, finishedAt: null }]])]]));
    await expect(w.runtime.createContainer('web', ctr('app'))).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringMatching(/^pod "web": container "app" already exists/) });
    await expect(w.runtime.createContainer('nope', ctr('app'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // A failure while preparing leaves nothing: no files, no row, nothing retained.
    await expect(w.runtime.createContainer('web', ctr('bad', { user: 'nobody' }))).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/user "nobody"/) });
    expect(fs.existsSync(`${w.state}/pods/web/bad`)).toBe(false);
    expect(w.host.table.has(`${w.state}/pods/web/bad/rootfs`)).toBe(false);
    expect(w.images.retained.has('pod:web/bad')).toBe(false);
    expect(w.runtime.get('web')!.spec.containers.map((c) => c.name)).toEqual(['app']);
  });

  it('startContainer: hands it to the cell; running once crun wrote its pid (startedAt its mtime); only a created container starts', async () => {
    const db = openDatabase(':memory:');
    const w = world({ db });
    await w.cells.init();
    w.images.add('busybox');
    await w.runtime.createSandbox(sandbox());
    await w.runtime.createContainer('web', ctr('app'));
    await w.runtime.createContainer('web', ctr('side'));
    const started = await w.runtime.startContainer('web', 'app');
    expect(started).toMatchObject({ name: 'app', state: 'created', pid: 1000, startedAt: null });
    expect(w.launcher.processes).toHaveLength(1);
    expect(w.launcher.last.plan.args.slice(0, 2)).toEqual(['--cgroup', `${CGROUP_ROOT}/aurae/web/exe.app`]);
    const before = Date.now();
    w.crunStarted('web', 'app');
    await eventOf(w.events, 'container_started');
    const running = w.runtime.get('web')!;
    expect(running).toMatchObject({ state: 'running', containers: [{ name: 'app', state: 'running', finishedAt: null }, { name: 'side', state: 'created', startedAt: null }] });
    expect(running.containers[0]!.startedAt).toBeGreaterThanOrEqual(before - 2_000);
    expect(running.containers[0]!.startedAt).toBeLessThanOrEqual(Date.now());
    expect(sqlitePodStore(db).containers().get('web')!.get('app')).toMatchObject({ desired: 'running', startedAt: running.containers[0]!.startedAt });
    await expect(w.runtime.startContainer('web', 'app')).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/^pod "web": container "app" was started before \(it is running\): only a created container can be started/) });
    await expect(w.runtime.startContainer('web', 'nope')).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/^pod "web" has no container "nope" \(it has app, side\)/) });
    // It ends (restart "never"): exited with the executable's exit time; never started again.
    w.launcher.last.exit(3, null);
    await flush();
    expect(w.runtime.get('web')!.containers[0]).toMatchObject({ state: 'failed', exit: { code: 3 }, finishedAt: 1_000_000 /* the cells' FakeClock */ });
    await expect(w.runtime.startContainer('web', 'app')).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/it is failed/) });
  });

  it('stopContainer: grace then kill, not restarted after, idempotent; a created one is left as is', async () => {
    const db = openDatabase(':memory:');
    const w = world({ db });
    await w.cells.init();
    w.images.add('busybox');
    await w.runtime.createSandbox(sandbox({ restart: 'always' }));
    await w.runtime.createContainer('web', ctr('app'));
    await w.runtime.createContainer('web', ctr('idle'));
    await w.runtime.startContainer('web', 'app');
    w.crunStarted('web', 'app');
    const crun = w.launcher.last;
    crun.onTerm = 'ignore';
    const stopping = w.runtime.stopContainer('web', 'app', 5_000);
    await flush();
    expect(crun.signals).toEqual(['SIGTERM']);
    crun.signal('SIGKILL'); // what cgroup.kill does after the grace
    expect(await stopping).toMatchObject({ name: 'app', state: 'exited', exit: { signal: 'SIGKILL' }, finishedAt: 1_000_000 });
    expect(w.launcher.processes).toHaveLength(1); // restart "always", yet stopped is stopped
    expect(sqlitePodStore(db).containers().get('web')!.get('app')!.desired).toBe('stopped');
    expect(await w.runtime.stopContainer('web', 'app', 0)).toMatchObject({ state: 'exited' });
    expect(await w.runtime.stopContainer('web', 'idle', 0)).toMatchObject({ state: 'created' });
    expect(sqlitePodStore(db).containers().get('web')!.get('idle')!.desired).toBe('created');
    await expect(w.runtime.stopContainer('web', 'nope', 0)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('removeContainer: refused while running unless forced; deletes crun state, mounts, files, executable; releases the image', async () => {
    const db = openDatabase(':memory:');
    const w = world({ db });
    await w.cells.init();
    w.images.add('busybox');
    await w.runtime.createSandbox(sandbox());
    await w.runtime.createContainer('web', ctr('app'));
    await w.runtime.createContainer('web', ctr('keep'));
    await w.runtime.startContainer('web', 'app');
    await expect(w.runtime.removeContainer('web', 'app', { force: false })).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: 'pod "web": container "app" is running: stop it first, or remove it with force' });
    await w.runtime.removeContainer('web', 'app', { force: true });
    expect(w.launcher.last.alive).toBe(false);
    expect(w.cells.get('web').executables).toEqual([]);
    expect(w.cgfs.exists(`${CGROUP_ROOT}/aurae/web/exe.app`)).toBe(false);
    expect(w.host.deleted).toEqual(['web.app']);
    expect(w.host.table.has(`${w.state}/pods/web/app/rootfs`)).toBe(false);
    expect(fs.existsSync(`${w.state}/pods/web/app`)).toBe(false);
    expect([...w.images.retained.keys()]).toEqual(['pod:web/keep']);
    expect(w.runtime.get('web')!.containers.map((c) => c.name)).toEqual(['keep']);
    const store = sqlitePodStore(db);
    expect(store.pods()[0]!.spec.containers.map((c) => c.name)).toEqual(['keep']);
    expect(store.pods()[0]!.images).toEqual({ keep: w.images.get('busybox')!.digest });
    expect([...store.containers().get('web')!.keys()]).toEqual(['keep']);
    await expect(w.runtime.removeContainer('web', 'app', { force: true })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // A created container is removed without force; the name can be used again.
    await w.runtime.removeContainer('web', 'keep', { force: false });
    expect(w.images.retained.size).toBe(0);
    expect((await w.runtime.createContainer('web', ctr('app'))).state).toBe('created');
    // The sandbox is still there and ready.
    expect(w.runtime.get('web')).toMatchObject({ state: 'running', containers: [{ name: 'app', state: 'created' }] });
  });

  it('after an auraed restart (SIGKILL): created stays created, exited and stopped stay so, only the running one runs again', async () => {
    const dir = tmpDir();
    const db = openDatabase(':memory:');
    const before = world({ db, dir });
    await before.cells.init();
    before.images.add('busybox');
    await before.runtime.createSandbox(sandbox());
    for (const name of ['created', 'exited', 'stopped', 'running']) await before.runtime.createContainer('web', ctr(name));
    for (const name of ['exited', 'stopped', 'running']) await before.runtime.startContainer('web', name);
    before.launcher.processes[0]!.exit(0, null); // "exited" ends by itself
    await flush();
    await before.runtime.stopContainer('web', 'stopped', 0);
    // SIGKILL: nothing is cleaned up; the mounts, /run and the database stay; a new auraed starts.
    const after = world({ db, dir, host: before.host, images: before.images });
    await after.cells.init();
    await after.runtime.reconcile();
    await flush();
    // The cells' reconcile restarted the one that was running (its old processes were killed); nothing else.
    expect(after.launcher.processes.map((p) => p.plan.args.at(-5))).toEqual(['web.running']);
    after.crunStarted('web', 'running');
    const status = after.runtime.get('web')!;
    expect(status.containers.map((c) => [c.name, c.state])).toEqual([
      ['created', 'created'],
      ['exited', 'exited'],
      ['stopped', 'exited'],
      ['running', 'running'],
    ]);
    expect(status.containers[0]).toMatchObject({ createdAt: CREATED_AT, startedAt: null, finishedAt: null });
    expect(status.containers[1]).toMatchObject({ exit: { code: 0 }, finishedAt: 1_000_000 });
    // The created one can still be started.
    await after.runtime.startContainer('web', 'created');
    expect(after.launcher.last.plan.args.at(-5)).toBe('web.created');
  });

  it('after a reboot: the sandbox and every container are prepared again, only those desired running are started', async () => {
    const dir = tmpDir();
    const db = openDatabase(':memory:');
    const before = world({ db, dir });
    await before.cells.init();
    before.images.add('busybox');
    await before.runtime.createSandbox(sandbox());
    await before.runtime.createContainer('web', ctr('idle'));
    await before.runtime.createContainer('web', ctr('app'));
    await before.runtime.startContainer('web', 'app');
    fs.rmSync(before.run, { recursive: true }); // the reboot: /run, mounts and cgroups are gone
    const after = world({ db, dir, images: before.images });
    await after.cells.init();
    await after.runtime.reconcile();
    expect(after.host.pins).toEqual(['web']);
    expect(after.host.table.get(`${after.state}/pods/web/idle/rootfs`)).toBe('overlay');
    expect(fs.existsSync(`${after.run}/web/ready`)).toBe(true);
    expect(after.launcher.processes.map((p) => p.plan.args.at(-5))).toEqual(['web.app']);
    expect(after.runtime.get('web')!.containers.map((c) => c.state)).toEqual(['created', 'created']);
    after.crunStarted('web', 'app');
    expect(after.runtime.get('web')!.containers.map((c) => c.state)).toEqual(['created', 'running']);
  });

  it('a sandbox "vm" goes to the VM sandbox runtime (vm-sandbox.test.ts tests it), not to the cells', async () => {
    const w = world();
    const created: string[] = [];
    const vm = { get: () => undefined, list: () => [], createSandbox: async (s: { name: string }) => (created.push(s.name), { name: s.name }) } as unknown as Parameters<typeof sandboxedPodRuntime>[1];
    const both = sandboxedPodRuntime(w.runtime, vm);
    await both.createSandbox(validateSandboxSpec(pod({ containers: [], sandbox: 'vm' })));
    expect(created).toEqual(['web']);
    expect(w.runtime.get('web')).toBeUndefined();
  });
});

describe('podReconcilePlan with per-container desired state', () => {
  it('prepares every container, starts only those desired running that have no executable', () => {
    const paths = (p: string) => podPaths('/s/pods', p, '/run/pods');
    const web = validatePodSpec(pod({ containers: ['a', 'b', 'c', 'd'].map((name) => container({ name })) }));
    const containers = new Map([['a', 'created'], ['b', 'running'], ['c', 'stopped']] as const); // d: no row → running
    const plan = podReconcilePlan({ pods: [{ spec: web, desiredRunning: true, containers }], cells: new Set(['web']), executables: new Map([['web', new Set(['c'])]]), mounts: new Map(), ready: new Set(), podDirs: [], paths });
    expect(plan.filter((a) => a.kind === 'mount_rootfs').map((a) => (a as { container: string }).container)).toEqual(['a', 'b', 'c', 'd']);
    expect(plan.filter((a) => a.kind === 'write_bundle').map((a) => (a as { container: string }).container)).toEqual(['a', 'b', 'c', 'd']);
    expect(plan.filter((a) => a.kind === 'start_container')).toEqual([
      { kind: 'start_container', pod: 'web', container: 'b' },
      { kind: 'start_container', pod: 'web', container: 'd' },
    ]);
  });
});

describe('pods store version 3', () => {
  it("gives existing pods' containers a row with the pod's desired state", () => {
    const db = openDatabase(':memory:');
    migrate(db, 'pods', PODS_MIGRATIONS.slice(0, 2));
    const spec = validatePodSpec(pod({ containers: [container(), container({ name: 'side' })] }));
    db.prepare('INSERT INTO pods (name, spec, desired, images, created_at) VALUES (?, ?, ?, ?, ?)').run('web', JSON.stringify(spec), 'stopped', '{}', 42);
    const store = sqlitePodStore(db);
    expect(store.containers()).toEqual(
      new Map([
        [
          'web',
          new Map([
            ['app', { desired: 'stopped', createdAt: 42, startedAt: null, finishedAt: null }],
            ['side', { desired: 'stopped', createdAt: 42, startedAt: null, finishedAt: null }],
          ]),
        ],
      ]),
    );
    store.delete('web');
    expect(store.containers()).toEqual(new Map());
  });
});

// --- the container extensions (the CRI's): validation, the OCI mapping, the container's own cgroup limits ----------

describe('container and pod extensions: validation', () => {
  const ext = (extra: Partial<ContainerInput>) => validateContainerSpec({ ...container(), ...extra });

  it('keeps what was given, with defaults filled (propagation private, sysctl slashes as dots)', () => {
    const c = ext({
      mounts: [{ hostPath: '/var/lib/k/vol', containerPath: '/data', readonly: true, propagation: '' as never }],
      security: { privileged: false, capAdd: ['net_admin'], capDrop: ['ALL'], noNewPrivs: false, runAsUser: 1000, runAsGroup: 2000, supplementalGroups: [3000], namespaces: { pid: 'node', ipc: 'node', network: 'pod' } },
      resources: { cpuShares: 512, cpuQuota: 50_000, cpuPeriod: 100_000, memoryLimit: 64 << 20, oomScoreAdj: 500 },
      sysctls: { 'net/ipv4/ip_unprivileged_port_start': '0' },
    });
    expect(c.mounts).toEqual([{ hostPath: '/var/lib/k/vol', containerPath: '/data', readonly: true, propagation: 'private' }]);
    expect(c.security).toEqual({ privileged: false, capAdd: ['CAP_NET_ADMIN'], capDrop: ['ALL'], noNewPrivs: false, runAsUser: 1000, runAsGroup: 2000, supplementalGroups: [3000], namespaces: { pid: 'node', ipc: 'node', network: 'pod' } });
    expect(c.resources).toEqual({ cpuShares: 512, cpuQuota: 50_000, cpuPeriod: 100_000, memoryLimit: 64 << 20, oomScoreAdj: 500 });
    expect(c.sysctls).toEqual({ 'net.ipv4.ip_unprivileged_port_start': '0' });
    // Absent stays absent: today's container.
    expect(Object.keys(ext({}))).toEqual(['name', 'image', 'command', 'args', 'env', 'workingDir', 'user', 'readOnlyRootfs']);
  });

  it('names the bad field; refuses what cannot be done', () => {
    const m = { hostPath: '/h', containerPath: '/c', readonly: false, propagation: 'private' as const };
    rejects(() => ext({ mounts: [{ ...m, hostPath: 'h' }] }), 'INVALID_ARGUMENT', /^container\.mounts\[0\]\.host_path: "h" is not an absolute path/);
    rejects(() => ext({ mounts: [{ ...m, containerPath: '/' }] }), 'INVALID_ARGUMENT', /^container\.mounts\[0\]\.container_path: must not be "\/"/);
    rejects(() => ext({ mounts: [m, m] }), 'INVALID_ARGUMENT', /^container\.mounts\[1\]\.container_path: "\/c" is mounted twice/);
    rejects(() => ext({ mounts: [{ ...m, propagation: 'shared' as never }] }), 'INVALID_ARGUMENT', /^container\.mounts\[0\]\.propagation: "shared" is not a propagation/);
    rejects(() => ext({ security: { capAdd: ['FLY'] } }), 'INVALID_ARGUMENT', /^container\.security\.capAdd\[0\]: unknown capability "FLY"/);
    rejects(() => ext({ security: { runAsUser: -1 } }), 'INVALID_ARGUMENT', /^container\.security\.runAsUser: -1 is out of range/);
    rejects(() => ext({ security: { maskedPaths: ['proc/kcore'] } }), 'INVALID_ARGUMENT', /^container\.security\.maskedPaths\[0\]: /);
    rejects(() => ext({ security: { namespaces: { ipc: 'container' as never } } }), 'INVALID_ARGUMENT', /^container\.security\.namespaces\.ipc: "container" is not a mode: "pod", "node"/);
    rejects(() => ext({ security: { namespaces: { pid: 'pod' } } }), 'UNIMPLEMENTED', /^container\.security\.namespaces\.pid: "pod" .* is not implemented: use "container" or "node"/);
    rejects(() => ext({ resources: { cpuShares: 1 } }), 'INVALID_ARGUMENT', /^container\.resources\.cpuShares: 1 is out of range: allowed 2\.\.262144/);
    rejects(() => ext({ resources: { cpuPeriod: 10 } }), 'INVALID_ARGUMENT', /^container\.resources\.cpuPeriod: /);
    rejects(() => ext({ resources: { oomScoreAdj: 1001 } }), 'INVALID_ARGUMENT', /^container\.resources\.oomScoreAdj: /);
    rejects(() => ext({ sysctls: { 'not a sysctl': '1' } }), 'INVALID_ARGUMENT', /^container\.sysctls\[not a sysctl\]: not a sysctl name/);
  });

  it('pod hostname and dns', () => {
    const s = validateSandboxSpec({ ...pod({ containers: [] }), hostname: 'web-0', dns: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local', 'cluster.local'], options: ['ndots:5'] } });
    expect(s).toMatchObject({ hostname: 'web-0', dns: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local', 'cluster.local'], options: ['ndots:5'] } });
    expect(validateSandboxSpec({ ...pod({ containers: [] }), hostname: '' }).hostname).toBeUndefined();
    rejects(() => validateSandboxSpec({ ...pod({ containers: [] }), hostname: 'a_b' }), 'INVALID_ARGUMENT', /^hostname: "a_b" is not a host name/);
    rejects(() => validateSandboxSpec({ ...pod({ containers: [] }), dns: { servers: ['1.1.1.1', '1.0.0.1', '8.8.8.8', '8.8.4.4'], searches: [], options: [] } }), 'INVALID_ARGUMENT', /^dns\.servers: at most 3/);
    rejects(() => validateSandboxSpec({ ...pod({ containers: [] }), dns: { servers: ['dns.local'], searches: [], options: [] } }), 'INVALID_ARGUMENT', /^dns\.servers\[0\]: "dns\.local" is not an IP address/);
    rejects(() => validateSandboxSpec({ ...pod({ containers: [] }), dns: { servers: [], searches: ['bad domain'], options: [] } }), 'INVALID_ARGUMENT', /^dns\.searches\[0\]: /);
    rejects(() => validateSandboxSpec({ ...pod({ containers: [] }), dns: { servers: [], searches: [], options: ['a b'] } }), 'INVALID_ARGUMENT', /^dns\.options\[0\]: /);
    rejects(() => validateSandboxSpec({ ...pod({ containers: [], sandbox: 'vm' }), hostname: 'x' }), 'UNIMPLEMENTED', /^hostname: not implemented for a "vm" sandbox pod/);
  });
});

describe('container extensions: the OCI spec and the cgroup limits', () => {
  const paths = podPaths('/s/pods', 'web', '/run/pods');
  const input = (c: Partial<ContainerSpec>) =>
    containerSpecInput({
      process: { args: ['sh'], env: [], cwd: '/', user: '' },
      user: { uid: 0, gid: 0, additionalGids: [] },
      paths: paths.container('app'),
      pod: paths,
      readOnlyRootfs: false,
      cgroupsPath: '/aurae/web/exe.app',
      container: c,
    });

  it("absent extensions: today's spec (pod namespaces joined, defaults)", () => {
    const spec = ociSpec(input({}));
    expect(spec.linux.namespaces.map((n) => n.type)).toEqual(['pid', 'mount', 'cgroup', 'network', 'ipc', 'uts']);
    expect(spec.process.noNewPrivileges).toBe(true);
    expect(spec.linux.maskedPaths).toEqual([...MASKED_PATHS]);
    expect(spec.linux.seccomp).toBeDefined();
    expect(spec.linux.rootfsPropagation).toBeUndefined();
    expect(spec.process.oomScoreAdj).toBeUndefined();
  });

  it('privileged: every capability, no seccomp, no masked or read-only paths, every device, /sys writable', () => {
    const spec = ociSpec(input({ security: { privileged: true, capDrop: ['NET_RAW'] } }));
    expect(spec.process.capabilities.bounding).toEqual([...ALL_CAPABILITIES]);
    expect(spec.linux.seccomp).toBeUndefined();
    expect(spec.linux.maskedPaths).toEqual([]);
    expect(spec.linux.readonlyPaths).toEqual([]);
    expect(spec.linux.resources.devices).toEqual([{ allow: true, access: 'rwm' }]);
    expect(spec.mounts.find((m) => m.destination === '/sys')!.options).toEqual(['nosuid', 'noexec', 'nodev', 'rw']);
    expect(spec.mounts.find((m) => m.destination === '/sys/fs/cgroup')!.options).not.toContain('ro');
  });

  it('capabilities, no_new_privs, masked paths, namespace modes, bind mounts with propagation, sysctls, oom_score_adj', () => {
    const spec = ociSpec(
      input({
        security: { capAdd: ['CAP_NET_ADMIN'], capDrop: ['CAP_KILL'], noNewPrivs: false, maskedPaths: ['/proc/kcore'], readonlyPaths: [], namespaces: { pid: 'node', ipc: 'node' } },
        mounts: [
          { hostPath: '/var/lib/k/a', containerPath: '/a', readonly: true, propagation: 'private' },
          { hostPath: '/var/lib/k/b', containerPath: '/b', readonly: false, propagation: 'rslave' },
        ],
        sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
        resources: { oomScoreAdj: -500 },
      }),
    );
    expect(spec.process.capabilities.bounding).toContain('CAP_NET_ADMIN');
    expect(spec.process.capabilities.bounding).not.toContain('CAP_KILL');
    expect(spec.process.noNewPrivileges).toBe(false);
    expect(spec.linux.maskedPaths).toEqual(['/proc/kcore']);
    expect(spec.linux.readonlyPaths).toEqual([]);
    expect(spec.linux.namespaces).toEqual([{ type: 'mount' }, { type: 'cgroup' }, { type: 'network', path: paths.ns.net }, { type: 'uts', path: paths.ns.uts }]);
    expect(spec.mounts.slice(-2)).toEqual([
      { destination: '/a', type: 'bind', source: '/var/lib/k/a', options: ['rbind', 'ro', 'rprivate'] },
      { destination: '/b', type: 'bind', source: '/var/lib/k/b', options: ['rbind', 'rw', 'rslave'] },
    ]);
    expect(spec.linux.rootfsPropagation).toBe('rslave');
    expect(spec.linux.sysctl).toEqual({ 'net.ipv4.ip_unprivileged_port_start': '0' });
    expect(spec.process.oomScoreAdj).toBe(-500);
    expect(ociSpec(input({ mounts: [{ hostPath: '/h', containerPath: '/c', readonly: false, propagation: 'rshared' }] })).linux.rootfsPropagation).toBe('rshared');
    // A net.* sysctl needs the pod's network namespace.
    rejects(() => ociSpec(input({ security: { namespaces: { network: 'node' } }, sysctls: { 'net.core.somaxconn': '1024' } })), 'INVALID_ARGUMENT', /^sysctl\[net\.core\.somaxconn\]: needs a network namespace/);
  });

  it('containerCgroupLimits: memory.max, cpu.weight from shares, cpu.max; passed to the start script', () => {
    expect(containerCgroupLimits(undefined)).toEqual([]);
    expect(containerCgroupLimits({ memoryLimit: 1 << 20, cpuShares: 1024, cpuQuota: 50_000 })).toEqual([
      ['memory.max', '1048576'],
      ['cpu.weight', '39'],
      ['cpu.max', '50000 100000'],
    ]);
    expect(containerCgroupLimits({ cpuShares: 2 })).toEqual([['cpu.weight', '1']]);
    expect(containerCgroupLimits({ cpuShares: 262_144 })).toEqual([['cpu.weight', '10000']]);
    expect(containerCgroupLimits({ cpuPeriod: 50_000 })).toEqual([['cpu.max', 'max 50000']]);
    const exe = crunExecutable({ crun: 'c', pod: { name: 'web', restart: 'never' }, container: 'app', paths: paths.container('app'), ready: paths.ready, pidFile: 'p', cgroupLimits: [['memory.max', '100']] });
    expect(exe.args.slice(-3)).toEqual(['p', 'memory.max', '100']);
  });

  it('the start script writes the limits into its own cgroup before crun runs', async () => {
    const dir = tmpDir();
    const own = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'))!.slice(3);
    const cgroot = path.join(dir, 'cg');
    fs.mkdirSync(path.join(cgroot, own), { recursive: true });
    const ready = path.join(dir, 'ready');
    fs.writeFileSync(ready, '');
    const crun = path.join(dir, 'crun');
    fs.writeFileSync(crun, `#!/bin/sh\ncat ${cgroot}${own}/memory.max ${cgroot}${own}/cpu.max\n`, { mode: 0o755 });
    const exe = crunExecutable({ crun, stateRoot: path.join(dir, 'state'), pod: { name: 'web', restart: 'never' }, container: 'app', paths: { bundle: dir }, ready, pidFile: path.join(dir, 'pid'), cgroupLimits: [['memory.max', '4096'], ['cpu.max', '50000 100000']] });
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(exe.args[0]!, exe.args.slice(1), { env: { PATH: process.env.PATH, AURAE_CGROUP_ROOT: cgroot } }, (err, out) => (err ? reject(err) : resolve(out)));
    });
    expect(stdout).toBe('4096\n50000 100000\n');
    // The bundle's cgroup-limits file (what an update rewrites) is applied after the arguments; memory.swap.max
    // is skipped where the cgroup has none (no swap accounting).
    fs.writeFileSync(path.join(dir, 'cgroup-limits'), 'memory.max 8192\nmemory.swap.max 0\ncpu.max max 100000\n');
    const again = await new Promise<string>((resolve, reject) => {
      execFile(exe.args[0]!, exe.args.slice(1), { env: { PATH: process.env.PATH, AURAE_CGROUP_ROOT: cgroot } }, (err, out) => (err ? reject(err) : resolve(out)));
    });
    expect(again).toBe('8192\nmax 100000\n');
    expect(fs.existsSync(`${cgroot}${own}/memory.swap.max`)).toBe(false);
  });
});

describe('PodRuntime with the extensions', () => {
  it('the pod hostname and DNS; the container mounts, user, security and limits reach the bundle and the executable', async () => {
    const w = world();
    await w.cells.init();
    w.images.add('busybox');
    const volume = path.join(w.dir, 'volume');
    await w.runtime.createSandbox(validateSandboxSpec({ ...pod({ containers: [] }), hostname: 'web-0', dns: { servers: ['10.96.0.10'], searches: ['cluster.local'], options: ['ndots:5'] } }));
    expect(w.host.pins).toEqual(['web-0']);
    expect(fs.readFileSync(`${w.run}/web/etc/hostname`, 'utf8')).toBe('web-0\n');
    expect(fs.readFileSync(`${w.run}/web/etc/hosts`, 'utf8')).toContain('10.88.0.2\tweb-0\n');
    expect(fs.readFileSync(`${w.run}/web/etc/resolv.conf`, 'utf8')).toBe('search cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n');
    const hosts = path.join(w.dir, 'kubelet-hosts');
    fs.writeFileSync(hosts, '');
    await w.runtime.createContainer(
      'web',
      validateContainerSpec({
        ...container({ user: 'www-data' }),
        mounts: [
          { hostPath: volume, containerPath: '/data', readonly: false, propagation: 'private' },
          { hostPath: hosts, containerPath: '/etc/hosts', readonly: true, propagation: 'private' },
        ],
        security: { runAsUser: 1000, supplementalGroups: [33], capAdd: ['NET_ADMIN'] },
        resources: { memoryLimit: 32 << 20, cpuShares: 1024 },
      }),
    );
    expect(fs.statSync(volume).isDirectory()).toBe(true); // made, as containerd does
    const config = JSON.parse(fs.readFileSync(`${w.state}/pods/web/app/config.json`, 'utf8'));
    expect(config.process.user).toEqual({ uid: 1000, gid: 0, additionalGids: [33] }); // runAsUser wins over "user"; unknown uid: gid 0
    expect(config.process.env).toContain('HOSTNAME=web-0');
    expect(config.process.capabilities.bounding).toContain('CAP_NET_ADMIN');
    const etc = (config.mounts as { destination: string; source: string }[]).filter((m) => m.destination.startsWith('/etc/') || m.destination === '/data');
    expect(etc.map((m) => [m.destination, m.source])).toEqual([
      ['/etc/hosts', hosts], // the container's own replaces the pod's
      ['/etc/resolv.conf', `${w.run}/web/etc/resolv.conf`],
      ['/etc/hostname', `${w.run}/web/etc/hostname`],
      ['/data', volume],
    ]);
    await w.runtime.startContainer('web', 'app');
    // The limits are in the bundle's cgroup-limits file, which the start script applies (not in its arguments).
    expect(w.launcher.last.plan.args.at(-1)).toBe(`${w.run}/web/app.pid`);
    expect(fs.readFileSync(`${w.state}/pods/web/app/cgroup-limits`, 'utf8')).toBe(`memory.max ${32 << 20}\ncpu.weight 39\n`);
  });
});

describe('PodRuntime.updateContainerResources', () => {
  const sandbox = () => validateSandboxSpec(pod({ containers: [] }));
  const leaf = (file: string) => `${CGROUP_ROOT}/aurae/web/exe.app/${file}`;
  const read = (w: ReturnType<typeof world>, file: string) => w.cgfs.read(leaf(file)).trim();

  it('a created container: persisted in the spec and the bundle limits file only; absent fields are kept', async () => {
    const db = openDatabase(':memory:');
    const w = world({ db });
    await w.cells.init();
    w.images.add('busybox');
    await w.runtime.createSandbox(sandbox());
    await w.runtime.createContainer('web', validateContainerSpec({ ...container(), resources: { memoryLimit: 32 << 20, cpuShares: 1024 } }));
    const status = await w.runtime.updateContainerResources('web', 'app', { cpuQuota: 50_000, memoryLimit: 64 << 20 });
    expect(status).toMatchObject({ name: 'app', state: 'created' });
    const want = { memoryLimit: 64 << 20, cpuShares: 1024, cpuQuota: 50_000 };
    expect(w.runtime.get('web')!.spec.containers[0]!.resources).toEqual(want);
    expect(sqlitePodStore(db).pods()[0]!.spec.containers[0]!.resources).toEqual(want);
    expect(fs.readFileSync(`${w.state}/pods/web/app/cgroup-limits`, 'utf8')).toBe(`memory.max ${64 << 20}\ncpu.weight 39\ncpu.max 50000 100000\n`);
    expect(w.cgfs.exists(leaf(''))).toBe(false);
    // A restarted auraed starts it with the new values.
    const again = createPodRuntime({ db, dir: w.state, images: w.images, cells: w.cells, log: silentLogger, host: w.host, network: w.network, crun: '/usr/bin/crun', runDir: w.run });
    expect(again.get('web')!.spec.containers[0]!.resources).toEqual(want);
  });

  it('a running container: its leaf cgroup and its init\'s oom_score_adj change at once; the bundle keeps oomScoreAdj', async () => {
    const w = world();
    await w.cells.init();
    w.images.add('busybox');
    await w.runtime.createSandbox(sandbox());
    await w.runtime.createContainer('web', validateContainerSpec({ ...container(), resources: { memoryLimit: 32 << 20, cpuQuota: 20_000 } }));
    await w.runtime.startContainer('web', 'app');
    w.crunStarted('web', 'app');
    await eventOf(w.events, 'container_started');
    await w.runtime.updateContainerResources('web', 'app', { memoryLimit: 16 << 20, cpuShares: 2, oomScoreAdj: 500 });
    expect(read(w, 'memory.max')).toBe(String(16 << 20));
    expect(read(w, 'cpu.weight')).toBe('1');
    expect(read(w, 'cpu.max')).toBe('max 100000'); // not in the update: untouched
    expect(w.oomWrites).toEqual([[process.pid, 500]]);
    expect(JSON.parse(fs.readFileSync(`${w.state}/pods/web/app/config.json`, 'utf8')).process.oomScoreAdj).toBe(500);
    // A new period keeps the stored quota; memory + swap equal to memory: memory.swap.max 0.
    await w.runtime.updateContainerResources('web', 'app', { cpuPeriod: 50_000, memorySwapLimit: 16 << 20 });
    expect(read(w, 'cpu.max')).toBe('20000 50000');
    expect(read(w, 'memory.swap.max')).toBe('0');
    expect(fs.readFileSync(`${w.state}/pods/web/app/cgroup-limits`, 'utf8')).toBe(`memory.max ${16 << 20}\nmemory.swap.max 0\ncpu.weight 1\ncpu.max 20000 50000\n`);
  });

  it('refusals name the field; unknown pods and containers are NOT_FOUND; nothing changes', async () => {
    const w = world();
    await w.cells.init();
    w.images.add('busybox');
    await w.runtime.createSandbox(sandbox());
    await w.runtime.createContainer('web', validateContainerSpec(container()));
    await expect(w.runtime.updateContainerResources('web', 'app', { cpuPeriod: 10 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^resources\.cpuPeriod: /) });
    await expect(w.runtime.updateContainerResources('web', 'app', { memorySwapLimit: 1 << 20 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^resources\.memorySwapLimit: /) });
    await expect(w.runtime.updateContainerResources('web', 'nope', { cpuShares: 2 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(w.runtime.updateContainerResources('nope', 'app', { cpuShares: 2 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(w.runtime.get('web')!.spec.containers[0]!.resources).toBeUndefined();
    expect(fs.existsSync(`${w.state}/pods/web/app/cgroup-limits`)).toBe(false);
  });

  it("sandboxedPodRuntime routes a VM sandbox pod's update to the VM runtime", async () => {
    const w = world();
    await w.cells.init();
    const vm = { get: (n: string) => (n === 'inside' ? { name: n } : undefined), list: () => [], updateContainerResources: async () => Promise.reject(new Error('not this')) } as unknown as Parameters<typeof sandboxedPodRuntime>[1];
    const both = sandboxedPodRuntime(w.runtime, vm);
    await expect(both.updateContainerResources('inside', 'app', {})).rejects.toThrow('not this'); // routed to the VM runtime
  });
});
