// The authorization decision: pure data in, a decision out. Everything that can say yes or no to a call is
// in the Policy value, so the whole rule set is visible in one place and unit-tested as a table.
//
// Order of evaluation (the first that applies wins):
//   1. admin       identities in the node config's authz.admins may call everything, policy edits included
//   2. open        probes (grpc.health.v1.Health/*, Discover) are open to every certificate of the node CA
//   3. admin-only  policy edits are reserved to admins, whatever the rules say (a rule "*" cannot escalate)
//   4. deny        a matching deny rule (config or API) refuses the call: deny wins over allow
//   5. allow       a matching allow rule (config or API) permits it
//   6. default     everyone else is denied
import { covers, matches, shellWord } from './patterns';

export type Effect = 'allow' | 'deny';
/** Where a rule comes from: the node config (authz.policy; read-only through the API) or an API edit (SQLite). */
export type RuleSource = 'config' | 'api';

export interface PolicyRule {
  identity: string;
  effect: Effect;
  /** A valid method pattern (see patterns.ts). */
  pattern: string;
  source: RuleSource;
  /** For API rules: who added it and when (ISO 8601). */
  createdBy?: string;
  createdAt?: string;
}

export interface Policy {
  admins: ReadonlySet<string>;
  /** Patterns every caller with a node-CA certificate may call (health probes, Discover). */
  open: readonly string[];
  /** Patterns only admins may call, whatever the rules (policy edits). */
  adminOnly: readonly string[];
  rules: readonly PolicyRule[];
}

export type Decision =
  | { allowed: true; reason: 'admin' | 'open' }
  | { allowed: true; reason: 'allow'; rule: PolicyRule }
  | { allowed: false; reason: 'admin-only' | 'default' }
  | { allowed: false; reason: 'deny'; rule: PolicyRule };

/** Methods open to every certificate from the node CA: readiness/liveness probes and node discovery. */
export const OPEN_METHODS: readonly string[] = ['grpc.health.v1.Health/*', 'aurae.discovery.v0.DiscoveryService/Discover'];

/** The policy-changing methods: granting them would let a non-admin grant itself anything. */
export const ADMIN_ONLY_METHODS: readonly string[] = [
  'aurae.authz.v0.AuthzService/Allow',
  'aurae.authz.v0.AuthzService/Deny',
  'aurae.authz.v0.AuthzService/Revoke',
];

/**
 * May `identity` call `method` (a full name "package.Service/Method")? Precondition: every pattern in
 * `policy` is valid (config and API input are validated before they become rules).
 */
export function decide(policy: Policy, identity: string, method: string): Decision {
  if (policy.admins.has(identity)) return { allowed: true, reason: 'admin' };
  if (policy.open.some((p) => matches(p, method))) return { allowed: true, reason: 'open' };
  if (policy.adminOnly.some((p) => matches(p, method))) return { allowed: false, reason: 'admin-only' };
  const own = policy.rules.filter((r) => r.identity === identity && matches(r.pattern, method));
  const deny = own.find((r) => r.effect === 'deny');
  if (deny) return { allowed: false, reason: 'deny', rule: deny };
  const allow = own.find((r) => r.effect === 'allow');
  if (allow) return { allowed: true, reason: 'allow', rule: allow };
  return { allowed: false, reason: 'default' };
}

/**
 * The PERMISSION_DENIED text for a refused call: who, what, why, and the command that changes it.
 * Precondition: `decision.allowed` is false.
 */
export function denialMessage(identity: string, method: string, decision: Decision & { allowed: false }): string {
  const who = `identity "${identity}" may not call ${method}`;
  switch (decision.reason) {
    case 'admin-only':
      return `${who}: only identities in authz.admins (node config) may change the policy`;
    case 'deny': {
      const rule = decision.rule;
      if (rule.source === 'config') {
        return `${who}: denied by the rule deny "${rule.pattern}" in the node config (authz.policy); deny wins over allow: remove that rule from the config to lift it`;
      }
      const by = rule.createdBy ? ` (added by ${rule.createdBy})` : '';
      return `${who}: denied by the rule deny "${rule.pattern}"${by}; deny wins over allow: an admin can lift it with: aer authz revoke ${shellWord(identity)} ${shellWord(rule.pattern)}`;
    }
    case 'default':
      return `${who}: no rule allows it and non-admin identities are denied by default: an admin can grant it with: aer authz allow ${shellWord(identity)} ${shellWord(method)}`;
  }
}

/** Short reason for the audit log (the full message goes to the caller). */
export function decisionDetail(decision: Decision): string {
  switch (decision.reason) {
    case 'admin':
    case 'open':
      return decision.reason;
    case 'admin-only':
      return 'denied: policy edits are admin-only';
    case 'default':
      return 'denied: no rule allows it (default deny)';
    case 'allow':
    case 'deny':
      return `${decision.reason === 'allow' ? 'allowed' : 'denied'} by ${decision.rule.source} rule ${decision.rule.effect} ${decision.rule.pattern}`;
  }
}

/**
 * Notes about a rule just added, when it cannot have the effect the admin probably expects: the identity is
 * an admin (rules do not restrict admins), an allow is shadowed by a deny covering it, or the pattern
 * touches open or admin-only methods. Pure; returns [] when the rule takes effect as written.
 */
export function ruleNotes(policy: Policy, identity: string, effect: Effect, pattern: string): string[] {
  const notes: string[] = [];
  if (policy.admins.has(identity)) notes.push(`"${identity}" is in authz.admins: rules do not restrict admins`);
  if (effect === 'allow') {
    for (const deny of policy.rules) {
      if (deny.identity === identity && deny.effect === 'deny' && covers(deny.pattern, pattern)) {
        notes.push(`still denied by the ${deny.source} rule deny "${deny.pattern}" (deny wins over allow)`);
      }
    }
    if (policy.adminOnly.some((p) => covers(pattern, p))) notes.push('policy edits (AuthzService Allow/Deny/Revoke) stay admin-only');
  } else if (policy.open.some((p) => covers(pattern, p) || covers(p, pattern))) {
    notes.push('health checks and Discover stay open to every certificate of the node CA');
  }
  return notes;
}
