// The ONE graceful shutdown path, used by signals, the power button, auraed's 'power'
// IPC request and fatal errors (tini/erlinit order: TERM → grace → KILL → sync → reboot):
//
//   begin → stop auraed (SIGTERM → graceMs → SIGKILL) → SIGTERM to all → wait up to
//   graceMs → SIGKILL to the rest → sync → unmount (reverse mount table) → reboot(2)
//
// The steps are a table of phases (supervisor/phases), all optional: a failure is logged and the path goes on.
// It never throws, and if reboot(2) itself fails it sleeps forever: PID 1 exiting panics the kernel.
import type { Syscalls } from '../../native';
import { type Phase, runPhases } from '../../supervisor/phases';
import { errorMessage, type Logger } from '../log';
import { unmountAll, type MountSpec } from '../mounts';

export type PowerAction = 'poweroff' | 'reboot';

export interface ShutdownDeps {
  log: Logger;
  /** Read at shutdown time: the config may arrive after the handlers are installed. */
  graceMs(): number;
  stopAuraed(graceMs: number): Promise<void>;
  /** Stop everything that would respawn processes or start work (debug shell, watchers). */
  stopRespawners(): void;
  /** kill(-1, signal): every process but us (and the kernel's). */
  killAll(signal: 'SIGTERM' | 'SIGKILL'): void;
  /** Pids of user processes still alive (not us, not kernel threads, not zombies). */
  remaining(): number[];
  /** Reap orphaned zombies so they stop counting and stop holding mounts. */
  reapOrphans(): void;
  syscalls: Pick<Syscalls, 'sync' | 'umount2' | 'reboot'>;
  unmountPlan: MountSpec[];
  clock: { now(): number; sleep(ms: number): Promise<void> };
  /** Never resolves in production (PID 1 must not exit); tests resolve it. */
  hang(): Promise<void>;
  /** /proc polling interval while waiting for processes to exit. */
  pollMs?: number;
}

export interface Shutdown {
  /** Start the shutdown (once); later requests are logged and ignored. Never rejects. */
  request(action: PowerAction, reason: string): Promise<void>;
  readonly inProgress: PowerAction | undefined;
}

/** After SIGKILL the kernel needs only a moment; wait at most this long for exits. */
const AFTER_KILL_WAIT_MS = 1_000;

/** What the shutdown phases share: the request, and the grace period read once at its start. */
interface ShutdownContext {
  readonly deps: ShutdownDeps;
  readonly action: PowerAction;
  readonly graceMs: number;
  readonly pollMs: number;
}

/** The one graceful path, in order. Every phase is optional: a failure is logged and the path goes on. */
const SHUTDOWN_PHASES: readonly Phase<ShutdownContext>[] = [
  { name: 'stop-respawners', optional: true, run: (c) => c.deps.stopRespawners() },
  { name: 'stop-auraed', optional: true, run: stopAuraed },
  { name: 'term-all', optional: true, run: (c) => announce(c, 'SIGTERM to all processes', () => c.deps.killAll('SIGTERM')) },
  { name: 'wait-for-exit', optional: true, run: waitAfterTerm },
  { name: 'kill-rest', optional: true, run: (c) => announce(c, 'SIGKILL to remaining processes', () => c.deps.killAll('SIGKILL')) },
  { name: 'wait-for-killed', optional: true, run: waitAfterKill },
  { name: 'sync', optional: true, run: (c) => announce(c, 'sync', () => c.deps.syscalls.sync()) },
  { name: 'unmount', optional: true, run: (c) => announce(c, 'unmounting', () => unmountAll(c.deps.unmountPlan, { syscalls: c.deps.syscalls, log: c.deps.log })) },
  { name: 'sync-again', optional: true, run: (c) => c.deps.syscalls.sync() },
];

export function createShutdown(deps: ShutdownDeps): Shutdown {
  const { log } = deps;
  let action: PowerAction | undefined;
  let running: Promise<void> | undefined;

  const run = async (chosen: PowerAction, reason: string) => {
    const ctx: ShutdownContext = { deps, action: chosen, graceMs: readGraceMs(deps), pollMs: deps.pollMs ?? 100 };
    log.info(`shutdown: begin (${chosen}, reason: ${reason})`);
    // Phase lines carry the "shutdown: " prefix so a failure reads `error: shutdown: phase sync failed …`.
    const phaseLog = { info: (line: string) => log.info(`shutdown: ${line}`), error: (line: string) => log.error(`shutdown: ${line}`) };
    await runPhases(SHUTDOWN_PHASES, ctx, phaseLog, { now: deps.clock.now });
    await powerNow(ctx);
  };

  return {
    request(chosen, reason) {
      if (action) {
        log.info(
          chosen === action
            ? `shutdown: already shutting down (${action}); ignoring another request (${reason})`
            : `shutdown: already shutting down (${action}); ignoring the request to ${chosen} (${reason})`,
        );
        return Promise.resolve();
      }
      action = chosen;
      running = run(chosen, reason).catch((err: unknown) => {
        // Every phase is optional and powerNow catches; this is the last line of defence.
        log.error(`shutdown: unexpected failure: ${errorMessage(err)}`);
        return deps.hang();
      });
      return running;
    },
    get inProgress() {
      return action;
    },
  };
}

/** The configured grace period; 5 s when the config cannot tell (a fatal error before it was read). */
function readGraceMs(deps: ShutdownDeps): number {
  try {
    return deps.graceMs();
  } catch {
    return 5_000;
  }
}

/** Log the step's console marker (tests and operators follow these), then do it. */
async function announce(ctx: ShutdownContext, marker: string, fn: () => unknown): Promise<void> {
  ctx.deps.log.info(`shutdown: ${marker}`);
  await fn();
}

async function stopAuraed(ctx: ShutdownContext): Promise<void> {
  ctx.deps.log.info('shutdown: stopping auraed');
  try {
    await ctx.deps.stopAuraed(ctx.graceMs);
  } finally {
    // Printed even when stopping failed: from here on the path no longer waits for auraed.
    ctx.deps.log.info('shutdown: auraed stopped');
  }
}

async function waitAfterTerm(ctx: ShutdownContext): Promise<void> {
  const left = await waitForExit(ctx, ctx.graceMs);
  if (left.length) ctx.deps.log.warn(`shutdown: ${left.length} process(es) still running after ${ctx.graceMs} ms: ${left.slice(0, 20).join(' ')}`);
}

async function waitAfterKill(ctx: ShutdownContext): Promise<void> {
  const stuck = await waitForExit(ctx, AFTER_KILL_WAIT_MS);
  // Uninterruptible sleep (D state) survives SIGKILL; say so and carry on.
  if (stuck.length) ctx.deps.log.warn(`shutdown: ${stuck.length} process(es) survived SIGKILL: ${stuck.slice(0, 20).join(' ')}`);
}

/** Poll until no process remains or `ms` passed; returns the pids still there. */
async function waitForExit({ deps, pollMs }: ShutdownContext, ms: number): Promise<number[]> {
  const deadline = deps.clock.now() + ms;
  for (;;) {
    deps.reapOrphans();
    const left = deps.remaining();
    if (left.length === 0 || deps.clock.now() >= deadline) return left;
    await deps.clock.sleep(Math.min(pollMs, Math.max(1, deadline - deps.clock.now())));
  }
}

/** reboot(2) for the chosen action; if it fails or returns, hang (PID 1 must not exit). */
async function powerNow({ deps, action }: ShutdownContext): Promise<void> {
  deps.log.info(`shutdown: ${action} now`);
  try {
    deps.syscalls.reboot(action === 'reboot' ? 'restart' : 'poweroff');
  } catch (err) {
    deps.log.error(`shutdown: reboot(2) for ${action} failed: ${errorMessage(err)}; halting here (PID 1 must not exit)`);
  }
  // Only reached if reboot(2) returned or failed.
  await deps.hang();
}

/** A promise that never settles, keeping the event loop alive (a PID 1 that cannot reboot). */
export function hangForever(): Promise<void> {
  return new Promise(() => {
    setInterval(() => {}, 1 << 30);
  });
}

/** Real kill(-1): refuses unless we are PID 1, so a mistake on a dev host cannot kill the host. */
export function killAllProcesses(signal: 'SIGTERM' | 'SIGKILL'): void {
  if (process.pid !== 1) throw new Error(`refusing kill(-1, ${signal}): not PID 1`);
  try {
    process.kill(-1, signal);
  } catch (err) {
    // ESRCH: nothing left to signal.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
