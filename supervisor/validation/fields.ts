// Field checks of API requests. Every failure is an AuraeError INVALID_ARGUMENT whose message starts with the
// field path (e.g. "executable.env[PATH]") and says what is allowed.
import { AuraeError } from '../errors';
import { DNS_LABEL_FORM, labelProblem } from './names';

export function invalid(field: string, message: string): AuraeError {
  return new AuraeError('INVALID_ARGUMENT', `${field}: ${message}`);
}

/** A required string: absent and "" (proto3's unset) are "<field>: required: <form>". */
export function checkRequired(field: string, value: unknown, form: string): string {
  if (typeof value !== 'string' || value === '') throw invalid(field, `required: ${form}`);
  return value;
}

/** A DNS label (executable names). */
export function checkLabel(field: string, value: unknown): string {
  const label = checkRequired(field, value, DNS_LABEL_FORM);
  const problem = labelProblem(label);
  if (problem) throw invalid(field, problem);
  return label;
}

/** An optional integer in `range` (inclusive, e.g. RANGES.stopGraceMs); undefined stays undefined. */
export function checkInt(field: string, value: number | undefined, range: readonly [number, number]): number | undefined {
  if (value === undefined || value === null) return undefined;
  const [min, max] = range;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(field, `${String(value)} is out of range: allowed ${min}..${max}`);
  }
  return value;
}

/**
 * Printable text, at most `maxChars` characters: nothing of Unicode category C (control, format such as bidi
 * overrides and zero-width characters, surrogates, private use, unassigned).
 */
export function checkText(field: string, value: string, maxChars: number): string {
  if ([...value].length > maxChars) throw invalid(field, `too long: at most ${maxChars} characters`);
  if (/\p{C}/u.test(value)) throw invalid(field, 'control, format, private-use or unassigned characters are not allowed');
  return value;
}

/** Byte length of a string as UTF-8 (what execve's argument limits count). */
export function utf8Bytes(value: string): number {
  return Buffer.byteLength(value, 'utf8');
}
