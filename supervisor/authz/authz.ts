// The authz core: the effective policy (config rules + API rules), the Authorizer the RPC wrappers call on
// every request, the policy edits behind AuthzService, and the audit log.
//
// Merge semantics: the effective rules of an identity are the union of its config rules (authz.policy) and its
// API rules (stored in SQLite). Deny wins over allow across both sources, so an API deny can switch off a
// config allow, but an API allow cannot override a config deny (that takes a config change). API edits only
// ever touch API rules: config rules are read-only through the API and come back on every start.
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import type { AuditEvent, Authorizer, Caller } from '../server';
import type { AuditQuery, AuditRecord, AuthzStore } from './authz-store';
import {
  ADMIN_ONLY_METHODS,
  type Effect,
  OPEN_METHODS,
  type Policy,
  type PolicyRule,
  decide,
  decisionDetail,
  denialMessage,
  ruleNotes,
} from './policy';
import { matches, shellWord } from './patterns';

/** A rule as the node config writes it: one entry per identity. */
export interface ConfigRule {
  identity: string;
  allow: readonly string[];
  deny: readonly string[];
}

export interface AuthzOptions {
  admins: readonly string[];
  /** config.authz.policy (already validated by the config schema). */
  configRules: readonly ConfigRule[];
  store: AuthzStore;
  /** Full names of the methods this auraed serves; edits naming none of them are refused. Read lazily. */
  knownMethods?: () => ReadonlySet<string>;
  log: Logger;
  clock?: () => Date;
}

/** A policy view: the fixed parts and the effective rules, optionally for one identity. */
export interface PolicyView {
  admins: string[];
  open: string[];
  adminOnly: string[];
  rules: PolicyRule[];
}

export interface RuleChange {
  /** false when the rule was already there (the call is idempotent). */
  changed: boolean;
  /** The identity's effective rules after the change. */
  rules: PolicyRule[];
  /** Why the change may not do what was intended (see ruleNotes). */
  notes: string[];
}

export interface RevokeResult {
  removed: number;
  rules: PolicyRule[];
  notes: string[];
}

export interface Authz extends Authorizer {
  policy(identity?: string): PolicyView;
  allow(by: Caller, identity: string, pattern: string): RuleChange;
  deny(by: Caller, identity: string, pattern: string): RuleChange;
  /** Remove `identity`'s API rules for `pattern` (both effects), or all of them when pattern is null. */
  revoke(by: Caller, identity: string, pattern: string | null): RevokeResult;
  listAudit(query: AuditQuery): AuditRecord[];
  /** Config rules whose pattern matches no method this auraed serves (worth a warning at startup, not an error). */
  unmatchedConfigRules(): PolicyRule[];
}

/** Flatten config entries into rules (stable order: as written). */
export function configPolicyRules(entries: readonly ConfigRule[]): PolicyRule[] {
  return entries.flatMap((e) => [
    ...e.allow.map((pattern) => ({ identity: e.identity, effect: 'allow' as const, pattern, source: 'config' as const })),
    ...e.deny.map((pattern) => ({ identity: e.identity, effect: 'deny' as const, pattern, source: 'config' as const })),
  ]);
}

export function createAuthz(options: AuthzOptions): Authz {
  const { store, log } = options;
  const clock = options.clock ?? (() => new Date());
  const admins = new Set(options.admins);
  const configRules = configPolicyRules(options.configRules);
  // The effective policy is kept in memory and rebuilt after each edit: checks run on every call.
  let policy: Policy = build();

  function build(): Policy {
    return { admins, open: OPEN_METHODS, adminOnly: ADMIN_ONLY_METHODS, rules: [...configRules, ...store.rules()] };
  }

  const rulesOf = (identity: string) => policy.rules.filter((r) => r.identity === identity);

  /** Refuse a pattern that names nothing this auraed serves (typos would otherwise be silent no-ops). */
  function checkKnown(pattern: string): void {
    const known = options.knownMethods?.();
    if (!known || pattern === '*') return;
    for (const method of known) if (matches(pattern, method)) return;
    const services = [...new Set([...known].map((m) => m.slice(0, m.indexOf('/'))))].sort();
    throw new AuraeError('INVALID_ARGUMENT', `method: no method served by this node matches "${pattern}": services are ${services.join(', ')}`);
  }

  function add(by: Caller, identity: string, effect: Effect, pattern: string): RuleChange {
    checkKnown(pattern);
    const opposite: Effect = effect === 'allow' ? 'deny' : 'allow';
    // An explicit allow replaces an API deny of exactly the same pattern, and vice versa: the latest edit
    // is what the admin means. Wider or config rules stay (see the notes).
    // One transaction: a crash between the two would leave neither rule.
    const { added, removed } = store.replaceRule({ identity, effect, pattern, createdBy: by.identity, createdAt: clock().toISOString() });
    policy = build();
    if (added || removed) log.info('policy changed', { by: by.identity, identity, effect, pattern, replaced: removed ? opposite : undefined });
    return { changed: added || removed, rules: rulesOf(identity), notes: ruleNotes(policy, identity, effect, pattern) };
  }

  return {
    check(caller, method) {
      const decision = decide(policy, caller.identity, method);
      if (decision.allowed) return null;
      return { message: denialMessage(caller.identity, method, decision), detail: decisionDetail(decision) };
    },

    audit(event: AuditEvent) {
      try {
        store.appendAudit({ time: clock().toISOString(), ...event });
      } catch (err) {
        // The call already happened (or was refused); losing its audit row must be loud, not fatal.
        log.error('audit write failed', { ...event, err });
      }
    },

    policy(identity) {
      return {
        admins: [...admins],
        open: [...OPEN_METHODS],
        adminOnly: [...ADMIN_ONLY_METHODS],
        rules: identity === undefined ? [...policy.rules] : rulesOf(identity),
      };
    },

    allow: (by, identity, pattern) => add(by, identity, 'allow', pattern),
    deny: (by, identity, pattern) => add(by, identity, 'deny', pattern),

    revoke(by, identity, pattern) {
      const removed = store.removeRules(identity, pattern);
      const fromConfig = configRules.filter((r) => r.identity === identity && (pattern === null || r.pattern === pattern));
      if (removed === 0 && fromConfig.length === 0) {
        const what = pattern === null ? 'no rules' : `no rule for "${pattern}"`;
        throw new AuraeError('NOT_FOUND', `identity "${identity}" has ${what}: see aer authz policy --identity ${shellWord(identity)}`);
      }
      if (removed === 0) {
        const what = pattern === null ? 'its rules come' : `its rules for "${pattern}" come`;
        throw new AuraeError(
          'FAILED_PRECONDITION',
          `identity "${identity}": ${what} from the node config (authz.policy), which the API cannot change: edit the config and restart auraed, or add an API deny (deny wins)`,
        );
      }
      policy = build();
      if (removed > 0) log.info('policy changed', { by: by.identity, identity, revoked: pattern ?? '(all)', removed });
      const notes = fromConfig.length
        ? [`${fromConfig.length} rule(s) come from the node config (authz.policy) and stay: edit the config to change them`]
        : [];
      return { removed, rules: rulesOf(identity), notes };
    },

    listAudit: (query) => store.listAudit(query),

    unmatchedConfigRules() {
      const known = options.knownMethods?.();
      if (!known) return [];
      return configRules.filter((r) => ![...known].some((m) => matches(r.pattern, m)));
    },
  };
}

/** Full method names ("package.Service/Method") of grpc-js service definitions, e.g. everything auraed serves. */
export function methodNames(definitions: Iterable<Record<string, { path: string }>>): Set<string> {
  const names = new Set<string>();
  for (const definition of definitions) for (const method of Object.values(definition)) names.add(method.path.replace(/^\//, ''));
  return names;
}
