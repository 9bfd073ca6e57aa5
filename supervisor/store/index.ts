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

/** In the image the addon sits beside the bundle; from source better-sqlite3 finds its own build. */
function nativeBinding(): string | undefined {
  return locateInstalled('better_sqlite3.node', null).found ?? undefined;
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
    const db = new Database(file, binding ? { nativeBinding: binding } : {});
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
