// client.upgrade: the node's boot image (aurae.upgrade.v0.UpgradeService): its A/B boot entries, uploading a
// signed release into the inactive slot (resumable: a cut upload continues where the node's kept bytes end), and
// rolling back to the previous entry.
//
//   const release = releaseFromDir('out/image/release');       // or releaseFromUrl('https://…/release/')
//   const { entry } = await client.upgrade.upload(release, { onProgress: (p) => … });
//   await client.node.reboot({ reason: `upgrade to ${entry.version}` });
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type ClientDuplexStream, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import {
  type BootEntry as ProtoBootEntry,
  UpgradeServiceClient,
  type UpgradeServiceRollbackResponse,
  type UpgradeServiceStatusResponse,
  type UpgradeServiceUploadRequest,
  type UpgradeServiceUploadResponse,
} from '../../supervisor/gen/aurae/upgrade/v0/upgrade';
import { decodeSignatureText, fileRanges, parseReleaseManifest, RELEASE_MANIFEST_FILE, RELEASE_SIGNATURE_FILE, type ReleaseManifest, releaseSize } from '../../supervisor/upgrade/release';
import type { BootEntryView, SigningCertView } from '../../supervisor/upgrade/upgrade-core';
import { CHUNK_BYTES, type KeptUpload } from '../../supervisor/upgrade/upload-plan';
import type { SdkCallContext } from './call-context';
import { AuraeApiError, toApiError } from './errors';
import { fromWireInt } from './int64';

const SERVICE = 'aurae.upgrade.v0.UpgradeService';

/** A boot entry: the server's view itself (a type-only import: the SDK loads nothing of the core). */
export type BootEntryInfo = BootEntryView;

export interface UpgradeStatusInfo {
  /** false: the node did not boot from a slotted ESP (`reason` says why); Upload and Rollback are refused. */
  slotted: boolean;
  reason: string;
  entries: BootEntryInfo[];
  running: string;
  bootsNext: string;
  lastRollback: { from: string; to: string; reason: string; at: number; by: string } | null;
  /** An unfinished upload the node keeps (the next upload of the same release continues it). */
  partial: KeptUpload | null;
  signingCerts: SigningCertView[];
  /** Why the pinned certificates cannot be used ("" when they can): uploads are refused until it is fixed. */
  signingProblem: string;
  /** init's note on this boot's entry, e.g. why it is not blessed yet ("" when none). */
  bootNote: string;
  /** An upload is running on the node now. */
  uploading: boolean;
}

/** A release to upload: the manifest and signature, and its files' bytes from any offset. */
export interface ReleaseSource {
  /** Where it comes from (for messages). */
  readonly origin: string;
  readonly manifestBytes: Buffer;
  readonly manifest: ReleaseManifest;
  readonly signature: Buffer;
  /** The files concatenated in manifest order, from byte `offset` on. */
  open(offset: number): AsyncIterable<Uint8Array>;
}

export interface UploadProgressInfo {
  received: number;
  total: number;
}

export interface UploadOptions {
  /** Once the node checked the signature: where it continues (bytes it kept from a cut upload) and who signed. */
  onAccepted?(accepted: { resumeOffset: number; total: number; version: string; signer: string }): void;
  onProgress?(progress: UploadProgressInfo): void;
  /** Cancel (the node keeps what it received, for the next upload to continue). */
  signal?: AbortSignal;
  /**
   * Uploads tried in all when the connection breaks (UNAVAILABLE, the stream was cut, or the node ended an idle one:
   * DEADLINE_EXCEEDED after upgrade.uploadIdleMs); each one resumes. Default 1.
   */
  attempts?: number;
}

export interface UploadResult {
  entry: BootEntryInfo;
  removed: string[];
  /** Bytes sent by this call (less than the total when it resumed). */
  sent: number;
}

export interface UpgradeApi {
  status(): Promise<UpgradeStatusInfo>;
  /** Upload `release` into the inactive slot; resolves once the new entry is on the ESP (it boots next). */
  upload(release: ReleaseSource, options?: UploadOptions): Promise<UploadResult>;
  /** Make the previous entry boot next (effective at the next reboot). */
  rollback(): Promise<{ bootsNext: BootEntryInfo; from: string }>;
}

export function fromProtoEntry(e: ProtoBootEntry): BootEntryInfo {
  return {
    id: e.id,
    version: e.version,
    generation: e.generation,
    file: e.file,
    triesLeft: e.counted ? e.triesLeft : null,
    triesDone: e.counted ? e.triesDone : null,
    running: e.running,
    bootsNext: e.bootsNext,
  };
}

export function fromProtoStatus(r: UpgradeServiceStatusResponse): UpgradeStatusInfo {
  const rb = r.lastRollback;
  const p = r.partial;
  return {
    slotted: r.slotted,
    reason: r.reason,
    entries: r.entries.map(fromProtoEntry),
    running: r.running,
    bootsNext: r.bootsNext,
    lastRollback: rb ? { from: rb.from, to: rb.to, reason: rb.reason, at: fromWireInt(rb.at), by: rb.by } : null,
    partial: p ? { version: p.version, manifestSha256: p.manifestSha256, kept: fromWireInt(p.kept), total: fromWireInt(p.total) } : null,
    signingCerts: r.signingCerts.map((c) => ({ subject: c.subject, fingerprint: c.fingerprint, notAfter: fromWireInt(c.notAfter), file: c.file })),
    signingProblem: r.signingProblem,
    bootNote: r.bootNote,
    uploading: r.uploading,
  };
}

/** Cut a byte stream into pieces of at most `size` bytes. */
async function* rechunk(source: AsyncIterable<Uint8Array>, size: number): AsyncIterable<Buffer> {
  for await (const piece of source) {
    const buf = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    for (let at = 0; at < buf.length; at += size) yield buf.subarray(at, Math.min(at + size, buf.length));
  }
}

/** A release folder (the build's out/image/release): the manifest, its .sig and the files it lists. */
export function releaseFromDir(dir: string): ReleaseSource {
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name));
    } catch (err) {
      throw new Error(`release ${dir}: cannot read ${name} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): give the release folder of a build (out/image/release)`);
    }
  };
  const manifestBytes = read(RELEASE_MANIFEST_FILE);
  const manifest = parseReleaseManifest(manifestBytes);
  const signature = decodeSignatureText(read(RELEASE_SIGNATURE_FILE).toString('utf8'));
  for (const f of manifest.files) {
    let size: number;
    try {
      size = statSync(join(dir, f.name)).size;
    } catch {
      throw new Error(`release ${dir}: ${f.name} (listed in ${RELEASE_MANIFEST_FILE}) is missing`);
    }
    if (size !== f.size) throw new Error(`release ${dir}: ${f.name} is ${size} bytes, the manifest says ${f.size}: the folder does not match its manifest (rebuild it)`);
  }
  return {
    origin: dir,
    manifestBytes,
    manifest,
    signature,
    async *open(offset) {
      for (const { file, start, end } of fileRanges(manifest)) {
        if (end <= offset) continue;
        yield* createReadStream(join(dir, file.name), { start: Math.max(0, offset - start), highWaterMark: CHUNK_BYTES }) as AsyncIterable<Buffer>;
      }
    },
  };
}

/** What releaseFromUrl needs of HTTP: GET a URL (with an optional byte offset), status and body. */
/** An HTTP answer as the release reader uses it: `contentRange` is the header's value; `close` drops the body. */
export interface HttpAnswer {
  status: number;
  contentRange?: string;
  body: AsyncIterable<Uint8Array>;
  close(): void;
}
export type HttpGet = (url: string, fromByte?: number) => Promise<HttpAnswer>;

/** undici's request (loaded lazily: local uploads never need it). */
async function undiciGet(url: string, fromByte?: number): Promise<HttpAnswer> {
  const { request } = await import('undici');
  // No redirects followed: give the release folder's final URL.
  const r = await request(url, { method: 'GET', headers: fromByte ? { range: `bytes=${fromByte}-` } : {} });
  const range = r.headers['content-range'];
  return { status: r.statusCode, ...(typeof range === 'string' ? { contentRange: range } : {}), body: r.body, close: () => r.body.destroy() };
}

async function bodyBytes(body: AsyncIterable<Uint8Array>, max: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const p of body) {
    n += p.length;
    if (n > max) throw new Error(`${what}: larger than ${max} bytes: is this a release folder?`);
    parts.push(Buffer.from(p));
  }
  return Buffer.concat(parts);
}

/**
 * A release served over HTTP(S): `${base}/aurae-release.json`, `.sig` and each listed file. A resumed upload asks
 * for the rest of a file with a Range request (a server that ignores it answers 200: the skipped bytes are read and
 * dropped).
 */
export async function releaseFromUrl(base: string, get: HttpGet = undiciGet): Promise<ReleaseSource> {
  const root = base.endsWith('/') ? base : `${base}/`;
  const fetchSmall = async (name: string) => {
    const r = await get(new URL(name, root).toString());
    if (r.status !== 200) {
      for await (const _ of r.body) void _; // drain, so the connection is reused or closed
      throw new Error(`release ${root}: GET ${name} answered HTTP ${r.status}: give the URL of a release folder (it serves ${RELEASE_MANIFEST_FILE})`);
    }
    return bodyBytes(r.body, 64 * 1024, `release ${root}${name}`);
  };
  const manifestBytes = await fetchSmall(RELEASE_MANIFEST_FILE);
  const manifest = parseReleaseManifest(manifestBytes);
  const signature = decodeSignatureText((await fetchSmall(RELEASE_SIGNATURE_FILE)).toString('utf8'));
  return {
    origin: root,
    manifestBytes,
    manifest,
    signature,
    async *open(offset) {
      for (const { file, start, end } of fileRanges(manifest)) {
        if (end <= offset) continue;
        const from = Math.max(0, offset - start);
        const url = new URL(file.name, root).toString();
        const r = await get(url, from);
        let skip = 0;
        if (r.status === 200) skip = from;
        else if (r.status !== 206 || !rangeStartsAt(r.contentRange, from)) {
          r.close();
          throw new Error(`release ${root}: GET ${file.name} from byte ${from} answered HTTP ${r.status}${r.status === 206 ? ` with Content-Range ${r.contentRange ?? '(none)'}` : ''}`);
        }
        // Exactly the file's bytes: a longer or shorter body would shift every file after it.
        let left = end - start - from;
        for await (const piece of r.body) {
          if (skip >= piece.length) {
            skip -= piece.length;
            continue;
          }
          const data = skip > 0 ? piece.subarray(skip) : piece;
          skip = 0;
          if (data.length > left) {
            r.close();
            throw new Error(`release ${root}: ${file.name} is longer than the manifest's ${file.size} bytes`);
          }
          left -= data.length;
          yield data;
        }
        if (left !== 0) throw new Error(`release ${root}: ${file.name} ended ${left} bytes short of the manifest's ${file.size}`);
      }
    },
  };
}

/** A Content-Range header (`bytes FROM-TO/SIZE`) that starts at `from`. Pure. */
export function rangeStartsAt(header: string | string[] | undefined, from: number): boolean {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(typeof header === 'string' ? header.trim() : '');
  return m !== null && Number(m[1]) === from;
}

/**
 * Whether a failed upload may be tried again (and then resumes): the connection broke, the stream was cut, the node
 * ended it as idle (DEADLINE_EXCEEDED: nothing arrived for upgrade.uploadIdleMs, e.g. a stalled HTTP source), or the
 * node had not yet seen the end of the previous attempt ("… is in progress").
 */
function resumable(err: unknown): boolean {
  if (!(err instanceof AuraeApiError)) return false;
  return (
    err.code === 'UNAVAILABLE' ||
    (err.code === 'FAILED_PRECONDITION' && /stream ended after| is in progress/.test(err.details)) ||
    err.code === 'DEADLINE_EXCEEDED'
  );
}

export function createUpgradeApi(ctx: SdkCallContext): UpgradeApi {
  const client = new UpgradeServiceClient(ctx.address, ctx.credentials, ctx.options);
  const name = (method: string) => `${SERVICE}/${method}`;

  const uploadOnce = (release: ReleaseSource, options: UploadOptions): Promise<UploadResult> =>
    new Promise<UploadResult>((resolve, reject) => {
      const method = name('Upload');
      if (options.signal?.aborted) return reject(new Error(`${method}: aborted`));
      const call: ClientDuplexStream<UpgradeServiceUploadRequest, UpgradeServiceUploadResponse> = client.upload(new Metadata());
      const total = releaseSize(release.manifest);
      let sent = 0;
      let result: UploadResult | undefined;
      let finished = false;
      const onAbort = () => call.cancel();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      const finish = (err: unknown) => {
        if (finished) return;
        finished = true;
        options.signal?.removeEventListener('abort', onAbort);
        if (err) {
          if ((err as Partial<ServiceError>).code === status.CANCELLED && options.signal?.aborted) return reject(new Error(`${method}: aborted`));
          return reject(err instanceof Error && !(typeof (err as Partial<ServiceError>).code === 'number') ? err : toApiError(err, method, ctx.address));
        }
        if (!result) return reject(new Error(`${method}: the node ended the upload without saying it was done`));
        resolve(result);
      };
      const pump = async (offset: number) => {
        for await (const chunk of rechunk(release.open(offset), CHUNK_BYTES)) {
          if (finished) return;
          const ok = call.write({ chunk: { offset: BigInt(offset + sent), data: chunk } });
          sent += chunk.length;
          // Resumed by drain, or by the call's end (an error or a cancel never drains).
          if (!ok && !finished) await new Promise<void>((r) => {
            const go = () => {
              call.off('drain', go);
              call.off('close', go);
              call.off('error', go);
              r();
            };
            call.on('drain', go);
            call.on('close', go);
            call.on('error', go);
          });
        }
        if (offset + sent !== total) throw new Error(`release ${release.origin}: its files gave ${offset + sent} bytes, the manifest says ${total}`);
        call.end();
      };
      call.on('data', (m: UpgradeServiceUploadResponse) => {
        if (m.accepted) {
          const a = { resumeOffset: fromWireInt(m.accepted.resumeOffset), total: fromWireInt(m.accepted.total), version: m.accepted.version, signer: m.accepted.signer };
          options.onAccepted?.(a);
          pump(a.resumeOffset).catch((err: unknown) => {
            call.cancel();
            finish(err);
          });
        }
        if (m.progress) options.onProgress?.({ received: fromWireInt(m.progress.received), total: fromWireInt(m.progress.total) });
        if (m.done?.entry) result = { entry: fromProtoEntry(m.done.entry), removed: m.done.removed, sent };
      });
      call.on('error', finish);
      call.on('end', () => finish(null));
      call.write({ header: { manifest: release.manifestBytes, signature: release.signature, totalSize: BigInt(total) } });
    });

  return {
    status: async () => fromProtoStatus(await ctx.unary<UpgradeServiceStatusResponse>(name('Status'), (done) => client.status({}, new Metadata(), ctx.callOptions(), done))),
    upload: async (release, options = {}) => {
      const attempts = Math.max(1, options.attempts ?? 1);
      for (let i = 1; ; i++) {
        try {
          return await uploadOnce(release, options);
        } catch (err) {
          if (i >= attempts || !resumable(err) || options.signal?.aborted) throw err;
          // A moment for the node to see the end of this attempt before the next one resumes it.
          await new Promise((r) => setTimeout(r, Math.min(500 * i, 5_000)));
        }
      }
    },
    rollback: async () => {
      const r = await ctx.unary<UpgradeServiceRollbackResponse>(name('Rollback'), (done) => client.rollback({}, new Metadata(), ctx.callOptions(), done));
      if (!r.bootsNext) throw new Error(`${name('Rollback')}: the node returned no entry`);
      return { bootsNext: fromProtoEntry(r.bootsNext), from: r.from };
    },
  };
}
