// client.authz: the node's authorization policy and audit log (aurae.authz.v0.AuthzService), with plain
// string unions instead of the generated enums.
import { type Metadata as GrpcMetadata, Metadata } from '@grpc/grpc-js';
import type { SdkCallContext } from './call-context';
import {
  type AuditRecord as ProtoAuditRecord,
  AuthzServiceClient,
  Effect as ProtoEffect,
  type PolicyRule as ProtoRule,
  RuleSource as ProtoSource,
} from '../../supervisor/gen/aurae/authz/v0/authz';

export type AuthzEffect = 'allow' | 'deny';
export type AuthzRuleSource = 'config' | 'api';

export interface AuthzRule {
  identity: string;
  effect: AuthzEffect;
  /** "*", "package.Service/*" or "package.Service/Method". */
  method: string;
  /** 'config': the node config (read-only through the API); 'api': added with allow/deny. */
  source: AuthzRuleSource;
  /** API rules: who added it and when (RFC 3339). */
  createdBy?: string;
  createdAt?: string;
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
export type AuditRecord = ProtoAuditRecord;

export interface AuditQuery {
  /** 1-1000; default 100. */
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
  /** Allow `identity` the method pattern `method` (admins only). */
  allow(identity: string, method: string): Promise<AuthzChange>;
  /** Deny `identity` the method pattern `method` (admins only); deny wins over allow. */
  deny(identity: string, method: string): Promise<AuthzChange>;
  /** Remove `identity`'s API rules for `method`, or all of them (admins only). */
  revoke(identity: string, method?: string): Promise<AuthzRevocation>;
  /** Audit records, newest first. */
  audit(query?: AuditQuery): Promise<AuditRecord[]>;
}

export function fromProtoRule(rule: ProtoRule): AuthzRule {
  return {
    identity: rule.identity,
    effect: rule.effect === ProtoEffect.EFFECT_DENY ? 'deny' : 'allow',
    method: rule.method,
    source: rule.source === ProtoSource.RULE_SOURCE_CONFIG ? 'config' : 'api',
    ...(rule.createdBy ? { createdBy: rule.createdBy } : {}),
    ...(rule.createdAt ? { createdAt: rule.createdAt } : {}),
  };
}

export function createAuthzApi(ctx: SdkCallContext): AuthzApi {
  const client = new AuthzServiceClient(ctx.address, ctx.credentials, ctx.options);
  const md = (): GrpcMetadata => new Metadata();
  const name = (method: string) => `aurae.authz.v0.AuthzService/${method}`;
  return {
    policy: async (options = {}) => {
      const r = await ctx.unary<{ admins: string[]; openMethods: string[]; adminOnlyMethods: string[]; rules: ProtoRule[] }>(name('GetPolicy'), (done) =>
        client.getPolicy({ identity: options.identity ?? '' }, md(), ctx.callOptions(), done),
      );
      return { admins: r.admins, openMethods: r.openMethods, adminOnlyMethods: r.adminOnlyMethods, rules: r.rules.map(fromProtoRule) };
    },
    allow: async (identity, method) => {
      const r = await ctx.unary<{ changed: boolean; rules: ProtoRule[]; notes: string[] }>(name('Allow'), (done) =>
        client.allow({ identity, method }, md(), ctx.callOptions(), done),
      );
      return { changed: r.changed, rules: r.rules.map(fromProtoRule), notes: r.notes };
    },
    deny: async (identity, method) => {
      const r = await ctx.unary<{ changed: boolean; rules: ProtoRule[]; notes: string[] }>(name('Deny'), (done) =>
        client.deny({ identity, method }, md(), ctx.callOptions(), done),
      );
      return { changed: r.changed, rules: r.rules.map(fromProtoRule), notes: r.notes };
    },
    revoke: async (identity, method) => {
      const r = await ctx.unary<{ removed: number; rules: ProtoRule[]; notes: string[] }>(name('Revoke'), (done) =>
        client.revoke({ identity, method: method ?? '' }, md(), ctx.callOptions(), done),
      );
      return { removed: r.removed, rules: r.rules.map(fromProtoRule), notes: r.notes };
    },
    audit: async (query = {}) => {
      const r = await ctx.unary<{ records: ProtoAuditRecord[] }>(name('ListAudit'), (done) =>
        client.listAudit(
          { limit: query.limit ?? 0, identity: query.identity ?? '', method: query.method ?? '', code: query.code ?? '', beforeId: query.beforeId ?? 0 },
          md(),
          ctx.callOptions(),
          done,
        ),
      );
      return r.records;
    },
  };
}
