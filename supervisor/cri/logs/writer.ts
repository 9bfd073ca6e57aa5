// One container's CRI log file (<log_directory>/<log_path>): records appended in the CRI format. kubelet rotates
// the file itself — it renames it, then calls ReopenContainerLog — so reopen() closes the descriptor (the renamed
// file keeps what was written) and opens the path again. Nothing here throws into the caller: an output line must
// never break the executable it comes from, nor auraed. Records of one event-loop turn are written together by
// one synchronous append (a pipe's chunk of many short lines costs one write, not one per line); at most
// MAX_PENDING_BYTES wait, beyond that they are written at once, so memory per container stays bounded.
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { AuraeError } from '../../errors';
import type { Logger } from '../../log';
import type { LogStream } from '../../observe/types';
import { createWallClockNs, criLogLine } from './format';

/** Records held before a synchronous write (per container). */
export const MAX_PENDING_BYTES = 64 * 1024;
/** After a failed write or open, the next attempt waits this long (reopen() tries at once). */
export const RETRY_AFTER_MS = 1000;

/** The file operations, an adapter so tests can fail them. Synchronous: a record is on disk when flush() returns. */
export interface ContainerLogFs {
  mkdirp(dir: string, mode: number): void;
  /** Open for appending, creating the file with `mode`; returns a descriptor. */
  openAppend(path: string, mode: number): number;
  write(fd: number, data: string): void;
  close(fd: number): void;
}

export const nodeContainerLogFs: ContainerLogFs = {
  mkdirp: (dir, mode) => void mkdirSync(dir, { recursive: true, mode }),
  openAppend: (path, mode) => openSync(path, 'a', mode),
  write(fd, data) {
    const buf = Buffer.from(data, 'utf8');
    // writeSync may write less than asked (a signal, a nearly full disk): finish or throw.
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
  },
  close: (fd) => closeSync(fd),
};

export interface ContainerLogOptions {
  log: Logger;
  fs?: ContainerLogFs;
  /** Nanoseconds since the epoch for each record; default a wall clock with nanoseconds. */
  clock?: () => bigint;
  /** Milliseconds, for the retry pacing; default Date.now. */
  now?: () => number;
  /** How queued records get written after the current turn; default setImmediate. Tests may call flush(). */
  schedule?: (fn: () => void) => void;
}

export interface ContainerLog {
  readonly path: string;
  /** Append one record (a piece of a line; `partial` when the next record of `stream` continues it). Never throws. */
  write(stream: LogStream, text: string, partial: boolean): void;
  /**
   * Write what is queued to the current file, close it, open the path again (creating missing directories).
   * Returns null when the file is open again, else what failed (the writer keeps trying at later writes).
   */
  reopen(): string | null;
  /** Write what is queued, close the file; later writes are ignored. Idempotent. */
  close(): void;
  /** Write what is queued now (tests, shutdown). */
  flush(): void;
}

/** Directories the writer creates (kubelet's own are 0755 too), and the log file's mode. */
const DIR_MODE = 0o755;
const FILE_MODE = 0o640;

/** Open `path`'s writer. Precondition: `path` is absolute (containerLogPath validates kubelet's fields). */
export function openContainerLog(path: string, options: ContainerLogOptions): ContainerLog {
  if (!isAbsolute(path)) throw new Error(`container log path "${path}" is not absolute: a bug in the caller`);
  const fs = options.fs ?? nodeContainerLogFs;
  const clock = options.clock ?? createWallClockNs();
  const now = options.now ?? Date.now;
  const schedule = options.schedule ?? ((fn: () => void) => void setImmediate(fn));
  const log = options.log;

  let fd: number | null = null;
  let closed = false;
  let pending: string[] = [];
  let pendingBytes = 0;
  let scheduled = false;
  /** While writing fails: since when to retry, and how many records were dropped (reported once per episode). */
  let failure: { retryAt: number; dropped: number } | null = null;

  const describe = (err: unknown) => `${(err as NodeJS.ErrnoException).code ?? 'error'}: ${(err as Error).message ?? String(err)}`;

  const fail = (what: string, err: unknown, dropped: number) => {
    if (fd !== null) {
      try {
        fs.close(fd);
      } catch {
        // already unusable
      }
      fd = null;
    }
    if (failure) {
      failure.dropped += dropped;
      failure.retryAt = now() + RETRY_AFTER_MS;
      return;
    }
    failure = { retryAt: now() + RETRY_AFTER_MS, dropped };
    log.warn(`container log ${path}: ${what} failed (${describe(err)}); dropping records until it works again (retried every ${RETRY_AFTER_MS} ms and at ReopenContainerLog)`, {
      path,
      code: (err as NodeJS.ErrnoException).code,
    });
  };

  const open = (): string | null => {
    try {
      fs.mkdirp(dirname(path), DIR_MODE);
      fd = fs.openAppend(path, FILE_MODE);
      return null;
    } catch (err) {
      fail('opening', err, 0);
      return `opening ${path} failed (${describe(err)})`;
    }
  };

  const flush = () => {
    if (pending.length === 0) return;
    const records = pending;
    pending = [];
    pendingBytes = 0;
    if (fd === null) {
      if (failure && now() < failure.retryAt) {
        failure.dropped += records.length;
        return;
      }
      if (open() !== null) {
        failure!.dropped += records.length;
        return;
      }
    }
    try {
      fs.write(fd!, records.join(''));
    } catch (err) {
      fail('writing', err, records.length);
      return;
    }
    if (failure) {
      log.info(`container log ${path}: writing works again`, { path, dropped: failure.dropped });
      failure = null;
    }
  };

  const closeFile = () => {
    if (fd === null) return;
    try {
      fs.close(fd);
    } catch {
      // nothing to do: the records were written (or reported) already
    }
    fd = null;
  };

  open();

  return {
    path,
    write(stream, text, partial) {
      if (closed) return;
      let record: string;
      try {
        record = criLogLine(clock(), stream, partial, text);
      } catch (err) {
        log.error(`container log ${path}: formatting a record failed`, { path, err });
        return;
      }
      pending.push(record);
      // Bytes of a string are at most 3 per UTF-16 unit: a cheap bound instead of Buffer.byteLength per record.
      pendingBytes += record.length * 3;
      if (pendingBytes >= MAX_PENDING_BYTES) {
        flush();
      } else if (!scheduled) {
        scheduled = true;
        schedule(() => {
          scheduled = false;
          flush();
        });
      }
    },
    reopen() {
      if (closed) return `container log ${path} is closed`;
      // What was queued before the rename belongs to the renamed file.
      if (fd !== null) flush();
      closeFile();
      // An explicit reopen tries at once, and a failure now is reported again.
      const was = failure;
      failure = null;
      const problem = open();
      if (problem === null && was) log.info(`container log ${path}: writing works again`, { path, dropped: was.dropped });
      flush();
      return problem;
    },
    close() {
      if (closed) return;
      flush();
      closed = true;
      closeFile();
    },
    flush,
  };
}

/**
 * The log file of a container from kubelet's fields, or null when log_path is empty (kubelet then wants no log
 * file, as containerd does). INVALID_ARGUMENT naming the field when log_directory is not absolute.
 */
export function containerLogPath(logDirectory: string, logPath: string): string | null {
  if (logPath === '') return null;
  if (logDirectory === '' || !isAbsolute(logDirectory)) {
    throw new AuraeError('INVALID_ARGUMENT', `log_directory: "${logDirectory}" must be an absolute path when log_path is set (kubelet sends /var/log/pods/<namespace>_<name>_<uid>)`);
  }
  if (logPath.includes('\0') || logDirectory.includes('\0')) throw new AuraeError('INVALID_ARGUMENT', 'log_path: must not contain a NUL byte');
  const dir = normalize(logDirectory).replace(/\/+$/, '');
  const full = join(dir, logPath);
  if (!full.startsWith(`${dir}/`) || full.endsWith('/')) {
    throw new AuraeError('INVALID_ARGUMENT', `log_path: "${logPath}" must name a file inside log_directory ${logDirectory} (e.g. <container>/<attempt>.log)`);
  }
  return full;
}
