import { describe, expect, it } from 'vitest';
import { checkInt, checkLabel, checkRequired, checkText } from './fields';
import {
  cellPathProblem, DNS_LABEL_FORM, executableNameProblem, expectedForm, fieldProblem, isCellPath, isDnsLabel, isNodePath, isPathWithin, labelProblem, NODE_PATH, NODE_PATH_FORM, shown, vmNameProblem,
} from './names';
import { DEFAULTS, RANGES, rangeText } from './ranges';

const LABEL_RULE = /1-63 characters of a-z, 0-9 and "-", not starting or ending with "-"/;
const BAD_LABELS = ['A', 'web_1', '-a', 'a-', 'a.b', 'a/b', '..', 'wéb', 'a b', 'a\u0000', 'a'.repeat(64), '\u{1F600}'];

function invalidArgument(run: () => unknown): Error & { code: string } {
  try {
    run();
  } catch (err) {
    expect((err as { code: string }).code).toBe('INVALID_ARGUMENT');
    return err as Error & { code: string };
  }
  throw new Error('accepted');
}

describe('DNS labels', () => {
  it('accepts 1-63 of a-z, 0-9 and "-", not at either end', () => {
    for (const ok of ['a', 'web', 'web-1', '1', '0a0', 'a'.repeat(63)]) {
      expect(isDnsLabel(ok)).toBe(true);
      expect(labelProblem(ok)).toBeNull();
    }
  });

  it('refuses anything else, saying what is allowed', () => {
    for (const bad of ['', ...BAD_LABELS]) {
      expect(isDnsLabel(bad)).toBe(false);
      expect(labelProblem(bad)).toMatch(LABEL_RULE);
    }
    expect(isDnsLabel(undefined)).toBe(false);
    expect(labelProblem('')).toBe(`must not be empty: ${DNS_LABEL_FORM}`);
    expect(labelProblem('Web')).toMatch(/^"Web" is not a DNS label \(1-63/);
  });

  it('names what the label is for: executables and VMs', () => {
    expect(executableNameProblem('api')).toBeNull();
    expect(executableNameProblem('a/b')).toBe(`"a/b" is not an executable name: ${DNS_LABEL_FORM}`);
    expect(vmNameProblem('web')).toBeNull();
    expect(vmNameProblem('Web')).toBe(`"Web" is not a VM name: ${DNS_LABEL_FORM}`);
  });
});

describe('cell paths', () => {
  it('accepts DNS-label paths up to 8 deep and 255 characters', () => {
    for (const ok of ['a', 'web', 'web/cache', '1/2/3/4/5/6/7/8', `${'a'.repeat(63)}/b`, `${'a'.repeat(63)}/`.repeat(3) + 'a'.repeat(63)]) {
      expect(isCellPath(ok)).toBe(true);
      expect(cellPathProblem(ok)).toBeNull();
    }
  });

  it('refuses empty, too long, too deep and malformed paths, with the limit or the allowed form', () => {
    expect(cellPathProblem('')).toMatch(/^must not be empty: DNS labels \(1-63 .* joined by "\/", e\.g\. "web" or "web\/cache"/);
    expect(cellPathProblem('a'.repeat(256))).toBe('at most 255 characters (got 256)');
    expect(cellPathProblem('1/2/3/4/5/6/7/8/9')).toBe('at most 8 levels (got 9)');
    for (const bad of ['/a', 'a/', 'a//b', '../x', 'a/../b', 'a/./b', ...BAD_LABELS.filter((l) => l !== 'a/b')]) {
      expect(isCellPath(bad)).toBe(false);
      expect(cellPathProblem(bad)).toMatch(/is not a cell path: DNS labels \(1-63 .*\) joined by "\/"/);
    }
    expect(cellPathProblem('A', 'cell name')).toMatch(/^"A" is not a cell name: /);
  });

  it('knows what is within a path', () => {
    expect(isPathWithin('web/cache', 'web')).toBe(true);
    expect(isPathWithin('web', 'web')).toBe(true);
    expect(isPathWithin('webx', 'web')).toBe(false);
  });
});

describe('node paths', () => {
  it('accepts the root label and up to 8 labels below it', () => {
    for (const ok of ['aurae', 'aurae/web', 'aurae/web/db', 'a/1/2/3/4/5/6/7/8']) {
      expect(isNodePath(ok)).toBe(true);
      expect(NODE_PATH.test(ok)).toBe(true);
    }
  });

  it('refuses deeper, longer and malformed paths', () => {
    for (const bad of ['', 'a/1/2/3/4/5/6/7/8/9', `${'a'.repeat(63)}/`.repeat(4) + 'a'.repeat(4), 'Aurae', 'a//b', '/a', 'a/', 'a/../b', 'wéb']) {
      expect(isNodePath(bad)).toBe(false);
    }
    expect(isNodePath(42)).toBe(false);
  });

  it('says the allowed form in the "is invalid: expected" shape', () => {
    expect(expectedForm('node path:', 'a//b', NODE_PATH_FORM)).toBe(`node path: "a//b" is invalid: expected ${NODE_PATH_FORM}`);
    expect(NODE_PATH_FORM).toMatch(/^DNS labels joined by "\/" \(e\.g\. aurae\/web\), each 1-63 .*, at most 8 below the root, 255 characters in all$/);
  });
});

describe('shown values', () => {
  it('quotes short printable ASCII and only counts the rest', () => {
    expect(shown('web')).toBe('"web"');
    expect(shown('wéb')).toBe('(3 characters, not printable ASCII)');
    expect(shown('a'.repeat(81))).toBe('(81 characters)');
    expect(shown('a\u001b[2J')).toBe('(5 characters, not printable ASCII)');
  });

  it('puts the field in front of a problem', () => {
    expect(fieldProblem('cell', cellPathProblem('..'))).toMatch(/^cell: "\.\." is not a cell path/);
    expect(fieldProblem('cell', null)).toBeNull();
  });
});

describe('field checks (INVALID_ARGUMENT naming the field and what is allowed)', () => {
  it('checkRequired: absent and "" are "required" with the form', () => {
    expect(checkRequired('cell_name', 'web', 'x')).toBe('web');
    for (const missing of [undefined, '', 42]) {
      expect(invalidArgument(() => checkRequired('cell_name', missing, 'a cell path')).message).toBe('cell_name: required: a cell path');
    }
  });

  it('checkLabel: a DNS label', () => {
    expect(checkLabel('executable.name', 'api')).toBe('api');
    expect(invalidArgument(() => checkLabel('executable.name', '')).message).toBe(`executable.name: required: ${DNS_LABEL_FORM}`);
    expect(invalidArgument(() => checkLabel('executable.name', 'Web')).message).toMatch(/^executable\.name: "Web" is not a DNS label \(1-63/);
  });

  it('checkInt: an optional integer within a range of the table', () => {
    expect(checkInt('pids', undefined, RANGES.pidsMax)).toBeUndefined();
    expect(checkInt('pids', 1, RANGES.pidsMax)).toBe(1);
    expect(checkInt('pids', 4_194_304, RANGES.pidsMax)).toBe(4_194_304);
    for (const bad of [0, 4_194_305, 1.5, Number.NaN]) {
      expect(invalidArgument(() => checkInt('pids.max', bad, RANGES.pidsMax)).message).toBe(`pids.max: ${bad} is out of range: allowed 1..4194304`);
    }
  });

  it('checkText: printable, bounded', () => {
    expect(checkText('description', 'hello', 8)).toBe('hello');
    expect(invalidArgument(() => checkText('description', 'x'.repeat(9), 8)).message).toBe('description: too long: at most 8 characters');
    expect(invalidArgument(() => checkText('description', '\u202eevil', 8)).message).toMatch(/^description: control, format/);
  });
});

describe('the table of ranges', () => {
  it('every range is [min, max] with min <= max, and every default is within its range', () => {
    for (const [name, [min, max]] of Object.entries(RANGES)) {
      expect(Number.isSafeInteger(min) && Number.isSafeInteger(max) && min <= max, name).toBe(true);
    }
    for (const [name, value] of Object.entries(DEFAULTS)) {
      const range = RANGES[name as keyof typeof RANGES];
      expect(value >= range[0] && value <= range[1], name).toBe(true);
    }
    expect(rangeText(RANGES.cpuWeight)).toBe('1..10000');
  });
});
