// Names that reach the filesystem (log paths, cgroup paths) are checked by the shared rules (supervisor/validation):
// a cell is a path of DNS labels, an executable and a VM one DNS label. Anything else (empty, ".", "..", leading
// "/", uppercase, unicode) is INVALID_ARGUMENT naming the field.
import { AuraeError } from '../errors';
import { cellPathProblem, executableNameProblem, fieldProblem, vmNameProblem } from '../validation';

export { cellPathProblem, executableNameProblem, isPathWithin as isCellWithin, MAX_CELL_DEPTH as CELL_MAX_DEPTH } from '../validation';

function check(field: string, value: string, problemOf: (value: string) => string | null): string {
  const problem = fieldProblem(field, problemOf(value));
  if (problem) throw new AuraeError('INVALID_ARGUMENT', problem);
  return value;
}

/** `value` as a cell path, or AuraeError INVALID_ARGUMENT "<field>: …". */
export function validateCellPath(field: string, value: string): string {
  return check(field, value, cellPathProblem);
}

export function validateExecutableName(field: string, value: string): string {
  return check(field, value, executableNameProblem);
}

/** `value` as a child VM's name (one DNS label), or AuraeError INVALID_ARGUMENT "<field>: …". */
export function validateVmName(field: string, value: string): string {
  return check(field, value, vmNameProblem);
}
