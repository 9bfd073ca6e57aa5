// Per-cell metrics straight from the cgroup tree (supervisor/cgroup's layout: cell "a/b" is <tree>/a/b, its
// executables the leaves <tree>/a/b/exe.<name>). The tree is read at call time; nothing is cached or sampled.
import {
  CELL_TREE_DIR,
  type CgroupFs,
  type CgroupMetrics,
  CgroupReadError,
  cellDir,
  cgroupMetrics,
  executableOfLeaf,
  isGone,
  join,
  nodeCgroupFs,
  readStatFiles,
} from '../cgroup';
import { AuraeError } from '../errors';
import { CELL_MAX_DEPTH, cellPathProblem } from './names';

/** Rows (cells plus executables) one GetMetrics answers at most. */
export const MAX_METRICS_ROWS = 4096;

/** What the reader needs of the cgroup filesystem. */
export type MetricsFs = Pick<CgroupFs, 'read' | 'exists' | 'subdirs'>;

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
  /** Cgroup of the cell tree; default CELL_TREE_DIR (/sys/fs/cgroup/aurae). */
  root?: string;
  fs?: MetricsFs;
  clock?: () => number;
}

export type MetricsReader = (cell: string | null) => Promise<MetricsSnapshot>;

/**
 * A reader for `cell`'s subtree, or every cell for null. Precondition: `cell` is a validated cell path.
 * NOT_FOUND when the cell has no cgroup; with null and no cell tree yet, an empty snapshot.
 */
export function createMetricsReader(options: MetricsReaderOptions = {}): MetricsReader {
  const root = options.root ?? CELL_TREE_DIR;
  const fs = options.fs ?? nodeCgroupFs;
  const clock = options.clock ?? Date.now;

  const failed = (what: string, err: unknown) =>
    new AuraeError('UNAVAILABLE', `reading ${what} failed (${(err as NodeJS.ErrnoException).code ?? 'error'}): is cgroup2 mounted at ${root}?`, { cause: err });

  const readGroup = (dir: string): CgroupMetrics => {
    try {
      return cgroupMetrics(readStatFiles(fs, dir));
    } catch (err) {
      if (err instanceof CgroupReadError) throw failed(err.file, err.cause);
      throw err;
    }
  };

  /** Names of the subdirectories, or null when `dir` does not exist. */
  const list = (dir: string): string[] | null => {
    try {
      return fs.exists(dir) ? fs.subdirs(dir) : null;
    } catch (err) {
      if (isGone(err)) return null;
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
    const walk = (path: string, children: string[]): void => {
      const dir = cellDir(root, path);
      add({ cell: path, executable: null, metrics: readGroup(dir) });
      const sorted = [...children].sort();
      for (const name of sorted) {
        const executable = executableOfLeaf(name);
        if (executable === null) continue;
        add({ cell: path, executable, metrics: readGroup(join(dir, name)) });
      }
      if (path.split('/').length >= CELL_MAX_DEPTH) return;
      walkChildren(path, sorted);
    };
    const walkChildren = (parent: string | null, names: string[]): void => {
      for (const name of names) {
        const child = parent === null ? name : `${parent}/${name}`;
        if (executableOfLeaf(name) !== null || cellPathProblem(child)) continue; // not a cell (stray or foreign)
        const grandChildren = list(cellDir(root, child));
        if (grandChildren !== null) walk(child, grandChildren); // null: freed while we looked
      }
    };

    if (cell === null) {
      const top = list(root);
      if (top !== null) walkChildren(null, [...top].sort());
    } else {
      const children = list(cellDir(root, cell));
      if (children === null) throw new AuraeError('NOT_FOUND', `cell "${cell}" not found (no cgroup at ${join(root, cell)}): see aer cell list`);
      walk(cell, children);
    }
    return { timestamp, cells: rows };
  };
}
