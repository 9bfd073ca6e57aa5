// The one runner for every top-level sequence (init's boot and shutdown, auraed's start, the image build): a
// sequence is a table of named phases, each with an optional condition, run in order. Every phase is logged
// exactly once with its outcome and duration (`phase mounts ok 12ms`), so a console shows where the time goes
// and the bench reads those lines instead of guessing (Talos machined: the boot plan is data).

/** One step of a sequence. `C` is the sequence's typed context: what earlier phases left for later ones. */
export interface Phase<C> {
  /** kebab-case, unique in its table: the name in logs, errors and the bench. */
  readonly name: string;
  /** Run only when this holds (read when the phase's turn comes); otherwise logged as skipped. */
  when?(ctx: C): boolean;
  run(ctx: C): unknown;
  /** A failure is logged and the sequence goes on (default: the sequence stops with a PhaseError). */
  readonly optional?: boolean;
}

/** What the runner writes to; init's console logger and auraed's JSON logger both fit. */
export interface PhaseLog {
  info(line: string): void;
  error(line: string): void;
}

export type PhaseOutcome = 'ok' | 'skipped' | 'failed';

export interface PhaseResult {
  name: string;
  outcome: PhaseOutcome;
  /** When the phase started, in whole milliseconds of the run's clock (default bootClockMs: since the kernel started). */
  startMs: number;
  /** Whole milliseconds the phase ran (0 when skipped). */
  ms: number;
  error?: unknown;
}

export interface PhaseRunOptions {
  /** Milliseconds, monotonic; default bootClockMs (so phases of init and auraed share one timeline). */
  now?: () => number;
  /** Told each phase's result as soon as it is known (before the next phase starts): a live boot report. */
  onResult?: (result: PhaseResult) => void;
}

/**
 * Milliseconds since the kernel started, on the monotonic clock (CLOCK_MONOTONIC, which Node's hrtime reads: on
 * Linux it starts at the kernel's boot and does not count suspend, so in a VM it equals /proc/uptime). Every
 * process reads the same clock, so init's and auraed's phases fall on one timeline, and it needs no /proc.
 */
export function bootClockMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** When this process (Node) started, in bootClockMs: for init, the kernel's time to /init. */
export function processStartMs(): number {
  return bootClockMs() - performance.now();
}

/** A phase that failed and stopped its sequence; `cause` is what it threw. */
export class PhaseError extends Error {
  constructor(
    readonly phase: string,
    cause: unknown,
  ) {
    super(`phase ${phase} failed: ${messageOf(cause)}`, { cause });
    this.name = 'PhaseError';
  }
}

/**
 * Run `phases` in order on `ctx`, logging each once: `phase NAME ok 12ms`, `phase NAME skipped`, or
 * `phase NAME failed after 12ms: why` (with `; continuing` for an optional phase). Resolves with every phase's
 * result; rejects with a PhaseError at the first failed phase that is not optional (later phases are not run).
 * A condition that throws counts as the phase failing. Precondition: names are unique in the table.
 */
export async function runPhases<C>(phases: readonly Phase<C>[], ctx: C, log: PhaseLog, options: PhaseRunOptions = {}): Promise<PhaseResult[]> {
  const now = options.now ?? bootClockMs;
  const results: PhaseResult[] = [];
  for (const phase of phases) {
    const started = now();
    const startMs = Math.round(started);
    let result: PhaseResult;
    try {
      if (phase.when && !phase.when(ctx)) {
        result = { name: phase.name, outcome: 'skipped', startMs, ms: 0 };
      } else {
        await phase.run(ctx);
        result = { name: phase.name, outcome: 'ok', startMs, ms: elapsed(started, now) };
      }
    } catch (err) {
      result = { name: phase.name, outcome: 'failed', startMs, ms: elapsed(started, now), error: err };
    }
    results.push(result);
    options.onResult?.(result);
    if (result.outcome !== 'failed') {
      log.info(phaseLine(result));
      continue;
    }
    log.error(`${phaseLine(result)}${phase.optional ? '; continuing' : ''}`);
    if (!phase.optional) throw new PhaseError(phase.name, result.error);
  }
  return results;
}

/** The line runPhases logs for a result (the one format; findPhaseLine reads it back). */
export function phaseLine(result: PhaseResult): string {
  if (result.outcome === 'ok') return `phase ${result.name} ok ${result.ms}ms`;
  if (result.outcome === 'skipped') return `phase ${result.name} skipped`;
  return `phase ${result.name} failed after ${result.ms}ms: ${messageOf(result.error)}`;
}

const PHASE_LINE = /\bphase ([a-z0-9-]+) (?:(ok) (\d+)ms|(skipped)|(failed) after (\d+)ms)/;

/** What a logged phase line says (a line carries no start time). */
export type LoggedPhase = Omit<PhaseResult, 'startMs' | 'error'>;

/**
 * The phase result in a logged line (a console line, a JSON log record), or null: how benchmarks and tests read
 * where the time went. A failure's error is not read back.
 */
export function findPhaseLine(text: string): LoggedPhase | null {
  const m = PHASE_LINE.exec(text);
  if (!m) return null;
  const name = m[1]!;
  if (m[2]) return { name, outcome: 'ok', ms: Number(m[3]) };
  if (m[4]) return { name, outcome: 'skipped', ms: 0 };
  return { name, outcome: 'failed', ms: Number(m[6]) };
}

/**
 * One line summing up a finished sequence, for the end of a long one (the image build): the total, then every
 * phase that ran with its duration, in table order. `build: 12.3 s in 11 phases: kernel 10.1 s, runtime 12 ms, …`
 */
export function phaseSummary(label: string, results: readonly Pick<PhaseResult, 'name' | 'outcome' | 'ms'>[]): string {
  const ran = results.filter((r) => r.outcome !== 'skipped');
  const total = ran.reduce((sum, r) => sum + r.ms, 0);
  const parts = ran.map((r) => `${r.name} ${formatMs(r.ms)}${r.outcome === 'failed' ? ' (failed)' : ''}`);
  const skipped = results.length - ran.length;
  return `${label}: ${formatMs(total)} in ${ran.length} phases${skipped ? ` (${skipped} skipped)` : ''}: ${parts.join(', ')}`;
}

/** 850 ms, 12.3 s, 4 min 05 s. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/**
 * The value an earlier phase left in `ctx[key]`. Throws (naming the field) when it is missing, which means the
 * table runs a phase before the one that sets it.
 */
export function need<C, K extends keyof C>(ctx: C, key: K): NonNullable<C[K]> {
  const value = ctx[key];
  if (value === undefined || value === null) throw new Error(`${String(key)} is not set yet: the phase that sets it must run earlier in the table`);
  return value as NonNullable<C[K]>;
}

function elapsed(started: number, now: () => number): number {
  return Math.max(0, Math.round(now() - started));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
