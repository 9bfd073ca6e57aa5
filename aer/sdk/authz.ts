// client.authz: the node's authorization policy and audit log (aurae.authz.v0.AuthzService), with plain
// string unions instead of the generated enums.
import { type Metadata as GrpcMetadata, Metadata } from '@grpc/grpc-js';
import { SCOPE_FIELDS, type ScopeField } from '../../supervisor/authz/patterns';
import type { SdkCallContext } from './call-context';
import { fromWireInt, toWireInt } from './int64';
import {
  type AuditRecord as ProtoAuditRecord,
  AuthzServiceClient,
  Effect as ProtoEffect,
  type PolicyRule as ProtoRule,
  RuleSource as ProtoSource,
} from '../../supervisor/gen/aurae/authz/v0/authz';

export type AuthzEffect = 'allow' | 'deny';
export type AuthzRuleSource = 'config' | 'api' | 'parent';

/**
 * The resources a rule applies to; absent or empty lists: every resource.
 * cells: "*", "nova" (nova and the cells below it), "nova/*" (only below nova); vms: "*", "web", "nova-*";
 * pods: "*", "web", "nova-*" (a pod's cell, logs and events come with it);
 * nodes: "aurae/web" (that node and below), "aurae/*"; uids/gids: "1000" or "1000-1999", the users and groups
 * executables may run as (default: anything but root).
 */
export type AuthzScope = Partial<Pick<ProtoRule, ScopeField>>;

/** A rule of the policy: the API's PolicyRule, its effect and source by name and its scope lists together. */
export interface AuthzRule extends Pick<ProtoRule, 'identity' | 'method'>, Partial<Pick<ProtoRule, 'createdBy' | 'createdAt'>> {
  effect: AuthzEffect;
  /** 'config': the node config (read-only through the API); 'api': added with allow/deny; 'parent': inherited. */
  source: AuthzRuleSource;
  /** The resources it applies to; absent: all. */
  scope?: AuthzScope;
}

export interface AuthzPolicy {
  admins: string[];
  /** Patterns every certificate of the node CA may call (health, Discover). */
  openMethods: string[];
  /** Patterns only admins may call (policy edits). */
  adminOnlyMethods: string[];
  rules: AuthzRule[];
}

export interface AuthzChange {
  /** false when the rule was already there. */
  changed: boolean;
  /** The identity's effective rules after the change. */
  rules: AuthzRule[];
  /** Why the change may not have the intended effect. */
  notes: string[];
}

export interface AuthzRevocation {
  removed: number;
  rules: AuthzRule[];
  notes: string[];
}

/**
 * One audited call. `node` is set on the node that forwarded the call to a descendant (its path); `via` when the
 * call came through this node's parent on behalf of `identity` (the parent's identity).
 */
export type AuditRecord = Omit<ProtoAuditRecord, 'id'> & { id: number };

export interface AuditQuery {
  /** Within RANGES.auditLimit (1-1000); default DEFAULTS.auditLimit (100). */
  limit?: number;
  identity?: string;
  /** A method pattern. */
  method?: string;
  /** A gRPC status name, e.g. "PERMISSION_DENIED". */
  code?: string;
  /** Only records older than this id (paging). */
  beforeId?: number;
}

export interface AuthzApi {
  /** Admins, open/admin-only methods and the effective rules (of one identity when given). */
  policy(options?: { identity?: string }): Promise<AuthzPolicy>;
  /** Allow `identity` the method pattern `method`, on the resources of `scope` (default all); admins only. */
  allow(identity: string, method: string, scope?: AuthzScope): Promise<AuthzChange>;
  /** Deny `identity` the method pattern `method` (on `scope`'s resources); admins only; deny wins over allow. */
  deny(identity: string, method: string, scope?: AuthzScope): Promise<AuthzChange>;
  /**
   * One identity's rules, in the seeds' style: `const nova = client.authz.identity('nova');
   * await nova.allow('aurae.cells.v0.CellService/*', { cells: ['nova/*'] })`; her pods only:
   * `await nova.allow('aurae.pods.v0.PodService/*', { pods: ['nova-*'], uids: ['1000-1999'] })`.
   */
  identity(name: string): AuthzIdentity;
  /**
   * Remove `identity`'s API rules for `method`, or all of them (admins only): of every scope, or only those of
   * exactly `scope` when given.
   */
  revoke(identity: string, method?: string, scope?: AuthzScope): Promise<AuthzRevocation>;
  /** Audit records, newest first. */
  audit(query?: AuditQuery): Promise<AuditRecord[]>;
}

/** A handle on one identity's rules (AuthzApi.identity). */
export interface AuthzIdentity {
  readonly name: string;
  allow(method: string, scope?: AuthzScope): Promise<AuthzChange>;
  deny(method: string, scope?: AuthzScope): Promise<AuthzChange>;
  revoke(method?: string, scope?: AuthzScope): Promise<AuthzRevocation>;
  rules(): Promise<AuthzRule[]>;
}

/** The scope lists of a request (empty lists for absent ones, as the wire has them). */
function scopeFields(scope: AuthzScope = {}): Required<AuthzScope> {
  return { cells: scope.cells ?? [], vms: scope.vms ?? [], pods: scope.pods ?? [], nodes: scope.nodes ?? [], uids: scope.uids ?? [], gids: scope.gids ?? [] };
}

function scopeOf(rule: ProtoRule): AuthzScope | undefined {
  const scope: AuthzScope = {};
  for (const f of SCOPE_FIELDS) if ((rule[f] ?? []).length) scope[f] = [...rule[f]];
  return Object.keys(scope).length ? scope : undefined;
}

const SOURCES: Record<number, AuthzRuleSource> = { [ProtoSource.RULE_SOURCE_CONFIG]: 'config', [ProtoSource.RULE_SOURCE_PARENT]: 'parent' };

export function fromProtoRule(rule: ProtoRule): AuthzRule {
  const scope = scopeOf(rule);
  return {
    identity: rule.identity,
    effect: rule.effect === ProtoEffect.EFFECT_DENY ? 'deny' : 'allow',
    method: rule.method,
    source: SOURCES[rule.source] ?? 'api',
    ...(scope ? { scope } : {}),
    ...(rule.createdBy ? { createdBy: rule.createdBy } : {}),
    ...(rule.createdAt ? { createdAt: rule.createdAt } : {}),
  };
}

export function createAuthzApi(ctx: SdkCallContext): AuthzApi {
  const client = new AuthzServiceClient(ctx.address, ctx.credentials, ctx.options);
  const md = (): GrpcMetadata => new Metadata();
  const name = (method: string) => `aurae.authz.v0.AuthzService/${method}`;
  const api: AuthzApi = {
    identity: (identity) => ({
      name: identity,
      allow: (method, scope) => api.allow(identity, method, scope),
      deny: (method, scope) => api.deny(identity, method, scope),
      revoke: (method, scope) => api.revoke(identity, method, scope),
      rules: async () => (await api.policy({ identity })).rules,
    }),
    policy: async (options = {}) => {
      const r = await ctx.unary<{ admins: string[]; openMethods: string[]; adminOnlyMethods: string[]; rules: ProtoRule[] }>(name('GetPolicy'), (done) =>
        client.getPolicy({ identity: options.identity ?? '' }, md(), ctx.callOptions(), done),
      );
      return { admins: r.admins, openMethods: r.openMethods, adminOnlyMethods: r.adminOnlyMethods, rules: r.rules.map(fromProtoRule) };
    },
    allow: async (identity, method, scope) => {
      const r = await ctx.unary<{ changed: boolean; rules: ProtoRule[]; notes: string[] }>(name('Allow'), (done) =>
        client.allow({ identity, method, ...scopeFields(scope) }, md(), ctx.callOptions(), done),
      );
      return { changed: r.changed, rules: r.rules.map(fromProtoRule), notes: r.notes };
    },
    deny: async (identity, method, scope) => {
      const r = await ctx.unary<{ changed: boolean; rules: ProtoRule[]; notes: string[] }>(name('Deny'), (done) =>
        client.deny({ identity, method, ...scopeFields(scope) }, md(), ctx.callOptions(), done),
      );
      return { changed: r.changed, rules: r.rules.map(fromProtoRule), notes: r.notes };
    },
    revoke: async (identity, method, scope) => {
      const r = await ctx.unary<{ removed: number; rules: ProtoRule[]; notes: string[] }>(name('Revoke'), (done) =>
        client.revoke({ identity, method: method ?? '', ...scopeFields(scope) }, md(), ctx.callOptions(), done),
      );
      return { removed: r.removed, rules: r.rules.map(fromProtoRule), notes: r.notes };
    },
    audit: async (query = {}) => {
      const r = await ctx.unary<{ records: ProtoAuditRecord[] }>(name('ListAudit'), (done) =>
        client.listAudit(
          { limit: query.limit ?? 0, identity: query.identity ?? '', method: query.method ?? '', code: query.code ?? '', beforeId: toWireInt('beforeId', query.beforeId ?? 0) },
          md(),
          ctx.callOptions(),
          done,
        ),
      );
      return r.records.map((record) => ({ ...record, id: fromWireInt(record.id) }));
    },
  };
  return api;
}
