import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Cell } from '../gen/aurae/cells/v0/cells';
import { silentLogger } from '../log';
import { openDatabase } from '../store';
import { CgroupTree, cgroupWrites, nodeCgroupFs, requiredControllers, subtreeControlWrite } from '../cgroup';
import { FakeCgroupFs } from '../cgroup/testing';
import { cellHostname, parentCell, validateCellName } from './names';
import { reconcilePlan, shouldResume } from './reconcile';
import { cellToProto, validateCell } from './spec';
import { memoryCellStore, sqliteCellStore } from './store';
import { validateExecutable } from '../executables';

function invalidArgument(fn: () => unknown, pattern: RegExp) {
  try {
    fn();
  } catch (err) {
    expect((err as { code: string }).code).toBe('INVALID_ARGUMENT');
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('accepted');
}

describe('cell names', () => {
  it('accepts DNS-label paths up to 8 deep', () => {
    for (const ok of ['a', 'web', 'web/cache', 'a-1/b-2/c', '1/2/3/4/5/6/7/8', `${'a'.repeat(63)}/b`]) expect(validateCellName(ok)).toBe(ok);
  });

  it('refuses everything else, naming the field', () => {
    const bad = ['', '.', '..', '../x', 'a/../b', '/a', 'a/', 'a//b', 'A', 'web_1', '-a', 'a-', 'wéb', 'a\u0000', 'a b', '1/2/3/4/5/6/7/8/9', 'a'.repeat(64), `${'abcdefgh/'.repeat(28)}x`, 'a\u202eb', '\u{1F600}'];
    for (const name of bad) invalidArgument(() => validateCellName(name), /^cell_name: /);
    invalidArgument(() => validateCellName(undefined), /^cell_name: required/);
    invalidArgument(() => validateCellName('A', 'cell.name'), /^cell\.name: "A" is not a cell name/);
  });

  it('derives parent and hostname', () => {
    expect(parentCell('a/b/c')).toBe('a/b');
    expect(parentCell('a')).toBeNull();
    expect(cellHostname('a/b/web')).toBe('web');
  });
});

describe('validateCell', () => {
  const cell = (extra: Partial<Cell>): Cell => ({ name: 'web', isolateProcess: false, isolateNetwork: false, ...extra });

  it('accepts every limit within range and maps Aurae\'s isolation shorthands', () => {
    const spec = validateCell(
      cell({
        cpu: { weight: 200n, max: 50_000n, period: 100_000n },
        cpuset: { cpus: '0-1,3', mems: '0' },
        memory: { min: 1n, low: 2n, high: 3n, max: 4n, swapMax: 0n },
        pids: { max: 64n },
        io: { weight: 50n },
        isolateProcess: true,
      }),
    );
    expect(spec).toEqual({
      name: 'web',
      cpu: { weight: 200, max: 50_000, period: 100_000 },
      cpuset: { cpus: '0-1,3', mems: '0' },
      memory: { min: 1, low: 2, high: 3, max: 4, swapMax: 0 },
      pids: { max: 64 },
      io: { weight: 50 },
      isolation: { pid: true, mount: true, uts: true, ipc: true, network: false },
    });
    expect(validateCell(cell({ isolateNetwork: true, isolation: { pid: false, mount: false, uts: true, ipc: false, network: false } })).isolation).toEqual({
      pid: false, mount: false, uts: true, ipc: false, network: true,
    });
  });

  it('drops empty controller messages', () => {
    expect(validateCell(cell({ cpu: {}, memory: {} }))).toEqual({ name: 'web', isolation: { pid: false, mount: false, uts: false, ipc: false, network: false } });
  });

  it('names the field and the allowed range', () => {
    invalidArgument(() => validateCell(undefined), /^cell: required/);
    invalidArgument(() => validateCell(cell({ name: '' })), /^cell\.name: required/);
    invalidArgument(() => validateCell(cell({ name: '../etc' })), /^cell\.name: /);
    invalidArgument(() => validateCell(cell({ cpu: { weight: 0n } })), /^cell\.cpu\.weight: 0 is out of range: allowed 1\.\.10000$/);
    invalidArgument(() => validateCell(cell({ cpu: { weight: 10_001n } })), /cpu\.weight: .*1\.\.10000/);
    invalidArgument(() => validateCell(cell({ cpu: { max: 999n } })), /^cell\.cpu\.max: 999 is out of range: allowed 1000\.\.1000000000000$/);
    invalidArgument(() => validateCell(cell({ cpu: { max: -5n } })), /cpu\.max: -5/);
    invalidArgument(() => validateCell(cell({ cpu: { period: 2_000_000n } })), /cpu\.period: .*1000\.\.1000000/);
    invalidArgument(() => validateCell(cell({ memory: { max: -1n } })), /^cell\.memory\.max: -1 is out of range: allowed 0\.\.9007199254740991$/);
    // 64-bit extremes decode without loss (bigint) and are refused with the field and the range.
    invalidArgument(() => validateCell(cell({ memory: { swapMax: 2n ** 64n - 1n } })), /^cell\.memory\.swap_max: 18446744073709551615 is out of range: allowed 0\.\.9007199254740991$/);
    invalidArgument(() => validateCell(cell({ cpu: { max: -(2n ** 63n) } })), /^cell\.cpu\.max: -9223372036854775808 is out of range/);
    invalidArgument(() => validateCell(cell({ pids: { max: 2n ** 53n } })), /^cell\.pids\.max: 9007199254740992 is out of range: allowed 1\.\.4194304$/);
    invalidArgument(() => validateCell(cell({ memory: { high: 10n, max: 5n } })), /^cell\.memory\.high: 10 is above memory\.max \(5\)/);
    invalidArgument(() => validateCell(cell({ pids: { max: 0n } })), /^cell\.pids\.max: 0 is out of range: allowed 1\.\.4194304$/);
    invalidArgument(() => validateCell(cell({ pids: { max: 5_000_000n } })), /pids\.max/);
    invalidArgument(() => validateCell(cell({ io: { weight: 0n } })), /^cell\.io\.weight: .*1\.\.10000/);
    invalidArgument(() => validateCell(cell({ cpuset: { cpus: '0-' } })), /^cell\.cpuset\.cpus: "0-" is not a list such as "0-3,6"/);
    invalidArgument(() => validateCell(cell({ cpuset: { cpus: '3-1' } })), /cpuset\.cpus: "3-1" is out of range/);
    invalidArgument(() => validateCell(cell({ cpuset: { cpus: '9000' } })), /cpuset\.cpus.*ids 0\.\.8191/);
    invalidArgument(() => validateCell(cell({ cpuset: { mems: '0,x' } })), /^cell\.cpuset\.mems/);
  });

  it('round-trips through the API message', () => {
    const spec = validateCell(cell({ memory: { max: 1n << 20n }, isolateProcess: true, isolateNetwork: true }));
    expect(validateCell(cellToProto(spec))).toEqual(spec);
  });
});

describe('cgroupWrites', () => {
  it('plans the control files in order, only for set limits', () => {
    const spec = validateCell({
      name: 'a',
      cpu: { weight: 50n, max: 20_000n },
      cpuset: { cpus: '0', mems: '0' },
      memory: { low: 1024n, max: 65536n, swapMax: 0n },
      pids: { max: 32n },
      io: { weight: 10n },
      isolateProcess: false,
      isolateNetwork: false,
    });
    expect(cgroupWrites(spec)).toEqual([
      { file: 'cpu.weight', value: '50' },
      { file: 'cpu.max', value: '20000 100000' },
      { file: 'cpuset.cpus', value: '0' },
      { file: 'cpuset.mems', value: '0' },
      { file: 'memory.low', value: '1024' },
      { file: 'memory.max', value: '65536' },
      { file: 'memory.swap.max', value: '0' },
      { file: 'pids.max', value: '32' },
      { file: 'io.weight', value: 'default 10' },
    ]);
    expect(requiredControllers(spec)).toEqual(['cpu', 'cpuset', 'memory', 'pids', 'io']);
  });

  it('a period alone keeps the quota unlimited; no limits, no writes', () => {
    const base = { isolateProcess: false, isolateNetwork: false };
    expect(cgroupWrites(validateCell({ name: 'a', cpu: { period: 50_000n }, ...base }))).toEqual([{ file: 'cpu.max', value: 'max 50000' }]);
    expect(cgroupWrites(validateCell({ name: 'a', ...base }))).toEqual([]);
  });

  it('delegates only the managed controllers that are available and missing', () => {
    expect(subtreeControlWrite(new Set(['cpuset', 'cpu', 'memory', 'pids', 'misc']), new Set(['cpu']))).toBe('+cpuset +memory +pids');
    expect(subtreeControlWrite(new Set(['cpu']), new Set(['cpu']))).toBeNull();
  });
});

describe('CgroupTree on the fake cgroupfs', () => {
  const root = '/sys/fs/cgroup';
  const tree = (opts: ConstructorParameters<typeof FakeCgroupFs>[1] = {}) => {
    const fs = new FakeCgroupFs(root, opts);
    return { fs, tree: new CgroupTree({ fs, root, log: silentLogger, sleep: async () => {} }) };
  };
  const spec = (name: string, extra: Partial<Cell> = {}) => validateCell({ name, isolateProcess: false, isolateNetwork: false, ...extra });

  it('creates the aurae cgroup with the controllers delegated down to it', () => {
    const { fs, tree: t } = tree();
    expect(t.available()).toBe(true);
    t.ensureBase();
    t.ensureBase();
    expect(fs.writes).toEqual(['cgroup.subtree_control <- +cpu +cpuset +memory +pids +io', 'aurae/cgroup.subtree_control <- +cpu +cpuset +memory +pids +io']);
  });

  it('creates nested cells: parent delegation first, then mkdir, then the limits', () => {
    const { fs, tree: t } = tree();
    t.ensureBase();
    t.createCell(spec('a', { memory: { max: 1n << 20n } }));
    t.createCell(spec('a/b', { pids: { max: 10n }, cpu: { weight: 10n } }));
    expect(fs.writes.slice(2)).toEqual([
      'aurae/a/memory.max <- 1048576',
      'aurae/a/cgroup.subtree_control <- +cpu +cpuset +memory +pids +io',
      'aurae/a/b/cpu.weight <- 10',
      'aurae/a/b/pids.max <- 10',
      'aurae/a/b/cgroup.subtree_control <- +cpu +cpuset +memory +pids +io',
    ]);
    expect(fs.read(`${root}/aurae/a/b/pids.max`)).toBe('10\n');
    expect(() => t.createCell(spec('a/b'))).toThrow(expect.objectContaining({ code: 'ALREADY_EXISTS' }));
    expect(() => t.createCell(spec('x/y'))).toThrow(expect.objectContaining({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/parent cell "x" is missing/) }));
  });

  it('a limit the kernel lacks fails with FAILED_PRECONDITION and leaves no cgroup behind', () => {
    const { fs, tree: t } = tree({ ioWeight: false });
    t.ensureBase();
    expect(() => t.createCell(spec('a', { io: { weight: 10n } }))).toThrow(expect.objectContaining({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/io\.weight.*BLK_CGROUP_IOCOST/) }));
    expect(fs.exists(`${root}/aurae/a`)).toBe(false);
  });

  it('a controller missing from the kernel fails before mkdir', () => {
    const { fs, tree: t } = tree({ controllers: 'cpu memory' });
    t.ensureBase();
    expect(() => t.createCell(spec('a', { pids: { max: 5n } }))).toThrow(expect.objectContaining({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/the pids controller is not available/) }));
    expect(fs.exists(`${root}/aurae/a`)).toBe(false);
  });

  it('a cpuset outside the parent\'s is an INVALID_ARGUMENT saying so', () => {
    const { fs, tree: t } = tree({ cpus: [0] });
    t.ensureBase();
    expect(() => t.createCell(spec('a', { cpuset: { cpus: '0-3' } }))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/cpuset\.cpus = "0-3".*within the parent's/) }));
    expect(fs.exists(`${root}/aurae/a`)).toBe(false);
  });

  it('removeTree kills every process below, waits, and removes leaves first', async () => {
    const { fs, tree: t } = tree();
    t.ensureBase();
    t.createCell(spec('a'));
    t.createCell(spec('a/b'));
    t.leaf('a', 'web').prepare();
    t.leaf('a/b', 'db').prepare();
    fs.addProc(`${root}/aurae/a/exe.web`, 11);
    fs.addProc(`${root}/aurae/a/b/exe.db`, 12);
    const killed: number[] = [];
    fs.onKill = (pids) => killed.push(...pids);
    expect(t.populated(`${root}/aurae/a`)).toBe(true);
    await t.removeTree(`${root}/aurae/a`, 1000);
    expect(killed.sort()).toEqual([11, 12]);
    expect(fs.dirsUnder(`${root}/aurae`)).toEqual([]);
  });

  it('removeTree gives up with an error when processes survive', async () => {
    const { fs, tree: t } = tree();
    t.ensureBase();
    t.createCell(spec('a'));
    t.leaf('a', 'web').prepare();
    fs.addProc(`${root}/aurae/a/exe.web`, 11);
    fs.write = () => {}; // cgroup.kill does nothing: a process stuck in the kernel
    await expect(t.removeTree(`${root}/aurae/a`, 50)).rejects.toThrow(/survived cgroup\.kill .*pids 11/);
  });

  it('observes cells, leaves and strays', () => {
    const { tree: t, fs } = tree();
    t.ensureBase();
    t.createCell(spec('a'));
    t.createCell(spec('a/b'));
    t.leaf('a/b', 'web').prepare();
    fs.mkdir(`${root}/aurae/Weird`);
    fs.mkdir(`${root}/aurae/exe.top`);
    expect(t.observe((n) => /^[a-z0-9-]+$/.test(n))).toEqual({
      cells: ['a', 'a/b'],
      leaves: [{ cell: 'a/b', executable: 'web' }],
      unknown: ['Weird', 'exe.top'],
    });
  });

  it('a leaf is made in one pass: one mkdir, nothing read back; an existing one says so; a missing cell is named', () => {
    const { tree: t, fs } = tree();
    t.ensureBase();
    t.createCell(spec('a'));
    const calls: string[] = [];
    for (const m of ['read', 'write', 'mkdir', 'exists', 'subdirs'] as const) {
      const real = fs[m].bind(fs) as (...args: unknown[]) => unknown;
      (fs as unknown as Record<string, unknown>)[m] = (...args: unknown[]) => {
        calls.push(`${m} ${String(args[0]).slice(root.length)}`);
        return real(...args);
      };
    }
    expect(t.leaf('a', 'web').prepare()).toBe('created');
    expect(calls).toEqual(['mkdir /aurae/a/exe.web']);
    expect(t.leaf('a', 'web').prepare()).toBe('existing');
    expect(() => t.leaf('gone', 'web').prepare()).toThrow(expect.objectContaining({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/cell "gone": its cgroup .*\/aurae\/gone is missing: free and allocate the cell again/) }));
  });

  it('reads usage and OOM kills', () => {
    const { tree: t, fs } = tree();
    t.ensureBase();
    t.createCell(spec('a'));
    fs.setFile(`${root}/aurae/a/memory.current`, '4096\n');
    fs.setFile(`${root}/aurae/a/cpu.stat`, 'usage_usec 77\nuser_usec 70\n');
    const leaf = t.leaf('a', 'x');
    leaf.prepare();
    fs.addProc(leaf.dir, 5);
    expect(t.usage(`${root}/aurae/a`)).toEqual({ memoryCurrentBytes: 4096, pidsCurrent: 1, cpuUsageUsec: 77 });
    expect(leaf.procs()).toEqual([5]);
    expect(leaf.oomKills()).toBe(0);
    fs.oomKill(leaf.dir);
    expect(leaf.oomKills()).toBe(1);
  });
});

describe('nodeCgroupFs on a temp dir', () => {
  let dir: string;
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes existing control files, never creates one, lists subdirectories', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-cgfs-'));
    fs.writeFileSync(path.join(dir, 'pids.max'), 'max\n');
    nodeCgroupFs.write(path.join(dir, 'pids.max'), '10');
    // A regular file is not truncated (O_WRONLY, no O_TRUNC: cgroupfs takes each write whole).
    expect(nodeCgroupFs.read(path.join(dir, 'pids.max'))).toMatch(/^10/);
    expect(() => nodeCgroupFs.write(path.join(dir, 'io.weight'), '1')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(fs.existsSync(path.join(dir, 'io.weight'))).toBe(false);
    nodeCgroupFs.mkdir(path.join(dir, 'b'));
    nodeCgroupFs.mkdir(path.join(dir, 'a'));
    expect(nodeCgroupFs.subdirs(dir)).toEqual(['a', 'b']);
    expect(nodeCgroupFs.subdirs(path.join(dir, 'missing'))).toEqual([]);
    nodeCgroupFs.rmdir(path.join(dir, 'a'));
    expect(nodeCgroupFs.exists(path.join(dir, 'a'))).toBe(false);
  });

  it('CgroupTree is disabled where there is no cgroup2 root', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-cgfs-'));
    expect(new CgroupTree({ fs: nodeCgroupFs, root: dir, log: silentLogger }).available()).toBe(false);
  });
});

describe('reconcilePlan', () => {
  const spec = (name: string) => validateCell({ name, isolateProcess: false, isolateNetwork: false });
  const exe = (cell: string, name: string, desiredRunning: boolean, state: 'running' | 'stopped' | 'exited' | 'failed' | 'backoff') => ({ cell, name, desiredRunning, state });

  it('removes strays (topmost only), recreates missing cells parents first, clears leaves, restores executables', () => {
    const plan = reconcilePlan(
      {
        cells: [spec('b/c'), spec('a'), spec('b')],
        executables: [exe('a', 'web', true, 'running'), exe('b/c', 'job', true, 'exited'), exe('a', 'off', false, 'stopped'), exe('b', 'bo', true, 'backoff')],
      },
      {
        cells: ['a', 'old', 'old/deeper'],
        leaves: [{ cell: 'a', executable: 'web' }, { cell: 'a', executable: 'gone' }, { cell: 'old', executable: 'x' }],
        unknown: ['Bad'],
      },
    );
    expect(plan).toEqual([
      { kind: 'remove_stray', path: 'Bad', reason: 'not a cell or executable cgroup' },
      { kind: 'remove_stray', path: 'a/exe.gone', reason: 'executable not in the store' },
      { kind: 'remove_stray', path: 'old', reason: 'cell not in the store' },
      { kind: 'create_cell', cell: 'b', spec: spec('b') },
      { kind: 'create_cell', cell: 'b/c', spec: spec('b/c') },
      { kind: 'clear_leaf', cell: 'a', executable: 'web' },
      { kind: 'restore_executable', cell: 'a', executable: 'off', start: false },
      { kind: 'restore_executable', cell: 'a', executable: 'web', start: true },
      { kind: 'restore_executable', cell: 'b', executable: 'bo', start: true },
      { kind: 'restore_executable', cell: 'b/c', executable: 'job', start: false },
    ]);
  });

  it('nothing stored, nothing observed: nothing to do', () => {
    expect(reconcilePlan({ cells: [], executables: [] }, { cells: [], leaves: [], unknown: [] })).toEqual([]);
  });

  it('resumes only what should be running', () => {
    expect(shouldResume({ desiredRunning: true, state: 'running' })).toBe(true);
    expect(shouldResume({ desiredRunning: true, state: 'failed' })).toBe(false);
    expect(shouldResume({ desiredRunning: false, state: 'running' })).toBe(false);
  });
});

describe('cell store', () => {
  const exeSpec = validateExecutable({ name: 'web', command: 'sleep 1', description: '', args: [], env: {}, cwd: '' });

  for (const [name, make] of [
    ['sqlite :memory:', () => sqliteCellStore(openDatabase(':memory:'))],
    ['memory', () => memoryCellStore()],
  ] as const) {
    it(`${name}: keeps cells and executables, upserts, cascades on delete`, () => {
      const store = make();
      const a = validateCell({ name: 'a', memory: { max: 100n }, isolateProcess: true, isolateNetwork: false });
      store.insertCell(a);
      store.insertCell(validateCell({ name: 'a/b', isolateProcess: false, isolateNetwork: false }));
      expect(() => store.insertCell(a)).toThrow(/UNIQUE/);
      store.putExecutable({ cell: 'a', spec: exeSpec, desiredRunning: true, state: 'running', restarts: 0, lastExit: null });
      store.putExecutable({ cell: 'a', spec: exeSpec, desiredRunning: false, state: 'stopped', restarts: 2, lastExit: { code: null, signal: 'SIGTERM', oomKilled: false, time: 5 } });
      expect(store.cells().map((c) => c.spec)).toEqual([a, validateCell({ name: 'a/b', isolateProcess: false, isolateNetwork: false })]);
      expect(store.executables()).toEqual([
        { cell: 'a', spec: exeSpec, desiredRunning: false, state: 'stopped', restarts: 2, lastExit: { code: null, signal: 'SIGTERM', oomKilled: false, time: 5 } },
      ]);
      store.deleteCell('a/b');
      store.deleteCell('a');
      expect(store.cells()).toEqual([]);
      expect(store.executables()).toEqual([]);
    });
  }

  it('sqlite: refuses a nested cell whose parent is not stored, and keeps data across reopen', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-cellstore-'));
    try {
      const file = path.join(dir, 'aurae.db');
      const db = openDatabase(file);
      const store = sqliteCellStore(db);
      expect(() => store.insertCell(validateCell({ name: 'x/y', isolateProcess: false, isolateNetwork: false }))).toThrow(/FOREIGN KEY/);
      store.insertCell(validateCell({ name: 'x', isolateProcess: false, isolateNetwork: false }));
      db.close();
      const again = sqliteCellStore(openDatabase(file));
      expect(again.cells().map((c) => c.spec.name)).toEqual(['x']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
