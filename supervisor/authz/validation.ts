// Request validation for AuthzService: every field checked, errors name the field (INVALID_ARGUMENT).
import { AuraeError, checkInt64, MAX_SAFE } from '../errors';
import type { AuditQuery } from './authz-store';
import { type RuleScope, SCOPE_FIELDS, identityProblem, methodPatternProblem, normalScope, scopeProblem, unscoped } from './patterns';
import type { InheritedRule } from './rule-store';
import { DEFAULTS, RANGES } from '../validation';

export const DEFAULT_AUDIT_LIMIT = DEFAULTS.auditLimit;
export const MAX_AUDIT_LIMIT = RANGES.auditLimit[1];

/** gRPC status names, the values of AuditRecord.code. */
export const STATUS_NAMES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

function invalid(problem: string | null): void {
  if (problem !== null) throw new AuraeError('INVALID_ARGUMENT', problem);
}

export function validateIdentity(identity: string, field = 'identity'): string {
  invalid(identityProblem(identity, field));
  return identity;
}

export function validatePattern(pattern: string, field = 'method'): string {
  invalid(methodPatternProblem(pattern, field));
  return pattern;
}

/** The scope lists of a request or rule message (absent lists: empty). */
export type ScopeMessage = { [K in (typeof SCOPE_FIELDS)[number]]?: readonly string[] };

/** A rule's resource scope: every entry checked, the error names the field and entry (e.g. "cells[0]: …"). */
export function validateScope(message: ScopeMessage, prefix = ''): RuleScope {
  const scope: RuleScope = Object.fromEntries(SCOPE_FIELDS.map((f) => [f, [...(message[f] ?? [])]]));
  invalid(scopeProblem(scope, prefix));
  return normalScope(scope);
}

/** An identity, a method pattern and the resources it applies to (Allow, Deny). */
export function validateRuleRequest(request: { identity: string; method: string } & ScopeMessage): { identity: string; pattern: string; scope: RuleScope } {
  return { identity: validateIdentity(request.identity), pattern: validatePattern(request.method), scope: validateScope(request) };
}

/** Most rules one push may carry (a node's whole effective policy). */
export const MAX_PARENT_RULES = 10_000;

/** SetParentRules: the parent's effective rules, each checked as an API rule would be. */
export function validateParentRules(request: { rules: ReadonlyArray<{ identity: string; effect: number; method: string } & ScopeMessage> }, effectOf: (effect: number) => 'allow' | 'deny' | null): InheritedRule[] {
  if (request.rules.length > MAX_PARENT_RULES) throw new AuraeError('INVALID_ARGUMENT', `rules: at most ${MAX_PARENT_RULES} (got ${request.rules.length})`);
  return request.rules.map((rule, i) => {
    const effect = effectOf(rule.effect);
    if (effect === null) throw new AuraeError('INVALID_ARGUMENT', `rules[${i}].effect: must be EFFECT_ALLOW or EFFECT_DENY (got ${rule.effect})`);
    const scope = validateScope(rule, `rules[${i}].`);
    return { identity: validateIdentity(rule.identity, `rules[${i}].identity`), effect, method: validatePattern(rule.method, `rules[${i}].method`), ...scope } as InheritedRule;
  });
}

/**
 * Revoke: an identity, an optional pattern (empty: all of its API rules) and an optional scope (none: the rules
 * of every scope; given: only the rules of exactly that scope).
 */
export function validateRevokeRequest(request: { identity: string; method: string } & ScopeMessage): { identity: string; pattern: string | null; scope: RuleScope | null } {
  const scope = validateScope(request);
  return {
    identity: validateIdentity(request.identity),
    pattern: request.method === '' ? null : validatePattern(request.method),
    scope: unscoped(scope) ? null : scope,
  };
}

/** GetPolicy: an optional identity filter. */
export function validatePolicyRequest(request: { identity: string }): string | undefined {
  return request.identity === '' ? undefined : validateIdentity(request.identity);
}

export function validateAuditRequest(request: { limit: number; identity: string; method: string; code: string; beforeId: bigint }): AuditQuery {
  if (!Number.isInteger(request.limit) || request.limit < 0 || request.limit > MAX_AUDIT_LIMIT) {
    throw new AuraeError('INVALID_ARGUMENT', `limit: between 1 and ${MAX_AUDIT_LIMIT}, or 0 for ${DEFAULT_AUDIT_LIMIT} (got ${request.limit})`);
  }
  const beforeId = checkInt64('before_id', request.beforeId, 0, MAX_SAFE, 'a record id from an earlier page, or 0 for the newest');
  if (request.code !== '' && !(STATUS_NAMES as readonly string[]).includes(request.code)) {
    const shown = [...request.code].length > 40 ? `${[...request.code].slice(0, 40).join('')}…` : request.code;
    throw new AuraeError('INVALID_ARGUMENT', `code: ${JSON.stringify(shown)} is not a gRPC status name: use one of ${STATUS_NAMES.join(', ')}`);
  }
  return {
    limit: request.limit === 0 ? DEFAULT_AUDIT_LIMIT : request.limit,
    ...(request.identity !== '' ? { identity: validateIdentity(request.identity) } : {}),
    ...(request.method !== '' ? { method: validatePattern(request.method) } : {}),
    ...(request.code !== '' ? { code: request.code } : {}),
    ...(beforeId !== 0 ? { beforeId } : {}),
  };
}
