// Build caches live under ~/.cache/aurae (override: AURAE_CACHE_DIR), keyed by input hashes, written atomically.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function cacheRoot(env = process.env): string {
  return env.AURAE_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'aurae');
}

export function sha256(...parts: (string | Buffer)[]): string {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
}

/** sha256 of a file, streamed (files here reach 100 MB). */
export async function sha256File(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Produce `dir` with `fill(tmp)` unless it already exists. The work happens in a sibling temp folder that is
 * renamed into place, so an interrupted build never leaves a half-filled cache entry behind; when two builds fill
 * the same entry at once, the first rename wins and the other's copy is dropped.
 */
export async function cached(dir: string, fill: (tmp: string) => Promise<void>): Promise<{ dir: string; hit: boolean }> {
  if (fs.existsSync(dir)) return { dir, hit: true };
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    await fill(tmp);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  try {
    fs.renameSync(tmp, dir);
  } catch (err) {
    // Another build filled the same entry meanwhile (two builds at once): its entry is as good as ours.
    fs.rmSync(tmp, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && fs.existsSync(dir)) return { dir, hit: true };
    throw err;
  }
  return { dir, hit: false };
}
