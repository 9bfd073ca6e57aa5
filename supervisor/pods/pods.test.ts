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
import { openDatabase } from '../store';
import { containerProcess, resolveUser } from './container-config';
import { containerId, crunExecutable, podPaths, START_SCRIPT, stopSignalOf } from './crun';
import { parseMountInfo, type PodHost } from './host';
import { podReconcilePlan } from './reconcile';
import { createPodRuntime, podState, type PodRuntime } from './runtime';
import { type ContainerSpec, type PodSpec, validatePodSpec } from './spec';
import { memoryPodStore, type PodStore, sqlitePodStore } from './store';
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
  const runtime: PodRuntime = createPodRuntime({ store: podStore, dir: path.join(dir, 'state'), images, cells, observe: { events }, log: silentLogger, host, network, crun: '/usr/bin/crun', runDir: path.join(dir, 'run'), clock: () => 1_700_000_000_000 });
  const run = path.join(dir, 'run');
  /** What crun does once the container runs: write its pid (a live one: the runtime checks it). */
  const crunStarted = (pod: string, container: string, pid = process.pid) => fs.writeFileSync(path.join(run, pod, `${container}.pid`), String(pid));
  return { dir, cgfs, launcher, events, logs, cells, images, host, network, runtime, state: path.join(dir, 'state'), run, crunStarted };
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
    expect(status.containers).toEqual([{ name: 'app', image: 'busybox', imageDigest: w.images.get('busybox')!.digest, state: 'created', pid: 1000, exit: null, restarts: 0 }]);
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
