// The identity a parent mints for a child it spawns: a server certificate signed by the parent's spawn CA
// (CN = the child's node path, one SAN: its TLS name) and, when the child may spawn further, a spawn CA of its
// own one path-length step shorter, name-constrained to the child's subtree (it can vouch for db.web.aurae,
// never for web.aurae, aurae or an IP address). The parent's own keys never leave the parent.
// Both are short-lived (CHILD_VALIDITY_DAYS): the parent renews them while the child runs (renewChildIdentity).
import {
  type CertificateAuthority,
  CHILD_VALIDITY_DAYS,
  type IssueOptions,
  caPathLength,
  createIntermediateCa,
  issueClientCert,
  issuerChainPem,
  issueServerCert,
  recertifyIntermediateCa,
  spawnCaName,
} from '../supervisor/pki';
import { GuestError } from './errors';
import { childPathOf, nodeDepth, nodePathProblem, tlsNameOf } from './names';

/** A spawn CA: its certificate (first) followed by its issuers below the root, and its key (PKCS#8 PEM). */
export type SpawnCa = CertificateAuthority;

export interface ParentIdentity {
  /** The parent's node path, e.g. "aurae". */
  nodePath: string;
  /** The parent's spawn CA (config pki.spawnCaCert / spawnCaKey). */
  spawnCa: SpawnCa;
}

export interface ChildIdentity {
  /** `parent/child`, e.g. "aurae/web": the child's node.name and its certificate's CN. */
  nodePath: string;
  /** The TLS server name clients (and the parent) use for the child, e.g. "web.aurae". */
  tlsName: string;
  /** The child's server certificate followed by the spawn CA chain: verifiable with only the root CA. */
  serverCertChainPem: string;
  serverKeyPem: string;
  /** The child's own spawn CA (chain), present only when the child may spawn children itself. */
  spawnCa?: SpawnCa;
}

/**
 * Mint the identity of the child `childLabel` of `parent`. `depthLeft` is depthLeftOf(parent's config): it must be
 * at least 1; the child gets its own spawn CA when depthLeft >= 2 and the parent's spawn CA allows one more
 * intermediate (its pathLenConstraint >= 1).
 */
export async function mintChildIdentity(
  parent: ParentIdentity,
  childLabel: string,
  depthLeft: number,
  options: IssueOptions = {},
): Promise<ChildIdentity> {
  const parentProblem = nodePathProblem(parent.nodePath, 'parent node path');
  if (parentProblem) throw new GuestError('GUEST_INVALID_ARGUMENT', parentProblem);
  if (!Number.isInteger(depthLeft)) throw new GuestError('GUEST_INVALID_ARGUMENT', `depthLeft ${depthLeft} is invalid: expected an integer`);
  if (depthLeft < 1) {
    throw new GuestError(
      'GUEST_DEPTH_EXCEEDED',
      `cannot spawn "${childLabel}" under node "${parent.nodePath}" (depth ${nodeDepth(parent.nodePath)}): the depth limit vms.maxDepth is reached; ` +
        `spawn it from a node nearer the root, or raise vms.maxDepth in the root node's config`,
    );
  }
  const nodePath = childPathOf(parent.nodePath, childLabel);
  const tlsName = tlsNameOf(nodePath);
  const short = { validityDays: CHILD_VALIDITY_DAYS, ...options };
  const identity: ChildIdentity = { nodePath, tlsName, ...(await mintChildServerCert(parent, nodePath, tlsName, short)) };
  const parentLimit = caPathLength(parent.spawnCa.certPem);
  const pathLength = Math.min(depthLeft - 2, parentLimit === undefined ? Infinity : parentLimit - 1);
  if (pathLength >= 0) {
    identity.spawnCa = await createIntermediateCa(parent.spawnCa, { ...short, name: spawnCaName(nodePath), pathLength, permittedDnsSubtree: tlsName });
  }
  return identity;
}

/** What a running child gets when its parent renews its identity (NodeService/RenewIdentity). */
export interface ChildRenewal {
  /** A new server certificate (new key) followed by the parent's spawn CA chain. */
  serverCertChainPem: string;
  serverKeyPem: string;
  /** The child's spawn CA re-certified (same key, subject and constraints), then its issuers; null when it has none. */
  spawnCaCertPem: string | null;
}

/**
 * Renew the identity of the running child `childLabel` of `parent`: a new CHILD_VALIDITY_DAYS server
 * certificate, and its spawn CA (`spawnCaCertPem`, the certificate the child holds now, null when none)
 * re-certified with the same key, so every certificate it issued to its own children keeps verifying.
 */
export async function renewChildIdentity(parent: ParentIdentity, childLabel: string, spawnCaCertPem: string | null, options: IssueOptions = {}): Promise<ChildRenewal> {
  const parentProblem = nodePathProblem(parent.nodePath, 'parent node path');
  if (parentProblem) throw new GuestError('GUEST_INVALID_ARGUMENT', parentProblem);
  const nodePath = childPathOf(parent.nodePath, childLabel);
  const short = { validityDays: CHILD_VALIDITY_DAYS, ...options };
  const server = await mintChildServerCert(parent, nodePath, tlsNameOf(nodePath), short);
  const spawnCa = spawnCaCertPem === null ? null : await recertifyIntermediateCa(parent.spawnCa, spawnCaCertPem, short);
  return { ...server, spawnCaCertPem: spawnCa };
}

async function mintChildServerCert(parent: ParentIdentity, nodePath: string, tlsName: string, options: IssueOptions): Promise<{ serverCertChainPem: string; serverKeyPem: string }> {
  // No loopback SANs: the parent's spawn CA is name-constrained to its own subtree and excludes IP addresses,
  // so whoever reaches the child (the parent's router, tests) uses the TLS name as the server name.
  const server = await issueServerCert(parent.spawnCa, { ...options, nodeName: tlsName, commonName: nodePath, loopback: false });
  return { serverCertChainPem: server.certPem + issuerChainPem(parent.spawnCa.certPem), serverKeyPem: server.keyPem };
}

/**
 * A client certificate for the parent's own identity (CN = its node path), minted by its spawn CA, for calls
 * from the parent to its children. `certChainPem` carries the spawn CA chain so a server trusting only the root
 * CA accepts it. Short-lived as the children's own (the router mints a new one at half-life).
 */
export async function mintParentClientCert(parent: ParentIdentity, options: IssueOptions = {}): Promise<{ certChainPem: string; keyPem: string }> {
  const problem = nodePathProblem(parent.nodePath, 'parent node path');
  if (problem) throw new GuestError('GUEST_INVALID_ARGUMENT', problem);
  const client = await issueClientCert(parent.spawnCa, { validityDays: CHILD_VALIDITY_DAYS, ...options, identity: parent.nodePath });
  return { certChainPem: client.certPem + issuerChainPem(parent.spawnCa.certPem), keyPem: client.keyPem };
}
