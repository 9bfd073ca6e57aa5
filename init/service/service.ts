// Supervise auraed: spawn it, relay its output, act on its IPC messages, restart it with
// backoff when it exits, and stop it (SIGTERM → grace → SIGKILL) on request.
// One function per duty: start → watch (relay, messages, exit) → after the exit, one of three outcomes
// (stay down, restart at once, restart after backoff) → stop.
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type { Readable } from 'node:stream';
import { errorMessage, type Logger } from '../log';
import { trackChild } from '../reaper';
import { nextFailureCount, restartDelay, type BackoffPolicy } from './backoff';
import { parseAuraedMessage, readyLine, type BootMessage, type InitBoot, type PowerMessage, type ReadyMessage } from '../../supervisor/ipc';
import { bootClockMs } from '../../supervisor/phases';
import { LINE_LIMITS, LineSplitter, type LineSplitterStats } from '../../supervisor/log';

export type SpawnFn = (command: string, args: string[], options: SpawnOptions) => ChildProcess;

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface AuraedServiceDeps {
  /** argv[0] is the program (see locateAuraed). */
  argv: string[];
  env?: NodeJS.ProcessEnv;
  policy: BackoffPolicy;
  /** Written with auraed's pid on each 'ready'; removed when it exits. */
  pidFile: string;
  files: { write(path: string, text: string): void; remove(path: string): void };
  /** Children Node spawned (the reaper leaves these to libuv). */
  tracked: Set<number>;
  log: Logger;
  onPower(action: 'poweroff' | 'reboot', by: string, reason?: string): void;
  onReady?(message: ReadyMessage, pid: number): void;
  spawn?: SpawnFn;
  timers?: Timers;
  /** Bytes kept of one line of auraed's output; default LINE_LIMITS.auraedLineBytes. */
  maxLineBytes?: number;
  /** The boot clock (ms since the kernel started); default supervisor/phases bootClockMs. */
  bootClock?: () => number;
}

/** What init knows of its own boot: the part of the boot report it sends to every auraed (InitBoot). */
export type InitBootPhases = Pick<InitBoot, 'startedMs' | 'phases'>;

export interface AuraedService {
  /** Spawn auraed (no-op while it runs or once stopping). */
  start(): void;
  /** No more restarts; SIGTERM, wait graceMs, SIGKILL. Resolves once it has exited. */
  stop(graceMs: number): Promise<void>;
  /** Kill the running auraed so the supervisor restarts it at once (dev-mode "reboot"). */
  restartNow(): void;
  /**
   * init's boot phases, once they have run: sent now to the running auraed and to every auraed started later
   * (with the start count and the first SERVING time), so each serves the whole boot report.
   */
  reportBoot(boot: InitBootPhases): void;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** auraed's output lines relayed so far (all runs, stdout and stderr), and how many were cut at the cap. */
  readonly output: Readonly<LineSplitterStats>;
}

/** How long to wait for the exit after SIGKILL before giving up (the kernel should be quick). */
const KILL_WAIT_MS = 5_000;

/** How one run of auraed ended: an exit, or a spawn that failed (no pid, no 'exit'). */
type Ending = { code: number | null; signal: NodeJS.Signals | null } | { spawnError: Error };

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `was killed by ${signal}`;
  if (code !== null) return `exited with code ${code}`;
  return 'could not be started';
}

/** "(pid 100) exited with code 1 after 0.3 s", or "could not be started (argv): why". */
function describeEnding(argv: string[], pid: number | undefined, ranMs: number, ending: Ending): string {
  if ('spawnError' in ending) return `could not be started (${argv.join(' ')}): ${ending.spawnError.message}`;
  return `(pid ${pid}) ${describeExit(ending.code, ending.signal)} after ${(ranMs / 1000).toFixed(1)} s`;
}

/**
 * Relay one of auraed's output streams to the console, line by line. auraed may print anything (a client's
 * text in an error, a runaway stack): a line longer than maxLineBytes is cut and marked (supervisor/log's
 * LineSplitter), counted in `totals`, and never held whole in init's memory.
 */
function relayOutput(stream: Readable | null, log: Logger, totals: LineSplitterStats, maxLineBytes: number): void {
  if (!stream) return;
  const splitter = new LineSplitter(
    (line) => {
      totals.lines++;
      log.relay('auraed', line);
    },
    {
      maxLineBytes,
      trimCr: true,
      onCut: (cutBytes) => {
        totals.cutLines++;
        totals.cutBytes += cutBytes;
      },
    },
  );
  stream.on('data', (chunk: Buffer | string) => splitter.push(chunk));
  stream.on('end', () => splitter.end());
  // A read error on a pipe only means the output ends here; the exit is reported through 'exit'.
  stream.on('error', () => splitter.end());
}

/** 'ready': the pid file first (whoever sees AURAE_READY may read it at once), then the line, then the hook. */
function announceReady(deps: AuraedServiceDeps, message: ReadyMessage, pid: number): void {
  try {
    deps.files.write(deps.pidFile, `${pid}\n`);
  } catch (err) {
    deps.log.warn(`writing ${deps.pidFile} failed: ${errorMessage(err)}`);
  }
  deps.log.raw(readyLine(message, pid));
  deps.onReady?.(message, pid);
}

function forwardPower(deps: AuraedServiceDeps, message: PowerMessage): void {
  const why = message.reason ? `: ${message.reason}` : '';
  deps.log.info(`auraed asks for ${message.action} (requested by ${message.by}${why})`);
  deps.onPower(message.action, message.by, message.reason);
}

/** One IPC message from auraed (the schema is supervisor/ipc's): a malformed one is logged and ignored. */
function handleMessage(deps: AuraedServiceDeps, pid: number, raw: unknown, onReady: (message: ReadyMessage) => void): void {
  const message = parseAuraedMessage(raw);
  if (typeof message === 'string') {
    deps.log.warn(`ignoring malformed IPC message from auraed (${message}): ${JSON.stringify(raw)?.slice(0, 200)}`);
  } else if (message.type === 'ready') {
    onReady(message);
    announceReady(deps, message, pid);
  } else {
    forwardPower(deps, message);
  }
}

function removePidFile(deps: AuraedServiceDeps): void {
  try {
    deps.files.remove(deps.pidFile);
  } catch {
    // Not written yet, or already gone.
  }
}

/** What to do once auraed has exited. */
export type AfterExit = 'stay-down' | 'restart-now' | 'restart-after-backoff';

export function afterExit(state: { stopping: boolean; restartRequested: boolean }): AfterExit {
  if (state.stopping) return 'stay-down';
  if (state.restartRequested) return 'restart-now';
  return 'restart-after-backoff';
}

class AuraedSupervisor implements AuraedService {
  readonly output: LineSplitterStats = { lines: 0, cutLines: 0, cutBytes: 0 };
  private readonly spawn: SpawnFn;
  private readonly timers: Timers;
  private child: ChildProcess | undefined;
  private exitWaiters: Array<() => void> = [];
  private stopping = false;
  /** Set by restartNow(): the next exit restarts at once, without backoff. */
  private restartRequested = false;
  private failures = 0;
  private restartTimer: unknown;
  /** The boot report's init part: set by reportBoot, counted and timed here. */
  private initBoot: InitBootPhases | null = null;
  private starts = 0;
  private firstServingMs: number | null = null;

  constructor(private readonly deps: AuraedServiceDeps) {
    this.spawn = deps.spawn ?? nodeSpawn;
    this.timers = deps.timers ?? realTimers;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  start(): void {
    if (this.stopping || this.child) return;
    this.restartTimer = undefined;
    const [program, ...args] = this.deps.argv;
    if (!program) throw new Error('auraed command is empty');
    const startedAt = this.timers.now();
    let proc: ChildProcess;
    try {
      proc = this.spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: this.deps.env ?? process.env });
    } catch (err) {
      this.deps.log.error(`starting auraed (${this.deps.argv.join(' ')}) failed: ${errorMessage(err)}`);
      this.restartAfterBackoff(0, 'could not be started');
      return;
    }
    this.child = proc;
    trackChild(this.deps.tracked, proc);
    if (proc.pid !== undefined) {
      this.starts++;
      this.deps.log.info(`started auraed (pid ${proc.pid})`);
    }
    this.watch(proc, startedAt);
    this.sendBoot(proc);
  }

  reportBoot(boot: InitBootPhases): void {
    this.initBoot = { startedMs: boot.startedMs, phases: boot.phases.map((p) => ({ name: p.name, outcome: p.outcome, startMs: p.startMs, ms: p.ms })) };
    if (this.child) this.sendBoot(this.child);
  }

  /** init's part of the boot report to `proc` (queued in the IPC pipe until auraed reads it); a failure is only logged. */
  private sendBoot(proc: ChildProcess): void {
    if (!this.initBoot || proc.pid === undefined) return;
    const message: BootMessage = { type: 'boot', init: { ...this.initBoot, auraedStarts: Math.max(1, this.starts), firstServingMs: this.firstServingMs } };
    const failed = (err: Error) => this.deps.log.warn(`sending the boot report to auraed (pid ${proc.pid}) failed: ${err.message}; its Discover will lack init's phases`);
    try {
      proc.send?.(message, (err) => err && failed(err));
    } catch (err) {
      failed(err instanceof Error ? err : new Error(String(err)));
    }
  }

  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.cancelRestart();
    const proc = this.child;
    if (!proc) return;
    const { log } = this.deps;
    log.info(`stopping auraed (pid ${proc.pid}): SIGTERM, SIGKILL after ${graceMs} ms`);
    proc.kill('SIGTERM');
    if (await this.waitForExit(graceMs)) return;
    log.warn(`auraed (pid ${proc.pid}) still running ${graceMs} ms after SIGTERM; sending SIGKILL`);
    proc.kill('SIGKILL');
    if (!(await this.waitForExit(KILL_WAIT_MS))) {
      log.error(`auraed (pid ${proc.pid}) did not exit ${KILL_WAIT_MS} ms after SIGKILL; continuing`);
    }
  }

  restartNow(): void {
    if (!this.child || this.stopping) return;
    this.restartRequested = true;
    this.child.kill('SIGTERM');
  }

  /** Relay the output, act on the messages, and handle the exit (or a spawn failure) exactly once. */
  private watch(proc: ChildProcess, startedAt: number): void {
    const pid = proc.pid;
    const maxLineBytes = this.deps.maxLineBytes ?? LINE_LIMITS.auraedLineBytes;
    relayOutput(proc.stdout, this.deps.log, this.output, maxLineBytes);
    relayOutput(proc.stderr, this.deps.log, this.output, maxLineBytes);
    const onReady = (message: ReadyMessage) => {
      // The boot's first SERVING, for the report of every later auraed (a restart's own comes in its phases).
      this.firstServingMs ??= Math.round(message.servingMs ?? (this.deps.bootClock ?? bootClockMs)());
    };
    proc.on('message', (raw) => pid !== undefined && handleMessage(this.deps, pid, raw, onReady));

    let exited = false;
    const onExit = (ending: Ending) => {
      if (exited) return;
      exited = true;
      const ranMs = this.timers.now() - startedAt;
      this.onExit(proc, ranMs, describeEnding(this.deps.argv, pid, ranMs, ending));
    };
    proc.once('exit', (code, signal) => onExit({ code, signal }));
    proc.on('error', (err) => {
      // Spawn failures come only as 'error' (no pid, no 'exit'); later errors (a failed
      // kill or IPC send) leave the process running.
      if (proc.pid === undefined) onExit({ spawnError: err });
      else this.deps.log.warn(`auraed (pid ${proc.pid}): ${err.message}`);
    });
  }

  /** auraed is gone: forget it, release stop()'s waiters, then stay down or restart. */
  private onExit(proc: ChildProcess, ranMs: number, what: string): void {
    if (this.child === proc) this.child = undefined;
    removePidFile(this.deps);
    this.releaseExitWaiters();
    switch (afterExit({ stopping: this.stopping, restartRequested: this.restartRequested })) {
      case 'stay-down':
        this.deps.log.info(`auraed ${what}`);
        return;
      case 'restart-now':
        this.restartRequested = false;
        this.deps.log.info(`auraed ${what}; restarting`);
        this.failures = 0;
        this.start();
        return;
      case 'restart-after-backoff':
        this.restartAfterBackoff(ranMs, what);
    }
  }

  private restartAfterBackoff(ranMs: number, what: string): void {
    this.failures = nextFailureCount(this.failures, ranMs, this.deps.policy);
    const delay = restartDelay(this.failures, this.deps.policy);
    this.deps.log.warn(`auraed ${what}; restarting in ${delay} ms (attempt ${this.failures})`);
    this.restartTimer = this.timers.setTimeout(() => this.start(), delay);
  }

  private cancelRestart(): void {
    if (this.restartTimer !== undefined) this.timers.clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
  }

  private releaseExitWaiters(): void {
    const waiters = this.exitWaiters;
    this.exitWaiters = [];
    waiters.forEach((resolve) => resolve());
  }

  /** True once auraed has exited, false after `ms`. */
  private waitForExit(ms: number): Promise<boolean> {
    if (!this.child) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = this.timers.setTimeout(() => resolve(false), ms);
      this.exitWaiters.push(() => {
        this.timers.clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

export function createAuraedService(deps: AuraedServiceDeps): AuraedService {
  return new AuraedSupervisor(deps);
}
