import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseGpt } from '../../init/disk';
import { IDENTITY_PARTITION_TYPE } from '../../init/identity/document';
import { bootTree, qemuTree, QEMU_WRAPPER } from './boot-tree';
import { diskLayout, writeDiskImage } from './disk';
import { clusterSectors, fatSizeBytes, validateLabel, writeFatImage } from './fat';
import { buildUki, lastSectionEnd, normalizePe, peChecksum, placeSections } from './uki';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-disk-test-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const MIB = 1024 * 1024;

describe('boot tree', () => {
  const qemu = { binary: '/usr/bin/qemu-system-x86_64', libs: ['/lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/libc.so.6'], tcgModule: '/m/accel-tcg-x86_64.so', microvmBios: '/s/qboot.rom' };

  it('relocates QEMU with its loader, libraries, TCG module and firmware behind a wrapper', () => {
    const files = qemuTree(qemu);
    expect(files.map((f) => f.path)).toEqual([
      QEMU_WRAPPER,
      'qemu/bin/qemu-system-x86_64',
      'qemu/modules/accel-tcg-x86_64.so',
      'qemu/share/bios-microvm.bin',
      'qemu/lib/ld-linux-x86-64.so.2',
      'qemu/lib/libc.so.6',
    ]);
    expect(String(files[0]!.src)).toMatch(/exec "\$d\/lib\/ld-linux-x86-64.so.2" --library-path "\$d\/lib"/);
    expect(() => qemuTree({ ...qemu, libs: ['/lib/libc.so.6'] })).toThrow(/no dynamic loader/);
  });

  it('lays out the volume sorted, and refuses names FAT would merge', () => {
    const slot = { generation: 1, version: '0.1.0', triesLeft: 3, uki: '/u', kernel: '/k', initramfs: '/i', manifest: '/m', signature: '/s' };
    const files = bootTree({ bootLoader: '/sd-boot', slot, description: '{}', qemu: null });
    // systemd-boot as the default loader, the factory slot as a counted Type #2 entry with its files beside it.
    expect(files.map((f) => f.path)).toEqual([
      'EFI/BOOT/BOOTX64.EFI',
      'EFI/Linux/aurae-000001-0.1.0+3.efi',
      'EFI/Linux/aurae-000001-0.1.0.initramfs',
      'EFI/Linux/aurae-000001-0.1.0.json',
      'EFI/Linux/aurae-000001-0.1.0.json.sig',
      'EFI/Linux/aurae-000001-0.1.0.vmlinuz',
      'aurae-boot.json',
      'loader/loader.conf',
    ]);
    expect(files.find((f) => f.path === 'EFI/BOOT/BOOTX64.EFI')?.src).toBe('/sd-boot');
    expect(String(files.find((f) => f.path === 'loader/loader.conf')?.src)).toMatch(/^timeout 0\neditor no\n/);
    expect(() => bootTree({ bootLoader: '/sd-boot', slot, description: '{}', qemu: { ...qemu, libs: [...qemu.libs, '/x/LIBC.so.6'] } })).toThrow(/share the FAT name/);
  });
});

describe('UKI', () => {
  it('places sections page-aligned after the stub', () => {
    const headers = '  7 .sdmagic      00000034  0000000000019100  0000000000019100  00011200  2**2\n  6 .sbat 000000e2 0000000000019000 0000000000019000 00011000 2**2\n';
    expect(lastSectionEnd(headers)).toBe(0x19134);
    expect(placeSections(0x19134, [{ name: '.osrel', size: 10 }, { name: '.linux', size: 0x1001 }, { name: '.initrd', size: 5 }])).toEqual([
      { name: '.osrel', vma: 0x1a000 },
      { name: '.linux', vma: 0x1b000 },
      { name: '.initrd', vma: 0x1d000 },
    ]);
    expect(() => lastSectionEnd('nothing')).toThrow(/no sections/);
  });

  it('builds a UKI whose sections hold kernel, initramfs and command line, byte for byte reproducible', async () => {
    const kernel = path.join(tmp, 'vmlinuz');
    const initrd = path.join(tmp, 'initrd');
    fs.writeFileSync(kernel, Buffer.alloc(70_000, 1));
    fs.writeFileSync(initrd, Buffer.alloc(123_457, 2));
    const build = async (out: string) => {
      await buildUki({ kernel, initramfs: initrd, cmdline: 'panic=-1 console=ttyS0', osRelease: 'ID=aurae\n', out, workDir: path.join(tmp, 'work') });
      return fs.readFileSync(out);
    };
    const a = await build(path.join(tmp, 'a.efi'));
    await new Promise((r) => setTimeout(r, 1100)); // objcopy stamps the time in seconds
    const b = await build(path.join(tmp, 'b.efi'));
    expect(a.equals(b)).toBe(true);
    expect(peChecksum(a)).toBe(a.readUInt32LE(a.readUInt32LE(0x3c) + 88));
    for (const [section, expected] of [['.linux', fs.readFileSync(kernel)], ['.initrd', fs.readFileSync(initrd)], ['.cmdline', Buffer.from('panic=-1 console=ttyS0')]] as const) {
      const dump = path.join(tmp, `dump${section}`);
      execFileSync('objcopy', ['--dump-section', `${section}=${dump}`, path.join(tmp, 'a.efi'), path.join(tmp, 'scratch.efi')]);
      // PE sections are padded to the file alignment.
      expect(fs.readFileSync(dump).subarray(0, expected.length).equals(expected), section).toBe(true);
    }
    expect(() => normalizePe(Buffer.alloc(256))).toThrow(/not a PE image/);
  });
});

describe('FAT volume and disk.raw', () => {
  it('sizes the volume for FAT32 and checks labels', () => {
    expect(fatSizeBytes(1000)).toBe(64 * MIB);
    expect(fatSizeBytes(150 * MIB)).toBe(208 * MIB);
    expect(clusterSectors(64 * MIB)).toBe(1);
    expect(clusterSectors(208 * MIB)).toBe(4);
    expect(() => validateLabel('aurae boot')).toThrow(/label "aurae boot" is invalid: expected 1-11 of A-Z 0-9 _ -/);
  });

  it('writes a reproducible FAT32 volume and a GPT disk with it as the ESP', async () => {
    const files = [
      { path: 'EFI/BOOT/BOOTX64.EFI', src: Buffer.from('uki'), mode: 0o644 },
      { path: 'qemu/qemu-system-x86_64', src: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
      { path: 'vmlinuz', src: Buffer.alloc(5000, 7), mode: 0o644 },
    ];
    const one = path.join(tmp, 'esp1.img');
    const two = path.join(tmp, 'esp2.img');
    await writeFatImage(files, one, { label: 'AURAE_BOOT', serial: 'AE0B0070', mtime: 1767225600, stagingDir: path.join(tmp, 's1') });
    await new Promise((r) => setTimeout(r, 1100));
    await writeFatImage([...files].reverse(), two, { label: 'AURAE_BOOT', serial: 'AE0B0070', mtime: 1767225600, stagingDir: path.join(tmp, 's2') });
    expect(fs.readFileSync(one).equals(fs.readFileSync(two))).toBe(true);
    expect(execFileSync('mtype', ['-i', one, '::/EFI/BOOT/BOOTX64.EFI'], { encoding: 'utf8', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } })).toBe('uki');
    expect(execFileSync('minfo', ['-i', one, '::'], { encoding: 'utf8', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } })).toMatch(/disk label="AURAE_BOOT "/);

    const disk = path.join(tmp, 'disk.raw');
    const layout = writeDiskImage(one, disk, 'seed');
    expect(layout).toEqual(diskLayout(fs.statSync(one).size));
    const raw = fs.readFileSync(disk);
    expect(raw.length).toBe(layout.diskSectors * 512);
    const table = parseGpt((o, n) => raw.subarray(o, o + n), layout.diskSectors)!;
    expect(table.partitions.map((p) => [p.name, p.typeGuid, p.firstLba, p.lastLba])).toEqual([
      ['AURAE_BOOT', 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B', 2048, layout.espLastLba],
      // 1 MiB, aligned, right after the ESP, of its own type: the flasher writes the identity there.
      ['AURAE_IDENTITY', IDENTITY_PARTITION_TYPE, layout.identityFirstLba, layout.identityFirstLba + 2047],
    ]);
    expect(layout.identityFirstLba % 2048).toBe(0);
    expect(layout.identityFirstLba).toBeGreaterThan(layout.espLastLba);
    expect(layout.diskSectors).toBe(layout.identityLastLba + 1 + 2048);
    expect(raw.subarray(2048 * 512, (layout.espLastLba + 1) * 512).equals(fs.readFileSync(one))).toBe(true);
    // The identity partition is zeros: an image holds no secret.
    expect(raw.subarray(layout.identityFirstLba * 512, (layout.identityLastLba + 1) * 512).every((b) => b === 0)).toBe(true);
    writeDiskImage(one, path.join(tmp, 'disk2.raw'), 'seed');
    expect(fs.readFileSync(path.join(tmp, 'disk2.raw')).equals(raw)).toBe(true);
  });
});
