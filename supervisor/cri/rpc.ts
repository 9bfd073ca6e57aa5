// Handlers for the CRI socket. No caller identity or authorization here: the socket is root-only (0600), which is
// the CRI's security model (kubelet and crictl run as root). Decode → run the mapping → errors to a status in one
// place (server/status.ts), as on the mTLS API.
import { type MethodDefinition, type ServerUnaryCall, type ServiceDefinition, type UntypedServiceImplementation, type handleServerStreamingCall, type handleUnaryCall, status } from '@grpc/grpc-js';
import type { Logger } from '../log';
import { toGrpcError } from '../server';

/**
 * A status the CRI needs that AuraeError's codes do not carry (ExecSync's DEADLINE_EXCEEDED, as kubelet's probes
 * expect on a timeout).
 */
export class CriStatusError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'CriStatusError';
  }
}

/** An error as the call's status: CriStatusError as it is, anything else through server/status.ts. */
export function criStatus(err: unknown, log: Logger, method: string): { code: status; details: string } {
  if (err instanceof CriStatusError) return { code: err.code, details: err.message };
  return toGrpcError(err, log, { method });
}

/** A unary handler for `method` ("runtime.v1.ImageService/PullImage"): `run`'s result or its error as the status. */
export function criUnary<Req, Res>(method: string, log: Logger, run: (request: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => run(call.request, call))
      .then(
        (response) => callback(null, response),
        (err: unknown) => callback(criStatus(err, log, method)),
      );
  };
}

/** The status every method this auraed does not serve yet answers with. */
export function unimplementedStatus(path: string, why: string): { code: status; details: string } {
  return { code: status.UNIMPLEMENTED, details: `${path.replace(/^\//, '')} is not implemented by auraed yet: ${why}` };
}

type AnyMethod = MethodDefinition<unknown, unknown>;

/**
 * `implemented` completed with a handler for every other method of `definition`, each answering UNIMPLEMENTED
 * with the method's name and `why` (one mechanism instead of a stub per method; grpc-js's own default names no
 * reason). Unary and server-streaming methods only (the CRI has no client streams).
 */
export function withUnimplemented(definition: ServiceDefinition, implemented: UntypedServiceImplementation, why: string): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = { ...implemented };
  for (const [name, method] of Object.entries(definition as Record<string, AnyMethod>)) {
    if (name in impl) continue;
    const refusal = unimplementedStatus(method.path, why);
    const streaming: handleServerStreamingCall<unknown, unknown> = (call) => void call.emit('error', refusal);
    const unary: handleUnaryCall<unknown, unknown> = (_call, callback) => callback(refusal);
    impl[name] = method.responseStream ? streaming : unary;
  }
  return impl;
}
