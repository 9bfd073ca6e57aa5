// GUID Partition Table (UEFI spec 2.10, §5.3) for 512-byte logical sectors: build a fresh table for disk.raw
// at image build time, and read, plan and rewrite the table on the node's boot disk at first boot (create the
// STATE partition, grow it when the device grew). Pure: byte I/O goes through the caller's callbacks and write
// lists, so all of it runs in unit tests on image files.
//
// Numbers, not bigints, for LBAs and byte offsets: exact up to 2^53 bytes (8 PiB), far beyond any disk this
// runs on, and plain arithmetic keeps the planning code readable. Attributes are 64-bit flags, so bigint.
import { createHash } from 'node:crypto';
import { crc32 } from './crc32';

export const SECTOR_SIZE = 512;
/** The standard partition array: 128 entries of 128 bytes = 32 sectors, so the first usable LBA is 34. */
export const GPT_ENTRY_COUNT = 128;
export const GPT_ENTRY_SIZE = 128;
export const GPT_FIRST_USABLE_LBA = 34;
/** New partitions start on 1 MiB boundaries, as parted/sfdisk/sgdisk do (good for 4K and erase-block alignment). */
export const ALIGNMENT_SECTORS = (1024 * 1024) / SECTOR_SIZE;
/** A partition name holds at most 36 UTF-16 code units (72 bytes). */
export const GPT_NAME_MAX = 36;

export const PARTITION_TYPES = {
  esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  linux: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
} as const;

export interface GptPartition {
  /** Partition type GUID, e.g. PARTITION_TYPES.esp. Case-insensitive on input, upper case on output. */
  typeGuid: string;
  uniqueGuid: string;
  /** First and last LBA, both inclusive (sectors of 512 bytes). */
  firstLba: number;
  lastLba: number;
  /** Attribute flags (bit 0 required, bit 1 no block-IO protocol, bit 2 legacy BIOS bootable, 48..63 type-specific). */
  attributes?: bigint;
  /** UTF-16, at most 36 code units, no NUL. */
  name: string;
}

/** A partition as it sits in the table: `index` is its 0-based entry slot (the kernel names it partition index + 1). */
export interface GptEntry extends GptPartition {
  index: number;
  attributes: bigint;
}

/** A parsed (or planned) table. */
export interface Gpt {
  /** Which header this came from: the primary at LBA 1, or the backup when the primary was unusable. */
  source: 'primary' | 'backup';
  /** LBA of the header that was read. */
  headerLba: number;
  /** That header's AlternateLBA. For a primary header this is where the backup lies: not the disk's last LBA
   *  after the device grew. */
  alternateLba: number;
  diskGuid: string;
  firstUsableLba: number;
  lastUsableLba: number;
  /** LBA of the partition array that header points to. */
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  /** The non-empty entries in slot order. */
  partitions: GptEntry[];
  /** What was wrong or unusual, for the log: a corrupt header, a backup not at the end of the disk, … */
  problems: string[];
}

export type GptErrorCode = 'GPT_INVALID_ARGUMENT' | 'GPT_UNSUPPORTED_SECTOR_SIZE' | 'GPT_INVALID_LAYOUT';

export class GptError extends Error {
  override readonly name = 'GptError';
  constructor(readonly code: GptErrorCode, message: string) {
    super(message);
  }
}

function assertSectorSize(sectorSize: number): void {
  if (sectorSize !== SECTOR_SIZE) {
    throw new GptError(
      'GPT_UNSUPPORTED_SECTOR_SIZE',
      `gpt: logical sector size ${sectorSize} is not supported (only 512-byte sectors are); ` +
        'use a disk or image with 512-byte logical blocks (/sys/block/DEV/queue/logical_block_size)',
    );
  }
}

function assertDiskSectors(diskSectors: number): void {
  // The smallest disk with one usable sector: MBR + header + array, one sector, array + header.
  const min = 2 * (1 + GPT_ENTRY_COUNT * GPT_ENTRY_SIZE / SECTOR_SIZE) + 2;
  if (!Number.isSafeInteger(diskSectors) || diskSectors < min) {
    throw new GptError('GPT_INVALID_ARGUMENT', `gpt: disk size ${diskSectors} sectors is not usable (need an integer >= ${min})`);
  }
}

// ---- GUIDs -------------------------------------------------------------------------------------------------

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Canonical upper-case GUID text, or a GptError naming `what` when `guid` is not 8-4-4-4-12 hex. */
export function normalizeGuid(guid: string, what: string): string {
  if (!GUID_RE.test(guid)) {
    throw new GptError('GPT_INVALID_ARGUMENT', `gpt: ${what} "${guid}" is not a GUID (expected 8-4-4-4-12 hex digits)`);
  }
  return guid.toUpperCase();
}

/** GUID text → the 16 bytes GPT stores: the first three fields little-endian, the last two as written. */
export function encodeGuid(guid: string, what = 'GUID'): Buffer {
  const hex = normalizeGuid(guid, what).replace(/-/g, '');
  const bytes = Buffer.from(hex, 'hex');
  bytes.subarray(0, 4).reverse();
  bytes.subarray(4, 6).reverse();
  bytes.subarray(6, 8).reverse();
  return bytes;
}

export function decodeGuid(bytes: Buffer): string {
  const b = Buffer.from(bytes.subarray(0, 16));
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  const h = b.toString('hex').toUpperCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A stable GUID derived from `seed` (SHA-256, RFC 4122 variant, version 4 bits), so built images are
 *  byte-for-byte reproducible while every partition still gets a distinct GUID. */
export function guidFromSeed(seed: string): string {
  const b = createHash('sha256').update(seed).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex').toUpperCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const ZERO_GUID = '00000000-0000-0000-0000-000000000000';

// ---- encoding ----------------------------------------------------------------------------------------------

const SIGNATURE = Buffer.from('EFI PART', 'latin1');
const REVISION_1_0 = 0x00010000;
const HEADER_SIZE = 92;

interface Layout {
  diskSectors: number;
  diskGuid: string;
  entryCount: number;
  primaryEntriesLba: number;
  firstUsableLba: number;
  /** Derived from the disk size: the backup array and header always sit at the very end. */
  lastUsableLba: number;
  backupEntriesLba: number;
  entrySectors: number;
}

function layoutFor(diskSectors: number, diskGuid: string, entryCount: number, primaryEntriesLba: number, firstUsableLba: number): Layout {
  const entrySectors = Math.ceil((entryCount * GPT_ENTRY_SIZE) / SECTOR_SIZE);
  const backupEntriesLba = diskSectors - 1 - entrySectors;
  const layout = { diskSectors, diskGuid, entryCount, primaryEntriesLba, firstUsableLba, lastUsableLba: backupEntriesLba - 1, backupEntriesLba, entrySectors };
  if (primaryEntriesLba < 2 || primaryEntriesLba + entrySectors > firstUsableLba || layout.lastUsableLba < firstUsableLba) {
    throw new GptError(
      'GPT_INVALID_LAYOUT',
      `gpt: the table does not fit a disk of ${diskSectors} sectors (array at LBA ${primaryEntriesLba}, ${entrySectors} sectors; first usable LBA ${firstUsableLba}; last usable LBA ${layout.lastUsableLba})`,
    );
  }
  return layout;
}

function checkPartitions(partitions: GptEntry[], layout: Layout): void {
  const seenSlots = new Set<number>();
  const seenGuids = new Map<string, number>();
  for (const p of partitions) {
    const what = `partition ${p.index + 1} ("${p.name}")`;
    if (!Number.isInteger(p.index) || p.index < 0 || p.index >= layout.entryCount) {
      throw new GptError('GPT_INVALID_ARGUMENT', `gpt: ${what}: entry slot ${p.index} is outside the table of ${layout.entryCount} entries`);
    }
    if (seenSlots.has(p.index)) throw new GptError('GPT_INVALID_ARGUMENT', `gpt: two partitions use entry slot ${p.index}`);
    seenSlots.add(p.index);
    if (normalizeGuid(p.typeGuid, `${what} type GUID`) === ZERO_GUID) {
      throw new GptError('GPT_INVALID_ARGUMENT', `gpt: ${what}: the all-zero type GUID marks an unused entry; pick a real type (PARTITION_TYPES)`);
    }
    const unique = normalizeGuid(p.uniqueGuid, `${what} unique GUID`);
    const other = seenGuids.get(unique);
    if (other !== undefined) throw new GptError('GPT_INVALID_ARGUMENT', `gpt: partitions ${other + 1} and ${p.index + 1} share the unique GUID ${unique}`);
    seenGuids.set(unique, p.index);
    if (p.name.length > GPT_NAME_MAX || p.name.includes('\0')) {
      throw new GptError('GPT_INVALID_ARGUMENT', `gpt: ${what}: a name holds at most ${GPT_NAME_MAX} UTF-16 code units and no NUL (got ${p.name.length})`);
    }
    if (!Number.isSafeInteger(p.firstLba) || !Number.isSafeInteger(p.lastLba) || p.firstLba > p.lastLba) {
      throw new GptError('GPT_INVALID_ARGUMENT', `gpt: ${what}: LBA range ${p.firstLba}..${p.lastLba} is not an integer range with first <= last`);
    }
    if (p.firstLba < layout.firstUsableLba || p.lastLba > layout.lastUsableLba) {
      throw new GptError(
        'GPT_INVALID_LAYOUT',
        `gpt: ${what}: LBA ${p.firstLba}..${p.lastLba} lies outside the usable LBAs ${layout.firstUsableLba}..${layout.lastUsableLba} of a ${layout.diskSectors}-sector disk`,
      );
    }
    const attributes = p.attributes ?? 0n;
    if (attributes < 0n || attributes > 0xffffffffffffffffn) {
      throw new GptError('GPT_INVALID_ARGUMENT', `gpt: ${what}: attributes must fit in 64 unsigned bits`);
    }
  }
  const sorted = [...partitions].sort((a, b) => a.firstLba - b.firstLba);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.firstLba <= prev.lastLba) {
      throw new GptError('GPT_INVALID_LAYOUT', `gpt: partitions ${prev.index + 1} (${prev.firstLba}..${prev.lastLba}) and ${cur.index + 1} (${cur.firstLba}..${cur.lastLba}) overlap`);
    }
  }
}

function encodeEntries(partitions: GptEntry[], layout: Layout): Buffer {
  const buf = Buffer.alloc(layout.entrySectors * SECTOR_SIZE);
  for (const p of partitions) {
    const at = p.index * GPT_ENTRY_SIZE;
    encodeGuid(p.typeGuid).copy(buf, at);
    encodeGuid(p.uniqueGuid).copy(buf, at + 16);
    buf.writeBigUInt64LE(BigInt(p.firstLba), at + 32);
    buf.writeBigUInt64LE(BigInt(p.lastLba), at + 40);
    buf.writeBigUInt64LE(p.attributes ?? 0n, at + 48);
    buf.write(p.name, at + 56, GPT_NAME_MAX * 2, 'utf16le');
  }
  return buf;
}

function encodeHeader(layout: Layout, which: 'primary' | 'backup', entriesCrc: number): Buffer {
  const sector = Buffer.alloc(SECTOR_SIZE);
  const lastLba = layout.diskSectors - 1;
  SIGNATURE.copy(sector, 0);
  sector.writeUInt32LE(REVISION_1_0, 8);
  sector.writeUInt32LE(HEADER_SIZE, 12);
  sector.writeBigUInt64LE(BigInt(which === 'primary' ? 1 : lastLba), 24);
  sector.writeBigUInt64LE(BigInt(which === 'primary' ? lastLba : 1), 32);
  sector.writeBigUInt64LE(BigInt(layout.firstUsableLba), 40);
  sector.writeBigUInt64LE(BigInt(layout.lastUsableLba), 48);
  encodeGuid(layout.diskGuid, 'disk GUID').copy(sector, 56);
  sector.writeBigUInt64LE(BigInt(which === 'primary' ? layout.primaryEntriesLba : layout.backupEntriesLba), 72);
  sector.writeUInt32LE(layout.entryCount, 80);
  sector.writeUInt32LE(GPT_ENTRY_SIZE, 84);
  sector.writeUInt32LE(entriesCrc, 88);
  // The header CRC covers HeaderSize bytes with its own field zeroed (it still is here).
  sector.writeUInt32LE(crc32(sector.subarray(0, HEADER_SIZE)), 16);
  return sector;
}

/** Bytes 446..511 of LBA 0: one 0xEE record covering the disk (capped at 2^32-1 sectors), three empty ones, 55 AA. */
function protectiveMbrTail(diskSectors: number): Buffer {
  const tail = Buffer.alloc(66);
  tail.set([0x00, 0x00, 0x02, 0x00, 0xee, 0xff, 0xff, 0xff], 0); // not bootable, CHS 0/0/2, type EE, CHS max
  tail.writeUInt32LE(1, 8);
  tail.writeUInt32LE(Math.min(diskSectors - 1, 0xffffffff), 12);
  tail[64] = 0x55;
  tail[65] = 0xaa;
  return tail;
}
const MBR_TABLE_OFFSET = 446;

interface EncodedGpt {
  layout: Layout;
  entries: Buffer;
  primaryHeader: Buffer;
  backupHeader: Buffer;
  mbrTail: Buffer;
}

function encodeGpt(layout: Layout, partitions: GptEntry[]): EncodedGpt {
  checkPartitions(partitions, layout);
  const entries = encodeEntries(partitions, layout);
  const entriesCrc = crc32(entries.subarray(0, layout.entryCount * GPT_ENTRY_SIZE));
  return {
    layout,
    entries,
    primaryHeader: encodeHeader(layout, 'primary', entriesCrc),
    backupHeader: encodeHeader(layout, 'backup', entriesCrc),
    mbrTail: protectiveMbrTail(layout.diskSectors),
  };
}

// ---- build -------------------------------------------------------------------------------------------------

export interface GptSpec {
  diskSectors: number;
  diskGuid: string;
  /** Placed in entry slots 0, 1, … in array order. */
  partitions: GptPartition[];
  /** Logical sector size of the target; only 512 is supported. Default 512. */
  sectorSize?: number;
}

export interface GptImage {
  /** LBA 0..33: protective MBR, primary header, 128-entry array. Write at byte offset 0. */
  primary: Buffer;
  /** The last 33 sectors: array copy, then the backup header at the last LBA. */
  backup: Buffer;
  /** Byte offset of `backup` on the disk. */
  backupOffset: number;
}

/** A fresh GPT for a blank disk of `diskSectors` sectors: standard layout (128 entries, first usable LBA 34,
 *  last usable diskSectors - 34). Same spec → same bytes. Throws GptError naming the bad field. */
export function buildGpt(spec: GptSpec): GptImage {
  assertSectorSize(spec.sectorSize ?? SECTOR_SIZE);
  assertDiskSectors(spec.diskSectors);
  if (spec.partitions.length > GPT_ENTRY_COUNT) {
    throw new GptError('GPT_INVALID_ARGUMENT', `gpt: ${spec.partitions.length} partitions do not fit ${GPT_ENTRY_COUNT} entries`);
  }
  const layout = layoutFor(spec.diskSectors, normalizeGuid(spec.diskGuid, 'disk GUID'), GPT_ENTRY_COUNT, 2, GPT_FIRST_USABLE_LBA);
  const encoded = encodeGpt(layout, spec.partitions.map((p, index) => ({ ...p, index, attributes: p.attributes ?? 0n })));
  const primary = Buffer.alloc(GPT_FIRST_USABLE_LBA * SECTOR_SIZE);
  encoded.mbrTail.copy(primary, MBR_TABLE_OFFSET);
  encoded.primaryHeader.copy(primary, SECTOR_SIZE);
  encoded.entries.copy(primary, 2 * SECTOR_SIZE);
  const backup = Buffer.concat([encoded.entries, encoded.backupHeader]);
  return { primary, backup, backupOffset: layout.backupEntriesLba * SECTOR_SIZE };
}

// ---- parse -------------------------------------------------------------------------------------------------

/** Reads `length` bytes at byte `offset` of the disk; may return fewer bytes at the end of the device. */
export type ReadAt = (offset: number, length: number) => Buffer;

interface HeaderRead {
  ok: boolean;
  /** Set when the header itself checked out (even if its array did not): then alternateLba is trustworthy. */
  headerValid: boolean;
  alternateLba?: number;
  problem?: string;
  gpt?: Omit<Gpt, 'source' | 'problems'>;
  entriesCrc?: number;
}

// A sanity bound on the array a header may ask us to read: 128 × 128 bytes is the norm; 4 MiB is absurd already.
const MAX_ARRAY_BYTES = 4 * 1024 * 1024;

function readHeader(read: ReadAt, lba: number, diskSectors: number): HeaderRead {
  const where = `GPT header at LBA ${lba}`;
  if (lba < 1 || lba >= diskSectors) return { ok: false, headerValid: false, problem: `${where}: outside the disk` };
  const sector = read(lba * SECTOR_SIZE, SECTOR_SIZE);
  if (sector.length < SECTOR_SIZE) return { ok: false, headerValid: false, problem: `${where}: short read` };
  if (!sector.subarray(0, 8).equals(SIGNATURE)) return { ok: false, headerValid: false, problem: `${where}: no "EFI PART" signature` };
  const headerSize = sector.readUInt32LE(12);
  if (headerSize < HEADER_SIZE || headerSize > SECTOR_SIZE) return { ok: false, headerValid: false, problem: `${where}: header size ${headerSize} is invalid` };
  const copy = Buffer.from(sector.subarray(0, headerSize));
  const storedCrc = copy.readUInt32LE(16);
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== storedCrc) return { ok: false, headerValid: false, problem: `${where}: header CRC mismatch` };

  const u64 = (at: number) => Number(sector.readBigUInt64LE(at));
  const myLba = u64(24);
  const alternateLba = u64(32);
  const firstUsableLba = u64(40);
  const lastUsableLba = u64(48);
  const entriesLba = u64(72);
  const entryCount = sector.readUInt32LE(80);
  const entrySize = sector.readUInt32LE(84);
  // The same checks the Linux kernel makes (block/partitions/efi.c is_gpt_valid): a table it would reject is
  // no table to us either.
  const invalid = (why: string): HeaderRead => ({ ok: false, headerValid: false, problem: `${where}: ${why}` });
  if (myLba !== lba) return invalid(`it says it is at LBA ${myLba}`);
  if (entrySize !== GPT_ENTRY_SIZE) return invalid(`entry size ${entrySize} is not ${GPT_ENTRY_SIZE}`);
  if (entryCount < 1 || entryCount * entrySize > MAX_ARRAY_BYTES) return invalid(`entry count ${entryCount} is out of range`);
  if (firstUsableLba > lastUsableLba + 1 || lastUsableLba >= diskSectors) {
    return invalid(`usable LBAs ${firstUsableLba}..${lastUsableLba} do not fit a disk of ${diskSectors} sectors (did the device shrink?)`);
  }
  const arrayBytes = entryCount * entrySize;
  if (entriesLba < 2 || entriesLba * SECTOR_SIZE + arrayBytes > diskSectors * SECTOR_SIZE) return invalid(`partition array at LBA ${entriesLba} lies outside the disk`);

  const array = read(entriesLba * SECTOR_SIZE, arrayBytes);
  if (array.length < arrayBytes) return { ok: false, headerValid: true, alternateLba, problem: `${where}: short read of the partition array` };
  const entriesCrc = crc32(array);
  if (entriesCrc !== sector.readUInt32LE(88)) return { ok: false, headerValid: true, alternateLba, problem: `${where}: partition array CRC mismatch` };

  const partitions: GptEntry[] = [];
  for (let index = 0; index < entryCount; index++) {
    const entry = array.subarray(index * entrySize, (index + 1) * entrySize);
    const typeGuid = decodeGuid(entry.subarray(0, 16));
    if (typeGuid === ZERO_GUID) continue;
    const raw = entry.subarray(56, 128).toString('utf16le');
    const nul = raw.indexOf('\0');
    partitions.push({
      index,
      typeGuid,
      uniqueGuid: decodeGuid(entry.subarray(16, 32)),
      firstLba: Number(entry.readBigUInt64LE(32)),
      lastLba: Number(entry.readBigUInt64LE(40)),
      attributes: entry.readBigUInt64LE(48),
      name: nul === -1 ? raw : raw.slice(0, nul),
    });
  }
  return {
    ok: true,
    headerValid: true,
    alternateLba,
    entriesCrc,
    gpt: {
      headerLba: lba,
      alternateLba,
      diskGuid: decodeGuid(sector.subarray(56, 72)),
      firstUsableLba,
      lastUsableLba,
      entriesLba,
      entryCount,
      entrySize,
      partitions,
    },
  };
}

/**
 * The GPT on a disk of `diskSectors` 512-byte sectors, or null when there is no valid one (no signature, or
 * header or array CRC mismatch in both copies). The primary header (LBA 1) wins; when it is unusable, the backup
 * at the last LBA is used (or, after the device grew, the one the primary's intact header points to), and
 * `source` says 'backup'. Read errors from `read` propagate: an unreadable disk is not an empty one.
 */
export function parseGpt(read: ReadAt, diskSectors: number, sectorSize = SECTOR_SIZE): Gpt | null {
  assertSectorSize(sectorSize);
  if (!Number.isSafeInteger(diskSectors) || diskSectors < 3) return null;
  const lastLba = diskSectors - 1;
  const primary = readHeader(read, 1, diskSectors);
  if (primary.ok && primary.gpt) {
    const problems: string[] = [];
    const alt = primary.gpt.alternateLba;
    if (alt !== lastLba) problems.push(`the backup GPT header is at LBA ${alt}, not at the last LBA ${lastLba} (the device grew or shrank)`);
    const backup = readHeader(read, alt, diskSectors);
    if (!backup.ok) problems.push(`backup GPT unusable: ${backup.problem}`);
    else if (backup.entriesCrc !== primary.entriesCrc) problems.push('the backup partition array differs from the primary one');
    return { source: 'primary', ...primary.gpt, problems };
  }
  const problems = [`primary GPT unusable: ${primary.problem}`];
  const candidates = [lastLba];
  // A primary header that checked out but whose array did not still knows where its backup is.
  if (primary.headerValid && primary.alternateLba !== undefined && primary.alternateLba !== lastLba) candidates.push(primary.alternateLba);
  for (const lba of candidates) {
    const backup = readHeader(read, lba, diskSectors);
    if (backup.ok && backup.gpt) {
      problems.push(`using the backup GPT at LBA ${lba}`);
      return { source: 'backup', ...backup.gpt, problems };
    }
  }
  return null;
}

// ---- plan --------------------------------------------------------------------------------------------------

export interface StatePartitionSpec {
  /** Partition name that identifies it, e.g. "AURAE_STATE". */
  name: string;
  typeGuid: string;
  /** GUID for a newly created partition (an existing one keeps its own). */
  uniqueGuid: string;
  /** Create or grow only when at least this many sectors are gained; smaller gains are not worth a rewrite. */
  minSectors: number;
}

export type StatePartitionPlan =
  | { action: 'none'; reason: string }
  | { action: 'refuse'; reason: string }
  | {
      action: 'create' | 'grow';
      /** Entry slot (0-based; the kernel's partition number is index + 1). */
      index: number;
      /** The partition as it will be. */
      partition: GptEntry;
      /** The whole table after the change, backup moved to the end of the disk: pass it to gptWrites. */
      gpt: Gpt;
      reason: string;
    };

const alignUp = (lba: number, to: number) => Math.ceil(lba / to) * to;

/**
 * What to do about the state partition on a disk that now has `diskSectors` sectors. Pure.
 *  - absent: 'create' it from the first 1 MiB-aligned LBA after the last partition to the disk's last usable
 *    LBA, when that is at least minSectors; else 'refuse' (no room, or no free entry).
 *  - present, last on the disk, and ≥ minSectors to gain: 'grow' it to the last usable LBA.
 *  - present and nothing (or less than minSectors) to gain: 'none'.
 *  - present with another partition after it while space is free at the end: 'refuse' (it cannot grow there).
 *  - the table does not fit the disk any more (it shrank), or the name is ambiguous: 'refuse'.
 * In write plans the backup table moves to the real end of the disk (like `sgdisk -e`).
 */
export function planStatePartition(gpt: Gpt, diskSectors: number, spec: StatePartitionSpec): StatePartitionPlan {
  assertDiskSectors(diskSectors);
  normalizeGuid(spec.typeGuid, 'state partition type GUID');
  normalizeGuid(spec.uniqueGuid, 'state partition unique GUID');
  if (!Number.isSafeInteger(spec.minSectors) || spec.minSectors < 1) {
    throw new GptError('GPT_INVALID_ARGUMENT', `gpt: minSectors must be a positive integer (got ${spec.minSectors})`);
  }
  if (spec.name.length === 0 || spec.name.length > GPT_NAME_MAX || spec.name.includes('\0')) {
    throw new GptError('GPT_INVALID_ARGUMENT', `gpt: state partition name "${spec.name}" must be 1..${GPT_NAME_MAX} UTF-16 code units without NUL`);
  }
  const entrySectors = Math.ceil((gpt.entryCount * gpt.entrySize) / SECTOR_SIZE);
  const lastUsable = diskSectors - 2 - entrySectors;
  const endOfData = gpt.partitions.reduce((max, p) => Math.max(max, p.lastLba), gpt.firstUsableLba - 1);
  if (endOfData > lastUsable) {
    return { action: 'refuse', reason: `a partition ends at LBA ${endOfData}, beyond the last usable LBA ${lastUsable} of this ${diskSectors}-sector disk: the device is smaller than its partition table` };
  }
  const freeAtEnd = lastUsable - endOfData;

  const named = gpt.partitions.filter((p) => p.name === spec.name);
  if (named.length > 1) {
    return { action: 'refuse', reason: `${named.length} partitions are named "${spec.name}" (${named.map((p) => p.index + 1).join(', ')}); keep one` };
  }
  // The table as it will read after gptWrites: primary header at LBA 1 (rewritten even when only the backup was
  // intact), backup at the real end of the disk.
  const withTable = (partition: GptEntry): Gpt => ({
    ...gpt,
    source: 'primary',
    headerLba: 1,
    alternateLba: diskSectors - 1,
    entriesLba: gpt.source === 'primary' ? gpt.entriesLba : 2,
    lastUsableLba: lastUsable,
    partitions: [...gpt.partitions.filter((p) => p.index !== partition.index), partition].sort((a, b) => a.index - b.index),
    problems: [],
  });

  const existing = named[0];
  if (existing) {
    const label = `partition ${existing.index + 1} "${spec.name}" (LBA ${existing.firstLba}..${existing.lastLba})`;
    const after = gpt.partitions.find((p) => p !== existing && p.firstLba > existing.lastLba);
    if (existing.lastLba >= lastUsable) return { action: 'none', reason: `${label} already ends at the last usable LBA` };
    if (freeAtEnd < spec.minSectors) {
      return { action: 'none', reason: `${label}: ${freeAtEnd} free sectors at the end of the disk, fewer than ${spec.minSectors}` };
    }
    if (after) {
      return { action: 'refuse', reason: `${label} cannot grow: partition ${after.index + 1} "${after.name}" lies after it` };
    }
    const partition: GptEntry = { ...existing, lastLba: lastUsable };
    return {
      action: 'grow',
      index: existing.index,
      partition,
      gpt: withTable(partition),
      reason: `${label} grows by ${freeAtEnd} sectors to end at LBA ${lastUsable}`,
    };
  }

  const firstLba = alignUp(endOfData + 1, ALIGNMENT_SECTORS);
  const size = lastUsable - firstLba + 1;
  if (size < spec.minSectors) {
    return { action: 'refuse', reason: `no room for "${spec.name}": ${Math.max(size, 0)} sectors free from LBA ${firstLba}, need ${spec.minSectors}` };
  }
  const used = new Set(gpt.partitions.map((p) => p.index));
  let index = 0;
  while (index < gpt.entryCount && used.has(index)) index++;
  if (index >= gpt.entryCount) return { action: 'refuse', reason: `no free entry for "${spec.name}": all ${gpt.entryCount} slots are in use` };
  const partition: GptEntry = {
    index,
    typeGuid: normalizeGuid(spec.typeGuid, 'state partition type GUID'),
    uniqueGuid: normalizeGuid(spec.uniqueGuid, 'state partition unique GUID'),
    firstLba,
    lastLba: lastUsable,
    attributes: 0n,
    name: spec.name,
  };
  return {
    action: 'create',
    index,
    partition,
    gpt: withTable(partition),
    reason: `new partition ${index + 1} "${spec.name}" at LBA ${firstLba}..${lastUsable} (${size} sectors)`,
  };
}

// ---- write -------------------------------------------------------------------------------------------------

export interface GptWrite {
  /** Byte offset on the disk. */
  offset: number;
  data: Buffer;
  /** What this range is, for logs and errors. */
  what: string;
}

/**
 * The byte ranges that put `gpt` (typically a plan's `gpt`) on a disk of `diskSectors` sectors, to be written in
 * this order: backup array, backup header (at the last LBA), primary array, primary header, then the MBR's
 * partition table (bytes 446..511: a protective 0xEE record sized to the disk; the boot code is left alone).
 * The backup goes first so that a power cut at any point leaves at least one whole valid table for UEFI
 * firmware and parseGpt: until the primary header is rewritten, the old primary (with its old backup) is intact.
 * (Linux itself uses the backup only with `gpt` on its command line: a torn primary makes it see no partitions.)
 * On a block device the page cache may reorder writes, so fsync after each range (init/state-disk does). The kernel does not see
 * the change until it re-reads the table (BLKRRPART, or BLKPG on a disk with mounted partitions). The last usable LBA and the
 * backup's place follow the real disk size (like `sgdisk -e`). Throws GptError when the partitions do not fit.
 */
export function gptWrites(gpt: Gpt, diskSectors: number, sectorSize = SECTOR_SIZE): GptWrite[] {
  assertSectorSize(sectorSize);
  assertDiskSectors(diskSectors);
  if (gpt.entrySize !== GPT_ENTRY_SIZE) {
    throw new GptError('GPT_INVALID_LAYOUT', `gpt: refusing to rewrite a table with ${gpt.entrySize}-byte entries (only ${GPT_ENTRY_SIZE} is supported)`);
  }
  // A table read from its backup header has the backup's array LBA; the primary array goes back to LBA 2.
  const primaryEntriesLba = gpt.source === 'primary' ? gpt.entriesLba : 2;
  const layout = layoutFor(diskSectors, normalizeGuid(gpt.diskGuid, 'disk GUID'), gpt.entryCount, primaryEntriesLba, gpt.firstUsableLba);
  const encoded = encodeGpt(layout, gpt.partitions);
  return [
    { offset: layout.backupEntriesLba * SECTOR_SIZE, data: encoded.entries, what: `backup partition array (LBA ${layout.backupEntriesLba})` },
    { offset: (diskSectors - 1) * SECTOR_SIZE, data: encoded.backupHeader, what: `backup GPT header (LBA ${diskSectors - 1})` },
    { offset: primaryEntriesLba * SECTOR_SIZE, data: encoded.entries, what: `primary partition array (LBA ${primaryEntriesLba})` },
    { offset: SECTOR_SIZE, data: encoded.primaryHeader, what: 'primary GPT header (LBA 1)' },
    { offset: MBR_TABLE_OFFSET, data: encoded.mbrTail, what: 'protective MBR partition table (LBA 0)' },
  ];
}
