// Tenants, as an attacker would try them: the real handlers (CellService over the real CellRuntime with fake
// cgroups and processes, ObserveService, VmService over a fake runtime) behind the real wrappers and the real
// authz core. nova is confined to the cells below "nova" and her own VMs; "other" is another tenant's.
import { EventEmitter } from 'node:events';
import { type ServerUnaryCall, type ServerWritableStream, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { CellRuntime } from '../cells/runtime';
import { CgroupTree } from '../cgroup';
import { createCellService, runAsOf, visibleCells } from '../cells/cell-service';
import { memoryCellStore } from '../cells/store';
import { FakeCgroupFs } from '../cgroup/testing';
import type { CellView } from '../cells/runtime';
import { FakeClock, FakeLauncher, MemoryLogStore } from '../executables/testing';
import { createLogRing, silentLogger } from '../log';
import { createEventBus } from '../observe/event-bus';
import { createObserveService } from '../observe/observe-service';
import { StreamRegistry } from '../observe/streams';
import type { RpcContext } from '../server';
import { type Db, openDatabase } from '../store';
import { createVmService } from '../vms/vm-service';
import { type ConfigRule, createAuthz } from './authz';
import { createAuthzStore } from './authz-store';
import { fakeAuthContext, issuerByName } from '../server/testing';

const ROOT = '/sys/fs/cgroup';
const CELLS = 'aurae.cells.v0.CellService';
const OBSERVE = 'aurae.observe.v0.ObserveService';
const VMS = 'aurae.vms.v0.VmService';
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});

function world(rules: ConfigRule[]) {
  const db = openDatabase(':memory:');
  dbs.push(db);
  const authz = createAuthz({ admins: ['admin'], configRules: rules, store: createAuthzStore(db, { auditMaxRecords: 100 }), log: silentLogger, nodePath: 'aurae' });
  const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
  const fs = new FakeCgroupFs(ROOT);
  const launcher = new FakeLauncher();
  launcher.onLaunch = (p) => {
    fs.addProc(p.plan.args[1]!, p.pid);
    void p.exited.then(() => fs.removeProc(p.pid));
  };
  fs.onKill = (pids) => pids.forEach((pid) => launcher.byPid(pid)?.signal('SIGKILL'));
  const events = createEventBus({ clock: () => new Date('2026-01-01T00:00:00.000Z') });
  const logs = new MemoryLogStore();
  const cgroups = new CgroupTree({ fs, root: ROOT, log: silentLogger, sleep: async () => {} });
  const runtime = new CellRuntime({ cgroups, store: memoryCellStore(), events, logs, log: silentLogger, launcher, clock: new FakeClock(), helper: '/usr/lib/aurae/aurae-exec', signal: launcher.signal });
  const cells = createCellService(ctx, runtime);
  const metrics = async (cell: string | null) => ({
    timestamp: 1,
    cells: ['nova', 'nova/web', 'other', 'other/db'].filter((c) => cell === null || c === cell || c.startsWith(`${cell}/`)).map((c) => ({ cell: c, executable: null, metrics: {} })),
  });
  const observe = createObserveService(ctx, { daemonLog: createLogRing({ clock: () => 1 }), logs, events, metrics, streams: new StreamRegistry() });
  const vmList = ['nova-a', 'nova-b', 'other-x'].map((name) => ({ request: { name, memoryMiB: 256, cpus: 1, restart: 'never' }, nodePath: `aurae/${name}`, state: 'running', address: '', tlsName: '', pid: 0, restarts: 0, lastExit: '', confined: false }));
  const vmRuntime = { list: () => vmList, stop: async (name: string) => vmList.find((v) => v.request.name === name)! };
  const vms = createVmService(ctx, vmRuntime as never, { maxMemoryMiB: 4096, maxCpus: 4 } as never, async () => ({ fingerprint: 'f', notAfter: '' }));
  return { authz, runtime, cells, observe, vms, events, logs };
}

type Result = { code: number; details: string; value?: any };

function call(handler: unknown, request: unknown, cn: string): Promise<Result> {
  const c = Object.assign(new EventEmitter(), {
    request,
    getPeer: () => '127.0.0.1:1',
    getAuthContext: () => fakeAuthContext(cn),
  }) as unknown as ServerUnaryCall<unknown, unknown>;
  return new Promise((resolve) => {
    (handler as (call: unknown, cb: (err: { code: number; details: string } | null, value?: unknown) => void) => void)(c, (err, value) =>
      resolve(err ? { code: err.code, details: err.details } : { code: 0, details: '', value }),
    );
  });
}

/** A server stream without follow: resolves with what was written once it ends or fails. */
function stream(handler: unknown, request: unknown, cn: string): Promise<{ writes: any[]; error?: { code: number; details: string } }> {
  return new Promise((resolve) => {
    const writes: unknown[] = [];
    const c = Object.assign(new EventEmitter(), {
      request,
      cancelled: false,
      getPeer: () => 'p',
      getAuthContext: () => fakeAuthContext(cn),
      write: (m: unknown) => (writes.push(m), true),
      end: () => resolve({ writes }),
    });
    c.on('error', (error: { code: number; details: string }) => resolve({ writes, error }));
    (handler as (call: ServerWritableStream<unknown, unknown>) => void)(c as unknown as ServerWritableStream<unknown, unknown>);
  });
}

const cell = (name: string) => ({ cell: { name, isolateProcess: false, isolateNetwork: false } });
const exe = (name: string, extra: Record<string, unknown> = {}) => ({ name, command: '', description: '', args: ['/bin/server'], env: {}, cwd: '', ...extra });

/** nova: CellService and observe's reads on the cells below nova only; VmService and VM events of VMs named nova-*. */
const NOVA: ConfigRule[] = [
  { identity: 'nova', allow: [`${CELLS}/*`, `${OBSERVE}/GetLogs`, `${OBSERVE}/GetEvents`, `${OBSERVE}/GetMetrics`], deny: [], cells: ['nova/*'] },
  { identity: 'nova', allow: [`${VMS}/*`, `${OBSERVE}/GetEvents`], deny: [], vms: ['nova-*'] },
];

async function populated(rules: ConfigRule[] = NOVA) {
  const w = world(rules);
  await w.runtime.init();
  for (const name of ['nova', 'nova/web', 'other', 'other/db']) expect(await call(w.cells.allocate, cell(name), 'admin')).toMatchObject({ code: 0 });
  // The other tenant's workload, started by an admin (admins are not confined, root included).
  expect(await call(w.cells.start, { cellName: 'other/db', executable: exe('postgres') }, 'admin')).toMatchObject({ code: 0 });
  return w;
}

const names = (views: Array<{ cell?: { name: string }; children: unknown[] }>): string[] =>
  views.flatMap((v) => [v.cell!.name, ...names(v.children as typeof views)]);

describe('a tenant confined to her cells (cells: ["nova/*"])', () => {
  it('attack: Stop/Free/Start/Allocate/Get on another tenant\'s cell are PERMISSION_DENIED, naming the cell and the grant', async () => {
    const w = await populated();
    const stop = await call(w.cells.stop, { cellName: 'other/db', executableName: 'postgres', gracePeriodMs: 0 }, 'nova');
    expect(stop).toEqual({
      code: status.PERMISSION_DENIED,
      details:
        `identity "nova" may not call ${CELLS}/Stop on cell "other/db": its rules for this method cover only --cell 'nova/*': ` +
        `an admin can grant it with: aer authz allow nova ${CELLS}/Stop --cell other/db`,
    });
    expect(w.runtime.get('other/db').executables[0]!.state).toBe('running');
    expect((await call(w.cells.free, { cellName: 'other', force: true }, 'nova')).code).toBe(status.PERMISSION_DENIED);
    expect((await call(w.cells.allocate, cell('other/mine'), 'nova')).code).toBe(status.PERMISSION_DENIED);
    expect((await call(w.cells.start, { cellName: 'other/db', executable: exe('x', { uid: 1000 }) }, 'nova')).code).toBe(status.PERMISSION_DENIED);
    expect((await call(w.cells.get, { cellName: 'other' }, 'nova')).code).toBe(status.PERMISSION_DENIED);
    // "nova/*" is below nova: the cell an admin sized for her is not hers to free or resize.
    expect((await call(w.cells.free, { cellName: 'nova', force: true }, 'nova')).code).toBe(status.PERMISSION_DENIED);
    // A name that merely starts with "nova" is not below it.
    expect((await call(w.cells.allocate, cell('novax'), 'nova')).code).toBe(status.PERMISSION_DENIED);
    // The refusals are audited with the resource.
    expect(w.authz.listAudit({ limit: 10, identity: 'nova' })[0]).toMatchObject({ code: 'PERMISSION_DENIED', detail: 'denied: no rule allows it on cell "novax" (default deny)' });
  });

  it('works in her own cells: allocate, start as a non-root user, stop, free', async () => {
    const w = await populated();
    expect(await call(w.cells.allocate, cell('nova/api'), 'nova')).toMatchObject({ code: 0 });
    expect(await call(w.cells.start, { cellName: 'nova/api', executable: exe('srv', { uid: 1000 }) }, 'nova')).toMatchObject({ code: 0 });
    expect(await call(w.cells.stop, { cellName: 'nova/api', executableName: 'srv', gracePeriodMs: 0 }, 'nova')).toMatchObject({ code: 0 });
    expect(await call(w.cells.free, { cellName: 'nova/api' }, 'nova')).toMatchObject({ code: 0 });
  });

  it('attack: Start without --uid (root) is refused with how to pass --uid or have an admin grant root; uid 0 and gid 0 too', async () => {
    const w = await populated();
    const root = await call(w.cells.start, { cellName: 'nova/web', executable: exe('sh') }, 'nova');
    expect(root).toEqual({
      code: status.PERMISSION_DENIED,
      details:
        'identity "nova" may not run executables as uid 0 (root) in cell "nova/web": non-admin identities run executables as a non-root user and group by default: ' +
        `give the user to run as (aer cell start … --uid 1000 [--gid 1000]), or an admin can allow it with: aer authz allow nova ${CELLS}/Start --cell nova/web --uid 0`,
    });
    expect((await call(w.cells.start, { cellName: 'nova/web', executable: exe('sh', { uid: 0 }) }, 'nova')).code).toBe(status.PERMISSION_DENIED);
    expect((await call(w.cells.start, { cellName: 'nova/web', executable: exe('sh', { uid: 1000, gid: 0 }) }, 'nova')).details).toMatch(/uid 1000 with gid 0 \(root's group\)/);
    expect(w.runtime.get('nova/web').executables).toEqual([]);
  });

  it('List, Get, GetEvents, GetMetrics and VmService/List show her only what is hers; admins see everything', async () => {
    const w = await populated();
    expect(await call(w.cells.allocate, cell('nova/web/cache'), 'nova')).toMatchObject({ code: 0 });
    // nova itself is not hers: its children take its place in her list.
    expect(names((await call(w.cells.list, {}, 'nova')).value.cells)).toEqual(['nova/web', 'nova/web/cache']);
    expect(names((await call(w.cells.list, {}, 'admin')).value.cells)).toEqual(['nova', 'nova/web', 'nova/web/cache', 'other', 'other/db']);
    expect(names([(await call(w.cells.get, { cellName: 'nova/web' }, 'nova')).value.cell])).toEqual(['nova/web', 'nova/web/cache']);

    const events = await stream(w.observe.getEvents, { follow: false, sinceSeq: 0, cell: '', vm: '' }, 'nova');
    expect(events.error).toBeUndefined();
    const eventCells = events.writes.map((m) => m.event.cell as string);
    expect(new Set(eventCells)).toEqual(new Set(['nova/web', 'nova/web/cache']));
    w.events.publish({ kind: 'vm_started', vm: 'nova-a', pid: 1, address: '' });
    w.events.publish({ kind: 'vm_started', vm: 'other-x', pid: 2, address: '' });
    // Even asking for the other tenant's cell by name yields nothing of it.
    expect((await stream(w.observe.getEvents, { follow: false, sinceSeq: 0, cell: 'other', vm: '' }, 'nova')).writes).toEqual([]);
    expect((await stream(w.observe.getEvents, { follow: false, sinceSeq: 0, cell: '', vm: 'other-x' }, 'nova')).writes).toEqual([]);
    expect((await stream(w.observe.getEvents, { follow: false, sinceSeq: 0, cell: '', vm: 'nova-a' }, 'nova')).writes).toHaveLength(1);
    const all = await stream(w.observe.getEvents, { follow: false, sinceSeq: 0, cell: '', vm: '' }, 'admin');
    expect(new Set(all.writes.map((m) => m.event.cell || m.event.vm))).toEqual(new Set(['nova', 'nova/web', 'nova/web/cache', 'other', 'other/db', 'nova-a', 'other-x']));

    expect((await call(w.observe.getMetrics, { cell: '' }, 'nova')).value.cells.map((r: { cell: string }) => r.cell)).toEqual(['nova/web']);
    expect((await call(w.observe.getMetrics, { cell: 'other' }, 'nova')).code).toBe(status.PERMISSION_DENIED);
    expect((await call(w.observe.getMetrics, { cell: '' }, 'admin')).value.cells).toHaveLength(4);

    expect((await call(w.vms.list, {}, 'nova')).value.machines.map((m: { vm: { name: string } }) => m.vm.name)).toEqual(['nova-a', 'nova-b']);
    expect((await call(w.vms.list, {}, 'admin')).value.machines).toHaveLength(3);
    expect((await call(w.vms.stop, { vmId: 'other-x' }, 'nova')).code).toBe(status.PERMISSION_DENIED);
    expect((await call(w.vms.stop, { vmId: 'nova-a' }, 'nova')).code).toBe(0);
  });

  it('attack: GetLogs of another tenant\'s executable is refused; of her own it is served', async () => {
    const w = await populated();
    w.logs.sink('other/db', 'postgres').write('stdout', 'secret');
    const refused = await stream(w.observe.getLogs, { cell: 'other/db', executable: 'postgres', follow: false }, 'nova');
    expect(refused.error?.code).toBe(status.PERMISSION_DENIED);
    expect(refused.writes).toEqual([]);
    w.logs.sink('nova/web', 'srv').write('stdout', 'mine');
    expect((await stream(w.observe.getLogs, { cell: 'nova/web', executable: 'srv', follow: false }, 'nova')).writes.map((m) => m.item.line)).toEqual(['mine']);
  });

  it('a rule scoped to cells allows nothing node-wide (the daemon log, Shutdown) and nothing on other nodes', async () => {
    const w = world([{ identity: 'nova', allow: ['*'], deny: [], cells: ['nova'] }]);
    const daemon = await stream(w.observe.getAuraeDaemonLogStream, { follow: false }, 'nova');
    expect(daemon.error).toMatchObject({ code: status.PERMISSION_DENIED, details: expect.stringMatching(/on the node itself: its rules for this method cover only --cell nova/) });
    const onWeb = w.authz.check({ identity: 'nova', peer: 'p', admin: false }, `${CELLS}/Stop`, { node: 'aurae/web', resource: { cell: 'nova' } });
    expect(onWeb).toBeNull();
    const scopedToNode = world([{ identity: 'nova', allow: [`${CELLS}/*`], deny: [], nodes: ['aurae/web'] }]);
    // On this node ("aurae") the rule does not apply; on aurae/web (and below) it does.
    expect(scopedToNode.authz.check({ identity: 'nova', peer: 'p', admin: false }, `${CELLS}/List`, { resource: null })).not.toBeNull();
    expect(scopedToNode.authz.check({ identity: 'nova', peer: 'p', admin: false }, `${CELLS}/List`, { node: 'aurae/web/db', resource: {} })).toBeNull();
  });

  it('rules without a scope keep their meaning (every cell), except that executables no longer run as root by default', async () => {
    const w = await populated([{ identity: 'ops', allow: [`${CELLS}/*`], deny: [] }]);
    expect(await call(w.cells.stop, { cellName: 'other/db', executableName: 'postgres', gracePeriodMs: 0 }, 'ops')).toMatchObject({ code: 0 });
    expect(await call(w.cells.start, { cellName: 'nova/web', executable: exe('a', { uid: 1000 }) }, 'ops')).toMatchObject({ code: 0 });
    expect((await call(w.cells.start, { cellName: 'nova/web', executable: exe('b') }, 'ops')).code).toBe(status.PERMISSION_DENIED);
    expect(names((await call(w.cells.list, {}, 'ops')).value.cells)).toEqual(['nova', 'nova/web', 'other', 'other/db']);
  });

  it('uid pinning: a rule with uids allows exactly those (gids default to the same ranges); root only when granted', async () => {
    const w = await populated([
      { identity: 'nova', allow: [`${CELLS}/*`], deny: [], cells: ['nova/*'], uids: ['1000-1999'] },
      { identity: 'builder', allow: [`${CELLS}/Start`], deny: [], cells: ['nova/*'], uids: ['0'] },
    ]);
    expect((await call(w.cells.start, { cellName: 'nova/web', executable: exe('a', { uid: 1500 }) }, 'nova')).code).toBe(0);
    expect((await call(w.cells.start, { cellName: 'nova/web', executable: exe('b', { uid: 2000 }) }, 'nova')).details).toMatch(
      /may not run executables as uid 2000, gid 2000 in cell "nova\/web": its rules allow only --uid 1000-1999: /,
    );
    expect((await call(w.cells.start, { cellName: 'nova/web', executable: exe('c', { uid: 1500, gid: 50 }) }, 'nova')).code).toBe(status.PERMISSION_DENIED);
    expect((await call(w.cells.start, { cellName: 'nova/web', executable: exe('d') }, 'builder')).code).toBe(0);
  });
});

describe('visibleCells and runAsOf', () => {
  const view = (name: string, children: CellView[] = []): CellView => ({ spec: { name } as CellView['spec'], state: 'allocated', usage: {} as CellView['usage'], executables: [], children });
  it('hoists the visible descendants of hidden cells', () => {
    const tree = [view('a', [view('a/b', [view('a/b/c')]), view('a/x')]), view('z')];
    const shown = visibleCells(tree, (c) => c === 'a/b' || c === 'a/b/c' || c === 'z');
    expect(shown.map((v) => [v.spec.name, v.children.map((c) => c.spec.name)])).toEqual([['a/b', ['a/b/c']], ['z', []]]);
    expect(visibleCells(tree, () => false)).toEqual([]);
  });
  it('is what aurae-exec runs as: root without a uid, the uid\'s group without a gid', () => {
    expect(runAsOf({ uid: null, gid: null })).toEqual({ uid: 0, gid: 0 });
    expect(runAsOf({ uid: 1000, gid: null })).toEqual({ uid: 1000, gid: 1000 });
    expect(runAsOf({ uid: 1000, gid: 7 })).toEqual({ uid: 1000, gid: 7 });
  });
});
