import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { keyNeedles, scanForKeys } from '../disk/no-keys';
import { writeCpio } from '../initramfs/cpio';
import { buildRootImage, ROOT_IMAGE_FORMATS, rootImageFromEnv, stageTree, treeKey, uuidFromKey } from './index';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'rootimg-test-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('root image formats', () => {
  it('pin everything the tools would take from the clock, the host or a random source', () => {
    const erofs = ROOT_IMAGE_FORMATS.erofs.argv('/s', '/o.img', 1700000000, 'u-u-i-d');
    expect(erofs).toEqual(expect.arrayContaining(['mkfs.erofs', '-T1700000000', '-Uu-u-i-d', '--all-root', '-x', '-1']));
    expect(erofs.slice(-2)).toEqual(['/o.img', '/s']);
    const squashfs = ROOT_IMAGE_FORMATS.squashfs.argv('/s', '/o.img', 1700000000, 'ignored');
    expect(squashfs.slice(0, 3)).toEqual(['mksquashfs', '/s', '/o.img']);
    expect(squashfs).toEqual(expect.arrayContaining(['-all-root', '-no-xattrs', '-mkfs-time', '1700000000', '-all-time', '1700000000', '-noappend']));
  });

  it('AURAE_ROOT_IMAGE picks one, and names the allowed values when wrong', () => {
    expect(rootImageFromEnv({ AURAE_ROOT_IMAGE: 'squashfs' })).toBe('squashfs');
    expect(rootImageFromEnv({ AURAE_ROOT_IMAGE: 'none' })).toBe('none');
    expect(() => rootImageFromEnv({ AURAE_ROOT_IMAGE: 'ext4' })).toThrow('AURAE_ROOT_IMAGE=ext4 is not allowed: use erofs, squashfs, none');
  });

  it('a UUID is a function of the key, in UUID form', () => {
    expect(uuidFromKey('a')).toBe(uuidFromKey('a'));
    expect(uuidFromKey('a')).not.toBe(uuidFromKey('b'));
    expect(uuidFromKey('a')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('stageTree', () => {
  it('writes the entries with exactly their modes, parents first, symlinks as links', async () => {
    const src = path.join(tmp(), 'node');
    fs.writeFileSync(src, 'ELF');
    fs.chmodSync(src, 0o600);
    const dir = tmp();
    const entries = [
      { path: 'bin/sh', type: 'symlink' as const, mode: 0o777, target: 'busybox' },
      { path: 'bin/node', type: 'file' as const, mode: 0o755, data: { file: src } },
      { path: 'lib/aurae/config', type: 'file' as const, mode: 0o644, data: Buffer.from('{}') },
      { path: 'share', type: 'dir' as const, mode: 0o700 },
    ];
    stageTree(entries, dir);
    expect(fs.statSync(path.join(dir, 'bin/node')).mode & 0o7777).toBe(0o755);
    expect(fs.readFileSync(path.join(dir, 'bin/node'), 'utf8')).toBe('ELF');
    expect(fs.readlinkSync(path.join(dir, 'bin/sh'))).toBe('busybox');
    expect(fs.statSync(path.join(dir, 'lib/aurae')).mode & 0o7777).toBe(0o755); // implicit parent
    expect(fs.statSync(path.join(dir, 'share')).mode & 0o7777).toBe(0o700);
    // The key follows content and metadata.
    const key = await treeKey(entries, '1');
    fs.writeFileSync(src, 'ELF2');
    expect(await treeKey(entries, '1')).not.toBe(key);
  });

  it('refuses device nodes (they belong in the initramfs)', () => {
    expect(() => stageTree([{ path: 'console', type: 'char', mode: 0o600, rdevMajor: 5, rdevMinor: 1 }], tmp())).toThrow(/device nodes/);
  });
});

describe('buildRootImage (mkfs.erofs, mksquashfs from image/setup.sh)', () => {
  for (const fstype of ['erofs', 'squashfs'] as const) {
    it(`${fstype}: the same tree gives the same bytes, and the build's key scan sees inside it (a key planted in /usr is found)`, async () => {
      const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' });
      const entries = [
        { path: 'lib/aurae/leak.pem', type: 'file' as const, mode: 0o644, data: Buffer.from(key) },
        { path: 'bin/sh', type: 'symlink' as const, mode: 0o777, target: 'busybox' },
      ];
      const [a, b] = [tmp(), tmp()];
      const first = await buildRootImage(entries, fstype, a, 1700000000, () => {});
      const second = await buildRootImage(entries, fstype, b, 1700000000, () => {});
      expect(first.unchanged).toBe(false);
      expect(fs.readFileSync(first.file).equals(fs.readFileSync(second.file))).toBe(true);
      expect((await buildRootImage(entries, fstype, a, 1700000000, () => {})).unchanged).toBe(true);
      // Inside an initramfs, as the build ships it.
      const cpio = path.join(a, 'initramfs.cpio');
      await writeCpio([{ path: '.stage/root.img', type: 'file', mode: 0o444, data: { file: first.file } }], cpio, { mtime: 0 });
      const pki = tmp();
      const found = scanForKeys([cpio], keyNeedles(pki)).findings.map((f) => f.where);
      expect(found).toContain(`initramfs.cpio/.stage/root.img{${fstype}}/lib/aurae/leak.pem`);
    }, 30_000);
  }
});
