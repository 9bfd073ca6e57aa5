// The release format and its trust check with throwaway keys: the manifest's fields named when wrong, a signature
// made by image/sign's function verifies with the pinned certificate and with nothing else.
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeSignatureText, fileRanges, parsePinnedCerts, parseReleaseManifest, releaseManifestText, releaseSize, sha256Hex, signRelease, verifyRelease } from './release';
import { makeSigningIdentity, type SigningIdentity } from './testing';

const files = [
  { role: 'uki' as const, name: 'aurae.efi', size: 10, sha256: sha256Hex(Buffer.from('u')) },
  { role: 'kernel' as const, name: 'vmlinuz', size: 3, sha256: sha256Hex(Buffer.from('k')) },
  { role: 'initramfs' as const, name: 'initramfs.cpio.zst', size: 5, sha256: sha256Hex(Buffer.from('i')) },
];

let a: SigningIdentity;
let b: SigningIdentity;
beforeAll(async () => {
  [a, b] = await Promise.all([makeSigningIdentity('A'), makeSigningIdentity('B')]);
});

describe('release manifest', () => {
  it('round-trips the text image/sign writes, with the byte ranges of its files', () => {
    const text = releaseManifestText({ version: '0.2.0_rc1', files });
    const m = parseReleaseManifest(Buffer.from(text));
    expect(m).toEqual({ format: 'aurae-release/1', version: '0.2.0_rc1', files });
    expect(releaseSize(m)).toBe(18);
    expect(fileRanges(m).map((r) => [r.file.role, r.start, r.end])).toEqual([['uki', 0, 10], ['kernel', 10, 13], ['initramfs', 13, 18]]);
  });

  it('names the bad field', () => {
    const bad = (value: unknown) => () => parseReleaseManifest(Buffer.from(JSON.stringify(value)));
    const ok = { format: 'aurae-release/1', version: '1.0', files };
    expect(bad({ ...ok, format: 'x' })).toThrow(/^manifest\.format: /);
    expect(bad({ ...ok, version: '1+3' })).toThrow(/^manifest\.version: expected .*no "-" or "\+"/);
    expect(bad({ ...ok, extra: 1 })).toThrow(/^manifest\.\(root\): .*extra/i);
    expect(bad({ ...ok, files: [...files, { ...files[0]!, name: 'x.efi' }] })).toThrow(/manifest\.files: expected exactly one file with role "uki", found 2/);
    expect(bad({ ...ok, files: files.slice(1) })).toThrow(/role "uki", found 0/);
    expect(bad({ ...ok, files: [{ ...files[0]!, name: '../escape' }, ...files.slice(1)] })).toThrow(/^manifest\.files\.0\.name: expected a plain file name/);
    expect(bad({ ...ok, files: [{ ...files[0]!, sha256: 'ABC' }, ...files.slice(1)] })).toThrow(/^manifest\.files\.0\.sha256: expected 64 lower-case hex digits/);
    expect(() => parseReleaseManifest(Buffer.alloc(0))).toThrow(/^manifest: empty/);
    expect(() => parseReleaseManifest(Buffer.alloc(70 * 1024, 32))).toThrow(/^manifest: 71680 bytes: at most 65536/);
  });
});

describe('signature', () => {
  it('verifies with the pinned certificate that signed it, and names the signer', () => {
    const manifest = Buffer.from(releaseManifestText({ version: '1', files }));
    const sig = signRelease(manifest, a.keyPem);
    const pinned = [...parsePinnedCerts(b.certPem, '/b.crt'), ...parsePinnedCerts(a.certPem, '/a.crt')];
    expect(verifyRelease(manifest, sig, pinned)).toMatchObject({ subject: 'CN=A', file: '/a.crt' });
    expect(decodeSignatureText(`${sig.toString('base64').replace(/(.{64})/g, '$1\n')}\n`).equals(sig)).toBe(true);
  });

  it('refuses: another key, a changed manifest, no signature, nothing pinned', () => {
    const manifest = Buffer.from(releaseManifestText({ version: '1', files }));
    const sig = signRelease(manifest, a.keyPem);
    const onlyB = parsePinnedCerts(b.certPem, '/b.crt');
    expect(() => verifyRelease(manifest, sig, onlyB)).toThrow(expect.objectContaining({ code: 'PERMISSION_DENIED', message: expect.stringMatching(/does not verify with any pinned image-signing certificate \("CN=B"/) }));
    const changed = Buffer.from(manifest.toString().replace('"1"', '"2"'));
    expect(() => verifyRelease(changed, sig, parsePinnedCerts(a.certPem, '/a.crt'))).toThrow(expect.objectContaining({ code: 'PERMISSION_DENIED' }));
    expect(() => verifyRelease(manifest, Buffer.alloc(0), onlyB)).toThrow(/the manifest is unsigned/);
    expect(() => verifyRelease(manifest, sig, [])).toThrow(expect.objectContaining({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/upgrade\.signingCerts/) }));
  });

  it('reads several certificates from one PEM file and refuses a file without any', () => {
    expect(parsePinnedCerts(`${a.certPem}${b.certPem}`, '/both.crt').map((p) => p.subject)).toEqual(['CN=A', 'CN=B']);
    expect(() => parsePinnedCerts(a.keyPem, '/key.pem')).toThrow(/^upgrade\.signingCerts: \/key\.pem holds no PEM certificate/);
    expect(() => decodeSignatureText('not base64!')).toThrow(/not base64/);
  });
});
