// A spawned node's side of certificate renewal (NodeService/RenewIdentity, parent only): check that what the
// parent sends is a certificate for this very node from the parent's pinned spawn CA (and this node's own spawn
// CA re-certified with its same key), write it where the config says (so a restarted auraed serves it too),
// swap the listeners' certificate without a restart, and tell the VM subsystem (it renews its own children in
// turn, so their chains carry the new spawn CA certificate).
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import { caNameConstraints, caPathLength, splitPemCertificates } from '../pki';
import { nodeSubtreeProblem, pemCertificates, verifiedChainProblem } from '../pki/node-subtree';
import type { ServerPki } from '../server';

/** What the parent sends (the validated request). */
export interface IdentityRenewal {
  serverCertChainPem: string;
  serverKeyPem: string;
  /** '' when this node has no spawn CA. */
  spawnCaCertPem: string;
}

export interface NodeIdentityOptions {
  /** This node's path (config.node.name): the CN its certificate must keep. */
  nodePath: string;
  rootCaPem: string;
  /** The server certificate chain and spawn CA certificate this node serves and holds now (read at start). */
  serverCertChainPem: string;
  spawnCaCertPem: string | null;
  /** Where they live (config.pki): rewritten on renewal. */
  paths: { serverCert: string; serverKey: string; spawnCaCert: string | null };
  /** The listeners' credentials (server/credentials.ts ReloadableServerCredentials). */
  credentials: { reload(pki: ServerPki): void };
  /** After a renewal took effect; `spawnCaCertPem` is the re-certified spawn CA, or null when none. */
  onRenewed(spawnCaCertPem: string | null): void;
  log: Logger;
  now?: () => Date;
  /** Write a file atomically with `mode` (tests replace it). */
  write?: (path: string, content: string, mode: number) => void;
}

export interface NodeIdentity {
  /** Check and install a renewal; returns when the certificate now served expires. Throws AuraeError. */
  renew(renewal: IdentityRenewal): { notAfter: string };
}

/** Clock skew tolerated on a new certificate's notBefore (certificates.ts backdates it an hour). */
const SKEW_MS = 2 * 60 * 60 * 1000;

export function createNodeIdentity(options: NodeIdentityOptions): NodeIdentity {
  const now = options.now ?? (() => new Date());
  const write = options.write ?? writeAtomically;
  const root = new X509Certificate(options.rootCaPem);
  const bootChain = pemCertificates(options.serverCertChainPem);
  // The parent's spawn CA is pinned by key and subject (it is re-certified, never re-keyed, while this node runs).
  const parentCa = bootChain[1];
  let current = { leaf: bootChain[0]!, spawnCa: options.spawnCaCertPem };

  const refuse = (problem: string): never => {
    throw new AuraeError('INVALID_ARGUMENT', `renewed identity refused: ${problem}: the parent must send a certificate for "${options.nodePath}" from its own spawn CA`);
  };

  return {
    renew(renewal) {
      if (!parentCa) throw new AuraeError('FAILED_PRECONDITION', `node "${options.nodePath}" was not spawned by a parent: its certificate comes from the image build (aer pki), not from a renewal`);
      const at = now().getTime();
      const chain = pemCertificates(renewal.serverCertChainPem);
      const leaf = chain[0];
      if (!leaf) return refuse('server_cert_chain holds no certificate');
      const problem =
        leafProblem(leaf, current.leaf, parentCa, at) ??
        keyProblem(leaf, renewal.serverKeyPem) ??
        verifiedChainProblem([...chain, root], [root]) ??
        nodeSubtreeProblem([...chain, root], 'server', options.nodePath) ??
        spawnCaProblem(renewal.spawnCaCertPem, current.spawnCa, parentCa, root, at);
      if (problem) return refuse(problem);

      const { paths } = options;
      write(paths.serverKey, renewal.serverKeyPem, 0o600);
      write(paths.serverCert, renewal.serverCertChainPem, 0o644);
      if (paths.spawnCaCert !== null && renewal.spawnCaCertPem !== '') write(paths.spawnCaCert, renewal.spawnCaCertPem, 0o644);
      options.credentials.reload({ ca: Buffer.from(options.rootCaPem), cert: Buffer.from(renewal.serverCertChainPem), key: Buffer.from(renewal.serverKeyPem) });
      current = { leaf, spawnCa: renewal.spawnCaCertPem === '' ? null : renewal.spawnCaCertPem };
      const notAfter = new Date(leaf.validTo).toISOString();
      options.log.info('identity renewed by the parent', { notAfter, serial: leaf.serialNumber });
      options.onRenewed(current.spawnCa);
      return { notAfter };
    },
  };
}

/** The new leaf names the same node, is a server certificate, comes from the pinned parent spawn CA and is valid now. */
function leafProblem(leaf: X509Certificate, old: X509Certificate, parentCa: X509Certificate, at: number): string | null {
  if (leaf.ca) return 'the server certificate is a CA';
  if (leaf.subject !== old.subject || leaf.subjectAltName !== old.subjectAltName) {
    return `the server certificate names "${leaf.subject.replace(/\n/g, ', ')}" (${leaf.subjectAltName ?? 'no SAN'}), not this node`;
  }
  if (!leaf.checkIssued(parentCa) || !leaf.verify(parentCa.publicKey)) return "the server certificate is not signed by this node's parent's spawn CA";
  return validityProblem(leaf, at, 'the server certificate');
}

function keyProblem(leaf: X509Certificate, keyPem: string): string | null {
  try {
    return leaf.checkPrivateKey(createPrivateKey(keyPem)) ? null : 'server_key does not belong to the server certificate';
  } catch (err) {
    return `server_key is unreadable (${(err as Error).message})`;
  }
}

function validityProblem(cert: X509Certificate, at: number, what: string): string | null {
  if (Date.parse(cert.validTo) <= at) return `${what} expired at ${cert.validTo}`;
  if (Date.parse(cert.validFrom) > at + SKEW_MS) return `${what} is not valid before ${cert.validFrom}`;
  return null;
}

/** A spawn CA comes back exactly when this node has one: same subject, key and constraints, from the parent, valid now. */
function spawnCaProblem(nextPem: string, currentPem: string | null, parentCa: X509Certificate, root: X509Certificate, at: number): string | null {
  if (currentPem === null) return nextPem === '' ? null : 'spawn_ca_cert given, but this node has no spawn CA';
  if (nextPem === '') return 'spawn_ca_cert missing: this node has a spawn CA, which expires with it';
  const chain = splitPemCertificates(nextPem).map((pem) => new X509Certificate(pem));
  const [next, old] = [chain[0], new X509Certificate(splitPemCertificates(currentPem)[0]!)];
  if (!next?.ca) return 'spawn_ca_cert is not a CA certificate';
  if (next.subject !== old.subject) return `spawn_ca_cert names "${next.subject}", not this node's spawn CA "${old.subject}"`;
  const spki = (c: X509Certificate) => c.publicKey.export({ type: 'spki', format: 'der' });
  if (!spki(next).equals(spki(old))) return "spawn_ca_cert has another key than this node's spawn CA: it is re-certified, never re-keyed";
  if (JSON.stringify(caNameConstraints(nextPem)) !== JSON.stringify(caNameConstraints(currentPem)) || caPathLength(nextPem) !== caPathLength(currentPem)) {
    return "spawn_ca_cert changes the spawn CA's name constraints or path length";
  }
  if (!next.checkIssued(parentCa) || !next.verify(parentCa.publicKey)) return "spawn_ca_cert is not signed by this node's parent's spawn CA";
  return verifiedChainProblem([...chain, root], [root]) ?? validityProblem(next, at, 'spawn_ca_cert');
}

function writeAtomically(path: string, content: string, mode: number): void {
  const tmp = `${path}.renew`;
  rmSync(tmp, { force: true }); // created fresh, so `mode` applies (a key is never readable by others, even briefly)
  writeFileSync(tmp, content, { mode, flag: 'wx' });
  renameSync(tmp, path);
}
