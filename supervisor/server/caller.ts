// Who is calling: the CN of the client certificate that TLS already verified against the node CA.
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { AuraeError } from '../errors';

export interface Caller {
  /** The verified client certificate's common name, e.g. "admin". */
  identity: string;
  /** The transport peer as grpc-js reports it (address:port, or the socket path). */
  peer: string;
  /** Whether identity is in the node config's authz.admins. */
  admin: boolean;
}

/** The part of a grpc-js server call this module reads (a fake in unit tests). */
export type CallerSource = Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'getPeer'>;

/**
 * Derive the Caller of `call`. Precondition: the server requires client certificates, so a call without a
 * verified certificate means a misconfigured listener; it is refused rather than treated as anonymous.
 */
export function callerFromCall(call: CallerSource, admins: ReadonlySet<string>): Caller {
  const auth = call.getAuthContext();
  const cn = auth.sslPeerCertificate?.subject?.CN as string | string[] | undefined;
  if (auth.transportSecurityType !== 'ssl' || cn === undefined) {
    throw new AuraeError('UNAUTHENTICATED', 'no verified client certificate on this connection: connect with mTLS using a certificate issued by the node CA');
  }
  if (Array.isArray(cn)) {
    throw new AuraeError('UNAUTHENTICATED', `client certificate has ${cn.length} common names: issue it with exactly one (the identity)`);
  }
  return { identity: cn, peer: call.getPeer(), admin: admins.has(cn) };
}
