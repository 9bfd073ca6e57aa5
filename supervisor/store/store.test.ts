import { describe, expect, it } from 'vitest';
import { migrate, openDatabase, StoreError, type Migration } from './index';

const migrations: Migration[] = [
  { version: 1, description: 'cells', up: (db) => db.exec('CREATE TABLE cells (name TEXT PRIMARY KEY)') },
  { version: 2, description: 'cell limits', up: (db) => db.exec('ALTER TABLE cells ADD COLUMN spec TEXT') },
];

describe('store', () => {
  it('applies migrations once, in order, per subsystem', () => {
    const db = openDatabase(':memory:');
    expect(migrate(db, 'cells', migrations)).toEqual([1, 2]);
    expect(migrate(db, 'cells', migrations)).toEqual([]);
    expect(migrate(db, 'audit', [{ version: 1, description: 'audit', up: (d) => d.exec('CREATE TABLE audit (id INTEGER)') }])).toEqual([1]);
    db.prepare('INSERT INTO cells (name, spec) VALUES (?, ?)').run('web', '{}');
    expect(db.prepare('SELECT COUNT(*) AS n FROM cells').get()).toEqual({ n: 1 });
  });

  it('rolls a failed migration back and names it', () => {
    const db = openDatabase(':memory:');
    const bad: Migration[] = [
      migrations[0]!,
      { version: 2, description: 'broken', up: (d) => d.exec('ALTER TABLE nope ADD COLUMN x TEXT') },
    ];
    expect(() => migrate(db, 'cells', bad)).toThrow(/cells: migration 2 \(broken\) failed/);
    // Version 1 stays applied; version 2 left nothing behind.
    expect(migrate(db, 'cells', migrations)).toEqual([2]);
  });

  it('refuses a database from a newer auraed and misnumbered migrations', () => {
    const db = openDatabase(':memory:');
    migrate(db, 'cells', migrations);
    expect(() => migrate(db, 'cells', migrations.slice(0, 1))).toThrow(StoreError);
    expect(() => migrate(db, 'x', [{ ...migrations[0]!, version: 2 }])).toThrow(/numbered 1, 2, 3/);
  });
});
