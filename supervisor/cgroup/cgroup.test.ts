// The cgroup module on its own: layout, plans, delegation (with its one-by-one fallback), confinement and the
// stat readers, against the in-memory FakeCgroupFs. The cell tree's executor is tested with its client
// (supervisor/cells/cells.test.ts); the real kernel in qemu-tests/10-cells and 12-workloads.
import { describe, expect, it } from 'vitest';
import { createMemoryLogger } from '../../init/log';
import {
  CELL_TREE_DIR,
  CGROUP_ROOT,
  CgroupReadError,
  type CgroupFs,
  cellDir,
  confineProcess,
  confineSteps,
  delegateRootControllers,
  enableControllers,
  enableLine,
  executableOfLeaf,
  isCgroup2,
  leafDir,
  parseControllers,
  readDelegation,
  readOomKills,
  readStatFiles,
  readUsage,
  requiredControllers,
  subtreeControlWrite,
  vmDir,
} from './index';
import { FakeCgroupFs } from './testing';

const ROOT = '/sys/fs/cgroup';
const errno = (code: string) => Object.assign(new Error(code), { code });

/** A FakeCgroupFs whose subtree_control refuses any write that names `controller` (EINVAL). */
function refusing(controller: string, options?: ConstructorParameters<typeof FakeCgroupFs>[1]): FakeCgroupFs {
  const fs = new FakeCgroupFs(ROOT, options);
  const write = fs.write.bind(fs);
  fs.write = (file, value) => {
    if (file.endsWith('/cgroup.subtree_control') && value.includes(controller)) {
      fs.writes.push(`refused ${value}`);
      throw errno('EINVAL');
    }
    write(file, value);
  };
  return fs;
}

describe('layout', () => {
  it('places cells under <root>/aurae, leaves as exe.<name>, VMs under <root>/aurae-vms', () => {
    expect(CGROUP_ROOT).toBe('/sys/fs/cgroup');
    expect(CELL_TREE_DIR).toBe('/sys/fs/cgroup/aurae');
    expect(cellDir(CELL_TREE_DIR, 'a/b')).toBe('/sys/fs/cgroup/aurae/a/b');
    expect(leafDir(CELL_TREE_DIR, 'a/b', 'web')).toBe('/sys/fs/cgroup/aurae/a/b/exe.web');
    expect(vmDir(CGROUP_ROOT, 'web')).toBe('/sys/fs/cgroup/aurae-vms/web');
  });

  it('tells leaves from cells by the exe. prefix', () => {
    expect(executableOfLeaf('exe.web')).toBe('web');
    expect(executableOfLeaf('web')).toBeNull();
    expect(executableOfLeaf('exe')).toBeNull();
  });

  it('sees cgroup2 by its cgroup.controllers', () => {
    expect(isCgroup2(new FakeCgroupFs(ROOT), ROOT)).toBe(true);
    expect(isCgroup2(new FakeCgroupFs(ROOT), '/elsewhere')).toBe(false);
  });
});

describe('plans', () => {
  it('names controllers in managed order and writes lines in the order given', () => {
    expect(requiredControllers({ io: { weight: 10 }, memory: { max: 1 }, cpu: { weight: 5 } })).toEqual(['cpu', 'memory', 'io']);
    expect(requiredControllers({})).toEqual([]);
    expect(enableLine(['memory', 'cpu'])).toBe('+memory +cpu');
    expect(enableLine([])).toBeNull();
  });

  it('delegates only what is available and not yet enabled', () => {
    expect(subtreeControlWrite(parseControllers('cpu memory pids\n'), parseControllers('memory'))).toBe('+cpu +pids');
    expect(subtreeControlWrite(parseControllers('cpu memory'), parseControllers('cpu memory'))).toBeNull();
  });

  it('confines a process: the parent delegates, then the limits, then the pid', () => {
    const steps = confineSteps({ dir: vmDir(ROOT, 'web'), delegate: ['memory', 'cpu'], limits: { memory: { max: 1024 }, cpu: { max: 200_000, period: 100_000 } }, pid: 42 });
    expect(steps.map((s) => ('mkdir' in s ? `mkdir ${s.mkdir}` : `${s.file} <- ${s.value}`))).toEqual([
      'mkdir /sys/fs/cgroup/aurae-vms',
      '/sys/fs/cgroup/aurae-vms/cgroup.subtree_control <- +memory +cpu',
      'mkdir /sys/fs/cgroup/aurae-vms/web',
      '/sys/fs/cgroup/aurae-vms/web/cpu.max <- 200000 100000',
      '/sys/fs/cgroup/aurae-vms/web/memory.max <- 1024',
      '/sys/fs/cgroup/aurae-vms/web/cgroup.procs <- 42',
    ]);
  });
});

// Moved from init/mounts (the boot's delegation from the root now lives here); assertions unchanged.
describe('cgroup controllers', () => {
  it('enables only the wanted controllers the kernel offers', () => {
    const subtreeControlLine = (available: string) => subtreeControlWrite(parseControllers(available), new Set());
    expect(subtreeControlLine('cpuset cpu io memory hugetlb pids rdma misc\n')).toBe('+cpu +cpuset +memory +pids +io');
    expect(subtreeControlLine('cpuset cpu memory pids')).toBe('+cpu +cpuset +memory +pids');
    expect(subtreeControlLine('rdma\n')).toBeNull();
  });

  it('writes them at once, or one by one when the set is refused', () => {
    const writes: string[] = [];
    const log = createMemoryLogger();
    const enabled = delegateRootControllers({
      fs: {
        read: () => 'cpu memory pids io',
        write: (_p, text) => {
          writes.push(text);
          if (text.includes('io')) throw new Error('EINVAL');
        },
      },
      log,
    });
    expect(writes).toEqual(['+cpu +memory +pids +io', '+cpu', '+memory', '+pids', '+io']);
    expect(enabled).toEqual(['cpu', 'memory', 'pids']);
  });

  it('warns when cgroup2 is not there', () => {
    const log = createMemoryLogger();
    expect(delegateRootControllers({ fs: { read: () => { throw new Error('ENOENT'); }, write: () => {} }, log })).toEqual([]);
    expect(log.lines[0]).toMatch(/warning: cgroups: reading \/sys\/fs\/cgroup\/cgroup.controllers failed: ENOENT: is cgroup2 mounted\?/);
  });
});

describe('delegation on a kernel-like fs', () => {
  it('at boot: every offered controller at once, logged once', () => {
    const fs = new FakeCgroupFs(ROOT, { controllers: 'cpuset cpu io memory pids hugetlb' });
    const log = createMemoryLogger();
    expect(delegateRootControllers({ fs, log })).toEqual(['cpu', 'cpuset', 'memory', 'pids', 'io']);
    expect(fs.writes).toEqual(['cgroup.subtree_control <- +cpu +cpuset +memory +pids +io']);
    expect([...readDelegation(fs, ROOT).enabled]).toEqual(['cpu', 'cpuset', 'memory', 'pids', 'io']);
    expect(log.lines).toEqual([expect.stringMatching(/cgroups: enabled cpu cpuset memory pids io for child cgroups$/)]);
  });

  it('at boot: a refused controller costs only itself, and each refusal is logged', () => {
    const fs = refusing('io');
    const log = createMemoryLogger();
    expect(delegateRootControllers({ fs, log })).toEqual(['cpu', 'cpuset', 'memory', 'pids']);
    expect([...readDelegation(fs, ROOT).enabled]).toEqual(['cpu', 'cpuset', 'memory', 'pids']);
    expect(log.lines.join('\n')).toMatch(/warning: cgroups: writing "\+cpu \+cpuset \+memory \+pids \+io" to \/sys\/fs\/cgroup\/cgroup.subtree_control failed \(EINVAL\); trying one by one/);
    expect(log.lines.join('\n')).toMatch(/warning: cgroups: enabling io failed: EINVAL/);
    expect(log.lines.join('\n')).not.toMatch(/cgroups: enabled/);
  });

  it('at boot: none of the managed controllers offered is a warning, nothing written', () => {
    const fs = new FakeCgroupFs(ROOT, { controllers: 'rdma misc' });
    const log = createMemoryLogger();
    expect(delegateRootControllers({ fs, log })).toEqual([]);
    expect(fs.writes).toEqual([]);
    expect(log.lines[0]).toMatch(/warning: cgroups: none of cpu, cpuset, memory, pids, io is available \(cgroup.controllers: "rdma misc"\)/);
  });

  it('enableControllers reports the set refusal and each refused controller; a hook may stop it', () => {
    const fs = refusing('memory');
    const seen: string[] = [];
    const hooks = { onSetRefused: (line: string) => seen.push(`set ${line}`), onRefused: (c: string) => seen.push(`refused ${c}`) };
    expect(enableControllers(fs, ROOT, '+cpu +memory +pids', hooks)).toEqual(['cpu', 'pids']);
    expect(seen).toEqual(['set +cpu +memory +pids', 'refused memory']);

    const stopping = refusing('cpu');
    const stop = () => {
      throw new Error('required');
    };
    expect(() => enableControllers(stopping, ROOT, '+cpu +memory', { onRefused: stop })).toThrow('required');
    expect(stopping.writes).toEqual(['refused +cpu +memory', 'refused +cpu']);
  });
});

describe('confineProcess on a kernel-like fs', () => {
  it('creates the group, delegates, writes the limits and moves the process in', () => {
    const fs = new FakeCgroupFs(ROOT);
    delegateRootControllers({ fs, log: createMemoryLogger() });
    const dir = vmDir(ROOT, 'web');
    confineProcess(fs, { dir, delegate: ['memory', 'cpu'], limits: { memory: { max: 1 << 30 }, cpu: { max: 200_000, period: 100_000 } }, pid: 42 });
    expect(fs.read(`${dir}/memory.max`)).toBe(`${1 << 30}\n`);
    expect(fs.read(`${dir}/cpu.max`)).toBe('200000 100000\n');
    expect(fs.read(`${dir}/cgroup.procs`)).toBe('42\n');
    // A second VM reuses the parent as it is.
    confineProcess(fs, { dir: vmDir(ROOT, 'db'), delegate: ['memory', 'cpu'], limits: {}, pid: 43 });
    expect(fs.dirsUnder(ROOT)).toEqual(['aurae-vms', 'aurae-vms/db', 'aurae-vms/web']);
  });

  it('fails with the errno of the step when the root does not delegate the controllers', () => {
    const fs = new FakeCgroupFs(ROOT);
    expect(() => confineProcess(fs, { dir: vmDir(ROOT, 'web'), delegate: ['memory'], limits: {}, pid: 42 })).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });
});

describe('stat readers', () => {
  const dir = `${CELL_TREE_DIR}/a`;
  const tree = () => {
    const fs = new FakeCgroupFs(ROOT);
    delegateRootControllers({ fs, log: createMemoryLogger() });
    fs.mkdir(CELL_TREE_DIR);
    fs.write(`${CELL_TREE_DIR}/cgroup.subtree_control`, '+cpu +memory +pids');
    fs.mkdir(dir);
    return fs;
  };

  it('reads usage and OOM kills, leaving out what is not there', () => {
    const fs = tree();
    fs.setFile(`${dir}/memory.current`, '8192\n');
    fs.setFile(`${dir}/cpu.stat`, 'usage_usec 5\nuser_usec 3\nsystem_usec 2\n');
    fs.addProc(dir, 7);
    expect(readUsage(fs, dir)).toEqual({ memoryCurrentBytes: 8192, pidsCurrent: 1, cpuUsageUsec: 5 });
    expect(readOomKills(fs, dir)).toBe(0);
    fs.oomKill(dir);
    expect(readOomKills(fs, dir)).toBe(1);
    expect(readUsage(fs, `${CELL_TREE_DIR}/gone`)).toEqual({});
    expect(readOomKills(fs, `${CELL_TREE_DIR}/gone`)).toBe(0);
  });

  it('a file that is gone is absent; one that cannot be read names itself, or is skipped on request', () => {
    const fs = tree();
    expect(Object.keys(readStatFiles(fs, dir)).sort()).toEqual(['cpu.stat', 'memory.current', 'memory.events', 'memory.max', 'pids.current', 'pids.max']);
    const denied: Pick<CgroupFs, 'read'> = {
      read(file) {
        if (file.endsWith('/memory.max')) throw errno('EACCES');
        return fs.read(file);
      },
    };
    const err = (() => {
      try {
        readStatFiles(denied, dir);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CgroupReadError);
    expect(err).toMatchObject({ file: `${dir}/memory.max`, message: `reading ${dir}/memory.max failed (EACCES)` });
    expect(readStatFiles(denied, dir, ['memory.max', 'memory.current'], 'skip')).toEqual({ 'memory.current': '0\n' });
  });
});
