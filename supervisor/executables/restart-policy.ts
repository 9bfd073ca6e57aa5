// Restart decisions, pure (systemd semantics):
// - Restart=on-failure restarts after a non-zero exit code, an OOM kill, or death by a signal other than the
//   "clean" ones (SIGHUP, SIGINT, SIGTERM, SIGPIPE); Restart=always after anything.
// - The delay before restart n (1-based) is min(initial × 2^(n-1), max); n resets when a run lasted at least
//   the start-limit interval (the service had been stable).
// - StartLimitBurst/StartLimitIntervalSec: when `burst` starts already happened within the interval, the next
//   one is refused (start_limit_hit) and the executable fails.
import type { RestartPolicySpec } from './spec';

export interface ExitInfo {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  /** Signal name ("SIGKILL"), or null. */
  signal: string | null;
  /** The OOM killer killed a process of this executable during the run. */
  oomKilled: boolean;
}

const CLEAN_SIGNALS = new Set(['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGPIPE']);

/** systemd's "clean exit": code 0, or one of the clean signals, and no OOM kill. */
export function isCleanExit(exit: ExitInfo): boolean {
  if (exit.oomKilled) return false;
  if (exit.signal !== null) return CLEAN_SIGNALS.has(exit.signal);
  return exit.code === 0;
}

export function wantsRestart(policy: Pick<RestartPolicySpec, 'mode'>, exit: ExitInfo): boolean {
  switch (policy.mode) {
    case 'never':
      return false;
    case 'always':
      return true;
    case 'on-failure':
      return !isCleanExit(exit);
  }
}

/** Delay before restart `attempt` (1 = first restart after a stable run). */
export function backoffDelayMs(policy: Pick<RestartPolicySpec, 'initialDelayMs' | 'maxDelayMs'>, attempt: number): number {
  const n = Math.max(1, Math.floor(attempt));
  // 2^(n-1) overflows to Infinity for large n; min() keeps the result at maxDelayMs.
  return Math.min(policy.initialDelayMs * 2 ** Math.min(n - 1, 64), policy.maxDelayMs);
}

/** Start times still inside the window ending at `now`. */
export function recentStarts(starts: readonly number[], now: number, intervalMs: number): number[] {
  return starts.filter((t) => now - t < intervalMs);
}

/** True when another start at `now` would exceed the start limit. */
export function startLimitReached(starts: readonly number[], now: number, policy: Pick<RestartPolicySpec, 'startLimitBurst' | 'startLimitIntervalMs'>): boolean {
  return recentStarts(starts, now, policy.startLimitIntervalMs).length >= policy.startLimitBurst;
}

export type ExitDecision =
  | { action: 'restart'; attempt: number; delayMs: number }
  | { action: 'start_limit_hit'; starts: number }
  | { action: 'done'; failed: boolean };

export interface ExitContext {
  policy: RestartPolicySpec;
  exit: ExitInfo;
  /** How long the run that just ended lasted. */
  runMs: number;
  /** Restarts in the current backoff sequence before this exit. */
  previousAttempts: number;
  /** Start times (ms) of the runs so far, the ended one included. */
  starts: readonly number[];
  now: number;
}

/** What to do when an executable's process ended (not through Stop). */
export function decideAfterExit(ctx: ExitContext): ExitDecision {
  const failed = !isCleanExit(ctx.exit);
  if (!wantsRestart(ctx.policy, ctx.exit)) return { action: 'done', failed };
  // The restart would happen after the delay; the start limit is checked for that moment, as systemd does at
  // the start itself.
  const attempt = ctx.runMs >= ctx.policy.startLimitIntervalMs ? 1 : ctx.previousAttempts + 1;
  const delayMs = backoffDelayMs(ctx.policy, attempt);
  const at = ctx.now + delayMs;
  if (startLimitReached(ctx.starts, at, ctx.policy)) {
    return { action: 'start_limit_hit', starts: recentStarts(ctx.starts, at, ctx.policy.startLimitIntervalMs).length };
  }
  return { action: 'restart', attempt, delayMs };
}
