// The error type every auraed core throws. Its code is a gRPC status name, so the API layer maps it in one
// place (server/status.ts) and the message reaches the caller unchanged: say what failed, on what, what to do.

export const AURAE_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'PERMISSION_DENIED',
  'UNAUTHENTICATED',
  'RESOURCE_EXHAUSTED',
  'DEADLINE_EXCEEDED',
  'UNAVAILABLE',
  'UNIMPLEMENTED',
  'INTERNAL',
] as const;

export type AuraeErrorCode = (typeof AURAE_ERROR_CODES)[number];

export class AuraeError extends Error {
  constructor(
    readonly code: AuraeErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AuraeError';
  }
}

export function isAuraeError(err: unknown): err is AuraeError {
  return err instanceof AuraeError;
}

export { checkInt64, fromInt64, MAX_SAFE, toInt64 } from './int64';
