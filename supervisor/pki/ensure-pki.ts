// Create-if-missing PKI directory for image builds and dev hosts. Existing, still-valid files are reused
// untouched, so repeated builds produce byte-identical images. Inspect (read + check) → plan (pure) → apply.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import './reflect-metadata';
import * as x509 from '@peculiar/x509';
import {
  type CertificateAuthority,
  type CertifiedKey,
  PkiError,
  caNameConstraints,
  caPathLength,
  createCa,
  createIntermediateCa,
  issueClientCert,
  issueServerCert,
  recertifyCa,
} from './certificates';
import { spawnCaName } from './node-subtree';

export interface PkiFiles {
  caCert: string;
  caKey: string;
  nodeCert: string;
  nodeKey: string;
  adminCert: string;
  adminKey: string;
  /** The node's spawn CA (intermediate, signed by the CA): it mints the certificates of spawned children. */
  spawnCaCert: string;
  spawnCaKey: string;
}

/** The file names ensurePki uses under `dir`. */
export function pkiFiles(dir: string): PkiFiles {
  return {
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    nodeCert: join(dir, 'node.crt'),
    nodeKey: join(dir, 'node.key'),
    adminCert: join(dir, 'admin.crt'),
    adminKey: join(dir, 'admin.key'),
    spawnCaCert: join(dir, 'spawn-ca.crt'),
    spawnCaKey: join(dir, 'spawn-ca.key'),
  };
}

export interface EnsurePkiOptions {
  nodeName: string;
  /** CN of the admin client certificate; must be in the node config's authz.admins. Default "admin". */
  adminIdentity?: string;
  /** CN of a newly created CA. Default "aurae-ca <nodeName>". */
  caName?: string;
  /** Extra server SANs (see issueServerCert). */
  sans?: string[];
  /**
   * vms.maxDepth of the nodes this PKI serves (default 2): the spawn CA gets pathLenConstraint maxDepth-1;
   * 0 creates no spawn CA.
   */
  maxDepth?: number;
  /** Reissue leaf certificates that expire within this many days. Default 30. */
  renewWithinDays?: number;
  now?: Date;
}

export type PairName = 'ca' | 'node' | 'admin';
export type PairAction = 'reuse' | 'create';
/** 'recertify': a root made before spawn CAs (pathLenConstraint 0) re-issued with its same key, unconstrained. */
export type CaAction = PairAction | 'recertify';

export interface EnsurePkiResult {
  files: PkiFiles;
  /** What happened to each certificate/key pair, with the reason when it was (re)created. */
  actions: Record<Exclude<PairName, 'ca'>, { action: PairAction; reason: string }> & {
    ca: { action: CaAction; reason: string };
    /** 'none': maxDepth 0, no spawn CA wanted (an existing one is left alone). */
    spawnCa: { action: PairAction | 'none'; reason: string };
  };
}

/** What was found on disk for one pair. */
export type PairState =
  | { kind: 'missing' }
  | { kind: 'partial'; present: string; absent: string }
  | { kind: 'present'; pair: CertifiedKey };

/** Why an existing leaf pair cannot be reused, or null when it can. Pure; exported for tests. */
export type LeafCheck = (pair: CertifiedKey, ca: CertificateAuthority) => string | null;

export interface PkiPlan {
  ca: { action: 'reuse'; pair: CertifiedKey } | { action: 'create' };
  node: { action: PairAction; reason: string };
  admin: { action: PairAction; reason: string };
}

/**
 * Decide what to create. A CA is never replaced automatically: replacing it silently would invalidate every
 * certificate already handed out, so a half-present or broken CA is an error the operator must resolve.
 */
export function planPki(
  state: Record<PairName, PairState>,
  files: PkiFiles,
  checkNode: LeafCheck,
  checkAdmin: LeafCheck,
): PkiPlan {
  const ca = state.ca;
  if (ca.kind === 'partial') {
    throw new PkiError(
      'PKI_INCONSISTENT',
      `found ${ca.present} but not ${ca.absent}: restore ${ca.absent}, or delete ${ca.present} to create a new CA ` +
        `(this invalidates every certificate it issued)`,
    );
  }
  if (ca.kind === 'missing') {
    return {
      ca: { action: 'create' },
      node: { action: 'create', reason: 'new CA' },
      admin: { action: 'create', reason: 'new CA' },
    };
  }
  const caProblem = checkCaPair(ca.pair);
  if (caProblem) {
    throw new PkiError('PKI_INCONSISTENT', `${files.caCert}: ${caProblem}: fix it, or delete ca.crt and ca.key to start over`);
  }
  const leaf = (s: PairState, check: LeafCheck) => {
    if (s.kind === 'missing') return { action: 'create' as const, reason: 'missing' };
    if (s.kind === 'partial') return { action: 'create' as const, reason: `${s.absent} missing` };
    const problem = check(s.pair, ca.pair);
    return problem ? { action: 'create' as const, reason: problem } : { action: 'reuse' as const, reason: 'valid' };
  };
  return {
    ca: { action: 'reuse', pair: ca.pair },
    node: leaf(state.node, checkNode),
    admin: leaf(state.admin, checkAdmin),
  };
}

/** Create whatever is missing under `dir` and return the file paths; keys are written mode 0600. */
export async function ensurePki(dir: string, options: EnsurePkiOptions): Promise<EnsurePkiResult> {
  const files = pkiFiles(dir);
  const adminIdentity = options.adminIdentity ?? 'admin';
  const now = options.now ?? new Date();
  const renewMs = (options.renewWithinDays ?? 30) * 24 * 60 * 60 * 1000;
  const issue = { now };

  await mkdir(dir, { recursive: true, mode: 0o700 });
  const state: Record<PairName, PairState> = {
    ca: await readPair(files.caCert, files.caKey),
    node: await readPair(files.nodeCert, files.nodeKey),
    admin: await readPair(files.adminCert, files.adminKey),
  };
  const plan = planPki(
    state,
    files,
    (pair, ca) => checkLeafPair(pair, ca, { now, renewMs, host: options.nodeName, sans: options.sans ?? [] }),
    (pair, ca) => checkLeafPair(pair, ca, { now, renewMs, commonName: adminIdentity }),
  );

  const maxDepth = options.maxDepth ?? 2;
  let ca: CertificateAuthority;
  let caAction: EnsurePkiResult['actions']['ca'];
  if (plan.ca.action === 'create') {
    // Unconstrained: the spawn CA below it carries the depth limit (pathLenConstraint maxDepth-1).
    ca = await createCa(options.caName ?? `aurae-ca ${options.nodeName}`, { ...issue, pathLength: null });
    await writePair(files.caCert, files.caKey, ca);
    caAction = { action: 'create', reason: 'missing' };
  } else {
    ca = plan.ca.pair;
    caAction = { action: 'reuse', reason: 'valid' };
    const limit = caPathLength(ca.certPem);
    if (maxDepth > 0 && limit !== undefined && limit < maxDepth) {
      // Same key and subject: every certificate it issued stays valid; only the path length limit is lifted.
      ca = await recertifyCa(ca, { ...issue, pathLength: null });
      await writeAtomic(files.caCert, ca.certPem, 0o644);
      caAction = { action: 'recertify', reason: `pathLenConstraint ${limit} leaves no room for spawn CAs ${maxDepth} levels deep; same key` };
    }
  }
  if (plan.node.action === 'create') {
    await writePair(files.nodeCert, files.nodeKey, await issueServerCert(ca, { ...issue, nodeName: options.nodeName, sans: options.sans ?? [] }));
  }
  if (plan.admin.action === 'create') {
    await writePair(files.adminCert, files.adminKey, await issueClientCert(ca, { ...issue, identity: adminIdentity }));
  }
  let spawnCa: EnsurePkiResult['actions']['spawnCa'] = { action: 'none', reason: 'vms.maxDepth is 0' };
  if (maxDepth > 0) {
    const pathLength = maxDepth - 1;
    const existing = await readPair(files.spawnCaCert, files.spawnCaKey);
    const problem =
      existing.kind === 'missing'
        ? 'missing'
        : existing.kind === 'partial'
          ? `${existing.absent} missing`
          : checkSpawnCaPair(existing.pair, ca, { now, renewMs, pathLength, nodeName: options.nodeName });
    if (problem === null) {
      spawnCa = { action: 'reuse', reason: 'valid' };
    } else {
      // Name-constrained to the node's subtree: it can vouch for web.aurae, never for the node itself or an IP.
      const created = await createIntermediateCa(ca, { ...issue, name: spawnCaName(options.nodeName), pathLength, permittedDnsSubtree: options.nodeName });
      await writePair(files.spawnCaCert, files.spawnCaKey, created);
      spawnCa = { action: 'create', reason: problem };
    }
  }
  // Reused keys keep their bytes but must not stay readable by others.
  for (const key of [files.caKey, files.nodeKey, files.adminKey]) await restrictMode(key);
  if (maxDepth > 0) await restrictMode(files.spawnCaKey);

  return {
    files,
    actions: {
      // planPki only creates a CA when none exists; a broken one is an error.
      ca: caAction,
      node: plan.node,
      admin: plan.admin,
      spawnCa,
    },
  };
}

/**
 * Why an existing spawn CA pair cannot be reused (not signed by `ca`, wrong path length, no or other name
 * constraints than the node's subtree, expiring), or null. `nodeName` omitted: the name constraints are not checked.
 */
export function checkSpawnCaPair(
  pair: CertifiedKey,
  ca: CertifiedKey,
  expect: { now: Date; renewMs: number; pathLength: number; nodeName?: string },
): string | null {
  try {
    const cert = new X509Certificate(pair.certPem);
    const caCert = new X509Certificate(ca.certPem);
    if (!cert.ca) return 'not a CA certificate';
    if (!cert.checkPrivateKey(createPrivateKey(pair.keyPem))) return 'key does not match certificate';
    if (!cert.verify(caCert.publicKey)) return 'not issued by the current CA';
    const limit = caPathLength(pair.certPem);
    if (limit !== expect.pathLength) return `pathLenConstraint is ${limit ?? 'unset'}, want ${expect.pathLength} (vms.maxDepth ${expect.pathLength + 1})`;
    if (expect.nodeName !== undefined) {
      const constraints = caNameConstraints(pair.certPem);
      if (constraints === null) return 'no name constraints (made before spawn CAs were confined to their subtree)';
      if ('problem' in constraints) return constraints.problem;
      if (constraints.dnsSubtree !== expect.nodeName) return `name constraints permit .${constraints.dnsSubtree}, want .${expect.nodeName}`;
    }
    if (new Date(cert.validTo).getTime() - expect.now.getTime() < expect.renewMs) return `expires ${cert.validTo}`;
    return null;
  } catch (err) {
    return `unreadable (${(err as Error).message})`;
  }
}

function checkCaPair(pair: CertifiedKey): string | null {
  try {
    const cert = new X509Certificate(pair.certPem);
    if (!cert.ca) return 'not a CA certificate';
    if (!cert.checkPrivateKey(createPrivateKey(pair.keyPem))) return 'ca.key does not match ca.crt';
    return null;
  } catch (err) {
    return `unreadable (${(err as Error).message})`;
  }
}

interface LeafExpectations {
  now: Date;
  renewMs: number;
  /** The server certificate must be valid for this host name, and for each extra SAN. */
  host?: string;
  sans?: string[];
  /** The client certificate's CN. */
  commonName?: string;
}

/** Why an existing leaf pair cannot be reused, or null. */
export function checkLeafPair(pair: CertifiedKey, ca: CertifiedKey, expect: LeafExpectations): string | null {
  try {
    const cert = new X509Certificate(pair.certPem);
    const caCert = new X509Certificate(ca.certPem);
    if (!cert.checkPrivateKey(createPrivateKey(pair.keyPem))) return 'key does not match certificate';
    if (!cert.verify(caCert.publicKey)) return 'not issued by the current CA';
    if (new Date(cert.validTo).getTime() - expect.now.getTime() < expect.renewMs) return `expires ${cert.validTo}`;
    if (expect.host !== undefined) {
      if (cert.checkHost(expect.host, { wildcards: false }) === undefined) return `not valid for node name "${expect.host}"`;
      for (const san of expect.sans ?? []) {
        const ok = isIP(san) ? cert.checkIP(san) : cert.checkHost(san, { wildcards: false });
        if (ok === undefined) return `missing SAN ${san}`;
      }
    }
    if (expect.commonName !== undefined) {
      const cn = new x509.X509Certificate(pair.certPem).subjectName.getField('CN');
      if (cn.length !== 1 || cn[0] !== expect.commonName) return `CN is not "${expect.commonName}"`;
    }
    return null;
  } catch (err) {
    return `unreadable (${(err as Error).message})`;
  }
}

async function readPair(certPath: string, keyPath: string): Promise<PairState> {
  const cert = await readIfExists(certPath);
  const key = await readIfExists(keyPath);
  if (cert === null && key === null) return { kind: 'missing' };
  if (cert === null) return { kind: 'partial', present: keyPath, absent: certPath };
  if (key === null) return { kind: 'partial', present: certPath, absent: keyPath };
  return { kind: 'present', pair: { certPem: cert, keyPem: key } };
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

async function writePair(certPath: string, keyPath: string, pair: CertifiedKey): Promise<void> {
  // Key first: a crash between the two leaves a pair that readPair reports as partial and we reissue.
  await writeAtomic(keyPath, pair.keyPem, 0o600);
  await writeAtomic(certPath, pair.certPem, 0o644);
}

async function writeAtomic(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content, { mode });
  await chmod(tmp, mode); // the umask may have narrowed or (for certs) the mode is what we want regardless
  await rename(tmp, path);
}

async function restrictMode(path: string): Promise<void> {
  const st = await stat(path);
  if ((st.mode & 0o777) !== 0o600) await chmod(path, 0o600);
}
