// Handler wrappers: every RPC goes decode (grpc-js + generated code) → identify caller → authorize →
// validate → core → map errors. Handlers stay declarative; no handler builds a status itself.
import type { handleServerStreamingCall, handleUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import { type Caller, callerFromCall } from './caller';
import { toGrpcError } from './status';

export interface RpcContext {
  log: Logger;
  /** Identities with full rights (authz.admins). */
  admins: ReadonlySet<string>;
}

/** 'read': any caller with a certificate from the node CA; 'admin': identities in authz.admins only (and logged). */
export type Access = 'read' | 'admin';

export interface UnarySpec<Req, In, Res> {
  /** Full method name for logs and errors, e.g. "aurae.node.v0.NodeService/Shutdown". */
  method: string;
  access: Access;
  /** Check the decoded request and turn it into the core's input; throw AuraeError('INVALID_ARGUMENT') on bad fields. */
  validate(request: Req): In;
  run(input: In, caller: Caller): Promise<Res> | Res;
}

export function unary<Req, In, Res>(ctx: RpcContext, spec: UnarySpec<Req, In, Res>): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    let caller: Caller | undefined;
    Promise.resolve()
      .then(() => {
        caller = authorize(ctx, spec, callerFromCall(call, ctx.admins));
        return spec.run(spec.validate(call.request), caller);
      })
      .then(
        (response) => callback(null, response),
        (err: unknown) => callback(toGrpcError(err, ctx.log, { method: spec.method, caller: caller?.identity })),
      );
  };
}

export interface ServerStreamSpec<Req, In, Res> {
  method: string;
  access: Access;
  validate(request: Req): In;
  /** Write to `call` until done; resolve when the stream was ended or cancelled. */
  run(input: In, call: ServerWritableStream<Req, Res>, caller: Caller): Promise<void> | void;
}

export function serverStream<Req, In, Res>(ctx: RpcContext, spec: ServerStreamSpec<Req, In, Res>): handleServerStreamingCall<Req, Res> {
  return (call) => {
    let caller: Caller | undefined;
    Promise.resolve()
      .then(() => {
        caller = authorize(ctx, spec, callerFromCall(call, ctx.admins));
        return spec.run(spec.validate(call.request), call, caller);
      })
      .catch((err: unknown) => {
        // grpc-js turns an 'error' event on a server stream into the call's final status.
        const status = toGrpcError(err, ctx.log, { method: spec.method, caller: caller?.identity });
        if (!call.cancelled) call.emit('error', status);
      });
  };
}

function authorize(ctx: RpcContext, spec: { method: string; access: Access }, caller: Caller): Caller {
  if (spec.access === 'admin') {
    if (!caller.admin) {
      ctx.log.warn('rpc denied', { method: spec.method, caller: caller.identity, peer: caller.peer });
      throw new AuraeError(
        'PERMISSION_DENIED',
        `identity "${caller.identity}" may not call ${spec.method}: add it to authz.admins in the node config`,
      );
    }
    // Every mutating call is logged with who made it.
    ctx.log.info('rpc', { method: spec.method, caller: caller.identity, peer: caller.peer });
  }
  return caller;
}
