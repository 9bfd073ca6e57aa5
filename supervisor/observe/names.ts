// Names that reach the filesystem (log paths, cgroup paths) are checked here, by the shared rule: a cell is a
// path of DNS labels ("web", "web/cache"; depth <= 8, each label <= 63, whole <= 255), an executable is one
// DNS label. Anything else (empty, ".", "..", leading "/", uppercase, unicode) is INVALID_ARGUMENT naming the field.
import { AuraeError } from '../errors';

export const CELL_MAX_DEPTH = 8;
export const CELL_MAX_LENGTH = 255;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LABEL_RULE = '1-63 of a-z, 0-9 and "-", not starting or ending with "-"';

/** Shown instead of the raw value when it is long or holds control or non-ASCII characters. */
function shown(value: string): string {
  const printable = /^[\x20-\x7e]*$/.test(value);
  return printable && value.length <= 80 ? JSON.stringify(value) : `(${value.length} characters${printable ? '' : ', not printable ASCII'})`;
}

/** Why `value` is not a cell path, or null when it is one. */
export function cellPathProblem(value: string): string | null {
  if (value.length === 0) return 'must not be empty';
  if (value.length > CELL_MAX_LENGTH) return `at most ${CELL_MAX_LENGTH} characters (got ${value.length})`;
  const labels = value.split('/');
  if (labels.length > CELL_MAX_DEPTH) return `at most ${CELL_MAX_DEPTH} levels (got ${labels.length})`;
  for (const label of labels) {
    if (!DNS_LABEL.test(label)) {
      return `${shown(value)} is not a cell path: DNS labels (${LABEL_RULE}) joined by "/", e.g. "web" or "web/cache"`;
    }
  }
  return null;
}

/** Why `value` is not an executable name, or null when it is one. */
export function executableNameProblem(value: string): string | null {
  if (value.length === 0) return 'must not be empty';
  if (!DNS_LABEL.test(value)) return `${shown(value)} is not an executable name: a DNS label (${LABEL_RULE})`;
  return null;
}

/** `value` as a cell path, or AuraeError INVALID_ARGUMENT "<field>: …". */
export function validateCellPath(field: string, value: string): string {
  const problem = cellPathProblem(value);
  if (problem) throw new AuraeError('INVALID_ARGUMENT', `${field}: ${problem}`);
  return value;
}

export function validateExecutableName(field: string, value: string): string {
  const problem = executableNameProblem(value);
  if (problem) throw new AuraeError('INVALID_ARGUMENT', `${field}: ${problem}`);
  return value;
}

/** `value` as a child VM's name (one DNS label), or AuraeError INVALID_ARGUMENT "<field>: …". */
export function validateVmName(field: string, value: string): string {
  if (!DNS_LABEL.test(value)) throw new AuraeError('INVALID_ARGUMENT', `${field}: ${shown(value)} is not a VM name: a DNS label (${LABEL_RULE})`);
  return value;
}

/** Whether `cell` is `ancestor` or below it. */
export function isCellWithin(cell: string, ancestor: string): boolean {
  return cell === ancestor || cell.startsWith(`${ancestor}/`);
}
