// aurae.upgrade.v0.UpgradeService: decode → validate → UpgradeCore → response. No logic beyond mapping and the
// Upload stream's plumbing (accepted → chunks → done).
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { AuraeError, checkInt64, toInt64 } from '../errors';
import {
  type BootEntry as ProtoBootEntry,
  type UpgradeServiceRollbackRequest,
  type UpgradeServiceRollbackResponse,
  type UpgradeServiceServer,
  type UpgradeServiceStatusRequest,
  type UpgradeServiceStatusResponse,
  type UpgradeServiceUploadRequest,
  type UpgradeServiceUploadResponse,
} from '../gen/aurae/upgrade/v0/upgrade';
import { type RpcContext, bidiStream, unary } from '../server';
import { invalid } from '../validation';
import { MAX_MANIFEST_BYTES, MAX_RELEASE_BYTES, parseReleaseManifest, type ReleaseManifest, ReleaseError, releaseSize } from './release';
import type { BootEntryView, UpgradeCore, UpgradeStatus, UploadSession } from './upgrade-core';
import { idleEnded, PROGRESS_EVERY_BYTES } from './upload-plan';

const SERVICE = 'aurae.upgrade.v0.UpgradeService';
/** Longest signature accepted (an RSA-8192 signature is 1024 bytes). */
export const MAX_SIGNATURE_BYTES = 2048;

/** Upload's first message, checked: the manifest parsed, its size matching the header's. */
export interface UploadHeaderInput {
  manifestBytes: Buffer;
  manifest: ReleaseManifest;
  signature: Buffer;
  total: number;
}

/** Check Upload's first request: a header (no chunk), a manifest that parses, a total that matches it. */
export function validateUploadHeader(request: UpgradeServiceUploadRequest): UploadHeaderInput {
  const header = request.header;
  if (!header) throw invalid('header', 'required in the first message: the release manifest, its signature and the total size');
  if (request.chunk) throw invalid('chunk', 'not allowed in the first message: send the header alone, then chunks from the offset the node accepts');
  if (header.manifest.length > MAX_MANIFEST_BYTES) throw invalid('header.manifest', `${header.manifest.length} bytes: at most ${MAX_MANIFEST_BYTES}`);
  if (header.signature.length > MAX_SIGNATURE_BYTES) throw invalid('header.signature', `${header.signature.length} bytes: at most ${MAX_SIGNATURE_BYTES} (the raw signature, not a file of them)`);
  const total = checkInt64('header.total_size', header.totalSize, 1, MAX_RELEASE_BYTES);
  let manifest: ReleaseManifest;
  try {
    manifest = parseReleaseManifest(header.manifest);
  } catch (err) {
    throw err instanceof ReleaseError ? new AuraeError(err.code, `header.${err.message}`) : err;
  }
  const size = releaseSize(manifest);
  if (size !== total) throw invalid('header.total_size', `${total}, but the manifest's files add up to ${size} bytes`);
  return { manifestBytes: Buffer.from(header.manifest), manifest, signature: Buffer.from(header.signature), total };
}

export function bootEntryToProto(e: BootEntryView): ProtoBootEntry {
  return {
    id: e.id,
    version: e.version,
    generation: e.generation,
    file: e.file,
    counted: e.triesLeft !== null,
    triesLeft: e.triesLeft ?? 0,
    triesDone: e.triesDone ?? 0,
    running: e.running,
    bootsNext: e.bootsNext,
  };
}

export function statusToProto(s: UpgradeStatus): UpgradeServiceStatusResponse {
  return {
    slotted: s.slotted,
    reason: s.reason ?? '',
    entries: s.entries.map(bootEntryToProto),
    running: s.running ?? '',
    bootsNext: s.bootsNext ?? '',
    lastRollback: s.lastRollback ? { from: s.lastRollback.from, to: s.lastRollback.to, reason: s.lastRollback.reason, at: toInt64(s.lastRollback.at ?? 0), by: s.lastRollback.by ?? '' } : undefined,
    partial: s.partial ? { version: s.partial.version, manifestSha256: s.partial.manifestSha256, kept: toInt64(s.partial.kept), total: toInt64(s.partial.total) } : undefined,
    signingCerts: s.signingCerts.map((c) => ({ subject: c.subject, fingerprint: c.fingerprint, notAfter: toInt64(c.notAfter), file: c.file })),
    signingProblem: s.signingProblem ?? '',
    bootNote: s.bootNote ?? '',
    uploading: s.uploading,
  };
}

export function createUpgradeService(ctx: RpcContext, core: UpgradeCore): UpgradeServiceServer {
  return {
    status: unary(ctx, {
      method: `${SERVICE}/Status`,
      access: 'read',
      validate: (_request: UpgradeServiceStatusRequest) => undefined,
      run: (): UpgradeServiceStatusResponse => statusToProto(core.status()),
    }),
    upload: bidiStream(ctx, {
      method: `${SERVICE}/Upload`,
      access: 'admin',
      validate: validateUploadHeader,
      summary: (h) => `release ${h.manifest.version} (${h.total} bytes)`,
      run: (input, _first, call) => runUpload(core.beginUpload(input), call),
    }),
    rollback: unary(ctx, {
      method: `${SERVICE}/Rollback`,
      access: 'admin',
      validate: (_request: UpgradeServiceRollbackRequest) => undefined,
      run: async (_input, caller): Promise<UpgradeServiceRollbackResponse> => {
        const r = await core.rollback(caller.identity);
        return { bootsNext: bootEntryToProto(r.bootsNext), from: r.from };
      },
    }),
  };
}

/**
 * One Upload stream after its header was accepted: tell the caller where to start, take the chunks in order
 * (each one appended to the kept bytes), and on the caller's half-close let the core verify and write the slot.
 * A cut stream keeps what arrived (the core syncs it) for the next Upload of the same manifest. A caller silent for
 * `session.idleMs` is ended with DEADLINE_EXCEEDED (upload-plan.ts idleEnded), so an idle stream cannot hold the
 * node's one session; the timer is stopped on every way the stream ends.
 */
export function runUpload(session: UploadSession, call: ServerDuplexStream<UpgradeServiceUploadRequest, UpgradeServiceUploadResponse>): Promise<void> {
  const { accepted } = session;
  call.write({ accepted: { resumeOffset: toInt64(accepted.resumeOffset), total: toInt64(accepted.total), version: accepted.version, signer: accepted.signer } });
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let reported = session.received;
    let idle: NodeJS.Timeout | undefined;
    const restartIdleTimer = () => {
      clearTimeout(idle);
      idle = setTimeout(() => fail(idleEnded(session.received, accepted.total, session.idleMs)), session.idleMs);
    };
    const cleanup = () => {
      clearTimeout(idle);
      idle = undefined;
      call.off('data', onData);
      call.off('end', onEnd);
      call.off('cancelled', onCancelled);
      call.off('error', onError);
    };
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      cleanup();
      session.abandon();
      reject(err);
    };
    const onData = (request: UpgradeServiceUploadRequest) => {
      if (settled) return;
      restartIdleTimer();
      try {
        if (request.header) throw invalid('header', 'only in the first message');
        if (!request.chunk) throw invalid('chunk', 'required in every message after the first');
        const offset = checkInt64('chunk.offset', request.chunk.offset, 0, MAX_RELEASE_BYTES);
        session.write(offset, request.chunk.data);
        if (session.received - reported >= PROGRESS_EVERY_BYTES) {
          reported = session.received;
          call.write({ progress: { received: toInt64(session.received), total: toInt64(accepted.total) } });
        }
      } catch (err) {
        fail(err);
      }
    };
    const onEnd = () => {
      if (settled) return;
      settled = true;
      cleanup();
      session.finish().then(
        (done) => {
          call.write({ progress: { received: toInt64(session.received), total: toInt64(accepted.total) } });
          call.write({ done: { entry: bootEntryToProto(done.entry), removed: done.removed } });
          call.end();
          resolve();
        },
        (err: unknown) => reject(err),
      );
    };
    const onCancelled = () => {
      fail(new AuraeError('UNAVAILABLE', 'upload: the caller went away: the bytes received are kept; upload again to continue'));
    };
    const onError = (err: unknown) => fail(err);
    call.on('data', onData);
    call.once('end', onEnd);
    call.once('cancelled', onCancelled);
    call.once('error', onError);
    restartIdleTimer();
    call.resume();
  });
}
