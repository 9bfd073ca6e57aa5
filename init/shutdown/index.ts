// The ONE graceful shutdown path, used by signals, the power button, auraed's 'power'
// IPC request and fatal errors (tini/erlinit order: TERM → grace → KILL → sync → reboot):
//
//   begin → stop auraed (SIGTERM → graceMs → SIGKILL) → SIGTERM to all → wait up to
//   graceMs → SIGKILL to the rest → sync → unmount (reverse mount table) → reboot(2)
//
// Every step is wrapped: a failure is logged and the path goes on. It never throws, and
// if reboot(2) itself fails it sleeps forever: PID 1 exiting panics the kernel.
import type { Syscalls } from '../../native';
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

export function createShutdown(deps: ShutdownDeps): Shutdown {
  const { log } = deps;
  let action: PowerAction | undefined;
  let running: Promise<void> | undefined;
  const pollMs = deps.pollMs ?? 100;

  const step = async (what: string, fn: () => unknown) => {
    try {
      await fn();
    } catch (err) {
      log.error(`shutdown: ${what} failed: ${errorMessage(err)}; continuing`);
    }
  };

  /** Poll until no process remains or `ms` passed; returns the pids still there. */
  const waitForExit = async (ms: number): Promise<number[]> => {
    const deadline = deps.clock.now() + ms;
    for (;;) {
      deps.reapOrphans();
      const left = deps.remaining();
      if (left.length === 0 || deps.clock.now() >= deadline) return left;
      await deps.clock.sleep(Math.min(pollMs, Math.max(1, deadline - deps.clock.now())));
    }
  };

  const run = async (chosen: PowerAction, reason: string) => {
    const graceMs = (() => {
      try {
        return deps.graceMs();
      } catch {
        return 5_000;
      }
    })();
    log.info(`shutdown: begin (${chosen}, reason: ${reason})`);
    await step('stopping respawners', () => deps.stopRespawners());
    log.info('shutdown: stopping auraed');
    await step('stopping auraed', () => deps.stopAuraed(graceMs));
    log.info('shutdown: auraed stopped');

    log.info('shutdown: SIGTERM to all processes');
    await step('SIGTERM to all processes', () => deps.killAll('SIGTERM'));
    let left: number[] = [];
    await step('waiting for processes to exit', async () => {
      left = await waitForExit(graceMs);
    });
    if (left.length) log.warn(`shutdown: ${left.length} process(es) still running after ${graceMs} ms: ${left.slice(0, 20).join(' ')}`);

    log.info('shutdown: SIGKILL to remaining processes');
    await step('SIGKILL to remaining processes', () => deps.killAll('SIGKILL'));
    await step('waiting for killed processes', async () => {
      const stuck = await waitForExit(AFTER_KILL_WAIT_MS);
      // Uninterruptible sleep (D state) survives SIGKILL; say so and carry on.
      if (stuck.length) log.warn(`shutdown: ${stuck.length} process(es) survived SIGKILL: ${stuck.slice(0, 20).join(' ')}`);
    });

    log.info('shutdown: sync');
    await step('sync', () => deps.syscalls.sync());
    log.info('shutdown: unmounting');
    await step('unmounting', () => unmountAll(deps.unmountPlan, { syscalls: deps.syscalls, log }));
    await step('sync', () => deps.syscalls.sync());

    log.info(`shutdown: ${chosen} now`);
    try {
      deps.syscalls.reboot(chosen === 'reboot' ? 'restart' : 'poweroff');
    } catch (err) {
      log.error(`shutdown: reboot(2) for ${chosen} failed: ${errorMessage(err)}; halting here (PID 1 must not exit)`);
    }
    // Only reached if reboot(2) returned or failed.
    await deps.hang();
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
        // run() wraps every step; this is the last line of defence.
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
