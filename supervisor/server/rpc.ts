// Handler wrappers: every RPC goes decode (grpc-js + generated code) → identify caller → authorize the method
// → validate → authorize the resource the request touches → core → map errors. Handlers stay declarative;
// no handler builds a status itself. A handler declares its resource (a cell, a VM; the node itself when it
// declares none), or 'each' when it shows each caller only what it may see (lists, streams): its run gets a
// `sees` predicate for that (see RunAccess), or 'shared' for node-wide things every caller allowed the method
// may use whatever its rules' resource scopes (the image store): only the method-level check applies.
// Authorization is a policy decision (supervisor/authz implements Authorizer); every mutating call and every
// refused call is written to the audit log through the same Authorizer.
import type { EventEmitter } from 'node:events';
import type { handleBidiStreamingCall, handleServerStreamingCall, handleUnaryCall, ServerDuplexStream, ServerWritableStream } from '@grpc/grpc-js';
import { AuraeError, isAuraeError } from '../errors';
import type { Logger } from '../log';
import { type Caller, type CallerSource, callerFromCall } from './caller';
import type { IssuerCheck } from './issuer';
import { toGrpcError } from './status';

export interface RpcContext {
  log: Logger;
  /** Identities with full rights (authz.admins). */
  admins: ReadonlySet<string>;
  /** The policy decision and the audit log (unit tests pass a fake: server/testing.ts). */
  authz: Authorizer;
  /**
   * The identity of this node's parent (its node path, e.g. "aurae" for the child "aurae/web"), the only peer
   * whose aurae-on-behalf-of metadata is honoured; null on a node that was not spawned.
   */
  parentIdentity: string | null;
  /** Who signed a caller's certificate (see issuer.ts). */
  issuerOf: IssuerCheck;
}

/** One audited call, as the wrappers report it (the Authorizer stamps the time: supervisor/authz AuditEntry). */
export interface AuditEvent {
  /** The caller's identity; "" when the call carried no usable certificate identity. */
  identity: string;
  /** Full method name. */
  method: string;
  /** gRPC status name of the outcome: OK, PERMISSION_DENIED, INVALID_ARGUMENT, … */
  code: string;
  /** Short free text: why it was denied, what failed, or what was done. */
  detail: string;
  peer: string;
  /** Set on the node that forwarded the call to a descendant (server/route.ts): that node's path. */
  node?: string;
  /** Set when the call came from this node's parent on behalf of `identity` (Caller.via): the parent's identity. */
  via?: string;
}

/** What an authorization check is about, besides the caller and the method. */
export interface CheckTarget {
  /** The node the call runs on; default this node (the router passes the descendant it forwards to). */
  node?: string;
  /**
   * What the call touches ({} is the node itself). Unset or null: the method-level check made before the
   * request is validated (could any resource be allowed?); the handler's resource is checked after it.
   */
  resource?: Resource | null;
}

/** A resource a call touches (the policy's vocabulary, supervisor/authz/policy.ts). */
export interface Resource {
  cell?: string;
  vm?: string;
  /** A pod's name (with `cell`, the pod's own cell). */
  pod?: string;
  /** The uid and gid an executable would run as. */
  runAs?: { uid: number; gid: number };
}

export interface Authorizer {
  /** null when `caller` may call `method` on `target`; otherwise the PERMISSION_DENIED message and a short audit detail. */
  check(caller: Caller, method: string, target?: CheckTarget): { message: string; detail: string } | null;
  /** Record one audited call. Must not throw: a failing audit write is logged, the call's result stands. */
  audit(event: AuditEvent): void;
}

/**
 * What a method does, for the audit log: 'read' observes, 'admin' changes the node (audited unless `mutates`
 * says otherwise). Who may call it is the policy's decision (supervisor/authz), not this field's.
 */
export type Access = 'read' | 'admin';

interface CommonSpec<In> {
  /** Full method name for the policy, logs and errors, e.g. "aurae.node.v0.NodeService/Shutdown". */
  method: string;
  access: Access;
  /** Whether the call changes state and so goes to the audit log; default: access === 'admin'. */
  mutates?: boolean;
  /** Short text for the audit row of a successful call, e.g. the cell name; default none. */
  summary?(input: In): string;
  /**
   * The resource the validated request touches, checked against the policy before run: e.g. { cell: 'nova/web' }.
   * 'each': the handler shows only what the caller may see (through RunAccess.sees). 'shared': node-wide
   * things any rule allowing the method covers, whatever its cell/VM/pod scope. Default {}: the node itself,
   * which only rules without a cell/VM/pod scope allow.
   */
  resource?(input: In): Resource | 'each' | 'shared';
}

/** What a handler may ask about its caller's rights while it runs. */
export interface RunAccess {
  /** Whether the caller may see `resource` through this method (admins: everything). Filters lists and streams. */
  sees(resource: Resource): boolean;
}

export interface UnarySpec<Req, In, Res> extends CommonSpec<In> {
  /** Check the decoded request and turn it into the core's input; throw AuraeError('INVALID_ARGUMENT') on bad fields. */
  validate(request: Req): In;
  run(input: In, caller: Caller, access: RunAccess): Promise<Res> | Res;
}

/**
 * What a wrapped handler tells the router (server/route.ts), which forwards calls for child nodes without
 * running the handler: whether the method is audited, and the audit detail a successful call would get.
 */
export interface RpcAuditInfo {
  method: string;
  mutates: boolean;
  /** The summary of a successful call for `request`; "" when the request does not validate on this node. */
  summarize(request: unknown): string;
  /**
   * The resource `request` touches, for the router's check before it forwards: null when the request does not
   * validate on this node or the handler filters ('each') or declares 'shared'; the child then decides.
   */
  resourceOf(request: unknown): Resource | null;
}

const AUDIT_INFO = Symbol('aurae.rpc.auditInfo');

/** The audit info a unary()/serverStream() handler carries; undefined for handlers written by hand. */
export function rpcAuditInfo(handler: unknown): RpcAuditInfo | undefined {
  return typeof handler === 'function' ? (handler as { [AUDIT_INFO]?: RpcAuditInfo })[AUDIT_INFO] : undefined;
}

function withAuditInfo<H extends object, Req, In>(handler: H, spec: CommonSpec<In> & { validate(request: Req): In }): H {
  const info: RpcAuditInfo = {
    method: spec.method,
    mutates: mutates(spec),
    summarize: (request) => {
      try {
        return spec.summary ? clip(spec.summary(spec.validate(request as Req))) : '';
      } catch {
        return ''; // e.g. the child's limits differ from this node's: the child audits the details
      }
    },
    resourceOf: (request) => {
      try {
        const resource = spec.resource ? spec.resource(spec.validate(request as Req)) : {};
        return resource === 'each' || resource === 'shared' ? null : resource;
      } catch {
        return null;
      }
    },
  };
  return Object.assign(handler, { [AUDIT_INFO]: info });
}

/**
 * Audit a call this node forwarded to a descendant (server/route.ts) under the same rule as a local call
 * (mutating methods only), with the target node. `outcome` is null for OK, else the status name and text
 * (the child's, or why the forwarding failed).
 */
export function auditForwarded(
  ctx: RpcContext,
  info: RpcAuditInfo | undefined,
  caller: Caller,
  request: unknown,
  node: string,
  outcome: { code: string; details: string } | null,
): void {
  if (!info?.mutates) return;
  const detail = outcome ? clip(outcome.details) : info.summarize(request);
  ctx.authz.audit({ identity: caller.identity, method: info.method, code: outcome?.code ?? 'OK', detail, peer: caller.peer, node, ...viaOf(caller) });
}

export function unary<Req, In, Res>(ctx: RpcContext, spec: UnarySpec<Req, In, Res>): handleUnaryCall<Req, Res> {
  return withAuditInfo<handleUnaryCall<Req, Res>, Req, In>((call, callback) => {
    const state: CallState<In> = {};
    Promise.resolve()
      .then(() => {
        state.caller = admit(ctx, spec, call);
        state.input = spec.validate(call.request);
        return spec.run(state.input, state.caller, authorizeResource(ctx, spec, state));
      })
      .then(
        (response) => {
          settle(ctx, spec, state, null);
          callback(null, response);
        },
        (err: unknown) => {
          settle(ctx, spec, state, err);
          callback(toGrpcError(err, ctx.log, { method: spec.method, caller: state.caller?.identity }));
        },
      );
  }, spec);
}

export interface ServerStreamSpec<Req, In, Res> extends CommonSpec<In> {
  validate(request: Req): In;
  /** Write to `call` until done; resolve when the stream was ended or cancelled. */
  run(input: In, call: ServerWritableStream<Req, Res>, caller: Caller, access: RunAccess): Promise<void> | void;
}

export function serverStream<Req, In, Res>(ctx: RpcContext, spec: ServerStreamSpec<Req, In, Res>): handleServerStreamingCall<Req, Res> {
  return withAuditInfo<handleServerStreamingCall<Req, Res>, Req, In>((call) => {
    const state: CallState<In> = {};
    const running = Promise.resolve().then(() => {
      state.caller = admit(ctx, spec, call);
      state.input = spec.validate(call.request);
      return spec.run(state.input, call, state.caller, authorizeResource(ctx, spec, state));
    });
    endStream(ctx, spec, state, call, running);
  }, spec);
}

/** A streaming call's end: audit it, and make a failure the call's final status (unless the caller left). */
function endStream<In>(
  ctx: RpcContext,
  spec: CommonSpec<In>,
  state: CallState<In>,
  call: { readonly cancelled: boolean; emit(event: 'error', error: unknown): boolean },
  running: Promise<unknown>,
): void {
  running.then(
    () => settle(ctx, spec, state, call.cancelled ? 'CANCELLED' : null),
    (err: unknown) => {
      settle(ctx, spec, state, err);
      // grpc-js turns an 'error' event on a server stream into the call's final status.
      const status = toGrpcError(err, ctx.log, { method: spec.method, caller: state.caller?.identity });
      if (!call.cancelled) call.emit('error', status);
    },
  );
}

export interface BidiStreamSpec<Req, In, Res> extends CommonSpec<In> {
  /** Check the FIRST request (the one that says what the call does) and turn it into the core's input. */
  validate(request: Req): In;
  /**
   * Run the call. The first request was `first` (already validated into `input`); the rest arrive on `call`, which
   * is paused: listen for 'data'/'end' and then call.resume(). Write responses, end the call; resolve when done
   * (or cancelled). Rejecting makes the error the call's status.
   */
  run(input: In, first: Req, call: ServerDuplexStream<Req, Res>, caller: Caller, access: RunAccess): Promise<void> | void;
}

/**
 * A bidirectional-streaming handler: the caller is identified and admitted before anything is read; the first
 * request is validated and its resource authorized like a unary request's; the handler then owns the stream.
 * Routing: a call for a child node is relayed there by server/route.ts without running this handler.
 */
export function bidiStream<Req, In, Res>(ctx: RpcContext, spec: BidiStreamSpec<Req, In, Res>): handleBidiStreamingCall<Req, Res> {
  return withAuditInfo<handleBidiStreamingCall<Req, Res>, Req, In>((call) => {
    const state: CallState<In> = {};
    const running = Promise.resolve().then(async () => {
      state.caller = admit(ctx, spec, call);
      const first = await firstRequest(call, spec.method);
      if (first === null) return; // cancelled before it came
      state.input = spec.validate(first);
      return spec.run(state.input, first, call, state.caller, authorizeResource(ctx, spec, state));
    });
    endStream(ctx, spec, state, call, running);
  }, spec);
}

/** The first message of a request stream, leaving the stream paused; null when the call was cancelled first. */
async function firstRequest<Req>(call: ServerDuplexStream<Req, unknown>, method: string): Promise<Req | null> {
  const first = await firstMessage(call);
  if (first === 'end') throw new AuraeError('INVALID_ARGUMENT', `request: the stream ended before its first message: ${method} needs a first request saying what to do`);
  return first === null ? null : (first.message as Req);
}

/**
 * The first message of a request stream, leaving the stream paused (the one reader of it: bidiStream here, the
 * router's forwarding). 'end': the caller closed its side without sending one; null: the call was cancelled first.
 */
export function firstMessage(call: EventEmitter & { pause(): unknown; readonly cancelled: boolean }): Promise<{ message: unknown } | 'end' | null> {
  return new Promise((resolve, reject) => {
    const done = () => {
      call.off('data', onData);
      call.off('end', onEnd);
      call.off('cancelled', onCancelled);
      call.off('error', onError);
    };
    const onData = (message: unknown) => {
      call.pause();
      done();
      resolve({ message });
    };
    const onEnd = () => {
      done();
      resolve('end');
    };
    const onCancelled = () => {
      done();
      resolve(null);
    };
    const onError = (err: unknown) => {
      done();
      reject(err);
    };
    if (call.cancelled) return resolve(null);
    call.on('data', onData);
    call.once('end', onEnd);
    call.once('cancelled', onCancelled);
    call.once('error', onError);
  });
}

interface CallState<In> {
  /** Set once the caller is identified and admitted; unset means admit() refused (and audited) the call. */
  caller?: Caller;
  input?: In;
}

/** Longest audit detail kept from an error message. */
const MAX_DETAIL_CHARS = 200;

/**
 * Identify the caller of `method` and ask the policy, as the wrappers do; for the router (server/route.ts),
 * which authorizes a call locally before forwarding it to `node` (recorded in the audit row of a refusal).
 */
export function admitCall(ctx: RpcContext, method: string, call: CallerSource, node?: string, resource?: Resource | null): Caller {
  const caller = admit(ctx, { method, access: 'admin', mutates: false }, call, node);
  // The router knows the resource when the request validates here; else the child decides on it.
  if (resource) refuseUnless(ctx, method, caller, { node, resource }, node === undefined ? {} : { node });
  return caller;
}

/**
 * For the router's request-streaming calls, admitted by admitCall before their first request is read: check the
 * resource that first request touches (null: the child decides), as admitCall does for a unary request.
 */
export function admitResource(ctx: RpcContext, method: string, caller: Caller, node: string, resource: Resource | null): void {
  if (resource) refuseUnless(ctx, method, caller, { node, resource }, { node });
}

/**
 * After validation: check the resource the handler declares (refused calls are audited and thrown), and hand
 * the handler its `sees` predicate. The method-level check in admit() ran before the request was validated.
 */
function authorizeResource<In>(ctx: RpcContext, spec: CommonSpec<In>, state: CallState<In>): RunAccess {
  const caller = state.caller!;
  const resource = spec.resource ? spec.resource(state.input!) : {};
  if (resource !== 'each' && resource !== 'shared') {
    try {
      refuseUnless(ctx, spec.method, caller, { resource }, {});
    } catch (err) {
      state.caller = undefined; // refused and audited here: settle() must not audit it again
      throw err;
    }
  }
  return {
    sees: (r) => caller.admin || ctx.authz.check(caller, spec.method, { resource: r }) === null,
  };
}

/** Throw PERMISSION_DENIED (logged and audited) unless the policy allows `caller` `method` on `target`. */
function refuseUnless(ctx: RpcContext, method: string, caller: Caller, target: CheckTarget, audited: { node?: string }): void {
  const refusal = ctx.authz.check(caller, method, target);
  if (!refusal) return;
  ctx.log.warn('rpc denied', { method, caller: caller.identity, peer: caller.peer, why: refusal.detail });
  ctx.authz.audit({ identity: caller.identity, method, code: 'PERMISSION_DENIED', detail: refusal.detail, peer: caller.peer, ...audited, ...viaOf(caller) });
  throw new AuraeError('PERMISSION_DENIED', refusal.message);
}

/** Identify the caller and ask the policy; a refused call is logged, audited and thrown as an AuraeError. */
function admit(ctx: RpcContext, spec: CommonSpec<unknown>, call: CallerSource, node?: string): Caller {
  const target = node === undefined ? {} : { node };
  let caller: Caller;
  try {
    caller = callerFromCall(call, ctx.admins, ctx.parentIdentity, ctx.issuerOf);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    ctx.log.warn('rpc refused', { method: spec.method, peer: call.getPeer(), err: detail });
    ctx.authz.audit({ identity: '', method: spec.method, code: isAuraeError(err) ? err.code : 'UNAUTHENTICATED', detail: clip(detail), peer: call.getPeer(), ...target });
    throw err;
  }
  // Method level (resource null): could this caller be allowed this method on some resource here?
  const refusal = ctx.authz.check(caller, spec.method, { resource: null, ...target });
  if (refusal) {
    ctx.log.warn('rpc denied', { method: spec.method, caller: caller.identity, peer: caller.peer, why: refusal.detail });
    ctx.authz.audit({ identity: caller.identity, method: spec.method, code: 'PERMISSION_DENIED', detail: refusal.detail, peer: caller.peer, ...target, ...viaOf(caller) });
    throw new AuraeError('PERMISSION_DENIED', refusal.message);
  }
  if (mutates(spec)) ctx.log.info('rpc', { method: spec.method, caller: caller.identity, peer: caller.peer });
  return caller;
}

/** After an admitted call: audit it when it mutates. `outcome` is null (OK), a status name, or the error. */
function settle<In>(ctx: RpcContext, spec: CommonSpec<In>, state: CallState<In>, outcome: unknown): void {
  const caller = state.caller;
  if (!caller || !mutates(spec)) return;
  let code = 'OK';
  let detail = '';
  if (outcome === null) {
    if (spec.summary && state.input !== undefined) {
      try {
        detail = clip(spec.summary(state.input));
      } catch {
        detail = '';
      }
    }
  } else if (typeof outcome === 'string') {
    code = outcome;
  } else if (isAuraeError(outcome)) {
    code = outcome.code;
    detail = clip(outcome.message);
  } else {
    code = 'INTERNAL';
    detail = 'internal error (see the auraed log)';
  }
  ctx.authz.audit({ identity: caller.identity, method: spec.method, code, detail, peer: caller.peer, ...viaOf(caller) });
}

/** The audit field for a call relayed by this node's parent (absent otherwise, so rows stay minimal). */
function viaOf(caller: Caller): { via?: string } {
  return caller.via === undefined ? {} : { via: caller.via };
}

function mutates(spec: CommonSpec<unknown>): boolean {
  return spec.mutates ?? spec.access === 'admin';
}

function clip(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > MAX_DETAIL_CHARS ? `${oneLine.slice(0, MAX_DETAIL_CHARS - 1)}…` : oneLine;
}
