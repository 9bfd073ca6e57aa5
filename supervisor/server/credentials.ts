// mTLS for every listener: the node's server certificate, client certificates REQUIRED and verified against
// the node CA, TLS 1.3 only.
import tls from 'node:tls';
import { ServerCredentials } from '@grpc/grpc-js';

export interface ServerPki {
  /** PEM CA certificate(s) that client certificates must chain to. */
  ca: Buffer;
  /** PEM server certificate (chain). */
  cert: Buffer;
  /** PEM private key of the server certificate. */
  key: Buffer;
}

/**
 * grpc-js's createSsl takes no TLS version options and builds its secure context when a port is bound, from
 * Node's process-wide default. auraed is its own process and speaks TLS only to its API clients, so raising
 * the default is the documented way (node:tls DEFAULT_MIN_VERSION). Precondition: call before bindAsync.
 */
export function requireTls13(): void {
  tls.DEFAULT_MIN_VERSION = 'TLSv1.3';
}

export function mtlsServerCredentials(pki: ServerPki): ServerCredentials {
  requireTls13();
  return ServerCredentials.createSsl(pki.ca, [{ private_key: pki.key, cert_chain: pki.cert }], true);
}
