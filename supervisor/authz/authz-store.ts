// authz's tables in the state database: the rules added through the API (config rules are never stored: the
// config file stays their only source) and the bounded audit log (audit-log.ts). Synchronous better-sqlite3 calls.
import { type Db, type Migration, migrate } from '../store';
import { type AuditLog, type AuditLogOptions, createAuditLog } from './audit-log';
import { type RuleStore, createRuleStore } from './rule-store';

export const AUTHZ_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'API policy rules and the audit log',
    up: (db) => {
      db.exec(`
        CREATE TABLE authz_rules (
          identity   TEXT NOT NULL,
          effect     TEXT NOT NULL CHECK (effect IN ('allow', 'deny')),
          pattern    TEXT NOT NULL,
          created_by TEXT NOT NULL,
          created_at TEXT NOT NULL,
          PRIMARY KEY (identity, effect, pattern)
        ) WITHOUT ROWID;
        -- AUTOINCREMENT: ids never go back, so "newest N" is an id range and a reader can page with before_id.
        CREATE TABLE authz_audit (
          id       INTEGER PRIMARY KEY AUTOINCREMENT,
          time     TEXT NOT NULL,
          identity TEXT NOT NULL,
          method   TEXT NOT NULL,
          code     TEXT NOT NULL,
          detail   TEXT NOT NULL,
          peer     TEXT NOT NULL
        );
        CREATE INDEX authz_audit_identity ON authz_audit (identity, id);
        CREATE INDEX authz_audit_method ON authz_audit (method, id);
      `);
    },
  },
  {
    version: 2,
    description: 'audit: the node a call was forwarded to, and the parent it came through',
    // Nullable: local calls have neither, and records written before this version stay as they were.
    up: (db) => {
      db.exec(`
        ALTER TABLE authz_audit ADD COLUMN node TEXT;
        ALTER TABLE authz_audit ADD COLUMN via TEXT;
      `);
    },
  },
];

export type { AuditEntry, AuditQuery, AuditRecord } from './audit-log';

/** The rules (rule-store.ts); the audit log's methods (audit-log.ts) ride along so callers keep one store. */
export interface AuthzStore extends AuditLog, RuleStore {}

export interface AuthzStoreOptions {
  /** Keep at most this many audit records (see audit-log.ts for how refusals and accepted calls share them). */
  auditMaxRecords: number;
  /** The audit log's batching and timer (tests, auraed's error logging); see AuditLogOptions. */
  audit?: Omit<AuditLogOptions, 'maxRecords'>;
}

/** Migrate authz's tables in `db` and return the store over them. */
export function createAuthzStore(db: Db, options: AuthzStoreOptions): AuthzStore {
  migrate(db, 'authz', AUTHZ_MIGRATIONS);
  // After authz's migrations: the audit log's own migrations add columns to the table those created.
  const auditLog = createAuditLog(db, { ...options.audit, maxRecords: options.auditMaxRecords });
  // After authz's migrations too: rule-store's migration rebuilds the rules table those created.
  const ruleStore = createRuleStore(db);

  return {
    ...ruleStore,
    ...auditLog,
  };
}
