import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensurePki } from '../../supervisor/pki';
import { compress, writeCpio } from '../initramfs/cpio';
import { writeDiskImage } from './disk';
import { writeFatImage } from './fat';
import { keyNeedles, scanForKeys } from './no-keys';
import { buildUki } from './uki';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-no-keys-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const pkiDir = path.join(tmp, 'pki');
let files: Awaited<ReturnType<typeof ensurePki>>['files'];
beforeAll(async () => {
  files = (await ensurePki(pkiDir, { nodeName: 'aurae' })).files;
});

async function zstdCpio(name: string, entries: { path: string; data: Buffer }[]): Promise<string> {
  const out = path.join(tmp, name);
  await writeCpio([{ path: 'etc', type: 'dir', mode: 0o755 }, ...entries.map((e) => ({ path: e.path, type: 'file' as const, mode: 0o600, data: e.data }))], out, { mtime: 0 });
  return compress(out, 'zstd');
}

const der = (file: string) => createPrivateKey(fs.readFileSync(file)).export({ format: 'der', type: 'pkcs8' });
const scalar = (file: string) => Buffer.from(createPrivateKey(fs.readFileSync(file)).export({ format: 'jwk' }).d!, 'base64url');

describe('scanForKeys', () => {
  it('knows every key of the PKI by its DER and raw bytes', () => {
    const names = keyNeedles(pkiDir).map((n) => n.name);
    for (const key of ['admin.key', 'ca.key', 'node.key', 'spawn-ca.key']) expect(names).toContain(`${key} (PKCS#8 DER)`);
  });

  it('finds a PEM key and a bare DER key inside a compressed cpio, and nothing in a clean one', async () => {
    const needles = keyNeedles(pkiDir);
    const pem = await zstdCpio('pem.cpio', [{ path: 'etc/x', data: fs.readFileSync(files.nodeKey) }]);
    expect(scanForKeys([pem], needles).findings).toContainEqual({ where: 'pem.cpio.zst{zstd}/etc/x', what: expect.stringMatching(/^a PEM private key \("-----BEGIN … PRIVATE KEY-----" and a body; DER sha256 [0-9a-f]{64}\)$/) });
    // A key of no PKI of ours is still found (the PEM check does not depend on out/pki).
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' });
    const strangerPem = await zstdCpio('stranger.cpio', [{ path: 'etc/s', data: Buffer.from(stranger) }]);
    expect(scanForKeys([strangerPem], needles).findings.map((f) => f.where)).toContain('stranger.cpio.zst{zstd}/etc/s');
    const bare = await zstdCpio('der.cpio', [{ path: 'etc/blob', data: Buffer.concat([Buffer.from('junk'), der(files.spawnCaKey), Buffer.from('junk')]) }]);
    expect(scanForKeys([bare], needles).findings).toContainEqual({ where: 'der.cpio.zst{zstd}/etc/blob', what: 'spawn-ca.key (PKCS#8 DER)' });
    // The marker without a key body is code or a library's string (our PEM validators, gnutls), not a key.
    const code = Buffer.from('const KEY = /^-----BEGIN PRIVATE KEY-----\\r?\\n[A-Za-z0-9+/=\\r\\n]+-----END PRIVATE KEY-----/; "-----BEGIN RSA PRIVATE KEY-----\0"');
    const clean = await zstdCpio('clean.cpio', [
      { path: 'etc/ca.crt', data: fs.readFileSync(files.caCert) },
      { path: 'etc/code.js', data: code },
    ]);
    const r = scanForKeys([clean], needles);
    expect(r.findings).toEqual([]);
    expect(r.visited).toContain('clean.cpio.zst{zstd}/etc/ca.crt');
  });

  it('looks into the UKI\'s .initrd section and into every file of a FAT volume and of the ESP inside a GPT disk', async () => {
    const needles = keyNeedles(pkiDir);
    const kernel = path.join(tmp, 'vmlinuz');
    fs.writeFileSync(kernel, Buffer.alloc(70_000, 1));
    const initrd = await zstdCpio('uki-initrd.cpio', [{ path: 'etc/k', data: scalar(files.caKey) }]);
    const uki = path.join(tmp, 'BOOTX64.EFI');
    await buildUki({ kernel, initramfs: initrd, cmdline: 'quiet', osRelease: 'ID=aurae\n', out: uki, workDir: path.join(tmp, 'uki-work') });
    expect(scanForKeys([uki], needles).findings).toContainEqual({ where: 'BOOTX64.EFI[.initrd]{zstd}/etc/k', what: 'ca.key (private scalar)' });

    const esp = path.join(tmp, 'esp.img');
    await writeFatImage(
      [
        { path: 'EFI/BOOT/BOOTX64.EFI', src: uki, mode: 0o644 },
        { path: 'deep/dir/admin.der', src: der(files.adminKey), mode: 0o644 },
      ],
      esp,
      { label: 'AURAE_BOOT', serial: 'AE0B0070', mtime: 1767225600, stagingDir: path.join(tmp, 'esp-stage') },
    );
    const disk = path.join(tmp, 'disk.raw');
    writeDiskImage(esp, disk, 'seed');
    const found = scanForKeys([esp, disk], needles).findings.map((f) => `${f.where} ${f.what}`);
    expect(found).toContain('esp.img::/deep/dir/admin.der admin.key (PKCS#8 DER)');
    expect(found).toContain('esp.img::/EFI/BOOT/BOOTX64.EFI[.initrd]{zstd}/etc/k ca.key (private scalar)');
    expect(found).toContain('disk.raw(partition 1 AURAE_BOOT):/deep/dir/admin.der admin.key (PKCS#8 DER)');
    expect(found).toContain('disk.raw(partition 1 AURAE_BOOT):/EFI/BOOT/BOOTX64.EFI[.initrd]{zstd}/etc/k ca.key (private scalar)');
  }, 60_000);
});
