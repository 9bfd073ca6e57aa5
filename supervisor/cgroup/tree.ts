// The cell tree's executor: creates, fills, empties and removes the cgroups of cells (<root>/aurae/<cell path>)
// and of executables (<cell cgroup>/exe.<name>, the leaves that hold processes: cgroup v2 allows processes only
// in cgroups that delegate no controller). Small and imperative: where things live comes from layout.ts, what
// to write from plan.ts, how to delegate from delegation.ts, what the stat files say from stats.ts.
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import { type DelegationState, enableControllers, readDelegation } from './delegation';
import { type CgroupFs, errnoCode, isCgroup2 } from './fs';
import { cellDir, cellTreeDir, dirname, executableOfLeaf, join, leafDir } from './layout';
import { type CgroupLimits, type CgroupWrite, type Controller, cgroupWrites, controllerOf, subtreeControlWrite } from './plan';
import { type CgroupUsage, readOomKills, readUsage } from './stats';

/** An executable's leaf cgroup, as its runner (supervisor/executables) needs it; made by CgroupTree.leaf. */
export interface LeafCgroup {
  /** Absolute directory, passed to aurae-exec --cgroup. */
  readonly dir: string;
  /**
   * Create the directory if missing (one mkdir): 'created' when it was made now (so it is empty and has
   * seen no OOM kill: nothing needs reading back), 'existing' otherwise. Throws an AuraeError saying what failed.
   */
  prepare(): 'created' | 'existing';
  /** Pids in cgroup.procs ([] when the cgroup is gone). */
  procs(): number[];
  /** SIGKILL every process in it (cgroup.kill). */
  kill(): void;
  /** Resolve true once cgroup.events says populated 0, false after timeoutMs. */
  waitEmpty(timeoutMs: number): Promise<boolean>;
  /** memory.events oom_kill (0 when unreadable). */
  oomKills(): number;
  /** Call `listener` when memory.events changes; returns a function that stops watching. */
  watchEvents(listener: () => void): () => void;
}

/** A cell's cgroup as the tree needs it: its path ("a/b") and its limits. */
export interface CellCgroupSpec extends CgroupLimits {
  name: string;
}

export interface ObservedCgroups {
  /** Cell paths that have a cgroup, parents before children. */
  cells: string[];
  /** Executable leaves: cell path and executable name. */
  leaves: { cell: string; executable: string }[];
  /** Directories under <root>/aurae that are neither (relative paths). */
  unknown: string[];
}

export interface CgroupTreeOptions {
  fs: CgroupFs;
  /** The cgroup2 mount, CGROUP_ROOT in the image. */
  root: string;
  log: Logger;
  /** Poll interval while waiting for a cgroup to empty. */
  pollMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class CgroupTree {
  readonly base: string;
  private readonly fs: CgroupFs;
  private readonly pollMs: number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly options: CgroupTreeOptions) {
    this.fs = options.fs;
    this.base = cellTreeDir(options.root);
    this.pollMs = options.pollMs ?? 20;
    this.sleep = options.sleep ?? defaultSleep;
  }

  /** Is a cgroup2 hierarchy mounted at the root? */
  available(): boolean {
    return isCgroup2(this.fs, this.options.root);
  }

  cellDir(cell: string): string {
    return cellDir(this.base, cell);
  }

  leafDir(cell: string, executable: string): string {
    return leafDir(this.base, cell, executable);
  }

  /** Create <root>/aurae and delegate the managed controllers down to it. Idempotent. */
  ensureBase(): void {
    this.delegate(this.options.root, [], 'the cgroup root');
    if (!this.fs.exists(this.base)) {
      try {
        this.fs.mkdir(this.base);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw this.failure(`creating ${this.base}`, err, 'is cgroup2 mounted read-write and auraed running as root?');
      }
    }
    this.delegate(this.base, [], 'the aurae cgroup');
  }

  /**
   * Enable in `dir`'s cgroup.subtree_control every managed controller it has; `required` ones must be there.
   * Precondition: `dir` holds no process (the root is exempt).
   */
  delegate(dir: string, required: Controller[], what: string): void {
    let state: DelegationState;
    try {
      state = readDelegation(this.fs, dir);
    } catch (err) {
      throw this.failure(`reading the controllers of ${what} (${dir})`, err, 'is cgroup2 mounted at the cgroup root?');
    }
    const { available, enabled } = state;
    const missing = required.filter((c) => !available.has(c));
    if (missing.length) {
      throw new AuraeError(
        'FAILED_PRECONDITION',
        `the ${missing.join(', ')} controller${missing.length > 1 ? 's are' : ' is'} not available in ${what} (${dir}: "${[...available].join(' ')}"): ` +
          'the kernel lacks it, or a parent does not delegate it',
      );
    }
    const line = subtreeControlWrite(available, enabled);
    if (!line) return;
    // One failing controller must not keep the others off: retried one by one, failing only for required ones.
    enableControllers(this.fs, dir, line, {
      onSetRefused: (_line, err) => this.options.log.warn('enabling controllers together failed: trying one by one', { dir, line, err }),
      onRefused: (controller, one) => {
        if (required.includes(controller)) {
          throw this.failure(`enabling the ${controller} controller in ${what} (${dir}/cgroup.subtree_control)`, one, 'does that cgroup hold processes? (cgroup v2: no internal processes)');
        }
        this.options.log.warn('controller not enabled', { dir, controller, err: one });
      },
    });
  }

  /**
   * Create the cell's cgroup with its limits. Preconditions: the name is valid and the parent cell's cgroup
   * exists (the base for a top-level cell). On a failed write the new cgroup is removed again.
   */
  createCell(spec: CellCgroupSpec): void {
    const dir = this.cellDir(spec.name);
    // The parent cell's cgroup is the directory above (the base for a top-level cell).
    const parentDir = dirname(dir);
    const parent = parentDir === this.base ? null : parentDir.slice(this.base.length + 1);
    if (!this.fs.exists(parentDir)) {
      throw new AuraeError('FAILED_PRECONDITION', `cell "${spec.name}": the cgroup of its parent ${parent === null ? '(aurae)' : `cell "${parent}"`} is missing (${parentDir})`);
    }
    const writes = cgroupWrites(spec);
    const required = [...new Set(writes.map((w) => controllerOf(w.file)))];
    this.delegate(parentDir, required, parent === null ? 'the aurae cgroup' : `cell "${parent}"`);
    try {
      this.fs.mkdir(dir);
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') throw new AuraeError('ALREADY_EXISTS', `cell "${spec.name}": its cgroup ${dir} already exists`);
      throw this.failure(`cell "${spec.name}": creating ${dir}`, err, 'is auraed running as root?');
    }
    try {
      for (const w of writes) this.writeLimit(`cell "${spec.name}"`, dir, w.file, w.value);
      this.delegate(dir, [], `cell "${spec.name}"`);
    } catch (err) {
      try {
        this.fs.rmdir(dir);
      } catch (rmErr) {
        this.options.log.error('removing a half-made cell cgroup failed', { dir, err: rmErr });
      }
      throw err;
    }
  }

  /**
   * Change the limits of an executable's leaf in place (the CRI's UpdateContainerResources): the writes of
   * `limits`, in plan order. Files in `optional` that the cgroup lacks are skipped (memory.swap.max without swap
   * accounting). NOT_FOUND when the leaf does not exist (the executable is not running); a refused write as
   * createCell's (FAILED_PRECONDITION: no such controller; INVALID_ARGUMENT: the kernel refused the value).
   * Returns the writes made.
   */
  setLeafLimits(cell: string, executable: string, limits: CgroupLimits, optional: readonly string[] = []): CgroupWrite[] {
    const dir = this.leafDir(cell, executable);
    if (!this.fs.exists(dir)) throw new AuraeError('NOT_FOUND', `executable "${executable}" in cell "${cell}" has no cgroup (${dir}): it is not running`);
    const done: CgroupWrite[] = [];
    for (const w of cgroupWrites(limits)) {
      if (optional.includes(w.file) && !this.fs.exists(join(dir, w.file))) continue;
      this.writeLimit(`executable "${executable}" in cell "${cell}"`, dir, w.file, w.value);
      done.push(w);
    }
    return done;
  }

  private writeLimit(owner: string, dir: string, file: string, value: string): void {
    try {
      this.fs.write(join(dir, file), value);
    } catch (err) {
      const code = errnoCode(err);
      const what = `${owner}: writing ${file} = "${value}" failed (${code})`;
      if (code === 'ENOENT') {
        const hint = file === 'io.weight' ? 'io.weight needs io cost control (CONFIG_BLK_CGROUP_IOCOST) in the kernel' : `the ${controllerOf(file)} controller or this feature is not in the kernel`;
        throw new AuraeError('FAILED_PRECONDITION', `${what}: ${hint}`);
      }
      if (code === 'EINVAL' || code === 'ERANGE') {
        const hint = file.startsWith('cpuset.') ? "the list must be within the parent's (see its cpuset.cpus.effective / cpuset.mems.effective)" : 'the kernel refused the value';
        throw new AuraeError('INVALID_ARGUMENT', `${what}: ${hint}`);
      }
      throw new AuraeError('INTERNAL', `${what}: ${(err as Error).message}`);
    }
  }

  /** Pids in a cgroup ([] when it does not exist). */
  procs(dir: string): number[] {
    try {
      return this.fs
        .read(join(dir, 'cgroup.procs'))
        .split('\n')
        .filter(Boolean)
        .map(Number)
        .filter((n) => Number.isInteger(n) && n > 0);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
  }

  /** Pids in a cgroup and every cgroup below it. */
  subtreeProcs(dir: string): number[] {
    return [...this.procs(dir), ...this.fs.subdirs(dir).flatMap((child) => this.subtreeProcs(join(dir, child)))];
  }

  /** cgroup.events "populated": any process in the cgroup or below. False when the cgroup is gone. */
  populated(dir: string): boolean {
    try {
      return /^populated 1$/m.test(this.fs.read(join(dir, 'cgroup.events')));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  /** SIGKILL every process in the cgroup and below (cgroup.kill, Linux 5.14+). */
  kill(dir: string): void {
    try {
      this.fs.write(join(dir, 'cgroup.kill'), '1');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' && !this.fs.exists(dir)) return;
      throw this.failure(`writing ${dir}/cgroup.kill`, err, 'cgroup.kill needs Linux 5.14 or later');
    }
  }

  /** Wait (polling, bounded) until the cgroup has no process; true when it emptied in time. */
  async waitEmpty(dir: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.populated(dir)) return true;
      if (Date.now() >= deadline) return false;
      await this.sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())));
    }
  }

  /**
   * Remove a cgroup and everything below it: cgroup.kill, wait until empty, then rmdir leaves first.
   * Throws (FAILED_PRECONDITION) when processes survive `timeoutMs`.
   */
  async removeTree(dir: string, timeoutMs: number): Promise<void> {
    if (!this.fs.exists(dir)) return;
    if (this.populated(dir)) {
      this.kill(dir);
      if (!(await this.waitEmpty(dir, timeoutMs))) {
        throw new AuraeError('INTERNAL', `processes in ${dir} survived cgroup.kill for ${timeoutMs} ms (pids ${this.subtreeProcs(dir).join(' ')}): are they stuck in the kernel (D state)?`);
      }
    }
    await this.removeEmpty(dir);
  }

  private async removeEmpty(dir: string): Promise<void> {
    for (const child of this.fs.subdirs(dir)) await this.removeEmpty(join(dir, child));
    // A cgroup can stay busy for a moment after its last process exited; retry briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        this.fs.rmdir(dir);
        return;
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY' || attempt >= 50) throw this.failure(`removing ${dir}`, err, 'does it still hold processes or child cgroups?');
        await this.sleep(this.pollMs);
      }
    }
  }

  /** A cgroup's current memory, pids and CPU time (fields missing when unreadable). */
  usage(dir: string): CgroupUsage {
    return readUsage(this.fs, dir);
  }

  /** memory.events oom_kill of a cgroup (0 when unreadable). */
  oomKills(dir: string): number {
    return readOomKills(this.fs, dir);
  }

  /** Everything under <root>/aurae, classified (for reconcile). */
  observe(isCellLabel: (name: string) => boolean): ObservedCgroups {
    const observed: ObservedCgroups = { cells: [], leaves: [], unknown: [] };
    const walk = (rel: string) => {
      for (const name of this.fs.subdirs(rel === '' ? this.base : join(this.base, rel))) {
        const child = rel === '' ? name : `${rel}/${name}`;
        const executable = executableOfLeaf(name);
        if (executable !== null && rel !== '' && isCellLabel(executable)) {
          observed.leaves.push({ cell: rel, executable });
        } else if (isCellLabel(name)) {
          observed.cells.push(child);
          walk(child);
        } else {
          observed.unknown.push(child);
        }
      }
    };
    walk('');
    return observed;
  }

  /** The LeafCgroup an executable runner uses. */
  leaf(cell: string, executable: string): LeafCgroup {
    const dir = this.leafDir(cell, executable);
    return {
      dir,
      prepare: () => {
        // mkdir first: the common case (a new executable) is one system call, and its errno says the rest.
        try {
          this.fs.mkdir(dir);
          return 'created';
        } catch (err) {
          const code = errnoCode(err);
          if (code === 'EEXIST') return 'existing';
          if (code === 'ENOENT') {
            throw new AuraeError('FAILED_PRECONDITION', `cell "${cell}": its cgroup ${this.cellDir(cell)} is missing: free and allocate the cell again`);
          }
          throw this.failure(`executable "${executable}" in cell "${cell}": creating ${dir}`, err, 'is auraed running as root?');
        }
      },
      procs: () => this.procs(dir),
      kill: () => this.kill(dir),
      waitEmpty: (timeoutMs) => this.waitEmpty(dir, timeoutMs),
      oomKills: () => this.oomKills(dir),
      watchEvents: (listener) => this.fs.watch(join(dir, 'memory.events'), listener),
    };
  }

  private failure(what: string, err: unknown, hint: string): AuraeError {
    const code = errnoCode(err);
    const status = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOENT' ? 'FAILED_PRECONDITION' : 'INTERNAL';
    return new AuraeError(status, `${what} failed (${code}): ${hint}`, { cause: err });
  }
}
