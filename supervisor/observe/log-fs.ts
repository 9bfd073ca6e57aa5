// The filesystem operations the log store needs, behind an adapter: the default is node:fs/promises; unit
// tests inject failures (ENOSPC, EIO) to prove a failing disk never takes auraed down.
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';

/** An open log file, appending. */
export interface LogFileHandle {
  /** Current size in bytes. */
  size(): Promise<number>;
  /** Append all of `data` (a failure may leave part of it written). */
  append(data: string): Promise<void>;
  close(): Promise<void>;
}

export interface LogFs {
  mkdirp(dir: string): Promise<void>;
  /** Open for appending, creating the file when missing. */
  openAppend(path: string): Promise<LogFileHandle>;
  /** Rename; a missing source is not an error (returns false). */
  rename(from: string, to: string): Promise<boolean>;
  /** The whole file as UTF-8, or null when it does not exist. */
  readText(path: string): Promise<string | null>;
  /** Remove a file or a directory tree; missing is not an error. */
  remove(path: string): Promise<void>;
}

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

export const nodeLogFs: LogFs = {
  mkdirp: async (dir) => void (await mkdir(dir, { recursive: true, mode: 0o750 })),
  async openAppend(path) {
    const handle = await open(path, 'a', 0o640);
    return {
      size: async () => (await handle.stat()).size,
      // writeFile on a handle loops until every byte is written; O_APPEND puts them at the end.
      append: (data) => handle.writeFile(data, 'utf8'),
      close: () => handle.close(),
    };
  },
  async rename(from, to) {
    try {
      await rename(from, to);
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  },
  async readText(path) {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  },
  remove: (path) => rm(path, { recursive: true, force: true }),
};
