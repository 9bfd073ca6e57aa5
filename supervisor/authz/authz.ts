// The authz core: the effective policy (config rules + API rules), the Authorizer the RPC wrappers call on
// every request, the policy edits behind AuthzService, and the audit log.
//
// Merge semantics: the effective rules of an identity are the union of its config rules (authz.policy) and its
// API rules (stored in SQLite). Deny wins over allow across both sources, so an API deny can switch off a
// config allow, but an API allow cannot override a config deny (that takes a config change). API edits only
// ever touch API rules: config rules are read-only through the API and come back on every start.
//
// Inherited rules: a spawned node also holds its parent's effective rules (source 'parent'), given at boot in
// its config (authz.inherited, from the guest payload) and replaced whenever the parent pushes its rules again
// (SetParentRules, which only the parent may call). They are evaluated like the others (deny wins), so a deny at
// the parent holds on the child even for calls that reach the child directly, not through the parent.
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import type { AuditEvent, Authorizer, Caller, CheckTarget } from '../server';
import type { AuditQuery, AuditRecord, AuthzStore } from './authz-store';
import {
  ADMIN_ONLY_METHODS,
  type Effect,
  OPEN_METHODS,
  PARENT_ONLY_METHODS,
  type Policy,
  type PolicyRule,
  decide,
  decisionDetail,
  denialMessage,
  ruleNotes,
} from './policy';
import { type RuleScope, matches, normalScope, scopeFlags, shellWord, unscoped } from './patterns';
import { type InheritedRule, fromInherited, scopeKey, toInherited } from './rule-store';

/** A rule as the node config writes it: an identity, its patterns, and the resources they apply to (default all). */
export interface ConfigRule extends RuleScope {
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
  /** This node's path (config.node.name): what node-scoped rules are matched against for local calls. */
  nodePath?: string;
  /** The rules inherited from the parent at boot (config.authz.inherited; already validated). */
  inherited?: readonly InheritedRule[];
}

/** A policy view: the fixed parts and the effective rules, optionally for one identity. */
export interface PolicyView {
  admins: string[];
  open: string[];
  adminOnly: string[];
  parentOnly: string[];
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
  allow(by: Caller, identity: string, pattern: string, scope?: RuleScope): RuleChange;
  deny(by: Caller, identity: string, pattern: string, scope?: RuleScope): RuleChange;
  /**
   * Remove `identity`'s API rules for `pattern` (both effects), or all of them when pattern is null: of every
   * scope, or only those of exactly `scope` when given.
   */
  revoke(by: Caller, identity: string, pattern: string | null, scope?: RuleScope | null): RevokeResult;
  listAudit(query: AuditQuery): AuditRecord[];
  /**
   * What `caller` may read of the policy and the audit log: admins everything (`identity` as asked), anyone else
   * only its own rules and the records of its own calls. PERMISSION_DENIED when a non-admin asks for another
   * identity's.
   */
  readableIdentity(caller: Caller, asked: string | undefined, what: 'rules' | 'audit records'): string | undefined;
  /** Config rules whose pattern matches no method this auraed serves (worth a warning at startup, not an error). */
  unmatchedConfigRules(): PolicyRule[];
  /** Every effective rule (config, parent, API) in the form a child inherits. */
  inheritable(): InheritedRule[];
  /** Replace the rules inherited from the parent (its push); returns how many rules it now inherits. */
  setParentRules(rules: readonly InheritedRule[]): number;
  /** Call `listener` after every change of the effective rules (to push them to children); returns an unsubscribe. */
  onChange(listener: () => void): () => void;
}

/** Flatten config entries into rules (stable order: as written). */
export function configPolicyRules(entries: readonly ConfigRule[]): PolicyRule[] {
  return entries.flatMap((e) => {
    const scope = normalScope(e);
    const scoped = unscoped(scope) ? {} : { scope };
    return [
      ...e.allow.map((pattern) => ({ identity: e.identity, effect: 'allow' as const, pattern, source: 'config' as const, ...scoped })),
      ...e.deny.map((pattern) => ({ identity: e.identity, effect: 'deny' as const, pattern, source: 'config' as const, ...scoped })),
    ];
  });
}

export function createAuthz(options: AuthzOptions): Authz {
  const { store, log } = options;
  const clock = options.clock ?? (() => new Date());
  const admins = new Set(options.admins);
  const configRules = configPolicyRules(options.configRules);
  // The boot-time inherited set, unless the parent pushed a newer one on top of it (kept across auraed restarts).
  const bootInherited = [...(options.inherited ?? [])];
  let parentRules = fromInherited(store.parentRules(bootInherited) ?? bootInherited);
  const listeners = new Set<() => void>();
  // The effective policy is kept in memory and rebuilt after each edit: checks run on every call.
  let policy: Policy = build();

  function build(): Policy {
    return { admins, open: OPEN_METHODS, adminOnly: ADMIN_ONLY_METHODS, parentOnly: PARENT_ONLY_METHODS, rules: [...configRules, ...parentRules, ...store.rules()] };
  }

  function changed(): void {
    policy = build();
    for (const listener of listeners) {
      try {
        listener();
      } catch (err) {
        log.error('policy change listener failed', { err });
      }
    }
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

  function add(by: Caller, identity: string, effect: Effect, pattern: string, scope?: RuleScope): RuleChange {
    checkKnown(pattern);
    const opposite: Effect = effect === 'allow' ? 'deny' : 'allow';
    const normal = normalScope(scope);
    // An explicit allow replaces an API deny of exactly the same pattern and scope, and vice versa: the latest
    // edit is what the admin means. Wider or config rules stay (see the notes).
    // One transaction: a crash between the two would leave neither rule.
    const { added, removed } = store.replaceRule({ identity, effect, pattern, scope: normal, createdBy: by.identity, createdAt: clock().toISOString() });
    if (added || removed) {
      changed();
      log.info('policy changed', { by: by.identity, identity, effect, pattern, ...(unscoped(normal) ? {} : { scope: normal }), replaced: removed ? opposite : undefined });
    }
    return { changed: added || removed, rules: rulesOf(identity), notes: ruleNotes(policy, identity, effect, pattern, normal) };
  }

  return {
    check(caller, method, target: CheckTarget = {}) {
      const decision = decide(policy, caller.identity, method, {
        node: target.node ?? options.nodePath,
        resource: target.resource === undefined ? null : target.resource,
        fromParent: caller.parent === true,
      });
      if (decision.allowed) return null;
      return { message: denialMessage(caller.identity, method, decision), detail: decisionDetail(decision, method) };
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
        parentOnly: [...PARENT_ONLY_METHODS],
        rules: identity === undefined ? [...policy.rules] : rulesOf(identity),
      };
    },

    allow: (by, identity, pattern, scope) => add(by, identity, 'allow', pattern, scope),
    deny: (by, identity, pattern, scope) => add(by, identity, 'deny', pattern, scope),

    revoke(by, identity, pattern, scope = null) {
      const removed = store.removeRules(identity, pattern, scope);
      // With a scope, only rules of exactly that scope are meant (the stored spelling compares normal forms).
      const selected = (r: PolicyRule) => r.identity === identity && (pattern === null || r.pattern === pattern) && (scope === null || scopeKey(r.scope) === scopeKey(scope));
      const fromConfig = configRules.filter(selected);
      const inherited = parentRules.filter(selected);
      if (removed === 0 && fromConfig.length === 0 && inherited.length > 0) {
        throw new AuraeError(
          'FAILED_PRECONDITION',
          `identity "${identity}": its rules${pattern === null ? '' : ` for "${pattern}"`} are inherited from this node's parent, which the API here cannot change: revoke them at the node where they were written (the parent pushes the change), or add an API deny here (deny wins)`,
        );
      }
      if (removed === 0 && fromConfig.length === 0) {
        const what = (pattern === null ? 'no rules' : `no rule for "${pattern}"`) + (scope === null ? '' : ` with the scope ${scopeFlags(scope)}`);
        throw new AuraeError('NOT_FOUND', `identity "${identity}" has ${what}: see aer authz policy --identity ${shellWord(identity)}`);
      }
      if (removed === 0) {
        const what = pattern === null ? 'its rules come' : `its rules for "${pattern}" come`;
        throw new AuraeError(
          'FAILED_PRECONDITION',
          `identity "${identity}": ${what} from the node config (authz.policy), which the API cannot change: edit the config and restart auraed, or add an API deny (deny wins)`,
        );
      }
      changed();
      if (removed > 0) log.info('policy changed', { by: by.identity, identity, revoked: pattern ?? '(all)', ...(scope === null ? {} : { scope }), removed });
      const notes = fromConfig.length
        ? [`${fromConfig.length} rule(s) come from the node config (authz.policy) and stay: edit the config to change them`]
        : [];
      return { removed, rules: rulesOf(identity), notes };
    },

    listAudit: (query) => store.listAudit(query),

    readableIdentity(caller, asked, what) {
      if (caller.admin) return asked;
      if (asked === undefined || asked === caller.identity) return caller.identity;
      throw new AuraeError('PERMISSION_DENIED', `identity "${caller.identity}" may not read the ${what} of "${asked}": only admins (authz.admins) see other identities'; ask for your own or leave the identity out`);
    },

    unmatchedConfigRules() {
      const known = options.knownMethods?.();
      if (!known) return [];
      return configRules.filter((r) => ![...known].some((m) => matches(r.pattern, m)));
    },

    inheritable: () => toInherited(policy.rules),

    setParentRules(rules) {
      store.setParentRules(bootInherited, rules, clock().toISOString());
      parentRules = fromInherited(rules);
      changed();
      log.info('inherited rules replaced by the parent', { rules: rules.length });
      return parentRules.length;
    },

    onChange(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
  };
}

/** Full method names ("package.Service/Method") of grpc-js service definitions, e.g. everything auraed serves. */
export function methodNames(definitions: Iterable<Record<string, { path: string }>>): Set<string> {
  const names = new Set<string>();
  for (const definition of definitions) for (const method of Object.values(definition)) names.add(method.path.replace(/^\//, ''));
  return names;
}
