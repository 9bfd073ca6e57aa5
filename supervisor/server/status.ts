// The one place where errors become gRPC statuses. AuraeErrors carry their status name and a message meant
// for the caller; anything else is a bug: the caller gets INTERNAL without internals, the log gets the details.
import { type StatusObject, status } from '@grpc/grpc-js';
import { isAuraeError } from '../errors';
import type { Logger } from '../log';

export type GrpcError = Pick<StatusObject, 'code' | 'details'>;

export function toGrpcError(err: unknown, log: Logger, context: { method: string; caller?: string }): GrpcError {
  if (isAuraeError(err)) {
    return { code: status[err.code], details: err.message };
  }
  log.error('unexpected error in rpc handler', { ...context, err });
  return {
    code: status.INTERNAL,
    details: `internal error in auraed while handling ${context.method}: see the auraed log on the node`,
  };
}
