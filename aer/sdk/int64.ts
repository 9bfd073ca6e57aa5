// 64-bit protobuf fields are bigint in the generated code (lossless, see supervisor/proto/buf.gen.yaml); the SDK
// speaks plain numbers to its users. auraed range-checks every 64-bit field it receives and names it.

/** A user's number for a 64-bit request field; anything but a safe integer is refused here, naming the option. */
export function toWireInt(option: string, value: number): bigint {
  if (!Number.isSafeInteger(value)) throw new RangeError(`${option}: ${String(value)} is not an integer in ${-Number.MAX_SAFE_INTEGER}..${Number.MAX_SAFE_INTEGER}`);
  return BigInt(value);
}

/** A 64-bit response field as a number: exact up to 2^53 (every id, time and counter auraed sends). */
export function fromWireInt(value: bigint): number;
export function fromWireInt(value: bigint | undefined): number | undefined;
export function fromWireInt(value: bigint | undefined): number | undefined {
  return value === undefined ? undefined : Number(value);
}

/** Every field of a message of 64-bit values as numbers (absent stays absent). */
export function fromWireInts<T extends object>(message: T): { [K in keyof T]: T[K] extends bigint | undefined ? number | Exclude<T[K], bigint> : T[K] } {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(message)) if (value !== undefined) out[key] = typeof value === 'bigint' ? Number(value) : value;
  return out as { [K in keyof T]: T[K] extends bigint | undefined ? number | Exclude<T[K], bigint> : T[K] };
}

/** Every number of `values` for a message of 64-bit fields (absent stays absent); `option` names a non-integer. */
export function toWireInts<T extends Record<string, number | undefined>>(option: string, values: T): { [K in keyof T]: bigint | Exclude<T[K], number> } {
  const out: Record<string, bigint> = {};
  for (const [key, value] of Object.entries(values)) if (value !== undefined) out[key] = toWireInt(`${option}.${key}`, value);
  return out as { [K in keyof T]: bigint | Exclude<T[K], number> };
}
