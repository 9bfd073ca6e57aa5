// The one place where errors become gRPC statuses. AuraeErrors carry their status name and a message meant
// for the caller; anything else is a bug: the caller gets INTERNAL without internals, the log gets the details.
import { type StatusObject, status } from '@grpc/grpc-js';
import { isAuraeError } from '../errors';
import type { Logger } from '../log';

export type GrpcError = Pick<StatusObject, 'code' | 'details'>;

/**
 * Longest status message sent. The message travels in an HTTP/2 header (grpc-message, percent-encoded): one that
 * echoes a megabyte of a caller's input would exceed the peer's header limit, the caller would see no status at
 * all (a deadline) and the connection would be torn down. Cut here, once, whatever a core put in it.
 */
export const MAX_STATUS_DETAILS_CHARS = 1000;

export function toGrpcError(err: unknown, log: Logger, context: { method: string; caller?: string }): GrpcError {
  if (isAuraeError(err)) {
    const details = err.message.length > MAX_STATUS_DETAILS_CHARS ? `${err.message.slice(0, MAX_STATUS_DETAILS_CHARS - 1)}…` : err.message;
    return { code: status[err.code], details };
  }
  log.error('unexpected error in rpc handler', { ...context, err });
  return {
    code: status.INTERNAL,
    details: `internal error in auraed while handling ${context.method}: see the auraed log on the node`,
  };
}
