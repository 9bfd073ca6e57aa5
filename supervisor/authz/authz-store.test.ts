import { afterEach, describe, expect, it } from 'vitest';
import { type Db, migrate, openDatabase } from '../store';
import { AUTHZ_MIGRATIONS, type AuditEntry, createAuthzStore } from './authz-store';

const dbs: Db[] = [];
const memory = () => {
  const db = openDatabase(':memory:');
  dbs.push(db);
  return db;
};
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});

const entry = (n: number, over: Partial<AuditEntry> = {}): AuditEntry => ({
  time: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
  identity: n % 2 ? 'nova' : 'admin',
  method: n % 3 ? 'aurae.node.v0.NodeService/Reboot' : 'aurae.authz.v0.AuthzService/Allow',
  code: n % 2 ? 'PERMISSION_DENIED' : 'OK',
  detail: `call ${n}`,
  peer: '127.0.0.1:5000',
  ...over,
});

describe('authz store', () => {
  it('migrates once and keeps API rules, idempotently, in a stable order', () => {
    const db = memory();
    const store = createAuthzStore(db, { auditMaxRecords: 10 });
    const by = { createdBy: 'admin', createdAt: '2026-01-01T00:00:00.000Z' };
    expect(store.addRule({ identity: 'nova', effect: 'deny', pattern: 'a.B/*', ...by })).toBe(true);
    expect(store.addRule({ identity: 'nova', effect: 'allow', pattern: 'a.B/C', ...by })).toBe(true);
    expect(store.addRule({ identity: 'nova', effect: 'allow', pattern: 'a.B/C', ...by })).toBe(false);
    expect(store.addRule({ identity: 'ci', effect: 'allow', pattern: '*', ...by })).toBe(true);
    expect(store.rules().map((r) => `${r.identity} ${r.effect} ${r.pattern} ${r.source} ${r.createdBy}`)).toEqual([
      'ci allow * api admin',
      'nova allow a.B/C api admin',
      'nova deny a.B/* api admin',
    ]);
    // A second store over the same database (a restart) sees the same rules and does not re-migrate.
    expect(createAuthzStore(db, { auditMaxRecords: 10 }).rules()).toHaveLength(3);
    expect(db.prepare("SELECT COUNT(*) AS n FROM schema_migrations WHERE subsystem = 'authz'").get()).toEqual({ n: AUTHZ_MIGRATIONS.length });
  });

  it('records the node a call was forwarded to and the parent it came through; absent when local', () => {
    const store = createAuthzStore(memory(), { auditMaxRecords: 10 });
    store.appendAudit(entry(2));
    store.appendAudit(entry(4, { node: 'aurae/web' }));
    store.appendAudit(entry(6, { via: 'aurae' }));
    store.appendAudit(entry(8, { node: 'aurae/web/db', via: 'aurae' }));
    const records = store.listAudit({ limit: 10 });
    expect(records.map((r) => [r.detail, r.node, r.via])).toEqual([
      ['call 8', 'aurae/web/db', 'aurae'],
      ['call 6', undefined, 'aurae'],
      ['call 4', 'aurae/web', undefined],
      ['call 2', undefined, undefined],
    ]);
    // Absent, not null: the wire's unset optionals.
    expect(records[3]).not.toHaveProperty('node');
    expect(records[3]).not.toHaveProperty('via');
  });

  it('migration 2 adds the columns to a version-1 database and keeps its records', () => {
    const db = memory();
    migrate(db, 'authz', AUTHZ_MIGRATIONS.slice(0, 1));
    db.prepare("INSERT INTO authz_audit (time, identity, method, code, detail, peer) VALUES ('t', 'admin', 'a.B/C', 'OK', 'old', 'p')").run();
    const store = createAuthzStore(db, { auditMaxRecords: 10 });
    store.appendAudit(entry(2, { node: 'aurae/web' }));
    expect(store.listAudit({ limit: 10 }).map((r) => [r.detail, r.node ?? null])).toEqual([
      ['call 2', 'aurae/web'],
      ['old', null],
    ]);
  });

  it('replaces the opposite rule of the same pattern in one transaction', () => {
    const db = memory();
    const store = createAuthzStore(db, { auditMaxRecords: 10 });
    const by = { createdBy: 'admin', createdAt: 't' };
    store.addRule({ identity: 'nova', effect: 'deny', pattern: 'a.B/C', ...by });
    expect(store.replaceRule({ identity: 'nova', effect: 'allow', pattern: 'a.B/C', ...by })).toEqual({ added: true, removed: true });
    expect(store.rules().map((r) => `${r.effect} ${r.pattern}`)).toEqual(['allow a.B/C']);
    // A failure inside the transaction (here: the table is gone) leaves the previous rule in place.
    db.exec('CREATE TABLE keep AS SELECT * FROM authz_rules; DROP TABLE authz_rules;');
    expect(() => store.replaceRule({ identity: 'nova', effect: 'deny', pattern: 'a.B/C', ...by })).toThrow();
  });

  it('removes one rule, one pattern (both effects) or all of an identity', () => {
    const store = createAuthzStore(memory(), { auditMaxRecords: 10 });
    const by = { createdBy: 'admin', createdAt: 't' };
    for (const [effect, pattern] of [['allow', 'a.B/C'], ['deny', 'a.B/C'], ['allow', 'x.Y/*'], ['deny', '*']] as const) {
      store.addRule({ identity: 'nova', effect, pattern, ...by });
    }
    store.addRule({ identity: 'ci', effect: 'allow', pattern: '*', ...by });
    expect(store.removeRule('nova', 'deny', '*')).toBe(true);
    expect(store.removeRule('nova', 'deny', '*')).toBe(false);
    expect(store.removeRules('nova', 'a.B/C')).toBe(2);
    expect(store.removeRules('nova', null)).toBe(1);
    expect(store.removeRules('nova', null)).toBe(0);
    expect(store.rules().map((r) => r.identity)).toEqual(['ci']);
  });

  // The audit log's bounds, aggregation, batching and filters: audit-log.test.ts.

  it('refuses a bound that is not a positive integer', () => {
    expect(() => createAuthzStore(memory(), { auditMaxRecords: 0 })).toThrow('auditMaxRecords must be a positive integer (got 0)');
  });
});
