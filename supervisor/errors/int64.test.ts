import { describe, expect, it } from 'vitest';
import { AuraeError, checkInt64, toInt64 } from './index';

describe('checkInt64 (64-bit request fields)', () => {
  it('returns the number for a value in range; undefined stays undefined', () => {
    expect(checkInt64('since_seq', 0n, 0, Number.MAX_SAFE_INTEGER)).toBe(0);
    expect(checkInt64('since_seq', 2n ** 53n - 1n, 0, Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
    expect(checkInt64('cell.cpu.max', undefined, 1000, 10 ** 12)).toBeUndefined();
  });

  it('refuses 2^64-1, 2^63, -1, 2^53 and -2^63 with INVALID_ARGUMENT naming the field and the range', () => {
    for (const value of [2n ** 64n - 1n, 2n ** 63n, -1n, 2n ** 53n, -(2n ** 63n)]) {
      let err: unknown;
      try {
        checkInt64('before_id', value, 0, Number.MAX_SAFE_INTEGER, 'a record id from an earlier page');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AuraeError);
      expect((err as AuraeError).code).toBe('INVALID_ARGUMENT');
      expect((err as AuraeError).message).toBe(`before_id: ${value} is out of range: allowed 0..9007199254740991 (a record id from an earlier page)`);
    }
  });

  it('toInt64: integers exactly, fractions truncated, NaN as 0, undefined kept', () => {
    expect(toInt64(Date.UTC(2026, 0, 1))).toBe(1767225600000n);
    expect(toInt64(1.9)).toBe(1n);
    expect(toInt64(Number.NaN)).toBe(0n);
    expect(toInt64(undefined)).toBeUndefined();
  });
});
