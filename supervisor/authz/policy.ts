// The authorization decision: pure data in, a decision out. Everything that can say yes or no to a call is
// in the Policy value, so the whole rule set is visible in one place and unit-tested as a table.
//
// Order of evaluation (the first that applies wins):
//   0. parent-only the push of inherited rules and the renewal of the node's certificate: only this node's
//                  parent itself, admins included in the refusal
//   1. admin       identities in the node config's authz.admins may call everything, policy edits included
//   2. open        probes (grpc.health.v1.Health/*, Discover) are open to every certificate of the node CA
//   3. admin-only  policy edits are reserved to admins, whatever the rules say (a rule "*" cannot escalate)
//   4. deny        a matching deny rule (config, inherited or API) refuses the call: deny wins over allow
//   5. allow       a matching allow rule permits it (run-as: when it permits the uid/gid, else 'run-as')
//   6. default     everyone else is denied
//
// A rule applies to a call when its identity and method pattern match and the call is within its scope
// (patterns.ts): on a node its `nodes` name, touching a cell, VM or pod its `cells`/`vms`/`pods` name (a pod is
// also its own cell, so a rule naming either covers it). Rules without a scope apply to every resource, as
// before scopes existed. Executables run as a uid/gid a matching allow
// rule permits: the rule's `uids`/`gids`, or any but root (0) when it pins none ("not root" by default).
import { type RuleScope, covers, idWithin, matches, pathWithin, podWithin, scopeFlags, shellWord, unscoped, vmWithin } from './patterns';

export type Effect = 'allow' | 'deny';
/**
 * Where a rule comes from: the node config (authz.policy; read-only through the API), an API edit (SQLite), or
 * this node's parent (its effective rules, given at spawn and pushed on every change; read-only here).
 */
export type RuleSource = 'config' | 'api' | 'parent';

export interface PolicyRule {
  identity: string;
  effect: Effect;
  /** A valid method pattern (see patterns.ts). */
  pattern: string;
  source: RuleSource;
  /** The resources the rule applies to (valid, see patterns.ts); absent or empty: all of them. */
  scope?: RuleScope;
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
  /** Patterns only this node's parent itself may call (its policy push), admins included in the refusal. */
  parentOnly?: readonly string[];
  rules: readonly PolicyRule[];
}

/** What a call touches, as its handler declares it (server/rpc.ts). {} is the node itself. */
export interface Resource {
  /** A cell path, e.g. "nova/web". */
  cell?: string;
  /** A child VM's name on the node. */
  vm?: string;
  /** A pod's name on the node (with `cell`: the pod's own cell). */
  pod?: string;
  /** The user and group an executable would run as (Start). */
  runAs?: { uid: number; gid: number };
}

export interface Target {
  /** The node the call runs on (this one, or the descendant a routed call goes to); unset: node-scoped rules do not apply. */
  node?: string;
  /**
   * What the call touches; default {} (the node itself). null: not known yet — the method-level check made
   * before the request is validated, and for handlers that show each caller only what it may see.
   */
  resource?: Resource | null;
  /** The direct caller is this node's parent (not a call it relays on someone's behalf). */
  fromParent?: boolean;
}

export type Decision =
  | { allowed: true; reason: 'admin' | 'open' | 'parent' }
  | { allowed: true; reason: 'allow'; rule: PolicyRule }
  | { allowed: false; reason: 'admin-only' | 'parent-only' }
  | { allowed: false; reason: 'default'; resource: Resource | null; scoped: PolicyRule[] }
  | { allowed: false; reason: 'run-as'; resource: Resource & { runAs: { uid: number; gid: number } }; rules: PolicyRule[] }
  | { allowed: false; reason: 'deny'; rule: PolicyRule };

/** Methods open to every certificate from the node CA: readiness/liveness probes and node discovery. */
export const OPEN_METHODS: readonly string[] = ['grpc.health.v1.Health/*', 'aurae.discovery.v0.DiscoveryService/Discover'];

/**
 * The methods that replace the node's boot image (supervisor/upgrade): the next boot runs whatever that image holds,
 * its config and policy included, so granting them would grant everything too.
 */
export const IMAGE_CHANGE_METHODS: readonly string[] = ['aurae.upgrade.v0.UpgradeService/Upload', 'aurae.upgrade.v0.UpgradeService/Rollback'];

/** The policy-changing methods: granting them would let a non-admin grant itself anything. Plus the image changes. */
export const ADMIN_ONLY_METHODS: readonly string[] = [
  'aurae.authz.v0.AuthzService/Allow',
  'aurae.authz.v0.AuthzService/Deny',
  'aurae.authz.v0.AuthzService/Revoke',
  ...IMAGE_CHANGE_METHODS,
];

/**
 * The parent's push of its effective rules and its renewal of the child's certificate: only the parent may
 * replace what a child inherits or which certificate it serves.
 */
export const PARENT_ONLY_METHODS: readonly string[] = ['aurae.authz.v0.AuthzService/SetParentRules', 'aurae.node.v0.NodeService/RenewIdentity'];
const RENEW_IDENTITY = 'aurae.node.v0.NodeService/RenewIdentity';

/**
 * What this node's parent itself (its own certificate, not a call it relays) may call besides the parent-only
 * methods: the pods of a VM sandbox (supervisor/pods/vm-sandbox.ts), whose agent this node is, and their
 * containers' output and metrics (the CRI's log files and stats of those pods: vm-agent.ts childPodIo). No
 * escalation: the parent already holds everything of its child (it mints its identity, attaches its disks, runs
 * its QEMU).
 */
export const PARENT_AGENT_METHODS: readonly string[] = ['aurae.pods.v0.PodService/*', 'aurae.observe.v0.ObserveService/GetLogs', 'aurae.observe.v0.ObserveService/GetMetrics'];

const list = (values: readonly string[] | undefined): readonly string[] => values ?? [];

/** Whether `rule` applies on `node` (node-scoped rules apply only where the node is known). */
function onNode(rule: PolicyRule, node: string | undefined): boolean {
  const nodes = list(rule.scope?.nodes);
  return nodes.length === 0 || (node !== undefined && nodes.some((p) => pathWithin(p, node)));
}

/** Whether `rule` restricts cells, VMs or pods. */
function resourceScoped(rule: PolicyRule): boolean {
  return list(rule.scope?.cells).length > 0 || list(rule.scope?.vms).length > 0 || list(rule.scope?.pods).length > 0;
}

/** Whether `resource` is within `rule`'s cells/VMs/pods (every resource when it names none). */
function covering(rule: PolicyRule, resource: Resource): boolean {
  if (!resourceScoped(rule)) return true;
  const { cell, vm, pod } = resource;
  return (
    (cell !== undefined && list(rule.scope?.cells).some((p) => pathWithin(p, cell))) ||
    (vm !== undefined && list(rule.scope?.vms).some((p) => vmWithin(p, vm))) ||
    (pod !== undefined && list(rule.scope?.pods).some((p) => podWithin(p, pod)))
  );
}

/** The gid ranges an allow rule permits: its gids, else its uids (a user's own group), else null (not root). */
function gidRanges(rule: PolicyRule): readonly string[] | null {
  const gids = list(rule.scope?.gids);
  if (gids.length) return gids;
  const uids = list(rule.scope?.uids);
  return uids.length ? uids : null;
}

/** Whether the allow `rule` lets executables run as `runAs`: its pinned ids, or anything but root. */
export function permitsRunAs(rule: PolicyRule, runAs: { uid: number; gid: number }): boolean {
  const uids = list(rule.scope?.uids);
  const gids = gidRanges(rule);
  return (uids.length ? idWithin(uids, runAs.uid) : runAs.uid !== 0) && (gids ? idWithin(gids, runAs.gid) : runAs.gid !== 0);
}

/** Whether the deny `rule` applies to running as `runAs`: a deny pinning ids applies only to those. */
function deniesRunAs(rule: PolicyRule, runAs: { uid: number; gid: number } | undefined): boolean {
  const uids = list(rule.scope?.uids);
  const gids = list(rule.scope?.gids);
  if (uids.length === 0 && gids.length === 0) return true;
  if (!runAs) return false;
  return (uids.length > 0 && idWithin(uids, runAs.uid)) || (gids.length > 0 && idWithin(gids, runAs.gid));
}

/**
 * May `identity` call `method` (a full name "package.Service/Method") on `target`? Precondition: every
 * pattern and scope in `policy` is valid (config and API input are validated before they become rules).
 * With `target.resource` null the answer is the method-level one: allowed when some allow rule could apply
 * and no deny applies to every resource; the caller must then check each resource (or filter what it shows).
 */
export function decide(policy: Policy, identity: string, method: string, target: Target = {}): Decision {
  if ((policy.parentOnly ?? []).some((p) => matches(p, method))) {
    return target.fromParent ? { allowed: true, reason: 'parent' } : { allowed: false, reason: 'parent-only' };
  }
  if (target.fromParent && PARENT_AGENT_METHODS.some((p) => matches(p, method))) return { allowed: true, reason: 'parent' };
  if (policy.admins.has(identity)) return { allowed: true, reason: 'admin' };
  if (policy.open.some((p) => matches(p, method))) return { allowed: true, reason: 'open' };
  if (policy.adminOnly.some((p) => matches(p, method))) return { allowed: false, reason: 'admin-only' };
  const own = policy.rules.filter((r) => r.identity === identity && matches(r.pattern, method) && onNode(r, target.node));
  const resource = target.resource === undefined ? {} : target.resource;
  if (resource === null) {
    const deny = own.find((r) => r.effect === 'deny' && !resourceScoped(r) && deniesRunAs(r, undefined));
    if (deny) return { allowed: false, reason: 'deny', rule: deny };
    const allow = own.find((r) => r.effect === 'allow');
    if (allow) return { allowed: true, reason: 'allow', rule: allow };
    return { allowed: false, reason: 'default', resource, scoped: [] };
  }
  const applicable = own.filter((r) => covering(r, resource));
  const deny = applicable.find((r) => r.effect === 'deny' && deniesRunAs(r, resource.runAs));
  if (deny) return { allowed: false, reason: 'deny', rule: deny };
  const allows = applicable.filter((r) => r.effect === 'allow');
  if (allows.length === 0) return { allowed: false, reason: 'default', resource, scoped: own.filter((r) => r.effect === 'allow') };
  const runAs = resource.runAs;
  if (runAs) {
    const allow = allows.find((r) => permitsRunAs(r, runAs));
    if (!allow) return { allowed: false, reason: 'run-as', resource: { ...resource, runAs }, rules: allows };
    return { allowed: true, reason: 'allow', rule: allow };
  }
  return { allowed: true, reason: 'allow', rule: allows[0]! };
}

/** "pod \"nova-web\"", "cell \"nova/web\"", "VM \"web\"" or "" for the node itself. */
export function describeResource(resource: Resource | null): string {
  if (resource?.pod !== undefined) return `pod "${resource.pod}"`;
  if (resource?.cell !== undefined) return `cell "${resource.cell}"`;
  if (resource?.vm !== undefined) return `VM "${resource.vm}"`;
  return '';
}

/** The CLI scope flags that grant exactly `resource`. */
function grantFlags(resource: Resource | null, runAs?: { uid: number; gid: number }): string {
  const flags = scopeFlags({
    // A pod is granted by its name (its cell comes with it).
    ...(resource?.pod !== undefined ? { pods: [resource.pod] } : resource?.cell !== undefined ? { cells: [resource.cell] } : {}),
    ...(resource?.vm !== undefined ? { vms: [resource.vm] } : {}),
    ...(runAs ? { uids: [String(runAs.uid)], ...(runAs.gid !== runAs.uid ? { gids: [String(runAs.gid)] } : {}) } : {}),
  });
  return flags ? ` ${flags}` : '';
}

/**
 * The PERMISSION_DENIED text for a refused call: who, what, why, and the command that changes it.
 * Precondition: `decision.allowed` is false.
 */
export function denialMessage(identity: string, method: string, decision: Decision & { allowed: false }): string {
  const who = `identity "${identity}" may not call ${method}`;
  switch (decision.reason) {
    case 'admin-only':
      if (IMAGE_CHANGE_METHODS.includes(method)) return `${who}: only identities in authz.admins (node config) may change the node's boot image`;
      return `${who}: only identities in authz.admins (node config) may change the policy`;
    case 'parent-only':
      return method === RENEW_IDENTITY
        ? `${who}: only this node's parent may renew the certificate it serves (it does before the certificate expires)`
        : `${who}: only this node's parent may set the rules it inherits (it pushes them after every policy change)`;
    case 'deny': {
      const rule = decision.rule;
      const scope = scopeFlags(rule.scope);
      const shownRule = `deny "${rule.pattern}"${scope ? ` ${scope}` : ''}`;
      if (rule.source === 'config') {
        return `${who}: denied by the rule ${shownRule} in the node config (authz.policy); deny wins over allow: remove that rule from the config to lift it`;
      }
      if (rule.source === 'parent') {
        return `${who}: denied by the rule ${shownRule} inherited from this node's parent; deny wins over allow: an admin can lift it at the node where it was written (see aer authz policy there)`;
      }
      const by = rule.createdBy ? ` (added by ${rule.createdBy})` : '';
      return `${who}: denied by the rule ${shownRule}${by}; deny wins over allow: an admin can lift it with: aer authz revoke ${shellWord(identity)} ${shellWord(rule.pattern)}`;
    }
    case 'default': {
      const what = describeResource(decision.resource);
      const grant = `an admin can grant it with: aer authz allow ${shellWord(identity)} ${shellWord(method)}${grantFlags(decision.resource)}`;
      if (decision.scoped.length === 0) {
        return `${who}${what ? ` on ${what}` : ''}: no rule allows it and non-admin identities are denied by default: ${grant}`;
      }
      const scopes = [...new Set(decision.scoped.map((r) => scopeFlags(r.scope) || '(everything)'))].join('; ');
      return `${who} on ${what || 'the node itself'}: its rules for this method cover only ${scopes}: ${grant}`;
    }
    case 'run-as': {
      const { uid, gid } = decision.resource.runAs;
      const as = uid === 0 ? 'uid 0 (root)' : gid === 0 ? `uid ${uid} with gid 0 (root's group)` : `uid ${uid}, gid ${gid}`;
      const pinned = decision.rules.map((r) => scopeFlags({ uids: r.scope?.uids ?? [], gids: r.scope?.gids ?? [] })).filter((f) => f !== '');
      const allowed = pinned.length ? `its rules allow only ${[...new Set(pinned)].join('; ')}` : 'non-admin identities run executables as a non-root user and group by default';
      const where = describeResource(decision.resource);
      return (
        `identity "${identity}" may not run executables as ${as}${where ? ` in ${where}` : ''}: ${allowed}: ` +
        `give the user to run as (${decision.resource.pod !== undefined ? 'a numeric user: aer pod run … --user 1000[:1000]' : 'aer cell start … --uid 1000 [--gid 1000]'}), or an admin can allow it with: ` +
        `aer authz allow ${shellWord(identity)} ${shellWord(method)}${grantFlags(decision.resource, decision.resource.runAs)}`
      );
    }
  }
}

/** Short reason for the audit log (the full message goes to the caller). */
export function decisionDetail(decision: Decision, method = ''): string {
  switch (decision.reason) {
    case 'admin':
    case 'open':
    case 'parent':
      return decision.reason;
    case 'admin-only':
      return IMAGE_CHANGE_METHODS.includes(method) ? 'denied: image changes are admin-only' : 'denied: policy edits are admin-only';
    case 'parent-only':
      return "denied: parent-only method";
    case 'default': {
      const what = describeResource(decision.resource);
      return `denied: no rule allows it${what ? ` on ${what}` : ''} (default deny)`;
    }
    case 'run-as':
      return `denied: may not run as uid ${decision.resource.runAs.uid} gid ${decision.resource.runAs.gid}`;
    case 'allow':
    case 'deny': {
      const scope = scopeFlags(decision.rule.scope);
      return `${decision.reason === 'allow' ? 'allowed' : 'denied'} by ${decision.rule.source} rule ${decision.rule.effect} ${decision.rule.pattern}${scope ? ` ${scope}` : ''}`;
    }
  }
}

/** Whether two scopes are the same (both normalized, see patterns.normalScope). */
function sameScope(a: RuleScope | undefined, b: RuleScope | undefined): boolean {
  return scopeFlags(a) === scopeFlags(b);
}

/**
 * Notes about a rule just added, when it cannot have the effect the admin probably expects: the identity is
 * an admin (rules do not restrict admins), an allow is shadowed by a deny covering it, or the pattern
 * touches open or admin-only methods. Pure; returns [] when the rule takes effect as written.
 */
export function ruleNotes(policy: Policy, identity: string, effect: Effect, pattern: string, scope?: RuleScope): string[] {
  const notes: string[] = [];
  if (policy.admins.has(identity)) notes.push(`"${identity}" is in authz.admins: rules do not restrict admins`);
  if (effect === 'allow') {
    for (const deny of policy.rules) {
      // Only denies that cover the whole new rule (no scope, or the same one) surely shadow it.
      if (deny.identity === identity && deny.effect === 'deny' && covers(deny.pattern, pattern) && (unscoped(deny.scope) || sameScope(deny.scope, scope))) {
        const flags = scopeFlags(deny.scope);
        notes.push(`still denied by the ${deny.source} rule deny "${deny.pattern}"${flags ? ` ${flags}` : ''} (deny wins over allow)`);
      }
    }
    if (policy.adminOnly.some((p) => !IMAGE_CHANGE_METHODS.includes(p) && covers(pattern, p))) notes.push('policy edits (AuthzService Allow/Deny/Revoke) stay admin-only');
    if (policy.adminOnly.some((p) => IMAGE_CHANGE_METHODS.includes(p) && covers(pattern, p))) notes.push('image changes (UpgradeService Upload/Rollback) stay admin-only');
    if (list(scope?.uids).some((r) => idWithin([r], 0))) notes.push(`executables of "${identity}" may run as root (uid 0) where this rule applies`);
  } else if (policy.open.some((p) => covers(pattern, p) || covers(p, pattern))) {
    notes.push('health checks and Discover stay open to every certificate of the node CA');
  }
  return notes;
}
