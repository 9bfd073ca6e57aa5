import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Db, migrate, openDatabase, StoreError, type Migration, writeGroup } from './index';
import { walCommits } from './testing';

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

describe('write group (one commit for one operation)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  /** A file database whose WAL is never checkpointed, so walCommits counts every commit since it was opened. */
  function fileDb(): { db: Db; file: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-store-'));
    dirs.push(dir);
    const file = path.join(dir, 'state', 'aurae.db');
    const db = openDatabase(file);
    db.pragma('wal_autocheckpoint = 0');
    db.exec('CREATE TABLE rows (k TEXT PRIMARY KEY, v TEXT NOT NULL); CREATE TABLE audit (what TEXT NOT NULL)');
    return { db, file };
  }
  const put = (db: Db, k: string, v: string) => () => void db.prepare('INSERT INTO rows (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v').run(k, v);
  const rows = (db: Db) => db.prepare('SELECT k, v FROM rows ORDER BY k').all();

  it('writes the staged rows and the committer\'s own row in one transaction: one commit frame, one fsync', () => {
    const { db, file } = fileDb();
    const before = walCommits(file);
    const group = writeGroup(db);
    const errors: unknown[] = [];
    group.stage('rows/a', put(db, 'a', 'starting'), (e) => errors.push(e));
    group.stage('rows/a', put(db, 'a', 'running'), (e) => errors.push(e)); // replaces the first
    group.stage('rows/b', put(db, 'b', 'running'), (e) => errors.push(e));
    expect(group.pending).toBe(2);
    expect(walCommits(file)).toBe(before); // nothing written yet
    expect(group.commit(() => db.prepare("INSERT INTO audit (what) VALUES ('Start')").run().changes)).toBe(1);
    expect(walCommits(file) - before).toBe(1);
    expect(rows(db)).toEqual([{ k: 'a', v: 'running' }, { k: 'b', v: 'running' }]);
    expect(db.prepare('SELECT COUNT(*) AS n FROM audit').get()).toEqual({ n: 1 });
    expect(group.pending).toBe(0);
    expect(errors).toEqual([]);
    // Nothing staged and nothing to add: no transaction at all.
    group.commit();
    expect(walCommits(file) - before).toBe(1);
    expect(writeGroup(db)).toBe(group);
  });

  it('a failing staged write is rolled back alone and reported; the rest of the group is written', () => {
    const { db } = fileDb();
    const group = writeGroup(db);
    const errors: string[] = [];
    group.stage('rows/a', put(db, 'a', '1'), (e) => errors.push(`a: ${(e as Error).message}`));
    group.stage('rows/bad', () => {
      put(db, 'half', 'written')();
      db.prepare('INSERT INTO nope VALUES (1)').run();
    }, (e) => errors.push(`bad: ${(e as Error).message}`));
    group.commit(() => db.prepare("INSERT INTO audit (what) VALUES ('x')").run());
    expect(rows(db)).toEqual([{ k: 'a', v: '1' }]);
    expect(errors).toEqual([expect.stringMatching(/^bad: no such table: nope/)]);
    expect(db.prepare('SELECT COUNT(*) AS n FROM audit').get()).toEqual({ n: 1 });
  });

  it("when the committer's own write fails, the staged rows are still committed and its error is thrown", () => {
    const { db, file } = fileDb();
    const before = walCommits(file);
    const group = writeGroup(db);
    group.stage('rows/a', put(db, 'a', '1'), () => undefined);
    expect(() => group.commit(() => db.prepare('INSERT INTO audit (what) VALUES (NULL)').run())).toThrow(/NOT NULL/);
    expect(rows(db)).toEqual([{ k: 'a', v: '1' }]);
    expect(db.prepare('SELECT COUNT(*) AS n FROM audit').get()).toEqual({ n: 0 });
    expect(walCommits(file) - before).toBe(1);
  });

  it('discard drops staged rows by key prefix', () => {
    const { db } = fileDb();
    const group = writeGroup(db);
    group.stage('exe/a/web', put(db, 'web', '1'), () => undefined);
    group.stage('exe/b/web', put(db, 'b-web', '1'), () => undefined);
    group.discard('exe/a/');
    group.commit();
    expect(rows(db)).toEqual([{ k: 'b-web', v: '1' }]);
  });
});
