import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FILE_TYPE_BITS } from '../../native';
import { AuraeError } from '../errors';
import { gzip, OCI_GZIP, OCI_TAR, OCI_ZSTD, sha256, tarOf, TEST_MTIME, type TestEntry, zstd } from './test-layers';
import { entryComponents, layerCompression, parsePaxRecords, sniffCompression, unpackLayer, type UnpackOptions, type UnpackSyscalls, zlibHasZstd } from './unpack';

/** Records mknod/lsetxattr (by final path) and leaves a marker file where mknod would make a node. */
function fakeSyscalls() {
  const calls: { fn: string; path: string; args: unknown[] }[] = [];
  const final = (p: string) => p.replace(/\.unpack-[0-9a-f]+/, '');
  const sys: UnpackSyscalls = {
    mknod(p, mode, major, minor) {
      writeFileSync(p, `node ${mode.toString(8)} ${major}:${minor}`, { flag: 'wx' });
      calls.push({ fn: 'mknod', path: final(p), args: [mode, major, minor] });
    },
    lsetxattr(p, name, value) {
      calls.push({ fn: 'lsetxattr', path: final(p), args: [name, Buffer.from(value)] });
    },
    syncfs(p) {
      calls.push({ fn: 'syncfs', path: final(p), args: [] });
    },
  };
  return { sys, calls };
}

let work: string;
beforeEach(() => {
  work = mkdtempSync(path.join(tmpdir(), 'aurae-unpack-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

function blob(bytes: Buffer, name = 'blob'): string {
  const file = path.join(work, name);
  writeFileSync(file, bytes);
  return file;
}

async function unpack(entries: TestEntry[] | Buffer, opts: UnpackOptions & { mediaType?: string } = {}) {
  const fake = fakeSyscalls();
  const tar = Buffer.isBuffer(entries) ? entries : tarOf(entries);
  const dest = path.join(work, 'snap', 'fs');
  const result = await unpackLayer(blob(tar), opts.mediaType ?? OCI_TAR, dest, { root: false, syscalls: fake.sys, ...opts });
  return { ...result, dest, calls: fake.calls, tar };
}

let refusals = 0;
async function refusal(entries: TestEntry[], opts: UnpackOptions = {}): Promise<AuraeError> {
  const dest = path.join(work, `refused-${++refusals}`, 'fs');
  const err = await unpackLayer(blob(tarOf(entries)), OCI_TAR, dest, { root: false, syscalls: fakeSyscalls().sys, ...opts }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuraeError);
  // Nothing is left behind: no snapshot, no temp dir.
  expect(existsSync(dest)).toBe(false);
  expect(readdirSync(path.dirname(dest))).toEqual([]);
  return err as AuraeError;
}

describe('pure helpers', () => {
  it('maps layer media types to compressions and refuses others naming the supported ones', () => {
    expect(layerCompression('application/vnd.oci.image.layer.v1.tar+gzip')).toBe('gzip');
    expect(layerCompression('application/vnd.docker.image.rootfs.diff.tar.gzip')).toBe('gzip');
    expect(layerCompression('application/vnd.oci.image.layer.v1.tar+zstd')).toBe('zstd');
    expect(layerCompression('application/vnd.oci.image.layer.v1.tar')).toBe('none');
    expect(() => layerCompression('application/x-zip')).toThrow(/layer media type "application\/x-zip" is not supported: one of .*tar\+gzip/);
    expect(() => layerCompression('toString')).toThrow(AuraeError);
  });

  it('sniffs gzip and zstd magic numbers', () => {
    expect(sniffCompression(Buffer.from([0x1f, 0x8b, 8, 0]))).toBe('gzip');
    expect(sniffCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(sniffCompression(Buffer.from('etc/'))).toBe('none');
  });

  it('splits entry names (a leading "/" is relative to the snapshot) and refuses ".."', () => {
    expect(entryComponents('./etc/passwd')).toEqual({ parts: ['etc', 'passwd'] });
    expect(entryComponents('etc//x/')).toEqual({ parts: ['etc', 'x'] });
    expect(entryComponents('./')).toEqual({ parts: [] });
    expect(entryComponents('/')).toEqual({ parts: [] });
    expect(entryComponents('/etc/passwd')).toEqual({ parts: ['etc', 'passwd'] });
    expect(entryComponents('../../etc/passwd')).toEqual({ reason: '".." path components are not allowed in a layer' });
    expect(entryComponents('a/../b')).toMatchObject({ reason: expect.stringContaining('..') });
  });

  it('parses PAX records keeping binary values', () => {
    const value = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x0a, 0xff]);
    const rec = (k: string, v: Buffer) => {
      const rest = Buffer.concat([Buffer.from(` ${k}=`), v, Buffer.from('\n')]);
      const len = rest.length + String(rest.length + 2).length;
      return Buffer.concat([Buffer.from(String(len)), rest]);
    };
    const parsed = parsePaxRecords(Buffer.concat([rec('path', Buffer.from('a/b')), rec('SCHILY.xattr.security.capability', value)]));
    expect(parsed.get('path')?.toString()).toBe('a/b');
    expect(parsed.get('SCHILY.xattr.security.capability')).toEqual(value);
  });
});

describe('unpackLayer', () => {
  it('unpacks files, dirs, a symlink and a hard link with modes and mtimes; the diffId is the tar sha256', async () => {
    const r = await unpack([
      { path: './', type: 'dir', mode: 0o755 },
      { path: 'etc/', type: 'dir', mode: 0o750 },
      { path: 'etc/hostname', body: 'box\n', mode: 0o640 },
      { path: 'bin/sh', body: '#!/bin/true\n', mode: 0o4755 },
      { path: 'bin/ash', type: 'link', linkpath: 'bin/sh' },
      { path: 'bin/link', type: 'symlink', linkpath: '../../../outside/sh' },
      { path: 'ro/', type: 'dir', mode: 0o555 },
      { path: 'ro/inside', body: 'x' },
    ]);
    expect(r.diffId).toBe(sha256(r.tar));
    expect(readFileSync(path.join(r.dest, 'etc/hostname'), 'utf8')).toBe('box\n');
    expect(statSync(path.join(r.dest, 'etc/hostname')).mode & 0o7777).toBe(0o640);
    expect(statSync(path.join(r.dest, 'etc')).mode & 0o7777).toBe(0o750);
    expect(statSync(path.join(r.dest, 'bin/sh')).mode & 0o7777).toBe(0o4755);
    expect(statSync(path.join(r.dest, 'bin')).mode & 0o7777).toBe(0o755); // implicit parent
    expect(statSync(path.join(r.dest, 'ro')).mode & 0o7777).toBe(0o555);
    expect(statSync(path.join(r.dest, 'bin/ash')).ino).toBe(statSync(path.join(r.dest, 'bin/sh')).ino);
    expect(readlinkSync(path.join(r.dest, 'bin/link'))).toBe('../../../outside/sh');
    expect(statSync(path.join(r.dest, 'etc/hostname')).mtime.getTime()).toBe(TEST_MTIME.getTime());
    expect(statSync(path.join(r.dest, 'etc')).mtime.getTime()).toBe(TEST_MTIME.getTime());
    expect(lstatSync(path.join(r.dest, 'bin/link')).mtime.getTime()).toBe(TEST_MTIME.getTime());
    expect(r.calls.filter((c) => c.fn === 'syncfs')).toEqual([{ fn: 'syncfs', path: r.dest, args: [] }]);
    expect(readdirSync(path.dirname(r.dest))).toEqual(['fs']);
  });

  it('turns .wh.NAME into a 0/0 character device NAME and .wh..wh..opq into the opaque xattr', async () => {
    const r = await unpack([
      { path: 'etc/', type: 'dir' },
      { path: 'etc/.wh.motd', body: '' },
      { path: 'var/cache/.wh..wh..opq', body: '' },
      { path: 'var/cache/new', body: 'n' },
      { path: '.wh..wh.plnk', type: 'dir' },
    ]);
    expect(r.calls).toContainEqual({ fn: 'mknod', path: path.join(r.dest, 'etc/motd'), args: [FILE_TYPE_BITS.S_IFCHR, 0, 0] });
    expect(r.calls).toContainEqual({ fn: 'lsetxattr', path: path.join(r.dest, 'var/cache'), args: ['trusted.overlay.opaque', Buffer.from('y')] });
    expect(existsSync(path.join(r.dest, 'etc/.wh.motd'))).toBe(false);
    expect(existsSync(path.join(r.dest, 'var/cache/.wh..wh..opq'))).toBe(false);
    expect(readFileSync(path.join(r.dest, 'var/cache/new'), 'utf8')).toBe('n');
    expect(existsSync(path.join(r.dest, '.wh..wh.plnk'))).toBe(false); // AUFS bookkeeping is skipped
  });

  it('applies xattrs as raw bytes (binary file capabilities) and refuses forged overlay metadata', async () => {
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const long = `deep/${'d'.repeat(120)}/ping`;
    const r = await unpack([
      { path: 'bin/ping', body: 'p', xattrs: { 'security.capability': cap, 'user.note': 'hello' } },
      { path: long, body: 'q', xattrs: { 'user.long': 'yes' } },
    ]);
    expect(r.calls).toContainEqual({ fn: 'lsetxattr', path: path.join(r.dest, 'bin/ping'), args: ['security.capability', cap] });
    expect(r.calls).toContainEqual({ fn: 'lsetxattr', path: path.join(r.dest, 'bin/ping'), args: ['user.note', Buffer.from('hello')] });
    expect(r.calls).toContainEqual({ fn: 'lsetxattr', path: path.join(r.dest, long), args: ['user.long', Buffer.from('yes')] });
    expect(readFileSync(path.join(r.dest, long), 'utf8')).toBe('q');

    const err = await refusal([{ path: 'etc/', type: 'dir', xattrs: { 'trusted.overlay.redirect': '/x' } }]);
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('layer entry "etc/": xattr trusted.overlay.redirect is overlay metadata');
  });

  it('refuses an xattr the kernel does not take, saying which and why', async () => {
    const sys = { ...fakeSyscalls().sys, lsetxattr: () => { throw Object.assign(new Error('lsetxattr(…): EPERM'), { code: 'EPERM' }); } };
    const err = await refusal([{ path: 'bin/ping', body: 'p', xattrs: { 'security.capability': 'x' } }], { syscalls: sys });
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toBe('layer entry "bin/ping": setting xattr security.capability failed (EPERM): setting it needs root: run auraed as root: the layer is refused');
  });

  it.each([
    ['../../etc/passwd', 'layer entry "../../etc/passwd": ".." path components are not allowed in a layer: the layer is refused'],
    ['./a/../../x', 'layer entry "./a/../../x": ".." path components are not allowed in a layer: the layer is refused'],
  ])('refuses the unsafe name %s with INVALID_ARGUMENT naming it', async (name, message) => {
    const err = await refusal([{ path: 'ok', body: 'fine' }, { path: name, body: 'root::0:0::/:/bin/sh\n' }]);
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe(message);
  });

  it('unpacks absolute names (umoci writes its root entry as "/") inside the snapshot, never on the host', async () => {
    const outside = path.join(work, 'abs-outside');
    const r = await unpack([
      { path: '/', type: 'dir', mode: 0o755 },
      { path: '/etc/', type: 'dir', mode: 0o755 },
      { path: `${outside}/passwd`, body: 'inside\n' },
    ]);
    expect(readFileSync(path.join(r.dest, outside, 'passwd'), 'utf8')).toBe('inside\n');
    expect(existsSync(outside)).toBe(false);
    expect(existsSync(path.join(r.dest, 'etc'))).toBe(true);
  });

  it('refuses a write through a symlinked parent (and never touches its target)', async () => {
    const outside = path.join(work, 'outside');
    mkdirSync(outside);
    const err = await refusal([
      { path: 'evil', type: 'symlink', linkpath: outside },
      { path: 'evil/passwd', body: 'pwned' },
    ]);
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe('layer entry "evil/passwd": its parent "evil" is a symlink, which could lead outside the snapshot: the layer is refused');
    expect(readdirSync(outside)).toEqual([]);
  });

  it('refuses hard links leaving the layer or going through a symlink', async () => {
    const outside = path.join(work, 'outside');
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'secret'), 's');
    const viaSymlink = await refusal([
      { path: 'evil', type: 'symlink', linkpath: outside },
      { path: 'copy', type: 'link', linkpath: 'evil/secret' },
    ]);
    expect(viaSymlink.message).toContain('layer entry "copy (hard link target evil/secret)": its parent "evil" is a symlink');
    const dotdot = await refusal([{ path: 'copy', type: 'link', linkpath: '../outside/secret' }]);
    expect(dotdot.message).toBe('layer entry "copy": its hard link target "../outside/secret": ".." path components are not allowed in a layer: the layer is refused');
    // An absolute target is read inside the snapshot (where this one does not exist), never on the host.
    const absolute = await refusal([{ path: 'copy', type: 'link', linkpath: path.join(outside, 'secret') }]);
    expect(absolute.message).toContain('is not in this layer');
    const missing = await refusal([{ path: 'copy', type: 'link', linkpath: 'lower/file' }]);
    expect(missing.message).toContain('is not in this layer');
  });

  it('replaces an earlier entry instead of writing through it (a symlink then a file of the same name)', async () => {
    const outside = path.join(work, 'outside');
    writeFileSync(outside, 'keep');
    const r = await unpack([
      { path: 'x', type: 'symlink', linkpath: outside },
      { path: 'x', body: 'new' },
      { path: 'd/', type: 'dir' },
      { path: 'd/child', body: 'c' },
      { path: 'd', body: 'now a file' },
    ]);
    expect(readFileSync(outside, 'utf8')).toBe('keep');
    expect(lstatSync(path.join(r.dest, 'x')).isFile()).toBe(true);
    expect(readFileSync(path.join(r.dest, 'x'), 'utf8')).toBe('new');
    expect(readFileSync(path.join(r.dest, 'd'), 'utf8')).toBe('now a file');
  });

  it('makes FIFOs with mknod and refuses device nodes when not root, saying so', async () => {
    const r = await unpack([{ path: 'run/fifo', type: 'fifo', mode: 0o600 }]);
    expect(r.calls).toContainEqual({ fn: 'mknod', path: path.join(r.dest, 'run/fifo'), args: [FILE_TYPE_BITS.S_IFIFO | 0o600, 0, 0] });
    const err = await refusal([{ path: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 }]);
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toBe(
      'layer entry "dev/null": a character device node can only be created as root (CAP_MKNOD): run auraed as root, or use an image without device nodes',
    );
  });

  it('makes device nodes with their major:minor as root', async () => {
    const uid = process.getuid!();
    const gid = process.getgid!();
    const r = await unpack([{ path: 'dev/sda', type: 'block', devmajor: 8, devminor: 1, mode: 0o660, uid, gid }], { root: true });
    expect(r.calls).toContainEqual({ fn: 'mknod', path: path.join(r.dest, 'dev/sda'), args: [FILE_TYPE_BITS.S_IFBLK | 0o660, 8, 1] });
  });

  it('decodes gzip; the diffId is the sha256 of the uncompressed tar, even for multi-MiB files', async () => {
    const big = randomBytes(3 * 1024 * 1024 + 17);
    const tar = tarOf([{ path: 'big.bin', body: big }, { path: 'small', body: 's' }]);
    const r = await unpack(gzip(tar), { mediaType: OCI_GZIP });
    expect(r.diffId).toBe(sha256(tar));
    expect(readFileSync(path.join(r.dest, 'big.bin')).equals(big)).toBe(true);
    expect(readFileSync(path.join(r.dest, 'small'), 'utf8')).toBe('s');
  });

  it('decodes a plain tar announced as gzip (sniffed, as containerd does)', async () => {
    const tar = tarOf([{ path: 'a', body: 'a' }]);
    const r = await unpack(tar, { mediaType: OCI_GZIP });
    expect(r.diffId).toBe(sha256(tar));
  });

  const zstdTar = tarOf([{ path: 'z/file', body: 'zstd body' }, { path: 'z/.wh.gone' }]);
  const zstdBytes = zstd(zstdTar);
  const noZstd = zstdBytes === null ? ' (skipped: neither Node zlib zstd nor the zstd program is available)' : '';
  it.skipIf(zstdBytes === null)(`decodes zstd with the zstd program (the host's Node 20 has no zlib zstd)${noZstd}`, async () => {
    const r = await unpack(zstdBytes!, { mediaType: OCI_ZSTD, zstd: 'program' });
    expect(r.diffId).toBe(sha256(zstdTar));
    expect(readFileSync(path.join(r.dest, 'z/file'), 'utf8')).toBe('zstd body');
  });
  it.skipIf(zstdBytes === null || !zlibHasZstd())(
    `decodes zstd with Node's zlib${zlibHasZstd() ? '' : ' (skipped: this Node has no zlib zstd; Node ≥ 22.15 has, as in the image)'}`,
    async () => {
      const r = await unpack(zstdBytes!, { mediaType: OCI_ZSTD, zstd: 'zlib' });
      expect(r.diffId).toBe(sha256(zstdTar));
    },
  );

  it('unpacks an empty layer (end blocks only, or no bytes)', async () => {
    const empty = Buffer.alloc(1024);
    const r = await unpack(empty);
    expect(r.diffId).toBe(sha256(empty));
    expect(readdirSync(r.dest)).toEqual([]);
    rmSync(path.join(work, 'snap'), { recursive: true });
    expect((await unpack(Buffer.alloc(0))).diffId).toBe(sha256(Buffer.alloc(0)));
  });

  it('refuses damaged input: corrupt gzip, a truncated tar, a bad checksum', async () => {
    const tar = tarOf([{ path: 'a', body: 'x'.repeat(5000) }]);
    const dest = path.join(work, 'snap', 'fs');
    const corrupt = gzip(tar);
    corrupt.fill(0x55, 20, 60);
    await expect(unpackLayer(blob(corrupt), OCI_GZIP, dest, { syscalls: fakeSyscalls().sys })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(unpackLayer(blob(tar.subarray(0, 2048)), OCI_TAR, dest, { syscalls: fakeSyscalls().sys })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('not a valid tar archive'),
    });
    const badSum = Buffer.from(tar);
    badSum[0] = 0x62;
    await expect(unpackLayer(blob(badSum), OCI_TAR, dest, { syscalls: fakeSyscalls().sys })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(readdirSync(path.join(work, 'snap'))).toEqual([]);
  });

  it('refuses a gzip stream cut in the middle of a file body, and leaves nothing (no writer left waiting)', async () => {
    const tar = tarOf([{ path: 'first', body: 'f' }, { path: 'big.bin', body: randomBytes(2 * 1024 * 1024) }]);
    const whole = gzip(tar);
    const broken = whole.subarray(0, Math.floor(whole.length / 2)); // cut: zlib fails with bytes of big.bin still due
    const dest = path.join(work, 'broken', 'fs');
    await expect(unpackLayer(blob(broken), OCI_GZIP, dest, { syscalls: fakeSyscalls().sys })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(readdirSync(path.join(work, 'broken'))).toEqual([]);
  });

  it('refuses tar entry types it cannot represent (a GNU sparse file), naming the entry', async () => {
    const tar = tarOf([{ path: 'ok', body: 'x' }]);
    const sparse = Buffer.from(tar.subarray(0, 1024));
    const fixed = Buffer.concat([sparse.subarray(0, 512), Buffer.alloc(512)]);
    // Re-type the first header as 'S' and fix its checksum.
    fixed[156] = 'S'.charCodeAt(0);
    fixed.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += fixed[i]!;
    fixed.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    const dest = path.join(work, 'sparse', 'fs');
    await expect(unpackLayer(blob(Buffer.concat([fixed, Buffer.alloc(1024)])), OCI_TAR, dest, { syscalls: fakeSyscalls().sys })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'layer entry "ok": tar entry type SparseFile is not supported (GNU sparse file): rebuild the image without sparse files: the layer is refused',
    });
  });

  it('refuses a content other than the expected diffId before it becomes visible', async () => {
    const err = await refusal([{ path: 'a', body: 'a' }], { expectDiffId: `sha256:${'0'.repeat(64)}` });
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/its uncompressed content is sha256:[0-9a-f]{64} but the image config says sha256:0{64}: the image is corrupt/);
  });

  it('refuses a non-empty destination and unknown media types', async () => {
    const dest = path.join(work, 'full');
    mkdirSync(dest);
    writeFileSync(path.join(dest, 'x'), '');
    const file = blob(tarOf([{ path: 'a' }]));
    await expect(unpackLayer(file, OCI_TAR, dest, { syscalls: fakeSyscalls().sys })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: `unpacking layer into ${dest}: the directory is not empty: remove it or use the snapshot it holds`,
    });
    await expect(unpackLayer(file, 'text/plain', path.join(work, 'other'), { syscalls: fakeSyscalls().sys })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // An existing empty directory is replaced.
    const empty = path.join(work, 'empty');
    mkdirSync(empty);
    await unpackLayer(file, OCI_TAR, empty, { syscalls: fakeSyscalls().sys, root: false });
    expect(readdirSync(empty)).toEqual(['a']);
  });
});
