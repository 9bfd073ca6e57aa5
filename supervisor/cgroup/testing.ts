// Test doubles of the cgroup filesystem. FakeCgroupFs: in memory, behaving like the kernel where auraed depends
// on it: control files appear with mkdir according to the parent's subtree_control; writes to missing files fail
// ENOENT; subtree_control refuses unavailable controllers (ENOENT) and cgroups with processes (EBUSY); rmdir
// refuses populated cgroups and cgroups with children (EBUSY); cgroup.kill empties a subtree; cgroup.events
// reports populated. plainDirCgroupFs: an ordinary directory standing in for cgroupfs on hosts without it
// (writes create regular files). Not used by auraed.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { type CgroupFs, nodeCgroupFs } from './fs';

const errno = (code: string, what: string) => Object.assign(new Error(`${code}: ${what}`), { code });

export interface FakeCgroupOptions {
  /** cgroup.controllers of the root. */
  controllers?: string;
  /** Offer io.weight (a kernel with io cost control). */
  ioWeight?: boolean;
  /** The CPUs that exist (cpuset.cpus must be within them). */
  cpus?: number[];
}

export class FakeCgroupFs implements CgroupFs {
  private readonly dirs = new Set<string>();
  private readonly files = new Map<string, string>();
  private readonly procsOf = new Map<string, Set<number>>();
  private readonly watchers = new Map<string, Set<() => void>>();
  /** Every write, in order ("<file> <- <value>"), relative to the root. */
  readonly writes: string[] = [];
  /** Called with the pids killed by cgroup.kill. */
  onKill: (pids: number[]) => void = () => {};

  constructor(
    readonly root: string,
    private readonly options: FakeCgroupOptions = {},
  ) {
    this.dirs.add(root);
    this.files.set(path.join(root, 'cgroup.controllers'), `${options.controllers ?? 'cpuset cpu io memory pids'}\n`);
    this.files.set(path.join(root, 'cgroup.subtree_control'), '\n');
    this.files.set(path.join(root, 'cgroup.procs'), '');
    this.procsOf.set(root, new Set());
  }

  read(file: string): string {
    const dir = path.dirname(file);
    const name = path.basename(file);
    if (name === 'cgroup.procs' && this.dirs.has(dir)) return [...this.procsOf.get(dir)!].map((p) => `${p}\n`).join('');
    if (name === 'cgroup.events' && this.files.has(file)) return `populated ${this.populated(dir) ? 1 : 0}\nfrozen 0\n`;
    if (name === 'pids.current' && this.files.has(file)) return `${this.subtreePids(dir).length}\n`;
    const content = this.files.get(file);
    if (content === undefined) throw errno('ENOENT', file);
    return content;
  }

  write(file: string, value: string): void {
    const dir = path.dirname(file);
    const name = path.basename(file);
    if (!this.files.has(file)) throw errno('ENOENT', file);
    this.writes.push(`${path.relative(this.root, file)} <- ${value}`);
    switch (name) {
      case 'cgroup.subtree_control':
        return this.writeSubtreeControl(dir, value);
      case 'cgroup.procs':
        return this.addProc(dir, Number(value));
      case 'cgroup.kill': {
        const pids = this.subtreePids(dir);
        for (const d of this.dirs) if (d === dir || d.startsWith(`${dir}/`)) this.procsOf.get(d)!.clear();
        this.onKill(pids);
        return;
      }
      case 'cpu.weight':
      case 'io.weight': {
        const n = Number(value.replace(/^default /, ''));
        if (!Number.isInteger(n) || n < 1 || n > 10_000) throw errno('EINVAL', file);
        break;
      }
      case 'cpuset.cpus': {
        const allowed = new Set(this.options.cpus ?? [0]);
        for (const part of value.split(',')) {
          const [a, b = a] = part.split('-').map(Number) as [number, number?];
          for (let c = a; c <= (b ?? a); c++) if (!allowed.has(c)) throw errno('EINVAL', `${file}: cpu ${c}`);
        }
        break;
      }
    }
    this.files.set(file, `${value}\n`);
    for (const l of this.watchers.get(file) ?? []) l();
  }

  mkdir(dir: string): void {
    if (this.dirs.has(dir)) throw errno('EEXIST', dir);
    const parent = path.dirname(dir);
    if (!this.dirs.has(parent)) throw errno('ENOENT', parent);
    this.dirs.add(dir);
    this.procsOf.set(dir, new Set());
    const delegated = this.controllersIn(parent, 'cgroup.subtree_control');
    const f = (name: string, content: string) => this.files.set(path.join(dir, name), content);
    f('cgroup.controllers', `${[...delegated].join(' ')}\n`);
    f('cgroup.subtree_control', '\n');
    f('cgroup.procs', '');
    f('cgroup.events', '');
    f('cgroup.kill', '');
    f('cpu.stat', 'usage_usec 0\nuser_usec 0\nsystem_usec 0\n');
    if (delegated.has('cpu')) {
      f('cpu.weight', '100\n');
      f('cpu.max', 'max 100000\n');
    }
    if (delegated.has('cpuset')) {
      f('cpuset.cpus', '\n');
      f('cpuset.mems', '\n');
    }
    if (delegated.has('memory')) {
      for (const m of ['memory.min', 'memory.low']) f(m, '0\n');
      for (const m of ['memory.high', 'memory.max', 'memory.swap.max']) f(m, 'max\n');
      f('memory.current', '0\n');
      f('memory.events', 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n');
    }
    if (delegated.has('pids')) {
      f('pids.max', 'max\n');
      f('pids.current', '');
    }
    if (delegated.has('io')) {
      f('io.stat', '');
      if (this.options.ioWeight) f('io.weight', 'default 100\n');
    }
  }

  rmdir(dir: string): void {
    if (!this.dirs.has(dir)) throw errno('ENOENT', dir);
    if ([...this.dirs].some((d) => d.startsWith(`${dir}/`)) || this.populated(dir)) throw errno('EBUSY', dir);
    this.dirs.delete(dir);
    this.procsOf.delete(dir);
    for (const file of [...this.files.keys()]) if (path.dirname(file) === dir) this.files.delete(file);
  }

  exists(p: string): boolean {
    return this.dirs.has(p) || this.files.has(p);
  }

  subdirs(dir: string): string[] {
    return [...this.dirs].filter((d) => path.dirname(d) === dir && d !== dir).map((d) => path.basename(d)).sort();
  }

  watch(file: string, listener: () => void): () => void {
    if (!this.watchers.has(file)) this.watchers.set(file, new Set());
    this.watchers.get(file)!.add(listener);
    return () => this.watchers.get(file)?.delete(listener);
  }

  // --- test helpers ---

  /** Put a process into a cgroup (moving it out of any other), like a write to cgroup.procs. */
  addProc(dir: string, pid: number): void {
    if (!this.dirs.has(dir)) throw errno('ENOENT', dir);
    if (dir !== this.root && this.controllersIn(dir, 'cgroup.subtree_control').size > 0) throw errno('EBUSY', `${dir}: no internal processes`);
    for (const set of this.procsOf.values()) set.delete(pid);
    this.procsOf.get(dir)!.add(pid);
  }

  removeProc(pid: number): void {
    for (const set of this.procsOf.values()) set.delete(pid);
  }

  /** Bump memory.events oom_kill, as the kernel's OOM killer does. */
  oomKill(dir: string): void {
    const file = path.join(dir, 'memory.events');
    const n = Number(/oom_kill (\d+)/.exec(this.read(file))?.[1] ?? 0) + 1;
    this.files.set(file, `low 0\nhigh 0\nmax 0\noom 1\noom_kill ${n}\n`);
    for (const l of this.watchers.get(file) ?? []) l();
  }

  setFile(file: string, content: string): void {
    this.files.set(file, content);
  }

  dirsUnder(dir: string): string[] {
    return [...this.dirs].filter((d) => d.startsWith(`${dir}/`)).map((d) => path.relative(dir, d)).sort();
  }

  private controllersIn(dir: string, file: string): Set<string> {
    return new Set((this.files.get(path.join(dir, file)) ?? '').trim().split(/\s+/).filter(Boolean));
  }

  private writeSubtreeControl(dir: string, value: string): void {
    const available = this.controllersIn(dir, 'cgroup.controllers');
    const enabled = this.controllersIn(dir, 'cgroup.subtree_control');
    for (const token of value.trim().split(/\s+/)) {
      const c = token.slice(1);
      if (!available.has(c)) throw errno('ENOENT', `${dir}: controller ${c} not available`);
      if (dir !== this.root && this.procsOf.get(dir)!.size > 0) throw errno('EBUSY', `${dir}: has processes`);
      if (token.startsWith('+')) enabled.add(c);
      else enabled.delete(c);
    }
    this.files.set(path.join(dir, 'cgroup.subtree_control'), `${[...enabled].join(' ')}\n`);
  }

  private subtreePids(dir: string): number[] {
    return [...this.dirs].filter((d) => d === dir || d.startsWith(`${dir}/`)).flatMap((d) => [...this.procsOf.get(d)!]);
  }

  private populated(dir: string): boolean {
    return this.subtreePids(dir).length > 0;
  }
}

/** nodeCgroupFs on an ordinary directory: a write creates the file, as no control file exists there. */
export const plainDirCgroupFs: CgroupFs = {
  ...nodeCgroupFs,
  write: (file, value) => writeFileSync(file, value),
};
