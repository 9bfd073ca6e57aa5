// Request validation for AuthzService: every field checked, errors name the field (INVALID_ARGUMENT).
import { AuraeError } from '../errors';
import type { AuditQuery } from './authz-store';
import { identityProblem, methodPatternProblem } from './patterns';

export const DEFAULT_AUDIT_LIMIT = 100;
export const MAX_AUDIT_LIMIT = 1000;

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

/** An identity and a method pattern (Allow, Deny). */
export function validateRuleRequest(request: { identity: string; method: string }): { identity: string; pattern: string } {
  return { identity: validateIdentity(request.identity), pattern: validatePattern(request.method) };
}

/** Revoke: an identity and an optional pattern (empty: all of its API rules). */
export function validateRevokeRequest(request: { identity: string; method: string }): { identity: string; pattern: string | null } {
  return { identity: validateIdentity(request.identity), pattern: request.method === '' ? null : validatePattern(request.method) };
}

/** GetPolicy: an optional identity filter. */
export function validatePolicyRequest(request: { identity: string }): string | undefined {
  return request.identity === '' ? undefined : validateIdentity(request.identity);
}

export function validateAuditRequest(request: { limit: number; identity: string; method: string; code: string; beforeId: number }): AuditQuery {
  if (!Number.isInteger(request.limit) || request.limit < 0 || request.limit > MAX_AUDIT_LIMIT) {
    throw new AuraeError('INVALID_ARGUMENT', `limit: between 1 and ${MAX_AUDIT_LIMIT}, or 0 for ${DEFAULT_AUDIT_LIMIT} (got ${request.limit})`);
  }
  if (!Number.isSafeInteger(request.beforeId) || request.beforeId < 0) {
    throw new AuraeError('INVALID_ARGUMENT', `before_id: a record id from an earlier page, or 0 for the newest (got ${request.beforeId})`);
  }
  if (request.code !== '' && !(STATUS_NAMES as readonly string[]).includes(request.code)) {
    const shown = [...request.code].length > 40 ? `${[...request.code].slice(0, 40).join('')}…` : request.code;
    throw new AuraeError('INVALID_ARGUMENT', `code: ${JSON.stringify(shown)} is not a gRPC status name: use one of ${STATUS_NAMES.join(', ')}`);
  }
  return {
    limit: request.limit === 0 ? DEFAULT_AUDIT_LIMIT : request.limit,
    ...(request.identity !== '' ? { identity: validateIdentity(request.identity) } : {}),
    ...(request.method !== '' ? { method: validatePattern(request.method) } : {}),
    ...(request.code !== '' ? { code: request.code } : {}),
    ...(request.beforeId !== 0 ? { beforeId: request.beforeId } : {}),
  };
}
