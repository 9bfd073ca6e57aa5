// GPT library tests. The image-file tests check our bytes against util-linux's sfdisk (package fdisk), the
// reference reader here, in both directions: tables we write must read back exactly in sfdisk, and tables sfdisk
// writes must parse exactly here.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readRange } from '../state-disk/real';
import {
  buildGpt,
  crc32,
  decodeGuid,
  encodeGuid,
  type Gpt,
  GptError,
  type GptImage,
  type GptPartition,
  gptWrites,
  guidFromSeed,
  PARTITION_TYPES,
  parseGpt,
  planStatePartition,
  type ReadAt,
  type StatePartitionSpec,
} from './index';

const MiB = 2048; // sectors
const DISK_GUID = '9E3B2F6A-1C4D-4E5F-8A9B-0C1D2E3F4A5B';
const ESP: GptPartition = {
  typeGuid: PARTITION_TYPES.esp,
  uniqueGuid: '0d9a3c2b-7e6f-4a1b-9c8d-1e2f3a4b5c6d',
  firstLba: 1 * MiB,
  lastLba: 33 * MiB - 1,
  name: 'AURAE_BOOT',
};
const STATE: StatePartitionSpec = {
  name: 'AURAE_STATE',
  typeGuid: PARTITION_TYPES.linux,
  uniqueGuid: '5F4E3D2C-1B0A-4987-8654-3210FEDCBA98',
  minSectors: 16 * MiB,
};

const dir = mkdtempSync(join(tmpdir(), 'aurae-gpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileCounter = 0;

// ---- helpers: image files and sfdisk -------------------------------------------------------------------------

function imageFile(sizeBytes: number, gpt?: GptImage): string {
  const path = join(dir, `disk-${++fileCounter}.img`);
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, sizeBytes);
    if (gpt) {
      writeSync(fd, gpt.primary, 0, gpt.primary.length, 0);
      writeSync(fd, gpt.backup, 0, gpt.backup.length, gpt.backupOffset);
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

function fileReader(path: string): ReadAt {
  return (offset, length) => readRange(path, offset, length);
}

function writeAt(path: string, writes: { offset: number; data: Buffer }[]): void {
  const fd = openSync(path, 'r+');
  try {
    for (const w of writes) expect(writeSync(fd, w.data, 0, w.data.length, w.offset)).toBe(w.data.length);
  } finally {
    closeSync(fd);
  }
}

function sfdisk(args: string[], input?: string): { stdout: string; stderr: string } {
  const result = spawnSync('sfdisk', args, { input, encoding: 'utf8', timeout: 10_000 });
  if (result.error) throw new Error(`sfdisk ${args.join(' ')}: ${result.error.message} (install util-linux's sfdisk: apt-get install fdisk)`);
  if (result.status !== 0) throw new Error(`sfdisk ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  return { stdout: result.stdout, stderr: result.stderr };
}

interface SfdiskTable {
  label: string;
  id: string;
  firstlba: number;
  lastlba: number;
  sectorsize: number;
  partitions: { start: number; size: number; type: string; uuid: string; name?: string; attrs?: string }[];
}
const sfdiskJson = (path: string): SfdiskTable => (JSON.parse(sfdisk(['--json', path]).stdout) as { partitiontable: SfdiskTable }).partitiontable;

/** sfdisk --verify exits 0 even when it finds errors; it says so in its text. */
function expectSfdiskHappy(path: string): void {
  const { stdout, stderr } = sfdisk(['--verify', path]);
  expect(stdout).toContain('No errors detected.');
  expect(stderr).toBe('');
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

const parseFile = (path: string, sectors: number) => parseGpt(fileReader(path), sectors);
const mustParse = (path: string, sectors: number): Gpt => {
  const gpt = parseFile(path, sectors);
  if (!gpt) throw new Error(`no GPT parsed from ${path}`);
  return gpt;
};

/** A sparse in-memory disk, for sizes no test file should have. */
function memoryDisk(sectors: number) {
  const blocks = new Map<number, Buffer>();
  const write = (offset: number, data: Buffer) => {
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      const lba = Math.floor(at / 512);
      let block = blocks.get(lba);
      if (!block) blocks.set(lba, (block = Buffer.alloc(512)));
      block[at % 512] = data[i]!;
    }
  };
  const read: ReadAt = (offset, length) => {
    const end = Math.min(offset + length, sectors * 512);
    const out = Buffer.alloc(Math.max(0, end - offset));
    for (let i = 0; i < out.length; i++) {
      const at = offset + i;
      out[i] = blocks.get(Math.floor(at / 512))?.[at % 512] ?? 0;
    }
    return out;
  };
  return { read, write, blocks };
}

// ---- tests ---------------------------------------------------------------------------------------------------

describe('crc32', () => {
  it('matches the IEEE check value and other known vectors', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
    expect(crc32(Buffer.from('The quick brown fox jumps over the lazy dog'))).toBe(0x414fa339);
    expect(crc32(Buffer.alloc(32, 0xff))).toBe(0xff6cab0b);
  });

  it('continues across chunks', () => {
    const data = Buffer.from('The quick brown fox jumps over the lazy dog');
    expect(crc32(data.subarray(10), crc32(data.subarray(0, 10)))).toBe(crc32(data));
  });
});

describe('GUIDs', () => {
  it('are stored mixed-endian: first three fields little-endian', () => {
    expect(encodeGuid(PARTITION_TYPES.esp).toString('hex')).toBe('28732ac11ff8d211ba4b00a0c93ec93b');
    expect(decodeGuid(encodeGuid(ESP.uniqueGuid))).toBe(ESP.uniqueGuid.toUpperCase());
  });

  it('are rejected with the field named when malformed', () => {
    expect(() => encodeGuid('not-a-guid', 'disk GUID')).toThrow(/disk GUID "not-a-guid" is not a GUID/);
  });

  it('derive stably from a seed, as RFC 4122 variant', () => {
    expect(guidFromSeed('disk')).toBe(guidFromSeed('disk'));
    expect(guidFromSeed('disk')).not.toBe(guidFromSeed('esp'));
    expect(guidFromSeed('disk')).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
  });
});

describe('buildGpt', () => {
  const sectors = 64 * MiB;
  const build = () => buildGpt({ diskSectors: sectors, diskGuid: DISK_GUID, partitions: [ESP] });

  it('writes a table sfdisk reads back exactly', () => {
    const img = build();
    expect(img.primary.length).toBe(34 * 512);
    expect(img.backup.length).toBe(33 * 512);
    expect(img.backupOffset).toBe((sectors - 33) * 512);
    const path = imageFile(sectors * 512, img);
    expectSfdiskHappy(path);
    expect(sfdiskJson(path)).toMatchObject({
      label: 'gpt',
      id: DISK_GUID,
      firstlba: 34,
      lastlba: sectors - 34,
      sectorsize: 512,
      partitions: [{ start: 1 * MiB, size: 32 * MiB, type: PARTITION_TYPES.esp, uuid: ESP.uniqueGuid.toUpperCase(), name: 'AURAE_BOOT' }],
    });
    const parsed = mustParse(path, sectors);
    expect(parsed).toMatchObject({ source: 'primary', headerLba: 1, alternateLba: sectors - 1, diskGuid: DISK_GUID, firstUsableLba: 34, lastUsableLba: sectors - 34, problems: [] });
    expect(parsed.partitions).toEqual([{ ...ESP, uniqueGuid: ESP.uniqueGuid.toUpperCase(), index: 0, attributes: 0n }]);
  });

  it('writes a protective MBR covering the disk', () => {
    const mbr = build().primary.subarray(0, 512);
    expect(mbr.subarray(0, 446).every((b) => b === 0)).toBe(true);
    expect(mbr[446 + 4]).toBe(0xee);
    expect(mbr.readUInt32LE(446 + 8)).toBe(1);
    expect(mbr.readUInt32LE(446 + 12)).toBe(sectors - 1);
    expect(mbr.subarray(462, 510).every((b) => b === 0)).toBe(true);
    expect(mbr.readUInt16BE(510)).toBe(0x55aa);
  });

  it('is byte-deterministic', () => {
    const a = build();
    const b = build();
    expect(sha256(Buffer.concat([a.primary, a.backup]))).toBe(sha256(Buffer.concat([b.primary, b.backup])));
    const other = buildGpt({ diskSectors: sectors, diskGuid: guidFromSeed('other'), partitions: [ESP] });
    expect(sha256(other.primary)).not.toBe(sha256(a.primary));
  });

  it('keeps names as UTF-16 and attributes as 64 bits', () => {
    const p: GptPartition = { ...ESP, name: 'Ünïcode ☃ name', attributes: (1n << 63n) | 1n };
    const path = imageFile(sectors * 512, buildGpt({ diskSectors: sectors, diskGuid: DISK_GUID, partitions: [p] }));
    expect(sfdiskJson(path).partitions[0]).toMatchObject({ name: 'Ünïcode ☃ name', attrs: 'RequiredPartition GUID:63' });
    expect(mustParse(path, sectors).partitions[0]).toMatchObject({ name: 'Ünïcode ☃ name', attributes: (1n << 63n) | 1n });
  });

  it('rejects what does not fit, naming it', () => {
    const bad = (partitions: GptPartition[], extra: object = {}) => () => buildGpt({ diskSectors: sectors, diskGuid: DISK_GUID, partitions, ...extra });
    expect(bad([ESP], { sectorSize: 4096 })).toThrow(/sector size 4096 is not supported \(only 512-byte/);
    expect(bad([{ ...ESP, name: 'x'.repeat(37) }])).toThrow(/at most 36 UTF-16 code units/);
    expect(bad([{ ...ESP, name: 'x'.repeat(36) }])).not.toThrow();
    expect(bad([{ ...ESP, firstLba: 33 }])).toThrow(/outside the usable LBAs 34\.\./);
    expect(bad([{ ...ESP, lastLba: sectors - 33 }])).toThrow(/outside the usable LBAs/);
    expect(bad([ESP, { ...ESP, uniqueGuid: guidFromSeed('b'), firstLba: 33 * MiB - 1, lastLba: 40 * MiB }])).toThrow(/partitions 1 .* and 2 .* overlap/);
    expect(bad([ESP, { ...ESP, firstLba: 40 * MiB, lastLba: 41 * MiB }])).toThrow(/share the unique GUID/);
    expect(bad([{ ...ESP, typeGuid: '00000000-0000-0000-0000-000000000000' }])).toThrow(/unused entry/);
    expect(bad([{ ...ESP, uniqueGuid: 'xyz' }])).toThrow(/partition 1 \("AURAE_BOOT"\) unique GUID "xyz" is not a GUID/);
    expect(() => buildGpt({ diskSectors: 60, diskGuid: DISK_GUID, partitions: [] })).toThrow(GptError);
    try {
      bad([ESP], { sectorSize: 4096 })();
    } catch (err) {
      expect((err as GptError).code).toBe('GPT_UNSUPPORTED_SECTOR_SIZE');
    }
  });

  it('works for many-TiB disks, capping the protective MBR at 2^32-1 sectors', () => {
    const big = 16 * 2 ** 40 / 512; // 16 TiB
    const img = buildGpt({ diskSectors: big, diskGuid: DISK_GUID, partitions: [ESP] });
    expect(img.primary.readUInt32LE(446 + 12)).toBe(0xffffffff);
    const disk = memoryDisk(big);
    disk.write(0, img.primary);
    disk.write(img.backupOffset, img.backup);
    const gpt = parseGpt(disk.read, big);
    expect(gpt).toMatchObject({ source: 'primary', alternateLba: big - 1, lastUsableLba: big - 34, problems: [] });
    const plan = planStatePartition(gpt!, big, STATE);
    expect(plan).toMatchObject({ action: 'create', index: 1, partition: { firstLba: 33 * MiB, lastLba: big - 34 } });
  });
});

describe('parseGpt', () => {
  it('reads a table sfdisk wrote exactly as sfdisk reports it', () => {
    const sectors = 64 * MiB;
    const path = imageFile(sectors * 512);
    const script = [
      'label: gpt',
      `label-id: ${DISK_GUID}`,
      'unit: sectors',
      'first-lba: 34',
      `start=2048, size=65536, type=${PARTITION_TYPES.esp}, uuid=${ESP.uniqueGuid}, name="AURAE_BOOT", attrs="RequiredPartition GUID:63"`,
      `start=67584, type=${PARTITION_TYPES.linux}, uuid=${STATE.uniqueGuid}, name="AURAE_STATE"`,
      '',
    ].join('\n');
    sfdisk(['--quiet', path], script);
    const reference = sfdiskJson(path);
    const gpt = mustParse(path, sectors);
    expect(gpt).toMatchObject({ source: 'primary', diskGuid: reference.id, firstUsableLba: reference.firstlba, lastUsableLba: reference.lastlba, alternateLba: sectors - 1, problems: [] });
    expect(gpt.partitions.map((p) => ({ start: p.firstLba, size: p.lastLba - p.firstLba + 1, type: p.typeGuid, uuid: p.uniqueGuid, name: p.name }))).toEqual(
      reference.partitions.map(({ start, size, type, uuid, name }) => ({ start, size, type, uuid, name })),
    );
    expect(gpt.partitions.map((p) => p.index)).toEqual([0, 1]);
    expect(gpt.partitions[0]!.attributes).toBe((1n << 63n) | 1n);

    // sfdisk leaves the partition ending on a 1 MiB boundary short of the last usable LBA: grow fills it.
    const plan = planStatePartition(gpt, sectors, { ...STATE, minSectors: 1 });
    expect(plan).toMatchObject({ action: 'grow', index: 1, partition: { lastLba: sectors - 34, uniqueGuid: STATE.uniqueGuid } });
    if (plan.action !== 'grow') throw new Error('expected grow');
    writeAt(path, gptWrites(plan.gpt, sectors));
    expectSfdiskHappy(path);
    expect(sfdiskJson(path).partitions[1]).toMatchObject({ start: 67584, size: sectors - 34 - 67584 + 1 });
  });

  it('returns null for a disk without a GPT', () => {
    const sectors = 8 * MiB;
    expect(parseFile(imageFile(sectors * 512), sectors)).toBeNull();
    const tiny = memoryDisk(2);
    expect(parseGpt(tiny.read, 2)).toBeNull();
  });

  it('falls back to the backup when the primary header or array is corrupt, and gptWrites repairs it', () => {
    const sectors = 64 * MiB;
    const img = buildGpt({ diskSectors: sectors, diskGuid: DISK_GUID, partitions: [ESP] });
    const good = mustParse(imageFile(sectors * 512, img), sectors);

    const headerHit = imageFile(sectors * 512, img);
    writeAt(headerHit, [{ offset: 512 + 60, data: Buffer.from([0x42]) }]); // inside the disk GUID
    const fromBackup = mustParse(headerHit, sectors);
    expect(fromBackup).toMatchObject({ source: 'backup', headerLba: sectors - 1, alternateLba: 1, entriesLba: sectors - 33, partitions: good.partitions });
    expect(fromBackup.problems.join('\n')).toMatch(/primary GPT unusable: GPT header at LBA 1: header CRC mismatch/);

    const arrayHit = imageFile(sectors * 512, img);
    writeAt(arrayHit, [{ offset: 2 * 512 + 57, data: Buffer.from([0x42]) }]); // inside entry 0's name
    const fromBackup2 = mustParse(arrayHit, sectors);
    expect(fromBackup2).toMatchObject({ source: 'backup', partitions: good.partitions });
    expect(fromBackup2.problems.join('\n')).toMatch(/partition array CRC mismatch/);

    // Rewriting the table from the backup restores the primary (array back at LBA 2).
    writeAt(headerHit, gptWrites(fromBackup, sectors));
    expectSfdiskHappy(headerHit);
    expect(mustParse(headerHit, sectors)).toMatchObject({ source: 'primary', entriesLba: 2, problems: [], partitions: good.partitions });

    // Both copies gone: no table.
    writeAt(arrayHit, [{ offset: (sectors - 1) * 512 + 60, data: Buffer.from([0x42]) }]);
    expect(parseFile(arrayHit, sectors)).toBeNull();
  });

  it('finds the backup where an intact primary header says, after the device grew', () => {
    const img = buildGpt({ diskSectors: 64 * MiB, diskGuid: DISK_GUID, partitions: [ESP] });
    const path = imageFile(64 * MiB * 512, img);
    truncateSync(path, 128 * MiB * 512);
    writeAt(path, [{ offset: 2 * 512 + 57, data: Buffer.from([0x42]) }]);
    const gpt = mustParse(path, 128 * MiB);
    expect(gpt).toMatchObject({ source: 'backup', headerLba: 64 * MiB - 1 });
    // With the primary header itself broken there is nothing at the new end to fall back to.
    writeAt(path, [{ offset: 512 + 60, data: Buffer.from([0x42]) }]);
    expect(parseFile(path, 128 * MiB)).toBeNull();
  });

  it('rejects a table that no longer fits a shrunken device, and other sector sizes', () => {
    const img = buildGpt({ diskSectors: 64 * MiB, diskGuid: DISK_GUID, partitions: [ESP] });
    const path = imageFile(64 * MiB * 512, img);
    truncateSync(path, 48 * MiB * 512);
    expect(parseFile(path, 48 * MiB)).toBeNull();
    expect(() => parseGpt(fileReader(path), 48 * MiB, 4096)).toThrow(/sector size 4096 is not supported/);
  });
});

describe('planStatePartition and gptWrites', () => {
  it('creates STATE in the space a grown device added, and moves the backup to the end', () => {
    const img = buildGpt({ diskSectors: 64 * MiB, diskGuid: DISK_GUID, partitions: [ESP] });
    const path = imageFile(64 * MiB * 512, img);
    truncateSync(path, 128 * MiB * 512);
    const sectors = 128 * MiB;

    const gpt = mustParse(path, sectors);
    expect(gpt).toMatchObject({ source: 'primary', alternateLba: 64 * MiB - 1, lastUsableLba: 64 * MiB - 34 });
    expect(gpt.problems.join('\n')).toMatch(/backup GPT header is at LBA 131071, not at the last LBA 262143/);

    const plan = planStatePartition(gpt, sectors, STATE);
    expect(plan).toMatchObject({
      action: 'create',
      index: 1,
      partition: { index: 1, firstLba: 33 * MiB, lastLba: sectors - 34, name: 'AURAE_STATE', typeGuid: PARTITION_TYPES.linux, uniqueGuid: STATE.uniqueGuid, attributes: 0n },
      gpt: { alternateLba: sectors - 1, lastUsableLba: sectors - 34 },
    });
    if (plan.action !== 'create') throw new Error('expected create');

    const writes = gptWrites(plan.gpt, sectors);
    expect(writes.map((w) => w.offset)).toEqual([(sectors - 33) * 512, (sectors - 1) * 512, 2 * 512, 512, 446]);
    expect(writes.map((w) => w.what.split(' (')[0])).toEqual([
      'backup partition array',
      'backup GPT header',
      'primary partition array',
      'primary GPT header',
      'protective MBR partition table',
    ]);
    writeAt(path, writes);
    expectSfdiskHappy(path);
    const table = sfdiskJson(path);
    expect(table).toMatchObject({ id: DISK_GUID, lastlba: sectors - 34 });
    expect(table.partitions[1]).toEqual({
      node: `${path}2`,
      start: 33 * MiB,
      size: sectors - 34 - 33 * MiB + 1,
      type: PARTITION_TYPES.linux,
      uuid: STATE.uniqueGuid,
      name: 'AURAE_STATE',
    });
    expect(table.partitions[1]!.start + table.partitions[1]!.size - 1).toBe(table.lastlba);

    const after = mustParse(path, sectors);
    expect(after).toMatchObject({ source: 'primary', alternateLba: sectors - 1, problems: [] });
    expect(after.partitions).toEqual(plan.gpt.partitions);
    expect(planStatePartition(after, sectors, STATE)).toMatchObject({ action: 'none', reason: expect.stringMatching(/already ends at the last usable LBA/) });
  });

  it('grows STATE when the device grew, and leaves small gains alone', () => {
    const state: GptPartition = { typeGuid: STATE.typeGuid, uniqueGuid: STATE.uniqueGuid, firstLba: 33 * MiB, lastLba: 64 * MiB - 34, name: STATE.name };
    const img = buildGpt({ diskSectors: 64 * MiB, diskGuid: DISK_GUID, partitions: [ESP, state] });
    const path = imageFile(64 * MiB * 512, img);

    truncateSync(path, 72 * MiB * 512); // +8 MiB: less than minSectors (16 MiB)
    expect(planStatePartition(mustParse(path, 72 * MiB), 72 * MiB, STATE)).toMatchObject({ action: 'none', reason: expect.stringMatching(/fewer than 32768/) });

    truncateSync(path, 96 * MiB * 512);
    const sectors = 96 * MiB;
    const plan = planStatePartition(mustParse(path, sectors), sectors, STATE);
    expect(plan).toMatchObject({ action: 'grow', index: 1, partition: { ...state, lastLba: sectors - 34, index: 1, attributes: 0n } });
    if (plan.action !== 'grow') throw new Error('expected grow');
    writeAt(path, gptWrites(plan.gpt, sectors));
    expectSfdiskHappy(path);
    expect(sfdiskJson(path).partitions[1]).toMatchObject({ start: 33 * MiB, size: sectors - 34 - 33 * MiB + 1, uuid: STATE.uniqueGuid });
    expect(planStatePartition(mustParse(path, sectors), sectors, STATE).action).toBe('none');
  });

  it('refuses when STATE cannot grow or there is no room, and says why', () => {
    const sectors = 128 * MiB;
    const base: Gpt = {
      source: 'primary',
      headerLba: 1,
      alternateLba: sectors - 1,
      diskGuid: DISK_GUID,
      firstUsableLba: 34,
      lastUsableLba: sectors - 34,
      entriesLba: 2,
      entryCount: 128,
      entrySize: 128,
      partitions: [],
      problems: [],
    };
    const part = (index: number, name: string, firstLba: number, lastLba: number) => ({
      index,
      name,
      firstLba,
      lastLba,
      typeGuid: PARTITION_TYPES.linux,
      uniqueGuid: guidFromSeed(name),
      attributes: 0n,
    });

    // STATE with a partition after it and free space beyond that.
    const blocked = { ...base, partitions: [part(0, 'AURAE_STATE', 1 * MiB, 40 * MiB - 1), part(1, 'other', 40 * MiB, 60 * MiB - 1)] };
    expect(planStatePartition(blocked, sectors, STATE)).toEqual({ action: 'refuse', reason: expect.stringMatching(/cannot grow: partition 2 "other" lies after it/) });
    // The same with no free space after the other partition: nothing to gain, nothing to refuse.
    const full = { ...base, partitions: [part(0, 'AURAE_STATE', 1 * MiB, 40 * MiB - 1), part(1, 'other', 40 * MiB, sectors - 34)] };
    expect(planStatePartition(full, sectors, STATE).action).toBe('none');
    // Absent and the disk is full.
    const noRoom = { ...base, partitions: [part(0, 'AURAE_BOOT', 1 * MiB, sectors - 8 * MiB)] };
    expect(planStatePartition(noRoom, sectors, STATE)).toEqual({ action: 'refuse', reason: expect.stringMatching(/no room for "AURAE_STATE": \d+ sectors free .* need 32768/) });
    // Two partitions with the name.
    const twice = { ...base, partitions: [part(0, 'AURAE_STATE', 1 * MiB, 2 * MiB - 1), part(1, 'AURAE_STATE', 2 * MiB, 3 * MiB - 1)] };
    expect(planStatePartition(twice, sectors, STATE)).toMatchObject({ action: 'refuse', reason: expect.stringMatching(/2 partitions are named "AURAE_STATE" \(1, 2\)/) });
    // The device shrank below the table.
    expect(planStatePartition(full, 100 * MiB, STATE)).toMatchObject({ action: 'refuse', reason: expect.stringMatching(/smaller than its partition table/) });
    // All entry slots in use.
    const slots = { ...base, entryCount: 2, partitions: [part(0, 'a', 1 * MiB, 2 * MiB - 1), part(1, 'b', 2 * MiB, 3 * MiB - 1)] };
    expect(planStatePartition(slots, sectors, STATE)).toMatchObject({ action: 'refuse', reason: expect.stringMatching(/no free entry/) });
    // A free slot before used ones is taken first.
    const hole = { ...base, partitions: [part(1, 'AURAE_BOOT', 1 * MiB, 33 * MiB - 1)] };
    expect(planStatePartition(hole, sectors, STATE)).toMatchObject({ action: 'create', index: 0, partition: { firstLba: 33 * MiB } });
    // An empty table: the first aligned LBA.
    expect(planStatePartition(base, sectors, STATE)).toMatchObject({ action: 'create', index: 0, partition: { firstLba: 1 * MiB, lastLba: sectors - 34 } });
    // Bad specs are errors, not plans.
    expect(() => planStatePartition(base, sectors, { ...STATE, minSectors: 0 })).toThrow(/minSectors must be a positive integer/);
    expect(() => planStatePartition(base, sectors, { ...STATE, uniqueGuid: 'nope' })).toThrow(/unique GUID "nope" is not a GUID/);
  });

  it('leaves a readable table after a power cut between any two writes', () => {
    const small = 64 * MiB;
    const sectors = 128 * MiB;
    const img = buildGpt({ diskSectors: small, diskGuid: DISK_GUID, partitions: [ESP] });
    const before = memoryDisk(sectors);
    before.write(0, img.primary);
    before.write(img.backupOffset, img.backup);
    const plan = planStatePartition(parseGpt(before.read, sectors)!, sectors, STATE);
    if (plan.action !== 'create') throw new Error('expected create');
    const writes = gptWrites(plan.gpt, sectors);
    const oldNames = ['AURAE_BOOT'];
    const newNames = ['AURAE_BOOT', 'AURAE_STATE'];
    for (let done = 0; done <= writes.length; done++) {
      const disk = memoryDisk(sectors);
      disk.write(0, img.primary);
      disk.write(img.backupOffset, img.backup);
      for (const w of writes.slice(0, done)) disk.write(w.offset, w.data);
      const gpt = parseGpt(disk.read, sectors);
      expect(gpt, `after ${done} writes`).not.toBeNull();
      expect([oldNames, newNames], `after ${done} writes`).toContainEqual(gpt!.partitions.map((p) => p.name));
    }
  });

  it('refuses to write partitions that do not fit the disk', () => {
    const gpt = mustParse(imageFile(64 * MiB * 512, buildGpt({ diskSectors: 64 * MiB, diskGuid: DISK_GUID, partitions: [ESP] })), 64 * MiB);
    expect(() => gptWrites(gpt, 32 * MiB)).toThrow(/partition 1 \("AURAE_BOOT"\): LBA 2048\.\.67583 lies outside the usable LBAs 34\.\.65502/);
    expect(() => gptWrites({ ...gpt, entrySize: 256 }, 64 * MiB)).toThrow(/256-byte entries/);
    expect(() => gptWrites(gpt, 64 * MiB, 4096)).toThrow(/sector size 4096/);
  });
});
