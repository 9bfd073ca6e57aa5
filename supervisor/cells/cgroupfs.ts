// The cgroup filesystem as an adapter: the real one is node:fs on /sys/fs/cgroup (or any root, e.g. a temp dir
// in tests); unit tests of the executor use an in-memory fake that behaves like the kernel where it matters.
// Errors keep Node's errno code (err.code === 'ENOENT', 'EBUSY', 'EINVAL'…).
import fs from 'node:fs';
import path from 'node:path';

export interface CgroupFs {
  read(file: string): string;
  /** Write to an existing control file (never creates one: cgroupfs has a fixed set). */
  write(file: string, value: string): void;
  mkdir(dir: string): void;
  rmdir(dir: string): void;
  exists(p: string): boolean;
  /** Names of the child directories of `dir` ([] when it does not exist). */
  subdirs(dir: string): string[];
  /** Call `listener` when `file` changes (inotify); returns a function that stops watching. */
  watch(file: string, listener: () => void): () => void;
}

export const nodeCgroupFs: CgroupFs = {
  read: (file) => fs.readFileSync(file, 'utf8'),
  write(file, value) {
    // O_WRONLY without O_CREAT: a missing control file is an error (ENOENT), not a new regular file; and no
    // O_RDWR, which write-only files such as cgroup.kill refuse.
    const fd = fs.openSync(file, fs.constants.O_WRONLY);
    try {
      fs.writeSync(fd, value);
    } finally {
      fs.closeSync(fd);
    }
  },
  mkdir: (dir) => fs.mkdirSync(dir, { mode: 0o755 }),
  rmdir: (dir) => fs.rmdirSync(dir),
  exists: (p) => fs.existsSync(p),
  subdirs(dir) {
    try {
      return fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  },
  watch(file, listener) {
    let watcher: fs.FSWatcher | null = null;
    try {
      watcher = fs.watch(file, { persistent: false }, () => listener());
      // The file disappears with its cgroup; that ends the watch, nothing more.
      watcher.on('error', () => watcher?.close());
    } catch {
      // No inotify on this file: the runner also checks at exit.
    }
    return () => watcher?.close();
  },
};

export function join(...parts: string[]): string {
  return path.posix.join(...parts);
}
