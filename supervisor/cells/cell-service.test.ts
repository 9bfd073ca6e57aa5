// CellService handlers over the real CellRuntime, with fakes underneath: the in-memory cgroupfs, a fake process
// launcher whose processes live in the fake cgroups, an in-memory event bus and log store.
import { EventEmitter } from 'node:events';
import nodeFs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ServerUnaryCall, status } from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuthzStore } from '../authz';
import { FakeClock, FakeLauncher, flush, MemoryEventBus, MemoryLogStore } from '../executables/testing';
import { type CellServiceServer, ExecutableState, RestartMode } from '../gen/aurae/cells/v0/cells';
import { silentLogger } from '../log';
import { type Db, openDatabase } from '../store';
import { walCommits } from '../store/testing';
import { CellServiceDefinition, createCellService } from './cell-service';
import { CgroupTree } from '../cgroup';
import { CellRuntime } from './runtime';
import { type CellStore, memoryCellStore, sqliteCellStore } from './store';
import { FakeCgroupFs } from '../cgroup/testing';
import { validateCell } from './spec';
import { validateExecutable } from '../executables';
import type { Authorizer } from '../server';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from '../server/testing';

const ROOT = '/sys/fs/cgroup';

function world(options: { store?: CellStore; fs?: FakeCgroupFs; cgroupV2?: boolean; authz?: Authorizer } = {}) {
  const fs = options.fs ?? new FakeCgroupFs(ROOT);
  if (options.cgroupV2 === false) fs.rmdir = () => {};
  const launcher = new FakeLauncher();
  // aurae-exec joins the leaf first: the fake process appears in the cgroup named by --cgroup.
  launcher.onLaunch = (p) => {
    fs.addProc(p.plan.args[1]!, p.pid);
    void p.exited.then(() => fs.removeProc(p.pid));
  };
  fs.onKill = (pids) => pids.forEach((pid) => launcher.byPid(pid)?.signal('SIGKILL'));
  const events = new MemoryEventBus();
  const logs = new MemoryLogStore();
  const clock = new FakeClock();
  const store = options.store ?? memoryCellStore();
  const cgroups = new CgroupTree({ fs, root: options.cgroupV2 === false ? '/nonexistent' : ROOT, log: silentLogger, sleep: async () => {} });
  const runtime = new CellRuntime({ cgroups, store, events, logs, log: silentLogger, launcher, clock, helper: '/usr/lib/aurae/aurae-exec', signal: launcher.signal });
  // Non-admins may List (as a rule would grant), nothing else.
  const authz = options.authz ?? fakeAuthorizer((caller, method) => caller.admin || method === 'aurae.cells.v0.CellService/List');
  const service = createCellService({ log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() }, runtime);
  return { fs, launcher, events, logs, clock, store, runtime, service };
}

type Result<Res> = { code: number; details: string; value?: Res };

function call<K extends keyof CellServiceServer>(service: CellServiceServer, method: K, request: unknown, cn = 'admin'): Promise<Result<any>> {
  const c = Object.assign(new EventEmitter(), {
    request,
    getPeer: () => '127.0.0.1:1',
    getAuthContext: () => fakeAuthContext(cn),
  }) as unknown as ServerUnaryCall<unknown, unknown>;
  return new Promise((resolve) => {
    (service[method] as (call: unknown, cb: (err: { code: number; details: string } | null, value?: unknown) => void) => void)(c, (err, value) =>
      resolve(err ? { code: err.code, details: err.details } : { code: 0, details: '', value }),
    );
  });
}

const cell = (name: string, extra: Record<string, unknown> = {}) => ({ cell: { name, isolateProcess: false, isolateNetwork: false, ...extra } });
const exe = (name: string, extra: Record<string, unknown> = {}) => ({ name, command: '', description: '', args: ['/bin/server', '--port', '80'], env: {}, cwd: '', ...extra });

async function ready(w: ReturnType<typeof world>) {
  await w.runtime.init();
  return w;
}

describe('CellService', () => {
  it('allocates nested cells into cgroups and lists them as a tree with state and usage', async () => {
    const w = await ready(world());
    expect(await call(w.service, 'allocate', cell('a', { memory: { max: 1n << 20n } }))).toMatchObject({ code: 0, value: { cellName: 'a', cgroupV2: true } });
    expect(await call(w.service, 'allocate', cell('a/b', { pids: { max: 16n } }))).toMatchObject({ code: 0 });
    expect(w.fs.read(`${ROOT}/aurae/a/memory.max`)).toBe('1048576\n');
    expect(w.fs.read(`${ROOT}/aurae/a/b/pids.max`)).toBe('16\n');
    const list = await call(w.service, 'list', {});
    expect(list.value.cells).toHaveLength(1);
    expect(list.value.cells[0]).toMatchObject({ cell: { name: 'a', memory: { max: 1n << 20n } }, status: { state: 'allocated', pidsCurrent: 0n }, children: [{ cell: { name: 'a/b' } }] });
    expect((await call(w.service, 'get', { cellName: 'a/b' })).value.cell.cell.pids).toEqual({ max: 16n });
    expect(w.events.kinds()).toEqual(['cell_allocated', 'cell_allocated']);
  });

  it('refuses duplicates, orphans and unknown cells with the right codes', async () => {
    const w = await ready(world());
    await call(w.service, 'allocate', cell('a'));
    expect(await call(w.service, 'allocate', cell('a'))).toMatchObject({ code: status.ALREADY_EXISTS });
    expect(await call(w.service, 'allocate', cell('x/y'))).toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(/parent cell "x" does not exist/) });
    expect(await call(w.service, 'free', { cellName: 'nope' })).toMatchObject({ code: status.NOT_FOUND });
    expect(await call(w.service, 'get', { cellName: 'nope' })).toMatchObject({ code: status.NOT_FOUND });
    expect(await call(w.service, 'start', { cellName: 'nope', executable: exe('w') })).toMatchObject({ code: status.NOT_FOUND });
    expect(await call(w.service, 'stop', { cellName: 'a', executableName: 'nope' })).toMatchObject({ code: status.NOT_FOUND });
  });

  it('starts an executable in its leaf, streams its output to the log store, stops it and records the exit', async () => {
    const w = await ready(world());
    await call(w.service, 'allocate', cell('a', { isolateProcess: true }));
    const started = await call(w.service, 'start', { cellName: 'a', executable: exe('web') });
    expect(started).toMatchObject({ code: 0, value: { pid: w.launcher.last.pid } });
    expect(w.launcher.last.plan.args).toEqual([
      '--cgroup', `${ROOT}/aurae/a/exe.web`, '--pid', '--mount', '--uts', 'a', '--ipc', '--cwd', '/', '--status-fd', '3', '--', '/bin/server', '--port', '80',
    ]);
    expect(w.fs.read(`${ROOT}/aurae/a/exe.web/cgroup.procs`)).toBe(`${w.launcher.last.pid}\n`);
    w.launcher.last.emit('stdout', 'listening');
    expect(await w.logs.read('a', 'web')).toMatchObject([{ line: 'listening' }]);
    let got = (await call(w.service, 'get', { cellName: 'a' })).value.cell.executables[0];
    expect(got).toMatchObject({ state: ExecutableState.EXECUTABLE_STATE_RUNNING, pid: w.launcher.last.pid, desiredRunning: true, executable: { name: 'web', args: ['/bin/server', '--port', '80'] } });
    expect(await call(w.service, 'start', { cellName: 'a', executable: exe('web') })).toMatchObject({ code: status.ALREADY_EXISTS });

    const stopped = await call(w.service, 'stop', { cellName: 'a', executableName: 'web', gracePeriodMs: 1000 });
    expect(stopped).toMatchObject({ code: 0, value: { exit: { signal: 'SIGTERM', oomKilled: false } } });
    got = (await call(w.service, 'get', { cellName: 'a' })).value.cell.executables[0];
    expect(got).toMatchObject({ state: ExecutableState.EXECUTABLE_STATE_STOPPED, pid: 0, desiredRunning: false, lastExit: { signal: 'SIGTERM' } });
    expect(w.events.kinds()).toEqual(['cell_allocated', 'executable_started', 'executable_exited']);
    // Starting the same name again replaces the stopped one.
    expect(await call(w.service, 'start', { cellName: 'a', executable: exe('web', { args: [], command: 'echo hi' }) })).toMatchObject({ code: 0 });
    expect(w.launcher.last.plan.args.slice(-3)).toEqual(['/bin/sh', '-c', 'echo hi']);
  });

  it('a program that cannot be executed fails Start with the helper\'s message; List shows the failure', async () => {
    const w = await ready(world());
    await call(w.service, 'allocate', cell('a'));
    w.launcher.autoExecute = false;
    const pending = call(w.service, 'start', { cellName: 'a', executable: exe('web', { restart: { mode: RestartMode.RESTART_MODE_ALWAYS } }) });
    await flush();
    w.launcher.last.setupFailed('executing /bin/server failed: No such file or directory (ENOENT): check the path', 127);
    expect(await pending).toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(/could not be started: executing \/bin\/server failed/) });
    const got = (await call(w.service, 'get', { cellName: 'a' })).value.cell.executables[0];
    expect(got).toMatchObject({ state: ExecutableState.EXECUTABLE_STATE_FAILED, lastExit: { code: 127 } });
  });

  it('free refuses while executables run or child cells exist, naming them; force leaves nothing behind', async () => {
    const w = await ready(world());
    await call(w.service, 'allocate', cell('a'));
    await call(w.service, 'allocate', cell('a/b'));
    await call(w.service, 'start', { cellName: 'a', executable: exe('web', { restart: { mode: RestartMode.RESTART_MODE_ALWAYS } }) });
    await call(w.service, 'start', { cellName: 'a/b', executable: exe('db') });
    const pids = w.launcher.processes.map((p) => p.pid);
    // A grandchild of web's in its leaf.
    w.fs.addProc(`${ROOT}/aurae/a/exe.web`, 9999);

    expect(await call(w.service, 'free', { cellName: 'a/b' })).toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(/running executables: a\/b\/db \(running\): stop them first, or free with force/) });
    expect(await call(w.service, 'free', { cellName: 'a' })).toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(/has child cells \(a\/b\)/) });

    expect(await call(w.service, 'free', { cellName: 'a', force: true })).toMatchObject({ code: 0 });
    expect(w.fs.dirsUnder(`${ROOT}/aurae`)).toEqual([]);
    expect(pids.every((pid) => !w.launcher.byPid(pid)!.alive)).toBe(true);
    expect(w.store.cells()).toEqual([]);
    expect(w.logs.removed.sort()).toEqual(['a', 'a/b']);
    expect(w.events.kinds().filter((k) => k === 'cell_freed')).toHaveLength(2);
    // Nothing restarts a freed executable.
    await w.clock.advance(120_000);
    expect(w.launcher.processes).toHaveLength(2);
    expect((await call(w.service, 'list', {})).value.cells).toEqual([]);
  });

  it('an idle cell is freed without force', async () => {
    const w = await ready(world());
    await call(w.service, 'allocate', cell('a'));
    await call(w.service, 'start', { cellName: 'a', executable: exe('job') });
    w.launcher.last.exit(0, null);
    await flush();
    expect(await call(w.service, 'free', { cellName: 'a' })).toMatchObject({ code: 0 });
    expect(w.fs.exists(`${ROOT}/aurae/a`)).toBe(false);
  });

  it('mutations are for admins; reads for every certificate', async () => {
    const w = await ready(world());
    expect(await call(w.service, 'allocate', cell('a'), 'viewer')).toMatchObject({ code: status.PERMISSION_DENIED });
    expect(await call(w.service, 'list', {}, 'viewer')).toMatchObject({ code: 0 });
  });

  it('without cgroup v2 every call fails with FAILED_PRECONDITION saying why', async () => {
    const w = await ready(world({ cgroupV2: false }));
    expect(await call(w.service, 'allocate', cell('a'))).toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(/no cgroup v2 hierarchy/) });
    expect(await call(w.service, 'list', {})).toMatchObject({ code: status.FAILED_PRECONDITION });
  });

  describe('bad input is INVALID_ARGUMENT naming the field, and the service keeps serving', () => {
    const huge = 'a'.repeat(100_000);
    const cases: [keyof CellServiceServer, unknown, RegExp][] = [
      ['allocate', {}, /^cell: required/],
      ['allocate', cell(''), /^cell\.name: required/],
      ['allocate', cell(huge), /^cell\.name: too long/],
      ['allocate', cell('../../etc'), /^cell\.name: /],
      ['allocate', cell('a/./b'), /^cell\.name: /],
      ['allocate', cell('caf\u00e9'), /^cell\.name: /],
      ['allocate', cell('a\u200bb'), /^cell\.name: /],
      ['allocate', cell('a', { cpu: { weight: -1 } }), /^cell\.cpu\.weight: -1 is out of range: allowed 1\.\.10000/],
      ['allocate', cell('a', { memory: { max: -4096 } }), /^cell\.memory\.max: -4096 is out of range/],
      ['allocate', cell('a', { pids: { max: 1e12 } }), /^cell\.pids\.max: .*allowed 1\.\.4194304/],
      ['allocate', cell('a', { cpuset: { cpus: huge } }), /^cell\.cpuset\.cpus: too long/],
      ['free', { cellName: '' }, /^cell_name: required/],
      ['free', { cellName: '/' }, /^cell_name: /],
      ['get', { cellName: '..' }, /^cell_name: /],
      ['start', { cellName: 'a' }, /^executable: required/],
      ['start', { cellName: '', executable: exe('w') }, /^cell_name: required/],
      ['start', { cellName: 'a', executable: exe('') }, /^executable\.name: required/],
      ['start', { cellName: 'a', executable: exe('W\u0301') }, /^executable\.name: /],
      ['start', { cellName: 'a', executable: exe('w', { args: [huge, huge, huge] }) }, /^executable\.args: too long/],
      ['start', { cellName: 'a', executable: exe('w', { cwd: '/../..' }) }, /^executable\.cwd: /],
      ['start', { cellName: 'a', executable: exe('w', { uid: -1 }) }, /^executable\.uid: -1 is out of range: allowed 0\.\.4294967294/],
      ['start', { cellName: 'a', executable: exe('w', { env: { '': 'x' } }) }, /^executable\.env: "" is not a variable name/],
      ['start', { cellName: 'a', executable: exe('w', { description: '\u202eevil' }) }, /^executable\.description: /],
      ['stop', { cellName: 'a', executableName: '' }, /^executable_name: required/],
      ['stop', { cellName: 'a', executableName: 'w', gracePeriodMs: 400_000 }, /^grace_period_ms: 400000 is out of range: allowed 0\.\.300000/],
      ['stop', { cellName: 'a', executableName: '../w' }, /^executable_name: /],
    ];
    it.each(cases.map(([m, r, p], i) => [i, m, r, p] as const))('case %i: %s', async (_i, method, request, pattern) => {
      const w = await ready(world());
      await call(w.service, 'allocate', cell('a'));
      const result = await call(w.service, method, request);
      expect(result.code).toBe(status.INVALID_ARGUMENT);
      expect(result.details).toMatch(pattern);
      expect((await call(w.service, 'list', {})).code).toBe(0);
    });

    it('an int64 beyond 2^53 decodes (bigint) and is INVALID_ARGUMENT naming the field, never INTERNAL', async () => {
      const w = await ready(world());
      // CellServiceAllocateRequest { cell (1) { name (1): "a", memory (4) { max (4): 2^60 } } }
      const memory = new BinaryWriter().uint32(32).int64(2n ** 60n).finish();
      const inner = new BinaryWriter().uint32(10).string('a').uint32(34).bytes(memory).finish();
      const bytes = new BinaryWriter().uint32(10).bytes(inner).finish();
      const request = CellServiceDefinition.allocate.requestDeserialize(Buffer.from(bytes));
      const result = await call(w.service, 'allocate', request);
      expect(result).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'cell.memory.max: 1152921504606846976 is out of range: allowed 0..9007199254740991' });
    });
  });
});

describe('CellRuntime reconcile at start', () => {
  it('recreates stored cells, removes strays (killing their processes), restarts what should run', async () => {
    const db = openDatabase(':memory:');
    const store = sqliteCellStore(db);
    store.insertCell(validateCell({ name: 'a', pids: { max: 7n }, isolateProcess: false, isolateNetwork: false }));
    store.insertCell(validateCell({ name: 'a/b', isolateProcess: false, isolateNetwork: false }));
    const web = validateExecutable(exe('web', { restart: { mode: RestartMode.RESTART_MODE_ALWAYS } }));
    const done = validateExecutable(exe('done'));
    store.putExecutable({ cell: 'a', spec: web, desiredRunning: true, state: 'running', restarts: 3, lastExit: null });
    store.putExecutable({ cell: 'a', spec: done, desiredRunning: true, state: 'exited', restarts: 0, lastExit: { code: 0, signal: null, oomKilled: false, time: 1 } });

    // What the previous auraed left: cell a (but not a/b), web's leaf with an old process, a stray cell with one.
    const fs = new FakeCgroupFs(ROOT);
    const boot = new CgroupTree({ fs, root: ROOT, log: silentLogger });
    boot.ensureBase();
    boot.createCell(validateCell({ name: 'a', pids: { max: 7n }, isolateProcess: false, isolateNetwork: false }));
    boot.createCell(validateCell({ name: 'stray', isolateProcess: false, isolateNetwork: false }));
    boot.leaf('a', 'web').prepare();
    boot.leaf('stray', 'x').prepare();
    fs.addProc(`${ROOT}/aurae/a/exe.web`, 500);
    fs.addProc(`${ROOT}/aurae/stray/exe.x`, 501);

    const w = world({ store, fs });
    const killed: number[] = [];
    const onKill = fs.onKill;
    fs.onKill = (pids) => {
      killed.push(...pids);
      for (const pid of pids) fs.removeProc(pid);
      onKill(pids);
    };
    const plan = await w.runtime.init();
    await flush();
    expect(plan.map((a) => a.kind)).toEqual(['remove_stray', 'create_cell', 'clear_leaf', 'restore_executable', 'restore_executable']);
    expect(killed.sort()).toEqual([500, 501]);
    expect(fs.dirsUnder(`${ROOT}/aurae`)).toEqual(['a', 'a/b', 'a/exe.web']);
    expect(w.launcher.processes).toHaveLength(1);
    expect(w.launcher.last.plan.args[1]).toBe(`${ROOT}/aurae/a/exe.web`);
    const view = w.runtime.get('a');
    expect(view.executables.map((e) => [e.spec.name, e.state, e.restarts])).toEqual([
      ['done', 'exited', 0],
      ['web', 'running', 3],
    ]);
    expect(store.executables().find((e) => e.spec.name === 'web')).toMatchObject({ state: 'running', desiredRunning: true });
  });
});

describe('CellService.Start: one transaction per Start', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) nodeFs.rmSync(d, { recursive: true, force: true });
  });

  /** auraed's arrangement: the cells and the audit log in one SQLite file (WAL, synchronous=FULL). */
  async function durableWorld() {
    const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'aurae-cells-'));
    dirs.push(dir);
    const file = path.join(dir, 'aurae.db');
    const db: Db = openDatabase(file);
    // Never rewind the WAL: walCommits then counts every commit (= every fsync) since the database was opened.
    db.pragma('wal_autocheckpoint = 0');
    const audit = createAuthzStore(db, { auditMaxRecords: 1000, audit: {} });
    const authz: Authorizer = { ...fakeAuthorizer(), audit: (event) => audit.appendAudit({ time: new Date(0).toISOString(), ...event }) };
    const w = await ready(world({ store: sqliteCellStore(db), authz }));
    // The program reports "executed" a moment after the spawn, as aurae-exec does: the Start spans event-loop turns.
    w.launcher.autoExecute = false;
    const onLaunch = w.launcher.onLaunch;
    w.launcher.onLaunch = (p) => {
      onLaunch(p);
      setTimeout(() => (p.plan.args.includes('/no/such/program') ? p.setupFailed('executing /no/such/program failed: ENOENT') : p.executed()), 5);
    };
    expect((await call(w.service, 'allocate', cell('a'))).code).toBe(0);
    const row = (name: string) => db.prepare("SELECT desired, state, restarts FROM executables WHERE cell = 'a' AND name = ?").get(name);
    const audits = () => db.prepare("SELECT method, code, detail FROM authz_audit WHERE method LIKE '%/Start' ORDER BY id").all();
    return { ...w, db, commits: () => walCommits(file), row, audits };
  }

  it('the row (desired running, state, counters) and the audit row reach the disk in ONE commit, before the reply', async () => {
    const w = await durableWorld();
    const before = w.commits();
    const reply = await call(w.service, 'start', { cellName: 'a', executable: exe('web') });
    // Read as the reply arrives: nothing else ran in between.
    const atReply = { commits: w.commits() - before, row: w.row('web'), audits: w.audits() };
    expect(reply).toMatchObject({ code: 0, value: { pid: 1000 } });
    expect(atReply).toEqual({
      commits: 1,
      row: { desired: 'running', state: 'running', restarts: 0 },
      audits: [{ method: 'aurae.cells.v0.CellService/Start', code: 'OK', detail: 'a/web' }],
    });
    // No late write of the same Start (the caller-commit fallback finds nothing staged).
    await new Promise((r) => setTimeout(r, 20));
    expect(w.commits() - before).toBe(1);
    // Later changes are their own writes: the exit is durable at once.
    w.launcher.last.exit(0, null);
    await flush();
    expect(w.commits() - before).toBe(2);
    expect(w.row('web')).toEqual({ desired: 'running', state: 'exited', restarts: 0 });
  });

  it('a second Start after an exit resets the counters in the same single commit', async () => {
    const w = await durableWorld();
    expect((await call(w.service, 'start', { cellName: 'a', executable: exe('web', { restart: { mode: RestartMode.RESTART_MODE_NEVER } }) })).code).toBe(0);
    w.launcher.last.exit(3, null);
    await flush();
    const before = w.commits();
    expect((await call(w.service, 'start', { cellName: 'a', executable: exe('web') })).code).toBe(0);
    expect(w.commits() - before).toBe(1);
    expect(w.row('web')).toEqual({ desired: 'running', state: 'running', restarts: 0 });
  });

  it('a Start whose program cannot be executed writes its failed row once and fails the call', async () => {
    const w = await durableWorld();
    const before = w.commits();
    const reply = await call(w.service, 'start', { cellName: 'a', executable: exe('bad', { args: ['/no/such/program'] }) });
    expect(reply.code).toBe(status.FAILED_PRECONDITION);
    expect(w.commits() - before).toBe(1);
    expect(w.row('bad')).toEqual({ desired: 'running', state: 'failed', restarts: 0 });
  });

  it('a Start from inside auraed (pods, no audit row) is durable when it resolves, in one commit', async () => {
    const w = await durableWorld();
    const before = w.commits();
    await w.runtime.start('a', validateExecutable(exe('inner')));
    expect(w.commits() - before).toBe(1);
    expect(w.row('inner')).toEqual({ desired: 'running', state: 'running', restarts: 0 });
  });
});
