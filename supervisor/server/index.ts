// The API server layer: mTLS grpc-js server, caller identity, handler wrappers, error → status mapping.
export { type Caller, type CallerSource, callerFromCall, ON_BEHALF_OF_METADATA } from './caller';
export { ReloadableServerCredentials, type ServerPki, mtlsServerCredentials, requireTls13 } from './credentials';
export { type ListenTarget, ListenError, listenTargets, prepareUnixSocket, withPort } from './listeners';
export { type Access, type AuditEvent, type Authorizer, type CheckTarget, type Resource, type RpcContext, type RunAccess, type ServerStreamSpec, type UnarySpec, type BidiStreamSpec, admitCall, bidiStream, serverStream, unary } from './rpc';
export { type RunningServer, type ServerOptions, type ServiceBinding, startServer } from './server';
export { type GrpcError, toGrpcError } from './status';
export { type ChildRouter, NODE_METADATA, type RouteDecision, routeDecision, withRouting } from './route';
export { type RelayDownstream, type RelayOutcome, type RelayUpstream, type UpstreamError, relayStream } from './relay';
export { createIssuerCheck, type Issuer, type IssuerCheck } from './issuer';
