// The cgroup filesystem as an adapter: the real one is node:fs on /sys/fs/cgroup (or any root, e.g. a temp dir
// in tests); unit tests use the in-memory FakeCgroupFs (testing.ts) that behaves like the kernel where it
// matters. Errors keep Node's errno code (err.code === 'ENOENT', 'EBUSY', 'EINVAL'…). The only code in auraed
// and init that opens a file under the cgroup mount is nodeCgroupFs.
import fs from 'node:fs';
import { join } from './layout';

export interface CgroupFs {
  read(file: string): string;
  /** Write to an existing control file (never creates one: cgroupfs has a fixed set). */
  write(file: string, value: string): void;
  mkdir(dir: string): void;
  rmdir(dir: string): void;
  exists(p: string): boolean;
  /** Names of the child directories of `dir`, sorted ([] when it does not exist). */
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
      if (errnoCode(err) === 'ENOENT') return [];
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

/** The errno code of a failed fs call ("error" when it has none). */
export function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? 'error';
}

/** Did the call fail because the file or cgroup is not there (never was, removed, controller off)? */
export function isGone(err: unknown): boolean {
  return ['ENOENT', 'ENODEV', 'ENOTDIR'].includes(errnoCode(err));
}

/** Is a cgroup2 hierarchy mounted at `root`? */
export function isCgroup2(fs: Pick<CgroupFs, 'exists'>, root: string): boolean {
  return fs.exists(join(root, 'cgroup.controllers'));
}

/** mkdir that accepts an existing directory (EEXIST). */
export function ensureDir(fs: Pick<CgroupFs, 'mkdir'>, dir: string): void {
  try {
    fs.mkdir(dir);
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
  }
}
