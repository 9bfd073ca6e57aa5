// Executables' stdout/stderr on disk: one writer per executable, bounded rotated files, reads across them,
// live followers. write() is synchronous and never throws; the disk work is queued per file and done in
// order by one async loop, so lines stay ordered, reads see exactly the lines written before them, and a
// full or failing disk costs dropped lines (reported once per episode), never auraed.
import { dirname, join } from 'node:path';
import { AuraeError } from '../errors';
import { type Logger, truncateLine } from '../log';
import { type LogFileHandle, type LogFs, nodeLogFs } from './log-fs';
import { encodeLogLine, logFilePaths, parseLogLines } from './log-files';
import { cellPathProblem, executableNameProblem, isCellWithin } from './names';
import type { CellPath, LogLine, LogSink, LogStore, LogStream } from './types';

export interface FileLogStoreOptions {
  /** Root of the log tree, `<state.dir>/logs`. Created when the first line is written. */
  dir: string;
  /** A file is rotated when the next line would take it past this size; default 1 MiB (observe.logMaxBytes). */
  maxBytes?: number;
  /** Files kept per executable, current included; default 3 (observe.logFiles). */
  files?: number;
  /** Longer lines are cut and marked; default 16384 characters. */
  lineMaxChars?: number;
  /** Bytes per executable queued for the disk before new lines are dropped; default 4 MiB. */
  maxPendingBytes?: number;
  log: Logger;
  fs?: LogFs;
  clock?: () => Date;
}

export interface FileLogStore extends LogStore {
  /** Resolves once every line written so far is on disk (or dropped). For shutdown and tests. */
  flush(): Promise<void>;
}

/** Log files never exceed this count, whatever the config said when they were written (remove() cleans all). */
const MAX_FILES = 20;

export function createFileLogStore(options: FileLogStoreOptions): FileLogStore {
  const env: WriterEnv = {
    fs: options.fs ?? nodeLogFs,
    log: options.log,
    maxBytes: options.maxBytes ?? 1024 * 1024,
    maxPendingBytes: options.maxPendingBytes ?? 4 * 1024 * 1024,
  };
  const files = options.files ?? 3;
  const lineMax = options.lineMaxChars ?? 16_384;
  const clock = options.clock ?? (() => new Date());
  const writers = new Map<string, LogWriter>();
  const followers = new Map<string, Set<(line: LogLine) => void>>();

  const keyOf = (cell: CellPath, executable: string) => {
    // Names become paths: callers validate them, and this refuses anything else (e.g. "..") as a bug.
    const problem = cellPathProblem(cell) ?? executableNameProblem(executable);
    if (problem) throw new Error(`log store: refusing cell "${cell}" executable "${executable}": ${problem}`);
    return `${cell}:${executable}`;
  };

  const acquire = (cell: CellPath, executable: string): LogWriter => {
    const key = keyOf(cell, executable);
    let writer = writers.get(key);
    if (!writer) {
      const paths = logFilePaths(options.dir, cell, executable, files);
      writer = new LogWriter(cell, executable, paths, env, (idle) => {
        if (idle.refs === 0 && writers.get(key) === idle) writers.delete(key);
      });
      writers.set(key, writer);
    }
    writer.refs++;
    return writer;
  };

  /** Run `fn` in `writer`'s order (after every line queued before), holding a reference meanwhile. */
  const inOrder = async <T>(cell: CellPath, executable: string, fn: (writer: LogWriter) => Promise<T>): Promise<T> => {
    const writer = acquire(cell, executable);
    try {
      return await writer.task(() => fn(writer));
    } finally {
      writer.release();
    }
  };

  const readFailed = (what: string, err: unknown): AuraeError => {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return new AuraeError('UNAVAILABLE', `${what} failed (${code}): check the state disk (${options.dir}) on the node`, { cause: err });
  };

  return {
    sink(cell, executable): LogSink {
      const key = keyOf(cell, executable);
      const writer = acquire(cell, executable);
      let closing: Promise<void> | null = null;
      return {
        write(stream: LogStream, line: string) {
          if (closing) return;
          const record: LogLine = { time: clock().toISOString(), stream, line: truncateLine(line, lineMax) };
          writer.append(encodeLogLine(record));
          for (const listener of [...(followers.get(key) ?? [])]) {
            try {
              listener(record);
            } catch (err) {
              options.log.error('log follower failed', { cell, executable, err });
            }
          }
        },
        close() {
          closing ??= writer.task(async () => {}).finally(() => writer.release());
          return closing;
        },
      };
    },

    read(cell, executable, tail) {
      const paths = logFilePaths(options.dir, cell, executable, files);
      return inOrder(cell, executable, async () => {
        if (tail === 0) return [];
        let lines: LogLine[] = [];
        // Newest file first; stop as soon as the tail is complete.
        for (const path of paths) {
          let text: string | null;
          try {
            text = await env.fs.readText(path);
          } catch (err) {
            throw readFailed(`reading the logs of ${cell}/${executable} (${path})`, err);
          }
          if (text === null) continue;
          lines = parseLogLines(text).concat(lines);
          if (tail !== undefined && lines.length >= tail) break;
        }
        return tail === undefined ? lines : lines.slice(-tail);
      });
    },

    follow(cell, executable, listener) {
      const key = keyOf(cell, executable);
      let set = followers.get(key);
      if (!set) followers.set(key, (set = new Set()));
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0 && followers.get(key) === set) followers.delete(key);
      };
    },

    async remove(cell, executable) {
      // Refusals (bad names) are bugs in the caller and surface as such, before any disk work.
      if (executable !== undefined) keyOf(cell, executable);
      else if (cellPathProblem(cell)) throw new Error(`log store: refusing cell "${cell}": ${cellPathProblem(cell)}`);
      try {
        if (executable !== undefined) {
          const paths = logFilePaths(options.dir, cell, executable, MAX_FILES);
          await inOrder(cell, executable, async (writer) => {
            await writer.closeFile();
            for (const path of paths) await env.fs.remove(path);
          });
          return;
        }
        // Close the open files of this cell and its children first, then drop the whole subtree.
        const open = [...writers.values()].filter((w) => isCellWithin(w.cell, cell));
        await Promise.all(open.map((w) => inOrder(w.cell, w.executable, (writer) => writer.closeFile())));
        await env.fs.remove(join(options.dir, ...cell.split('/')));
      } catch (err) {
        throw readFailed(`removing the logs of ${executable === undefined ? `cell ${cell}` : `${cell}/${executable}`}`, err);
      }
    },

    async flush() {
      await Promise.all([...writers.values()].map((w) => w.task(async () => {})));
    },
  };
}

interface WriterEnv {
  fs: LogFs;
  log: Logger;
  maxBytes: number;
  maxPendingBytes: number;
}

type Op = { kind: 'lines'; records: string[]; bytes: number } | { kind: 'task'; run: () => Promise<void> };

/** One executable's log file: a queue of line batches and tasks, done in order by one async loop. */
class LogWriter {
  refs = 0;
  private readonly ops: Op[] = [];
  private running = false;
  private file: LogFileHandle | null = null;
  private size = 0;
  private pendingBytes = 0;
  /** Set while lines are being dropped (reported once), with how many. */
  private dropping: { dropped: number } | null = null;

  constructor(
    readonly cell: CellPath,
    readonly executable: string,
    /** Current file first, then the rotated ones. */
    private readonly paths: string[],
    private readonly env: WriterEnv,
    private readonly onIdle: (writer: LogWriter) => void,
  ) {}

  append(record: string): void {
    const bytes = Buffer.byteLength(record);
    if (this.pendingBytes + bytes > this.env.maxPendingBytes) {
      this.drop(1, `more than ${this.env.maxPendingBytes} bytes are waiting for the disk`, 'LOG_BACKLOG');
      return;
    }
    this.pendingBytes += bytes;
    const last = this.ops[this.ops.length - 1];
    if (last?.kind === 'lines') {
      last.records.push(record);
      last.bytes += bytes;
    } else {
      this.ops.push({ kind: 'lines', records: [record], bytes });
    }
    this.kick();
  }

  /** Run `fn` after everything queued so far; its result or error is passed through. */
  task<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.ops.push({ kind: 'task', run: () => Promise.resolve().then(fn).then(resolve, reject) });
      this.kick();
    });
  }

  release(): void {
    this.refs--;
    // Nobody writes or reads any more: close the file (in order) and let the store forget this writer.
    if (this.refs === 0) void this.task(() => this.closeFile());
  }

  async closeFile(): Promise<void> {
    const file = this.file;
    this.file = null;
    this.size = 0;
    if (file) await file.close().catch(() => {});
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      for (let op = this.ops.shift(); op; op = this.ops.shift()) {
        if (op.kind === 'task') {
          await op.run();
        } else {
          this.pendingBytes -= op.bytes;
          await this.writeBatch(op.records);
        }
      }
    } finally {
      this.running = false;
      if (this.ops.length > 0) this.kick();
      else this.onIdle(this);
    }
  }

  /** Append `records` to the current file, rotating whenever the next record would pass maxBytes. */
  private async writeBatch(records: string[]): Promise<void> {
    let written = 0;
    try {
      if (!this.file) await this.openCurrent();
      let chunk = '';
      let chunkBytes = 0;
      let chunkCount = 0;
      for (const record of records) {
        const bytes = Buffer.byteLength(record);
        // A record larger than a whole file still goes into an empty one: better a big file than a lost line.
        if (this.size + chunkBytes + bytes > this.env.maxBytes && this.size + chunkBytes > 0) {
          if (chunk) {
            await this.file!.append(chunk);
            this.size += chunkBytes;
            written += chunkCount;
            chunk = '';
            chunkBytes = 0;
            chunkCount = 0;
          }
          await this.rotate();
        }
        chunk += record;
        chunkBytes += bytes;
        chunkCount++;
      }
      if (chunk) {
        await this.file!.append(chunk);
        this.size += chunkBytes;
        written += chunkCount;
      }
      if (this.dropping) {
        this.env.log.info('log writing resumed', { cell: this.cell, executable: this.executable, file: this.paths[0], dropped: this.dropping.dropped });
        this.dropping = null;
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      this.drop(records.length - written, `writing ${this.paths[0]} failed (${code}): is the state disk full or failing?`, code);
      // Reopen (and re-stat) next time: the file may be gone or half-written.
      await this.closeFile();
    }
  }

  private async openCurrent(): Promise<void> {
    const current = this.paths[0]!;
    await this.env.fs.mkdirp(dirname(current));
    this.file = await this.env.fs.openAppend(current);
    this.size = await this.file.size();
  }

  /** current → .1 → .2 …, the oldest falls off; with one file the current one is simply started over. */
  private async rotate(): Promise<void> {
    await this.closeFile();
    if (this.paths.length === 1) await this.env.fs.remove(this.paths[0]!);
    for (let i = this.paths.length - 1; i >= 1; i--) await this.env.fs.rename(this.paths[i - 1]!, this.paths[i]!);
    await this.openCurrent();
  }

  private drop(count: number, why: string, code: string): void {
    if (this.dropping) {
      this.dropping.dropped += count;
      return;
    }
    this.dropping = { dropped: count };
    this.env.log.warn(`logs of ${this.cell}/${this.executable}: ${why}; dropping lines until writing works again`, {
      cell: this.cell,
      executable: this.executable,
      code,
    });
  }
}
