// Which node a certificate may speak for. Every node that spawns holds a spawn CA under the root CA, named
// "aurae-spawn-ca <node path>". X.509 name constraints (certificates.ts) confine what such a CA vouches for to
// DNS names below its node, but a node path is also the certificate's CN ("aurae/web"), which OpenSSL ignores
// (a "/" makes it no DNS name) and which Node's hostname check falls back to when a certificate has no DNS SAN.
// So every verifier also runs nodeSubtreeProblem over the chain it verified: a spawn CA may issue
//   - server certificates and spawn CAs only for proper descendants of its node (aurae/web → aurae/web/db),
//   - client certificates only for its node itself (the parent calling its children as "aurae/web").
// node:crypto only: the SDK and aer load this on every connection, the x509 library stays out of them.
import { X509Certificate, createHash } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { isNodePath } from '../validation';

/** The CN prefix of every spawn CA; the rest is the node path it belongs to. */
export const SPAWN_CA_PREFIX = 'aurae-spawn-ca ';

/** The CN of a spawn CA for `nodePath`. */
export function spawnCaName(nodePath: string): string {
  return `${SPAWN_CA_PREFIX}${nodePath}`;
}

/**
 * The single CN of `cert`, or null when it has none or several. Node prints the subject one attribute per line
 * with control characters escaped (RFC 2253 style), so a CN cannot smuggle a second "CN=" line.
 */
export function commonNameOf(cert: X509Certificate): string | null {
  const cns = cert.subject.split('\n').filter((line) => line.startsWith('CN='));
  return cns.length === 1 ? cns[0]!.slice(3) : null;
}

/** The node path a spawn CA belongs to ("aurae-spawn-ca aurae/web" → "aurae/web"), or null if `cert` is none. */
export function spawnCaNodeOf(cert: X509Certificate): string | null {
  if (!cert.ca) return null;
  const cn = commonNameOf(cert);
  if (cn === null || !cn.startsWith(SPAWN_CA_PREFIX)) return null;
  const path = cn.slice(SPAWN_CA_PREFIX.length);
  return isNodePath(path) ? path : null;
}

/** Whether `path` is a proper descendant of `ancestor` (aurae/web/db of aurae/web; not aurae/web itself). */
export function isProperDescendant(path: string, ancestor: string): boolean {
  return isNodePath(path) && path.startsWith(`${ancestor}/`);
}

/** The node path of a TLS server name ("db.web.aurae" → "aurae/web/db"). */
export function nodePathOfTlsName(tlsName: string): string {
  return tlsName.split('.').reverse().join('/');
}

export type ChainRole = 'server' | 'client';

/**
 * Why the verified `chain` (leaf first, then each issuer up to the trust root) breaks the subtree rule, or null.
 * Certificates issued by anything but a spawn CA (the root CA) are not constrained: the root vouches for all.
 * `role` is what the leaf was presented as; `expectedNodePath`, for a server, is the node the client meant to
 * reach: a spawn-CA-issued server certificate must name exactly it.
 * Precondition: the signatures along the chain are verified (verifiedChainProblem; not merely by TLS: see there).
 */
export function nodeSubtreeProblem(chain: readonly X509Certificate[], role: ChainRole, expectedNodePath?: string): string | null {
  for (let i = 0; i + 1 < chain.length; i++) {
    const cert = chain[i]!;
    const issuer = chain[i + 1]!;
    // A self-signed certificate at the top (the root, repeated by Node as its own issuer) ends the chain.
    if (cert.subject === cert.issuer && cert.checkIssued(cert)) break;
    if (!issuer.ca) return `certificate "${cert.subject}" is issued by "${issuer.subject}", which is not a CA`;
    const issuerCn = commonNameOf(issuer);
    const owner = spawnCaNodeOf(issuer);
    if (owner === null) {
      if (issuerCn?.startsWith(SPAWN_CA_PREFIX)) return `issuer "${issuerCn}" does not name a node path`;
      continue; // the root CA (or another CA the client trusts directly): no subtree to check
    }
    const cn = commonNameOf(cert);
    if (cn === null) return `certificate "${cert.subject}" issued by spawn CA of "${owner}" does not have exactly one CN`;
    if (cert.ca) {
      const sub = spawnCaNodeOf(cert);
      if (sub === null || !isProperDescendant(sub, owner)) {
        return `CA "${cn}" is issued by the spawn CA of "${owner}", which may only create spawn CAs for nodes below "${owner}"`;
      }
      continue;
    }
    if (i !== 0) return `certificate "${cn}" issued by the spawn CA of "${owner}" is not a CA but issued "${commonNameOf(chain[i - 1]!)}"`;
    if (role === 'client') {
      if (cn !== owner) return `client certificate "${cn}" is issued by the spawn CA of "${owner}", which vouches only for "${owner}" itself`;
    } else {
      if (!isProperDescendant(cn, owner)) return `server certificate "${cn}" is issued by the spawn CA of "${owner}", which vouches only for nodes below "${owner}"`;
      if (expectedNodePath !== undefined && cn !== expectedNodePath) return `server certificate names node "${cn}", not "${expectedNodePath}"`;
    }
  }
  return null;
}

/**
 * Why `chain` (leaf first) is not a signed path to one of `anchors` (the trusted root CAs), or null. Node builds
 * the chain it hands checkServerIdentity by matching issuer NAMES among the certificates the peer sent, so a
 * peer can make it show a different path than the one OpenSSL verified (e.g. a self-signed look-alike of a
 * spawn CA): every link is checked again here, by signature, up to a trusted root.
 */
export function verifiedChainProblem(chain: readonly X509Certificate[], anchors: readonly X509Certificate[]): string | null {
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i]!;
    if (anchors.some((a) => a.raw.equals(cert.raw))) return null;
    const issuer = chain[i + 1];
    if (issuer === undefined) break;
    if (!issuer.ca || !cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) return `certificate "${cert.subject}" is not signed by the next one in the chain`;
  }
  return 'the certificate chain does not end at the trusted root CA';
}

/** The certificates of a PEM bundle (e.g. the client config's CA file). */
export function pemCertificates(pem: string | Buffer): X509Certificate[] {
  const text = pem.toString();
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => new X509Certificate(c));
}

/**
 * The chain Node hands checkServerIdentity (getPeerCertificate(true)): the leaf, then each issuerCertificate,
 * ending at the root (which is its own issuer), as X509Certificate objects.
 */
export function chainOfPeerCertificate(peer: PeerCertificate): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<Buffer>();
  let current: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = peer;
  while (current?.raw && !seen.has(current.raw) && chain.length < 16) {
    seen.add(current.raw);
    chain.push(new X509Certificate(current.raw));
    current = current.issuerCertificate;
  }
  return chain;
}

/** SHA-256 of a certificate's DER, hex: what the parent pins for a child's server certificate. */
export function certificateFingerprint(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/** The fingerprint of the first certificate of a PEM (chain). */
export function pemFingerprint(pem: string): string {
  return certificateFingerprint(new X509Certificate(pem).raw);
}

/**
 * A checkServerIdentity for node:tls / grpc-js: the standard host name check, then the chain re-checked by
 * signature up to one of `trustedCaPem` (the CA the client trusts), then the subtree rule with the node named by
 * the TLS server name. Returns an Error to refuse the handshake.
 */
export function nodeServerIdentityCheck(
  standard: (host: string, cert: PeerCertificate) => Error | undefined,
  trustedCaPem: string | Buffer,
): (host: string, cert: PeerCertificate) => Error | undefined {
  const anchors = pemCertificates(trustedCaPem);
  return (host, cert) => {
    const err = standard(host, cert);
    if (err) return err;
    let problem: string | null;
    try {
      const chain = chainOfPeerCertificate(cert);
      problem = verifiedChainProblem(chain, anchors) ?? nodeSubtreeProblem(chain, 'server', nodePathOfTlsName(host));
    } catch (e) {
      problem = `the server's certificate chain is unreadable (${(e as Error).message})`;
    }
    return problem ? Object.assign(new Error(`server "${host}" refused: ${problem}`), { code: 'ERR_AURAE_NODE_SUBTREE' }) : undefined;
  };
}
