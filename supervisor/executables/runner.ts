// One executable's life: launch through aurae-exec into its leaf cgroup, watch it, restart it per policy, stop
// it without leaving a process behind. Every state change goes through the table in state-machine.ts and is
// reported to `onChange` (persistence) and, where it is a lifecycle event, to the EventBus.
import type { LeafCgroup } from '../cgroup';
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import type { EventBus, LogSink, LogStore, LogStream } from '../observe/types';
import { type IsolationSpec, launchPlan } from './launch-plan';
import type { LaunchedProcess, ProcessExit, ProcessLauncher } from './launcher';
import { decideAfterExit, type ExitInfo, recentStarts } from './restart-policy';
import type { ExecutableSpec } from './spec';
import { ACTIVE_STATES, type ExecutableEvent, type ExecutableState, nextState } from './state-machine';

/** The executable's leaf cgroup (supervisor/cgroup: CgroupTree.leaf makes it, tests pass a FakeLeaf). */
export type { LeafCgroup };

export interface Clock {
  now(): number;
  /** Run `fn` after `ms`; returns a cancel function. */
  setTimer(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, ms);
    // A pending restart or grace timer must not keep a stopping auraed alive.
    t.unref();
    return () => clearTimeout(t);
  },
};

export interface RecordedExit extends ExitInfo {
  /** ms since the epoch */
  time: number;
}

/** What is persisted and reported for an executable. */
export interface ExecutableSnapshot {
  cell: string;
  spec: ExecutableSpec;
  state: ExecutableState;
  desiredRunning: boolean;
  pid: number;
  restarts: number;
  lastExit: RecordedExit | null;
}

/**
 * Another reader of every executable's output (the CRI container log files, supervisor/cri/logs): each line in
 * pieces of at most LINE_LIMITS.outputLineBytes, `partial` when the next piece continues it. Must not throw.
 */
export interface OutputTap {
  onLine(cell: string, executable: string, stream: LogStream, text: string, partial: boolean): void;
}

export interface RunnerDeps {
  cell: string;
  spec: ExecutableSpec;
  isolation: IsolationSpec;
  hostname: string;
  leaf: LeafCgroup;
  launcher: ProcessLauncher;
  /** Path of aurae-exec (asked at each launch: it is looked up lazily). */
  helper(): string;
  events: EventBus;
  logs: LogStore;
  /** Optional: also gets every output line, uncut (see OutputTap). */
  outputTap?: OutputTap;
  clock: Clock;
  log: Logger;
  /** Send a signal to a pid (process.kill); ESRCH is ignored by the caller. */
  signal(pid: number, signal: NodeJS.Signals): void;
  onChange(snapshot: ExecutableSnapshot): void;
  /** Restored from the store (reconcile); a new executable starts 'stopped'. */
  initial?: { state: ExecutableState; restarts: number; lastExit: RecordedExit | null; desiredRunning: boolean };
}

/** How long to wait for a leaf to empty after cgroup.kill before giving up (and logging). */
export const KILL_WAIT_MS = 10_000;

interface Run {
  process: LaunchedProcess;
  /**
   * The executable's process, what is reported and signalled: the launched aurae-exec until it names its child
   * in the cell (ExecOutcome.pid: the program, or its namespace's init), then that child.
   */
  pid: number;
  /** Node has reaped the main process: its pid may already belong to someone else. */
  reaped: boolean;
  startedAt: number;
  oomBaseline: number;
  oomSeen: number;
  sink: LogSink;
  unwatch: () => void;
  /** Resolves when the exit was fully handled (state updated, leaf emptied). */
  done: Promise<RecordedExit>;
}

export class ExecutableRunner {
  private state: ExecutableState;
  private desiredRunning: boolean;
  private restarts: number;
  private lastExit: RecordedExit | null;
  private attempt = 0;
  private starts: number[] = [];
  private run: Run | null = null;
  private cancelBackoff: (() => void) | null = null;
  /** Set for the first launch of a Start call: its setup failure fails the call instead of restarting. */
  private initialLaunch = false;
  private stopping: Promise<RecordedExit | null> | null = null;
  /** Settles when a spawn in progress has made its run current (or failed). */
  private launching: Promise<void> | null = null;
  private stopDeadline: number | null = null;

  constructor(private readonly deps: RunnerDeps) {
    this.state = deps.initial?.state ?? 'stopped';
    this.desiredRunning = deps.initial?.desiredRunning ?? false;
    this.restarts = deps.initial?.restarts ?? 0;
    this.lastExit = deps.initial?.lastExit ?? null;
  }

  get name(): string {
    return this.deps.spec.name;
  }

  get spec(): ExecutableSpec {
    return this.deps.spec;
  }

  /** Active: has, or is about to have, a process (starting, running, stopping, backoff). */
  get active(): boolean {
    return ACTIVE_STATES.has(this.state);
  }

  snapshot(): ExecutableSnapshot {
    return {
      cell: this.deps.cell,
      spec: this.deps.spec,
      state: this.state,
      desiredRunning: this.desiredRunning,
      pid: this.run?.pid ?? 0,
      restarts: this.restarts,
      lastExit: this.lastExit,
    };
  }

  /**
   * Start (Start RPC, reconcile): resets the restart counters, launches, and resolves with the pid once the
   * program was executed. A setup failure (program not found, bad cwd…) rejects with FAILED_PRECONDITION and
   * leaves the executable 'failed'.
   */
  async start(options: { resetCounters?: boolean } = {}): Promise<{ pid: number }> {
    if (this.active) {
      throw new AuraeError('ALREADY_EXISTS', `executable "${this.name}" in cell "${this.deps.cell}" is already ${this.state}: stop it first`);
    }
    this.desiredRunning = true;
    // A Start call begins afresh (systemd: reset-failed + start); reconcile resumes with the stored counter.
    if (options.resetCounters ?? true) this.restarts = 0;
    this.attempt = 0;
    this.starts = [];
    this.transition('start');
    this.initialLaunch = true;
    return this.launch();
  }

  /**
   * Stop: SIGTERM to every process in the leaf, wait up to graceMs, then cgroup.kill; resolves with the exit
   * once no process is left (null when nothing ran). Idempotent; concurrent calls share one stop.
   */
  async stop(graceMs: number): Promise<RecordedExit | null> {
    this.desiredRunning = false;
    // A launch between "starting" and "spawned" finishes first, so there is a process to stop (or none).
    if (this.launching) await this.launching;
    if (this.stopping) return this.stopping;
    if (this.state === 'backoff') {
      this.cancelBackoff?.();
      this.cancelBackoff = null;
      this.transition('stop');
      return this.lastExit;
    }
    if (!this.run) {
      if (this.active) this.transition('stop');
      else this.notify();
      return null;
    }
    const run = this.run;
    this.transition('stop');
    this.stopDeadline = this.deps.clock.now() + graceMs;
    this.stopping = this.terminate(run, graceMs).finally(() => {
      this.stopping = null;
    });
    return this.stopping;
  }

  private async terminate(run: Run, graceMs: number): Promise<RecordedExit> {
    const stopSignal = this.deps.spec.stopSignal;
    if (stopSignal && !run.reaped) {
      // The main process passes the signal on (crun run to its container's init): the others must not get it too.
      try {
        this.deps.signal(run.pid, stopSignal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    } else if (this.deps.isolation.pid && !run.reaped) {
      // aurae-exec and the namespace's init forward SIGTERM to the program: signalling every process in the
      // leaf as well would hand the program two or three SIGTERMs, which many programs read as "force quit".
      // Anything that ignores it is killed with the cgroup when the grace period ends.
      try {
        this.deps.signal(run.pid, 'SIGTERM');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    } else {
      this.signalLeaf('SIGTERM', run.reaped ? 0 : run.pid);
    }
    let graceOver = false;
    const cancel = this.deps.clock.setTimer(() => {
      graceOver = true;
      if (graceMs > 0) this.deps.log.info("grace period over: killing the executable's cgroup", { cell: this.deps.cell, executable: this.name, graceMs });
      this.killLeaf(run.reaped ? 0 : run.pid);
    }, graceMs);
    try {
      return await run.done;
    } finally {
      if (!graceOver) cancel();
    }
  }

  private async launch(): Promise<{ pid: number }> {
    const spawning = this.spawn();
    this.launching = spawning.then(
      () => undefined,
      () => undefined,
    );
    let run: Run;
    try {
      run = await spawning;
    } catch (err) {
      // Nothing was spawned: the launch itself failed (cgroup, helper missing).
      this.initialLaunch = false;
      if (this.state === 'starting' || this.state === 'stopping') this.transition('spawn_failed');
      throw err;
    } finally {
      this.launching = null;
    }
    const outcome = await run.process.outcome;
    if (outcome.executed) {
      this.initialLaunch = false;
      this.markExecuted(run);
      return { pid: run.pid };
    }
    const message = `executable "${this.name}" in cell "${this.deps.cell}" could not be started: ${outcome.message}`;
    if (this.initialLaunch) {
      // handleExit sees initialLaunch and ends the executable as failed instead of restarting it.
      await run.done;
      this.initialLaunch = false;
      throw new AuraeError('FAILED_PRECONDITION', message);
    }
    this.deps.log.warn('restart failed before exec', { cell: this.deps.cell, executable: this.name, message });
    return { pid: run.pid };
  }

  /** Create the leaf, empty it, spawn aurae-exec; the run is current when this resolves. */
  private async spawn(): Promise<Run> {
    const { deps } = this;
    // A leaf made just now is empty and has counted no OOM kill: nothing to read back from it.
    const fresh = deps.leaf.prepare() === 'created';
    if (!fresh) await this.emptyLeaf();
    const oomBaseline = fresh ? 0 : deps.leaf.oomKills();
    const plan = launchPlan({ helper: deps.helper(), cgroupDir: deps.leaf.dir, isolation: deps.isolation, hostname: deps.hostname, spec: deps.spec });
    const sink = deps.logs.sink(deps.cell, this.name);
    const startedAt = deps.clock.now();
    // Only starts inside the start-limit window matter; older ones are dropped so a long life stays bounded.
    this.starts = [...recentStarts(this.starts, startedAt, deps.spec.restart.startLimitIntervalMs), startedAt];
    let process: LaunchedProcess;
    try {
      const tap = deps.outputTap;
      const cell = deps.cell;
      const name = this.name;
      process = await deps.launcher.launch(
        plan,
        (stream, line) => sink.write(stream, line),
        tap && ((stream, piece, partial) => tap.onLine(cell, name, stream, piece, partial)),
      );
    } catch (err) {
      await sink.close();
      throw err;
    }
    const run: Run = { process, pid: process.pid, reaped: false, startedAt, oomBaseline, oomSeen: oomBaseline, sink, unwatch: () => {}, done: Promise.resolve(null as unknown as RecordedExit) };
    // Registered before anyone awaits the outcome: the child's pid is the run's when "executed" is seen.
    void process.outcome.then((outcome) => {
      if (outcome.executed && outcome.pid !== undefined) run.pid = outcome.pid;
    });
    run.unwatch = deps.leaf.watchEvents(() => this.checkOom(run));
    run.done = process.exited.then((exit) => {
      run.reaped = true;
      return this.handleExit(run, exit);
    });
    this.run = run;
    this.notify();
    return run;
  }

  /** The program was executed: starting → running (once; a stop may have come first). */
  private markExecuted(run: Run): void {
    if (this.state !== 'starting' || this.run !== run) return;
    this.transition('spawned');
    this.deps.events.publish({ kind: 'executable_started', cell: this.deps.cell, executable: this.name, pid: run.pid });
  }

  private async handleExit(run: Run, exit: ProcessExit): Promise<RecordedExit> {
    const { deps } = this;
    // The status pipe closes at the latest with the process, so this does not wait long.
    const outcome = await run.process.outcome;
    if (outcome.executed) this.markExecuted(run);
    run.unwatch();
    this.checkOom(run);
    const recorded: RecordedExit = { code: exit.code, signal: exit.signal, oomKilled: run.oomSeen > run.oomBaseline, time: deps.clock.now() };
    this.lastExit = recorded;
    deps.events.publish({ kind: 'executable_exited', cell: deps.cell, executable: this.name, pid: run.pid, code: exit.code, signal: exit.signal });
    if (this.state === 'stopping' && this.stopDeadline !== null) {
      // The main process is gone; the others already had SIGTERM and keep the rest of the grace period.
      await deps.leaf.waitEmpty(Math.max(0, this.stopDeadline - deps.clock.now()));
    }
    // The program is gone; whatever it left in its cgroup goes with it (no grandchild survives).
    await this.emptyLeaf();
    await run.sink.close();
    this.run = null;
    this.stopDeadline = null;

    if (this.state === 'stopping') {
      this.transition('exit_done_ok');
    } else if (this.initialLaunch && !outcome.executed) {
      // The first launch of a Start call failed before exec: the caller gets the error, no restart.
      this.transition('spawn_failed');
    } else {
      const decision = decideAfterExit({
        policy: deps.spec.restart,
        exit: recorded,
        runMs: recorded.time - run.startedAt,
        previousAttempts: this.attempt,
        starts: this.starts,
        now: recorded.time,
      });
      if (decision.action === 'restart') {
        this.attempt = decision.attempt;
        this.transition('exit_restart');
        this.scheduleRestart(decision.attempt, decision.delayMs);
      } else if (decision.action === 'start_limit_hit') {
        this.transition('start_limit_hit');
        deps.events.publish({ kind: 'start_limit_hit', cell: deps.cell, executable: this.name, starts: decision.starts, intervalMs: deps.spec.restart.startLimitIntervalMs });
        deps.log.warn('start limit hit: not restarting', { cell: deps.cell, executable: this.name, starts: decision.starts });
      } else {
        this.transition(decision.failed ? 'exit_done_failed' : 'exit_done_ok');
      }
    }
    return recorded;
  }

  private scheduleRestart(attempt: number, delayMs: number): void {
    this.cancelBackoff = this.deps.clock.setTimer(() => {
      this.cancelBackoff = null;
      if (this.state !== 'backoff') return;
      this.restarts += 1;
      this.transition('backoff_elapsed');
      this.deps.events.publish({ kind: 'executable_restarted', cell: this.deps.cell, executable: this.name, attempt, delayMs });
      this.launch().catch((err: unknown) => {
        // A restart that cannot even be spawned (cgroup gone, helper missing) ends the executable as failed.
        this.deps.log.error('restart failed', { cell: this.deps.cell, executable: this.name, err });
      });
    }, delayMs);
  }

  /** Publish OOM kills seen since the last check. */
  private checkOom(run: Run): void {
    const count = this.deps.leaf.oomKills();
    if (count > run.oomSeen) {
      this.deps.events.publish({ kind: 'executable_oom_killed', cell: this.deps.cell, executable: this.name, count: count - run.oomSeen });
      run.oomSeen = count;
    }
  }

  private signalLeaf(signal: NodeJS.Signals, mainPid: number): void {
    const pids = new Set([mainPid, ...this.deps.leaf.procs()]);
    for (const pid of pids) {
      if (pid <= 0) continue;
      try {
        this.deps.signal(pid, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
  }

  private killLeaf(mainPid: number): void {
    try {
      this.deps.leaf.kill();
    } catch (err) {
      this.deps.log.warn('cgroup.kill failed: sending SIGKILL to each process', { cell: this.deps.cell, executable: this.name, err });
      this.signalLeaf('SIGKILL', mainPid);
    }
  }

  /** Kill whatever is left in the leaf and wait until it is empty. */
  private async emptyLeaf(): Promise<void> {
    if (this.deps.leaf.procs().length === 0) return;
    this.killLeaf(0);
    if (!(await this.deps.leaf.waitEmpty(KILL_WAIT_MS))) {
      this.deps.log.error('processes survived cgroup.kill', { cell: this.deps.cell, executable: this.name, pids: this.deps.leaf.procs() });
    }
  }

  private transition(event: ExecutableEvent): void {
    const from = this.state;
    this.state = nextState(from, event);
    this.deps.log.debug('executable state', { cell: this.deps.cell, executable: this.name, from, event, to: this.state });
    this.notify();
  }

  private notify(): void {
    this.deps.onChange(this.snapshot());
  }
}
