// The cell runtime: the core behind CellService. Owns the cells (cgroups via CgroupTree, specs via CellStore)
// and one ExecutableRunner per executable; reconciles stored state with the cgroups found at start.
// Mutations of the cell set run one at a time (a small async lock); stopping an executable does not take it.
import { AuraeError } from '../errors';
import {
  type Clock,
  type ExecutableSnapshot,
  type ExecutableSpec,
  ExecutableRunner,
  findExecHelper,
  KILL_WAIT_MS,
  type OutputTap,
  type ProcessLauncher,
  type RecordedExit,
  ACTIVE_STATES,
  spawnLauncher,
  systemClock,
} from '../executables';
import type { Logger } from '../log';
import { DEFAULTS, isDnsLabel } from '../validation';
import type { EventBus, LogStore } from '../observe/types';
import { type CgroupTree, type CgroupUsage, join } from '../cgroup';
import { cellDepth, cellHostname, isWithin, parentCell } from './names';
import { type ReconcileAction, reconcilePlan } from './reconcile';
import type { CellSpec } from './spec';
import type { CellStore } from './store';

export type CellState = 'allocated' | 'missing';

export interface CellView {
  spec: CellSpec;
  state: CellState;
  usage: CgroupUsage;
  executables: ExecutableSnapshot[];
  children: CellView[];
}

export interface CellRuntimeDeps {
  cgroups: CgroupTree;
  store: CellStore;
  events: EventBus;
  logs: LogStore;
  log: Logger;
  launcher?: ProcessLauncher;
  /** Also gets every executable's output, uncut (the CRI container log files). */
  outputTap?: OutputTap;
  clock?: Clock;
  /** Path of aurae-exec; found lazily (findExecHelper) on the first start when not given. */
  helper?: string;
  signal?: (pid: number, signal: NodeJS.Signals) => void;
}

/** Stop's grace period when the caller gives none. */
export const DEFAULT_STOP_GRACE_MS = DEFAULTS.stopGraceMs;

interface CellEntry {
  spec: CellSpec;
  state: CellState;
  runners: Map<string, ExecutableRunner>;
}

export class CellRuntime {
  private readonly cells = new Map<string, CellEntry>();
  private readonly clock: Clock;
  private readonly launcher: ProcessLauncher;
  private readonly signal: (pid: number, signal: NodeJS.Signals) => void;
  private helper: string | undefined;
  private lock: Promise<unknown> = Promise.resolve();
  /** Runners inside a Start: their changes are staged, and written once when the Start resolves. */
  private readonly starting = new Set<ExecutableRunner>();
  private enabled = false;
  private closed = false;

  constructor(private readonly deps: CellRuntimeDeps) {
    this.clock = deps.clock ?? systemClock;
    this.launcher = deps.launcher ?? spawnLauncher;
    this.signal = deps.signal ?? ((pid, sig) => process.kill(pid, sig));
    this.helper = deps.helper;
  }

  /**
   * Bring the runtime up: without cgroup v2 it stays disabled (every call fails with FAILED_PRECONDITION);
   * otherwise create <root>/aurae, load the store and reconcile. Executables are started in the background.
   * Returns the actions taken.
   */
  async init(): Promise<ReconcileAction[]> {
    const { cgroups, log } = this.deps;
    if (!cgroups.available()) {
      log.warn('cells disabled: no cgroup v2 hierarchy', { root: cgroups.base });
      return [];
    }
    try {
      cgroups.ensureBase();
    } catch (err) {
      // auraed still serves everything else; CellService says cells are unavailable.
      log.error('cells disabled: preparing the aurae cgroup failed', { base: cgroups.base, err });
      return [];
    }
    this.enabled = true;
    const storedCells = this.deps.store.cells();
    const storedExes = this.deps.store.executables();
    const observed = cgroups.observe(isDnsLabel);
    const plan = reconcilePlan(
      { cells: storedCells.map((c) => c.spec), executables: storedExes.map((e) => ({ cell: e.cell, name: e.spec.name, desiredRunning: e.desiredRunning, state: e.state })) },
      observed,
    );
    for (const c of storedCells) this.cells.set(c.spec.name, { spec: c.spec, state: 'allocated', runners: new Map() });
    const exeByKey = new Map(storedExes.map((e) => [`${e.cell}/${e.spec.name}`, e]));
    for (const action of plan) {
      try {
        await this.apply(action, exeByKey);
      } catch (err) {
        log.error('reconcile action failed', { action: action.kind, cell: 'cell' in action ? action.cell : undefined, path: 'path' in action ? action.path : undefined, err });
        if (action.kind === 'create_cell') this.cells.get(action.cell)!.state = 'missing';
      }
    }
    if (plan.length) log.info('reconciled', { actions: plan.map((a) => a.kind), cells: storedCells.length, executables: storedExes.length });
    return plan;
  }

  private async apply(action: ReconcileAction, stored: Map<string, { spec: ExecutableSpec; state: ExecutableSnapshot['state']; restarts: number; lastExit: RecordedExit | null; desiredRunning: boolean }>): Promise<void> {
    const { cgroups, log } = this.deps;
    switch (action.kind) {
      case 'remove_stray':
        log.info('removing a stray cgroup', { path: action.path, reason: action.reason });
        await cgroups.removeTree(join(cgroups.base, action.path), KILL_WAIT_MS);
        return;
      case 'create_cell':
        log.info('recreating the cgroup of a stored cell', { cell: action.cell });
        cgroups.createCell(action.spec);
        return;
      case 'clear_leaf': {
        const leaf = cgroups.leaf(action.cell, action.executable);
        if (leaf.procs().length) {
          log.info("killing a previous auraed's processes of an executable", { cell: action.cell, executable: action.executable, pids: leaf.procs() });
          leaf.kill();
          await leaf.waitEmpty(KILL_WAIT_MS);
        }
        return;
      }
      case 'restore_executable': {
        const e = stored.get(`${action.cell}/${action.executable}`)!;
        const entry = this.cells.get(action.cell)!;
        const runner = this.newRunner(entry, e.spec, {
          // Whatever was active before is not any more: the processes were killed above.
          state: ACTIVE_STATES.has(e.state) ? 'stopped' : e.state,
          restarts: e.restarts,
          lastExit: e.lastExit,
          desiredRunning: e.desiredRunning,
        });
        entry.runners.set(e.spec.name, runner);
        if (action.start && entry.state === 'allocated') {
          runner.start({ resetCounters: false }).catch((err: unknown) => log.warn('reconcile: starting an executable failed', { cell: action.cell, executable: action.executable, err }));
        }
        return;
      }
    }
  }

  async allocate(spec: CellSpec): Promise<CellSpec> {
    return this.exclusive(async () => {
      this.requireEnabled();
      if (this.cells.has(spec.name)) throw new AuraeError('ALREADY_EXISTS', `cell "${spec.name}" already exists: free it first or choose another name`);
      const parent = parentCell(spec.name);
      if (parent !== null && !this.cells.has(parent)) {
        throw new AuraeError('FAILED_PRECONDITION', `cell "${spec.name}": its parent cell "${parent}" does not exist: allocate "${parent}" first`);
      }
      this.deps.cgroups.createCell(spec);
      try {
        this.deps.store.insertCell(spec);
      } catch (err) {
        await this.deps.cgroups.removeTree(this.deps.cgroups.cellDir(spec.name), KILL_WAIT_MS).catch(() => undefined);
        throw err;
      }
      this.cells.set(spec.name, { spec, state: 'allocated', runners: new Map() });
      this.deps.events.publish({ kind: 'cell_allocated', cell: spec.name });
      this.deps.log.info('cell allocated', { cell: spec.name });
      return spec;
    });
  }

  /**
   * Free a cell and the cells below it. Without force: refused while any of them has an active executable or
   * the cell has child cells. With force: every executable is killed (no grace), then the cgroups are removed.
   */
  async free(name: string, force: boolean): Promise<void> {
    return this.exclusive(async () => {
      this.requireEnabled();
      this.getCell(name);
      const subtree = [...this.cells.keys()].filter((c) => isWithin(c, name)).sort((a, b) => cellDepth(b) - cellDepth(a));
      const runners = subtree.flatMap((c) => [...this.cells.get(c)!.runners.values()].map((r) => ({ cell: c, r })));
      if (!force) {
        const children = subtree.filter((c) => c !== name);
        if (children.length) throw new AuraeError('FAILED_PRECONDITION', `cell "${name}" has child cells (${children.sort().join(', ')}): free them first, or free with force`);
        const active = runners.filter(({ r }) => r.active);
        if (active.length) {
          const list = active.map(({ cell, r }) => `${cell}/${r.name} (${r.snapshot().state})`).join(', ');
          throw new AuraeError('FAILED_PRECONDITION', `cell "${name}" has running executables: ${list}: stop them first, or free with force`);
        }
      }
      // Mark every executable stopped (so no exit restarts it), kill the whole subtree at once, wait for all.
      const stops = runners.map(({ r }) => r.stop(0));
      this.deps.cgroups.kill(this.deps.cgroups.cellDir(name));
      await Promise.all(stops);
      await this.deps.cgroups.removeTree(this.deps.cgroups.cellDir(name), KILL_WAIT_MS);
      for (const cell of subtree) {
        this.deps.store.deleteCell(cell);
        this.cells.delete(cell);
        await this.deps.logs.remove(cell).catch((err: unknown) => this.deps.log.warn('removing logs failed', { cell, err }));
        this.deps.events.publish({ kind: 'cell_freed', cell });
        this.deps.log.info('cell freed', { cell });
      }
    });
  }

  /**
   * Start an executable (new, or replacing one that is not active). Resolves once it was executed, with its row
   * (desired running, its state and counters) written ONCE, whatever states it went through on the way: durable
   * before this resolves, or with `commit: 'caller'` left staged in the database's write group for the caller to
   * commit with its own rows before it answers (CellService: the call's audit row; see supervisor/store
   * WriteGroup). A caller that does not commit leaves it to the next turn of the event loop.
   */
  async start(cell: string, spec: ExecutableSpec, options: { commit?: 'now' | 'caller' } = {}): Promise<{ pid: number }> {
    const runner = await this.exclusive(async () => {
      this.requireEnabled();
      const entry = this.getCell(cell);
      if (entry.state !== 'allocated') throw new AuraeError('FAILED_PRECONDITION', `cell "${cell}" is ${entry.state} (its cgroup could not be recreated): free it and allocate it again`);
      const existing = entry.runners.get(spec.name);
      if (existing?.active) {
        throw new AuraeError('ALREADY_EXISTS', `executable "${spec.name}" in cell "${cell}" is ${existing.snapshot().state}: stop it first, or choose another name`);
      }
      this.helper ??= findExecHelper();
      const r = this.newRunner(entry, spec);
      entry.runners.set(spec.name, r);
      return r;
    });
    // The runner's changes until it was executed (starting, its pid, running) only restage the row.
    this.starting.add(runner);
    let result: { pid: number };
    try {
      result = await runner.start();
    } catch (err) {
      this.starting.delete(runner);
      this.commitRows(); // the failed state: the call fails, nothing waits for it
      throw err;
    }
    this.starting.delete(runner);
    if (options.commit === 'caller') {
      // The caller commits it before answering; this only covers a caller that did not.
      setImmediate(() => this.commitRows());
    } else {
      this.commitRows();
    }
    return result;
  }

  async stop(cell: string, executable: string, graceMs: number): Promise<RecordedExit | null> {
    this.requireEnabled();
    return this.getRunner(cell, executable).stop(graceMs);
  }

  /**
   * Forget an executable that is not active (pods' removeContainer): its runner, its row, its leaf cgroup and its
   * logs. FAILED_PRECONDITION while it is active (stop it first); NOT_FOUND when there is no such executable.
   */
  async removeExecutable(cell: string, executable: string): Promise<void> {
    return this.exclusive(async () => {
      this.requireEnabled();
      const entry = this.getCell(cell);
      const runner = this.getRunner(cell, executable);
      if (runner.active) throw new AuraeError('FAILED_PRECONDITION', `executable "${executable}" in cell "${cell}" is ${runner.snapshot().state}: stop it first`);
      entry.runners.delete(executable);
      this.deps.store.deleteExecutable(cell, executable);
      await this.deps.cgroups.removeTree(this.deps.cgroups.leafDir(cell, executable), KILL_WAIT_MS);
      await this.deps.logs.remove(cell, executable).catch((err: unknown) => this.deps.log.warn('removing logs failed', { cell, executable, err }));
    });
  }

  /** Every cell as a tree (top-level cells first, children by name). */
  list(): CellView[] {
    this.requireEnabled();
    return [...this.cells.keys()].filter((c) => parentCell(c) === null).sort().map((c) => this.view(c));
  }

  get(name: string): CellView {
    this.requireEnabled();
    this.getCell(name);
    return this.view(name);
  }

  executable(cell: string, name: string): ExecutableSnapshot {
    return this.getRunner(cell, name).snapshot();
  }

  private view(name: string): CellView {
    const entry = this.cells.get(name)!;
    const children = [...this.cells.keys()].filter((c) => parentCell(c) === name).sort();
    return {
      spec: entry.spec,
      state: entry.state,
      usage: this.deps.cgroups.usage(this.deps.cgroups.cellDir(name)),
      executables: [...entry.runners.values()].map((r) => r.snapshot()).sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1)),
      children: children.map((c) => this.view(c)),
    };
  }

  private newRunner(entry: CellEntry, spec: ExecutableSpec, initial?: ConstructorParameters<typeof ExecutableRunner>[0]['initial']): ExecutableRunner {
    const cell = entry.spec.name;
    const { store, log } = this.deps;
    const runner: ExecutableRunner = new ExecutableRunner({
      cell,
      spec,
      isolation: entry.spec.isolation,
      hostname: cellHostname(cell),
      leaf: this.deps.cgroups.leaf(cell, spec.name),
      launcher: this.launcher,
      // Reconcile restores runners before anyone asked for the helper; it is needed only when one starts.
      helper: () => this.helperPath(),
      events: this.deps.events,
      logs: this.deps.logs,
      ...(this.deps.outputTap ? { outputTap: this.deps.outputTap } : {}),
      clock: this.clock,
      log: log.child({ subsystem: 'executables' }),
      signal: this.signal,
      onChange: (snap) => {
        // Freed cells are gone from the store; a late exit of their executables is not written back.
        if (this.closed || !this.cells.has(cell) || this.cells.get(cell)!.runners.get(spec.name) === undefined) return;
        const row = { cell, spec: snap.spec, desiredRunning: snap.desiredRunning, state: snap.state, restarts: snap.restarts, lastExit: snap.lastExit };
        store.stageExecutable(row, (err) => log.error('persisting an executable failed', { cell, executable: spec.name, err }));
        // Outside a Start every change is its own write (exits, restarts, stops: nobody batches them).
        if (!this.starting.has(runner)) this.commitRows();
      },
      ...(initial ? { initial } : {}),
    });
    return runner;
  }

  /**
   * auraed is stopping: stop writing to the store (it is about to close). Executables keep running (a new
   * auraed reconciles them); no new call is accepted.
   */
  close(): void {
    this.commitRows();
    this.closed = true;
    this.enabled = false;
  }

  /** Write the staged executable rows (one transaction); a failure is logged per row by its stager. */
  private commitRows(): void {
    if (this.closed) return;
    try {
      this.deps.store.commit();
    } catch (err) {
      this.deps.log.error('persisting executables failed', { err });
    }
  }

  private helperPath(): string {
    this.helper ??= findExecHelper();
    return this.helper;
  }

  private getCell(name: string): CellEntry {
    const entry = this.cells.get(name);
    if (!entry) throw new AuraeError('NOT_FOUND', `cell "${name}" does not exist: allocate it first (see List for the cells there are)`);
    return entry;
  }

  private getRunner(cell: string, name: string): ExecutableRunner {
    const runner = this.getCell(cell).runners.get(name);
    if (!runner) throw new AuraeError('NOT_FOUND', `executable "${name}" does not exist in cell "${cell}": start it first`);
    return runner;
  }

  private requireEnabled(): void {
    if (!this.enabled) {
      throw new AuraeError('FAILED_PRECONDITION', `cells are not available on this node: no cgroup v2 hierarchy at ${this.deps.cgroups.base.replace(/\/aurae$/, '')} (cells need cgroup2, as in the aurae image)`);
    }
  }

  /** Run `fn` after every earlier mutation finished (a promise-chain lock). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.lock.then(fn, fn);
    this.lock = result.catch(() => undefined);
    return result;
  }
}
