// The state disk: an ext4 filesystem labelled AURAE_STATE (any virtio/SATA/NVMe disk or partition) is mounted
// at /var/lib/aurae, so auraed's database and logs survive reboots. Without one, /var/lib/aurae stays on the
// initramfs (RAM) and the node says so: state is then lost at every boot.
import { MOUNT_FLAGS, type Syscalls } from '../../native';
import { errorMessage, type Logger } from '../log';

export const STATE_LABEL = 'AURAE_STATE';
export const STATE_MOUNTPOINT = '/var/lib/aurae';

const EXT_SUPERBLOCK_OFFSET = 1024;
const EXT_MAGIC_OFFSET = 56; // s_magic, u16 little endian
const EXT_MAGIC = 0xef53;
const EXT_LABEL_OFFSET = 120; // s_volume_name, 16 bytes, NUL padded

/** The ext2/3/4 volume label in `head` (the first 2 KiB of a block device), or null when it is not ext. Pure. */
export function extLabel(head: Buffer): string | null {
  if (head.length < EXT_SUPERBLOCK_OFFSET + EXT_LABEL_OFFSET + 16) return null;
  if (head.readUInt16LE(EXT_SUPERBLOCK_OFFSET + EXT_MAGIC_OFFSET) !== EXT_MAGIC) return null;
  const raw = head.subarray(EXT_SUPERBLOCK_OFFSET + EXT_LABEL_OFFSET, EXT_SUPERBLOCK_OFFSET + EXT_LABEL_OFFSET + 16);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? 16 : end).toString('utf8');
}

export interface StateDiskDeps {
  syscalls: Pick<Syscalls, 'mount'>;
  /** Block device names from /sys/class/block (vda, vda1, sr0, …). */
  listBlockDevices(): string[];
  /** The first 2 KiB of /dev/NAME, or null when it cannot be read. */
  readHead(name: string): Buffer | null;
  mkdir(path: string, mode: number): void;
  log: Logger;
}

export type StateDiskResult = { mounted: true; device: string } | { mounted: false; reason: string };

/** Find the disk labelled AURAE_STATE and mount it at /var/lib/aurae. Never throws. */
export function mountStateDisk(deps: StateDiskDeps): StateDiskResult {
  let candidates: string[];
  try {
    candidates = deps.listBlockDevices().filter((n) => !/^(loop|ram|sr|zram)/.test(n)).sort();
  } catch (err) {
    candidates = [];
    deps.log.warn(`state disk: listing block devices failed: ${errorMessage(err)}`);
  }
  const device = candidates.find((name) => {
    const head = deps.readHead(name);
    return head !== null && extLabel(head) === STATE_LABEL;
  });
  if (!device) {
    const reason = `no ext4 filesystem labelled ${STATE_LABEL}`;
    deps.log.warn(`state disk: ${reason}; ${STATE_MOUNTPOINT} is in RAM and node state is lost at reboot (attach one: mkfs.ext4 -L ${STATE_LABEL} DISK)`);
    return { mounted: false, reason };
  }
  try {
    deps.mkdir(STATE_MOUNTPOINT, 0o700);
    // The ext4 journal is replayed at mount, which repairs an unclean shutdown's metadata.
    deps.syscalls.mount(`/dev/${device}`, STATE_MOUNTPOINT, 'ext4', MOUNT_FLAGS.MS_NOSUID | MOUNT_FLAGS.MS_NODEV | MOUNT_FLAGS.MS_RELATIME, null);
    deps.log.info(`state disk: /dev/${device} (${STATE_LABEL}) mounted on ${STATE_MOUNTPOINT}`);
    return { mounted: true, device };
  } catch (err) {
    const reason = `mounting /dev/${device} failed: ${errorMessage(err)}`;
    deps.log.error(`state disk: ${reason}; using RAM for ${STATE_MOUNTPOINT} (state will not persist): check the disk with e2fsck`);
    return { mounted: false, reason };
  }
}
