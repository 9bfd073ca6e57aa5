// 64-bit protobuf fields (int64, uint64) arrive as bigint (ts-proto forceLong=bigint, see
// supervisor/proto/buf.gen.yaml), so decoding never fails and never loses digits: a well-formed request whose
// value is too large for the core is refused here, in its service's validate() step, with INVALID_ARGUMENT
// naming the field and the allowed range (never INTERNAL from the decoder). The cores keep plain numbers.
import { AuraeError } from './index';

/** The largest integer a JavaScript number holds exactly: the ceiling of every 64-bit field the cores take. */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/**
 * The number in `value` when it lies in [min, max] (both safe integers); otherwise INVALID_ARGUMENT
 * "<field>: <value> is out of range: allowed <min>..<max>[ (<hint>)]". undefined stays undefined (optional fields).
 */
export function checkInt64(field: string, value: bigint, min: number, max: number, hint?: string): number;
export function checkInt64(field: string, value: bigint | undefined, min: number, max: number, hint?: string): number | undefined;
export function checkInt64(field: string, value: bigint | undefined, min: number, max: number, hint?: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  // A caller that bypasses the generated decoder (tests, the SDK in-process) may hand a number: accept integers.
  const big = typeof value === 'bigint' ? value : typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : null;
  if (big === null || big < BigInt(min) || big > BigInt(max)) {
    throw new AuraeError('INVALID_ARGUMENT', `${field}: ${String(value)} is out of range: allowed ${min}..${max}${hint ? ` (${hint})` : ''}`);
  }
  return Number(big);
}

/** A core's count, byte size or time (an integer) as a 64-bit wire value; a fraction is truncated, NaN is 0. */
export function toInt64(value: number): bigint;
export function toInt64(value: number | undefined): bigint | undefined;
export function toInt64(value: number | undefined): bigint | undefined {
  if (value === undefined) return undefined;
  // NaN or ±Infinity (say, an unparsable time) is no value: 0 rather than a RangeError that fails the whole answer.
  return Number.isFinite(value) ? BigInt(Math.trunc(value)) : 0n;
}

/** A wire value as a number for the user (the SDK/CLI print numbers): exact up to 2^53, nearest double above. */
export function fromInt64(value: bigint): number {
  return Number(value);
}
