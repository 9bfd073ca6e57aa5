// Console logger for init: human lines on the serial console, in the kernel's style
//   [   12.345] init: <message>
//   [   12.345] auraed: <relayed line>
// Seconds since boot (from /proc/uptime in PID-1 mode, process.uptime() in dev mode).
// The logger is passed to every module; nothing logs through a global.
import { readFileSync } from 'node:fs';

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  /** Printed only when debug logging is on (env AURAE_INIT_DEBUG=1). */
  debug(message: string): void;
  /** A line from another process, e.g. relay('auraed', line). */
  relay(source: string, line: string): void;
  /** A line printed verbatim (the machine-readable AURAE_READY line). */
  raw(line: string): void;
}

/** `[   12.345] source: message` — 3 decimals, right-aligned in 8 columns like printk. */
export function formatLogLine(seconds: number, source: string, message: string): string {
  return `[${seconds.toFixed(3).padStart(8)}] ${source}: ${message}`;
}

export interface ConsoleLoggerOptions {
  /** Seconds since boot. */
  clock: () => number;
  /** Writes one chunk of text (lines end in \n). */
  write: (text: string) => void;
  debug?: boolean;
  /** Name in front of init's own lines; default "init". */
  source?: string;
}

export function createConsoleLogger(options: ConsoleLoggerOptions): Logger {
  const source = options.source ?? 'init';
  const emit = (from: string, message: string) => {
    const now = options.clock();
    // One console line per message line, so multi-line errors stay attributable.
    const text = message
      .split('\n')
      .map((line) => `${formatLogLine(now, from, line)}\n`)
      .join('');
    try {
      options.write(text);
    } catch {
      // A broken console must never take PID 1 down.
    }
  };
  return {
    info: (message) => emit(source, message),
    warn: (message) => emit(source, `warning: ${message}`),
    error: (message) => emit(source, `error: ${message}`),
    debug: (message) => {
      if (options.debug) emit(source, `debug: ${message}`);
    },
    relay: (from, line) => emit(from, line),
    raw: (line) => {
      try {
        options.write(`${line}\n`);
      } catch {
        // See emit.
      }
    },
  };
}

/**
 * Seconds since boot: /proc/uptime read once, then advanced with the monotonic clock
 * (one file read per log line would be wasteful). PID 1 logs before /proc is mounted, so
 * until the read succeeds this falls back to process.uptime() and tries again next call.
 */
export function bootClock(readUptime: () => string = () => readFileSync('/proc/uptime', 'utf8')): () => number {
  let base: { uptime: number; at: bigint } | undefined;
  return () => {
    if (!base) {
      try {
        const uptime = Number.parseFloat(readUptime().split(' ')[0] ?? '');
        if (Number.isFinite(uptime)) base = { uptime, at: process.hrtime.bigint() };
      } catch {
        // /proc not mounted yet.
      }
    }
    if (!base) return process.uptime();
    return base.uptime + Number(process.hrtime.bigint() - base.at) / 1e9;
  };
}

/** A logger that records lines, for tests. */
export function createMemoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createConsoleLogger({ clock: () => 0, write: (text) => lines.push(...text.split('\n').filter(Boolean)), debug: true });
  return Object.assign(logger, { lines });
}

/** Message text of any thrown value. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
