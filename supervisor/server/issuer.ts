// Who signed the caller's certificate? TLS only proves the chain reaches the root CA, and every node that may
// spawn children holds a spawn CA under that root: anyone with such a key could mint "CN=admin". So identities
// are taken only from certificates the root CA signed directly; a certificate signed by this node's parent's
// spawn CA counts only as the parent itself (which may forward calls on behalf of others), and only when it
// names the node that spawn CA belongs to (the subtree rule, supervisor/pki/node-subtree.ts). The parent's spawn
// CA is pinned: the one in this node's payload. A sibling's, or an old one of a freed or re-spawned parent,
// signs nothing this node accepts.
import { createHash, X509Certificate } from 'node:crypto';
import { nodeSubtreeProblem } from '../pki/node-subtree';

export type Issuer = 'root' | 'parent' | 'other';

/** Classify a peer leaf certificate (DER) by the key that signed it. Results are cached per certificate. */
export type IssuerCheck = (leafDer: Buffer) => Issuer;

/**
 * @param rootCaPem the node CA (the trust root) certificate
 * @param parentSpawnCaPem the spawn CA certificate of this node's parent (guest nodes), or null
 */
export function createIssuerCheck(rootCaPem: string | Buffer, parentSpawnCaPem: string | Buffer | null): IssuerCheck {
  const root = new X509Certificate(rootCaPem);
  const parent = parentSpawnCaPem ? new X509Certificate(parentSpawnCaPem) : null;
  const cache = new Map<string, Issuer>();
  return (leafDer) => {
    const key = createHash('sha256').update(leafDer).digest('hex');
    let issuer = cache.get(key);
    if (!issuer) {
      let leaf: X509Certificate;
      try {
        leaf = new X509Certificate(leafDer);
      } catch {
        return 'other';
      }
      issuer = leaf.verify(root.publicKey)
        ? 'root'
        : parent && leaf.checkIssued(parent) && leaf.verify(parent.publicKey) && nodeSubtreeProblem([leaf, parent], 'client') === null
          ? 'parent'
          : 'other';
      if (cache.size > 10_000) cache.clear(); // bounded: one entry per distinct client certificate
      cache.set(key, issuer);
    }
    return issuer;
  };
}
