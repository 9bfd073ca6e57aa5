// Errors the SDK throws for failed calls: the gRPC status by name, the server's message, and where we called.
import { type ServiceError, status } from '@grpc/grpc-js';

export type GrpcStatusName = keyof typeof status;

export class AuraeApiError extends Error {
  constructor(
    /** gRPC status name, e.g. "UNAVAILABLE", "FAILED_PRECONDITION". */
    readonly code: GrpcStatusName,
    /** The status details: auraed's message, or grpc-js's description of a transport failure. */
    readonly details: string,
    /** The method called, e.g. "aurae.node.v0.NodeService/Shutdown". */
    readonly method: string,
    /** The address the client used. */
    readonly address: string,
  ) {
    super(`${method} at ${address} failed with ${code}: ${details}`);
    this.name = 'AuraeApiError';
  }
}

const NAMES = new Map<number, GrpcStatusName>(
  (Object.entries(status) as Array<[string, unknown]>)
    .filter((entry): entry is [GrpcStatusName, number] => typeof entry[1] === 'number')
    .map(([name, code]) => [code, name]),
);

export function statusName(code: number): GrpcStatusName {
  return NAMES.get(code) ?? 'UNKNOWN';
}

export function toApiError(err: unknown, method: string, address: string): AuraeApiError | Error {
  const e = err as Partial<ServiceError>;
  if (typeof e?.code === 'number') return new AuraeApiError(statusName(e.code), e.details ?? e.message ?? '', method, address);
  return err instanceof Error ? err : new Error(String(err));
}
