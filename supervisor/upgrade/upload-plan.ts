// The pure rules of a resumable upload: where a new Upload starts given what the state volume keeps, whether a
// chunk fits, and what an ended stream means. No I/O: upgrade-core.ts applies them.
import { AuraeError } from '../errors';

/** Largest chunk accepted (the gRPC receive limit is 4 MiB per message, chunk header included). */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024 - 1024;
/** The chunk size aer sends. */
export const CHUNK_BYTES = 1024 * 1024;

/** An unfinished upload kept on the state volume. */
export interface KeptUpload {
  /** Hex SHA-256 of the manifest bytes: the identity of the upload. */
  manifestSha256: string;
  version: string;
  total: number;
  /** Bytes kept (the data file's length). */
  kept: number;
}

export interface ResumePlan {
  /** Drop what is kept before starting (another release, or more bytes than this one has: not ours). */
  discard: boolean;
  /** Where the caller continues. */
  offset: number;
}

/**
 * Where an upload of `incoming` starts: the kept bytes of the same manifest are reused (its bytes are checked
 * against the manifest's sha256 at the end, so a torn tail is caught there); anything else is dropped.
 */
export function planResume(kept: KeptUpload | null, incoming: { manifestSha256: string; total: number }): ResumePlan {
  if (kept === null) return { discard: false, offset: 0 };
  if (kept.manifestSha256 !== incoming.manifestSha256 || kept.total !== incoming.total || kept.kept > incoming.total) return { discard: true, offset: 0 };
  return { discard: false, offset: kept.kept };
}

/** A chunk must continue exactly where the received bytes end and stay within the release. Throws INVALID_ARGUMENT. */
export function checkChunk(received: number, total: number, chunk: { offset: number; length: number }): void {
  if (chunk.length === 0) throw new AuraeError('INVALID_ARGUMENT', `chunk.data: empty at offset ${chunk.offset}: send at least one byte per chunk`);
  if (chunk.length > MAX_CHUNK_BYTES) throw new AuraeError('INVALID_ARGUMENT', `chunk.data: ${chunk.length} bytes: at most ${MAX_CHUNK_BYTES} per chunk`);
  if (chunk.offset !== received) {
    throw new AuraeError('INVALID_ARGUMENT', `chunk.offset: ${chunk.offset}, but ${received} bytes were received: send the release's bytes in order from the offset the node accepted`);
  }
  if (chunk.offset + chunk.length > total) {
    throw new AuraeError('INVALID_ARGUMENT', `chunk: bytes ${chunk.offset}..${chunk.offset + chunk.length} go past the release's ${total} bytes (header.total_size)`);
  }
}

/** The stream ended: fine when every byte came; otherwise FAILED_PRECONDITION saying the bytes are kept. */
export function checkComplete(received: number, total: number): void {
  if (received === total) return;
  throw new AuraeError(
    'FAILED_PRECONDITION',
    `upload: the stream ended after ${received} of ${total} bytes: they are kept on the node's state volume; run the same upload again to continue from byte ${received}`,
  );
}

/**
 * The caller sent nothing for `idleMs` (upgrade.uploadIdleMs): DEADLINE_EXCEEDED saying the bytes are kept. The SDK
 * retries it (aer image upgrade --attempts) like a cut stream: each retry resumes from `received`.
 */
export function idleEnded(received: number, total: number, idleMs: number): AuraeError {
  return new AuraeError(
    'DEADLINE_EXCEEDED',
    `upload: nothing arrived for ${idleMs} ms (upgrade.uploadIdleMs), so the node ended the stream to free the upload for others: the ${received} of ${total} bytes received are kept on the node's state volume; run the same upload again to continue from byte ${received}`,
  );
}

/** Progress is reported at most once per this many bytes (and at the end). */
export const PROGRESS_EVERY_BYTES = 8 * 1024 * 1024;
