// The generated API messages as plain data: what auraed stores as a validated spec and what SDK users write.
// Derived, never re-declared: a field added to the proto appears here with its doc comment.

/** Every field optional, 64-bit fields (bigint on the wire) as numbers, nested messages likewise. */
export type PlainMessage<T> = { [K in keyof T]?: PlainField<NonNullable<T[K]>> };

type PlainField<V> = V extends bigint
  ? number
  : V extends readonly unknown[]
    ? V
    : V extends Record<string, string>
      ? V
      : V extends object
        ? PlainMessage<V>
        : V;
