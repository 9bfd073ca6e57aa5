// A signed release: the manifest `aurae-release.json` (its version and each file's size and sha256) and its
// detached signature `aurae-release.json.sig` (base64 of RSA PKCS#1 v1.5 over SHA-256 of the manifest's exact bytes).
// The one owner of that format: image/sign writes releases with these functions, auraed checks them
// (supervisor/upgrade), aer reads them (aer/sdk/upgrade.ts). Pure apart from node:crypto; no heavy imports (the
// SDK and init bundle it).
import { createHash, createPrivateKey, sign, verify, X509Certificate } from 'node:crypto';
import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';
import type { SlotRole } from './slots';

// English messages (as supervisor/config does; zod/mini has none by default).
z.config(en());

export const RELEASE_MANIFEST_FILE = 'aurae-release.json';
export const RELEASE_SIGNATURE_FILE = 'aurae-release.json.sig';
export const RELEASE_FORMAT = 'aurae-release/1';
/** Largest manifest accepted (it lists a handful of files). */
export const MAX_MANIFEST_BYTES = 64 * 1024;
/** Largest release (the sum of its files): an ESP holds two slots of ~100 MB each. */
export const MAX_RELEASE_BYTES = 1024 * 1024 * 1024;
/**
 * What a file of a release is, each required once: the slot's files that come from the build (slots.ts SLOT_ROLES;
 * the slot's manifest and signature are the release's own): "uki" (the signed Unified Kernel Image, the boot
 * entry), "kernel" and "initramfs" (what children spawn from while that slot runs).
 */
export const RELEASE_ROLES = ['uki', 'kernel', 'initramfs'] as const satisfies readonly SlotRole[];
export type ReleaseRole = (typeof RELEASE_ROLES)[number];

/**
 * A release version as it appears in the boot entry's name: letters, digits, "." and "_" (no "-", which separates
 * the id's parts, and no "+", which starts systemd-boot's boot counter), 1..64 characters, starting alphanumeric.
 */
export const RELEASE_VERSION = /^[A-Za-z0-9][A-Za-z0-9._]{0,63}$/;
export const RELEASE_VERSION_FORM = '1..64 letters, digits, "." or "_", starting with a letter or digit (no "-" or "+")';
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** A file name inside the release folder: no directories. */
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const ReleaseFileSchema = z.strictObject({
  role: z.enum(RELEASE_ROLES),
  name: z.string().check(z.regex(FILE_NAME, 'expected a plain file name: letters, digits, ".", "_" or "-", at most 128 characters')),
  size: z.int().check(z.minimum(1), z.maximum(MAX_RELEASE_BYTES)),
  sha256: z.string().check(z.regex(SHA256_HEX, 'expected 64 lower-case hex digits')),
});

export const ReleaseManifestSchema = z
  .strictObject({
    format: z.literal(RELEASE_FORMAT),
    version: z.string().check(z.regex(RELEASE_VERSION, `expected ${RELEASE_VERSION_FORM}`)),
    files: z.array(ReleaseFileSchema).check(z.minLength(1), z.maxLength(8)),
  })
  .check(
    z.superRefine((m, ctx) => {
      const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', input: m, path, message });
      const seen = new Set<string>();
      m.files.forEach((f, i) => {
        if (seen.has(f.name)) issue(['files', i, 'name'], `"${f.name}" is listed twice`);
        seen.add(f.name);
      });
      for (const role of RELEASE_ROLES) {
        const n = m.files.filter((f) => f.role === role).length;
        if (n !== 1) issue(['files'], `expected exactly one file with role "${role}", found ${n}`);
      }
      const total = m.files.reduce((sum, f) => sum + f.size, 0);
      if (total > MAX_RELEASE_BYTES) issue(['files'], `the files add up to ${total} bytes: at most ${MAX_RELEASE_BYTES}`);
    }),
  );

export type ReleaseManifest = z.infer<typeof ReleaseManifestSchema>;
export type ReleaseFile = ReleaseManifest['files'][number];

/** Why a release was refused; `code` maps to the API status (INVALID_ARGUMENT / PERMISSION_DENIED / FAILED_PRECONDITION). */
export class ReleaseError extends Error {
  constructor(
    readonly code: 'INVALID_ARGUMENT' | 'PERMISSION_DENIED' | 'FAILED_PRECONDITION',
    message: string,
  ) {
    super(message);
    this.name = 'ReleaseError';
  }
}

/** The manifest's text as image/sign writes it (stable key order, one trailing newline). */
export function releaseManifestText(manifest: { version: string; files: ReleaseFile[] }): string {
  const value: ReleaseManifest = { format: RELEASE_FORMAT, version: manifest.version, files: manifest.files.map((f) => ({ role: f.role, name: f.name, size: f.size, sha256: f.sha256 })) };
  parseReleaseManifest(Buffer.from(JSON.stringify(value)));
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Parse and check manifest bytes; INVALID_ARGUMENT naming the field otherwise. */
export function parseReleaseManifest(bytes: Uint8Array): ReleaseManifest {
  if (bytes.length === 0) throw new ReleaseError('INVALID_ARGUMENT', `manifest: empty: send the bytes of ${RELEASE_MANIFEST_FILE}`);
  if (bytes.length > MAX_MANIFEST_BYTES) throw new ReleaseError('INVALID_ARGUMENT', `manifest: ${bytes.length} bytes: at most ${MAX_MANIFEST_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new ReleaseError('INVALID_ARGUMENT', `manifest: not valid JSON (${(err as Error).message}): send ${RELEASE_MANIFEST_FILE} as built`);
  }
  const result = ReleaseManifestSchema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `manifest.${issue.path.join('.') || '(root)'}: ${issue.message}`);
  throw new ReleaseError('INVALID_ARGUMENT', problems.join('; '));
}

/** The sum of the manifest's file sizes: the length of the byte stream an upload carries. */
export function releaseSize(manifest: Pick<ReleaseManifest, 'files'>): number {
  return manifest.files.reduce((sum, f) => sum + f.size, 0);
}

/** Where each file lies in the concatenation of the manifest's files (manifest order). */
export function fileRanges(manifest: Pick<ReleaseManifest, 'files'>): { file: ReleaseFile; start: number; end: number }[] {
  let at = 0;
  return manifest.files.map((file) => {
    const start = at;
    at += file.size;
    return { file, start, end: at };
  });
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Sign manifest bytes with an RSA private key (PEM): the raw signature (image/sign writes it base64). */
export function signRelease(manifest: Uint8Array, keyPem: string | Buffer): Buffer {
  return sign('sha256', manifest, createPrivateKey(keyPem));
}

/** The .sig file's text → raw signature bytes (base64, whitespace ignored); INVALID_ARGUMENT when it is not base64. */
export function decodeSignatureText(text: string): Buffer {
  const compact = text.replace(/\s+/g, '');
  if (compact === '') return Buffer.alloc(0);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || compact.length % 4 !== 0) {
    throw new ReleaseError('INVALID_ARGUMENT', `${RELEASE_SIGNATURE_FILE}: not base64: it holds the base64 of the manifest's signature`);
  }
  return Buffer.from(compact, 'base64');
}

/** A pinned image-signing certificate, as the node loaded it. */
export interface PinnedCert {
  cert: X509Certificate;
  /** The file it came from (for messages). */
  file: string;
  subject: string;
  /** Hex SHA-256 of the DER. */
  fingerprint: string;
}

/** The certificates in a PEM text (one or more blocks), each checked to parse; `file` names them in errors. */
export function parsePinnedCerts(pem: string, file: string): PinnedCert[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`upgrade.signingCerts: ${file} holds no PEM certificate: pin the image-signing certificate (out/pki/image-signing.crt of the build)`);
  return blocks.map((block) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (err) {
      throw new Error(`upgrade.signingCerts: ${file} holds a certificate that does not parse (${(err as Error).message})`);
    }
    return { cert, file, subject: cert.subject.replace(/\n/g, ', '), fingerprint: sha256Hex(cert.raw) };
  });
}

/**
 * The pinned certificate whose key made `signature` over `manifest`; PERMISSION_DENIED when the manifest is
 * unsigned or no pinned key verifies it, FAILED_PRECONDITION when nothing is pinned. Call before accepting data.
 */
export function verifyRelease(manifest: Uint8Array, signature: Uint8Array, pinned: readonly PinnedCert[]): PinnedCert {
  if (pinned.length === 0) {
    throw new ReleaseError(
      'FAILED_PRECONDITION',
      'upgrade: no image-signing certificate is pinned, so no release can be trusted: add the certificate file to the node config (upgrade.signingCerts, e.g. ["/etc/aurae/pki/image-signing.crt"]) and restart auraed',
    );
  }
  if (signature.length === 0) {
    throw new ReleaseError('PERMISSION_DENIED', `release: the manifest is unsigned: sign it with the image-signing key (npm run image writes ${RELEASE_SIGNATURE_FILE}) and send the signature`);
  }
  for (const p of pinned) {
    let ok = false;
    try {
      ok = verify('sha256', manifest, p.cert.publicKey, signature);
    } catch {
      ok = false; // a key type that cannot verify this signature: not this one
    }
    if (ok) return p;
  }
  const names = pinned.map((p) => `"${p.subject}" (sha256 ${p.fingerprint.slice(0, 16)}…)`).join(', ');
  throw new ReleaseError(
    'PERMISSION_DENIED',
    `release: the manifest's signature does not verify with any pinned image-signing certificate (${names}): the release was signed by another key or changed after signing; sign it with a pinned key or pin its certificate (upgrade.signingCerts)`,
  );
}
