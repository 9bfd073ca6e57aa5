// Per-cell metrics straight from the cgroup tree: cell "a/b" is <root>/a/b, its executables are the leaves
// <root>/a/b/exe.<name> (the shared layout). The tree is read at call time; nothing is cached or sampled here.
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AuraeError } from '../errors';
import { CGROUP_METRIC_FILES, type CgroupFiles, type CgroupMetrics, cgroupMetrics } from './cgroup-stats';
import { CELL_MAX_DEPTH, cellPathProblem } from './names';

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup/aurae';
/** Rows (cells plus executables) one GetMetrics answers at most. */
export const MAX_METRICS_ROWS = 4096;
const EXE_PREFIX = 'exe.';

export interface CgroupFs {
  /** The file's text, or null when it does not exist (controller not enabled, cgroup just removed). */
  readText(path: string): Promise<string | null>;
  /** Names of the subdirectories, or null when `path` does not exist. */
  listDirs(path: string): Promise<string[] | null>;
}

const gone = (err: unknown) => ['ENOENT', 'ENODEV', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

export const nodeCgroupFs: CgroupFs = {
  async readText(path) {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if (gone(err)) return null;
      throw err;
    }
  },
  async listDirs(path) {
    try {
      return (await readdir(path, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch (err) {
      if (gone(err)) return null;
      throw err;
    }
  },
};

export interface CellMetricsRow {
  cell: string;
  /** null for the cell as a whole. */
  executable: string | null;
  metrics: CgroupMetrics;
}

export interface MetricsSnapshot {
  /** When the files were read, ms since the Unix epoch. */
  timestamp: number;
  /** Tree order: each cell, then its executables, then its child cells. */
  cells: CellMetricsRow[];
}

export interface MetricsReaderOptions {
  /** Cgroup of the cell tree; default /sys/fs/cgroup/aurae. */
  root?: string;
  fs?: CgroupFs;
  clock?: () => number;
}

export type MetricsReader = (cell: string | null) => Promise<MetricsSnapshot>;

/**
 * A reader for `cell`'s subtree, or every cell for null. Precondition: `cell` is a validated cell path.
 * NOT_FOUND when the cell has no cgroup; with null and no cell tree yet, an empty snapshot.
 */
export function createMetricsReader(options: MetricsReaderOptions = {}): MetricsReader {
  const root = options.root ?? DEFAULT_CGROUP_ROOT;
  const fs = options.fs ?? nodeCgroupFs;
  const clock = options.clock ?? Date.now;

  const failed = (what: string, err: unknown) =>
    new AuraeError('UNAVAILABLE', `reading ${what} failed (${(err as NodeJS.ErrnoException).code ?? 'error'}): is cgroup2 mounted at ${root}?`, { cause: err });

  const readGroup = async (dir: string): Promise<CgroupMetrics> => {
    const files: CgroupFiles = {};
    await Promise.all(
      CGROUP_METRIC_FILES.map(async (name) => {
        let text: string | null;
        try {
          text = await fs.readText(join(dir, name));
        } catch (err) {
          throw failed(join(dir, name), err);
        }
        if (text !== null) files[name] = text;
      }),
    );
    return cgroupMetrics(files);
  };

  const list = async (dir: string) => {
    try {
      return await fs.listDirs(dir);
    } catch (err) {
      throw failed(dir, err);
    }
  };

  return async (cell) => {
    const timestamp = clock();
    const rows: CellMetricsRow[] = [];
    const add = (row: CellMetricsRow) => {
      if (rows.length >= MAX_METRICS_ROWS) {
        throw new AuraeError('RESOURCE_EXHAUSTED', `more than ${MAX_METRICS_ROWS} cells and executables: ask for one cell's subtree`);
      }
      rows.push(row);
    };

    /** `path`'s row, its executables' rows, then its child cells'; `children` is the listing of its dir. */
    const walk = async (path: string, children: string[]): Promise<void> => {
      const dir = join(root, ...path.split('/'));
      add({ cell: path, executable: null, metrics: await readGroup(dir) });
      const sorted = [...children].sort();
      for (const name of sorted) {
        if (!name.startsWith(EXE_PREFIX)) continue;
        const executable = name.slice(EXE_PREFIX.length);
        add({ cell: path, executable, metrics: await readGroup(join(dir, name)) });
      }
      if (path.split('/').length >= CELL_MAX_DEPTH) return;
      await walkChildren(path, sorted);
    };
    const walkChildren = async (parent: string | null, names: string[]) => {
      for (const name of names) {
        const child = parent === null ? name : `${parent}/${name}`;
        if (name.startsWith(EXE_PREFIX) || cellPathProblem(child)) continue; // not a cell (stray or foreign)
        const grandChildren = await list(join(root, ...child.split('/')));
        if (grandChildren !== null) await walk(child, grandChildren); // null: freed while we looked
      }
    };

    if (cell === null) {
      const top = await list(root);
      if (top !== null) await walkChildren(null, [...top].sort());
    } else {
      const children = await list(join(root, ...cell.split('/')));
      if (children === null) throw new AuraeError('NOT_FOUND', `cell "${cell}" not found (no cgroup at ${join(root, cell)}): see aer cell list`);
      await walk(cell, children);
    }
    return { timestamp, cells: rows };
  };
}
