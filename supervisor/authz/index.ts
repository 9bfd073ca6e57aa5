// Identity and authorization: the policy decision for every RPC, policy edits (aurae.authz.v0.AuthzService),
// and the audit log of mutating and refused calls. Callers are identified by their certificate CN (server/caller).
export { type Authz, type AuthzOptions, type ConfigRule, type PolicyView, type RevokeResult, type RuleChange, configPolicyRules, createAuthz, methodNames } from './authz';
export { type AuditEntry, type AuditQuery, type AuditRecord, type AuthzStore, AUTHZ_MIGRATIONS, createAuthzStore } from './authz-store';
export { createAuthzService } from './authz-service';
export { identityProblem, matches, methodPatternProblem } from './patterns';
export { ADMIN_ONLY_METHODS, type Decision, type Effect, OPEN_METHODS, type Policy, type PolicyRule, type RuleSource, decide, denialMessage } from './policy';
export { AuthzServiceService } from '../gen/aurae/authz/v0/authz';

