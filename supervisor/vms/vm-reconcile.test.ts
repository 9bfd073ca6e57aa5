import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../store';
import { FakeProcesses, harness, qemuArgv } from './testing';
import { procLeftovers } from './vm-leftovers';
import { isLeftoverQemu, programIndex, shouldResumeVm, vmReconcilePlan } from './vm-reconcile';
import { type StoredVm, memoryVmStore, sqliteVmStore } from './vm-store';

const sock = (name: string) => `/state/vms/${name}/qmp.sock`;

function stored(name: string, over: Partial<StoredVm> = {}): StoredVm {
  return {
    request: { name, memoryMiB: 512, cpus: 1, restart: 'never' },
    desiredRunning: true,
    state: 'running',
    pid: 0,
    qmpSocket: sock(name),
    restarts: 0,
    lastExit: '',
    exit: null,
    ...over,
  };
}

describe('isLeftoverQemu (the pid-reuse guard)', () => {
  it('is QEMU with exactly this VM’s QMP socket', () => {
    expect(isLeftoverQemu(qemuArgv('web'), sock('web'))).toBe(true);
    expect(isLeftoverQemu(['qemu-system-x86_64', '-qmp', `unix:${sock('web')}`], sock('web'))).toBe(true);
    // The boot volume's QEMU runs through its own dynamic loader (image/disk boot-tree.ts wrapper).
    const viaLoader = ['/boot/qemu/lib/ld-linux-x86-64.so.2', '--library-path', '/boot/qemu/lib', '/boot/qemu/bin/qemu-system-x86_64', '-L', '/boot/qemu/share'];
    expect(isLeftoverQemu([...viaLoader, ...qemuArgv('web').slice(1)], sock('web'))).toBe(true);
    expect(programIndex(viaLoader)).toBe(3);
  });
  it.each([
    ['another program', ['/bin/bash', '-qmp', `unix:${sock('web')},server=on`]],
    ["another VM's QEMU", qemuArgv('db')],
    ['a socket path that only starts with it', ['qemu-system-x86_64', '-qmp', `unix:${sock('web')}2,server=on`]],
    ['the path elsewhere on the command line', ['qemu-system-x86_64', '-append', `unix:${sock('web')}`]],
    ['a zombie or gone process', null],
    ['an empty cmdline (kernel thread)', []],
    ['another program run by the dynamic loader', ['/lib64/ld-linux-x86-64.so.2', '/usr/bin/python3', '-qmp', `unix:${sock('web')}`]],
    ['the dynamic loader with nothing to run', ['/lib64/ld-linux-x86-64.so.2', '--library-path', '/x']],
  ])('is not %s', (_what, argv) => {
    expect(isLeftoverQemu(argv, sock('web'))).toBe(false);
  });
  it('never matches a VM that has no recorded socket', () => {
    expect(isLeftoverQemu(['qemu-system-x86_64', '-qmp', 'unix:'], '')).toBe(false);
  });
});

describe('shouldResumeVm', () => {
  it.each([
    ['running', stored('a'), true],
    ['starting', stored('a', { state: 'starting' }), true],
    ['stopping (auraed died during a stop by the parent)', stored('a', { state: 'stopping' }), true],
    ['stopped by the parent shutdown', stored('a', { state: 'stopped' }), true],
    ['stopped by its owner', stored('a', { state: 'stopped', desiredRunning: false }), false],
    ['running but stopped by its owner meanwhile', stored('a', { desiredRunning: false }), false],
    ['allocated', stored('a', { state: 'allocated', desiredRunning: false }), false],
    ['failed', stored('a', { state: 'failed' }), false],
    ['crashed, policy never', stored('a', { state: 'crashed', exit: { code: 1, signal: null } }), false],
    ['crashed, on-failure, exit 1', stored('a', { state: 'crashed', exit: { code: 1, signal: null }, request: { name: 'a', memoryMiB: 512, cpus: 1, restart: 'on-failure' } }), true],
    ['crashed, on-failure, exit 0', stored('a', { state: 'crashed', exit: { code: 0, signal: null }, request: { name: 'a', memoryMiB: 512, cpus: 1, restart: 'on-failure' } }), false],
    ['crashed, always, limit reached', stored('a', { state: 'crashed', exit: { code: 0, signal: null }, restarts: 5, request: { name: 'a', memoryMiB: 512, cpus: 1, restart: 'always' } }), false],
  ])('%s → %s', (_what, vm, expected) => {
    expect(shouldResumeVm(vm)).toBe(expected);
  });
});

describe('vmReconcilePlan', () => {
  it('stops leftovers first, leaves reused pids alone, then restores every VM in name order', () => {
    const rows = [
      stored('web', { pid: 500 }),
      stored('db', { pid: 501 }),
      stored('cache', { pid: 502 }),
      stored('old', { state: 'stopped', desiredRunning: false }),
    ];
    const processes = new Map<number, string[]>([
      [500, qemuArgv('web')],
      [501, ['/usr/sbin/sshd', '-D']], // db's QEMU died; its pid now belongs to someone else
      // 502: gone
    ]);
    expect(vmReconcilePlan(rows, processes)).toEqual([
      { kind: 'ignore_pid', vm: 'db', pid: 501, reason: expect.stringMatching(/pid 501 is now \/usr\/sbin\/sshd, not QEMU with \/state\/vms\/db\/qmp\.sock: the pid was reused/) },
      { kind: 'stop_leftover', vm: 'web', pid: 500, qmpSocket: sock('web') },
      { kind: 'restore', vm: 'cache', start: true },
      { kind: 'restore', vm: 'db', start: true },
      { kind: 'restore', vm: 'old', start: false },
      { kind: 'restore', vm: 'web', start: true },
    ]);
  });
});

describe('VmRuntime.init (reconcile with fakes)', () => {
  it("stops the previous auraed's QEMU, never signals a reused pid, and starts again what should run", async () => {
    const procs = new FakeProcesses();
    procs.table.set(500, qemuArgv('web')); // obeys QMP quit
    procs.table.set(501, ['/usr/sbin/sshd', '-D']); // db's recorded pid, reused
    procs.table.set(502, qemuArgv('stuck')); // ignores quit: SIGKILL
    procs.ignoresQuit.add(502);
    const store = memoryVmStore([
      stored('web', { pid: 500, restarts: 2 }),
      stored('db', { pid: 501 }),
      stored('stuck', { pid: 502 }),
      stored('old', { state: 'stopped', desiredRunning: false }),
      stored('dead', { state: 'crashed', exit: { code: 1, signal: null } }),
    ]);
    const h = harness({ store, leftovers: procs });
    const plan = await h.runtime.init();
    expect(plan.filter((a) => a.kind !== 'restore').map((a) => `${a.kind}:${a.vm}`)).toEqual(['ignore_pid:db', 'stop_leftover:stuck', 'stop_leftover:web']);
    expect(procs.quitSockets.sort()).toEqual([sock('stuck'), sock('web')]);
    expect(procs.killed).toEqual([502]); // never 501
    expect(procs.table.get(501)).toEqual(['/usr/sbin/sshd', '-D']);

    await waitUntil(() => h.runtime.list().filter((s) => s.state === 'running').length === 3);
    expect(h.launched.map((v) => v.spec.qmpSocket).sort()).toEqual([sock('db'), sock('stuck'), sock('web')]);
    const by = Object.fromEntries(h.runtime.list().map((s) => [s.request.name, s]));
    expect(by.web).toMatchObject({ state: 'running', restarts: 2, nodePath: 'aurae/web' });
    expect(by.old).toMatchObject({ state: 'stopped', pid: 0 });
    expect(by.dead).toMatchObject({ state: 'crashed', pid: 0 });
    // The new runs are recorded for the auraed after this one.
    expect(store.rows.get('web')).toMatchObject({ state: 'running', pid: expect.any(Number), desiredRunning: true });
    expect(h.events.filter((e) => e.kind === 'vm_started').map((e) => e.vm).sort()).toEqual(['db', 'stuck', 'web']);
    await h.runtime.close(50);
  });

  it('checks the pid again right before SIGKILL: a QEMU that exited while QMP was unreachable and whose pid was reused is not killed', async () => {
    const procs = new FakeProcesses();
    procs.table.set(700, qemuArgv('web'));
    procs.qmpQuit = async () => {
      procs.table.set(700, ['/bin/sh']); // QEMU died meanwhile; a shell got its pid
      return false;
    };
    const h = harness({ store: memoryVmStore([stored('web', { pid: 700 })]), leftovers: procs });
    await h.runtime.init();
    expect(procs.killed).toEqual([]);
    await waitUntil(() => h.launched.length === 1);
  });

  it('a leftover that survives SIGKILL is reported and its VM is not started beside it', async () => {
    const procs = new FakeProcesses();
    procs.table.set(600, qemuArgv('web'));
    procs.ignoresQuit.add(600);
    procs.unkillable.add(600);
    const h = harness({ store: memoryVmStore([stored('web', { pid: 600 })]), leftovers: procs });
    await h.runtime.init();
    expect(procs.killed).toEqual([600]);
    expect(h.launched).toEqual([]);
    expect(h.events).toEqual([{ kind: 'vm_failed', vm: 'web', reason: 'QEMU of the previous auraed (pid 600) could not be stopped' }]);
    expect(h.runtime.get('web')).toMatchObject({ state: 'stopped', pid: 0 });
  });

  it('a VM that can no longer start (config changed) is restored, not started, and said so', async () => {
    const h = harness({ store: memoryVmStore([stored('big', { request: { name: 'big', memoryMiB: 4096, cpus: 1, restart: 'never' } })]) });
    await h.runtime.init();
    await waitUntil(() => h.events.length === 1);
    expect(h.events[0]).toMatchObject({ kind: 'vm_failed', vm: 'big', reason: expect.stringMatching(/memory_mib 4096 exceeds vms\.maxMemoryMiB 1024/) });
    expect(h.runtime.get('big')).toMatchObject({ state: 'stopped', lastExit: expect.stringMatching(/exceeds vms\.maxMemoryMiB/) });
    expect(h.launched).toEqual([]);
  });
});

describe('procLeftovers (the real /proc reader)', () => {
  it('reads argv, and treats zombies and missing pids as no process', () => {
    const root = mkdtempSync(join(tmpdir(), 'aurae-proc-'));
    try {
      const proc = (pid: number, state: string, cmdline: string) => {
        mkdirSync(join(root, String(pid)));
        // The comm field may hold spaces and parentheses: the state is after the LAST ")".
        writeFileSync(join(root, String(pid), 'stat'), `${pid} (qemu (x) y) ${state} 1 1 1`);
        writeFileSync(join(root, String(pid), 'cmdline'), cmdline);
      };
      proc(10, 'S', `${qemuArgv('web').join('\0')}\0`);
      proc(11, 'Z', '');
      const leftovers = procLeftovers(root);
      expect(leftovers.cmdline(10)).toEqual(qemuArgv('web'));
      expect(leftovers.cmdline(11)).toBeNull();
      expect(leftovers.cmdline(12)).toBeNull();
      expect(procLeftovers().cmdline(process.pid)?.[0]).toMatch(/node/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('qmpQuit resolves false (does not throw) when nothing listens on the socket', async () => {
    expect(await procLeftovers().qmpQuit(join(tmpdir(), 'aurae-no-such-qmp.sock'), 200)).toBe(false);
  });
});

describe('sqliteVmStore', () => {
  it('round-trips rows (null exits, signal deaths), upserts by name, deletes', () => {
    const db = openDatabase(':memory:');
    const store = sqliteVmStore(db, () => new Date('2026-01-01T00:00:00Z'));
    const web = stored('web', { pid: 42, exit: { code: null, signal: 'SIGKILL' }, lastExit: 'QEMU killed by SIGKILL' });
    store.put(web);
    store.put(stored('db', { state: 'allocated', desiredRunning: false, qmpSocket: '' }));
    expect(store.list()).toEqual([stored('db', { state: 'allocated', desiredRunning: false, qmpSocket: '' }), web]);
    store.put({ ...web, state: 'stopped', pid: 0, desiredRunning: false, exit: { code: 0, signal: null } });
    expect(store.list()[1]).toMatchObject({ state: 'stopped', pid: 0, desiredRunning: false, exit: { code: 0, signal: null } });
    store.delete('web');
    expect(store.list().map((v) => v.request.name)).toEqual(['db']);
    // Migrating again (the next auraed) keeps the rows.
    expect(sqliteVmStore(db).list()).toHaveLength(1);
    expect(() => db.prepare("INSERT INTO vms (name, request, desired, state, created_at, updated_at) VALUES ('x', '{}', 'maybe', 'allocated', '', '')").run()).toThrow(/CHECK constraint/);
  });
});

async function waitUntil(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
}
