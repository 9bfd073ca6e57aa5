// A tiny structured logger: one JSON object per line, {time, level, subsystem, msg, ...fields}.
// init relays these lines to the console; tests parse them. Passed in explicitly, never a module global.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger for a sub-part: `subsystem` replaces the parent's, other bindings are added to every line. */
  child(bindings: { subsystem?: string } & LogFields): Logger;
}

export interface JsonLoggerOptions {
  subsystem: string;
  /** Lowest level written; default 'info'. */
  level?: LogLevel;
  /** Where a finished line (with its newline) goes; default process.stdout. */
  write?: (line: string) => void;
  clock?: () => Date;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createJsonLogger(options: JsonLoggerOptions): Logger {
  const write = options.write ?? ((line: string) => void process.stdout.write(line));
  const clock = options.clock ?? (() => new Date());
  const min = RANK[options.level ?? 'info'];

  const make = (bindings: LogFields & { subsystem: string }): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
      if (RANK[level] < min) return;
      const record = { time: clock().toISOString(), level, ...bindings, msg, ...fields };
      write(JSON.stringify(record, errorReplacer) + '\n');
    };
    return {
      debug: (msg, fields) => emit('debug', msg, fields),
      info: (msg, fields) => emit('info', msg, fields),
      warn: (msg, fields) => emit('warn', msg, fields),
      error: (msg, fields) => emit('error', msg, fields),
      child: (more) => make({ ...bindings, ...more, subsystem: more.subsystem ?? bindings.subsystem }),
    };
  };
  return make({ subsystem: options.subsystem });
}

/** Errors serialize to {} by default; keep what helps diagnose. */
function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as NodeJS.ErrnoException).code;
    return { name: value.name, message: value.message, ...(code ? { code } : {}), stack: value.stack };
  }
  // A 64-bit wire value (bigint) would make JSON.stringify throw and lose the whole record.
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** A logger that drops everything (tests that do not assert on logs). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

export { type LogRing, type LogRingEntry, type LogRingOptions, createLogRing, truncateLine } from './log-ring';
export { RingBuffer } from './ring-buffer';
export { cutMarker, LINE_LIMITS, LineSplitter, type LineSplitterOptions, type LineSplitterStats } from './line-splitter';
