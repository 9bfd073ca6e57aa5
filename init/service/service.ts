// Supervise auraed: spawn it, relay its output, act on its IPC messages, restart it with
// backoff when it exits, and stop it (SIGTERM → grace → SIGKILL) on request.
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { errorMessage, type Logger } from '../log';
import { trackChild } from '../reaper';
import { nextFailureCount, restartDelay, type BackoffPolicy } from './backoff';
import { parseAuraedMessage, readyLine, type ReadyMessage } from '../../supervisor/ipc';

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
}

export interface AuraedService {
  /** Spawn auraed (no-op while it runs or once stopping). */
  start(): void;
  /** No more restarts; SIGTERM, wait graceMs, SIGKILL. Resolves once it has exited. */
  stop(graceMs: number): Promise<void>;
  /** Kill the running auraed so the supervisor restarts it at once (dev-mode "reboot"). */
  restartNow(): void;
  readonly pid: number | undefined;
  readonly running: boolean;
}

/** How long to wait for the exit after SIGKILL before giving up (the kernel should be quick). */
const KILL_WAIT_MS = 5_000;

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `was killed by ${signal}`;
  if (code !== null) return `exited with code ${code}`;
  return 'could not be started';
}

export function createAuraedService(deps: AuraedServiceDeps): AuraedService {
  const spawn = deps.spawn ?? nodeSpawn;
  const timers = deps.timers ?? realTimers;
  let child: ChildProcess | undefined;
  let exitWaiters: Array<() => void> = [];
  let stopping = false;
  let failures = 0;
  let restartTimer: unknown;
  let immediateRestart = false;

  const relay = (stream: Readable | null) => {
    if (!stream) return;
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => deps.log.relay('auraed', line));
  };

  const onMessage = (pid: number, raw: unknown) => {
    const message = parseAuraedMessage(raw);
    if (typeof message === 'string') {
      deps.log.warn(`ignoring malformed IPC message from auraed (${message}): ${JSON.stringify(raw)?.slice(0, 200)}`);
      return;
    }
    if (message.type === 'ready') {
      // Pid file first: whoever sees AURAE_READY may read it at once.
      try {
        deps.files.write(deps.pidFile, `${pid}\n`);
      } catch (err) {
        deps.log.warn(`writing ${deps.pidFile} failed: ${errorMessage(err)}`);
      }
      deps.log.raw(readyLine(message, pid));
      deps.onReady?.(message, pid);
    } else {
      const why = message.reason ? `: ${message.reason}` : '';
      deps.log.info(`auraed asks for ${message.action} (requested by ${message.by}${why})`);
      deps.onPower(message.action, message.by, message.reason);
    }
  };

  const start = () => {
    if (stopping || child) return;
    restartTimer = undefined;
    const [program, ...args] = deps.argv;
    if (!program) throw new Error('auraed command is empty');
    const startedAt = timers.now();
    let proc: ChildProcess;
    try {
      proc = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: deps.env ?? process.env });
    } catch (err) {
      deps.log.error(`starting auraed (${deps.argv.join(' ')}) failed: ${errorMessage(err)}`);
      scheduleRestart(0);
      return;
    }
    child = proc;
    trackChild(deps.tracked, proc);
    const pid = proc.pid;
    if (pid !== undefined) deps.log.info(`started auraed (pid ${pid})`);
    relay(proc.stdout);
    relay(proc.stderr);
    proc.on('message', (raw) => pid !== undefined && onMessage(pid, raw));

    let done = false;
    const onExit = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error) => {
      if (done) return;
      done = true;
      if (child === proc) child = undefined;
      try {
        deps.files.remove(deps.pidFile);
      } catch {
        // Not written yet, or already gone.
      }
      const ranMs = timers.now() - startedAt;
      const what = spawnError
        ? `could not be started (${deps.argv.join(' ')}): ${spawnError.message}`
        : `(pid ${pid}) ${describeExit(code, signal)} after ${(ranMs / 1000).toFixed(1)} s`;
      const waiters = exitWaiters;
      exitWaiters = [];
      waiters.forEach((resolve) => resolve());
      if (stopping) {
        deps.log.info(`auraed ${what}`);
        return;
      }
      if (immediateRestart) {
        immediateRestart = false;
        deps.log.info(`auraed ${what}; restarting`);
        failures = 0;
        start();
        return;
      }
      scheduleRestart(ranMs, what);
    };
    proc.once('exit', (code, signal) => onExit(code, signal));
    proc.on('error', (err) => {
      // Spawn failures come only as 'error' (no pid, no 'exit'); later errors (a failed
      // kill or IPC send) leave the process running.
      if (proc.pid === undefined) onExit(null, null, err);
      else deps.log.warn(`auraed (pid ${proc.pid}): ${err.message}`);
    });
  };

  const scheduleRestart = (ranMs: number, what = 'could not be started') => {
    failures = nextFailureCount(failures, ranMs, deps.policy);
    const delay = restartDelay(failures, deps.policy);
    deps.log.warn(`auraed ${what}; restarting in ${delay} ms (attempt ${failures})`);
    restartTimer = timers.setTimeout(start, delay);
  };

  const waitForExit = (ms: number): Promise<boolean> => {
    if (!child) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = timers.setTimeout(() => resolve(false), ms);
      exitWaiters.push(() => {
        timers.clearTimeout(timer);
        resolve(true);
      });
    });
  };

  return {
    start,
    async stop(graceMs) {
      stopping = true;
      if (restartTimer !== undefined) timers.clearTimeout(restartTimer);
      restartTimer = undefined;
      const proc = child;
      if (!proc) return;
      deps.log.info(`stopping auraed (pid ${proc.pid}): SIGTERM, SIGKILL after ${graceMs} ms`);
      proc.kill('SIGTERM');
      if (await waitForExit(graceMs)) return;
      deps.log.warn(`auraed (pid ${proc.pid}) still running ${graceMs} ms after SIGTERM; sending SIGKILL`);
      proc.kill('SIGKILL');
      if (!(await waitForExit(KILL_WAIT_MS))) {
        deps.log.error(`auraed (pid ${proc.pid}) did not exit ${KILL_WAIT_MS} ms after SIGKILL; continuing`);
      }
    },
    restartNow() {
      if (!child || stopping) return;
      immediateRestart = true;
      child.kill('SIGTERM');
    },
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined;
    },
  };
}
