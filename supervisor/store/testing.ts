// Test helpers for the store: how many transactions reached the disk. In WAL mode with synchronous=FULL every
// commit appends a commit frame to the -wal file and fsyncs it, so counting commit frames counts both the
// commits and the fsyncs a piece of code caused (open the database with `wal_autocheckpoint = 0` so the WAL is
// never rewound in between).
import fs from 'node:fs';

const WAL_HEADER_BYTES = 32;
const FRAME_HEADER_BYTES = 24;

/** The commit frames in `${dbFile}-wal` that belong to its current generation (salts match the header). */
export function walCommits(dbFile: string): number {
  let wal: Buffer;
  try {
    wal = fs.readFileSync(`${dbFile}-wal`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  if (wal.length < WAL_HEADER_BYTES) return 0;
  const pageSize = wal.readUInt32BE(8);
  const salt1 = wal.readUInt32BE(16);
  const salt2 = wal.readUInt32BE(20);
  let commits = 0;
  for (let at = WAL_HEADER_BYTES; at + FRAME_HEADER_BYTES + pageSize <= wal.length; at += FRAME_HEADER_BYTES + pageSize) {
    // Frames left from an earlier generation carry other salts: the log ends at the first of them.
    if (wal.readUInt32BE(at + 8) !== salt1 || wal.readUInt32BE(at + 12) !== salt2) break;
    if (wal.readUInt32BE(at + 4) !== 0) commits++;
  }
  return commits;
}
