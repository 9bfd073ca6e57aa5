// The identity a parent mints for a child it spawns: a server certificate signed by the parent's spawn CA
// (CN = the child's node path, one SAN: its TLS name) and, when the child may spawn further, a spawn CA of its
// own one path-length step shorter, name-constrained to the child's subtree (it can vouch for db.web.aurae,
// never for web.aurae, aurae or an IP address). The parent's own keys never leave the parent.
import {
  type CertificateAuthority,
  type IssueOptions,
  caPathLength,
  createIntermediateCa,
  issueClientCert,
  issuerChainPem,
  issueServerCert,
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
  // No loopback SANs: the parent's spawn CA is name-constrained to its own subtree and excludes IP addresses,
  // so whoever reaches the child (the parent's router, tests) uses the TLS name as the server name.
  const server = await issueServerCert(parent.spawnCa, { ...options, nodeName: tlsName, commonName: nodePath, loopback: false });
  const identity: ChildIdentity = {
    nodePath,
    tlsName,
    serverCertChainPem: server.certPem + issuerChainPem(parent.spawnCa.certPem),
    serverKeyPem: server.keyPem,
  };
  const parentLimit = caPathLength(parent.spawnCa.certPem);
  const pathLength = Math.min(depthLeft - 2, parentLimit === undefined ? Infinity : parentLimit - 1);
  if (pathLength >= 0) {
    identity.spawnCa = await createIntermediateCa(parent.spawnCa, { ...options, name: spawnCaName(nodePath), pathLength, permittedDnsSubtree: tlsName });
  }
  return identity;
}

/**
 * A client certificate for the parent's own identity (CN = its node path), minted by its spawn CA, for calls
 * from the parent to its children. `certChainPem` carries the spawn CA chain so a server trusting only the root
 * CA accepts it.
 */
export async function mintParentClientCert(parent: ParentIdentity, options: IssueOptions = {}): Promise<{ certChainPem: string; keyPem: string }> {
  const problem = nodePathProblem(parent.nodePath, 'parent node path');
  if (problem) throw new GuestError('GUEST_INVALID_ARGUMENT', problem);
  const client = await issueClientCert(parent.spawnCa, { ...options, identity: parent.nodePath });
  return { certChainPem: client.certPem + issuerChainPem(parent.spawnCa.certPem), keyPem: client.keyPem };
}
