import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeSignatureText, parsePinnedCerts, parseReleaseManifest, verifyRelease } from '../../supervisor/upgrade/release';
import { buildUki } from '../disk/uki';
import { keyNeedles, scanForKeys } from '../disk/no-keys';
import { ensureImageSigningKey, fakeTime, imageVersion, sbsignFile, sbverifyFile, writeRelease } from './index';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-sign-test-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const pki = path.join(tmp, 'pki');

describe('image signing', () => {
  it('creates the key once (0600, RSA, self-signed "Aurae image signing") and keeps it', async () => {
    const lines: string[] = [];
    const a = await ensureImageSigningKey(pki, (l) => lines.push(l));
    const b = await ensureImageSigningKey(pki, (l) => lines.push(l));
    expect(b).toEqual(a);
    expect(lines).toHaveLength(1);
    expect(fs.statSync(a.key).mode & 0o077).toBe(0);
    const text = execFileSync('openssl', ['x509', '-in', a.cert, '-noout', '-subject', '-issuer'], { encoding: 'utf8' });
    expect(text).toMatch(/subject=CN = Aurae image signing\nissuer=CN = Aurae image signing/);
    // no-keys knows this key as well as the rest of the PKI.
    expect(keyNeedles(pki).map((n) => n.name)).toEqual(expect.arrayContaining(['image-signing.key (PKCS#8 DER)', 'image-signing.key (PKCS#1 DER)']));
  });

  it('signs a UKI with sbsign reproducibly (the signing time is the epoch), sbverify accepts it, no key inside', async () => {
    const signing = await ensureImageSigningKey(pki, () => {});
    const kernel = path.join(tmp, 'vmlinuz');
    fs.writeFileSync(kernel, Buffer.alloc(70_000, 1));
    const initrd = path.join(tmp, 'initrd');
    fs.writeFileSync(initrd, Buffer.alloc(1000, 2));
    const uki = path.join(tmp, 'unsigned.efi');
    await buildUki({ kernel, initramfs: initrd, cmdline: 'quiet', osRelease: 'ID=aurae\n', out: uki, workDir: path.join(tmp, 'w') });
    await sbsignFile(uki, path.join(tmp, 'a.efi'), signing, 1_700_000_000);
    await sbsignFile(uki, path.join(tmp, 'b.efi'), signing, 1_700_000_000);
    expect(fs.readFileSync(path.join(tmp, 'a.efi')).equals(fs.readFileSync(path.join(tmp, 'b.efi')))).toBe(true);
    expect(await sbverifyFile(path.join(tmp, 'a.efi'), signing.cert)).toMatch(/Signature verification OK/);
    expect(scanForKeys([path.join(tmp, 'a.efi')], keyNeedles(pki)).findings).toEqual([]);
    expect(fakeTime(1_700_000_000)).toBe('2023-11-14 22:13:20');
  });

  it('writes a release manifest and a detached signature a pinned certificate verifies; a changed byte does not', async () => {
    const signing = await ensureImageSigningKey(pki, () => {});
    const dir = path.join(tmp, 'release');
    fs.mkdirSync(dir);
    for (const [n, b] of [['BOOTX64.EFI', 'uki'], ['vmlinuz', 'k'], ['initramfs.cpio.zst', 'i']]) fs.writeFileSync(path.join(dir, n!), b!);
    const r = writeRelease({ dir, version: '0.2.0', signing, files: [{ role: 'uki', file: path.join(dir, 'BOOTX64.EFI') }, { role: 'kernel', file: path.join(dir, 'vmlinuz') }, { role: 'initramfs', file: path.join(dir, 'initramfs.cpio.zst') }] });
    const manifest = parseReleaseManifest(fs.readFileSync(r.manifest));
    expect(manifest.version).toBe('0.2.0');
    expect(manifest.files.map((f) => [f.role, f.name, f.size])).toEqual([['uki', 'BOOTX64.EFI', 3], ['kernel', 'vmlinuz', 1], ['initramfs', 'initramfs.cpio.zst', 1]]);
    const pinned = parsePinnedCerts(fs.readFileSync(signing.cert, 'utf8'), signing.cert);
    const sig = decodeSignatureText(fs.readFileSync(r.signature, 'utf8'));
    expect(verifyRelease(fs.readFileSync(r.manifest), sig, pinned).file).toBe(signing.cert);
    const tampered = Buffer.from(fs.readFileSync(r.manifest));
    tampered[tampered.indexOf('0.2.0')] = 0x31;
    expect(() => verifyRelease(tampered, sig, pinned)).toThrow(/does not verify/);
  });

  it('takes the version from AURAE_IMAGE_VERSION, else the fallback, and refuses one a boot entry cannot carry', () => {
    expect(imageVersion({}, '0.1.0')).toBe('0.1.0');
    expect(imageVersion({ AURAE_IMAGE_VERSION: '0.2.0_test' }, '0.1.0')).toBe('0.2.0_test');
    expect(() => imageVersion({ AURAE_IMAGE_VERSION: '1.0-rc1' }, '0.1.0')).toThrow(/AURAE_IMAGE_VERSION="1.0-rc1" is not a release version/);
  });
});
