// `aer image flash IMAGE TARGET --identity FILE_OR_DIR`: after IMAGE is written and verified, put the node's
// identity (out/pki/identity.json: its keys) into the AURAE_IDENTITY partition of TARGET, where init finds it at
// boot. The image itself never holds a key (that partition is zeros in disk.raw), so an image file can be
// published; only the flashed disk carries the identity, never on the ESP (which every child gets read-only).
// Everything is checked before the flash writes a byte: the document (init's own parser), and that IMAGE has the
// partition and the document fits it.
import fs from 'node:fs';
import path from 'node:path';
import { type GptEntry, parseGpt, SECTOR_SIZE } from '../../init/disk';
import {
  IDENTITY_FILE_NAME,
  IDENTITY_MAX_BYTES,
  IDENTITY_PARTITION_NAME,
  IDENTITY_PARTITION_TYPE,
  identityDocumentText,
  type NodeIdentity,
  parseIdentityDocument,
} from '../../init/identity/document';

export class IdentityFlashError extends Error {
  override readonly name = 'IdentityFlashError';
}

export interface PreparedIdentity {
  /** The document file that was read (FILE, or DIR/identity.json). */
  file: string;
  identity: NodeIdentity;
  /** The bytes written to the partition (the rest of it is zeroed). */
  text: Buffer;
  /** IMAGE's size in sectors: the GPT on TARGET right after flashing is IMAGE's. */
  imageSectors: number;
  partition: GptEntry;
}

export interface IdentityWritten {
  node: string;
  file: string;
  /** 1-based partition number on TARGET (the kernel's naming). */
  partition: number;
  offset: number;
  bytes: number;
}

/** Read a whole range of an open file (short only at its end). */
function readRange(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, buf, got, length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/** IMAGE's AURAE_IDENTITY partition (by name and type), from its primary GPT. */
function identityPartition(fd: number, sectors: number, what: string): GptEntry {
  const gpt = parseGpt((offset, length) => readRange(fd, offset, length), sectors);
  if (!gpt || gpt.source !== 'primary') throw new IdentityFlashError(`${what} has no valid primary GPT: --identity needs a disk image built by npm run image (out/image/disk.raw)`);
  const entry = gpt.partitions.find((p) => p.name === IDENTITY_PARTITION_NAME && p.typeGuid === IDENTITY_PARTITION_TYPE);
  if (!entry) throw new IdentityFlashError(`${what} has no ${IDENTITY_PARTITION_NAME} partition: rebuild it with npm run image (images from before the identity partition cannot take --identity)`);
  return entry;
}

/**
 * Check everything --identity needs before anything is written: FILE_OR_DIR holds a valid identity document (a
 * directory: its identity.json), and IMAGE has an AURAE_IDENTITY partition it fits in. Throws IdentityFlashError.
 */
export function prepareIdentity(fileOrDir: string, image: string): PreparedIdentity {
  let file = fileOrDir;
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
    if (st.isDirectory()) {
      file = path.join(fileOrDir, IDENTITY_FILE_NAME);
      st = fs.statSync(file);
    }
  } catch (err) {
    throw new IdentityFlashError(`--identity ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message} (npm run image writes out/pki/identity.json)`);
  }
  if (!st.isFile()) throw new IdentityFlashError(`--identity ${file}: not a regular file`);
  if (st.size > IDENTITY_MAX_BYTES) throw new IdentityFlashError(`--identity ${file}: ${st.size} bytes is more than the ${IDENTITY_MAX_BYTES} an identity may have`);
  let identity: NodeIdentity;
  try {
    identity = parseIdentityDocument(fs.readFileSync(file), `--identity ${file}`);
  } catch (err) {
    throw new IdentityFlashError((err as Error).message);
  }
  const text = Buffer.from(identityDocumentText(identity));
  const imageSize = fs.statSync(image).size;
  const fd = fs.openSync(image, fs.constants.O_RDONLY);
  let partition: GptEntry;
  try {
    partition = identityPartition(fd, Math.floor(imageSize / SECTOR_SIZE), image);
  } finally {
    fs.closeSync(fd);
  }
  const room = (partition.lastLba - partition.firstLba + 1) * SECTOR_SIZE;
  // One NUL at least after the document: that is where init stops reading.
  if (text.length >= Math.min(room, IDENTITY_MAX_BYTES)) throw new IdentityFlashError(`--identity ${file}: ${text.length} bytes do not fit the ${room}-byte ${IDENTITY_PARTITION_NAME} partition of ${image}`);
  return { file, identity, text, imageSectors: Math.floor(imageSize / SECTOR_SIZE), partition };
}

/**
 * Write the prepared identity into TARGET's AURAE_IDENTITY partition (the document, then zeros to the end of the
 * partition), fsync, and read it back. TARGET was just flashed with IMAGE, so its table must be IMAGE's: the
 * partition is looked up again on TARGET and must sit where it sits in IMAGE.
 */
export function writeIdentity(target: string, prepared: PreparedIdentity): IdentityWritten {
  const { O_RDWR, O_NOFOLLOW, O_EXCL } = fs.constants;
  let fd: number;
  try {
    // O_EXCL without O_CREAT: Linux's exclusive open of a block device (EBUSY when mounted); ignored for files.
    fd = fs.openSync(target, O_RDWR | O_NOFOLLOW | O_EXCL);
  } catch (err) {
    throw new IdentityFlashError(`writing the identity to ${target}: ${(err as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() && !st.isBlockDevice()) throw new IdentityFlashError(`writing the identity to ${target}: not a file or a block device`);
    const entry = identityPartition(fd, prepared.imageSectors, target);
    if (entry.firstLba !== prepared.partition.firstLba || entry.lastLba !== prepared.partition.lastLba) {
      throw new IdentityFlashError(`${target}: its ${IDENTITY_PARTITION_NAME} partition is not where the image has it: was the image written to it?`);
    }
    const offset = entry.firstLba * SECTOR_SIZE;
    const region = Buffer.alloc((entry.lastLba - entry.firstLba + 1) * SECTOR_SIZE);
    prepared.text.copy(region);
    let done = 0;
    while (done < region.length) done += fs.writeSync(fd, region, done, region.length - done, offset + done);
    fs.fsyncSync(fd);
    if (!readRange(fd, offset, region.length).equals(region)) throw new IdentityFlashError(`${target}: the identity partition reads back different bytes than were written (a failing disk?)`);
    return { node: prepared.identity.node, file: prepared.file, partition: entry.index + 1, offset, bytes: prepared.text.length };
  } finally {
    fs.closeSync(fd);
  }
}

export function formatIdentityWritten(w: IdentityWritten): string {
  return `identity of node ${w.node} (${w.file}, ${w.bytes} bytes) written to partition ${w.partition} (${IDENTITY_PARTITION_NAME}) and verified`;
}
