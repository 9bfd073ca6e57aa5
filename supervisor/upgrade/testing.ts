// Test fixtures for the upgrade service: a throwaway image-signing key and self-signed certificate, a release
// folder signed with it, and an ESP folder with slots. Not part of auraed.
import '../pki/reflect-metadata';
import { KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as x509 from '@peculiar/x509';
import { RELEASE_MANIFEST_FILE, RELEASE_SIGNATURE_FILE, releaseManifestText, type ReleaseRole, sha256Hex, signRelease } from './release';
import { ESP_PATHS, entryFileName, entryId, slotFileName } from './slots';

export interface SigningIdentity {
  keyPem: string;
  certPem: string;
}

/** A fresh RSA-2048 key and a self-signed certificate "CN=<cn>" for it (as image/sign makes, in ~0.1 s). */
export async function makeSigningIdentity(cn = 'Aurae image signing (test)'): Promise<SigningIdentity> {
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    { serialNumber: '01', name: `CN=${cn}`, notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000), keys, signingAlgorithm: alg },
    webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1],
  );
  const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString();
  return { keyPem, certPem: `${cert.toString('pem')}\n` };
}

export interface TestRelease {
  dir: string;
  version: string;
  /** Each role's bytes. */
  files: Record<ReleaseRole, Buffer>;
  manifestBytes: Buffer;
}

/** Write a signed release folder under `dir`: random bytes of the given sizes per role, the manifest, its .sig. */
export function writeTestRelease(dir: string, version: string, key: SigningIdentity | null, sizes: Partial<Record<ReleaseRole, number>> = {}): TestRelease {
  mkdirSync(dir, { recursive: true });
  const files = {
    uki: randomBytes(sizes.uki ?? 2_500_000),
    kernel: randomBytes(sizes.kernel ?? 300_000),
    initramfs: randomBytes(sizes.initramfs ?? 700_000),
  };
  const names: Record<ReleaseRole, string> = { uki: 'aurae.efi', kernel: 'vmlinuz', initramfs: 'initramfs.cpio.zst' };
  for (const role of ['uki', 'kernel', 'initramfs'] as const) writeFileSync(join(dir, names[role]), files[role]);
  const text = releaseManifestText({
    version,
    files: (['uki', 'kernel', 'initramfs'] as const).map((role) => ({ role, name: names[role], size: files[role].length, sha256: sha256Hex(files[role]) })),
  });
  const manifestBytes = Buffer.from(text);
  writeFileSync(join(dir, RELEASE_MANIFEST_FILE), manifestBytes);
  writeFileSync(join(dir, RELEASE_SIGNATURE_FILE), key ? `${signRelease(manifestBytes, key.keyPem).toString('base64')}\n` : '');
  return { dir, version, files, manifestBytes };
}

/** Put a full slot (UKI, kernel, initramfs, manifest, signature) on the ESP at `root`; returns the UKI's file name. */
export function writeTestSlot(root: string, slot: { generation: number; version: string; triesLeft?: number | null; triesDone?: number | null }): string {
  const dir = join(root, ESP_PATHS.entries);
  mkdirSync(dir, { recursive: true });
  const id = entryId(slot.generation, slot.version);
  const uki = entryFileName(slot);
  writeFileSync(join(dir, uki), `uki ${id}`);
  for (const role of ['kernel', 'initramfs', 'manifest', 'signature'] as const) writeFileSync(join(dir, slotFileName(id, role)), `${role} ${id}`);
  return uki;
}

/** Every file under `root` with its size and sha256 (to show that nothing changed). */
export function treeSnapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else out[relative(root, path)] = `${statSync(path).size} ${sha256Hex(readFileSync(path))}`;
    }
  };
  walk(root);
  return out;
}
