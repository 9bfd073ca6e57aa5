// auraed's own log, kept in memory for GetAuraeDaemonLogStream: the logger's write function is teed into a
// bounded ring (lines and bytes), and followers see each new line. Nothing here may log: it IS the log.
import { RingBuffer } from './ring-buffer';

export interface LogRingEntry {
  /** Milliseconds since the Unix epoch when the line was written. */
  time: number;
  /** The line without its newline (a JSON object for auraed's structured log). */
  line: string;
}

export interface LogRing {
  /** Keep a finished line (a trailing newline is removed). */
  push(line: string): void;
  /** The last `tail` lines (all held when undefined), oldest first. */
  recent(tail?: number): LogRingEntry[];
  /** Call `listener` for every line pushed from now on; returns the unsubscribe function. */
  subscribe(listener: (entry: LogRingEntry) => void): () => void;
  /** A write function for createJsonLogger: passes each line to `write` and keeps it here. */
  tee(write: (line: string) => void): (line: string) => void;
}

export interface LogRingOptions {
  /** Most lines kept; default 2000. */
  maxLines?: number;
  /** Most characters kept over all lines; default 1 Mi. */
  maxChars?: number;
  /** Longer lines are cut with a marker; default 16384. */
  lineMaxChars?: number;
  clock?: () => number;
}

export function createLogRing(options: LogRingOptions = {}): LogRing {
  const lineMax = options.lineMaxChars ?? 16_384;
  const clock = options.clock ?? Date.now;
  const ring = new RingBuffer<LogRingEntry>(options.maxLines ?? 2000, options.maxChars ?? 1024 * 1024, (e) => e.line.length);
  const listeners = new Set<(entry: LogRingEntry) => void>();
  // A listener that logs (e.g. a failing stream write) would re-enter push: queue, keep the order, no recursion.
  const pending: LogRingEntry[] = [];
  let dispatching = false;

  const ring_: LogRing = {
    push(line) {
      const text = truncateLine(line.endsWith('\n') ? line.slice(0, -1) : line, lineMax);
      const entry = { time: clock(), line: text };
      ring.push(entry);
      pending.push(entry);
      if (dispatching) return;
      dispatching = true;
      try {
        for (let next = pending.shift(); next; next = pending.shift()) {
          for (const listener of [...listeners]) {
            try {
              listener(next);
            } catch {
              // A follower's failure is its own (its stream ends); the log goes on.
            }
          }
        }
      } finally {
        dispatching = false;
      }
    },
    recent: (tail) => ring.last(tail),
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    tee: (write) => (line) => {
      write(line);
      ring_.push(line);
    },
  };
  return ring_;
}

/**
 * Cut `line` to at most `max` characters plus a marker saying how much was dropped. Never splits a surrogate
 * pair (a lone half would become U+FFFD on the wire).
 */
export function truncateLine(line: string, max: number): string {
  if (line.length <= max) return line;
  let cut = max;
  const code = line.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut--;
  return `${line.slice(0, cut)} [truncated ${line.length - cut} characters]`;
}
