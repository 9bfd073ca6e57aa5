// Pure functions over Kconfig text (.config files and fragments). No I/O, so the merge and
// the post-olddefconfig verification are unit-tested without building a kernel.

/** One assignment: `CONFIG_X=value` or `# CONFIG_X is not set` (value 'n'). */
export type KconfigAssignment = { name: string; value: string; line: number };

export type ParsedKconfig = { assignments: KconfigAssignment[]; invalid: { line: number; text: string }[] };

const SET_RE = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/;
const UNSET_RE = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/;

/**
 * Parses Kconfig text. Blank lines and comments are skipped; a line that is neither an
 * assignment nor a comment is reported in `invalid` (a typo such as `CONFIG_FOO y` would
 * otherwise vanish without a trace).
 */
export function parseKconfig(text: string): ParsedKconfig {
  const assignments: KconfigAssignment[] = [];
  const invalid: { line: number; text: string }[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    const lineNo = index + 1;
    if (line === '') return;
    const set = SET_RE.exec(line);
    if (set) {
      assignments.push({ name: set[1]!, value: set[2]!, line: lineNo });
      return;
    }
    const unset = UNSET_RE.exec(line);
    if (unset) {
      assignments.push({ name: unset[1]!, value: 'n', line: lineNo });
      return;
    }
    if (line.startsWith('#')) return;
    invalid.push({ line: lineNo, text: line });
  });
  return { assignments, invalid };
}

/** Last assignment wins, as in Kconfig itself. */
function toMap(assignments: KconfigAssignment[]): Map<string, string> {
  return new Map(assignments.map((a) => [a.name, a.value]));
}

function render(name: string, value: string): string {
  return value === 'n' ? `# ${name} is not set` : `${name}=${value}`;
}

/**
 * Equivalent of `scripts/kconfig/merge_config.sh -m base fragment`: every symbol the fragment
 * mentions is removed from the base and the fragment's assignments are appended. The result
 * still needs `make olddefconfig` to resolve dependencies and fill in defaults.
 */
export function mergeKconfig(baseText: string, fragmentText: string): string {
  const fragment = parseKconfig(fragmentText);
  const overridden = new Set(fragment.assignments.map((a) => a.name));
  const kept = baseText.split('\n').filter((raw) => {
    const line = raw.trim();
    const m = SET_RE.exec(line) ?? UNSET_RE.exec(line);
    return !(m && overridden.has(m[1]!));
  });
  while (kept.length > 0 && kept[kept.length - 1] === '') kept.pop();
  const appended = [...toMap(fragment.assignments)].map(([name, value]) => render(name, value));
  return [...kept, '', '# --- merged fragment ---', ...appended, ''].join('\n');
}

/**
 * Compares a fragment with the `.config` that `olddefconfig` produced and returns one message
 * per option that did not keep its requested value (empty when everything stuck). Options
 * requested as `is not set` are satisfied when the symbol is absent or unset.
 */
export function verifyKernelConfig(fragmentText: string, configText: string): string[] {
  const problems: string[] = [];
  const fragment = parseKconfig(fragmentText);
  for (const bad of fragment.invalid) {
    problems.push(`fragment line ${bad.line} is not a Kconfig assignment: ${JSON.stringify(bad.text)}`);
  }
  const seen = new Map<string, KconfigAssignment>();
  for (const a of fragment.assignments) {
    const previous = seen.get(a.name);
    if (previous && previous.value !== a.value) {
      problems.push(
        `${a.name} is assigned twice in the fragment (line ${previous.line}: ${render(a.name, previous.value)}, ` +
          `line ${a.line}: ${render(a.name, a.value)})`,
      );
    }
    seen.set(a.name, a);
  }
  const config = toMap(parseKconfig(configText).assignments);
  for (const [name, wanted] of toMap(fragment.assignments)) {
    const actual = config.get(name);
    if (wanted === 'n') {
      if (actual !== undefined && actual !== 'n') {
        problems.push(`${name}: requested not set, but .config has ${render(name, actual)}`);
      }
      continue;
    }
    if (actual === wanted) continue;
    if (actual === undefined) {
      problems.push(
        `${name}=${wanted}: absent from .config (unknown symbol in this kernel, or its dependencies are not met)`,
      );
    } else {
      problems.push(`${name}=${wanted}: .config has ${render(name, actual)} instead`);
    }
  }
  return problems;
}
