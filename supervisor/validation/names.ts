// The naming rules, one owner each: the DNS label (executable and VM names, every label of a path), cell paths
// ("web", "web/cache") and node paths ("aurae", "aurae/web"). Pure and dependency-free, so auraed, init, guest,
// the SDK and aer all check names here. Each problem names the allowed form; callers put the field in front.
//
// Two sentence shapes, both pinned by the API's users: "<value> is not a <noun>: <form>" (cells, executables,
// observe, authz) and "<subject> <value> is invalid: expected <form>" (VMs, node paths, the client config).

/** One label: 1-63 of a-z, 0-9 and "-", not starting or ending with "-" (RFC 1123, lower case). */
export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const DNS_LABEL_RULE = '1-63 characters of a-z, 0-9 and "-", not starting or ending with "-"';
export const DNS_LABEL_FORM = `a DNS label (${DNS_LABEL_RULE})`;

/** Longest cell or node path, in characters. */
export const MAX_PATH_CHARS = 255;
/** Most labels in a cell path. */
export const MAX_CELL_DEPTH = 8;
/** Deepest node path: labels below the root node (the same bound as cell paths). */
export const MAX_NODE_DEPTH = 8;

export const CELL_PATH_FORM = `DNS labels (${DNS_LABEL_RULE}) joined by "/", e.g. "web" or "web/cache", at most ${MAX_CELL_DEPTH} deep and ${MAX_PATH_CHARS} characters in all`;
export const NODE_PATH_FORM = `DNS labels joined by "/" (e.g. aurae/web), each ${DNS_LABEL_RULE}, at most ${MAX_NODE_DEPTH} below the root, ${MAX_PATH_CHARS} characters in all`;
/** A node's own name in its config: the root's one label, or a spawned child's path. */
export const NODE_NAME_FORM = `a DNS label, or for a spawned child ${NODE_PATH_FORM}`;

const LABEL = DNS_LABEL.source.slice(1, -1);
/** A node path (length not included: see isNodePath). */
export const NODE_PATH = new RegExp(`^${LABEL}(/${LABEL}){0,${MAX_NODE_DEPTH}}$`);

export function isDnsLabel(value: unknown): value is string {
  return typeof value === 'string' && DNS_LABEL.test(value);
}

/** Labels joined by "/", at most `maxLabels` of them and MAX_PATH_CHARS characters. */
function isLabelPath(value: unknown, maxLabels: number): value is string {
  if (typeof value !== 'string' || value.length > MAX_PATH_CHARS) return false;
  const labels = value.split('/');
  return labels.length <= maxLabels && labels.every((l) => DNS_LABEL.test(l));
}

export function isCellPath(value: unknown): value is string {
  return isLabelPath(value, MAX_CELL_DEPTH);
}

export function isNodePath(value: unknown): value is string {
  return isLabelPath(value, MAX_NODE_DEPTH + 1);
}

/** A user-supplied value for a message: JSON when short printable ASCII, else only its length (no control bytes). */
export function shown(value: string): string {
  const printable = /^[\x20-\x7e]*$/.test(value);
  return printable && value.length <= 80 ? JSON.stringify(value) : `(${value.length} characters${printable ? '' : ', not printable ASCII'})`;
}

const article = (noun: string) => (/^[aeiou]/i.test(noun) ? `an ${noun}` : `a ${noun}`);

/** "<field>: <problem>", or null when there is no problem. */
export function fieldProblem(field: string, problem: string | null): string | null {
  return problem === null ? null : `${field}: ${problem}`;
}

/** "<subject> <value> is invalid: expected <form>": the second sentence shape. */
export function expectedForm(subject: string, value: string, form: string): string {
  return `${subject} ${shown(value)} is invalid: expected ${form}`;
}

/** Why `value` is not one DNS label (called a `noun`: "executable name", "VM name", …), or null. */
export function labelProblem(value: string, noun = 'DNS label'): string | null {
  if (value === '') return `must not be empty: ${DNS_LABEL_FORM}`;
  if (DNS_LABEL.test(value)) return null;
  return noun === 'DNS label' ? `${shown(value)} is not a DNS label (${DNS_LABEL_RULE})` : `${shown(value)} is not ${article(noun)}: ${DNS_LABEL_FORM}`;
}

/** Why `value` is not a cell path (called a `noun`: the cells API says "cell name"), or null. */
export function cellPathProblem(value: string, noun = 'cell path'): string | null {
  if (value.length === 0) return `must not be empty: ${CELL_PATH_FORM}`;
  if (value.length > MAX_PATH_CHARS) return `at most ${MAX_PATH_CHARS} characters (got ${value.length})`;
  const depth = value.split('/').length;
  if (depth > MAX_CELL_DEPTH) return `at most ${MAX_CELL_DEPTH} levels (got ${depth})`;
  return isCellPath(value) ? null : `${shown(value)} is not ${article(noun)}: ${CELL_PATH_FORM}`;
}

export function executableNameProblem(value: string): string | null {
  return labelProblem(value, 'executable name');
}

export function vmNameProblem(value: string): string | null {
  return labelProblem(value, 'VM name');
}

/** Whether `path` (a cell or node path) is `ancestor` or below it. */
export function isPathWithin(path: string, ancestor: string): boolean {
  return path === ancestor || path.startsWith(`${ancestor}/`);
}
