// Persistent state of cells and executables (SQLite through supervisor/store): the cell specs, and for each
// executable its desired spec, desired state, last known state, restart counter and last exit. What reconcile
// reads when auraed starts.
import type { ExecutableSpec, ExecutableState, RecordedExit } from '../executables';
import { type Db, type Migration, migrate, type StagedWriteError, writeGroup } from '../store';
import type { CellSpec } from './spec';

export const CELLS_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'cells and executables',
    up(db) {
      db.exec(`
        CREATE TABLE cells (
          name TEXT PRIMARY KEY,
          parent TEXT REFERENCES cells(name),
          spec TEXT NOT NULL,
          created_at TEXT NOT NULL
        );
        CREATE TABLE executables (
          cell TEXT NOT NULL REFERENCES cells(name) ON DELETE CASCADE,
          name TEXT NOT NULL,
          spec TEXT NOT NULL,
          desired TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
          state TEXT NOT NULL,
          restarts INTEGER NOT NULL DEFAULT 0,
          last_exit TEXT,
          updated_at TEXT NOT NULL,
          PRIMARY KEY (cell, name)
        );
      `);
    },
  },
];

export interface StoredCell {
  spec: CellSpec;
  createdAt: string;
}

export interface StoredExecutable {
  cell: string;
  spec: ExecutableSpec;
  desiredRunning: boolean;
  state: ExecutableState;
  restarts: number;
  lastExit: RecordedExit | null;
}

/** The store the cell runtime writes through. An interface so the service tests can keep it in memory. */
export interface CellStore {
  cells(): StoredCell[];
  executables(): StoredExecutable[];
  insertCell(spec: CellSpec): void;
  /** Delete a cell and its executables (children must be deleted first). */
  deleteCell(name: string): void;
  putExecutable(e: StoredExecutable): void;
  /**
   * Stage an executable's row: written by the next commit (this store's, or the database's write group's, e.g.
   * with the audit row of the call that changed it). The newest staged row of an executable wins.
   */
  stageExecutable(e: StoredExecutable, onError: StagedWriteError): void;
  /** Write every staged row now, in one transaction (one fsync). */
  commit(): void;
  deleteExecutable(cell: string, name: string): void;
}

/** The write-group key of an executable's row; a cell's rows share the prefix stagedKey(cell, ''). */
function stagedKey(cell: string, name: string): string {
  return `cells.executables\u0000${cell}\u0000${name}`;
}

interface CellRow {
  name: string;
  spec: string;
  created_at: string;
}

interface ExecutableRow {
  cell: string;
  name: string;
  spec: string;
  desired: 'running' | 'stopped';
  state: ExecutableState;
  restarts: number;
  last_exit: string | null;
}

/** The SQLite store; runs the cells migrations on `db` first. */
export function sqliteCellStore(db: Db, now: () => Date = () => new Date()): CellStore {
  migrate(db, 'cells', CELLS_MIGRATIONS);
  const q = {
    cells: db.prepare('SELECT name, spec, created_at FROM cells ORDER BY name'),
    executables: db.prepare('SELECT cell, name, spec, desired, state, restarts, last_exit FROM executables ORDER BY cell, name'),
    insertCell: db.prepare('INSERT INTO cells (name, parent, spec, created_at) VALUES (?, ?, ?, ?)'),
    deleteCell: db.prepare('DELETE FROM cells WHERE name = ?'),
    putExecutable: db.prepare(`INSERT INTO executables (cell, name, spec, desired, state, restarts, last_exit, updated_at)
      VALUES (@cell, @name, @spec, @desired, @state, @restarts, @last_exit, @updated_at)
      ON CONFLICT (cell, name) DO UPDATE SET spec = excluded.spec, desired = excluded.desired, state = excluded.state,
        restarts = excluded.restarts, last_exit = excluded.last_exit, updated_at = excluded.updated_at`),
    deleteExecutable: db.prepare('DELETE FROM executables WHERE cell = ? AND name = ?'),
  };
  const group = writeGroup(db);
  const row = (e: StoredExecutable) => ({
    cell: e.cell,
    name: e.spec.name,
    spec: JSON.stringify(e.spec),
    desired: e.desiredRunning ? 'running' : 'stopped',
    state: e.state,
    restarts: e.restarts,
    last_exit: e.lastExit === null ? null : JSON.stringify(e.lastExit),
    updated_at: now().toISOString(),
  });
  return {
    cells: () => (q.cells.all() as CellRow[]).map((r) => ({ spec: JSON.parse(r.spec) as CellSpec, createdAt: r.created_at })),
    executables: () =>
      (q.executables.all() as ExecutableRow[]).map((r) => ({
        cell: r.cell,
        spec: JSON.parse(r.spec) as ExecutableSpec,
        desiredRunning: r.desired === 'running',
        state: r.state,
        restarts: r.restarts,
        lastExit: r.last_exit === null ? null : (JSON.parse(r.last_exit) as RecordedExit),
      })),
    insertCell(spec) {
      const slash = spec.name.lastIndexOf('/');
      q.insertCell.run(spec.name, slash < 0 ? null : spec.name.slice(0, slash), JSON.stringify(spec), now().toISOString());
    },
    deleteCell(name) {
      // Its executables' staged rows would now violate the foreign key: they are gone with the cell.
      group.discard(stagedKey(name, ''));
      q.deleteCell.run(name);
    },
    putExecutable: (e) => void q.putExecutable.run(row(e)),
    stageExecutable(e, onError) {
      // The row is taken now (updated_at is when it changed), written at the commit.
      const values = row(e);
      group.stage(stagedKey(e.cell, e.spec.name), () => void q.putExecutable.run(values), onError);
    },
    commit: () => void group.commit(),
    deleteExecutable(cell, name) {
      group.discard(stagedKey(cell, name));
      q.deleteExecutable.run(cell, name);
    },
  };
}

/** A store that keeps nothing across restarts (tests, and auraed without a state directory). */
export function memoryCellStore(): CellStore {
  const cells = new Map<string, StoredCell>();
  const exes = new Map<string, StoredExecutable>();
  const staged = new Map<string, StoredExecutable>();
  const key = (cell: string, name: string) => `${cell}\u0000${name}`;
  return {
    cells: () => [...cells.values()].sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1)),
    executables: () => [...exes.values()],
    insertCell(spec) {
      if (cells.has(spec.name)) throw new Error(`UNIQUE constraint failed: cells.name (${spec.name})`);
      cells.set(spec.name, { spec, createdAt: new Date().toISOString() });
    },
    deleteCell(name) {
      cells.delete(name);
      for (const [k, e] of exes) if (e.cell === name) exes.delete(k);
      for (const [k, e] of staged) if (e.cell === name) staged.delete(k);
    },
    putExecutable: (e) => void exes.set(key(e.cell, e.spec.name), structuredClone(e)),
    stageExecutable: (e) => void staged.set(key(e.cell, e.spec.name), structuredClone(e)),
    commit() {
      for (const [k, e] of staged) exes.set(k, e);
      staged.clear();
    },
    deleteExecutable(cell, name) {
      exes.delete(key(cell, name));
      staged.delete(key(cell, name));
    },
  };
}
