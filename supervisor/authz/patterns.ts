// The vocabulary of the policy: identities (client certificate CNs) and method patterns. Pure and
// dependency-free, because the node config schema validates its authz.policy with the same checks.
//
// A method pattern is one of
//   "*"                          every method of every service
//   "package.Service/*"          every method of one service, e.g. "aurae.node.v0.NodeService/*"
//   "package.Service/Method"     one method, e.g. "aurae.node.v0.NodeService/Shutdown"
// Names are matched exactly (case-sensitive), as gRPC routes them.

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
