// aurae.authz.v0.AuthzService: decode → validate → the authz core. No logic here.
import {
  type AuthzServiceAllowResponse,
  type AuthzServiceDenyResponse,
  type AuthzServiceGetPolicyResponse,
  type AuthzServiceListAuditResponse,
  type AuthzServiceRevokeResponse,
  type AuthzServiceServer,
  Effect as ProtoEffect,
  type PolicyRule as ProtoRule,
  RuleSource as ProtoSource,
} from '../gen/aurae/authz/v0/authz';
import { type RpcContext, unary } from '../server';
import type { Authz } from './authz';
import type { PolicyRule } from './policy';
import { validateAuditRequest, validatePolicyRequest, validateRevokeRequest, validateRuleRequest } from './validation';

const SERVICE = 'aurae.authz.v0.AuthzService';

export function toProtoRule(rule: PolicyRule): ProtoRule {
  return {
    identity: rule.identity,
    effect: rule.effect === 'allow' ? ProtoEffect.EFFECT_ALLOW : ProtoEffect.EFFECT_DENY,
    method: rule.pattern,
    source: rule.source === 'config' ? ProtoSource.RULE_SOURCE_CONFIG : ProtoSource.RULE_SOURCE_API,
    createdBy: rule.createdBy ?? '',
    createdAt: rule.createdAt ?? '',
  };
}

export function createAuthzService(ctx: RpcContext, authz: Authz): AuthzServiceServer {
  return {
    getPolicy: unary(ctx, {
      method: `${SERVICE}/GetPolicy`,
      access: 'read',
      validate: validatePolicyRequest,
      run: (identity): AuthzServiceGetPolicyResponse => {
        const view = authz.policy(identity);
        return { admins: view.admins, openMethods: view.open, adminOnlyMethods: view.adminOnly, rules: view.rules.map(toProtoRule) };
      },
    }),

    allow: unary(ctx, {
      method: `${SERVICE}/Allow`,
      access: 'admin',
      validate: validateRuleRequest,
      summary: ({ identity, pattern }) => `allow ${identity} ${pattern}`,
      run: ({ identity, pattern }, caller): AuthzServiceAllowResponse => {
        const change = authz.allow(caller, identity, pattern);
        return { changed: change.changed, rules: change.rules.map(toProtoRule), notes: change.notes };
      },
    }),

    deny: unary(ctx, {
      method: `${SERVICE}/Deny`,
      access: 'admin',
      validate: validateRuleRequest,
      summary: ({ identity, pattern }) => `deny ${identity} ${pattern}`,
      run: ({ identity, pattern }, caller): AuthzServiceDenyResponse => {
        const change = authz.deny(caller, identity, pattern);
        return { changed: change.changed, rules: change.rules.map(toProtoRule), notes: change.notes };
      },
    }),

    revoke: unary(ctx, {
      method: `${SERVICE}/Revoke`,
      access: 'admin',
      validate: validateRevokeRequest,
      summary: ({ identity, pattern }) => `revoke ${identity} ${pattern ?? '(all API rules)'}`,
      run: ({ identity, pattern }, caller): AuthzServiceRevokeResponse => {
        const result = authz.revoke(caller, identity, pattern);
        return { removed: result.removed, rules: result.rules.map(toProtoRule), notes: result.notes };
      },
    }),

    listAudit: unary(ctx, {
      method: `${SERVICE}/ListAudit`,
      access: 'read',
      validate: validateAuditRequest,
      run: (query): AuthzServiceListAuditResponse => ({ records: authz.listAudit(query) }),
    }),
  };
}
