import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { runAer } from '../cli/program';
import { type BlockDevice, type HostProbe, type MountEntry, type PathStat, devnoOf, parseMountinfo, parseSwaps } from './block-devices';
import {
  FlashError,
  type FlashDeps,
  type FlashFiles,
  type OpenMode,
  ProgressThrottle,
  checkImage,
  checkTarget,
  confirmationQuestion,
  confirmationStep,
  formatProgress,
  isYes,
  parseSidecar,
  runFlash,
} from './flash';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// ---- A fake host: a laptop disk sda with root on sda2, a USB stick sdb, a mounted NVMe disk, an LVM PV, a swap disk.

function dev(name: string, devno: string, extra: Partial<BlockDevice> = {}): BlockDevice {
  return { name, devno, partition: false, disk: name, sizeBytes: 32 * GiB, readOnly: false, holders: [], slaves: [], ...extra };
}
function part(name: string, disk: string, devno: string, extra: Partial<BlockDevice> = {}): BlockDevice {
  return dev(name, devno, { partition: true, disk, sizeBytes: GiB, ...extra });
}
const block = (rdevno: string): PathStat => ({ kind: 'block', size: 0, dev: 5n, ino: BigInt(rdevno.replace(':', '')), rdevno });
const file = (size: number, ino: bigint, dev = 2049n): PathStat => ({ kind: 'file', size, dev, ino });

interface HostSpec {
  devices: BlockDevice[];
  mounts: MountEntry[];
  swaps: string[];
  nodes: Record<string, PathStat>;
  realpaths: Record<string, string>;
  /** Paths that are symbolic links themselves (their target's node, if any, is in nodes under the link's path). */
  symlinks: Set<string>;
}

function baseHost(): HostSpec {
  return {
    devices: [
      dev('sda', '8:0', { model: 'Samsung SSD 870' }),
      part('sda1', 'sda', '8:1'),
      part('sda2', 'sda', '8:2'),
      dev('sdb', '8:16', { model: 'SanDisk Ultra', sizeBytes: 28.7 * GiB }),
      part('sdb1', 'sdb', '8:17'),
      dev('nvme0n1', '259:0'),
      part('nvme0n1p1', 'nvme0n1', '259:1'),
      dev('sdc', '8:32', { holders: [] }),
      part('sdc1', 'sdc', '8:33', { holders: ['dm-1'] }),
      dev('dm-1', '253:1', { slaves: ['sdc1'] }),
      dev('sdd', '8:48'),
      part('sdd1', 'sdd', '8:49'),
      dev('loop0', '7:0', { sizeBytes: 80 * MiB, backingFile: '/srv/disk.img' }),
      dev('loop1', '7:1', { sizeBytes: 0 }),
      dev('sde', '8:64', { sizeBytes: 32 * MiB }),
      dev('sr0', '11:0', { readOnly: true }),
    ],
    mounts: [
      { devno: '8:2', mountPoint: '/', source: '/dev/sda2', fsType: 'ext4' },
      { devno: '8:1', mountPoint: '/boot/efi', source: '/dev/sda1', fsType: 'vfat' },
      { devno: '0:22', mountPoint: '/proc', source: 'proc', fsType: 'proc' },
      { devno: '259:1', mountPoint: '/data', source: '/dev/nvme0n1p1', fsType: 'ext4' },
    ],
    swaps: ['/dev/sdd1'],
    nodes: {
      '/img/disk.raw': file(64 * MiB, 100n),
      '/img/link.raw': file(64 * MiB, 100n),
      '/img/empty.raw': file(0, 101n),
      '/img/copy.raw': file(10, 102n),
      '/srv/disk.img': file(80 * MiB, 103n),
      '/swapfile': file(GiB, 104n),
      '/img': { kind: 'directory', size: 0, dev: 2049n, ino: 2n },
      '/dev/ttyS0': { kind: 'other', size: 0, dev: 5n, ino: 9n },
      '/dev/sda': block('8:0'),
      '/dev/sda1': block('8:1'),
      '/dev/sda2': block('8:2'),
      '/dev/sdb': block('8:16'),
      '/dev/disk/by-id/usb-SanDisk': block('8:16'),
      '/dev/sdb1': block('8:17'),
      '/dev/nvme0n1': block('259:0'),
      '/dev/sdc': block('8:32'),
      '/dev/sdd': block('8:48'),
      '/dev/sdd1': block('8:49'),
      '/dev/loop0': block('7:0'),
      '/dev/loop1': block('7:1'),
      '/dev/sde': block('8:64'),
      '/dev/sr0': block('11:0'),
      '/dev/dm-1': block('253:1'),
      '/dev/zz': block('8:240'),
    },
    realpaths: {},
    symlinks: new Set(),
  };
}

function probeOf(spec: HostSpec): HostProbe {
  return {
    stat: (p) => spec.nodes[p],
    isSymlink: (p) => spec.symlinks.has(p),
    realpath: (p) => spec.realpaths[p] ?? p,
    blockDevices: () => spec.devices,
    mounts: () => spec.mounts,
    swaps: () => spec.swaps,
  };
}

const IMAGE = '/img/disk.raw';

function refusal(target: string, spec = baseHost()): FlashError {
  const probe = probeOf(spec);
  try {
    checkTarget(target, probe, checkImage(IMAGE, probe));
  } catch (err) {
    if (err instanceof FlashError) return err;
    throw err;
  }
  throw new Error(`checkTarget(${target}) did not refuse`);
}

describe('host parsers', () => {
  it('mountinfo: devno, unescaped mount point, fs type and source after the optional fields', () => {
    const text = [
      '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard',
      '36 35 98:0 /mnt1 /media/my\\040stick rw,noatime master:1 shared:2 - vfat /dev/sdb1 rw',
      'garbage',
      '',
    ].join('\n');
    expect(parseMountinfo(text)).toEqual([
      { devno: '254:0', mountPoint: '/', fsType: 'ext4', source: '/dev/vda' },
      { devno: '98:0', mountPoint: '/media/my stick', fsType: 'vfat', source: '/dev/sdb1' },
    ]);
  });

  it('/proc/swaps: the Filename column without the header', () => {
    expect(parseSwaps('Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sdd1  partition\t8388604\t0\t-2\n/swap\\040file file 1024 0 -3\n')).toEqual(['/dev/sdd1', '/swap file']);
    expect(parseSwaps('Filename Type Size Used Priority\n')).toEqual([]);
  });

  it('devnoOf decodes dev_t like glibc, including minors above 255', () => {
    expect(devnoOf((8n << 8n) | 16n)).toBe('8:16');
    // makedev(259, 300): minor's high bits live above bit 20.
    const major = 259n;
    const minor = 300n;
    const rdev = ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);
    expect(devnoOf(rdev)).toBe('259:300');
  });
});

describe('checkImage', () => {
  const probe = probeOf(baseHost());
  it('accepts a non-empty regular file', () => {
    expect(checkImage(IMAGE, probe)).toEqual({ path: IMAGE, size: 64 * MiB, dev: 2049n, ino: 100n });
  });
  it('refuses a missing, non-regular or empty IMAGE, naming it', () => {
    expect(() => checkImage('/img/nope.raw', probe)).toThrow('IMAGE /img/nope.raw does not exist: pass the path of a disk image such as out/image/disk.raw');
    expect(() => checkImage('/dev/sdb', probe)).toThrow('IMAGE /dev/sdb is a block device, not a regular file');
    expect(() => checkImage('/img', probe)).toThrow('IMAGE /img is a directory, not a regular file');
    expect(() => checkImage('/img/empty.raw', probe)).toThrow('IMAGE /img/empty.raw is empty (0 bytes): the build or download did not finish');
  });
});

describe('checkTarget refuses', () => {
  it('a partition, naming the whole disk to use instead', () => {
    const e = refusal('/dev/sdb1');
    expect(e.code).toBe('partition');
    expect(e.message).toBe('TARGET /dev/sdb1 is a partition of /dev/sdb: flash the whole disk, e.g. /dev/sdb, not /dev/sdb1');
  });

  it("the host's root disk (root on a partition), before calling it merely mounted", () => {
    const e = refusal('/dev/sda');
    expect(e.code).toBe('root-disk');
    expect(e.message).toBe("TARGET /dev/sda holds this host's root filesystem: it is the disk this machine runs from; pick another disk (`lsblk -d` lists them)");
  });

  it('the root disk when root is on dm-crypt/LVM over one of its partitions, and not listed by devno (btrfs: found by source)', () => {
    const spec = baseHost();
    spec.devices.push(dev('dm-0', '253:0', { slaves: ['sdb1'] }));
    spec.nodes['/dev/mapper/root'] = block('253:0');
    // btrfs reports an anonymous devno: only the source names the device.
    spec.mounts[0] = { devno: '0:31', mountPoint: '/', source: '/dev/mapper/root', fsType: 'btrfs' };
    const e = refusal('/dev/disk/by-id/usb-SanDisk', spec);
    expect(e.code).toBe('root-disk');
    expect(e.message).toMatch(/^TARGET \/dev\/disk\/by-id\/usb-SanDisk \(\/dev\/sdb\) holds this host's root filesystem/);
  });

  it('a disk with a mounted partition, naming the mount and what to run', () => {
    const e = refusal('/dev/nvme0n1');
    expect(e.code).toBe('mounted');
    expect(e.message).toBe('TARGET /dev/nvme0n1 is mounted (/dev/nvme0n1p1 on /data): unmount it first (umount /data), then flash again');
  });

  it('a disk mounted whole (no partition table), and a disk under a mounted dm device', () => {
    const spec = baseHost();
    spec.mounts.push({ devno: '8:16', mountPoint: '/mnt/usb', source: '/dev/sdb', fsType: 'ext4' });
    expect(refusal('/dev/sdb', spec).message).toBe('TARGET /dev/sdb is mounted (/dev/sdb on /mnt/usb): unmount it first (umount /mnt/usb), then flash again');
    const crypt = baseHost();
    crypt.mounts.push({ devno: '253:1', mountPoint: '/secret', source: '/dev/mapper/secret', fsType: 'ext4' });
    expect(refusal('/dev/sdc', crypt)).toMatchObject({ code: 'mounted', message: expect.stringContaining('(/dev/mapper/secret on /secret)') });
  });

  it('a disk with a swap partition', () => {
    const e = refusal('/dev/sdd');
    expect(e.code).toBe('swap');
    expect(e.message).toBe('TARGET /dev/sdd is used as swap (/dev/sdd1): run swapoff /dev/sdd1 first');
  });

  it('a disk whose partition has holders (an LVM PV or dm-crypt that is not mounted)', () => {
    const e = refusal('/dev/sdc');
    expect(e.code).toBe('holders');
    expect(e.message).toBe(
      'TARGET /dev/sdc is in use by stacked devices (sdc1 → dm-1: LVM, dm-crypt or md): deactivate them first (vgchange -an, cryptsetup close or mdadm --stop)',
    );
  });

  it('a disk smaller than the image, and an unattached loop device with a hint', () => {
    expect(refusal('/dev/sde')).toMatchObject({
      code: 'too-small',
      message: 'TARGET /dev/sde is smaller than IMAGE /img/disk.raw: 32.0 MiB < 64.0 MiB; pick a disk of at least 64.0 MiB',
    });
    expect(refusal('/dev/loop1').message).toBe(
      'TARGET /dev/loop1 is smaller than IMAGE /img/disk.raw: 0 bytes < 64.0 MiB (an unattached loop device: attach a file with losetup first); pick a disk of at least 64.0 MiB',
    );
  });

  it('a read-only device', () => {
    expect(refusal('/dev/sr0')).toMatchObject({ code: 'read-only', message: expect.stringMatching(/^TARGET \/dev\/sr0 is read-only \(\/sys\/class\/block\/sr0\/ro is 1\)/) });
  });

  it('a missing /dev node (no file is created in /dev), a missing folder, a directory, a character device', () => {
    expect(refusal('/dev/sdx').message).toBe('TARGET /dev/sdx does not exist: is the disk attached? `lsblk -d` lists the whole disks');
    expect(refusal('/nowhere/x.raw').message).toBe(
      'TARGET /nowhere/x.raw does not exist and neither does its folder /nowhere: pass a whole disk (e.g. /dev/sdb) or a file in an existing folder',
    );
    expect(refusal('/img').message).toBe('TARGET /img is a directory, not a disk or a regular file: pass a whole disk (e.g. /dev/sdb) or a file to write the image into');
    expect(refusal('/dev/ttyS0').code).toBe('target');
    expect(refusal('/dev/zz').message).toBe('TARGET /dev/zz is a block device (8:240) that /sys/class/block does not list: is sysfs mounted, and is the device still there?');
  });

  it('IMAGE itself (also through a hard link), a loop backing file, a swap file', () => {
    expect(refusal('/img/link.raw')).toMatchObject({ code: 'same-file', message: 'IMAGE and TARGET are the same file (/img/disk.raw, /img/link.raw): pass a different TARGET' });
    expect(refusal('/srv/disk.img').message).toBe('TARGET /srv/disk.img is the backing file of /dev/loop0: detach it first (losetup -d /dev/loop0)');
    const spec = baseHost();
    spec.swaps.push('/swapfile');
    expect(refusal('/swapfile', spec).message).toBe('TARGET /swapfile is used as swap (/swapfile): run swapoff /swapfile first');
  });
});

describe('checkTarget accepts', () => {
  const probe = probeOf(baseHost());
  const image = checkImage(IMAGE, probe);
  it('an idle whole disk, also by a /dev/disk/by-id link', () => {
    expect(checkTarget('/dev/sdb', probe, image)).toMatchObject({ kind: 'block', exists: true, device: { name: 'sdb', model: 'SanDisk Ultra' } });
    expect(checkTarget('/dev/disk/by-id/usb-SanDisk', probe, image).device?.name).toBe('sdb');
    expect(checkTarget('/dev/loop0', probe, image).device?.name).toBe('loop0');
  });
  it('an existing file and a new file in an existing folder', () => {
    expect(checkTarget('/img/copy.raw', probe, image)).toEqual({ path: '/img/copy.raw', kind: 'file', exists: true, dev: 2049n, ino: 102n });
    expect(checkTarget('/img/new.raw', probe, image)).toEqual({ path: '/img/new.raw', kind: 'file', exists: false });
  });
});

describe('sidecar and confirmation', () => {
  const hex = 'ab'.repeat(32);
  const other = 'cd'.repeat(32);
  it('parseSidecar reads sha256sum output', () => {
    expect(parseSidecar(`${hex}  disk.raw\n`, 'disk.raw')).toBe(hex);
    expect(parseSidecar(`${hex.toUpperCase()} *renamed.raw`, 'disk.raw')).toBe(hex);
    expect(parseSidecar(hex, 'disk.raw')).toBe(hex);
    expect(parseSidecar(`${other}  out/vmlinuz\n${hex}  out/disk.raw\n`, 'disk.raw')).toBe(hex);
    expect(parseSidecar(`${other}  a\n${hex}  b\n`, 'disk.raw')).toBeUndefined();
    expect(parseSidecar('not a digest  disk.raw', 'disk.raw')).toBeUndefined();
    expect(parseSidecar('', 'disk.raw')).toBeUndefined();
  });

  it('confirmationStep: --yes and new files proceed; a TTY is asked; no TTY is refused with what to pass', () => {
    const disk = { path: '/dev/sdb', kind: 'block' as const, exists: true };
    expect(confirmationStep({ yes: true, stdinIsTTY: false, target: disk })).toBe('proceed');
    expect(confirmationStep({ yes: false, stdinIsTTY: false, target: { path: '/x', kind: 'file', exists: false } })).toBe('proceed');
    expect(confirmationStep({ yes: false, stdinIsTTY: true, target: disk })).toBe('ask');
    expect(() => confirmationStep({ yes: false, stdinIsTTY: false, target: disk })).toThrow(
      'not flashing /dev/sdb: stdin is not a terminal, so nobody can confirm; pass --yes to flash without a prompt',
    );
  });

  it('the question for a file target does not talk of partitions', () => {
    const image = { path: IMAGE, size: 64 * MiB, dev: 1n, ino: 1n };
    expect(confirmationQuestion(image, { path: '/img/copy.raw', kind: 'file', exists: true })).toBe(
      `This overwrites the file /img/copy.raw with ${IMAGE} (64.0 MiB).\nType yes to flash, anything else to stop: `,
    );
  });

  it('isYes: only the word yes', () => {
    expect(isYes('yes')).toBe(true);
    expect(isYes(' yes \n')).toBe(true);
    for (const answer of ['y', 'YES', 'Yes', 'yes please', '', null, undefined]) expect(isYes(answer)).toBe(false);
  });
});

describe('progress', () => {
  it('ProgressThrottle lets one line through per 250 ms, the first one 250 ms after the start', () => {
    const t = new ProgressThrottle(1000);
    const due = [1000, 1100, 1249, 1250, 1300, 1499, 1500, 1510, 2000].filter((ms) => t.due(ms));
    expect(due).toEqual([1250, 1500, 2000]);
  });
  it('formatProgress: bytes, percent, MiB/s', () => {
    expect(formatProgress('wrote', 48 * MiB, 64 * MiB, 400)).toBe('wrote 48.0 MiB of 64.0 MiB (75%), 120.0 MiB/s');
  });
});

// ---- runFlash over in-memory files.

interface FakeFilesOptions {
  /** errno code thrown when opening this path for writing. */
  failOpen?: Record<string, string>;
  /** Flip a byte of what reads of this path return (a disk that does not keep what it was given). */
  corruptReadsOf?: string;
  /** Milliseconds each write takes on the fake clock. */
  msPerWrite?: number;
}

/** In-memory files over the fake host's nodes: opens obey the modes' O_EXCL/O_NOFOLLOW, fstat gives the node opened. */
function fakeFiles(contents: Record<string, Buffer>, clock: { t: number }, o: FakeFilesOptions = {}, spec: HostSpec = baseHost()) {
  const opens: Array<{ path: string; mode: OpenMode }> = [];
  let nextIno = 1000n;
  const writes: Array<{ path: string; position: number; length: number }> = [];
  const truncates: number[] = [];
  const files: FlashFiles = {
    async open(p, mode) {
      opens.push({ path: p, mode });
      const fail = (code: string) => Object.assign(new Error(`open ${p}: ${code}`), { code });
      if (mode !== 'read' && o.failOpen?.[p]) throw fail(o.failOpen[p]!);
      if (mode === 'create-file') {
        if (spec.nodes[p] || spec.symlinks.has(p) || contents[p]) throw fail('EEXIST');
        spec.nodes[p] = file(0, nextIno++);
        contents[p] = Buffer.alloc(0);
      }
      if (mode === 'write-file' && spec.symlinks.has(p)) throw fail('ELOOP');
      if (!contents[p]) throw fail('ENOENT');
      // What this open reached, whatever the path leads to later.
      const node = spec.nodes[p] ?? file(contents[p]!.length, nextIno++);
      return {
        stat: async () => node,
        async read(buf, position) {
          const data = contents[p]!;
          const n = Math.max(0, Math.min(buf.length, data.length - position));
          data.copy(buf, 0, position, position + n);
          if (p === o.corruptReadsOf && n > 0 && position === 0) buf[0] = buf[0]! ^ 0xff;
          return n;
        },
        async write(buf, position) {
          writes.push({ path: p, position, length: buf.length });
          clock.t += o.msPerWrite ?? 0;
          let data = contents[p]!;
          if (data.length < position + buf.length) data = contents[p] = Buffer.concat([data, Buffer.alloc(position + buf.length - data.length)]);
          buf.copy(data, position);
          return buf.length;
        },
        async sync() {},
        async truncate(length) {
          truncates.push(length);
          const data = contents[p]!;
          contents[p] = data.length >= length ? data.subarray(0, length) : Buffer.concat([data, Buffer.alloc(length - data.length)]);
        },
        async close() {},
      };
    },
    readText: (p) => contents[p]?.toString('utf8'),
    dropCache: async (p) => void opens.push({ path: p, mode: 'drop-cache' as OpenMode }),
  };
  return { files, opens, writes, truncates };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A 1 MiB "image" (random head, zero tail), a 2 MiB disk /dev/sdb full of 0xee, flashed in 64 KiB chunks. */
function setup(o: FakeFilesOptions & { answer?: string | null; tty?: boolean; sidecar?: string } = {}) {
  const spec = baseHost();
  const imageBytes = Buffer.concat([Buffer.from(Array.from({ length: 200 * 1024 }, (_, i) => (i * 7 + 3) & 0xff)), Buffer.alloc(824 * 1024)]);
  spec.nodes[IMAGE] = file(imageBytes.length, 100n);
  spec.devices.find((d) => d.name === 'sdb')!.sizeBytes = 2 * MiB;
  const contents: Record<string, Buffer> = { [IMAGE]: imageBytes, '/dev/sdb': Buffer.alloc(2 * MiB, 0xee), '/img/copy.raw': Buffer.from('old contents') };
  if (o.sidecar !== undefined) contents[`${IMAGE}.sha256`] = Buffer.from(o.sidecar);
  const clock = { t: 0 };
  const fake = fakeFiles(contents, clock, o, spec);
  const log: string[] = [];
  const progress: Array<[string, boolean]> = [];
  const questions: string[] = [];
  const deps: FlashDeps = {
    probe: probeOf(spec),
    files: fake.files,
    now: () => clock.t,
    stdinIsTTY: o.tty ?? false,
    ask: async (q) => {
      questions.push(q);
      return o.answer ?? null;
    },
    log: (l) => void log.push(l),
    progress: (l, final) => void progress.push([l, final]),
    chunkBytes: 64 * 1024,
  };
  return { deps, contents, imageBytes, log, progress, questions, spec, ...fake };
}

async function flashError(p: Promise<unknown>): Promise<FlashError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof FlashError)) throw new Error(`expected a FlashError, got ${String(err)}`);
  return err;
}

describe('runFlash', () => {
  it('writes every byte of a disk (zeros too), fsyncs, reads back and reports both digests', async () => {
    const s = setup();
    const result = await runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, s.deps);
    expect(result).toMatchObject({ target: '/dev/sdb', targetKind: 'block', bytes: MiB, imageSha256: sha(s.imageBytes), targetSha256: sha(s.imageBytes) });
    expect(s.contents['/dev/sdb']!.subarray(0, MiB).equals(s.imageBytes)).toBe(true);
    expect(s.contents['/dev/sdb']![MiB]).toBe(0xee); // beyond the image: untouched…
    // …except the old backup GPT in the disk's last 33 sectors, which could otherwise bring the old layout back.
    expect(s.contents['/dev/sdb']!.subarray(2 * MiB - 33 * 512).every((b) => b === 0)).toBe(true);
    expect(s.contents['/dev/sdb']![2 * MiB - 33 * 512 - 1]).toBe(0xee);
    expect(s.writes.filter((w) => w.path === '/dev/sdb')).toHaveLength(17);
    // The read-back comes after the device's page cache was dropped.
    expect(s.opens.map((o) => `${o.path} ${o.mode}`)).toEqual([`${IMAGE} read`, '/dev/sdb write-device', '/dev/sdb drop-cache', '/dev/sdb read']);
  });

  it('a file target is truncated and left sparse: zero chunks are not written, the size is set', async () => {
    const s = setup();
    const result = await runFlash({ image: IMAGE, target: '/img/copy.raw', yes: true }, s.deps);
    expect(result.targetSha256).toBe(sha(s.imageBytes));
    expect(s.contents['/img/copy.raw']!.equals(s.imageBytes)).toBe(true);
    expect(s.writes.filter((w) => w.path === '/img/copy.raw').map((w) => w.position)).toEqual([0, 64 * 1024, 128 * 1024, 192 * 1024]);
    // Emptied only after the open was shown to be the checked file (not by O_TRUNC), then sized to the image.
    expect(s.truncates).toEqual([0, MiB]);
    expect(s.opens.filter((o) => o.path === '/img/copy.raw').map((o) => o.mode)).toEqual(['write-file', 'read']);
  });

  it('verification failure: a disk that returns other bytes fails with both digests and exits non-zero', async () => {
    const s = setup({ corruptReadsOf: '/dev/sdb' });
    const e = await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, s.deps));
    expect(e.code).toBe('verify');
    const corrupted = Buffer.from(s.imageBytes);
    corrupted[0] = corrupted[0]! ^ 0xff;
    expect(e.message).toBe(
      `verification failed: TARGET /dev/sdb read back sha256 ${sha(corrupted)}, but IMAGE ${IMAGE} is ${sha(s.imageBytes)}: do not boot it; the disk may be failing or something wrote to it meanwhile; flash again or use another disk`,
    );
  });

  it('a sidecar that does not match stops before the target is opened', async () => {
    const s = setup({ sidecar: `${'0'.repeat(64)}  disk.raw\n` });
    const e = await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, s.deps));
    expect(e.code).toBe('sidecar');
    expect(e.message).toBe(
      `IMAGE ${IMAGE} does not match ${IMAGE}.sha256 (its sha256 is ${sha(s.imageBytes)}, the sidecar says ${'0'.repeat(64)}): the file is corrupt or incomplete; download or build it again. Nothing was written`,
    );
    expect(s.opens.filter((o) => o.path === '/dev/sdb')).toEqual([]);
    expect(s.contents['/dev/sdb']!.every((b) => b === 0xee)).toBe(true);
  });

  it('a matching sidecar is checked and reported; a malformed one is refused', async () => {
    const s = setup({ sidecar: `${sha(setup().imageBytes)}  disk.raw\n` });
    const result = await runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, s.deps);
    expect(result.sidecarSha256).toBe(result.imageSha256);
    expect(s.log).toContain(`${IMAGE} matches ${IMAGE}.sha256`);
    const bad = setup({ sidecar: 'md5 abc' });
    expect((await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, bad.deps))).message).toBe(
      `${IMAGE}.sha256 does not give a sha256 for disk.raw in sha256sum format ("<64 hex digits>  <name>"): regenerate it (sha256sum disk.raw > disk.raw.sha256) or remove it`,
    );
  });

  it('asks on a TTY, naming device, model and size; anything but yes leaves the disk alone', async () => {
    const no = setup({ tty: true, answer: 'y' });
    const e = await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: false }, no.deps));
    expect(e).toMatchObject({ code: 'not-confirmed', message: 'not flashed: the answer was not "yes"; /dev/sdb is unchanged' });
    expect(no.questions).toEqual([
      `This destroys everything on /dev/sdb (SanDisk Ultra, 2.0 MiB): every partition and file on it is replaced by ${IMAGE} (1.0 MiB).\nType yes to flash, anything else to stop: `,
    ]);
    expect(no.opens.filter((o) => o.path === '/dev/sdb')).toEqual([]);

    const eof = setup({ tty: true, answer: null });
    expect((await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: false }, eof.deps))).code).toBe('not-confirmed');

    const yes = setup({ tty: true, answer: 'yes' });
    expect((await runFlash({ image: IMAGE, target: '/dev/sdb', yes: false }, yes.deps)).targetSha256).toBe(sha(yes.imageBytes));
  });

  it('checks the target again after the answer: a disk swapped or mounted meanwhile is not flashed', async () => {
    const swapped = setup({ tty: true });
    swapped.deps.ask = async () => {
      swapped.spec.devices.find((d) => d.name === 'sdb')!.model = 'Other Disk';
      return 'yes';
    };
    const e = await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: false }, swapped.deps));
    expect(e.code).toBe('target');
    expect(e.message).toMatch(/^not flashed: TARGET \/dev\/sdb changed while waiting for the answer \(now .*Other Disk.*\); run the command again$/);
    expect(swapped.opens.filter((o) => o.path === '/dev/sdb')).toEqual([]);
  });

  it('without a TTY and without --yes nothing is asked and nothing is opened', async () => {
    const s = setup({ tty: false });
    expect((await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: false }, s.deps))).code).toBe('no-tty');
    expect(s.questions).toEqual([]);
    expect(s.opens).toEqual([]);
  });

  it('EBUSY from the exclusive open (mounted since the check) and EACCES say what to do', async () => {
    const busy = setup({ failOpen: { '/dev/sdb': 'EBUSY' } });
    expect((await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, busy.deps))).message).toBe(
      'TARGET /dev/sdb is busy (EBUSY): it was mounted or opened exclusively after the checks; unmount or close it, then flash again',
    );
    const denied = setup({ failOpen: { '/dev/sdb': 'EACCES' } });
    expect((await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, denied.deps))).message).toBe(
      'cannot open TARGET /dev/sdb for writing (EACCES): writing a disk needs root; run aer with sudo',
    );
  });

  it('an IMAGE that shrinks while flashing is an error, not a short verified write', async () => {
    const s = setup();
    s.contents[IMAGE] = s.imageBytes.subarray(0, 100 * 1024);
    expect((await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, s.deps))).message).toBe(
      `IMAGE ${IMAGE} shrank while flashing (ended at byte ${100 * 1024} of ${MiB}): is something rewriting it? flash again once it is complete`,
    );
  });

  it('progress: at most one line per 250 ms while writing and verifying, then one final line each', async () => {
    const s = setup({ msPerWrite: 100 }); // 16 chunks → 1.6 s of writing on the fake clock
    await runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, s.deps);
    const writing = s.progress.filter(([l]) => l.startsWith('wrote'));
    // Chunks end at 100, 200, … 1600 ms: lines at 300, 600, 900, 1200, 1500 ms, then the final one.
    expect(writing.filter(([, final]) => !final).map(([l]) => l.split(' ')[1] + ' ' + l.split(' ')[2])).toEqual(['192.0 KiB', '384.0 KiB', '576.0 KiB', '768.0 KiB', '960.0 KiB']);
    expect(writing[0]).toEqual(['wrote 192.0 KiB of 1.0 MiB (18%), 0.6 MiB/s', false]);
    // 1.7 s: the 16 chunks plus clearing the old backup GPT at the end of the disk.
    expect(writing.at(-1)).toEqual(['wrote 1.0 MiB in 1.7 s (0.6 MiB/s)', true]);
    // Reading back takes no time on the fake clock: no intermediate lines, only the final one.
    expect(s.progress.filter(([l]) => l.startsWith('verified'))).toEqual([['verified 1.0 MiB in 0.0 s (- MiB/s)', true]]);
  });
});

describe('runFlash between the checks and the write (an attacker with the hooks)', () => {
  const victim = '/etc/shadow';

  it('a file target that is a symbolic link, or a dangling one, is refused by the checks, naming the real path', () => {
    const spec = baseHost();
    spec.nodes['/img/link-to-copy.raw'] = spec.nodes['/img/copy.raw']!;
    spec.realpaths['/img/link-to-copy.raw'] = '/img/copy.raw';
    spec.symlinks.add('/img/link-to-copy.raw');
    spec.symlinks.add('/img/dangling.raw');
    expect(refusal('/img/link-to-copy.raw', spec).message).toBe(
      'TARGET /img/link-to-copy.raw is a symbolic link to the file /img/copy.raw: aer writes files only through their own name; pass /img/copy.raw itself',
    );
    expect(refusal('/img/dangling.raw', spec).message).toBe(
      'TARGET /img/dangling.raw is a symbolic link to a path that does not exist: aer does not create files through links; remove the link or pass the real path',
    );
    // A disk by a /dev/disk/by-id link stays fine: the device is checked by its number after the open.
    spec.symlinks.add('/dev/disk/by-id/usb-SanDisk');
    expect(checkTarget('/dev/disk/by-id/usb-SanDisk', probeOf(spec), checkImage(IMAGE, probeOf(spec))).kind).toBe('block');
  });

  it('a new file target is created with O_EXCL: a symlink planted after the check is not followed, nothing is written', async () => {
    const s = setup();
    s.contents[victim] = Buffer.from('root:x:…');
    s.deps.hooks = {
      beforeOpenTarget: () => {
        s.spec.symlinks.add('/img/new.raw');
        s.spec.realpaths['/img/new.raw'] = victim;
      },
    };
    const e = await flashError(runFlash({ image: IMAGE, target: '/img/new.raw', yes: true }, s.deps));
    expect(e.code).toBe('target');
    expect(e.message).toBe(
      'not flashed: TARGET /img/new.raw appeared after the checks (something created it there, perhaps a symbolic link to another file); nothing was written: see what it is (ls -l /img/new.raw), remove it if it is not yours, and run again',
    );
    expect(s.opens.filter((o) => o.mode !== 'read')).toEqual([{ path: '/img/new.raw', mode: 'create-file' }]);
    expect(s.writes).toEqual([]);
    expect(s.contents[victim]!.toString()).toBe('root:x:…');
  });

  it('without interference a new file is created (create-file) and flashed', async () => {
    const s = setup();
    const result = await runFlash({ image: IMAGE, target: '/img/new.raw', yes: true }, s.deps);
    expect(result.targetSha256).toBe(sha(s.imageBytes));
    expect(s.opens.filter((o) => o.path === '/img/new.raw').map((o) => o.mode)).toEqual(['create-file', 'read']);
  });

  it('an existing file replaced by a symlink after the check: the open does not follow it (ELOOP), nothing is written', async () => {
    const s = setup({ tty: true, answer: 'yes' });
    s.deps.hooks = { beforeOpenTarget: () => void s.spec.symlinks.add('/img/copy.raw') };
    const e = await flashError(runFlash({ image: IMAGE, target: '/img/copy.raw', yes: true }, s.deps));
    expect(e.message).toMatch(/^not flashed: TARGET \/img\/copy\.raw became a symbolic link after the checks; nothing was written and the link was not followed: /);
    expect(s.writes).toEqual([]);
    expect(s.contents['/img/copy.raw']!.toString()).toBe('old contents');
  });

  it('an existing file replaced by another file (another inode) after the check is neither emptied nor written', async () => {
    const s = setup();
    s.deps.hooks = { beforeOpenTarget: () => void (s.spec.nodes['/img/copy.raw'] = file(12, 999n)) };
    const e = await flashError(runFlash({ image: IMAGE, target: '/img/copy.raw', yes: true }, s.deps));
    expect(e.code).toBe('target');
    expect(e.message).toBe(
      'not flashed: TARGET /img/copy.raw is not what was checked (it is now inode 2049:999, not the checked 2049:102): something replaced it after the checks; nothing was written: see what it is now (ls -l /img/copy.raw) and run again',
    );
    expect(s.truncates).toEqual([]);
    expect(s.writes).toEqual([]);
  });

  it('a device node that now leads to another disk (rdev) is refused after the open', async () => {
    const s = setup();
    s.deps.hooks = { beforeOpenTarget: () => void (s.spec.nodes['/dev/sdb'] = block('8:64')) };
    const e = await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, s.deps));
    expect(e.message).toMatch(/^not flashed: TARGET \/dev\/sdb is not what was checked \(it is now the block device 8:64, not 8:16\)/);
    expect(s.writes).toEqual([]);
  });

  it('with --yes the disk is re-identified after the sidecar hash, right before the first write: serial, size, model', async () => {
    for (const [field, change, shown] of [
      ['serial', { serial: 'OTHER-2' }, 'serial 4C530001 → OTHER-2'],
      ['size', { sizeBytes: 4 * MiB }, 'size 2.0 MiB → 4.0 MiB'],
      ['model', { model: 'Kingston DT' }, 'model SanDisk Ultra → Kingston DT'],
    ] as const) {
      const s = setup({ sidecar: '' });
      const sdb = s.spec.devices.find((d) => d.name === 'sdb')!;
      sdb.serial = '4C530001';
      s.contents[`${IMAGE}.sha256`] = Buffer.from(`${sha(s.imageBytes)}  disk.raw\n`);
      // The stick is pulled and another one plugged in while the image is hashed against its sidecar.
      s.deps.hooks = { beforeOpenTarget: () => void Object.assign(sdb, change) };
      const e = await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, s.deps));
      expect(e.message, field).toBe(
        `not flashed: TARGET /dev/sdb is not the disk that was checked (${shown}); nothing was written: see which disk it is now (lsblk -o NAME,SIZE,MODEL,SERIAL /dev/sdb) and run again`,
      );
      expect(s.writes, field).toEqual([]);
    }
  });

  it('a loop device re-attached to another file after the check is refused (backing file and inode)', async () => {
    const s = setup();
    s.spec.nodes[IMAGE] = file(MiB, 100n);
    const loop0 = s.spec.devices.find((d) => d.name === 'loop0')!;
    loop0.backingIdentity = '2049:103';
    s.contents['/dev/loop0'] = Buffer.alloc(80 * MiB);
    s.deps.hooks = { beforeOpenTarget: () => void Object.assign(loop0, { backingFile: '/home/eve/other.img', backingIdentity: '2049:555' }) };
    const e = await flashError(runFlash({ image: IMAGE, target: '/dev/loop0', yes: true }, s.deps));
    expect(e.message).toContain('(loop backing file /srv/disk.img → /home/eve/other.img; loop backing inode 2049:103 → 2049:555)');
    expect(s.writes).toEqual([]);
  });

  it('a file target swapped after the write is not read back as if it were the one written', async () => {
    const s = setup();
    s.deps.hooks = {
      beforeReadBack: () => {
        // Someone puts a copy of the image in its place: its digest would match, but it proves nothing.
        s.spec.nodes['/img/copy.raw'] = file(MiB, 4242n);
      },
    };
    const e = await flashError(runFlash({ image: IMAGE, target: '/img/copy.raw', yes: true }, s.deps));
    expect(e.code).toBe('verify');
    expect(e.message).toBe(
      'verification failed: TARGET /img/copy.raw no longer leads to what was written (something replaced it after the write): do not trust it; see what it is (ls -l /img/copy.raw) and flash again',
    );
  });

  it('a disk mounted after the checks is refused by the re-check too (besides the kernel\'s EBUSY)', async () => {
    const s = setup();
    s.deps.hooks = { beforeOpenTarget: () => void s.spec.mounts.push({ devno: '8:17', mountPoint: '/media/stick', source: '/dev/sdb1', fsType: 'vfat' }) };
    const e = await flashError(runFlash({ image: IMAGE, target: '/dev/sdb', yes: true }, s.deps));
    expect(e.code).toBe('mounted');
    expect(s.writes).toEqual([]);
  });
});

describe('aer image flash (CLI over fakes)', () => {
  async function aer(argv: string[], s: ReturnType<typeof setup>) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runAer(argv, { out: (t) => void out.push(t), err: (t) => void err.push(t), env: {}, flashDeps: s.deps });
    return { code, out, err };
  }

  it('prints both digests, or JSON with -o json; never connects', async () => {
    const s = setup();
    const text = await aer(['image', 'flash', IMAGE, '/dev/sdb', '--yes'], s);
    expect(text.code).toBe(0);
    expect(text.out[0]!.split('\n').slice(0, 2)).toEqual([`image  sha256 ${sha(s.imageBytes)}  ${IMAGE}`, `target sha256 ${sha(s.imageBytes)}  /dev/sdb (first 1048576 bytes read back)`]);
    const json = await aer(['-o', 'json', 'image', 'flash', IMAGE, '/img/copy.raw', '--yes'], setup());
    expect(JSON.parse(json.out[0]!)).toMatchObject({ target: '/img/copy.raw', targetKind: 'file', bytes: MiB });
  });

  it('a refusal exits 1 with one "aer: " line; missing arguments are a usage error (2)', async () => {
    expect(await aer(['image', 'flash', IMAGE, '/dev/nvme0n1', '--yes'], setup())).toMatchObject({
      code: 1,
      err: ['aer: TARGET /dev/nvme0n1 is mounted (/dev/nvme0n1p1 on /data): unmount it first (umount /data), then flash again'],
    });
    expect((await aer(['image', 'flash', IMAGE], setup())).code).toBe(2);
  });
});
