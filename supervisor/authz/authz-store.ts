// authz's tables in the state database: the rules added through the API (config rules are never stored: the
// config file stays their only source) and the bounded audit log. Synchronous better-sqlite3 calls.
import { type Db, type Migration, migrate } from '../store';
import type { Effect, PolicyRule } from './policy';

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

/** One audited call, as written. */
export interface AuditEntry {
  /** ISO 8601. */
  time: string;
  /** The caller's identity; "" when the call carried no usable certificate identity. */
  identity: string;
  /** Full method name. */
  method: string;
  /** gRPC status name of the outcome: OK, PERMISSION_DENIED, INVALID_ARGUMENT, … */
  code: string;
  /** Short free text: why it was denied, what failed, or what was done. */
  detail: string;
  peer: string;
  /** On the node that forwarded the call to a descendant: the descendant's node path. */
  node?: string;
  /** When the call came from this node's parent on behalf of `identity`: the parent's identity. */
  via?: string;
}

export interface AuditRecord extends AuditEntry {
  id: number;
}

export interface AuditQuery {
  /** Newest first, at most this many. */
  limit: number;
  identity?: string;
  /** A method pattern (see patterns.ts): exact, "package.Service/*" or "*". */
  method?: string;
  code?: string;
  /** Only records older than this id (paging backwards). */
  beforeId?: number;
}

export interface AuthzStore {
  /** API rules, in a stable order (identity, effect, pattern). */
  rules(): PolicyRule[];
  /** Add a rule; false when it was already there. */
  addRule(rule: { identity: string; effect: Effect; pattern: string; createdBy: string; createdAt: string }): boolean;
  /** Remove one rule; false when it was not there. */
  removeRule(identity: string, effect: Effect, pattern: string): boolean;
  /** In one transaction: remove the opposite-effect rule for the same pattern, add this one. */
  replaceRule(rule: { identity: string; effect: Effect; pattern: string; createdBy: string; createdAt: string }): { added: boolean; removed: boolean };
  /** Remove `identity`'s rules for `pattern` (both effects), or all of its rules when pattern is null; returns how many. */
  removeRules(identity: string, pattern: string | null): number;
  /** Append one record and drop the oldest beyond the bound. */
  appendAudit(entry: AuditEntry): void;
  listAudit(query: AuditQuery): AuditRecord[];
  auditCount(): number;
}

export interface AuthzStoreOptions {
  /** Keep at most this many audit records (the newest). */
  auditMaxRecords: number;
}

/** Migrate authz's tables in `db` and return the store over them. */
export function createAuthzStore(db: Db, options: AuthzStoreOptions): AuthzStore {
  if (!Number.isInteger(options.auditMaxRecords) || options.auditMaxRecords < 1) {
    throw new Error(`auditMaxRecords must be a positive integer (got ${options.auditMaxRecords})`);
  }
  migrate(db, 'authz', AUTHZ_MIGRATIONS);
  const selectRules = db.prepare('SELECT identity, effect, pattern, created_by, created_at FROM authz_rules ORDER BY identity, effect, pattern');
  const insertRule = db.prepare('INSERT OR IGNORE INTO authz_rules (identity, effect, pattern, created_by, created_at) VALUES (?, ?, ?, ?, ?)');
  const deleteRule = db.prepare('DELETE FROM authz_rules WHERE identity = ? AND effect = ? AND pattern = ?');
  const deletePattern = db.prepare('DELETE FROM authz_rules WHERE identity = ? AND pattern = ?');
  const deleteIdentity = db.prepare('DELETE FROM authz_rules WHERE identity = ?');
  const insertAudit = db.prepare('INSERT INTO authz_audit (time, identity, method, code, detail, peer, node, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const pruneAudit = db.prepare('DELETE FROM authz_audit WHERE id IN (SELECT id FROM authz_audit ORDER BY id DESC LIMIT -1 OFFSET ?)');
  const countAudit = db.prepare('SELECT COUNT(*) AS n FROM authz_audit');
  // Denied calls get at most half of the log: anyone with a certificate can cause them, and a flood of them
  // must not push the admins' own records (Start, Free, Allow…) out.
  const maxDenied = Math.max(1, Math.floor(options.auditMaxRecords / 2));
  const pruneDenied = db.prepare(
    "DELETE FROM authz_audit WHERE id IN (SELECT id FROM authz_audit WHERE code = 'PERMISSION_DENIED' ORDER BY id DESC LIMIT -1 OFFSET ?)",
  );
  const appendAudit = db.transaction((e: AuditEntry) => {
    const id = Number(insertAudit.run(e.time, e.identity, e.method, e.code, e.detail, e.peer, e.node ?? null, e.via ?? null).lastInsertRowid);
    if (e.code === 'PERMISSION_DENIED') pruneDenied.run(maxDenied);
    // By count, not by id: pruning denied rows leaves gaps in the ids.
    if (id > options.auditMaxRecords) pruneAudit.run(options.auditMaxRecords);
  });

  const replaceRule = db.transaction((r: { identity: string; effect: Effect; pattern: string; createdBy: string; createdAt: string }) => {
    const opposite: Effect = r.effect === 'allow' ? 'deny' : 'allow';
    const removed = deleteRule.run(r.identity, opposite, r.pattern).changes > 0;
    const added = insertRule.run(r.identity, r.effect, r.pattern, r.createdBy, r.createdAt).changes > 0;
    return { added, removed };
  });

  return {
    rules: () =>
      (selectRules.all() as Array<{ identity: string; effect: Effect; pattern: string; created_by: string; created_at: string }>).map((r) => ({
        identity: r.identity,
        effect: r.effect,
        pattern: r.pattern,
        source: 'api' as const,
        createdBy: r.created_by,
        createdAt: r.created_at,
      })),
    addRule: (r) => insertRule.run(r.identity, r.effect, r.pattern, r.createdBy, r.createdAt).changes > 0,
    removeRule: (identity, effect, pattern) => deleteRule.run(identity, effect, pattern).changes > 0,
    replaceRule: (r) => replaceRule(r),
    removeRules: (identity, pattern) => (pattern === null ? deleteIdentity.run(identity) : deletePattern.run(identity, pattern)).changes,
    appendAudit: (entry) => appendAudit(entry),
    listAudit: (query) => {
      const where: string[] = [];
      const params: unknown[] = [];
      if (query.identity !== undefined) {
        where.push('identity = ?');
        params.push(query.identity);
      }
      if (query.method !== undefined && query.method !== '*') {
        if (query.method.endsWith('/*')) {
          // A prefix match without LIKE: method names contain "_", which LIKE would treat as a wildcard.
          where.push('substr(method, 1, ?) = ?');
          params.push(query.method.length - 1, query.method.slice(0, -1));
        } else {
          where.push('method = ?');
          params.push(query.method);
        }
      }
      if (query.code !== undefined) {
        where.push('code = ?');
        params.push(query.code);
      }
      if (query.beforeId !== undefined) {
        where.push('id < ?');
        params.push(query.beforeId);
      }
      const sql = `SELECT id, time, identity, method, code, detail, peer, node, via FROM authz_audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
      const rows = db.prepare(sql).all(...params, query.limit) as Array<Omit<AuditRecord, 'node' | 'via'> & { node: string | null; via: string | null }>;
      // NULL columns become absent fields (the wire's unset optionals).
      return rows.map(({ node, via, ...rest }) => ({ ...rest, ...(node === null ? {} : { node }), ...(via === null ? {} : { via }) }));
    },
    auditCount: () => (countAudit.get() as { n: number }).n,
  };
}
