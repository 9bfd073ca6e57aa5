// The stored rules: those added through the API (with their resource scopes) and the set this node inherited
// from its parent (pushed by the parent after every policy change; the config's authz.inherited is the set it
// had when this node booted). Config rules are never stored: the config file stays their only source.
// Synchronous better-sqlite3 calls; a subsystem of its own ("authz-rules"), migrated after authz's tables.
import { type Db, type Migration, migrate } from '../store';
import { type RuleScope, normalScope, unscoped } from './patterns';
import type { Effect, PolicyRule } from './policy';

export const RULE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'authz rules: resource scopes; the rules inherited from the parent',
    up: (db) => {
      // The scope joins the key: nova may be allowed Start on nova/* and, separately, on shared/*.
      db.exec(`
        CREATE TABLE authz_rules_scoped (
          identity   TEXT NOT NULL,
          effect     TEXT NOT NULL CHECK (effect IN ('allow', 'deny')),
          pattern    TEXT NOT NULL,
          scope      TEXT NOT NULL DEFAULT '',
          created_by TEXT NOT NULL,
          created_at TEXT NOT NULL,
          PRIMARY KEY (identity, effect, pattern, scope)
        ) WITHOUT ROWID;
        INSERT INTO authz_rules_scoped (identity, effect, pattern, scope, created_by, created_at)
          SELECT identity, effect, pattern, '', created_by, created_at FROM authz_rules;
        DROP TABLE authz_rules;
        ALTER TABLE authz_rules_scoped RENAME TO authz_rules;
        -- One row: the parent's last push, and the boot-time set it was pushed on top of (see inheritedRules).
        CREATE TABLE authz_parent_rules (
          id          INTEGER PRIMARY KEY CHECK (id = 1),
          base        TEXT NOT NULL,
          rules       TEXT NOT NULL,
          received_at TEXT NOT NULL
        );
      `);
    },
  },
];

/** A rule as an API edit gives it. */
export interface RuleInput {
  identity: string;
  effect: Effect;
  pattern: string;
  scope?: RuleScope;
  createdBy: string;
  createdAt: string;
}

/** An inherited rule as it travels (guest payload, push): a rule without its origin. */
export interface InheritedRule {
  identity: string;
  effect: Effect;
  method: string;
  cells?: string[];
  vms?: string[];
  pods?: string[];
  nodes?: string[];
  uids?: string[];
  gids?: string[];
}

export interface RuleStore {
  /** API rules, in a stable order (identity, effect, pattern, scope). */
  rules(): PolicyRule[];
  /** Add a rule; false when it was already there. */
  addRule(rule: RuleInput): boolean;
  /** Remove one rule (of exactly this scope; default none); false when it was not there. */
  removeRule(identity: string, effect: Effect, pattern: string, scope?: RuleScope): boolean;
  /** In one transaction: remove the opposite-effect rule for the same pattern and scope, add this one. */
  replaceRule(rule: RuleInput): { added: boolean; removed: boolean };
  /**
   * Remove `identity`'s rules for `pattern` (both effects), or all of its rules when pattern is null: of every
   * scope, or of exactly `scope` when given. Returns how many.
   */
  removeRules(identity: string, pattern: string | null, scope?: RuleScope | null): number;
  /** The parent's last push, if it was made on top of the boot-time set `base`; else null (a newer boot). */
  parentRules(base: readonly InheritedRule[]): InheritedRule[] | null;
  /** Keep the parent's push (replacing the previous one). */
  setParentRules(base: readonly InheritedRule[], rules: readonly InheritedRule[], receivedAt: string): void;
}

/** The stored spelling of a scope: '' when it restricts nothing, else the JSON of its normal form. */
export function scopeKey(scope: RuleScope | undefined): string {
  return unscoped(scope) ? '' : JSON.stringify(normalScope(scope));
}

/** Inherited rules (wire form) as policy rules of source 'parent'. */
export function fromInherited(rules: readonly InheritedRule[]): PolicyRule[] {
  return rules.map((r) => {
    const scope = normalScope(r);
    return { identity: r.identity, effect: r.effect, pattern: r.method, source: 'parent' as const, ...(unscoped(scope) ? {} : { scope }) };
  });
}

/** Policy rules in their wire form (what a child inherits). */
export function toInherited(rules: readonly PolicyRule[]): InheritedRule[] {
  return rules.map((r) => ({ identity: r.identity, effect: r.effect, method: r.pattern, ...normalScope(r.scope) }) as InheritedRule);
}

export function createRuleStore(db: Db): RuleStore {
  migrate(db, 'authz-rules', RULE_MIGRATIONS);
  const selectRules = db.prepare('SELECT identity, effect, pattern, scope, created_by, created_at FROM authz_rules ORDER BY identity, effect, pattern, scope');
  const insertRule = db.prepare('INSERT OR IGNORE INTO authz_rules (identity, effect, pattern, scope, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)');
  const deleteRule = db.prepare('DELETE FROM authz_rules WHERE identity = ? AND effect = ? AND pattern = ? AND scope = ?');
  const deletePattern = db.prepare('DELETE FROM authz_rules WHERE identity = ? AND pattern = ?');
  const deleteIdentity = db.prepare('DELETE FROM authz_rules WHERE identity = ?');
  const deletePatternScope = db.prepare('DELETE FROM authz_rules WHERE identity = ? AND pattern = ? AND scope = ?');
  const deleteIdentityScope = db.prepare('DELETE FROM authz_rules WHERE identity = ? AND scope = ?');
  const selectParent = db.prepare('SELECT base, rules FROM authz_parent_rules WHERE id = 1');
  const upsertParent = db.prepare(
    'INSERT INTO authz_parent_rules (id, base, rules, received_at) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET base = excluded.base, rules = excluded.rules, received_at = excluded.received_at',
  );

  const replaceRule = db.transaction((r: RuleInput) => {
    const opposite: Effect = r.effect === 'allow' ? 'deny' : 'allow';
    const key = scopeKey(r.scope);
    const removed = deleteRule.run(r.identity, opposite, r.pattern, key).changes > 0;
    const added = insertRule.run(r.identity, r.effect, r.pattern, key, r.createdBy, r.createdAt).changes > 0;
    return { added, removed };
  });

  return {
    rules: () =>
      (selectRules.all() as Array<{ identity: string; effect: Effect; pattern: string; scope: string; created_by: string; created_at: string }>).map((r) => ({
        identity: r.identity,
        effect: r.effect,
        pattern: r.pattern,
        source: 'api' as const,
        ...(r.scope === '' ? {} : { scope: JSON.parse(r.scope) as RuleScope }),
        createdBy: r.created_by,
        createdAt: r.created_at,
      })),
    addRule: (r) => insertRule.run(r.identity, r.effect, r.pattern, scopeKey(r.scope), r.createdBy, r.createdAt).changes > 0,
    removeRule: (identity, effect, pattern, scope) => deleteRule.run(identity, effect, pattern, scopeKey(scope)).changes > 0,
    replaceRule: (r) => replaceRule(r),
    removeRules(identity, pattern, scope) {
      if (scope === undefined || scope === null) return (pattern === null ? deleteIdentity.run(identity) : deletePattern.run(identity, pattern)).changes;
      const key = scopeKey(scope);
      return (pattern === null ? deleteIdentityScope.run(identity, key) : deletePatternScope.run(identity, pattern, key)).changes;
    },
    parentRules(base) {
      const row = selectParent.get() as { base: string; rules: string } | undefined;
      if (!row || row.base !== JSON.stringify(base)) return null;
      return JSON.parse(row.rules) as InheritedRule[];
    },
    setParentRules(base, rules, receivedAt) {
      upsertParent.run(JSON.stringify(base), JSON.stringify(rules), receivedAt);
    },
  };
}
