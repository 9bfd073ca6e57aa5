// The bytes of an unfinished upload, kept on the node's state volume (never on the ESP) so a cut upload resumes:
// <state.dir>/upgrade/partial.json (which manifest, its version and size) and partial.data (the bytes so far).
// Also the record of the last Rollback call (last-rollback.json), which Status reports.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statfsSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { KeptUpload } from './upload-plan';

/** statfs f_type of tmpfs and ramfs (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

export interface PartialStore {
  /** What is kept (null when nothing, or the record does not parse: then it is dropped). */
  kept(): KeptUpload | null;
  /** Drop what is kept and start an empty upload of `meta`. */
  start(meta: Omit<KeptUpload, 'kept'>): void;
  /** Write `data` at `offset` (the end of what is kept). */
  append(offset: number, data: Uint8Array): void;
  /** Make the kept bytes durable (called now and then, and when a stream ends). */
  sync(): void;
  /** Read `length` bytes at `offset` of the kept data. */
  read(offset: number, length: number): Buffer;
  discard(): void;
  /** Bytes free where the upload is kept, and whether that is memory (tmpfs/ramfs: a node without a STATE volume). */
  room(): { freeBytes: number; inMemory: boolean };
  /** The last Rollback call, or null. */
  lastRollback(): RollbackRecord | null;
  recordRollback(record: RollbackRecord): void;
}

/** A Rollback call (Status says who rolled back from what, and when). */
export interface RollbackRecord {
  from: string;
  to: string;
  at: number;
  by: string;
}

/** The partial store under `<stateDir>/upgrade`. */
export function fsPartialStore(stateDir: string): PartialStore {
  const dir = join(stateDir, 'upgrade');
  const metaPath = join(dir, 'partial.json');
  const dataPath = join(dir, 'partial.data');
  const rollbackPath = join(dir, 'last-rollback.json');
  let fd: number | null = null;

  const openData = (): number => {
    fd ??= openSync(dataPath, 'r+');
    return fd;
  };
  const closeData = () => {
    if (fd !== null) closeSync(fd);
    fd = null;
  };
  const writeDurably = (path: string, text: string) => {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(`${path}.tmp`, text, { mode: 0o600 });
    const f = openSync(`${path}.tmp`, 'r');
    try {
      fsyncSync(f);
    } finally {
      closeSync(f);
    }
    renameSync(`${path}.tmp`, path);
    syncDir(dir);
  };

  const store: PartialStore = {
    kept() {
      let meta: Omit<KeptUpload, 'kept'>;
      try {
        meta = JSON.parse(readFileSync(metaPath, 'utf8')) as Omit<KeptUpload, 'kept'>;
        if (typeof meta.manifestSha256 !== 'string' || typeof meta.version !== 'string' || !Number.isSafeInteger(meta.total)) throw new Error('bad record');
        return { manifestSha256: meta.manifestSha256, version: meta.version, total: meta.total, kept: statSync(dataPath).size };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') store.discard();
        return null;
      }
    },
    start(meta) {
      store.discard();
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeFileSync(dataPath, Buffer.alloc(0), { mode: 0o600 });
      // The record last: a data file without it is dropped on the next kept().
      writeDurably(metaPath, `${JSON.stringify({ manifestSha256: meta.manifestSha256, version: meta.version, total: meta.total })}\n`);
    },
    append(offset, data) {
      const f = openData();
      let done = 0;
      while (done < data.length) done += writeSync(f, data, done, data.length - done, offset + done);
    },
    sync() {
      if (fd !== null) fsyncSync(fd);
    },
    read(offset, length) {
      const f = openData();
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const n = readSync(f, buf, done, length - done, offset + done);
        if (n === 0) throw new Error(`upgrade: the kept upload ended at byte ${offset + done}, expected ${offset + length}`);
        done += n;
      }
      return buf;
    },
    room() {
      // The volume that will hold the folder: the nearest existing folder on its path.
      let at = dir;
      while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
      const s = statfsSync(at);
      return { freeBytes: s.bavail * s.bsize, inMemory: s.type === TMPFS_MAGIC || s.type === RAMFS_MAGIC };
    },
    discard() {
      closeData();
      rmSync(metaPath, { force: true });
      rmSync(dataPath, { force: true });
    },
    lastRollback() {
      try {
        const r = JSON.parse(readFileSync(rollbackPath, 'utf8')) as RollbackRecord;
        return typeof r.from === 'string' && typeof r.to === 'string' && typeof r.at === 'number' && typeof r.by === 'string' ? r : null;
      } catch {
        return null;
      }
    },
    recordRollback(record) {
      writeDurably(rollbackPath, `${JSON.stringify(record)}\n`);
    },
  };
  return store;
}

/** fsync a directory, so a rename or a new entry in it survives a power cut. */
export function syncDir(path: string): void {
  const f = openSync(path, 'r');
  try {
    fsyncSync(f);
  } finally {
    closeSync(f);
  }
}
