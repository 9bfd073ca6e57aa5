// Test fakes for the RPC layer, for unit tests of the services and the wrappers: a verified client certificate
// as grpc-js reports it, an issuer check for such certificates, and Authorizers. The real issuer check is tested
// with real certificates (issuer.test.ts, guest/trust.test.ts), the real policy in supervisor/authz. Not part of auraed.
import { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { ServerUnaryCall } from '@grpc/grpc-js';
import type { Caller } from './caller';
import type { IssuerCheck } from './issuer';
import type { AuditEvent, Authorizer, CheckTarget } from './rpc';

/** What grpc-js's getAuthContext() returns for an mTLS call with a client certificate for `cn` (its "DER" is the CN). */
export function fakeAuthContext(cn: string | string[]) {
  return { transportSecurityType: 'ssl', sslPeerCertificate: { subject: { CN: cn }, raw: Buffer.from(String(cn)) } };
}

/** The CN of a real certificate (DER), or the text a fakeAuthContext certificate carries. */
function commonNameOf(der: Buffer): string {
  try {
    return /(?:^|\n)CN=([^\n]*)/.exec(new X509Certificate(der).subject)?.[1] ?? '';
  } catch {
    return der.toString('utf8');
  }
}

/**
 * An issuer check that trusts names: the certificate of `parentIdentity` counts as signed by the parent's spawn
 * CA, every other as signed by the root CA. For tests about what comes after the issuer (routing, policy).
 */
export function issuerByName(parentIdentity: string | null = null): IssuerCheck {
  return (der) => (parentIdentity !== null && commonNameOf(der) === parentIdentity ? 'parent' : 'root');
}

/** An Authorizer that allows what `allows` says (default: everything) and records every audit event. */
export function fakeAuthorizer(allows: (caller: Caller, method: string, target?: CheckTarget) => boolean = () => true): Authorizer & { audits: AuditEvent[] } {
  const audits: AuditEvent[] = [];
  return {
    audits,
    check: (caller, method, target) =>
      allows(caller, method, target) ? null : { message: `identity "${caller.identity}" may not call ${method}`, detail: 'denied by the test policy' },
    audit: (event) => void audits.push(event),
  };
}

/** A grpc-js unary call as the wrappers see it: the request, a loopback peer, and a client certificate for `cn` (none if undefined). */
export function fakeUnaryCall<Req>(request: Req, cn?: string | string[]): ServerUnaryCall<Req, unknown> {
  const call = Object.assign(new EventEmitter(), {
    request,
    getPeer: () => '127.0.0.1:40000',
    getAuthContext: () => (cn === undefined ? { transportSecurityType: 'ssl' } : fakeAuthContext(cn)),
  });
  return call as unknown as ServerUnaryCall<Req, unknown>;
}
