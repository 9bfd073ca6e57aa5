// The child root: the stage initramfs is the node's without the root image, and the image is found in place.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeCpio, type CpioEntry } from '../../image/initramfs/cpio';
import { ROOT_DISK_SERIAL, ROOT_IMAGE_ALIGN, STAGE_ROOT_IMAGE } from '../config/node-paths';
import { childRootFor, scanNewc } from './child-root';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'child-root-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const image = Buffer.alloc(64 * 1024, 0x5a);
const entries = (aligned: boolean): CpioEntry[] => [
  { path: 'init', type: 'file', mode: 0o755, data: Buffer.from('#!/.stage/busybox sh\n') },
  { path: '.stage/busybox', type: 'file', mode: 0o755, data: Buffer.from('b'.repeat(777)) },
  ...(aligned ? [{ path: '.stage/pad', type: 'file' as const, mode: 0o444, data: { alignDataOf: STAGE_ROOT_IMAGE.slice(1), to: ROOT_IMAGE_ALIGN } }] : []),
  { path: STAGE_ROOT_IMAGE.slice(1), type: 'file', mode: 0o444, data: image },
  { path: 'etc/hosts', type: 'file', mode: 0o644, data: Buffer.from('127.0.0.1 localhost\n') },
];
const names = (file: string) => {
  const bytes = readFileSync(file);
  return scanNewc((o, l) => bytes.subarray(o, o + l), bytes.length)?.map((e) => e.name);
};

describe('childRootFor', () => {
  it('writes the initramfs without the root image once, and points the disk at the image inside the initramfs', async () => {
    const initrd = join(dir, 'initramfs');
    await writeCpio(entries(true), initrd, { mtime: 1 });
    const cache = join(dir, 'cache');
    const root = childRootFor(initrd, cache)!;
    expect(root.rootDisk).toMatchObject({ path: initrd, size: image.length, serial: ROOT_DISK_SERIAL });
    expect(root.rootDisk.offset % ROOT_IMAGE_ALIGN).toBe(0);
    expect(readFileSync(initrd).subarray(root.rootDisk.offset, root.rootDisk.offset + image.length).equals(image)).toBe(true);
    expect(names(root.initrd)).toEqual(['.stage', '.stage/busybox', '.stage/pad', 'etc', 'etc/hosts', 'init']);
    expect(statSync(root.initrd).size).toBeLessThan(statSync(initrd).size - image.length + ROOT_IMAGE_ALIGN);

    // The same initramfs again: the stage already written is used as it is.
    const written = statSync(root.initrd).mtimeMs;
    expect(childRootFor(initrd, cache)).toEqual(root);
    expect(statSync(root.initrd).mtimeMs).toBe(written);

    // Another initramfs (an upgrade) gets its own stage; the old one is removed.
    const other = join(dir, 'initramfs-2');
    await writeCpio([...entries(true), { path: 'etc/motd', type: 'file', mode: 0o644, data: Buffer.from('new\n') }], other, { mtime: 2 });
    const next = childRootFor(other, cache)!;
    expect(next.initrd).not.toBe(root.initrd);
    expect(readdirSync(cache)).toEqual([next.initrd.slice(cache.length + 1)]);
  });

  it('null (boot the whole initramfs) without an aligned root image: unaligned, absent, compressed, not an archive', async () => {
    const unaligned = join(dir, 'unaligned');
    await writeCpio(entries(false), unaligned, { mtime: 1 });
    expect(childRootFor(unaligned, join(dir, 'c'))).toBeNull();
    const without = join(dir, 'without');
    await writeCpio(entries(true).filter((e) => e.path !== STAGE_ROOT_IMAGE.slice(1) && !e.path.endsWith('pad')), without, { mtime: 1 });
    expect(childRootFor(without, join(dir, 'c'))).toBeNull();
    const gz = join(dir, 'gz');
    writeFileSync(gz, gzipSync(readFileSync(unaligned)));
    expect(childRootFor(gz, join(dir, 'c'))).toBeNull();
    const junk = join(dir, 'junk');
    writeFileSync(junk, '070701' + 'z'.repeat(200));
    expect(childRootFor(junk, join(dir, 'c'))).toBeNull();
  });
});
