// The blob store with fake sources: streaming verification, a cut stream resumed with Range, a registry ignoring
// Range, a wrong digest and an oversized body refused with nothing stored, one download for racing callers.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log';
import { BlobStore, type BlobSource } from './blob-store';
import { failure } from './testing';

const content = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 251));
const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
const desc = { digest, size: content.length };

/** Serves `bytes` from the requested offset (unless ignoreRange), optionally failing after `cutAfter` bytes. */
function source(bytes: Buffer, opts: { cutAfter?: number[]; ignoreRange?: boolean } = {}) {
  const calls: number[] = [];
  const cuts = [...(opts.cutAfter ?? [])];
  const fn: BlobSource = async (offset) => {
    calls.push(offset);
    const start = opts.ignoreRange ? 0 : offset;
    const cut = cuts.shift();
    return {
      start,
      body: (async function* () {
        let pos = start;
        while (pos < bytes.length) {
          const end = Math.min(pos + 65536, bytes.length, cut !== undefined ? start + cut : Infinity);
          if (end <= pos) throw new Error('socket hang up');
          yield bytes.subarray(pos, end);
          pos = end;
          await new Promise((r) => setImmediate(r));
        }
      })(),
    };
  };
  return { fn, calls };
}

let dir: string;
let store: BlobStore;
beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'blob-store-'));
  store = new BlobStore(dir, silentLogger);
  await store.init();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));


describe('BlobStore', () => {
  it('stores a verified blob under blobs/sha256/<hex>, reports progress, and knows it next time', async () => {
    const src = source(content);
    const progress: number[] = [];
    expect(await store.ensure(desc, src.fn, { onProgress: (done) => progress.push(done) })).toBe('fetched');
    expect(readFileSync(path.join(dir, 'blobs/sha256', digest.slice(7)))).toEqual(content);
    expect(progress.at(-1)).toBe(content.length);
    expect(readdirSync(path.join(dir, 'ingest'))).toEqual([]);
    expect(await store.ensure(desc, src.fn)).toBe('exists');
    expect(src.calls).toEqual([0]);
  });

  it('resumes a cut stream with a Range request from what the partial holds', async () => {
    const src = source(content, { cutAfter: [100_000, 50_000] });
    expect(await store.ensure(desc, src.fn)).toBe('fetched');
    expect(src.calls).toEqual([0, 100_000, 150_000]);
    expect(readFileSync(store.path(digest))).toEqual(content);
  });

  it('resumes a partial left by an earlier run (power cut), and refetches when the registry ignores Range', async () => {
    writeFileSync(path.join(dir, 'ingest', `${digest.slice(7)}.partial`), content.subarray(0, 123_456));
    const src = source(content);
    expect(await store.ensure(desc, src.fn)).toBe('fetched');
    expect(src.calls).toEqual([123_456]);

    const other = new BlobStore(mkdtempSync(path.join(os.tmpdir(), 'blob-store-')), silentLogger);
    await other.init();
    writeFileSync(path.join(other.ingestDir, `${digest.slice(7)}.partial`), content.subarray(0, 1000));
    const noRange = source(content, { ignoreRange: true });
    expect(await other.ensure(desc, noRange.fn)).toBe('fetched');
    expect(readFileSync(other.path(digest))).toEqual(content);
    rmSync(other.dir, { recursive: true, force: true });
  });

  it('a garbage partial (power cut mid-write) gets one clean refetch before the digest is blamed', async () => {
    const junk = Buffer.from(content.subarray(0, 5000));
    junk[10] = junk[10]! ^ 0xff;
    writeFileSync(path.join(dir, 'ingest', `${digest.slice(7)}.partial`), junk);
    const src = source(content);
    expect(await store.ensure(desc, src.fn)).toBe('fetched');
    expect(src.calls).toEqual([5000, 0]);
  });

  it('a partial already holding the whole blob (cut before its commit) is verified and committed without a request', async () => {
    writeFileSync(path.join(dir, 'ingest', `${digest.slice(7)}.partial`), content);
    const src = source(content);
    expect(await store.ensure(desc, src.fn)).toBe('fetched');
    expect(src.calls).toEqual([]);
    expect(readFileSync(store.path(digest))).toEqual(content);
    expect(readdirSync(store.ingestDir)).toEqual([]);

    // The same size but garbage at the end (a power cut mid-write): one clean fetch from the start.
    const other = new BlobStore(mkdtempSync(path.join(os.tmpdir(), 'blob-store-')), silentLogger);
    await other.init();
    const junk = Buffer.from(content);
    junk[junk.length - 1] = junk[junk.length - 1]! ^ 0xff;
    writeFileSync(path.join(other.ingestDir, `${digest.slice(7)}.partial`), junk);
    const again = source(content);
    expect(await other.ensure(desc, again.fn)).toBe('fetched');
    expect(again.calls).toEqual([0]);
    expect(readFileSync(other.path(digest))).toEqual(content);
    rmSync(other.dir, { recursive: true, force: true });
  });

  it('refuses a wrong digest with FAILED_PRECONDITION and stores nothing', async () => {
    const bad = Buffer.from(content);
    bad[1234] = bad[1234]! ^ 1;
    const err = await failure(store.ensure(desc, source(bad).fn));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/served content whose digest is sha256:[0-9a-f]{64}.*nothing stored/);
    expect(existsSync(store.path(digest))).toBe(false);
    expect(readdirSync(store.ingestDir)).toEqual([]);
  });

  it('refuses a body longer than the declared size as soon as it overruns', async () => {
    const err = await failure(store.ensure({ digest, size: 1000 }, source(content).fn));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/more than the 1000 bytes/);
    expect(readdirSync(store.ingestDir)).toEqual([]);
  });

  it('gives up after repeated cuts with UNAVAILABLE, keeping the partial for the next pull', async () => {
    const src = source(content, { cutAfter: [1000, 1000, 1000, 1000] });
    const err = await failure(store.ensure(desc, src.fn));
    expect(err.code).toBe('UNAVAILABLE');
    expect(readFileSync(path.join(store.ingestDir, `${digest.slice(7)}.partial`)).length).toBe(4000);
    expect(await store.ensure(desc, source(content).fn)).toBe('fetched');
  });

  it('downloads a digest once when two pulls race, both getting progress', async () => {
    const src = source(content);
    const a: number[] = [];
    const b: number[] = [];
    const [ra, rb] = await Promise.all([store.ensure(desc, src.fn, { onProgress: (d) => a.push(d) }), store.ensure(desc, src.fn, { onProgress: (d) => b.push(d) })]);
    expect([ra, rb]).toEqual(['fetched', 'fetched']);
    expect(src.calls).toEqual([0]);
    expect(a.at(-1)).toBe(content.length);
    expect(b.at(-1)).toBe(content.length);
  });

  it('one caller aborting does not abort the download another caller waits for', async () => {
    const src = source(content);
    const abort = new AbortController();
    const first = store.ensure(desc, src.fn, { signal: abort.signal });
    const second = store.ensure(desc, src.fn);
    abort.abort();
    await expect(first).rejects.toThrow();
    expect(await second).toBe('fetched');
    expect(src.calls).toEqual([0]);
  });

  it('put() checks small content against its digest', async () => {
    const small = Buffer.from('{"a":1}');
    const d = `sha256:${createHash('sha256').update(small).digest('hex')}`;
    await store.put({ digest: d, size: small.length }, small);
    expect((await store.read(d)).toString()).toBe('{"a":1}');
    expect((await failure(store.put({ digest: `sha256:${'0'.repeat(64)}`, size: 7 }, small))).code).toBe('FAILED_PRECONDITION');
    expect((await store.list()).map((b) => b.digest)).toEqual([d]);
  });
});
