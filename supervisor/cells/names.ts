// Cell names: DNS-label paths ("web", "web/cache"): at most 8 labels, each a DNS label, 255 characters in all.
// Anything else (empty, ".", "..", a leading or doubled "/", uppercase, unicode) is refused, so a name can be
// joined to the cgroup root without any chance of leaving it.
import { DNS_LABEL, DNS_LABEL_RULE, invalid, show } from '../executables';

export const MAX_CELL_DEPTH = 8;
export const MAX_CELL_NAME_CHARS = 255;

export function validateCellName(value: unknown, field = 'cell_name'): string {
  if (typeof value !== 'string' || value === '') {
    throw invalid(field, 'required: a cell name such as "web" or "web/cache"');
  }
  if (value.length > MAX_CELL_NAME_CHARS) throw invalid(field, `too long (${value.length} characters): at most ${MAX_CELL_NAME_CHARS}`);
  const labels = value.split('/');
  if (labels.length > MAX_CELL_DEPTH) throw invalid(field, `${show(value)} is nested ${labels.length} deep: at most ${MAX_CELL_DEPTH} labels`);
  for (const label of labels) {
    if (!DNS_LABEL.test(label)) {
      throw invalid(field, `${show(value)} is not a cell name: DNS labels (${DNS_LABEL_RULE}) joined by "/"`);
    }
  }
  return value;
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
export function isWithin(name: string, ancestor: string): boolean {
  return name === ancestor || name.startsWith(`${ancestor}/`);
}

export function cellDepth(name: string): number {
  return name.split('/').length;
}
