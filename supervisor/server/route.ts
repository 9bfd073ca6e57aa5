// Routing to child nodes: a call carrying metadata `aurae-node: <node path>` for a descendant of this node is
// authorized here (this node's policy, with the target node and, when the request validates here, the resource
// it touches), then forwarded to the child on the way (with aurae-on-behalf-of: the
// caller) over a client certificate this node minted for its own identity. The child checks again.
// Generic: the forwarding call is built from the method's service definition (path, serialize, deserialize),
// so every service routes without per-service code: unary, server-, client- and bidi-streaming methods alike
// (streams are relayed with back-pressure both ways, the caller's cancel and deadline passed on: relay.ts).
// Auditing: a forwarded call is audited here under the same rule as a local one (mutating methods, and every
// refusal), with the target node; the child audits it again, with `via` naming this node.
import {
  type CallOptions,
  type Client,
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  type MethodDefinition,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerErrorResponse,
  type ServerReadableStream,
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
import { type RelayDownstream, type RelayOutcome, relayStream } from './relay';
import { type RpcAuditInfo, type RpcContext, admitCall, admitResource, auditForwarded, firstMessage, rpcAuditInfo } from './rpc';
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
function childError(err: Pick<ServiceError, 'code' | 'details' | 'metadata'>, target: string): ServerErrorResponse {
  const details = err.code === status.UNAVAILABLE ? `child ${target} is unreachable: ${err.details}` : err.details;
  return Object.assign(new Error(details), { code: err.code, details, metadata: err.metadata });
}

/**
 * Wrap every handler of `implementation` so that calls for a descendant node are forwarded. Calls without
 * aurae-node (or naming this node) run the original handler unchanged.
 */
export function withRouting(ctx: RpcContext, router: ChildRouter, definition: ServiceDefinition, implementation: UntypedServiceImplementation): UntypedServiceImplementation {
  const routed: UntypedServiceImplementation = { ...implementation };
  for (const [key, def] of Object.entries(definition) as [string, MethodDefinition<unknown, unknown>][]) {
    const original = implementation[key];
    if (!original) continue;
    const method = methodName(def.path);
    const audit = rpcAuditInfo(original);
    if (def.requestStream) {
      routed[key] = forwardRequestStream(ctx, router, def, method, audit, original as (...args: unknown[]) => void);
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
          endRelayed(call, await relayStream(call, upstream, { requests: false, responses: true }), route.target, settle);
        })().catch((err: unknown) => {
          settle(outcomeOf(err));
          fail(err);
        });
      }) as handleServerStreamingCall<unknown, unknown>;
    }
  }
  return routed;
}

/** A server call that streams requests (client- or bidi-streaming), as the router uses it. */
type RequestStreamCall = (ServerReadableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>) & RelayDownstream;

/**
 * End a relayed streaming call as the child ended it: OK ends it, the child's status (naming the hop when the
 * child was unreachable) fails it; a cancelled call is only audited.
 */
function endRelayed(call: { readonly cancelled: boolean; end(): void; emit(event: 'error', err: unknown): boolean }, outcome: RelayOutcome, target: string, settle: (outcome: { code: string; details: string } | null) => void): void {
  if (outcome.kind === 'cancelled') return settle({ code: 'CANCELLED', details: '' });
  if (outcome.kind === 'error') {
    settle(outcomeOf(outcome.error));
    if (!call.cancelled) call.emit('error', childError(outcome.error, target));
    return;
  }
  settle(null);
  call.end();
}

/**
 * Client- and bidi-streaming methods (PodService/Exec). Locally: the original handler. Routed: the caller is
 * admitted for the target node before anything is read, its first request authorized like a unary request (the
 * resource it touches, when it validates here), then the child's call is opened with that first request and the
 * rest relayed both ways (relay.ts: back-pressure, half-close, cancel; the caller's deadline goes with the call).
 * Audited here as a local call would be (mutating methods, with the first request's summary), with the target node.
 */
function forwardRequestStream(
  ctx: RpcContext,
  router: ChildRouter,
  def: MethodDefinition<unknown, unknown>,
  method: string,
  audit: RpcAuditInfo | undefined,
  original: (...args: unknown[]) => void,
): (...args: unknown[]) => void {
  return (rawCall, rawCallback) => {
    const call = rawCall as RequestStreamCall;
    const callback = rawCallback as sendUnaryData<unknown> | undefined;
    let answered = false;
    const fail = (err: unknown) => {
      if (answered) return;
      answered = true;
      const status = def.responseStream ? null : toGrpcError(err, ctx.log, { method });
      if (status) return callback!(status);
      if (!call.cancelled) call.emit('error', toGrpcError(err, ctx.log, { method }));
    };
    let route: RouteDecision;
    try {
      route = routeDecision(router.nodePath, targetOf(call.metadata));
    } catch (err) {
      return fail(err);
    }
    if (route.kind === 'local') return original(rawCall, rawCallback);
    let caller: Caller | undefined;
    let request: unknown;
    let audited = false;
    const settle = (outcome: { code: string; details: string } | null) => {
      if (audited || !caller) return;
      audited = true;
      auditForwarded(ctx, audit, caller, request, route.target, outcome);
    };
    void (async () => {
      const admitted = admitCall(ctx, method, call, route.target, null);
      const first = await firstMessage(call);
      if (first === null) {
        caller = admitted;
        return settle({ code: 'CANCELLED', details: '' });
      }
      if (first !== 'end') {
        request = first.message;
        admitResource(ctx, method, admitted, route.target, audit?.resourceOf(first.message) ?? null); // a refusal is audited there
      }
      caller = admitted;
      const client = await router.clientFor(route.child);
      if (call.cancelled) return settle({ code: 'CANCELLED', details: '' });
      ctx.log.info('rpc forwarded', { method, caller: caller.identity, to: route.target, stream: true });
      const { metadata, options } = forwardMetadata(route.target, caller.identity, call.getDeadline());
      const streamsRequests = first !== 'end';
      if (def.responseStream) {
        const upstream = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, metadata, options);
        if (first !== 'end') upstream.write(first.message);
        else upstream.end();
        const outcome = await relayStream(call, upstream, { requests: streamsRequests, responses: true });
        answered = true;
        return endRelayed(call as ServerDuplexStream<unknown, unknown>, outcome, route.target, settle);
      }
      let response: unknown;
      const upstream = client.makeClientStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, metadata, options, (_err, value) => {
        response = value; // the outcome (and its error) comes from relayStream, with the status
      });
      if (first !== 'end') upstream.write(first.message);
      else upstream.end();
      const outcome = await relayStream(call, upstream, { requests: streamsRequests, responses: false });
      answered = true;
      if (outcome.kind === 'cancelled') return settle({ code: 'CANCELLED', details: '' });
      if (outcome.kind === 'error') {
        settle(outcomeOf(outcome.error));
        return callback!(childError(outcome.error, route.target));
      }
      settle(null);
      callback!(null, response);
    })().catch((err: unknown) => {
      // Refusals were audited where they were made; a failure after admission (child down) is audited here.
      settle(outcomeOf(err));
      fail(err);
    });
  };
}
