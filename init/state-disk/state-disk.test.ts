import { describe, expect, it } from 'vitest';
import { buildGpt, guidFromSeed, parseGpt, PARTITION_TYPES } from '../disk';
import { IDENTITY_PARTITION_NAME, IDENTITY_PARTITION_TYPE } from '../identity/document';
import { createMemoryLogger } from '../log';
import { extLabel, fat32Label, mountStorage, parseEfiGuidVariable, partitionName, STATE_LABEL, type StorageDeps } from './index';

const MIB = 1024 * 1024;

function extHead(label: string | null): Buffer {
  const head = Buffer.alloc(2048);
  if (label !== null) {
    head.writeUInt16LE(0xef53, 1024 + 56);
    head.write(label, 1024 + 120, 'utf8');
  }
  return head;
}

function fatHead(label: string): Buffer {
  const head = Buffer.alloc(2048);
  head.write('FAT32   ', 0x52, 'latin1');
  head.write(label.padEnd(11, ' '), 0x47, 'latin1');
  head.writeUInt16LE(0xaa55, 510);
  return head;
}

/** A fake node: named devices with heads, one GPT disk `vda` of `diskMiB` whose partition 1 is AURAE_BOOT. */
function fakeNode(o: { diskMiB?: number; extraHeads?: Record<string, Buffer | null>; run?: StorageDeps['run']; mountFails?: string; loader?: string; identity?: boolean } = {}) {
  let guids = 0;
  const diskMiB = o.diskMiB ?? 256;
  const sectors = (diskMiB * MIB) / 512;
  const disk = Buffer.alloc(diskMiB * MIB);
  const gpt = buildGpt({
    diskSectors: (64 * MIB) / 512, // built small, then "flashed" to a larger disk: the backup is not at the end
    diskGuid: guidFromSeed('disk'),
    partitions: [
      { typeGuid: PARTITION_TYPES.esp, uniqueGuid: guidFromSeed('esp'), firstLba: 2048, lastLba: 2048 + 32 * 2048 - 1, name: 'AURAE_BOOT' },
      // disk.raw's identity partition (image/disk): 1 MiB right after the ESP.
      ...(o.identity ? [{ typeGuid: IDENTITY_PARTITION_TYPE, uniqueGuid: guidFromSeed('identity'), firstLba: 2048 + 32 * 2048, lastLba: 2048 + 33 * 2048 - 1, name: IDENTITY_PARTITION_NAME }] : []),
    ],
  });
  gpt.primary.copy(disk, 0);
  gpt.backup.copy(disk, gpt.backupOffset);
  const heads: Record<string, Buffer | null> = { vda: disk.subarray(0, 2048), vda1: fatHead('AURAE_BOOT'), ...o.extraHeads };
  const mounts: string[][] = [];
  const commands: string[] = [];
  const log = createMemoryLogger();
  const deps: StorageDeps = {
    syscalls: {
      mount: (source, target, fstype) => {
        if (o.mountFails && source === o.mountFails) throw Object.assign(new Error(`mount(${source}): EUCLEAN`), { code: 'EUCLEAN' });
        mounts.push([String(source), target, String(fstype)]);
      },
    },
    listBlockDevices: () => Object.keys(heads),
    readHead: (n) => heads[n] ?? null,
    parentDisk: (n) => (/^vda\d+$/.test(n) ? 'vda' : null),
    partitionStart: (n) => {
      const table = parseGpt((off, len) => disk.subarray(off, off + len), sectors);
      return table?.partitions.find((p) => `vda${p.index + 1}` === n)?.firstLba ?? null;
    },
    diskInfo: () => ({ sectors, readOnly: false }),
    readAt: (_d, offset, length) => Buffer.from(disk.subarray(offset, offset + length)),
    writeAt: (_d, writes) => {
      for (const w of writes) w.data.copy(disk, w.offset);
    },
    run: (file, args, timeoutMs) => {
      commands.push([file, ...args].join(' '));
      if (file === 'blockdev') {
        const table = parseGpt((off, len) => disk.subarray(off, off + len), sectors);
        for (const p of table?.partitions ?? []) heads[`vda${p.index + 1}`] ??= Buffer.alloc(2048);
      }
      if (file === 'mke2fs') heads[args.at(-1)!.replace('/dev/', '')] = extHead(STATE_LABEL);
      return o.run?.(file, args, timeoutMs) ?? { code: 0, output: '' };
    },
    exists: (p) => p.replace('/dev/', '') in heads,
    sleep: async () => {},
    randomGuid: () => guidFromSeed(`random-${guids++}`),
    loaderPartUuid: () => o.loader ?? null,
    mkdir: () => {},
    log,
  };
  return { deps, disk, sectors, heads, mounts, commands, log };
}

describe('labels', () => {
  it('reads ext and FAT32 labels and ignores other filesystems', () => {
    expect(extLabel(extHead(STATE_LABEL))).toBe('AURAE_STATE');
    expect(extLabel(extHead(''))).toBe('');
    expect(extLabel(extHead(null))).toBeNull();
    expect(extLabel(Buffer.alloc(100))).toBeNull();
    expect(fat32Label(fatHead('AURAE_BOOT'))).toBe('AURAE_BOOT');
    expect(fat32Label(extHead(STATE_LABEL))).toBeNull();
  });

  it('names partitions as the kernel does', () => {
    expect(partitionName('vda', 2)).toBe('vda2');
    expect(partitionName('nvme0n1', 2)).toBe('nvme0n1p2');
    expect(partitionName('mmcblk0', 1)).toBe('mmcblk0p1');
  });
});

describe('parseEfiGuidVariable', () => {
  it('reads the UTF-16 GUID after the 4 attribute bytes', () => {
    const raw = Buffer.concat([Buffer.from([6, 0, 0, 0]), Buffer.from('6D7D5C4E-1A2B-4C3D-8E9F-0A1B2C3D4E5F\0', 'utf16le')]);
    expect(parseEfiGuidVariable(raw)).toBe('6d7d5c4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f');
    expect(parseEfiGuidVariable(Buffer.from([6, 0, 0, 0, 65, 0]))).toBeNull();
  });
});

describe('mountStorage', () => {
  it('first boot of a flashed disk: creates STATE after the ESP, filling the disk, makes ext4, mounts both volumes', async () => {
    const node = fakeNode();
    const status = await mountStorage(node.deps);
    const table = parseGpt((off, len) => node.disk.subarray(off, off + len), node.sectors)!;
    expect(table.partitions.map((p) => [p.name, p.lastLba])).toEqual([
      ['AURAE_BOOT', 2048 + 32 * 2048 - 1],
      ['AURAE_STATE', node.sectors - 34],
    ]);
    expect(table.alternateLba).toBe(node.sectors - 1);
    expect(node.commands).toEqual(['blockdev --rereadpt /dev/vda', 'mke2fs -t ext4 -q -F -L AURAE_STATE /dev/vda2', 'e2fsck -p /dev/vda2']);
    expect(node.mounts).toEqual([
      ['/dev/vda2', '/var/lib/aurae', 'ext4'],
      ['/dev/vda1', '/boot', 'vfat'],
    ]);
    expect(status).toEqual({
      boot: { device: 'vda1', mounted: true, reason: null },
      state: { device: 'vda2', mounted: true, actions: ['created'], degraded: null, reason: null },
    });
  });

  it('with the identity partition after the ESP (disk.raw): STATE goes after it, leaves it untouched, and still grows', async () => {
    const node = fakeNode({ identity: true });
    node.disk.write('{"identity":"document"}', (2048 + 32 * 2048) * 512);
    const before = Buffer.from(node.disk.subarray((2048 + 32 * 2048) * 512, (2048 + 33 * 2048) * 512));
    const status = await mountStorage(node.deps);
    expect(status.state).toMatchObject({ device: 'vda3', mounted: true, actions: ['created'] });
    const table = parseGpt((off, len) => node.disk.subarray(off, off + len), node.sectors)!;
    expect(table.partitions.map((p) => [p.index + 1, p.name, p.firstLba, p.lastLba])).toEqual([
      [1, 'AURAE_BOOT', 2048, 2048 + 32 * 2048 - 1],
      [2, IDENTITY_PARTITION_NAME, 2048 + 32 * 2048, 2048 + 33 * 2048 - 1],
      [3, 'AURAE_STATE', 2048 + 33 * 2048, node.sectors - 34],
    ]);
    expect(table.partitions[1]!.typeGuid).toBe(IDENTITY_PARTITION_TYPE);
    expect(node.disk.subarray((2048 + 32 * 2048) * 512, (2048 + 33 * 2048) * 512).equals(before)).toBe(true);
    expect(node.commands).toEqual(['blockdev --rereadpt /dev/vda', 'mke2fs -t ext4 -q -F -L AURAE_STATE /dev/vda3', 'e2fsck -p /dev/vda3']);

    const bigger = fakeNode({ diskMiB: 512, identity: true });
    node.disk.copy(bigger.disk);
    bigger.heads.vda3 = extHead(STATE_LABEL);
    bigger.heads.vda2 = Buffer.alloc(2048);
    const grown = await mountStorage(bigger.deps);
    expect(grown.state).toMatchObject({ device: 'vda3', actions: ['grown'] });
    const after = parseGpt((off, len) => bigger.disk.subarray(off, off + len), bigger.sectors)!;
    expect(after.partitions.map((p) => [p.name, p.lastLba])).toEqual([
      ['AURAE_BOOT', 2048 + 32 * 2048 - 1],
      [IDENTITY_PARTITION_NAME, 2048 + 33 * 2048 - 1],
      ['AURAE_STATE', bigger.sectors - 34],
    ]);
  });

  it('second boot: nothing to create; a grown disk grows the partition and then the filesystem online', async () => {
    const node = fakeNode();
    await mountStorage(node.deps);
    node.commands.length = 0;
    const again = await mountStorage(node.deps);
    expect(again.state.actions).toEqual([]);
    expect(node.commands).toEqual(['e2fsck -p /dev/vda2']);

    const bigger = fakeNode({ diskMiB: 512 });
    node.disk.copy(bigger.disk); // the same disk image, copied onto a larger disk
    bigger.heads.vda2 = extHead(STATE_LABEL);
    const grown = await mountStorage(bigger.deps);
    expect(grown.state.actions).toEqual(['grown']);
    expect(bigger.commands).toEqual(['blockdev --rereadpt /dev/vda', 'e2fsck -p /dev/vda2', 'resize2fs /dev/vda2']);
    const table = parseGpt((off, len) => bigger.disk.subarray(off, off + len), bigger.sectors)!;
    expect(table.partitions[1]?.lastLba).toBe(bigger.sectors - 34);
  });

  it('repairs with e2fsck -y when -p stops short, and reports what it did', async () => {
    const node = fakeNode({ run: (file, args) => (file === 'e2fsck' ? { code: args[0] === '-p' ? 4 : 1, output: 'fixed' } : { code: 0, output: '' }) });
    const status = await mountStorage(node.deps);
    expect(node.commands.filter((c) => c.startsWith('e2fsck'))).toEqual(['e2fsck -p /dev/vda2', 'e2fsck -y /dev/vda2']);
    expect(status.state).toMatchObject({ mounted: true, actions: ['created', 'repaired'], degraded: null });
  });

  it('an unrepairable or unmountable STATE falls back to RAM, degraded, and the boot volume still mounts', async () => {
    const broken = fakeNode({ run: (file) => (file === 'e2fsck' ? { code: 8, output: 'e2fsck: bad superblock' } : { code: 0, output: '' }) });
    const status = await mountStorage(broken.deps);
    expect(status.state).toMatchObject({ mounted: false, degraded: expect.stringMatching(/e2fsck could not repair \/dev\/vda2 \(exit 8\): e2fsck: bad superblock/) });
    expect(broken.mounts).toEqual([['/dev/vda1', '/boot', 'vfat']]);
    expect(broken.log.lines.join('\n')).toMatch(/using RAM for \/var\/lib\/aurae/);

    const unmountable = fakeNode({ mountFails: '/dev/vda2' });
    expect((await mountStorage(unmountable.deps)).state).toMatchObject({ mounted: false, degraded: expect.stringMatching(/mounting \/dev\/vda2 failed: mount\(\/dev\/vda2\): EUCLEAN/) });
  });

  it('no room for STATE on the boot disk is degraded (the node booted from a disk but cannot keep state)', async () => {
    const node = fakeNode({ diskMiB: 64 + 16 });
    const status = await mountStorage(node.deps);
    expect(status.state).toMatchObject({ mounted: false, device: null, degraded: expect.stringMatching(/\/dev\/vda: .*/) });
    expect(node.commands).toEqual([]);
  });

  it('a first boot cut short after the GPT write: a blank partition named STATE is formatted, one with data is not', async () => {
    const node = fakeNode();
    await mountStorage({ ...node.deps, run: (file, args, t) => (file === 'mke2fs' ? { code: null, output: 'mke2fs killed by SIGKILL' } : node.deps.run(file, args, t)) });
    expect(node.heads.vda2).toEqual(Buffer.alloc(2048)); // partition there, no filesystem
    node.commands.length = 0;
    const again = await mountStorage(node.deps);
    expect(node.commands).toEqual(['mke2fs -t ext4 -q -F -L AURAE_STATE /dev/vda2', 'e2fsck -p /dev/vda2']);
    expect(again.state).toMatchObject({ device: 'vda2', mounted: true, actions: ['created'] });

    const junk = fakeNode();
    await mountStorage({ ...junk.deps, run: (file, args, t) => (file === 'mke2fs' ? { code: 1, output: 'mke2fs: I/O error' } : junk.deps.run(file, args, t)) });
    const start = parseGpt((off, len) => junk.disk.subarray(off, off + len), junk.sectors)!.partitions[1]!.firstLba;
    junk.disk.write('precious', start * 512 + 4096);
    junk.commands.length = 0;
    const refused = await mountStorage(junk.deps);
    expect(junk.commands).toEqual([]);
    expect(refused.state.degraded).toMatch(/\/dev\/vda2 is named AURAE_STATE but holds no ext4 filesystem labelled AURAE_STATE and is not blank: not formatting it/);
  });

  it('a new partition starts blank: an old filesystem in that place never comes back', async () => {
    const node = fakeNode();
    node.disk.write('old superblock', 33 * MIB + 1024);
    await mountStorage(node.deps);
    expect(node.disk.subarray(33 * MIB, 34 * MIB).every((b) => b === 0)).toBe(true);
  });

  it('a STATE filesystem whose partition has another GPT name is used as it is: no second STATE partition', async () => {
    const node = fakeNode();
    const table = parseGpt((off, len) => node.disk.subarray(off, off + len), node.sectors)!;
    const other = buildGpt({ diskSectors: node.sectors, diskGuid: table.diskGuid, partitions: [...table.partitions, { typeGuid: PARTITION_TYPES.linux, uniqueGuid: guidFromSeed('x'), firstLba: 67584, lastLba: 67584 + 65536 - 1, name: 'Linux filesystem' }] });
    other.primary.copy(node.disk, 0);
    other.backup.copy(node.disk, other.backupOffset);
    node.heads.vda2 = extHead(STATE_LABEL);
    const status = await mountStorage(node.deps);
    expect(parseGpt((off, len) => node.disk.subarray(off, off + len), node.sectors)!.partitions).toHaveLength(2);
    expect(status.state).toMatchObject({ device: 'vda2', mounted: true, actions: [] });
    expect(node.log.lines.join('\n')).toMatch(/not changing the partition table/);
  });

  it('never touches a disk the kernel does not read as GPT (no protective MBR), or an ambiguous boot volume', async () => {
    const mbr = fakeNode();
    mbr.disk[450] = 0x83;
    const before = Buffer.from(mbr.disk);
    const status = await mountStorage(mbr.deps);
    expect(mbr.disk.equals(before)).toBe(true);
    expect(status.state.degraded).toMatch(/holds AURAE_BOOT but no protective MBR .*: not touching its partitions/);

    const two = fakeNode({ extraHeads: { vdb: fatHead('AURAE_BOOT') } });
    const untouched = Buffer.from(two.disk);
    await mountStorage(two.deps);
    expect(two.disk.equals(untouched)).toBe(true);
    expect(two.log.lines.join('\n')).toMatch(/2 volumes labelled AURAE_BOOT \(\/dev\/vda1, \/dev\/vdb\): using \/dev\/vda1; no partition is created/);
  });

  it('first boot gives the disk and its ESP GUIDs of their own (every flashed copy shares the image\'s)', async () => {
    const node = fakeNode();
    await mountStorage(node.deps);
    const table = parseGpt((off, len) => node.disk.subarray(off, off + len), node.sectors)!;
    expect(table.diskGuid).not.toBe(guidFromSeed('disk'));
    expect(table.partitions[0]!.uniqueGuid).not.toBe(guidFromSeed('esp'));
    expect(new Set([table.diskGuid, ...table.partitions.map((p) => p.uniqueGuid)]).size).toBe(3);
  });

  it('with two boot volumes, the one the firmware booted (LoaderDevicePartUUID) is used and provisioned', async () => {
    const esp = guidFromSeed('esp').toLowerCase();
    const node = fakeNode({ extraHeads: { vdb: fatHead('AURAE_BOOT') }, loader: esp });
    const status = await mountStorage(node.deps);
    expect(status.boot.device).toBe('vda1');
    expect(status.state).toMatchObject({ device: 'vda2', actions: ['created'] });
    expect(node.log.lines.join('\n')).toMatch(/the firmware booted \/dev\/vda1 \(LoaderDevicePartUUID /);
    expect(node.log.lines.join('\n')).toMatch(/boot volume: \/dev\/vda1 \(AURAE_BOOT\) mounted read-only on \/boot \(the ESP the firmware booted\)/);
  });

  it('prefers the STATE on the boot disk over one on another disk; a separate STATE disk alone is used as given', async () => {
    const node = fakeNode();
    await mountStorage(node.deps); // creates vda2
    node.heads.sda = extHead(STATE_LABEL); // then a stick with another STATE is plugged in
    expect((await mountStorage(node.deps)).state.device).toBe('vda2');

    const separate = fakeNode({ extraHeads: { sda: extHead(STATE_LABEL) } });
    const status = await mountStorage(separate.deps);
    expect(status.state).toMatchObject({ device: 'sda', mounted: true, actions: [] });
    expect(separate.commands).toEqual(['e2fsck -p /dev/sda']); // the boot disk is left as flashed
  });

  it('e2fsck killed by its timeout is degraded (never mount a half-repaired filesystem); e2fsck missing is not', async () => {
    const killed = fakeNode({ run: (file) => (file === 'e2fsck' ? { code: null, output: 'e2fsck killed by SIGTERM' } : { code: 0, output: '' }) });
    expect((await mountStorage(killed.deps)).state).toMatchObject({ mounted: false, degraded: 'e2fsck on /dev/vda2 did not finish: e2fsck killed by SIGTERM' });
    const missing = fakeNode({ run: (file) => (file === 'e2fsck' ? { code: null, output: 'spawnSync e2fsck ENOENT', missing: true } : { code: 0, output: '' }) });
    expect((await mountStorage(missing.deps)).state).toMatchObject({ mounted: true, degraded: null });
  });

  it('a torn primary GPT (power cut during the first-boot write) is restored from the backup, then all goes on', async () => {
    const node = fakeNode();
    await mountStorage(node.deps); // vda2 created
    // The kernel sees no partitions when the primary is bad: only the whole disk.
    node.disk.fill(0, 512 + 16, 512 + 20); // header CRC broken
    for (const name of ['vda1', 'vda2']) delete node.heads[name];
    node.commands.length = 0;
    const status = await mountStorage({ ...node.deps, run: (file, args, t) => {
      if (file === 'blockdev') {
        node.heads.vda1 = fatHead('AURAE_BOOT');
        node.heads.vda2 = extHead(STATE_LABEL);
        return { code: 0, output: '' };
      }
      return node.deps.run(file, args, t);
    } });
    expect(node.log.lines.join('\n')).toMatch(/storage: \/dev\/vda: primary GPT unusable: .*restoring the primary GPT from the backup/);
    expect(parseGpt((off, len) => node.disk.subarray(off, off + len), node.sectors)?.source).toBe('primary');
    expect(status.state).toMatchObject({ device: 'vda2', mounted: true });
    expect(status.boot).toMatchObject({ device: 'vda1', mounted: true });
  });

  it('a failing partition re-read is reported and leaves state in RAM, degraded', async () => {
    const node = fakeNode({ run: (file) => (file === 'blockdev' ? { code: 1, output: 'BLKRRPART: Device or resource busy' } : { code: 0, output: '' }) });
    const status = await mountStorage(node.deps);
    expect(status.state.degraded).toMatch(/blockdev --rereadpt \/dev\/vda failed: BLKRRPART: Device or resource busy/);
  });

  it('direct boot with separate disks: mounts the labelled volumes, creates nothing', async () => {
    const heads: Record<string, Buffer | null> = { vda: extHead(STATE_LABEL), vdb: fatHead('AURAE_BOOT'), loop0: extHead(STATE_LABEL), vdc: null };
    const node = fakeNode();
    const deps: StorageDeps = { ...node.deps, listBlockDevices: () => Object.keys(heads), readHead: (n) => heads[n] ?? null, parentDisk: () => null };
    const status = await mountStorage(deps);
    expect(node.commands).toEqual(['e2fsck -p /dev/vda']);
    expect(node.mounts).toEqual([
      ['/dev/vda', '/var/lib/aurae', 'ext4'],
      ['/dev/vdb', '/boot', 'vfat'],
    ]);
    expect(status.state.degraded).toBeNull();
  });

  it('no volumes at all: RAM by choice (a warning, not degraded)', async () => {
    const node = fakeNode();
    const deps: StorageDeps = { ...node.deps, listBlockDevices: () => ['vda'], readHead: () => extHead(null) };
    const status = await mountStorage(deps);
    expect(status).toEqual({
      boot: { device: null, mounted: false, reason: 'no FAT32 filesystem labelled AURAE_BOOT' },
      state: { device: null, mounted: false, actions: [], degraded: null, reason: 'no ext4 filesystem labelled AURAE_STATE' },
    });
    expect(node.log.lines.join('\n')).toMatch(/state is lost at reboot \(attach one: mkfs.ext4 -L AURAE_STATE DISK\)/);
  });
});
