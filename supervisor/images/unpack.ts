// Unpack one OCI/Docker layer blob into an overlayfs lower directory (a "snapshot"), the way containerd's
// overlay snapshotter does: the layer's files as they are, whiteouts `.wh.NAME` as 0/0 character devices and
// opaque markers `.wh..wh..opq` as the `trusted.overlay.opaque=y` xattr on their directory. Layers are never
// applied on top of each other on disk: overlayfs stacks the snapshots at mount time (see overlay.ts).
//
// The tar stream is read with node-tar's Parser (headers, PAX, GNU long names, bodies), but every file system
// write is ours: node-tar's extractor skips device nodes, FIFOs and whiteouts and does not keep xattrs. Rules:
//   - no entry is written outside the snapshot: absolute names, `..` components, and names (or hard link
//     targets) under a symlinked or non-directory parent refuse the layer (INVALID_ARGUMENT naming the entry);
//     symlinks themselves are stored as they are and never followed;
//   - existing entries (an earlier entry of the same layer) are replaced, never written through;
//   - ownership is kept when running as root; modes and mtimes always (directories last, deepest first);
//   - device nodes need root (refused otherwise); FIFOs and whiteouts are made with mknod;
//   - xattrs (PAX `SCHILY.xattr.*`, `LIBARCHIVE.xattr.*`) are applied, or the layer is refused saying which
//     failed; a layer may not carry `trusted.overlay.*` itself (it would forge overlay metadata).
// node-tar decodes PAX records as UTF-8 text and drops the xattr keys, so a small raw header walker runs beside
// the parser over the same bytes and hands each entry its xattrs as raw bytes (file capabilities are binary).
//
// The diffId is the sha256 of the whole uncompressed stream. The layer is unpacked into a temp directory beside
// `dest`, synced (syncfs) and renamed into place, so a cut at any point leaves either no snapshot or a whole one.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { constants as fsConstants, createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';
import { Header, Parser, type ReadEntry } from 'tar';
import { FILE_TYPE_BITS, loadSyscalls, type Syscalls } from '../../native';
import { AuraeError } from '../errors';

export type LayerCompression = 'none' | 'gzip' | 'zstd';

/** The layer media types we unpack, and the compression each announces. */
export const LAYER_MEDIA_TYPES: Readonly<Record<string, LayerCompression>> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'zstd',
  'application/vnd.docker.image.rootfs.diff.tar': 'none',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'gzip',
};

/** The compression a layer media type announces; INVALID_ARGUMENT naming the supported ones otherwise. */
export function layerCompression(mediaType: string): LayerCompression {
  const compression = Object.hasOwn(LAYER_MEDIA_TYPES, mediaType) ? LAYER_MEDIA_TYPES[mediaType] : undefined;
  if (!compression) {
    throw new AuraeError(
      'INVALID_ARGUMENT',
      `layer media type "${mediaType}" is not supported: one of ${Object.keys(LAYER_MEDIA_TYPES).join(', ')}`,
    );
  }
  return compression;
}

/**
 * The compression the bytes actually carry (magic numbers), which is what we decode: like containerd, a layer
 * whose media type says gzip but whose bytes are a plain tar (old `docker save` output) still unpacks.
 */
export function sniffCompression(head: Buffer): LayerCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';
export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';

/**
 * The components of a tar entry name inside the snapshot ([] for the root itself: "./", "." or "/"), or the
 * reason the name is refused: `..` components (even ones that would stay inside) never unpack. A leading "/" is
 * relative to the snapshot's root, as Docker's and containerd's unpackers read it (umoci writes its root entry as
 * "/"), so an absolute name can never reach outside either.
 */
export function entryComponents(name: string): { parts: string[] } | { reason: string } {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return { reason: '".." path components are not allowed in a layer' };
    parts.push(part);
  }
  return { parts };
}

/** What the file system side of unpacking needs from the syscall addon (a fake in unit tests). */
export type UnpackSyscalls = Pick<Syscalls, 'mknod' | 'lsetxattr' | 'syncfs'>;

export interface UnpackOptions {
  /** Default: the syscall addon, loaded on first use. */
  syscalls?: UnpackSyscalls;
  /** Keep ownership and allow device nodes; default: running as uid 0. */
  root?: boolean;
  /** How to decode zstd: Node's zlib (≥ 22.15) when it has it, else the `zstd` program. */
  zstd?: 'auto' | 'zlib' | 'program';
  /** The image config's diffId for this layer: a different content is refused before anything is renamed in. */
  expectDiffId?: string;
  signal?: AbortSignal;
}

/**
 * Unpack the layer blob at `blob` (already verified against its digest) into `dest`, which must not exist or be
 * an empty directory; its parent is created. Resolves to the diffId ("sha256:<hex>" of the uncompressed tar):
 * the caller compares it with the image config's rootfs.diff_ids. Throws AuraeError: INVALID_ARGUMENT (unknown
 * media type, broken archive, unsafe entry — the message names it), FAILED_PRECONDITION (dest not empty, a
 * refused device node or xattr), RESOURCE_EXHAUSTED (disk full), INTERNAL (anything else). On failure nothing is
 * left behind.
 */
export async function unpackLayer(
  blob: string,
  mediaType: string,
  dest: string,
  opts: UnpackOptions = {},
): Promise<{ diffId: string }> {
  layerCompression(mediaType);
  dest = path.resolve(dest);
  await checkDestination(dest);
  const tmp = `${dest}.unpack-${randomBytes(6).toString('hex')}`;
  await fsp.mkdir(tmp, { mode: 0o700 });
  try {
    const writer = new SnapshotWriter(tmp, opts.root ?? process.getuid?.() === 0, () => opts.syscalls ?? defaultSyscalls());
    const diffId = await readLayer(blob, opts, writer);
    if (opts.expectDiffId !== undefined && diffId !== opts.expectDiffId) {
      throw new AuraeError(
        'FAILED_PRECONDITION',
        `layer ${blob}: its uncompressed content is ${diffId} but the image config says ${opts.expectDiffId}: the image is corrupt, nothing was stored`,
      );
    }
    await writer.finish();
    writer.syscalls().syncfs(tmp);
    try {
      await fsp.rename(tmp, dest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new AuraeError('FAILED_PRECONDITION', `unpacking layer into ${dest}: it was filled by someone else meanwhile: use that snapshot`);
      }
      throw err;
    }
    await fsyncDir(path.dirname(dest));
    return { diffId };
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw asAuraeError(err, `unpacking layer ${blob} into ${dest}`);
  }
}

async function checkDestination(dest: string): Promise<void> {
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  let entries: string[];
  try {
    entries = await fsp.readdir(dest);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new AuraeError('FAILED_PRECONDITION', `unpacking layer into ${dest}: it exists and is not a directory: remove it`);
    throw err;
  }
  if (entries.length > 0) {
    throw new AuraeError('FAILED_PRECONDITION', `unpacking layer into ${dest}: the directory is not empty: remove it or use the snapshot it holds`);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function asAuraeError(err: unknown, what: string): AuraeError {
  if (err instanceof AuraeError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') {
    return new AuraeError('RESOURCE_EXHAUSTED', `${what}: ${e.message}: free space on the state volume`, { cause: err });
  }
  if (typeof e?.code === 'string' && e.code.startsWith('Z_')) {
    return new AuraeError('INVALID_ARGUMENT', `${what}: the gzip stream is corrupt (${e.message}): the layer blob is damaged`, { cause: err });
  }
  if (e?.name === 'AbortError') return new AuraeError('UNAVAILABLE', `${what}: aborted`, { cause: err });
  return new AuraeError('INTERNAL', `${what}: ${e?.message ?? String(err)}`, { cause: err });
}

let loadedSyscalls: UnpackSyscalls | undefined;
function defaultSyscalls(): UnpackSyscalls {
  if (loadedSyscalls) return loadedSyscalls;
  let sys: Partial<Syscalls>;
  try {
    sys = loadSyscalls();
  } catch (err) {
    throw new AuraeError('INTERNAL', `unpacking layers needs the syscall addon: ${(err as Error).message}`);
  }
  for (const fn of ['mknod', 'lsetxattr', 'syncfs'] as const) {
    if (typeof sys[fn] !== 'function') {
      throw new AuraeError('INTERNAL', `the syscall addon has no ${fn}() (it predates layer unpacking): rebuild it with \`npx tsx native/build.ts\``);
    }
  }
  loadedSyscalls = sys as UnpackSyscalls;
  return loadedSyscalls;
}

// ---------------------------------------------------------------------------
// Reading: decompress, hash, walk the raw headers (xattrs), parse (entries), apply in order.

async function readLayer(blob: string, opts: UnpackOptions, writer: SnapshotWriter): Promise<string> {
  const head = Buffer.alloc(4);
  const fh = await fsp.open(blob, 'r');
  try {
    await fh.read(head, 0, 4, 0);
  } finally {
    await fh.close();
  }
  const compression = sniffCompression(head);
  const hash = createHash('sha256');
  const walker = new RawHeaderWalker();
  const parser = new Parser({ strict: false });
  const failure = new AbortController();
  let failed: unknown;
  const fail = (err: unknown): void => {
    if (failed !== undefined) return;
    failed = err;
    failure.abort(err);
  };
  let entriesSeen = 0;
  let chain: Promise<void> = Promise.resolve();
  let current: ReadEntry | undefined; // the entry being written, ended early when the stream breaks
  const enqueue = (entry: ReadEntry, apply: (raw: RawEntry) => Promise<void>): void => {
    entriesSeen++;
    let raw: RawEntry;
    try {
      raw = walker.next(entry.path);
    } catch (err) {
      entry.resume();
      return fail(err);
    }
    chain = chain.then(async () => {
      if (failed !== undefined) return void entry.resume();
      current = entry;
      try {
        await apply(raw);
      } catch (err) {
        entry.resume();
        fail(err);
      } finally {
        current = undefined;
      }
    });
  };
  parser.on('entry', (entry: ReadEntry) => enqueue(entry, (raw) => writer.apply(entry, raw)));
  parser.on('ignoredEntry', (entry: ReadEntry) => {
    if (entry.meta) {
      return fail(new AuraeError('INVALID_ARGUMENT', `layer entry after "${entry.path}": an extended header larger than 1 MiB is not supported`));
    }
    enqueue(entry, async () => {
      throw refuse(entry.path, `tar entry type ${entry.type} is not supported${entry.type === 'SparseFile' ? ' (GNU sparse file): rebuild the image without sparse files' : ''}`);
    });
  });
  parser.on('warn', (code: string, message: string) => {
    // An empty layer (just the end-of-archive blocks, or no bytes at all) is valid even though node-tar finds no
    // entry in it; anything else it warns about (checksum, truncation, missing paths) means a broken layer.
    if (code === 'TAR_BAD_ARCHIVE' && /Unrecognized archive format/.test(message) && entriesSeen === 0 && walker.emptyArchive()) return;
    fail(new AuraeError('INVALID_ARGUMENT', `the layer is not a valid tar archive: ${message}: the blob is damaged or not a layer`));
  });
  parser.on('error', (err: Error) => fail(new AuraeError('INVALID_ARGUMENT', `the layer is not a valid tar archive: ${err.message}`)));

  const feed = async (source: AsyncIterable<Buffer>): Promise<void> => {
    for await (const chunk of source) {
      if (failed !== undefined) throw failed;
      opts.signal?.throwIfAborted();
      hash.update(chunk);
      walker.push(chunk);
      if (!parser.write(chunk)) {
        await waitFor(parser, 'drain', failure.signal, () => failed);
      }
    }
    if (failed !== undefined) throw failed;
    const ended = waitFor(parser, 'end', failure.signal, () => failed);
    parser.end();
    await ended;
    await chain;
    if (failed !== undefined) throw failed;
  };

  try {
    await decompressInto(blob, compression, opts, feed);
  } catch (err) {
    // A broken stream mid-body leaves the entry being written waiting for bytes that never come: end it, and let
    // the writer finish before the caller deletes the temp dir.
    fail(err);
    current?.destroy();
    await chain;
    throw failed;
  }
  await chain;
  if (failed !== undefined) throw failed;
  return `sha256:${hash.digest('hex')}`;
}

function waitFor(emitter: Parser, event: string, signal: AbortSignal, failure: () => unknown): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      emitter.off(event, onEvent);
      reject(failure());
    };
    const onEvent = (): void => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    if (signal.aborted) return reject(failure());
    emitter.once(event, onEvent);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

type ZlibWithZstd = typeof zlib & { createZstdDecompress?: () => Transform };

/** True when this Node's zlib decodes zstd (Node ≥ 22.15; the image's Node has it, the host's Node 20 not). */
export function zlibHasZstd(): boolean {
  return typeof (zlib as ZlibWithZstd).createZstdDecompress === 'function';
}

async function decompressInto(
  blob: string,
  compression: LayerCompression,
  opts: UnpackOptions,
  sink: (source: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  const input = (): Readable => createReadStream(blob, { highWaterMark: 256 * 1024 });
  if (compression === 'none') return pipeline(input(), sink);
  if (compression === 'gzip') return pipeline(input(), zlib.createGunzip({ chunkSize: 64 * 1024 }), sink);
  const mode = opts.zstd ?? 'auto';
  if (mode === 'zlib' || (mode === 'auto' && zlibHasZstd())) {
    const create = (zlib as ZlibWithZstd).createZstdDecompress;
    if (!create) throw new AuraeError('FAILED_PRECONDITION', 'decoding a zstd layer: this Node has no zlib zstd (Node ≥ 22.15 has): install zstd');
    return pipeline(input(), create(), sink);
  }
  return zstdProgram(blob, sink);
}

/** Decode with the `zstd` program (host tests on Node 20): its stdout feeds the sink; its exit is checked. */
async function zstdProgram(blob: string, sink: (source: AsyncIterable<Buffer>) => Promise<void>): Promise<void> {
  const child = spawn('zstd', ['-d', '-c', '-q', '--', blob], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-2000)));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new AuraeError('FAILED_PRECONDITION', 'decoding a zstd layer: this Node has no zlib zstd and the zstd program is not installed: install zstd (or run Node ≥ 22.15)')
          : err,
      );
    });
    child.once('close', (code) => resolve(code));
  });
  exited.catch(() => undefined);
  try {
    await pipeline(child.stdout, sink);
  } catch (err) {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited.catch(() => undefined);
    throw err;
  }
  const code = await exited;
  if (code !== 0) {
    throw new AuraeError('INVALID_ARGUMENT', `the zstd stream is corrupt: zstd exited with ${code}: ${stderr.trim()}: the layer blob is damaged`);
  }
}

// ---------------------------------------------------------------------------
// The raw header walker: the same bytes as the parser, only to keep PAX xattrs as bytes.

export interface RawEntry {
  path: string;
  xattrs: Map<string, Buffer>;
}

const META_TYPES = new Set(['ExtendedHeader', 'OldExtendedHeader', 'GlobalExtendedHeader', 'NextFileHasLongPath', 'OldGnuLongPath', 'NextFileHasLongLinkpath']);
const MAX_META = 1024 * 1024;

/** Walks tar headers over pushed chunks; next(path) hands out, in order, what it saw for each real entry. */
export class RawHeaderWalker {
  private pending: Buffer = Buffer.alloc(0);
  private skip = 0;
  private collect: { type: string; size: number; chunks: Buffer[]; got: number } | null = null;
  private pax = new Map<string, Buffer>();
  private longPath: string | undefined;
  private readonly entries: RawEntry[] = [];
  private nullBlocks = 0;
  private total = 0;
  private headers = 0;
  private eof = false;
  private broken = false;

  push(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.eof || this.broken) return;
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let pos = 0;
    while (pos < buf.length && !this.eof && !this.broken) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, buf.length - pos);
        if (this.collect && this.collect.got < this.collect.size) {
          const take = Math.min(n, this.collect.size - this.collect.got);
          this.collect.chunks.push(Buffer.from(buf.subarray(pos, pos + take)));
          this.collect.got += take;
        }
        pos += n;
        this.skip -= n;
        if (this.skip === 0 && this.collect) this.finishMeta();
        continue;
      }
      if (buf.length - pos < 512) break;
      this.header(buf.subarray(pos, pos + 512));
      pos += 512;
    }
    this.pending = pos < buf.length ? Buffer.from(buf.subarray(pos)) : Buffer.alloc(0);
  }

  /** True when everything pushed was end-of-archive blocks (or nothing): an empty layer. */
  emptyArchive(): boolean {
    return this.headers === 0 && (this.total === 0 || this.nullBlocks >= 2 || this.eof);
  }

  /** The raw view of the next real entry; throws when it is not the entry the parser reports (out of step). */
  next(parserPath: string): RawEntry {
    const raw = this.entries.shift();
    if (!raw || raw.path !== parserPath) {
      throw new AuraeError('INTERNAL', `reading the layer: the raw header reader is out of step at "${parserPath}" (it saw ${raw ? `"${raw.path}"` : 'nothing'})`);
    }
    return raw;
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      if (++this.nullBlocks >= 2) this.eof = true;
      return;
    }
    this.nullBlocks = 0;
    let h: Header;
    try {
      h = new Header(block);
    } catch {
      this.broken = true;
      return;
    }
    if (!h.cksumValid) {
      this.broken = true;
      return;
    }
    this.headers++;
    const type = h.type;
    if (META_TYPES.has(type)) {
      const size = h.size ?? 0;
      this.skip = 512 * Math.ceil(size / 512);
      this.collect = { type, size: Math.min(size, MAX_META), chunks: [], got: 0 };
      if (this.skip === 0) this.finishMeta();
      return;
    }
    const paxSize = this.pax.get('size');
    const size = paxSize ? Number(paxSize.toString('utf8')) : (h.size ?? 0);
    const paxPath = this.pax.get('path');
    const entryPath = paxPath ? paxPath.toString('utf8').replace(/\0.*/, '') : (this.longPath ?? h.path ?? '');
    const xattrs = new Map<string, Buffer>();
    for (const [key, value] of this.pax) {
      if (key.startsWith('SCHILY.xattr.')) xattrs.set(key.slice('SCHILY.xattr.'.length), value);
      else if (key.startsWith('LIBARCHIVE.xattr.')) {
        xattrs.set(decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(value.toString('latin1'), 'base64'));
      }
    }
    this.entries.push({ path: entryPath, xattrs });
    this.pax = new Map();
    this.longPath = undefined;
    this.skip = 512 * Math.ceil((Number.isFinite(size) && size > 0 ? size : 0) / 512);
    this.collect = null;
  }

  private finishMeta(): void {
    const meta = this.collect!;
    this.collect = null;
    const body = Buffer.concat(meta.chunks);
    if (meta.type === 'ExtendedHeader' || meta.type === 'OldExtendedHeader') {
      for (const [k, v] of parsePaxRecords(body)) this.pax.set(k, v);
    } else if (meta.type === 'NextFileHasLongPath' || meta.type === 'OldGnuLongPath') {
      this.longPath = body.toString('utf8').replace(/\0.*/, '');
    }
    // Global headers and long link names carry nothing the raw view needs (node-tar reads them).
  }
}

/** PAX records "<len> <key>=<value>\n", values kept as bytes (binary xattrs). Malformed records end the list. */
export function parsePaxRecords(body: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0) break;
    const space = body.indexOf(0x20, pos);
    if (space < 0) break;
    const len = Number(body.subarray(pos, space).toString('latin1'));
    if (!Number.isInteger(len) || len <= space - pos + 1 || pos + len > body.length || body[pos + len - 1] !== 0x0a) break;
    const record = body.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq > 0) out.set(record.subarray(0, eq).toString('utf8'), Buffer.from(record.subarray(eq + 1)));
    pos += len;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writing: one entry at a time into the temp directory. The per-entry calls are synchronous on purpose: each is
// a few microseconds on a local disk, while a libuv thread-pool round trip per call made unpacking 3× slower
// than GNU tar; the event loop still runs between chunks and entries (every body chunk is awaited).

function refuse(entry: string, why: string): AuraeError {
  return new AuraeError('INVALID_ARGUMENT', `layer entry "${entry}": ${why}: the layer is refused`);
}

interface DirMeta {
  mode: number;
  atime: Date;
  mtime: Date;
}

class SnapshotWriter {
  /** Relative paths known to be real directories we created or checked (never symlinks). */
  private readonly dirs = new Set<string>(['']);
  /** Every relative path this layer created so far: the temp dir starts empty, so nothing else can be there. */
  private readonly present = new Set<string>(['']);
  private readonly dirMeta = new Map<string, DirMeta>();
  private sys: UnpackSyscalls | undefined;

  constructor(
    private readonly root: string,
    private readonly asRoot: boolean,
    private readonly loadSys: () => UnpackSyscalls,
  ) {}

  syscalls(): UnpackSyscalls {
    this.sys ??= this.loadSys();
    return this.sys;
  }

  private abs(parts: string[]): string {
    return parts.length ? path.join(this.root, ...parts) : this.root;
  }

  async apply(entry: ReadEntry, raw: RawEntry): Promise<void> {
    const name = entry.path;
    const checked = entryComponents(name);
    if ('reason' in checked) throw refuse(name, checked.reason);
    const parts = checked.parts;
    const base = parts.at(-1) ?? '';
    if (base.startsWith(WHITEOUT_PREFIX)) return this.whiteout(entry, parts);

    for (const key of raw.xattrs.keys()) {
      if (key.startsWith('trusted.overlay.') || key.startsWith('user.overlay.')) {
        throw refuse(name, `xattr ${key} is overlay metadata, which a layer may not carry (only .wh. whiteouts)`);
      }
    }
    switch (entry.type) {
      case 'Directory':
      case 'GNUDumpDir':
        return this.directory(entry, parts, raw);
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        return this.file(entry, parts, raw);
      case 'SymbolicLink':
        return this.symlink(entry, parts, raw);
      case 'Link':
        return this.hardLink(entry, parts);
      case 'CharacterDevice':
      case 'BlockDevice':
      case 'FIFO':
        return this.device(entry, parts, raw);
      default:
        throw refuse(name, `tar entry type ${entry.type} is not supported`);
    }
  }

  /** Create (mode 0755) or check every parent of `parts`; refuses a parent that is a symlink or not a directory. */
  private async parents(name: string, parts: string[], create = true): Promise<void> {
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (this.dirs.has(rel)) continue;
      const abs = path.join(this.root, rel);
      const st = this.present.has(rel) ? fs.lstatSync(abs) : null;
      if (st === null) {
        if (!create) throw refuse(name, `its parent "${rel}" is not in this layer`);
        fs.mkdirSync(abs, { mode: 0o755 });
        this.present.add(rel);
        fs.chmodSync(abs, 0o755);
      } else if (st.isSymbolicLink()) {
        throw refuse(name, `its parent "${rel}" is a symlink, which could lead outside the snapshot`);
      } else if (!st.isDirectory()) {
        throw refuse(name, `its parent "${rel}" is not a directory`);
      }
      this.dirs.add(rel);
    }
  }

  /** Remove what an earlier entry left at `parts` (a directory stays when `keepDir`); true when a dir was kept. */
  private async clear(parts: string[], keepDir: boolean): Promise<boolean> {
    if (parts.length === 0) return true;
    const rel = parts.join('/');
    if (!this.present.has(rel)) return false;
    const abs = this.abs(parts);
    const isDir = fs.lstatSync(abs).isDirectory();
    if (isDir && keepDir) return true;
    await fsp.rm(abs, { recursive: true, force: true });
    this.present.delete(rel);
    if (isDir) {
      const under = (p: string) => p === rel || p.startsWith(`${rel}/`);
      for (const p of this.present) if (under(p)) this.present.delete(p);
      for (const dir of this.dirs) if (under(dir)) this.dirs.delete(dir);
      for (const dir of this.dirMeta.keys()) if (under(dir)) this.dirMeta.delete(dir);
    }
    return false;
  }

  private async owner(entry: ReadEntry, abs: string): Promise<void> {
    if (!this.asRoot) return;
    fs.lchownSync(abs, entry.uid ?? 0, entry.gid ?? 0);
  }

  private xattrs(name: string, abs: string, raw: RawEntry): void {
    if (raw.xattrs.size === 0) return;
    const sys = this.syscalls();
    for (const [key, value] of raw.xattrs) {
      try {
        sys.lsetxattr(abs, key, value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        const hint =
          code === 'EPERM' || code === 'EACCES'
            ? this.asRoot
              ? 'the kernel refused it'
              : 'setting it needs root: run auraed as root'
            : code === 'EOPNOTSUPP' || code === 'ENOTSUP'
              ? 'the file system under the image store does not support this xattr namespace'
              : (err as Error).message;
        throw new AuraeError('FAILED_PRECONDITION', `layer entry "${name}": setting xattr ${key} failed (${code}): ${hint}: the layer is refused`);
      }
    }
  }

  private times(entry: ReadEntry): { atime: Date; mtime: Date } {
    const mtime = entry.mtime ?? new Date(0);
    return { atime: entry.atime ?? mtime, mtime };
  }

  private async directory(entry: ReadEntry, parts: string[], raw: RawEntry): Promise<void> {
    entry.resume();
    await this.parents(entry.path, parts);
    const abs = this.abs(parts);
    const kept = await this.clear(parts, true);
    if (!kept) fs.mkdirSync(abs, { mode: 0o700 });
    this.present.add(parts.join('/'));
    this.dirs.add(parts.join('/'));
    await this.owner(entry, abs);
    this.xattrs(entry.path, abs, raw);
    // Mode and times last (deepest first): a read-only directory must still take its children, and creating
    // them changes the directory's mtime.
    this.dirMeta.set(parts.join('/'), { mode: (entry.mode ?? 0o755) & 0o7777, ...this.times(entry) });
  }

  private async file(entry: ReadEntry, parts: string[], raw: RawEntry): Promise<void> {
    if (parts.length === 0) throw refuse(entry.path, 'the snapshot root must be a directory');
    await this.parents(entry.path, parts);
    await this.clear(parts, false);
    const abs = this.abs(parts);
    const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fsConstants;
    const fd = fs.openSync(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    this.present.add(parts.join('/'));
    try {
      for await (const chunk of entry as AsyncIterable<Buffer>) writeAll(fd, chunk);
      if (this.asRoot) fs.fchownSync(fd, entry.uid ?? 0, entry.gid ?? 0);
      fs.fchmodSync(fd, (entry.mode ?? 0o644) & 0o7777);
    } finally {
      fs.closeSync(fd);
    }
    // After chown (which drops file capabilities) and before the times.
    this.xattrs(entry.path, abs, raw);
    const { atime, mtime } = this.times(entry);
    fs.utimesSync(abs, atime, mtime);
  }

  private async symlink(entry: ReadEntry, parts: string[], raw: RawEntry): Promise<void> {
    entry.resume();
    if (parts.length === 0) throw refuse(entry.path, 'the snapshot root must be a directory');
    if (!entry.linkpath) throw refuse(entry.path, 'a symlink without a target');
    await this.parents(entry.path, parts);
    await this.clear(parts, false);
    const abs = this.abs(parts);
    fs.symlinkSync(entry.linkpath, abs); // stored as it is; never followed by us
    this.present.add(parts.join('/'));
    await this.owner(entry, abs);
    this.xattrs(entry.path, abs, raw);
    const { atime, mtime } = this.times(entry);
    fs.lutimesSync(abs, atime, mtime);
  }

  private async hardLink(entry: ReadEntry, parts: string[]): Promise<void> {
    entry.resume();
    const name = entry.path;
    if (parts.length === 0) throw refuse(name, 'the snapshot root must be a directory');
    const target = entryComponents(entry.linkpath ?? '');
    if ('reason' in target) throw refuse(name, `its hard link target "${entry.linkpath}": ${target.reason}`);
    if (target.parts.length === 0) throw refuse(name, 'a hard link to the snapshot root');
    if ((target.parts.at(-1) ?? '').startsWith(WHITEOUT_PREFIX)) throw refuse(name, `a hard link to the whiteout "${entry.linkpath}"`);
    await this.parents(`${name} (hard link target ${entry.linkpath})`, target.parts, false);
    const targetAbs = this.abs(target.parts);
    const st = lstatOrNull(targetAbs);
    if (st === null) throw refuse(name, `its hard link target "${entry.linkpath}" is not in this layer (it must come earlier in the same layer)`);
    if (st.isDirectory()) throw refuse(name, `its hard link target "${entry.linkpath}" is a directory`);
    await this.parents(name, parts);
    const abs = this.abs(parts);
    if (abs === targetAbs) return;
    await this.clear(parts, false);
    fs.linkSync(targetAbs, abs); // link(2) does not follow a symlink target on Linux
    this.present.add(parts.join('/'));
  }

  private async device(entry: ReadEntry, parts: string[], raw: RawEntry): Promise<void> {
    entry.resume();
    const name = entry.path;
    if (parts.length === 0) throw refuse(name, 'the snapshot root must be a directory');
    const type = entry.type === 'CharacterDevice' ? FILE_TYPE_BITS.S_IFCHR : entry.type === 'BlockDevice' ? FILE_TYPE_BITS.S_IFBLK : FILE_TYPE_BITS.S_IFIFO;
    if (type !== FILE_TYPE_BITS.S_IFIFO && !this.asRoot) {
      throw new AuraeError(
        'FAILED_PRECONDITION',
        `layer entry "${name}": a ${entry.type === 'CharacterDevice' ? 'character' : 'block'} device node can only be created as root (CAP_MKNOD): run auraed as root, or use an image without device nodes`,
      );
    }
    await this.parents(name, parts);
    await this.clear(parts, false);
    const abs = this.abs(parts);
    const mode = (entry.mode ?? 0o644) & 0o7777;
    this.syscalls().mknod(abs, type | mode, entry.header.devmaj ?? 0, entry.header.devmin ?? 0);
    this.present.add(parts.join('/'));
    await this.owner(entry, abs);
    fs.chmodSync(abs, mode); // mknod's mode passes through the umask
    this.xattrs(name, abs, raw);
    const { atime, mtime } = this.times(entry);
    fs.lutimesSync(abs, atime, mtime);
  }

  /** `.wh..wh..opq` → opaque xattr on the directory; `.wh.NAME` → a 0/0 character device NAME (overlayfs). */
  private async whiteout(entry: ReadEntry, parts: string[]): Promise<void> {
    entry.resume();
    const name = entry.path;
    const base = parts.at(-1)!;
    const dirParts = parts.slice(0, -1);
    if (base === OPAQUE_WHITEOUT) {
      await this.parents(name, parts);
      const dir = this.abs(dirParts);
      this.syscallOrRefuse(name, (sys) => sys.lsetxattr(dir, OVERLAY_OPAQUE_XATTR, Buffer.from('y')), `setting ${OVERLAY_OPAQUE_XATTR} on its directory`);
      return;
    }
    if (base.startsWith(WHITEOUT_META_PREFIX)) return; // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content
    const target = base.slice(WHITEOUT_PREFIX.length);
    if (target === '' || target === '.' || target === '..') throw refuse(name, `"${base}" is not a valid whiteout`);
    const targetParts = [...dirParts, target];
    await this.parents(name, targetParts);
    await this.clear(targetParts, false);
    const abs = this.abs(targetParts);
    this.syscallOrRefuse(name, (sys) => sys.mknod(abs, FILE_TYPE_BITS.S_IFCHR, 0, 0), 'creating its whiteout (a 0/0 character device)');
    this.present.add(targetParts.join('/'));
    await this.owner(entry, abs);
  }

  private syscallOrRefuse(name: string, fn: (sys: UnpackSyscalls) => void, what: string): void {
    const sys = this.syscalls();
    try {
      fn(sys);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      const hint = code === 'EPERM' || code === 'EACCES' ? (this.asRoot ? 'the kernel refused it' : 'it needs root: run auraed as root') : (err as Error).message;
      throw new AuraeError('FAILED_PRECONDITION', `layer entry "${name}": ${what} failed (${code}): ${hint}: the layer is refused`);
    }
  }

  /** Directory modes and times, deepest first; the snapshot root gets 0755 unless the layer says otherwise. */
  async finish(): Promise<void> {
    if (!this.dirMeta.has('')) {
      fs.chmodSync(this.root, 0o755);
    }
    const dirs = [...this.dirMeta.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, meta] of dirs) {
      const abs = rel === '' ? this.root : path.join(this.root, rel);
      fs.chmodSync(abs, meta.mode);
      fs.utimesSync(abs, meta.atime, meta.mtime);
    }
  }
}

function depth(rel: string): number {
  return rel === '' ? 0 : rel.split('/').length;
}

function lstatOrNull(abs: string): fs.Stats | null {
  try {
    return fs.lstatSync(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function writeAll(fd: number, chunk: Buffer): void {
  for (let off = 0; off < chunk.length; ) off += fs.writeSync(fd, chunk, off, chunk.length - off);
}
