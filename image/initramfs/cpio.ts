// Deterministic newc ("070701") cpio writer for the initramfs, per the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst:
//
//   cpio_file    := ALGN(4) + cpio_header + filename + "\0" + ALGN(4) + data
//   cpio_trailer := ALGN(4) + cpio_header + "TRAILER!!!\0" + ALGN(4)
//
// Determinism: entries are sorted by path component (bytewise), missing parent directories are
// added, inode numbers are assigned in that order, uid/gid are 0 and every mtime is the same.
// Nothing of the build host (owners, inode numbers, timestamps) leaks into the archive, so the
// same inputs give the same bytes. File contents are streamed, so a 100 MB Node binary never
// sits in memory.

import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { $ } from 'zx';

export type CpioEntry = {
  /** Path inside the archive, no leading slash, e.g. `usr/bin/node`. */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'char';
  /** Permission bits only (0o7777 at most); the type bits come from `type`. */
  mode: number;
  /**
   * File contents: bytes, a host file streamed at write time, or zeros sized so that the data of the entry
   * `alignDataOf` (which must come next in the archive) starts at a multiple of `to` bytes from the archive's
   * start (a file a reader can use in place, e.g. as a disk at that offset). Default: empty file.
   */
  data?: Buffer | { file: string } | { alignDataOf: string; to: number };
  /** Symlink target (required for symlinks). */
  target?: string;
  /** Device numbers (required for char devices). */
  rdevMajor?: number;
  rdevMinor?: number;
};

export type CpioOptions = {
  /** Modification time (seconds since the epoch) stamped on every entry. */
  mtime: number;
};

/** An entry after validation and ordering: what the writer emits, in order. */
export type PlannedCpioEntry = CpioEntry & { ino: number; implicit: boolean };

export class CpioError extends Error {
  override name = 'CpioError';
}

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TYPE_BITS = { file: S_IFREG, dir: S_IFDIR, symlink: S_IFLNK, char: S_IFCHR } as const;
const IMPLICIT_DIR_MODE = 0o755;
const HEADER_SIZE = 110;
const PATH_MAX = 4096;

/** Compares paths component by component, bytewise, so a parent always precedes its children. */
export function comparePaths(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = Buffer.compare(Buffer.from(pa[i]!), Buffer.from(pb[i]!));
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

function validate(e: CpioEntry): void {
  const where = `cpio entry ${JSON.stringify(e.path)}`;
  if (e.path === '' || e.path.startsWith('/') || e.path.endsWith('/')) {
    throw new CpioError(`${where}: path must be relative without leading or trailing slash (e.g. "usr/bin/node")`);
  }
  if (e.path.split('/').some((c) => c === '' || c === '.' || c === '..')) {
    throw new CpioError(`${where}: path must not contain empty, "." or ".." components`);
  }
  if (e.path.includes('\0')) throw new CpioError(`${where}: path contains a NUL byte`);
  if (Buffer.byteLength(e.path) + 1 > PATH_MAX) throw new CpioError(`${where}: path is longer than PATH_MAX`);
  if (!(e.type in TYPE_BITS)) throw new CpioError(`${where}: unknown type ${JSON.stringify(e.type)}`);
  if (!Number.isInteger(e.mode) || e.mode < 0 || e.mode > 0o7777) {
    throw new CpioError(`${where}: mode ${e.mode} must be permission bits only (0 to 0o7777)`);
  }
  if (e.type === 'symlink' && (e.target === undefined || e.target === '')) {
    throw new CpioError(`${where}: a symlink needs a non-empty target`);
  }
  if (e.type !== 'symlink' && e.target !== undefined) throw new CpioError(`${where}: only symlinks have a target`);
  if (e.type !== 'file' && e.data !== undefined) throw new CpioError(`${where}: only files have data`);
  if (e.data && 'alignDataOf' in e.data && (!Number.isInteger(e.data.to) || e.data.to < 4 || e.data.to % 4 !== 0)) {
    throw new CpioError(`${where}: alignment ${e.data.to} must be a positive multiple of 4`);
  }
  if (e.type === 'char') {
    for (const n of [e.rdevMajor, e.rdevMinor]) {
      if (n === undefined || !Number.isInteger(n) || n < 0 || n > 0xffffffff) {
        throw new CpioError(`${where}: a char device needs integer rdevMajor and rdevMinor`);
      }
    }
  }
}

/**
 * Validates the entries, adds missing parent directories (mode 0755), sorts them so parents
 * come first and assigns inode numbers 1, 2, … in that order. Pure; `writeCpio` emits the
 * result as is.
 */
export function planCpio(entries: CpioEntry[]): PlannedCpioEntry[] {
  const byPath = new Map<string, CpioEntry & { implicit: boolean }>();
  for (const e of entries) {
    validate(e);
    if (byPath.has(e.path)) throw new CpioError(`cpio entry ${JSON.stringify(e.path)} is listed twice`);
    byPath.set(e.path, { ...e, implicit: false });
  }
  for (const e of entries) {
    const parts = e.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const existing = byPath.get(parent);
      if (!existing) {
        byPath.set(parent, { path: parent, type: 'dir', mode: IMPLICIT_DIR_MODE, implicit: true });
      } else if (existing.type !== 'dir') {
        throw new CpioError(`cpio entry ${JSON.stringify(e.path)}: its parent ${JSON.stringify(parent)} is a ${existing.type}, not a dir`);
      }
    }
  }
  return [...byPath.values()].sort((a, b) => comparePaths(a.path, b.path)).map((e, i) => ({ ...e, ino: i + 1 }));
}

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new CpioError(`cpio: value ${n} does not fit a newc header field`);
  return n.toString(16).padStart(8, '0');
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** Header + NUL-terminated name + padding to 4 bytes (the header starts 4-aligned). */
export function newcHeader(h: {
  ino: number;
  mode: number;
  nlink: number;
  mtime: number;
  filesize: number;
  rdevMajor?: number;
  rdevMinor?: number;
  name: string;
}): Buffer {
  const name = Buffer.from(h.name + '\0');
  const fields = [
    h.ino, h.mode, 0 /* uid */, 0 /* gid */, h.nlink, h.mtime, h.filesize,
    0 /* dev major */, 0 /* dev minor */, h.rdevMajor ?? 0, h.rdevMinor ?? 0, name.length, 0 /* check */,
  ];
  const header = Buffer.from('070701' + fields.map(hex8).join(''), 'latin1');
  return Buffer.concat([header, name, Buffer.alloc(pad4(HEADER_SIZE + name.length))]);
}

/** Collects small writes into large chunks and honours back-pressure. */
class Sink {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  bytes = 0;
  constructor(private readonly out: Writable, private readonly chunk = 1 << 20) {}
  async write(buf: Buffer): Promise<void> {
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    this.bytes += buf.length;
    if (this.pendingBytes >= this.chunk) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const buf = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.out.write(buf)) await once(this.out, 'drain');
  }
}

async function writeEntry(sink: Sink, e: PlannedCpioEntry, mtime: number, next: PlannedCpioEntry | undefined): Promise<void> {
  const mode = TYPE_BITS[e.type] | e.mode;
  const base = { ino: e.ino, mode, mtime, name: e.path };
  switch (e.type) {
    case 'dir':
      await sink.write(newcHeader({ ...base, nlink: 2, filesize: 0 }));
      return;
    case 'char':
      await sink.write(newcHeader({ ...base, nlink: 1, filesize: 0, rdevMajor: e.rdevMajor, rdevMinor: e.rdevMinor }));
      return;
    case 'symlink': {
      const target = Buffer.from(e.target!);
      await sink.write(newcHeader({ ...base, nlink: 1, filesize: target.length }));
      await sink.write(target);
      await sink.write(Buffer.alloc(pad4(target.length)));
      return;
    }
    case 'file': {
      const data = e.data ?? Buffer.alloc(0);
      if ('alignDataOf' in data) {
        const { alignDataOf, to } = data;
        if (next?.path !== alignDataOf) {
          throw new CpioError(`cpio entry ${JSON.stringify(e.path)}: aligns ${JSON.stringify(alignDataOf)}, but the next entry is ${JSON.stringify(next?.path ?? 'the trailer')}`);
        }
        // Every entry starts 4-aligned and its header is padded to 4, so the zeros are a multiple of 4: no padding after them.
        const dataStart = sink.bytes + newcHeader({ ...base, nlink: 1, filesize: 0 }).length;
        const nextHeader = newcHeader({ ino: 0, mode: 0, nlink: 0, mtime: 0, filesize: 0, name: next.path }).length;
        const zeros = (to - ((dataStart + nextHeader) % to)) % to;
        await sink.write(newcHeader({ ...base, nlink: 1, filesize: zeros }));
        await sink.write(Buffer.alloc(zeros));
        return;
      }
      if (Buffer.isBuffer(data)) {
        await sink.write(newcHeader({ ...base, nlink: 1, filesize: data.length }));
        await sink.write(data);
        await sink.write(Buffer.alloc(pad4(data.length)));
        return;
      }
      const size = await stat(data.file).then(
        (s) => {
          if (!s.isFile()) throw new CpioError(`cpio entry ${JSON.stringify(e.path)}: ${data.file} is not a regular file`);
          return s.size;
        },
        (err: NodeJS.ErrnoException) => {
          throw new CpioError(`cpio entry ${JSON.stringify(e.path)}: cannot read ${data.file} (${err.code ?? err.message})`);
        },
      );
      await sink.write(newcHeader({ ...base, nlink: 1, filesize: size }));
      let copied = 0;
      for await (const chunk of createReadStream(data.file, { highWaterMark: 1 << 20 })) {
        copied += (chunk as Buffer).length;
        if (copied > size) break;
        await sink.write(chunk as Buffer);
      }
      if (copied !== size) {
        throw new CpioError(
          `cpio entry ${JSON.stringify(e.path)}: ${data.file} changed size while being archived ` +
            `(${size} bytes at stat, ${copied}${copied > size ? '+' : ''} read); rebuild once nothing writes to it`,
        );
      }
      await sink.write(Buffer.alloc(pad4(size)));
      return;
    }
  }
}

/**
 * Writes a newc cpio archive of `entries` (see `planCpio` for ordering) followed by TRAILER!!!.
 * `out` is either a path (written to a temporary file, then renamed into place) or a Writable
 * (left open, so callers can append or pipe into a compressor and end it themselves).
 */
export async function writeCpio(entries: CpioEntry[], out: Writable | string, opts: CpioOptions): Promise<void> {
  if (!Number.isInteger(opts.mtime) || opts.mtime < 0) throw new CpioError(`cpio: mtime ${opts.mtime} must be whole seconds >= 0`);
  const planned = planCpio(entries);
  if (typeof out !== 'string') {
    await writeAll(planned, out, opts.mtime);
    return;
  }
  const tmp = `${out}.tmp-${process.pid}`;
  const stream = createWriteStream(tmp);
  try {
    await Promise.race([
      writeAll(planned, stream, opts.mtime),
      once(stream, 'error').then(([err]) => Promise.reject(err as Error)),
    ]);
    stream.end();
    await once(stream, 'close');
    await rename(tmp, out);
  } catch (err) {
    stream.destroy();
    await rm(tmp, { force: true });
    throw err;
  }
}

async function writeAll(planned: PlannedCpioEntry[], out: Writable, mtime: number): Promise<void> {
  const sink = new Sink(out);
  for (const [i, e] of planned.entries()) await writeEntry(sink, e, mtime, planned[i + 1]);
  // The trailer as the kernel's usr/gen_init_cpio writes it: all zero but nlink 1.
  await sink.write(newcHeader({ ino: 0, mode: 0, nlink: 1, mtime: 0, filesize: 0, name: 'TRAILER!!!' }));
  await sink.flush();
}

export type Compression = 'zstd' | 'gzip' | 'none';

/** Fixed levels: the output depends only on the input bytes (and the tool's version). */
export const ZSTD_LEVEL = 19;
export const GZIP_LEVEL = 9;

/**
 * Compresses `path` next to itself (`.zst` / `.gz`) and returns the output path; 'none' returns
 * `path` unchanged. The input is kept. Reproducible: gzip runs with -n (no name, no timestamp);
 * zstd runs in multi-threaded mode (-T0), whose output does not depend on the number of worker
 * threads (checked with zstd 1.5.4: -T1, -T2 and -T0 give identical bytes; only
 * --single-thread differs, so it is never used). Level 19 as the kernel's own usr/Makefile:
 * ~20 s for a 100 MB archive on 2 cores (27 MB out; gzip -9 takes ~10 s for 36 MB).
 */
export async function compress(path: string, algo: Compression): Promise<string> {
  const sh = $({ quiet: true, nothrow: true });
  let output: string;
  let result;
  switch (algo) {
    case 'none':
      return path;
    case 'zstd':
      output = `${path}.zst`;
      result = await sh`zstd -q -f ${`-${ZSTD_LEVEL}`} -T0 -o ${output} -- ${path}`;
      break;
    case 'gzip':
      output = `${path}.gz`;
      result = await sh`gzip -k -f -n ${`-${GZIP_LEVEL}`} -- ${path}`;
      break;
    default:
      throw new CpioError(`compress: unknown algorithm ${JSON.stringify(algo)} (zstd, gzip or none)`);
  }
  if (result.exitCode !== 0) {
    const tool = algo === 'zstd' ? 'zstd' : 'gzip';
    throw new CpioError(
      `compress: ${tool} failed on ${path} (exit ${result.exitCode}): ${result.stderr.trim()}\n` +
        `Is it installed? sudo apt-get install -y ${tool}`,
    );
  }
  return output;
}
