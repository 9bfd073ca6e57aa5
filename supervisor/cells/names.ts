// Cell names: paths of DNS labels ("web", "web/cache"), by the rule in supervisor/validation. Anything else
// (empty, ".", "..", a leading or doubled "/", uppercase, unicode) is refused, so a name can be joined to the
// cgroup root without any chance of leaving it.
import { CELL_PATH_FORM, cellPathProblem, checkRequired, invalid, isPathWithin, MAX_PATH_CHARS } from '../validation';

/** The cells API's cell name: "<field>: required" when absent, "too long" past 255 characters (its wording). */
export function validateCellName(value: unknown, field = 'cell_name'): string {
  const name = checkRequired(field, value, CELL_PATH_FORM);
  const problem = cellPathProblem(name, 'cell name');
  if (problem) throw invalid(field, name.length > MAX_PATH_CHARS ? `too long: ${problem}` : problem);
  return name;
}

/** "a/b/c" → "a/b"; null for a top-level cell. */
export function parentCell(name: string): string | null {
  const i = name.lastIndexOf('/');
  return i < 0 ? null : name.slice(0, i);
}

/** The last label: the hostname in a new UTS namespace. */
export function cellHostname(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

/** Is `name` `ancestor` or inside it? */
export const isWithin = isPathWithin;

export function cellDepth(name: string): number {
  return name.split('/').length;
}
