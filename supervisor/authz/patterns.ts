// The vocabulary of the policy: identities (client certificate CNs) and method patterns. Pure and
// dependency-free, because the node config schema validates its authz.policy with the same checks.
//
// A method pattern is one of
//   "*"                          every method of every service
//   "package.Service/*"          every method of one service, e.g. "aurae.node.v0.NodeService/*"
//   "package.Service/Method"     one method, e.g. "aurae.node.v0.NodeService/Shutdown"
// Names are matched exactly (case-sensitive), as gRPC routes them.
import { DNS_LABEL, DNS_LABEL_RULE, MAX_CELL_DEPTH, MAX_NODE_DEPTH, MAX_PATH_CHARS, RANGES, shown } from '../validation';

/** Longest method pattern accepted (gRPC method names here are well under 100 characters). */
export const MAX_PATTERN_CHARS = 256;
/** As for client certificates (supervisor/pki): the CN is the identity. */
export const MAX_IDENTITY_CHARS = 64;

// A protobuf identifier; a service is a package (one or more identifiers) plus the service identifier.
const IDENT = '[A-Za-z_][A-Za-z0-9_]*';
const SERVICE = new RegExp(`^${IDENT}(\\.${IDENT})+$`);
const METHOD = new RegExp(`^${IDENT}$`);
/** Printable ASCII, no leading or trailing space: the identities supervisor/pki issues. */
const IDENTITY = /^[\x21-\x7e]([\x20-\x7e]{0,62}[\x21-\x7e])?$/;

/** Why `identity` is not a valid identity, or null. `field` names it in the message. */
export function identityProblem(identity: string, field = 'identity'): string | null {
  if (identity === '') return `${field}: must not be empty: give the client certificate's common name, e.g. "nova"`;
  const chars = [...identity];
  if (chars.length > MAX_IDENTITY_CHARS) return `${field}: at most ${MAX_IDENTITY_CHARS} characters (got ${chars.length})`;
  if (!IDENTITY.test(identity)) {
    const bad = chars.findIndex((c) => !/[\x20-\x7e]/.test(c));
    const where =
      bad === -1
        ? 'must not start or end with a space'
        : `character ${bad + 1} (U+${chars[bad]!.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}) is not printable ASCII`;
    return `${field}: ${where}: identities are client certificate common names of 1-${MAX_IDENTITY_CHARS} printable ASCII characters`;
  }
  return null;
}

/** Why `pattern` is not a valid method pattern, or null. `field` names it in the message. */
export function methodPatternProblem(pattern: string, field = 'method'): string | null {
  const usage = 'use "*", "package.Service/*" or "package.Service/Method", e.g. "aurae.node.v0.NodeService/Shutdown"';
  if (pattern === '') return `${field}: must not be empty: ${usage}`;
  const chars = [...pattern];
  if (chars.length > MAX_PATTERN_CHARS) return `${field}: at most ${MAX_PATTERN_CHARS} characters (got ${chars.length})`;
  const bad = chars.findIndex((c) => !/[\x21-\x7e]/.test(c));
  if (bad !== -1) {
    const code = chars[bad]!.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    return `${field}: character ${bad + 1} (U+${code}) is not allowed in a method pattern: ${usage}`;
  }
  if (pattern === '*') return null;
  const slash = pattern.indexOf('/');
  if (slash === -1) return `${field}: "${pattern}" has no "/": ${usage}`;
  const service = pattern.slice(0, slash);
  const method = pattern.slice(slash + 1);
  if (!SERVICE.test(service)) return `${field}: "${service}" is not a full service name (package.Service, e.g. aurae.node.v0.NodeService): ${usage}`;
  if (method !== '*' && !METHOD.test(method)) return `${field}: "${method}" is not a method name (letters, digits, "_") or "*": ${usage}`;
  return null;
}

/** Whether `pattern` (valid) matches the full method name `method` ("package.Service/Method"). */
export function matches(pattern: string, method: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('/*')) return method.startsWith(pattern.slice(0, -1));
  return pattern === method;
}

/** Whether every method `inner` matches is also matched by `outer` (both valid patterns). */
export function covers(outer: string, inner: string): boolean {
  if (outer === '*') return true;
  if (inner === '*') return false;
  if (outer.endsWith('/*')) return inner.startsWith(outer.slice(0, -1));
  return outer === inner;
}

/** `word` as a POSIX shell word: as is when plainly safe, else single-quoted (hints users can paste). */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9._/:@=+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------------------------------------------------------
// Resource scopes. A rule may name the resources it applies to, besides its methods:
//   cells  cell path patterns: "*" every cell, "nova" the cell nova and every cell below it, "nova/*" only the
//          cells below nova (so a tenant can be confined under a cell an admin sized for her)
//   vms    child VM names on the node: "*", an exact name "web", or a prefix "nova-*"
//   pods   pod names on the node, as VMs: "*", "web", or a prefix "nova-*" (pod names are DNS labels, so a
//          tenant's pods share a name prefix rather than a cell path; a pod's own cell is covered with it)
//   nodes  node path patterns, as cells: "*", "aurae/web" (that node and its descendants), "aurae/*" (only
//          the descendants of aurae)
//   uids, gids  the users/groups executables may run as: "1000", "1000-1999"
// No scope (empty lists) means every resource, as rules without scopes always did.

/** At most this many entries in one scope list (rules are read on every call). */
export const MAX_SCOPE_ENTRIES = 32;
/** Largest uid/gid (as executables accept: 2^32 - 2). */
export const MAX_ID = RANGES.id[1];

const VM_PREFIX = /^[a-z0-9][a-z0-9-]{0,61}\*$/;

/** A rule's resource scope; absent or empty lists do not restrict. */
export interface RuleScope {
  cells?: readonly string[];
  vms?: readonly string[];
  pods?: readonly string[];
  nodes?: readonly string[];
  uids?: readonly string[];
  gids?: readonly string[];
}

export const SCOPE_FIELDS = ['cells', 'vms', 'pods', 'nodes', 'uids', 'gids'] as const;
export type ScopeField = (typeof SCOPE_FIELDS)[number];

/** Why `pattern` is not a valid path pattern ("*", "a/b", "a/b/*"), or null. `what` is "cell" or "node". */
function pathPatternProblem(pattern: string, field: string, what: 'cell' | 'node'): string | null {
  const example = what === 'cell' ? '"nova" (nova and the cells below it), "nova/*" (only the cells below nova) or "*"' : '"aurae/web" (that node and its descendants), "aurae/*" (only the descendants of aurae) or "*"';
  if (pattern === '*') return null;
  if (pattern.length > MAX_PATH_CHARS) return `${field}: ${shown(pattern)} is longer than ${MAX_PATH_CHARS} characters: use ${example}`;
  const base = pattern.endsWith('/*') ? pattern.slice(0, -2) : pattern;
  const labels = base.split('/');
  if (labels.length > (what === 'cell' ? MAX_CELL_DEPTH : MAX_NODE_DEPTH + 1) || !labels.every((l) => DNS_LABEL.test(l))) {
    return `${field}: ${shown(pattern)} is not a ${what} path pattern: DNS labels (${DNS_LABEL_RULE}) joined by "/", optionally ending in "/*": use ${example}`;
  }
  return null;
}

export function cellPatternProblem(pattern: string, field = 'cells'): string | null {
  return pathPatternProblem(pattern, field, 'cell');
}

export function nodePatternProblem(pattern: string, field = 'nodes'): string | null {
  return pathPatternProblem(pattern, field, 'node');
}

export function vmPatternProblem(pattern: string, field = 'vms'): string | null {
  if (pattern === '*' || DNS_LABEL.test(pattern) || VM_PREFIX.test(pattern)) return null;
  return `${field}: ${shown(pattern)} is not a VM name pattern: use a VM name (a DNS label, e.g. "web"), a prefix ending in "*" (e.g. "nova-*") or "*"`;
}

export function podPatternProblem(pattern: string, field = 'pods'): string | null {
  if (pattern === '*' || DNS_LABEL.test(pattern) || VM_PREFIX.test(pattern)) return null;
  return `${field}: ${shown(pattern)} is not a pod name pattern: use a pod name (a DNS label, e.g. "web"), a prefix ending in "*" (e.g. "nova-*") or "*"`;
}

/** [min, max] of "N" or "N-M", or null when malformed. */
export function parseIdRange(range: string): [number, number] | null {
  const m = /^(\d{1,10})(?:-(\d{1,10}))?$/.exec(range);
  if (!m) return null;
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (min > MAX_ID || max > MAX_ID || min > max) return null;
  return [min, max];
}

export function idRangeProblem(range: string, field = 'uids'): string | null {
  if (parseIdRange(range) !== null) return null;
  return `${field}: ${shown(range)} is not an id range: use "N" or "N-M" with 0 <= N <= M <= ${MAX_ID}, e.g. "1000-1999"`;
}

const SCOPE_CHECKS: Record<ScopeField, (value: string, field: string) => string | null> = {
  cells: cellPatternProblem,
  vms: vmPatternProblem,
  pods: podPatternProblem,
  nodes: nodePatternProblem,
  uids: idRangeProblem,
  gids: idRangeProblem,
};

/** Why `scope` is not valid (the first problem, naming the field, e.g. "cells[1]: …"), or null. */
export function scopeProblem(scope: RuleScope, prefix = ''): string | null {
  for (const field of SCOPE_FIELDS) {
    const values = scope[field] ?? [];
    if (values.length > MAX_SCOPE_ENTRIES) return `${prefix}${field}: at most ${MAX_SCOPE_ENTRIES} entries (got ${values.length})`;
    for (let i = 0; i < values.length; i++) {
      const problem = SCOPE_CHECKS[field](values[i]!, `${prefix}${field}[${i}]`);
      if (problem !== null) return problem;
    }
  }
  return null;
}

/** The scope with empty lists dropped, duplicates removed and entries sorted: one spelling per meaning. */
export function normalScope(scope: RuleScope | undefined): RuleScope {
  const out: { -readonly [K in ScopeField]?: string[] } = {};
  for (const field of SCOPE_FIELDS) {
    const values = scope?.[field] ?? [];
    if (values.length) out[field] = [...new Set(values)].sort();
  }
  return out;
}

/** Whether `scope` restricts nothing. */
export function unscoped(scope: RuleScope | undefined): boolean {
  return SCOPE_FIELDS.every((f) => !(scope?.[f]?.length));
}

/** Whether the path `path` (a cell or node path) is within the valid path pattern `pattern`. */
export function pathWithin(pattern: string, path: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('/*')) return path.startsWith(pattern.slice(0, -1));
  return path === pattern || path.startsWith(`${pattern}/`);
}

/** Whether the VM name `name` matches the valid VM pattern `pattern`. */
export function vmWithin(pattern: string, name: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return name.startsWith(pattern.slice(0, -1));
  return name === pattern;
}

/** Whether the pod name `name` matches the valid pod pattern `pattern` (as VM names). */
export const podWithin = vmWithin;

/** Whether `id` is in one of the valid ranges. */
export function idWithin(ranges: readonly string[], id: number): boolean {
  return ranges.some((r) => {
    const [min, max] = parseIdRange(r)!;
    return id >= min && id <= max;
  });
}

/** The scope as CLI flags, e.g. "--cell 'nova/*' --uid 1000-1999" ("" when unscoped). */
export function scopeFlags(scope: RuleScope | undefined): string {
  const flag: Record<ScopeField, string> = { cells: '--cell', vms: '--vm', pods: '--pod', nodes: '--on-node', uids: '--uid', gids: '--gid' };
  return SCOPE_FIELDS.flatMap((f) => (scope?.[f] ?? []).map((v) => `${flag[f]} ${shellWord(v)}`)).join(' ');
}
