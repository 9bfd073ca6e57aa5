// The node's storage at boot, in order (never throws, never hangs: every external step has a timeout):
//  1. The boot volume: the FAT32 filesystem labelled AURAE_BOOT (the ESP of disk.raw, or the image's esp.img
//     attached as a disk) is mounted read-only on /boot: the node's own kernel, initramfs and QEMU, from which
//     it spawns children.
//  2. The state volume: the ext4 filesystem labelled AURAE_STATE is mounted on /var/lib/aurae, so auraed's
//     database and logs survive reboots. When the boot volume is a partition of a GPT disk (a flashed disk.raw),
//     the STATE partition is created at first boot in the free space after its last partition (disk.raw has the
//     ESP and AURAE_IDENTITY), filling the disk, and grown when the disk grew (init/disk plans the GPT change).
//     e2fsck repairs it after an unclean shutdown.
// With several boot volumes, the one the firmware booted (LoaderDevicePartUUID) wins; a primary GPT torn by a
// power cut is restored from its backup first (Linux would see no partitions).
// Without a state volume /var/lib/aurae stays in RAM and the node says so; when a state volume exists or was
// expected but cannot be used, the status is "degraded" (auraed reports it through health, aurae.storage).
import { MOUNT_FLAGS, type Syscalls } from '../../native';
import { gptWrites, parseGpt, PARTITION_TYPES, planStatePartition, SECTOR_SIZE } from '../disk';
import { errorMessage, type Logger } from '../log';
import { extLabel, fat32Label } from './labels';

export { extLabel, fat32Label } from './labels';

export const STATE_LABEL = 'AURAE_STATE';
export const STATE_MOUNTPOINT = '/var/lib/aurae';
export const BOOT_LABEL = 'AURAE_BOOT';
export const BOOT_MOUNTPOINT = '/boot';

/** A STATE partition is made only when at least this much space is free (and grown by at least this much). */
export const STATE_MIN_SECTORS = (64 * 1024 * 1024) / SECTOR_SIZE;
const FSCK_TIMEOUT_MS = 10 * 60_000;
const MKFS_TIMEOUT_MS = 5 * 60_000;
const PARTITION_WAIT_MS = 5_000;

export interface StorageDeps {
  syscalls: Pick<Syscalls, 'mount'>;
  /** Block device names from /sys/class/block (vda, vda1, sr0, …). */
  listBlockDevices(): string[];
  /** The first 2 KiB of /dev/NAME, or null when it cannot be read. */
  readHead(name: string): Buffer | null;
  /** The whole disk a partition belongs to (vda1 → vda), or null for a whole disk. */
  parentDisk(name: string): string | null;
  /** A partition's first sector as the kernel sees it (/sys/class/block/NAME/start), or null. */
  partitionStart(name: string): number | null;
  /** Size of /dev/DISK in 512-byte sectors and whether it is read-only. */
  diskInfo(disk: string): { sectors: number; readOnly: boolean };
  readAt(disk: string, offset: number, length: number): Buffer;
  /** Write the ranges in order to /dev/DISK, each made durable (fsync) before the next. */
  writeAt(disk: string, writes: { offset: number; data: Buffer }[]): void;
  /**
   * Run a program; code null when it could not start or was killed (timeout): `missing` says the program is
   * not there at all (output says why).
   */
  run(file: string, args: string[], timeoutMs: number): { code: number | null; output: string; missing?: boolean };
  exists(path: string): boolean;
  sleep(ms: number): Promise<void>;
  randomGuid(): string;
  /** The partition GUID of the ESP the firmware booted (EFI variable LoaderDevicePartUUID), or null. */
  loaderPartUuid(): string | null;
  mkdir(path: string, mode: number): void;
  log: Logger;
}

export interface StorageStatus {
  boot: { device: string | null; mounted: boolean; reason: string | null };
  state: {
    device: string | null;
    mounted: boolean;
    /** What init did to the volume this boot. */
    actions: ('created' | 'grown' | 'repaired')[];
    /** Why state is in RAM although a volume exists or was expected; null when all is well (or RAM by choice). */
    degraded: string | null;
    reason: string | null;
  };
}

const dev = (name: string) => `/dev/${name}`;

/** An efivarfs file holding a GUID as UTF-16LE text (4 attribute bytes first) → lower-case GUID, or null. Pure. */
export function parseEfiGuidVariable(raw: Buffer): string | null {
  const text = raw.subarray(4).toString('utf16le').replace(/\0+$/, '').trim().toLowerCase();
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(text) ? text : null;
}

/** vda + 2 → vda2; nvme0n1 + 2 → nvme0n1p2 (the kernel's naming). */
export function partitionName(disk: string, number: number): string {
  return /\d$/.test(disk) ? `${disk}p${number}` : `${disk}${number}`;
}

export async function mountStorage(deps: StorageDeps): Promise<StorageStatus> {
  const { log } = deps;
  const status: StorageStatus = {
    boot: { device: null, mounted: false, reason: null },
    state: { device: null, mounted: false, actions: [], degraded: null, reason: null },
  };
  let labels = scanLabels(deps);
  if (!labels.some((l) => l.fat === BOOT_LABEL) && (await restorePrimaryGpt(deps, labels.map((l) => l.name)))) labels = scanLabels(deps);
  const chosen = chooseVolumes(deps, labels);
  const { boot, disk, ambiguous, firmwareBooted } = chosen;
  let state = chosen.state;
  status.boot.device = boot;

  // First boot of a flashed disk: STATE goes after the last partition on the same disk; a grown disk grows it.
  let grow = false;
  const stateOnBootDisk = state === null || safe(() => deps.parentDisk(state!), null) === disk;
  if (disk && !ambiguous && stateOnBootDisk) {
    const outcome = await provisionState(deps, disk, boot!, state);
    if (outcome.kind === 'created') {
      state = outcome.device;
      status.state.actions.push('created');
    } else if (outcome.kind === 'grown') {
      grow = true;
    } else if (outcome.kind === 'failed' && state === null) {
      status.state.degraded = outcome.reason;
    }
  }

  if (state === null) {
    const reason = status.state.degraded ?? `no ext4 filesystem labelled ${STATE_LABEL}`;
    status.state.reason = reason;
    if (status.state.degraded) log.error(`state disk: ${reason}; ${STATE_MOUNTPOINT} is in RAM and node state is lost at reboot`);
    else log.warn(`state disk: ${reason}; ${STATE_MOUNTPOINT} is in RAM and node state is lost at reboot (attach one: mkfs.ext4 -L ${STATE_LABEL} DISK)`);
  } else {
    status.state.device = state;
    mountState(deps, state, grow, status);
  }

  if (boot) mountBoot(deps, boot, status, firmwareBooted);
  else status.boot.reason = `no FAT32 filesystem labelled ${BOOT_LABEL}`;
  return status;
}

interface Chosen {
  boot: string | null;
  /** The whole disk holding `boot` (a partition), else null. */
  disk: string | null;
  state: string | null;
  /** Several boot volumes and the firmware did not say which one it booted: partition nothing. */
  ambiguous: boolean;
  firmwareBooted: boolean;
}

/**
 * Which boot volume and which STATE: with several boot volumes, the one the firmware booted (its partition GUID
 * is LoaderDevicePartUUID; unique once a first boot ran), else the first by name; the STATE on the boot disk,
 * else the first by name. Ambiguities are logged.
 */
function chooseVolumes(deps: StorageDeps, labels: { name: string; fat: string | null; ext: string | null }[]): Chosen {
  const { log } = deps;
  const labelled = labels.filter((l) => l.fat === BOOT_LABEL).map((l) => l.name);
  const loader = labelled.length ? safe(() => deps.loaderPartUuid(), null) : null;
  const booted = loader ? labelled.filter((n) => partitionGuid(deps, n) === loader) : [];
  const boots = booted.length === 1 ? booted : labelled;
  const boot = boots[0] ?? null;
  if (booted.length === 1 && labelled.length > 1) log.info(`storage: ${labelled.length} volumes labelled ${BOOT_LABEL}; the firmware booted ${dev(boot!)} (LoaderDevicePartUUID ${loader})`);
  if (boots.length > 1) log.warn(`storage: ${boots.length} volumes labelled ${BOOT_LABEL} (${boots.map(dev).join(', ')}): using ${dev(boot!)}; no partition is created or grown while this is ambiguous (remove the other disk)`);
  const disk = boot ? safe(() => deps.parentDisk(boot), null) : null;
  const states = labels.filter((l) => l.ext === STATE_LABEL).map((l) => l.name);
  const state = states.find((n) => disk !== null && safe(() => deps.parentDisk(n), null) === disk) ?? states[0] ?? null;
  if (states.length > 1) log.warn(`storage: ${states.length} filesystems labelled ${STATE_LABEL} (${states.map(dev).join(', ')}): using ${dev(state!)}`);
  return { boot, disk, state, ambiguous: boots.length > 1, firmwareBooted: boot !== null && booted.length === 1 && booted[0] === boot };
}

function scanLabels(deps: StorageDeps): { name: string; fat: string | null; ext: string | null }[] {
  let names: string[];
  try {
    names = deps.listBlockDevices().filter((n) => !/^(loop|ram|sr|zram)/.test(n)).sort();
  } catch (err) {
    deps.log.warn(`storage: listing block devices failed: ${errorMessage(err)}`);
    return [];
  }
  return names.map((name) => {
    const head = deps.readHead(name);
    return { name, fat: head ? fat32Label(head) : null, ext: head ? extLabel(head) : null };
  });
}

/**
 * A power cut while the primary GPT was being rewritten leaves a disk whose backup table is whole but whose
 * primary is not; Linux then sees no partitions (it reads the backup only with `gpt` on its command line), so
 * no boot volume is found. Restore the primary from the backup when that backup lists AURAE_BOOT. True when a
 * table was restored (the caller scans again). Never throws.
 */
/** The GPT unique GUID (lower case) of partition `name`, from its disk's table; null when unknown. Never throws. */
function partitionGuid(deps: StorageDeps, name: string): string | null {
  return safe(() => {
    const disk = deps.parentDisk(name);
    const start = deps.partitionStart(name);
    if (!disk || start === null) return null;
    const gpt = parseGpt((offset, length) => deps.readAt(disk, offset, length), deps.diskInfo(disk).sectors);
    return gpt?.partitions.find((p) => p.firstLba === start)?.uniqueGuid.toLowerCase() ?? null;
  }, null);
}

async function restorePrimaryGpt(deps: StorageDeps, names: string[]): Promise<boolean> {
  for (const disk of names) {
    try {
      if (safe(() => deps.parentDisk(disk), null) !== null) continue;
      const { sectors, readOnly } = deps.diskInfo(disk);
      const mbr = deps.readAt(disk, 0, SECTOR_SIZE);
      if (readOnly || mbr.length < SECTOR_SIZE || mbr.readUInt16LE(510) !== 0xaa55 || mbr[450] !== 0xee) continue;
      const gpt = parseGpt((offset, length) => deps.readAt(disk, offset, length), sectors);
      if (!gpt || gpt.source !== 'backup' || !gpt.partitions.some((p) => p.name === BOOT_LABEL)) continue;
      deps.log.warn(`storage: ${dev(disk)}: ${gpt.problems.join('; ')}; restoring the primary GPT from the backup (an interrupted partition table write)`);
      deps.writeAt(disk, gptWrites(gpt, sectors));
      const reread = deps.run('blockdev', ['--rereadpt', dev(disk)], 30_000);
      if (reread.code !== 0) throw new Error(`blockdev --rereadpt failed: ${reread.output.trim()}`);
      const first = gpt.partitions[0]!;
      await waitFor(deps, dev(partitionName(disk, first.index + 1)));
      return true;
    } catch (err) {
      deps.log.error(`storage: restoring the GPT of ${dev(disk)} failed: ${errorMessage(err)}`);
    }
  }
  return false;
}

type Provision = { kind: 'none' } | { kind: 'created'; device: string } | { kind: 'grown' } | { kind: 'failed'; reason: string };

const ZERO_BYTES = 1024 * 1024;

/**
 * Create or grow the STATE partition on `disk` (GPT) when there is room. Only on a disk the kernel also reads
 * as GPT (a protective MBR, a valid primary table) whose table has the boot volume where the kernel has it, so
 * a stale or foreign table is never acted on. Failures are reported, never thrown.
 */
async function provisionState(deps: StorageDeps, disk: string, boot: string, existing: string | null): Promise<Provision> {
  const { log } = deps;
  const failed = (reason: string): Provision => {
    log.error(`state disk: ${reason}`);
    return { kind: 'failed', reason };
  };
  try {
    const { sectors, readOnly } = deps.diskInfo(disk);
    if (readOnly) return existing ? { kind: 'none' } : failed(`${dev(disk)} is read-only: no STATE partition can be created on it`);
    const mbr = deps.readAt(disk, 0, SECTOR_SIZE);
    const gpt = parseGpt((offset, length) => deps.readAt(disk, offset, length), sectors);
    const bootStart = deps.partitionStart(boot);
    const problem =
      mbr.length < SECTOR_SIZE || mbr.readUInt16LE(510) !== 0xaa55 || mbr[450] !== 0xee
        ? 'no protective MBR (the kernel reads it as an MBR disk)'
        : !gpt
          ? 'no valid GPT'
          : gpt.source !== 'primary'
            ? 'its primary GPT is damaged (only the backup is valid)'
            : !gpt.partitions.some((p) => p.firstLba === bootStart)
              ? `its GPT has no partition where the kernel has ${dev(boot)} (sector ${bootStart})`
              : null;
    if (problem || !gpt) {
      if (existing) return { kind: 'none' };
      return failed(`${dev(disk)} holds ${BOOT_LABEL} but ${problem}: not touching its partitions (reflash it with aer image flash)`);
    }
    for (const p of gpt.problems) log.warn(`state disk: ${dev(disk)}: ${p}`);

    // A partition named STATE without a filesystem: a first boot cut short between the GPT write and mke2fs.
    const named = gpt.partitions.find((p) => p.name === STATE_LABEL);
    if (!existing && named) {
      const part = partitionName(disk, named.index + 1);
      const head = deps.readAt(disk, named.firstLba * SECTOR_SIZE, ZERO_BYTES);
      if (head.some((b) => b !== 0)) {
        return failed(`${dev(part)} is named ${STATE_LABEL} but holds no ext4 filesystem labelled ${STATE_LABEL} and is not blank: not formatting it (its data may matter; inspect it from the debug shell)`);
      }
      log.warn(`state disk: ${dev(part)} is named ${STATE_LABEL} but blank (a first boot was cut short): formatting it`);
      return await format(deps, part);
    }

    const plan = planStatePartition(gpt, sectors, { name: STATE_LABEL, typeGuid: PARTITION_TYPES.linux, uniqueGuid: deps.randomGuid(), minSectors: STATE_MIN_SECTORS });
    if (plan.action === 'none') return { kind: 'none' };
    if (plan.action === 'refuse') {
      log.warn(`state disk: ${dev(disk)}: ${plan.reason}`);
      return existing ? { kind: 'none' } : failed(`${dev(disk)}: ${plan.reason}`);
    }
    const part = partitionName(disk, plan.index + 1);
    // Never create a second STATE beside a filesystem already in use; grow only the partition that holds it.
    if (existing && (plan.action === 'create' || part !== existing)) {
      log.warn(`state disk: ${dev(existing)} holds ${STATE_LABEL} but its GPT entry is not named ${STATE_LABEL} or is not the last: not changing the partition table`);
      return { kind: 'none' };
    }
    const sizeMiB = Math.floor(((plan.partition.lastLba - plan.partition.firstLba + 1) * SECTOR_SIZE) / 2 ** 20);
    log.info(`state disk: ${plan.action === 'create' ? 'creating' : 'growing'} ${dev(part)} (${STATE_LABEL}, ${sizeMiB} MiB) on ${dev(disk)}`);
    // A new partition starts blank: an old filesystem left there by an earlier install must not reappear.
    const writes = plan.action === 'create' ? [{ offset: plan.partition.firstLba * SECTOR_SIZE, data: Buffer.alloc(ZERO_BYTES) }] : [];
    // Every flashed copy of disk.raw has the same GUIDs (a reproducible image); the first boot makes this disk's
    // own, so that the firmware's LoaderDevicePartUUID names one disk when several are attached.
    const table =
      plan.action === 'create'
        ? { ...plan.gpt, diskGuid: deps.randomGuid(), partitions: plan.gpt.partitions.map((p) => (p.firstLba === bootStart ? { ...p, uniqueGuid: deps.randomGuid() } : p)) }
        : plan.gpt;
    deps.writeAt(disk, [...writes, ...gptWrites(table, sectors)]);
    // The kernel learns the new table only when no partition of the disk is in use: nothing is mounted yet.
    const reread = deps.run('blockdev', ['--rereadpt', dev(disk)], 30_000);
    if (reread.code !== 0) throw new Error(`blockdev --rereadpt ${dev(disk)} failed: ${reread.output.trim()}`);
    await waitFor(deps, dev(part));
    if (plan.action === 'grow') return { kind: 'grown' };
    return await format(deps, part);
  } catch (err) {
    return failed(`preparing the STATE partition on ${dev(disk)} failed: ${errorMessage(err)}`);
  }
}

async function format(deps: StorageDeps, part: string): Promise<Provision> {
  const mkfs = deps.run('mke2fs', ['-t', 'ext4', '-q', '-F', '-L', STATE_LABEL, dev(part)], MKFS_TIMEOUT_MS);
  if (mkfs.code !== 0) throw new Error(`mke2fs on ${dev(part)} failed: ${mkfs.output.trim()}`);
  return { kind: 'created', device: part };
}

async function waitFor(deps: StorageDeps, path: string): Promise<void> {
  for (let waited = 0; !deps.exists(path); waited += 50) {
    if (waited >= PARTITION_WAIT_MS) throw new Error(`${path} did not appear within ${PARTITION_WAIT_MS} ms after re-reading the partition table`);
    await deps.sleep(50);
  }
}

/** e2fsck, mount, and (after a disk grew) online resize. Falls back to RAM, marked degraded, when unusable. */
function mountState(deps: StorageDeps, device: string, grow: boolean, status: StorageStatus): void {
  const { log } = deps;
  const degrade = (reason: string) => {
    status.state.degraded = reason;
    status.state.reason = reason;
    log.error(`state disk: ${reason}; using RAM for ${STATE_MOUNTPOINT} (state will not persist this boot): repair it with e2fsck -f ${dev(device)} from the debug shell, or replace the disk`);
  };
  // -p repairs what is safe without a question (after a power cut: the journal, orphan inodes, counts);
  // when it stops short (exit 4), -y repairs the rest. Exit 1/2 = repaired.
  let fsck = deps.run('e2fsck', ['-p', dev(device)], FSCK_TIMEOUT_MS);
  if (fsck.code !== null && fsck.code >= 4) {
    log.warn(`state disk: e2fsck -p ${dev(device)} needs more (exit ${fsck.code}): running e2fsck -y\n${fsck.output.trim()}`);
    fsck = deps.run('e2fsck', ['-y', dev(device)], FSCK_TIMEOUT_MS);
  }
  if (fsck.code === null && fsck.missing) {
    log.warn(`state disk: e2fsck is not in the image (${fsck.output.trim()}); mounting anyway (the journal is replayed at mount)`);
  } else if (fsck.code === null) {
    // Killed mid-repair (timeout): the filesystem may be half fixed; do not mount it.
    return degrade(`e2fsck on ${dev(device)} did not finish: ${lastLine(fsck.output)}`);
  } else if (fsck.code >= 4) {
    return degrade(`e2fsck could not repair ${dev(device)} (exit ${fsck.code}): ${lastLine(fsck.output)}`);
  } else if (fsck.code > 0) {
    status.state.actions.push('repaired');
    log.warn(`state disk: e2fsck repaired ${dev(device)} (exit ${fsck.code}): ${lastLine(fsck.output)}`);
  }
  try {
    deps.mkdir(STATE_MOUNTPOINT, 0o700);
    deps.syscalls.mount(dev(device), STATE_MOUNTPOINT, 'ext4', MOUNT_FLAGS.MS_NOSUID | MOUNT_FLAGS.MS_NODEV | MOUNT_FLAGS.MS_RELATIME, null);
  } catch (err) {
    return degrade(`mounting ${dev(device)} failed: ${errorMessage(err)}`);
  }
  status.state.mounted = true;
  log.info(`state disk: ${dev(device)} (${STATE_LABEL}) mounted on ${STATE_MOUNTPOINT}`);
  if (grow) {
    const resize = deps.run('resize2fs', [dev(device)], FSCK_TIMEOUT_MS);
    if (resize.code === 0) {
      status.state.actions.push('grown');
      log.info(`state disk: ${dev(device)} grown to fill its partition`);
    } else {
      log.warn(`state disk: resize2fs ${dev(device)} failed (the partition grew, the filesystem did not): ${lastLine(resize.output)}`);
    }
  }
}

function mountBoot(deps: StorageDeps, device: string, status: StorageStatus, firmwareBooted: boolean): void {
  try {
    deps.mkdir(BOOT_MOUNTPOINT, 0o755);
    // Read-only; fmask keeps QEMU and its loader executable (FAT has no modes of its own).
    deps.syscalls.mount(dev(device), BOOT_MOUNTPOINT, 'vfat', MOUNT_FLAGS.MS_RDONLY | MOUNT_FLAGS.MS_NOSUID | MOUNT_FLAGS.MS_NODEV, 'fmask=0022,dmask=0022,shortname=mixed');
    status.boot.mounted = true;
    deps.log.info(`boot volume: ${dev(device)} (${BOOT_LABEL}) mounted read-only on ${BOOT_MOUNTPOINT}${firmwareBooted ? ' (the ESP the firmware booted)' : ''}`);
  } catch (err) {
    status.boot.reason = `mounting ${dev(device)} failed: ${errorMessage(err)}`;
    deps.log.error(`boot volume: ${status.boot.reason}; this node cannot spawn children from its own image`);
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? '';
}

function safe<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}
