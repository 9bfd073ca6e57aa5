// The node identity document: the one file that carries a root node's private keys (its server certificate chain
// and key, and its spawn CA when it may spawn). No build output holds it: `npm run image` writes it beside the
// build's PKI (out/pki/identity.json, 0600), and it reaches the node separately — over fw_cfg in QEMU
// (IDENTITY_FW_CFG) or in the AURAE_IDENTITY partition of a flashed disk (`aer image flash --identity`). init
// writes it to /run/aurae/pki (tmpfs), the directory spawned children use for their payload's PEMs.
// Owned here and imported by the build, init and the flasher. Light on purpose: init bundles it, so it uses
// node:crypto (built in) and never the PKI library.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import * as z from 'zod/mini';
import { certPem, keyPem, type GuestFile } from '../../guest/payload';
import { NODE_PKI_FILES } from '../../supervisor/config/node-paths';

/** fw_cfg item name (QEMU `-fw_cfg name=opt/aurae/identity,file=out/pki/identity.json`). */
export const IDENTITY_FW_CFG = 'opt/aurae/identity';
/** Where the kernel exposes that item (CONFIG_FW_CFG_SYSFS). */
export const IDENTITY_SYSFS_PATH = `/sys/firmware/qemu_fw_cfg/by_name/${IDENTITY_FW_CFG}/raw`;
/** GPT partition name of the identity partition of disk.raw (zero-filled in the image; written by the flasher). */
export const IDENTITY_PARTITION_NAME = 'AURAE_IDENTITY';
/** Its GPT type GUID (Aurae's own: no firmware or OS touches a partition of an unknown type). */
export const IDENTITY_PARTITION_TYPE = '809F0215-5CF0-44D8-AAEC-DA448F11C6C0';
/** Size of the identity partition in disk.raw: 1 MiB keeps the layout aligned; a document is a few KB. */
export const IDENTITY_PARTITION_BYTES = 1024 * 1024;
/** The most a document may hold (the partition is read up to here; the document ends at the first NUL). */
export const IDENTITY_MAX_BYTES = 64 * 1024;
/** File name of the document beside the build's PKI (out/pki/identity.json). */
export const IDENTITY_FILE_NAME = 'identity.json';

const IdentityEnvelope = z.strictObject({
  version: z.literal(1),
  kind: z.literal('aurae-node-identity'),
  /** The node name the certificate was issued for (init refuses an identity for another name). */
  node: z.string().check(z.minLength(1), z.maxLength(253)),
  /** The node's server certificate, then its issuers below the root CA. */
  serverCertChain: certPem,
  serverKey: keyPem,
  /** The node's spawn CA (chain) and key; null when it may not spawn children. */
  spawnCaCert: z.nullable(certPem),
  spawnCaKey: z.nullable(keyPem),
});

export type NodeIdentity = z.infer<typeof IdentityEnvelope>;

export class IdentityError extends Error {
  override readonly name = 'IdentityError';
  readonly code = 'IDENTITY_INVALID';
  constructor(
    message: string,
    readonly problems: string[],
  ) {
    super(message);
  }
}

/** The bytes of the document (out/pki/identity.json, the fw_cfg file, the partition's content before the NUL). */
export function identityDocumentText(identity: NodeIdentity): string {
  return `${JSON.stringify(identity, null, 2)}\n`;
}

/**
 * Parse and check a document: strict fields, PEM shapes, spawn CA cert and key together, each key the one of its
 * certificate. Throws IdentityError whose message starts with `source` and lists one `field: problem` per issue.
 */
export function parseIdentityDocument(text: string | Buffer, source = 'identity document'): NodeIdentity {
  const fail = (problems: string[]): never => {
    throw new IdentityError(`${source}: invalid node identity:\n  ${problems.join('\n  ')}`, problems);
  };
  const size = typeof text === 'string' ? Buffer.byteLength(text) : text.length;
  if (size > IDENTITY_MAX_BYTES) fail([`(root): ${size} bytes is more than the ${IDENTITY_MAX_BYTES} an identity may have`]);
  let value: unknown;
  try {
    value = JSON.parse(typeof text === 'string' ? text : text.toString('utf8'));
  } catch (err) {
    fail([`(root): not valid JSON: ${(err as Error).message}`]);
  }
  const parsed = IdentityEnvelope.safeParse(value);
  if (!parsed.success) fail(parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`));
  const identity = parsed.data!;
  const problems: string[] = [];
  if ((identity.spawnCaCert === null) !== (identity.spawnCaKey === null)) problems.push('spawnCaKey: spawnCaCert and spawnCaKey go together: set both or neither');
  problems.push(...keyMatches(identity.serverCertChain, identity.serverKey, 'serverKey', 'serverCertChain'));
  if (identity.spawnCaCert !== null && identity.spawnCaKey !== null) problems.push(...keyMatches(identity.spawnCaCert, identity.spawnCaKey, 'spawnCaKey', 'spawnCaCert'));
  if (problems.length) fail(problems);
  return identity;
}

/** The problem when `keyPem` is not the key of the first certificate in `chainPem` (none when it is). */
function keyMatches(chainPem: string, keyText: string, keyField: string, certField: string): string[] {
  try {
    const cert = new X509Certificate(chainPem.slice(0, chainPem.indexOf('-----END CERTIFICATE-----') + 25));
    return cert.checkPrivateKey(createPrivateKey(keyText)) ? [] : [`${keyField}: is not the key of the first certificate in ${certField} (keys and certificates of different PKIs?)`];
  } catch (err) {
    return [`${certField}: cannot be read as X.509 with ${keyField}: ${(err as Error).message}`];
  }
}

/**
 * The identity's content as found in a partition or fw_cfg item: the bytes before the first NUL (a partition is
 * zero-filled after the document). null when there is nothing (blank). Pure.
 */
export function identityBytes(raw: Buffer): Buffer | null {
  const nul = raw.indexOf(0);
  const bytes = nul === -1 ? raw : raw.subarray(0, nul);
  return bytes.toString('utf8').trim() === '' ? null : bytes;
}

/** The PEM files init writes for `identity` (keys 0600, in the 0700 NODE_PKI_DIR). Pure. */
export function identityPkiFiles(identity: NodeIdentity, withSpawnCa: boolean): GuestFile[] {
  const files: GuestFile[] = [
    { path: NODE_PKI_FILES.serverCert, content: identity.serverCertChain, mode: 0o644 },
    { path: NODE_PKI_FILES.serverKey, content: identity.serverKey, mode: 0o600 },
  ];
  if (withSpawnCa && identity.spawnCaCert !== null && identity.spawnCaKey !== null) {
    files.push(
      { path: NODE_PKI_FILES.spawnCaCert, content: identity.spawnCaCert, mode: 0o644 },
      { path: NODE_PKI_FILES.spawnCaKey, content: identity.spawnCaKey, mode: 0o600 },
    );
  }
  return files;
}
