// Routing to child nodes: a call carrying metadata `aurae-node: <node path>` for a descendant of this node is
// authorized here (this node's policy, with the target node and, when the request validates here, the resource
// it touches), then forwarded to the child on the way (with aurae-on-behalf-of: the
// caller) over a client certificate this node minted for its own identity. The child checks again.
// Generic: the forwarding call is built from the method's service definition (path, serialize, deserialize),
// so every service routes without per-service code. Client- and bidi-streaming methods (PodService/Exec) are not
// forwarded: a routed call to one fails with UNIMPLEMENTED rather than running on the wrong node.
// Auditing: a forwarded call is audited here under the same rule as a local one (mutating methods, and every
// refusal), with the target node; the child audits it again, with `via` naming this node.
import {
  type CallOptions,
  type Client,
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  type MethodDefinition,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type ServiceError,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { AuraeError, isAuraeError } from '../errors';
import { expectedForm, isNodePath, NODE_PATH_FORM } from '../validation';
import { type Caller, ON_BEHALF_OF_METADATA } from './caller';
import { type RpcContext, admitCall, auditForwarded, rpcAuditInfo } from './rpc';
import { toGrpcError } from './status';

export const NODE_METADATA = 'aurae-node';

export type RouteDecision = { kind: 'local' } | { kind: 'forward'; child: string; target: string };

/**
 * Where a call for `target` (the aurae-node metadata; undefined when absent) goes from node `nodePath`:
 * handled here, or forwarded to the child named by the next label. Anything else is INVALID_ARGUMENT /
 * NOT_FOUND with what to do.
 */
export function routeDecision(nodePath: string, target: string | undefined): RouteDecision {
  if (target === undefined || target === '' || target === nodePath) return { kind: 'local' };
  if (!isNodePath(target)) throw new AuraeError('INVALID_ARGUMENT', expectedForm(NODE_METADATA, target, `a node path such as ${nodePath}/web: ${NODE_PATH_FORM}`));
  if (!target.startsWith(`${nodePath}/`)) {
    throw new AuraeError('NOT_FOUND', `${NODE_METADATA} "${target}" is not node "${nodePath}" or one of its descendants: send the call to that node's own parent`);
  }
  const child = target.slice(nodePath.length + 1).split('/')[0]!;
  return { kind: 'forward', child, target };
}

/** How this node reaches its children (the VM core and the node's forwarding credentials behind it). */
export interface ChildRouter {
  /** This node's path, e.g. "aurae". */
  readonly nodePath: string;
  /** A grpc-js client connected to the running child `label` (cached by the router). Throws AuraeError. */
  clientFor(label: string): Promise<Client>;
}

function targetOf(metadata: Metadata): string | undefined {
  const values = metadata.get(NODE_METADATA);
  if (values.length > 1) throw new AuraeError('INVALID_ARGUMENT', `${NODE_METADATA} was given ${values.length} times: give one node path`);
  const v = values[0];
  return typeof v === 'string' ? v : undefined;
}

function methodName(path: string): string {
  return path.startsWith('/') ? path.slice(1) : path;
}

function forwardMetadata(target: string, caller: string, deadline: CallOptions['deadline']): { metadata: Metadata; options: CallOptions } {
  const metadata = new Metadata();
  metadata.set(NODE_METADATA, target);
  metadata.set(ON_BEHALF_OF_METADATA, caller);
  return { metadata, options: deadline !== undefined && deadline !== Infinity ? { deadline } : {} };
}

/** The audit outcome of a forwarding that failed on this node (no child reached, or a child status). */
function outcomeOf(err: unknown): { code: string; details: string } {
  if (isAuraeError(err)) return { code: err.code, details: err.message };
  const code = (err as Partial<ServiceError>).code;
  if (typeof code === 'number') return { code: status[code] ?? 'UNKNOWN', details: (err as ServiceError).details ?? '' };
  return { code: 'INTERNAL', details: 'internal error (see the auraed log)' };
}

/** Pass a child's status through, naming the hop so the caller sees where it failed. */
function childError(err: ServiceError, target: string): ServerErrorResponse {
  const details = err.code === status.UNAVAILABLE ? `child ${target} is unreachable: ${err.details}` : err.details;
  return Object.assign(new Error(details), { code: err.code, details, metadata: err.metadata });
}

/**
 * Wrap every unary and server-streaming handler of `implementation` so that calls for a descendant node are
 * forwarded. Calls without aurae-node (or naming this node) run the original handler unchanged.
 */
export function withRouting(ctx: RpcContext, router: ChildRouter, definition: ServiceDefinition, implementation: UntypedServiceImplementation): UntypedServiceImplementation {
  const routed: UntypedServiceImplementation = { ...implementation };
  for (const [key, def] of Object.entries(definition) as [string, MethodDefinition<unknown, unknown>][]) {
    const original = implementation[key];
    if (!original) continue;
    const method = methodName(def.path);
    const audit = rpcAuditInfo(original);
    if (def.requestStream) {
      routed[key] = refuseRoutedRequestStream(ctx, router, method, def.responseStream, original as (...args: unknown[]) => void);
      continue;
    }
    if (!def.responseStream) {
      const handler = original as handleUnaryCall<unknown, unknown>;
      routed[key] = ((call: ServerUnaryCall<unknown, unknown>, callback) => {
        let route: RouteDecision;
        try {
          route = routeDecision(router.nodePath, targetOf(call.metadata));
        } catch (err) {
          return callback(toGrpcError(err, ctx.log, { method }));
        }
        if (route.kind === 'local') return handler(call, callback);
        let caller: Caller | undefined;
        void (async () => {
          caller = admitCall(ctx, method, call, route.target, audit?.resourceOf(call.request) ?? null);
          const client = await router.clientFor(route.child);
          ctx.log.info('rpc forwarded', { method, caller: caller.identity, to: route.target });
          const { metadata, options } = forwardMetadata(route.target, caller.identity, call.getDeadline());
          const admitted = caller;
          client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, call.request, metadata, options, (err, response) => {
            auditForwarded(ctx, audit, admitted, call.request, route.target, err ? outcomeOf(err) : null);
            if (err) callback(childError(err, route.target));
            else callback(null, response);
          });
        })().catch((err: unknown) => {
          // Refusals were audited by admitCall; a failure after it (no such child, child down) is audited here.
          if (caller) auditForwarded(ctx, audit, caller, call.request, route.target, outcomeOf(err));
          callback(toGrpcError(err, ctx.log, { method }));
        });
      }) as handleUnaryCall<unknown, unknown>;
    } else {
      const handler = original as handleServerStreamingCall<unknown, unknown>;
      routed[key] = ((call: ServerWritableStream<unknown, unknown>) => {
        let route: RouteDecision;
        const fail = (err: unknown) => {
          if (!call.cancelled) call.emit('error', toGrpcError(err, ctx.log, { method }));
        };
        try {
          route = routeDecision(router.nodePath, targetOf(call.metadata));
        } catch (err) {
          return fail(err);
        }
        if (route.kind === 'local') return handler(call);
        let caller: Caller | undefined;
        let audited = false;
        const settle = (outcome: { code: string; details: string } | null) => {
          if (audited || !caller) return;
          audited = true;
          auditForwarded(ctx, audit, caller, call.request, route.target, outcome);
        };
        void (async () => {
          caller = admitCall(ctx, method, call, route.target, audit?.resourceOf(call.request) ?? null);
          const client = await router.clientFor(route.child);
          // The caller may have gone while the client was being made: a follow stream opened now would never end.
          if (call.cancelled) return settle({ code: 'CANCELLED', details: '' });
          ctx.log.info('rpc forwarded', { method, caller: caller.identity, to: route.target, stream: true });
          const { metadata, options } = forwardMetadata(route.target, caller.identity, call.getDeadline());
          const upstream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, call.request, metadata, options);
          call.on('cancelled', () => {
            settle({ code: 'CANCELLED', details: '' });
            upstream.cancel();
          });
          upstream.on('data', (message: unknown) => {
            // Back-pressure: pause the child while the caller's buffer drains.
            if (!call.write(message)) {
              upstream.pause();
              call.once('drain', () => upstream.resume());
            }
          });
          upstream.on('error', (err: ServiceError) => {
            settle(outcomeOf(err));
            if (!call.cancelled) call.emit('error', childError(err, route.target));
          });
          upstream.on('end', () => {
            settle(null);
            call.end();
          });
        })().catch((err: unknown) => {
          settle(outcomeOf(err));
          fail(err);
        });
      }) as handleServerStreamingCall<unknown, unknown>;
    }
  }
  return routed;
}

type StreamingCall = { metadata: Metadata; emit(event: 'error', err: unknown): boolean };

function refuseRoutedRequestStream(
  ctx: RpcContext,
  router: ChildRouter,
  method: string,
  responseStream: boolean,
  original: (...args: unknown[]) => void,
): (...args: unknown[]) => void {
  return (call, callback) => {
    let err: unknown = null;
    try {
      const route = routeDecision(router.nodePath, targetOf((call as StreamingCall).metadata));
      if (route.kind === 'local') return original(call, callback);
      err = new AuraeError('UNIMPLEMENTED', `${method} streams requests, which are not forwarded to child nodes: connect to ${route.target} another way`);
    } catch (e) {
      err = e;
    }
    const status = toGrpcError(err, ctx.log, { method });
    if (responseStream) (call as StreamingCall).emit('error', status);
    else (callback as (e: unknown) => void)(status);
  };
}
