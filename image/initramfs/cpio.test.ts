import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { scanNewc } from '../../supervisor/vms/child-root';
import { compress, CpioError, newcHeader, planCpio, writeCpio, type CpioEntry } from './cpio';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cpio-test-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const MTIME = 1767225600;

function sample(hostFile: string): CpioEntry[] {
  return [
    { path: 'init', type: 'file', mode: 0o755, data: Buffer.from('#!/bin/sh\necho hi\n') },
    { path: 'usr/bin/big', type: 'file', mode: 0o755, data: { file: hostFile } },
    { path: 'etc/aurae/config.json', type: 'file', mode: 0o600, data: Buffer.from('{"a":1}') },
    { path: 'bin/sh', type: 'symlink', mode: 0o777, target: 'busybox' },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: Buffer.from('x'.repeat(5)) },
    { path: 'dev/console', type: 'char', mode: 0o600, rdevMajor: 5, rdevMinor: 1 },
    { path: 'tmp', type: 'dir', mode: 0o1777 },
    { path: 'empty', type: 'file', mode: 0o644 },
  ];
}

/** A host file whose size is not a multiple of 4 and spans several read chunks. */
function bigFile(): string {
  const p = join(dir, 'big.bin');
  const buf = Buffer.alloc(3 * (1 << 20) + 3);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 7919) & 0xff;
  writeFileSync(p, buf);
  return p;
}

describe('planCpio', () => {
  it('adds missing parents, puts parents before children and numbers inodes in order', () => {
    const plan = planCpio([
      { path: 'usr/lib/aurae/init.cjs', type: 'file', mode: 0o644 },
      { path: 'usr-local', type: 'dir', mode: 0o755 },
      { path: 'usr/bin/node', type: 'file', mode: 0o755 },
      { path: 'usr', type: 'dir', mode: 0o700 },
    ]);
    expect(plan.map((e) => e.path)).toEqual([
      'usr',
      'usr/bin',
      'usr/bin/node',
      'usr/lib',
      'usr/lib/aurae',
      'usr/lib/aurae/init.cjs',
      'usr-local',
    ]);
    expect(plan.map((e) => e.ino)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(plan[0]).toMatchObject({ mode: 0o700, implicit: false }); // explicit dir keeps its mode
    expect(plan[1]).toMatchObject({ type: 'dir', mode: 0o755, implicit: true });
  });

  it('gives the same order whatever the input order', () => {
    const entries = sample('/dev/null');
    const a = planCpio(entries).map((e) => e.path);
    const b = planCpio([...entries].reverse()).map((e) => e.path);
    expect(b).toEqual(a);
  });

  it.each([
    [{ path: '/init', type: 'file', mode: 0o755 }, /leading or trailing slash/],
    [{ path: 'a/../b', type: 'file', mode: 0o755 }, /"\.\." components/],
    [{ path: 'a//b', type: 'file', mode: 0o755 }, /empty/],
    [{ path: 'x', type: 'file', mode: 0o100755 }, /permission bits only/],
    [{ path: 'x', type: 'symlink', mode: 0o777 }, /non-empty target/],
    [{ path: 'x', type: 'char', mode: 0o600, rdevMajor: 5 }, /rdevMajor and rdevMinor/],
    [{ path: 'x', type: 'dir', mode: 0o755, data: Buffer.from('a') }, /only files have data/],
  ] as [CpioEntry, RegExp][])('rejects %j', (entry, message) => {
    expect(() => planCpio([entry])).toThrow(message);
  });

  it('rejects duplicates and files used as directories', () => {
    const f: CpioEntry = { path: 'a', type: 'file', mode: 0o644 };
    expect(() => planCpio([f, f])).toThrow(/listed twice/);
    expect(() => planCpio([f, { path: 'a/b', type: 'file', mode: 0o644 }])).toThrow(/is a file, not a dir/);
  });
});

describe('newcHeader', () => {
  it('lays out magic, 13 lowercase hex fields and pads header+name to 4 bytes', () => {
    const h = newcHeader({ ino: 0x12ac, mode: 0o100644, nlink: 1, mtime: 1, filesize: 3, name: 'ab' });
    expect(h.subarray(0, 6).toString()).toBe('070701');
    expect(h.subarray(6, 14).toString()).toBe('000012ac');
    expect(h.subarray(14, 22).toString()).toBe('000081a4');
    expect(h.subarray(94, 102).toString()).toBe('00000003'); // namesize counts the NUL
    expect(h.subarray(102, 110).toString()).toBe('00000000'); // check
    expect(h.length % 4).toBe(0);
    expect(h.length).toBe(116); // 110 + "ab\0" = 113 → 116
  });
});

describe('writeCpio', () => {
  it('round-trips through GNU cpio: names, types, modes, symlinks, devices and contents', async () => {
    const big = bigFile();
    const archive = join(dir, 'out.cpio');
    await writeCpio(sample(big), archive, { mtime: MTIME });
    expect(statSync(archive).size % 4).toBe(0);

    const listing = execFileSync('cpio', ['-it', '--quiet'], { input: readFileSync(archive) }).toString().trim().split('\n');
    expect(listing).toEqual([
      'bin',
      'bin/busybox',
      'bin/sh',
      'dev',
      'dev/console',
      'empty',
      'etc',
      'etc/aurae',
      'etc/aurae/config.json',
      'init',
      'tmp',
      'usr',
      'usr/bin',
      'usr/bin/big',
    ]);

    const verbose = execFileSync('cpio', ['-itv', '--quiet'], { input: readFileSync(archive) }).toString();
    expect(verbose).toMatch(/^crw------- +1 root +root +5, +1 .* dev\/console$/m);
    expect(verbose).toMatch(/^drwxrwxrwt +2 root +root .* tmp$/m);
    expect(verbose).toMatch(/^lrwxrwxrwx +1 root +root .* bin\/sh -> busybox$/m);

    const root = join(dir, 'x');
    execFileSync('mkdir', [root]);
    // Extract without devices (creating them needs root); everything else is checked on disk.
    execFileSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames', '--nonmatching', 'dev/console'], {
      cwd: root,
      input: readFileSync(archive),
    });
    expect(readFileSync(join(root, 'init'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
    expect(sha(readFileSync(join(root, 'usr/bin/big')))).toBe(sha(readFileSync(big)));
    expect(readFileSync(join(root, 'empty')).length).toBe(0);
    expect(readlinkSync(join(root, 'bin/sh'))).toBe('busybox');
    expect(lstatSync(join(root, 'bin/sh')).isSymbolicLink()).toBe(true);
    expect(statSync(join(root, 'init')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(root, 'etc/aurae/config.json')).mode & 0o7777).toBe(0o600);
    expect(statSync(join(root, 'usr/bin/big')).mtimeMs).toBe(MTIME * 1000);
  });

  it('produces identical bytes for the same inputs, to a file or a stream', async () => {
    const big = bigFile();
    const a = join(dir, 'a.cpio');
    const b = join(dir, 'b.cpio');
    await writeCpio(sample(big), a, { mtime: MTIME });
    await writeCpio([...sample(big)].reverse(), b, { mtime: MTIME });
    expect(sha(readFileSync(b))).toBe(sha(readFileSync(a)));

    const stream = new PassThrough();
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    await writeCpio(sample(big), stream, { mtime: MTIME });
    expect(sha(Buffer.concat(chunks))).toBe(sha(readFileSync(a)));

    const c = join(dir, 'c.cpio');
    await writeCpio(sample(big), c, { mtime: MTIME + 1 });
    expect(sha(readFileSync(c))).not.toBe(sha(readFileSync(a)));
  });

  it('ends with the trailer exactly as the kernel writes it', async () => {
    const archive = join(dir, 't.cpio');
    await writeCpio([{ path: 'a', type: 'file', mode: 0o644, data: Buffer.from('abc') }], archive, { mtime: MTIME });
    const bytes = readFileSync(archive);
    const trailer = newcHeader({ ino: 0, mode: 0, nlink: 1, mtime: 0, filesize: 0, name: 'TRAILER!!!' });
    expect(bytes.subarray(bytes.length - trailer.length).equals(trailer)).toBe(true);
    // entry: 110 + "a\0" → 112, data "abc" padded → 4, trailer 110 + 11 → 124
    expect(bytes.length).toBe(112 + 4 + 124);
  });

  it('aligns an entry\'s data with a file of zeros before it; GNU cpio and the parent\'s scanner read the archive as usual', async () => {
    const big = bigFile();
    const archive = join(dir, 'aligned.cpio');
    const entries: CpioEntry[] = [
      { path: '.stage/busybox', type: 'file', mode: 0o755, data: Buffer.from('x'.repeat(1001)) },
      { path: '.stage/pad', type: 'file', mode: 0o444, data: { alignDataOf: '.stage/root.img', to: 4096 } },
      { path: '.stage/root.img', type: 'file', mode: 0o444, data: { file: big } },
      { path: 'etc/hosts', type: 'file', mode: 0o644, data: Buffer.from('127.0.0.1 localhost\n') },
    ];
    await writeCpio(entries, archive, { mtime: MTIME });
    const bytes = readFileSync(archive);
    const scanned = scanNewc((offset, length) => bytes.subarray(offset, offset + length), bytes.length)!;
    expect(scanned.map((e) => e.name)).toEqual(['.stage', '.stage/busybox', '.stage/pad', '.stage/root.img', 'etc', 'etc/hosts']);
    const root = scanned.find((e) => e.name === '.stage/root.img')!;
    expect(root.dataStart % 4096).toBe(0);
    expect(bytes.subarray(root.dataStart, root.dataStart + root.size).equals(readFileSync(big))).toBe(true);
    const pad = scanned.find((e) => e.name === '.stage/pad')!;
    expect(pad.size).toBeLessThan(4096);
    execFileSync('mkdir', [join(dir, 'x')]);
    execFileSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames'], { input: bytes, cwd: join(dir, 'x') });
    expect(readFileSync(join(dir, 'x', '.stage/root.img')).equals(readFileSync(big))).toBe(true);
    expect(readFileSync(join(dir, 'x', 'etc/hosts'), 'utf8')).toBe('127.0.0.1 localhost\n');

    // The entry to align must come next: anything else is a layout mistake, named.
    const wrong: CpioEntry[] = [entries[1]!, { path: '.stage/zzz', type: 'file', mode: 0o444 }];
    await expect(writeCpio(wrong, join(dir, 'wrong.cpio'), { mtime: MTIME })).rejects.toThrow(/"\.stage\/pad": aligns "\.stage\/root\.img", but the next entry is "\.stage\/zzz"/);
  });

  it('fails naming the entry when a host file is missing, and leaves no partial output', async () => {
    const archive = join(dir, 'bad.cpio');
    const entries: CpioEntry[] = [{ path: 'usr/bin/node', type: 'file', mode: 0o755, data: { file: join(dir, 'nope') } }];
    await expect(writeCpio(entries, archive, { mtime: MTIME })).rejects.toThrow(/"usr\/bin\/node": cannot read .*nope \(ENOENT\)/);
    expect(() => statSync(archive)).toThrow();
    expect(execFileSync('ls', [dir]).toString().trim()).toBe('');
  });

  it('rejects a bad mtime', async () => {
    await expect(writeCpio([], join(dir, 'x.cpio'), { mtime: -1 })).rejects.toBeInstanceOf(CpioError);
  });
});

describe('compress', () => {
  it.each(['zstd', 'gzip'] as const)('%s output is deterministic and decompresses to the input', async (algo) => {
    const archive = join(dir, 'in.cpio');
    await writeCpio(sample(bigFile()), archive, { mtime: MTIME });
    const first = await compress(archive, algo);
    const firstSha = sha(readFileSync(first));
    // Same content, different file time and name: output must not change.
    const other = join(dir, 'other.cpio');
    writeFileSync(other, readFileSync(archive));
    const second = await compress(other, algo);
    expect(sha(readFileSync(second))).toBe(firstSha);
    if (algo === 'zstd') {
      // Reproducibility rests on multi-threaded zstd output not depending on the thread count.
      const oneWorker = execFileSync('zstd', ['-q', '-19', '-T1', '-c', archive], { maxBuffer: 64 << 20 });
      expect(sha(oneWorker)).toBe(firstSha);
    }
    const tool = algo === 'zstd' ? ['zstd', '-dc', first] : ['gzip', '-dc', first];
    const roundTrip = execFileSync(tool[0]!, tool.slice(1), { maxBuffer: 64 << 20 });
    expect(sha(roundTrip)).toBe(sha(readFileSync(archive)));
  });

  it('returns the input for none', async () => {
    expect(await compress('/some/path', 'none')).toBe('/some/path');
  });
});

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
