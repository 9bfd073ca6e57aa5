// auraed's state: one SQLite database (better-sqlite3, WAL) shared by the subsystems, each owning its tables
// through its own ordered, versioned migrations. Synchronous by design: better-sqlite3 calls are short and a
// single writer (auraed) never waits on a lock held by itself.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { locateInstalled } from '../config/node-paths';

export type Db = Database.Database;

/** One schema step. Never edit a released migration: add the next version. */
export interface Migration {
  version: number;
  description: string;
  up(db: Db): void;
}

export class StoreError extends Error {
  constructor(
    readonly code: 'STORE_OPEN_FAILED' | 'STORE_MIGRATION_FAILED' | 'STORE_TOO_NEW',
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

let installedAddon: object | undefined;

/**
 * In the image the addon sits beside the bundle; from source better-sqlite3 finds its own build. Loaded with
 * process.dlopen and handed over as an object, not a path: auraed started from a V8 startup snapshot
 * (image/bundle/snapshot.ts) has no `require` for files, and a second dlopen of the same addon would fail.
 */
function nativeBinding(): object | undefined {
  if (installedAddon) return installedAddon;
  const found = locateInstalled('better_sqlite3.node', null).found;
  if (!found) return undefined;
  const mod: { exports: object } = { exports: {} };
  process.dlopen(mod, found);
  return (installedAddon = mod.exports);
}

/**
 * Open (creating when missing) the database at `file`, or an in-memory one for ':memory:' (tests).
 * WAL + synchronous=FULL: a committed change survives a power cut.
 */
export function openDatabase(file: string): Db {
  try {
    if (file !== ':memory:') {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      // The directory may already exist with a wider mode (the image's /var/lib/aurae, a fresh ext4 root):
      // executables' specs (env, args) are in the database, so no other uid may read it.
      fs.chmodSync(path.dirname(file), 0o700);
    }
    const binding = nativeBinding();
    // The typings say string; better-sqlite3 also takes the loaded addon object (its documented option).
    const db = new Database(file, binding ? { nativeBinding: binding as unknown as string } : {});
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      subsystem TEXT NOT NULL, version INTEGER NOT NULL, description TEXT NOT NULL, applied_at TEXT NOT NULL,
      PRIMARY KEY (subsystem, version))`);
    return db;
  } catch (err) {
    throw new StoreError('STORE_OPEN_FAILED', `opening the state database ${file} failed: ${(err as Error).message}: is the state directory writable?`);
  }
}

/** A staged write failed when its group was committed (the others were written). */
export type StagedWriteError = (err: unknown) => void;

/**
 * Group commit: the rows of one operation written in ONE transaction (one fsync of the WAL under
 * synchronous=FULL) instead of one each. A subsystem stages its rows; whoever answers the caller commits the
 * group, with its own rows, before the answer (CellService.Start: the executable's row and the call's audit row).
 * A later stage under the same key replaces the earlier one: only the newest state of a row is written.
 */
export interface WriteGroup {
  /** Stage `write` under `key` (nothing is written yet); `onError` hears if it fails when committed. */
  stage(key: string, write: () => void, onError: StagedWriteError): void;
  /** Drop the staged writes whose key starts with `prefix` (what they would write was deleted). */
  discard(prefix: string): void;
  /**
   * Write everything staged, then `also`, in one transaction: durable when this returns. A staged write that
   * fails is rolled back alone (a savepoint) and reported to its onError; the others are written. When `also`
   * (or the commit) fails, the staged writes are committed on their own and `also`'s error is thrown.
   */
  commit<T>(also?: () => T): T | undefined;
  /** How many writes are staged. */
  readonly pending: number;
}

interface Staged {
  write: () => void;
  onError: StagedWriteError;
}

const writeGroups = new WeakMap<Db, WriteGroup>();

/** The write group of `db` (one per database, so every subsystem's rows can share one commit). */
export function writeGroup(db: Db): WriteGroup {
  let group = writeGroups.get(db);
  if (!group) {
    group = createWriteGroup(db);
    writeGroups.set(db, group);
  }
  return group;
}

function createWriteGroup(db: Db): WriteGroup {
  let staged = new Map<string, Staged>();
  /** Each staged write in its own savepoint (a nested better-sqlite3 transaction); returns the ones that failed. */
  const writeEach = (batch: Staged[]): [Staged, unknown][] => {
    const failed: [Staged, unknown][] = [];
    for (const s of batch) {
      try {
        db.transaction(s.write)();
      } catch (err) {
        failed.push([s, err]);
      }
    }
    return failed;
  };
  const report = (failed: [Staged, unknown][]) => {
    for (const [s, err] of failed) s.onError(err);
  };
  return {
    stage(key, write, onError) {
      // Delete first: a re-staged row moves to the end, so rows are written in the order of their last change.
      staged.delete(key);
      staged.set(key, { write, onError });
    },
    discard(prefix) {
      for (const key of [...staged.keys()]) if (key.startsWith(prefix)) staged.delete(key);
    },
    commit<T>(also?: () => T): T | undefined {
      const batch = [...staged.values()];
      if (batch.length === 0 && !also) return undefined;
      staged = new Map();
      let failed: [Staged, unknown][] = [];
      try {
        const result = db.transaction(() => {
          failed = writeEach(batch);
          return also?.();
        })();
        report(failed);
        return result;
      } catch (err) {
        if (!also || batch.length === 0) {
          report(batch.map((s) => [s, err]));
          throw err;
        }
        // The caller's own rows failed: the staged ones still go in, by themselves.
        try {
          report(db.transaction(() => writeEach(batch))());
        } catch (again) {
          report(batch.map((s) => [s, again]));
        }
        throw err;
      }
    },
    get pending() {
      return staged.size;
    },
  };
}

/** SQLite's integrity_check: ['ok'] when the database is intact, else its findings (at most 20). */
export function integrityCheck(db: Db): string[] {
  return (db.pragma('integrity_check(20)') as { integrity_check: string }[]).map((r) => r.integrity_check);
}

/**
 * Apply `subsystem`'s migrations newer than what the database has, each in its own transaction, in order.
 * Refuses a database migrated by a newer auraed (downgrade) rather than guessing.
 */
export function migrate(db: Db, subsystem: string, migrations: readonly Migration[], now = () => new Date()): number[] {
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  sorted.forEach((m, i) => {
    if (m.version !== i + 1) throw new StoreError('STORE_MIGRATION_FAILED', `${subsystem}: migrations must be numbered 1, 2, 3…; found ${m.version} at position ${i + 1}`);
  });
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations WHERE subsystem = ?').get(subsystem) as { v: number | null };
  const current = row.v ?? 0;
  if (current > sorted.length) {
    throw new StoreError('STORE_TOO_NEW', `${subsystem}: the state database is at schema version ${current} but this auraed knows only ${sorted.length}: run a newer auraed or move the database away`);
  }
  const applied: number[] = [];
  for (const m of sorted.slice(current)) {
    const step = db.transaction(() => {
      m.up(db);
      db.prepare('INSERT INTO schema_migrations (subsystem, version, description, applied_at) VALUES (?, ?, ?, ?)').run(subsystem, m.version, m.description, now().toISOString());
    });
    try {
      step();
    } catch (err) {
      throw new StoreError('STORE_MIGRATION_FAILED', `${subsystem}: migration ${m.version} (${m.description}) failed: ${(err as Error).message}`);
    }
    applied.push(m.version);
  }
  return applied;
}
