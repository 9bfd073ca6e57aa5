// Who is calling: the CN of the client certificate that TLS already verified against the node CA.
import type { Metadata, ServerUnaryCall } from '@grpc/grpc-js';
import { AuraeError } from '../errors';
import type { IssuerCheck } from './issuer';

export interface Caller {
  /** The verified client certificate's common name, e.g. "admin". */
  identity: string;
  /** The transport peer as grpc-js reports it (address:port, or the socket path). */
  peer: string;
  /** Whether identity is in the node config's authz.admins. */
  admin: boolean;
  /**
   * Set when the call was forwarded by this node's parent (metadata aurae-on-behalf-of): the parent's
   * identity. `identity` is then the original caller, whom the policy judges.
   */
  via?: string;
  /** Set when the direct caller is this node's parent itself (its own certificate, not a call it relays). */
  parent?: boolean;
}

/** Metadata naming the original caller of a call a parent forwards to its child (see server/route.ts). */
export const ON_BEHALF_OF_METADATA = 'aurae-on-behalf-of';

/** The part of a grpc-js server call this module reads (a fake in unit tests). */
export type CallerSource = Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'getPeer'> & { metadata?: Metadata };

/**
 * Derive the Caller of `call`. Precondition: the server requires client certificates, so a call without a
 * verified certificate means a misconfigured listener; it is refused rather than treated as anonymous.
 */
export function callerFromCall(
  call: CallerSource,
  admins: ReadonlySet<string>,
  parentIdentity: string | null,
  issuerOf: IssuerCheck,
): Caller {
  const auth = call.getAuthContext();
  const cn = auth.sslPeerCertificate?.subject?.CN as string | string[] | undefined;
  if (auth.transportSecurityType !== 'ssl' || cn === undefined) {
    throw new AuraeError('UNAUTHENTICATED', 'no verified client certificate on this connection: connect with mTLS using a certificate issued by the node CA');
  }
  if (Array.isArray(cn)) {
    throw new AuraeError('UNAUTHENTICATED', `client certificate has ${cn.length} common names: issue it with exactly one (the identity)`);
  }
  // TLS proved the chain ends at the root CA; the identity must also come from the root CA itself, not from
  // a spawn CA under it (which every spawning node holds). Only the parent's spawn CA may vouch for the parent.
  const raw = (auth.sslPeerCertificate as { raw?: Buffer } | undefined)?.raw;
  const issuer = raw ? issuerOf(raw) : 'other';
  const isParent = issuer === 'parent' && parentIdentity !== null && cn === parentIdentity;
  if (issuer !== 'root' && !isParent) {
    throw new AuraeError(
      'UNAUTHENTICATED',
      `the certificate for "${cn}" is not signed by the node CA itself: identities come from certificates the root CA issues (aer pki issue)`,
    );
  }
  const onBehalfOf = call.metadata?.get(ON_BEHALF_OF_METADATA) ?? [];
  if (onBehalfOf.length === 0) return { identity: cn, peer: call.getPeer(), admin: !isParent && admins.has(cn), ...(isParent ? { parent: true } : {}) };
  // Only this node's parent may speak for someone else: it authorized the original caller with the same
  // (inherited) policy before forwarding, and this node checks again. Anyone else claiming to is refused.
  if (!isParent) {
    throw new AuraeError(
      'PERMISSION_DENIED',
      `identity "${cn}" may not call on behalf of another identity (${ON_BEHALF_OF_METADATA}): only this node's parent ${parentIdentity === null ? '(none: this node was not spawned)' : `"${parentIdentity}"`} may`,
    );
  }
  const original = onBehalfOf[0];
  if (onBehalfOf.length !== 1 || typeof original !== 'string' || original.length === 0 || original.length > 64) {
    throw new AuraeError('UNAUTHENTICATED', `${ON_BEHALF_OF_METADATA} must carry exactly one identity of 1-64 characters`);
  }
  return { identity: original, peer: call.getPeer(), admin: admins.has(original), via: cn };
}
