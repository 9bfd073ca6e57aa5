// Field checks shared by the cell and executable validators. Every failure is an INVALID_ARGUMENT whose
// message starts with the field path (e.g. "executable.env[PATH]") and says what is allowed.
import { AuraeError } from '../errors';

export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const DNS_LABEL_RULE = '1-63 characters of a-z, 0-9 and "-", not starting or ending with "-"';

export function invalid(field: string, message: string): AuraeError {
  return new AuraeError('INVALID_ARGUMENT', `${field}: ${message}`);
}

/** Quote a user-supplied value for an error message: JSON escapes, cut to 64 characters. */
export function show(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}

/** A DNS label (executable names, each label of a cell path). */
export function checkLabel(field: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw invalid(field, `required: a DNS label (${DNS_LABEL_RULE})`);
  if (!DNS_LABEL.test(value)) throw invalid(field, `${show(value)} is not a DNS label (${DNS_LABEL_RULE})`);
  return value;
}

/** An optional integer in [min, max]; undefined stays undefined. */
export function checkInt(field: string, value: number | undefined, min: number, max: number): number | undefined {
  if (value === undefined || value === null) return undefined;
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
