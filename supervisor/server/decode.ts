// Requests that are not the method's message at all (a length running past the end, a wrong wire type). grpc-js
// answers a deserializer's exception with INTERNAL ("Error deserializing request"), which blames auraed for the
// caller's bytes. Every service is registered through lenientService (server.ts): a request that fails to decode
// becomes a marker, and the handler wrapper answers it with INVALID_ARGUMENT before anything else runs (no
// identity, policy, routing or audit: like a transport error, the call never was a request). Well-formed
// requests always decode (64-bit fields as bigint, unknown enum values as numbers) and are checked field by field
// in their service's validate step.
import { type MethodDefinition, type ServiceDefinition, status, type UntypedServiceImplementation } from '@grpc/grpc-js';

const UNDECODABLE = Symbol('aurae.undecodable');

interface Undecodable {
  [UNDECODABLE]: string;
}

function isUndecodable(request: unknown): request is Undecodable {
  return typeof request === 'object' && request !== null && UNDECODABLE in request;
}

/** The status for a request of `path` that did not decode. */
export function undecodableStatus(path: string, problem: string): { code: status; details: string } {
  const shown = problem.length > 200 ? `${problem.slice(0, 199)}…` : problem;
  return { code: status.INVALID_ARGUMENT, details: `request: could not be decoded as the message of ${path} (${shown}): send a well-formed protobuf message` };
}

type AnyMethod = MethodDefinition<unknown, unknown>;
type Handler = (call: { request?: unknown; emit(event: 'error', err: unknown): boolean }, callback?: (err: unknown) => void) => void;

/**
 * `definition` with decoding that never throws, and `implementation` answering the requests that did not decode.
 * Methods with a request stream are left as they are (their messages are read by the handler).
 */
export function lenientService(
  definition: ServiceDefinition,
  implementation: UntypedServiceImplementation,
): { definition: ServiceDefinition; implementation: UntypedServiceImplementation } {
  const defs: Record<string, AnyMethod> = {};
  const impl: UntypedServiceImplementation = { ...implementation };
  for (const [name, method] of Object.entries(definition as Record<string, AnyMethod>)) {
    const handler = implementation[name] as unknown as Handler | undefined;
    if (method.requestStream || handler === undefined) {
      defs[name] = method;
      continue;
    }
    defs[name] = {
      ...method,
      requestDeserialize: (buffer: Buffer) => {
        try {
          return method.requestDeserialize(buffer);
        } catch (err) {
          return { [UNDECODABLE]: err instanceof Error ? err.message : String(err) } satisfies Undecodable;
        }
      },
    };
    const wrapped: Handler = (call, callback) => {
      if (!isUndecodable(call.request)) return handler.call(implementation, call, callback);
      const refusal = undecodableStatus(method.path, call.request[UNDECODABLE]);
      if (method.responseStream) call.emit('error', refusal);
      else callback?.(refusal);
    };
    impl[name] = wrapped as unknown as UntypedServiceImplementation[string];
  }
  return { definition: defs as ServiceDefinition, implementation: impl };
}
