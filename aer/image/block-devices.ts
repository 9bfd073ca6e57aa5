// What the host says about its disks: block devices from /sys/class/block, mounts from /proc/self/mountinfo,
// swap from /proc/swaps. The parsers are pure; `hostProbe()` is the real adapter, and tests hand flash.ts a fake
// HostProbe instead. Nothing here writes anything.
import fs from 'node:fs';
import path from 'node:path';

/** One entry of /sys/class/block: a whole disk, a partition, a loop or a device-mapper device. */
export interface BlockDevice {
  /** Kernel name: sda, sda1, nvme0n1, loop3, dm-0. */
  name: string;
  /** "major:minor", as in /sys/class/block/X/dev and /proc/self/mountinfo. */
  devno: string;
  /** True when /sys/class/block/X/partition exists. */
  partition: boolean;
  /** The whole disk: the parent for a partition, else the device itself. */
  disk: string;
  sizeBytes: number;
  /** /sys/class/block/X/ro is 1 (a CD, a write-protected card). */
  readOnly: boolean;
  /** /sys/class/block/X/device/model, trimmed, when the driver exposes one. */
  model?: string;
  /** The disk's serial number (device/serial: NVMe, some SCSI; serial: virtio), when the kernel gives one. */
  serial?: string;
  /** The disk's world-wide id (device/wwid: SCSI/SATA; wwid: NVMe), when the kernel gives one. */
  wwid?: string;
  /** Devices stacked on this one (dm-crypt, LVM, md): /sys/class/block/X/holders. */
  holders: string[];
  /** Devices this one is stacked on (for dm and md): /sys/class/block/X/slaves. */
  slaves: string[];
  /** For an attached loop device: the file behind it. */
  backingFile?: string;
  /** For an attached loop device: "dev:ino" of the file at backingFile, when it can be stat'ed. */
  backingIdentity?: string;
}

/** One line of /proc/self/mountinfo, reduced to what identifies the device behind the mount. */
export interface MountEntry {
  devno: string;
  mountPoint: string;
  /** The mount source ("/dev/sda2", "overlay", "tmpfs"); the only hint for btrfs, whose devno is anonymous. */
  source: string;
  fsType: string;
}

/** stat(2) of a path, following symlinks, in the shape the checks need. */
export interface PathStat {
  kind: 'file' | 'block' | 'directory' | 'other';
  /** Bytes for a regular file (0 for a block device: its size comes from sysfs). */
  size: number;
  /** Identity of the inode, to tell that IMAGE and TARGET are the same file. */
  dev: bigint;
  ino: bigint;
  /** For a block device: its "major:minor". */
  rdevno?: string;
}

/** The host, read-only. Every method reads the current state (no caching): callers call it once per check. */
export interface HostProbe {
  /** undefined when the path does not exist. */
  stat(file: string): PathStat | undefined;
  /** Whether the path itself is a symbolic link (lstat(2)); false when it does not exist. */
  isSymlink(file: string): boolean;
  realpath(file: string): string;
  blockDevices(): BlockDevice[];
  mounts(): MountEntry[];
  /** The Filename column of /proc/swaps (devices and swap files). */
  swaps(): string[];
}

/** mountinfo and /proc/swaps escape space, tab, newline and backslash as \ooo. */
export function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parse /proc/self/mountinfo (proc(5)): "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS". */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    const dash = fields.indexOf('-');
    if (dash < 5 || dash + 2 >= fields.length) continue; // not a mountinfo line
    out.push({
      devno: fields[2]!,
      mountPoint: unescapeOctal(fields[4]!),
      fsType: fields[dash + 1]!,
      source: unescapeOctal(fields[dash + 2]!),
    });
  }
  return out;
}

/** Parse /proc/swaps: a header line, then "Filename Type Size Used Priority". */
export function parseSwaps(text: string): string[] {
  return text
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '')
    .map(unescapeOctal);
}

/** "major:minor" of a dev_t as Linux encodes it (glibc's gnu_dev_major/minor), exact for 64-bit values. */
export function devnoOf(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

const SYS_BLOCK = '/sys/class/block';

function readTrimmed(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Read one /sys/class/block entry; undefined when it vanished while we looked (a loop device detached). */
export function readBlockDevice(name: string, sysBlock = SYS_BLOCK): BlockDevice | undefined {
  const dir = path.join(sysBlock, name);
  const devno = readTrimmed(path.join(dir, 'dev'));
  if (!devno) return undefined;
  const partition = fs.existsSync(path.join(dir, 'partition'));
  // A partition's sysfs directory sits inside its disk's: .../block/sda/sda1.
  let disk = name;
  if (partition) {
    try {
      disk = path.basename(path.dirname(fs.realpathSync(dir)));
    } catch {
      return undefined;
    }
  }
  const model = readTrimmed(path.join(dir, 'device', 'model'));
  // Where the kernel gives them, these tell one disk from another of the same size and model (a swapped stick).
  const serial = readTrimmed(path.join(dir, 'device', 'serial')) || readTrimmed(path.join(dir, 'serial'));
  const wwid = readTrimmed(path.join(dir, 'device', 'wwid')) || readTrimmed(path.join(dir, 'wwid'));
  const backingFile = readTrimmed(path.join(dir, 'loop', 'backing_file'));
  const backingIdentity = backingFile ? fileIdentity(backingFile) : undefined;
  return {
    name,
    devno,
    partition,
    disk,
    // sysfs "size" counts 512-byte sectors whatever the logical block size.
    sizeBytes: Number(readTrimmed(path.join(dir, 'size')) ?? 0) * 512,
    readOnly: readTrimmed(path.join(dir, 'ro')) === '1',
    ...(model ? { model } : {}),
    ...(serial ? { serial } : {}),
    ...(wwid ? { wwid } : {}),
    holders: listDir(path.join(dir, 'holders')),
    slaves: listDir(path.join(dir, 'slaves')),
    ...(backingFile ? { backingFile } : {}),
    ...(backingIdentity ? { backingIdentity } : {}),
  };
}

/** "dev:ino" of a file, or undefined when it cannot be stat'ed (a loop's deleted backing file). */
function fileIdentity(file: string): string | undefined {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** The checks' view of a stat(2) or fstat(2) result. */
export function pathStatOf(st: fs.BigIntStats): PathStat {
  const kind = st.isFile() ? 'file' : st.isBlockDevice() ? 'block' : st.isDirectory() ? 'directory' : 'other';
  return { kind, size: Number(st.size), dev: st.dev, ino: st.ino, ...(kind === 'block' ? { rdevno: devnoOf(st.rdev) } : {}) };
}

/** The real host. */
export function hostProbe(): HostProbe {
  return {
    stat(file) {
      let st: fs.BigIntStats;
      try {
        st = fs.statSync(file, { bigint: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
        throw err;
      }
      return pathStatOf(st);
    },
    isSymlink(file) {
      try {
        return fs.lstatSync(file).isSymbolicLink();
      } catch {
        return false;
      }
    },
    realpath: (file) => fs.realpathSync(file),
    blockDevices: () =>
      listDir(SYS_BLOCK)
        .map((name) => readBlockDevice(name))
        .filter((d): d is BlockDevice => d !== undefined),
    mounts: () => parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')),
    swaps: () => {
      try {
        return parseSwaps(fs.readFileSync('/proc/swaps', 'utf8'));
      } catch {
        return []; // no /proc/swaps: a kernel without swap support
      }
    },
  };
}
