// mTLS for every listener: the node's server certificate, client certificates REQUIRED and verified against
// the node CA, TLS 1.3 only. The certificate can be replaced while the server runs (a spawned node's parent
// renews its short-lived certificate): new connections get the new one, open ones keep theirs.
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

/**
 * Server credentials whose certificate and key can be swapped while listening. grpc-js (1.14) re-creates each
 * listener's secure context when credentials report new options (the mechanism behind its experimental
 * certificate-provider credentials, which would hand over the identity asynchronously, after the first bind).
 */
export class ReloadableServerCredentials extends ServerCredentials {
  constructor(pki: ServerPki) {
    // requestCert with Node's default rejectUnauthorized (true): a client without a certificate of `ca` is refused.
    super({ requestCert: true, rejectUnauthorized: true }, contextOptions(pki));
  }

  /** Serve new connections with `pki` from now on. Throws (keeping the old one) when Node rejects it. */
  reload(pki: ServerPki): void {
    const options = contextOptions(pki);
    tls.createSecureContext(options); // the same parse the listeners do: a bad pair fails here, not on them
    this.updateSecureContextOptions(options);
  }

  _equals(other: ServerCredentials): boolean {
    return this === other;
  }
}

function contextOptions(pki: ServerPki): tls.SecureContextOptions {
  return { ca: pki.ca, cert: [pki.cert], key: [pki.key] };
}

export function mtlsServerCredentials(pki: ServerPki): ReloadableServerCredentials {
  requireTls13();
  return new ReloadableServerCredentials(pki);
}
