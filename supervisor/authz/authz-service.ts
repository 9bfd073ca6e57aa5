// aurae.authz.v0.AuthzService: decode → validate → the authz core. No logic here.
import {
  type AuthzServiceAllowResponse,
  type AuthzServiceDenyResponse,
  type AuthzServiceGetPolicyResponse,
  type AuthzServiceListAuditResponse,
  type AuthzServiceRevokeResponse,
  type AuthzServiceServer,
  type AuthzServiceSetParentRulesResponse,
  Effect as ProtoEffect,
  type PolicyRule as ProtoRule,
  RuleSource as ProtoSource,
} from '../gen/aurae/authz/v0/authz';
import { type RpcContext, unary } from '../server';
import type { Authz } from './authz';
import type { PolicyRule } from './policy';
import { scopeFlags } from './patterns';
import { validateAuditRequest, validateParentRules, validatePolicyRequest, validateRevokeRequest, validateRuleRequest } from './validation';

const SOURCES = { config: ProtoSource.RULE_SOURCE_CONFIG, api: ProtoSource.RULE_SOURCE_API, parent: ProtoSource.RULE_SOURCE_PARENT } as const;

const SERVICE = 'aurae.authz.v0.AuthzService';

export function toProtoRule(rule: PolicyRule): ProtoRule {
  return {
    identity: rule.identity,
    effect: rule.effect === 'allow' ? ProtoEffect.EFFECT_ALLOW : ProtoEffect.EFFECT_DENY,
    method: rule.pattern,
    source: SOURCES[rule.source],
    createdBy: rule.createdBy ?? '',
    createdAt: rule.createdAt ?? '',
    cells: [...(rule.scope?.cells ?? [])],
    vms: [...(rule.scope?.vms ?? [])],
    pods: [...(rule.scope?.pods ?? [])],
    nodes: [...(rule.scope?.nodes ?? [])],
    uids: [...(rule.scope?.uids ?? [])],
    gids: [...(rule.scope?.gids ?? [])],
  };
}

export function createAuthzService(ctx: RpcContext, authz: Authz): AuthzServiceServer {
  return {
    getPolicy: unary(ctx, {
      method: `${SERVICE}/GetPolicy`,
      access: 'read',
      validate: validatePolicyRequest,
      run: (identity, caller): AuthzServiceGetPolicyResponse => {
        // A tenant sees its own rules only, not who else may do what.
        const view = authz.policy(authz.readableIdentity(caller, identity, 'rules'));
        return { admins: view.admins, openMethods: view.open, adminOnlyMethods: view.adminOnly, parentOnlyMethods: view.parentOnly, rules: view.rules.map(toProtoRule) };
      },
    }),

    allow: unary(ctx, {
      method: `${SERVICE}/Allow`,
      access: 'admin',
      validate: validateRuleRequest,
      summary: ({ identity, pattern, scope }) => `allow ${identity} ${pattern}${scoped(scope)}`,
      run: ({ identity, pattern, scope }, caller): AuthzServiceAllowResponse => {
        const change = authz.allow(caller, identity, pattern, scope);
        return { changed: change.changed, rules: change.rules.map(toProtoRule), notes: change.notes };
      },
    }),

    deny: unary(ctx, {
      method: `${SERVICE}/Deny`,
      access: 'admin',
      validate: validateRuleRequest,
      summary: ({ identity, pattern, scope }) => `deny ${identity} ${pattern}${scoped(scope)}`,
      run: ({ identity, pattern, scope }, caller): AuthzServiceDenyResponse => {
        const change = authz.deny(caller, identity, pattern, scope);
        return { changed: change.changed, rules: change.rules.map(toProtoRule), notes: change.notes };
      },
    }),

    revoke: unary(ctx, {
      method: `${SERVICE}/Revoke`,
      access: 'admin',
      validate: validateRevokeRequest,
      summary: ({ identity, pattern, scope }) => `revoke ${identity} ${pattern ?? '(all API rules)'}${scope === null ? '' : scoped(scope)}`,
      run: ({ identity, pattern, scope }, caller): AuthzServiceRevokeResponse => {
        const result = authz.revoke(caller, identity, pattern, scope);
        return { removed: result.removed, rules: result.rules.map(toProtoRule), notes: result.notes };
      },
    }),

    listAudit: unary(ctx, {
      method: `${SERVICE}/ListAudit`,
      access: 'read',
      validate: validateAuditRequest,
      // id is a uint64 on the wire (bigint in the generated code); count (uint32) and firstTime map as they are.
      // A tenant sees the records of its own calls only (others' identities, methods and peers are theirs).
      run: (query, caller): AuthzServiceListAuditResponse => {
        const identity = authz.readableIdentity(caller, query.identity, 'audit records');
        const records = authz.listAudit({ ...query, ...(identity === undefined ? {} : { identity }) });
        return { records: records.map((r) => ({ ...r, id: BigInt(r.id) })) };
      },
    }),

    setParentRules: unary(ctx, {
      method: `${SERVICE}/SetParentRules`,
      access: 'admin',
      validate: (request: { rules: ProtoRule[] }) =>
        validateParentRules(request, (e) => (e === ProtoEffect.EFFECT_ALLOW ? 'allow' : e === ProtoEffect.EFFECT_DENY ? 'deny' : null)),
      summary: (rules) => `${rules.length} inherited rules`,
      run: (rules): AuthzServiceSetParentRulesResponse => ({ rules: authz.setParentRules(rules) }),
    }),
  };
}

/** " --cell 'nova/*' …" for the audit summary; "" when unscoped. */
function scoped(scope: Parameters<typeof scopeFlags>[0]): string {
  const flags = scopeFlags(scope);
  return flags ? ` ${flags}` : '';
}

