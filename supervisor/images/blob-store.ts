// The content-addressed blob store: `<dir>/blobs/sha256/<hex>`, each file complete and verified. Ingest streams a
// blob into `<dir>/ingest/<hex>.partial`, hashing and counting as it writes; a size overrun or a digest mismatch
// deletes the partial and fails (nothing stored); a cut stream keeps the partial, which the next attempt (this
// pull or a later one, after a power cut) resumes with a Range request. Complete blobs are fsynced and renamed in.
// One download per digest at a time: concurrent callers share it.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import { DIGEST } from './reference';

/** Fetch the blob from `offset`; `start` says where the body really begins (0 when Range was ignored). */
export type BlobSource = (offset: number, signal: AbortSignal) => Promise<{ start: number; body: AsyncIterable<Uint8Array> }>;

export interface BlobDescriptor {
  digest: string;
  size: number;
}

export interface EnsureOptions {
  /** Bytes stored so far and the total, throttled. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

const PROGRESS_BYTES = 1024 * 1024;
const PROGRESS_MS = 250;
/** Attempts per download (a cut stream is resumed from what the partial holds). */
const ATTEMPTS = 4;

interface Inflight {
  promise: Promise<'exists' | 'fetched'>;
  listeners: Set<(done: number, total: number) => void>;
  controller: AbortController;
  waiting: number;
}

class CutError extends Error {}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException('the operation was aborted', 'AbortError');
}

export class BlobStore {
  readonly blobsDir: string;
  readonly ingestDir: string;
  private readonly inflight = new Map<string, Inflight>();

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {
    this.blobsDir = path.join(dir, 'blobs', 'sha256');
    this.ingestDir = path.join(dir, 'ingest');
  }

  async init(): Promise<void> {
    await fs.mkdir(this.blobsDir, { recursive: true, mode: 0o700 });
    await fs.mkdir(this.ingestDir, { recursive: true, mode: 0o700 });
  }

  /** The file of a stored blob (it may not exist). */
  path(digest: string): string {
    return path.join(this.blobsDir, hexOf(digest));
  }

  /** A stored blob of this digest (and size, when given)? */
  async has(digest: string, size?: number): Promise<boolean> {
    try {
      const st = await fs.stat(this.path(digest));
      return st.isFile() && (size === undefined || st.size === size);
    } catch {
      return false;
    }
  }

  async read(digest: string): Promise<Buffer> {
    return fs.readFile(this.path(digest));
  }

  /** Store small content already in memory (manifests, configs), after checking its digest. */
  async put(desc: BlobDescriptor, bytes: Buffer): Promise<void> {
    if (await this.has(desc.digest, bytes.length)) return;
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== desc.digest) throw mismatch(desc.digest, actual);
    const partial = this.partialPath(desc.digest) + `.${process.pid}.${Date.now()}`;
    const fh = await fs.open(partial, 'w', 0o600);
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await this.commit(partial, desc.digest);
  }

  /** The digests of the stored blobs. */
  async list(): Promise<{ digest: string; size: number }[]> {
    const names = await fs.readdir(this.blobsDir).catch(() => [] as string[]);
    const out: { digest: string; size: number }[] = [];
    for (const name of names) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const st = await fs.stat(path.join(this.blobsDir, name)).catch(() => null);
      if (st?.isFile()) out.push({ digest: `sha256:${name}`, size: st.size });
    }
    return out;
  }

  /** Partial downloads not in flight (after a crash), with their sizes. */
  async strayIngests(): Promise<{ file: string; size: number }[]> {
    const names = await fs.readdir(this.ingestDir).catch(() => [] as string[]);
    const busy = new Set([...this.inflight.keys()].map(hexOf));
    const out: { file: string; size: number }[] = [];
    for (const name of names) {
      if (busy.has(name.slice(0, 64))) continue;
      const file = path.join(this.ingestDir, name);
      const st = await fs.stat(file).catch(() => null);
      if (st) out.push({ file, size: st.size });
    }
    return out;
  }

  /** Delete a stored blob; its size, or 0 when it was not there. */
  async remove(digest: string): Promise<number> {
    const file = this.path(digest);
    const st = await fs.stat(file).catch(() => null);
    if (!st) return 0;
    await fs.rm(file, { force: true });
    return st.size;
  }

  isBusy(digest: string): boolean {
    return this.inflight.has(digest);
  }

  /**
   * Make sure the blob is stored: 'exists' when it already was, 'fetched' after a verified download. Concurrent
   * calls for one digest share a single download (each caller still gets progress and may abort on its own).
   */
  ensure(desc: BlobDescriptor, source: BlobSource, opts: EnsureOptions = {}): Promise<'exists' | 'fetched'> {
    if (!DIGEST.test(desc.digest)) return Promise.reject(new AuraeError('INVALID_ARGUMENT', `blob digest ${JSON.stringify(desc.digest)}: expected sha256:<64 hex>`));
    let entry = this.inflight.get(desc.digest);
    if (!entry) {
      const controller = new AbortController();
      const listeners = new Set<(done: number, total: number) => void>();
      const promise = this.download(desc, source, controller.signal, (done, total) => listeners.forEach((l) => l(done, total))).finally(() => {
        if (this.inflight.get(desc.digest) === entry) this.inflight.delete(desc.digest);
      });
      entry = { promise, listeners, controller, waiting: 0 };
      this.inflight.set(desc.digest, entry);
    }
    return this.join(entry, opts);
  }

  private join(entry: Inflight, opts: EnsureOptions): Promise<'exists' | 'fetched'> {
    const { signal, onProgress } = opts;
    if (onProgress) entry.listeners.add(onProgress);
    entry.waiting++;
    const leave = () => {
      if (onProgress) entry.listeners.delete(onProgress);
      entry.waiting--;
    };
    if (!signal) return entry.promise.finally(leave);
    if (signal.aborted) {
      leave();
      if (entry.waiting === 0) entry.controller.abort(signal.reason);
      return Promise.reject(abortError(signal));
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        leave();
        // The download stops only when nobody waits for it any more; its partial stays for a resume.
        if (entry.waiting === 0) entry.controller.abort(signal.reason);
        reject(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      entry.promise.then(
        (v) => {
          signal.removeEventListener('abort', onAbort);
          leave();
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          leave();
          reject(e);
        },
      );
    });
  }

  private partialPath(digest: string): string {
    return path.join(this.ingestDir, `${hexOf(digest)}.partial`);
  }

  private async download(desc: BlobDescriptor, source: BlobSource, signal: AbortSignal, progress: (done: number, total: number) => void): Promise<'exists' | 'fetched'> {
    if (await this.has(desc.digest, desc.size)) return 'exists';
    const partial = this.partialPath(desc.digest);
    let resumedFromOld = false;
    let lastError: unknown;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      if (signal.aborted) throw abortError(signal);
      let have = await fs.stat(partial).then((s) => s.size, () => 0);
      if (have > desc.size) {
        await fs.rm(partial, { force: true });
        have = 0;
      }
      if (attempt === 1 && have > 0) resumedFromOld = true;
      try {
        await this.fetchInto(desc, partial, have, source, signal, progress);
        await this.commit(partial, desc.digest);
        return 'fetched';
      } catch (err) {
        lastError = err;
        if (signal.aborted) throw abortError(signal);
        if (err instanceof DigestMismatch) {
          await fs.rm(partial, { force: true });
          // A partial left by a power cut may end in garbage: one clean refetch before blaming the registry.
          if (resumedFromOld) {
            resumedFromOld = false;
            this.log.warn('resumed blob did not verify: refetching it from the start', { digest: desc.digest });
            continue;
          }
          throw err.error;
        }
        const retryable = err instanceof CutError || !(err instanceof AuraeError) || err.code === 'UNAVAILABLE';
        if (!retryable || attempt === ATTEMPTS) break;
        this.log.warn('blob download interrupted: resuming', { digest: desc.digest, attempt, error: (err as Error).message });
      }
    }
    if (lastError instanceof CutError) {
      throw new AuraeError('UNAVAILABLE', `blob ${desc.digest}: the download was cut ${ATTEMPTS} times (${lastError.message}): the partial download is kept; pull again to resume`);
    }
    throw lastError;
  }

  private async fetchInto(
    desc: BlobDescriptor,
    partial: string,
    have: number,
    source: BlobSource,
    signal: AbortSignal,
    progress: (done: number, total: number) => void,
  ): Promise<void> {
    const hash = createHash('sha256');
    if (have > 0) await hashFile(partial, hash, have);
    if (have === desc.size) {
      // Cut after the last byte was written but before the commit: nothing to fetch (a Range from the blob's end is
      // a 416 at the registry). A partial that does not verify is one a power cut left ending in garbage.
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== desc.digest) throw new DigestMismatch(mismatch(desc.digest, actual));
      progress(have, desc.size);
      return;
    }
    const { start, body } = await source(have, signal);
    if (start !== have && start !== 0) throw new AuraeError('UNAVAILABLE', `blob ${desc.digest}: the registry answered from byte ${start}, not ${have}`);
    let done = start;
    const fh = await fs.open(partial, start === 0 ? 'w' : 'r+', 0o600);
    let lastBytes = done;
    let lastTime = Date.now();
    try {
      // start 0 with a partial: the registry ignored Range, so the file and the hash start over.
      const h = start === 0 ? createHash('sha256') : hash;
      let position = start;
      progress(done, desc.size);
      try {
        for await (const chunk of body) {
          if (done + chunk.length > desc.size) {
            throw new DigestMismatch(new AuraeError('FAILED_PRECONDITION', `blob ${desc.digest}: the registry sent more than the ${desc.size} bytes the manifest declares: refusing it (nothing stored)`));
          }
          h.update(chunk);
          await fh.write(chunk, 0, chunk.length, position);
          position += chunk.length;
          done += chunk.length;
          if (done - lastBytes >= PROGRESS_BYTES || Date.now() - lastTime >= PROGRESS_MS) {
            lastBytes = done;
            lastTime = Date.now();
            progress(done, desc.size);
          }
        }
      } catch (err) {
        if (err instanceof DigestMismatch || signal.aborted) throw err;
        await fh.sync().catch(() => undefined);
        throw new CutError(`after ${done} of ${desc.size} bytes: ${(err as Error).message}`);
      }
      if (done < desc.size) {
        await fh.sync().catch(() => undefined);
        throw new CutError(`the stream ended after ${done} of ${desc.size} bytes`);
      }
      const actual = `sha256:${h.digest('hex')}`;
      if (actual !== desc.digest) throw new DigestMismatch(mismatch(desc.digest, actual));
      await fh.sync();
      progress(done, desc.size);
    } finally {
      await fh.close();
    }
  }

  /** Rename a complete, synced temp file into the store and make the rename durable. */
  private async commit(tmp: string, digest: string): Promise<void> {
    await fs.rename(tmp, this.path(digest));
    await fsyncDir(this.blobsDir);
    await fsyncDir(this.ingestDir).catch(() => undefined);
  }
}

class DigestMismatch extends Error {
  constructor(readonly error: AuraeError) {
    super(error.message);
  }
}

function mismatch(expected: string, actual: string): AuraeError {
  return new AuraeError('FAILED_PRECONDITION', `blob ${expected}: the registry served content whose digest is ${actual}: refusing it (nothing stored); the registry's copy is corrupt or tampered with`);
}

export function hexOf(digest: string): string {
  return digest.startsWith('sha256:') ? digest.slice(7) : digest;
}

async function hashFile(file: string, hash: Hash, bytes: number): Promise<void> {
  if (bytes === 0) return;
  for await (const chunk of createReadStream(file, { start: 0, end: bytes - 1 })) hash.update(chunk as Buffer);
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
