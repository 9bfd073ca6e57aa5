// Identity and authorization: the policy decision for every RPC, policy edits (aurae.authz.v0.AuthzService),
// and the audit log of mutating and refused calls. Callers are identified by their certificate CN (server/caller).
// Rules name methods and, optionally, the resources they apply to (cells, VMs, pods, nodes of the tree, the uids and
// gids executables run as; patterns.ts); handlers declare the resource each request touches (server/rpc.ts).
// Spawned nodes inherit their parent's effective rules at boot and on every change (rule-store.ts, push.ts).
export { type Authz, type AuthzOptions, type ConfigRule, type PolicyView, type RevokeResult, type RuleChange, configPolicyRules, createAuthz, methodNames } from './authz';
export { type AuthzStore, AUTHZ_MIGRATIONS, createAuthzStore } from './authz-store';
export { AUDIT_MIGRATIONS, type AuditEntry, type AuditLog, type AuditQuery, type AuditRecord, REFUSAL_CODES, createAuditLog } from './audit-log';
export { createAuthzService } from './authz-service';
export { type ParentRulePusher, createParentRulePusher } from './push';
export { type InheritedRule, createRuleStore } from './rule-store';
export { identityProblem, matches, methodPatternProblem } from './patterns';
export { ADMIN_ONLY_METHODS, type Decision, type Effect, OPEN_METHODS, PARENT_ONLY_METHODS, type Policy, type PolicyRule, type Resource, type RuleSource, type Target, decide, denialMessage } from './policy';
export { AuthzServiceService } from '../gen/aurae/authz/v0/authz';

