// Restart backoff for auraed: initialMs, doubling per consecutive short run up to maxMs;
// a run that lasted stableMs or longer starts the count again.
import type { NodeConfig } from '../../supervisor/config';

export type BackoffPolicy = NodeConfig['supervise'];

/** Consecutive failures after a run of `ranMs` (the first failure is 1). */
export function nextFailureCount(previous: number, ranMs: number, policy: BackoffPolicy): number {
  return ranMs >= policy.stableMs ? 1 : previous + 1;
}

/** Delay before restart number `failures` (1-based). */
export function restartDelay(failures: number, policy: BackoffPolicy): number {
  const exponent = Math.max(0, failures - 1);
  // Cap the exponent so the multiplication cannot overflow to Infinity on long crash loops.
  return Math.min(policy.initialMs * 2 ** Math.min(exponent, 30), policy.maxMs);
}
