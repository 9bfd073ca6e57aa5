// The real StorageDeps on a booted node: sysfs, /dev nodes and the e2fsprogs/busybox programs in the image.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, realpathSync, writeSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { MOUNT_FLAGS, type Syscalls } from '../../native';
import { errorMessage, type Logger } from '../log';
import { parseEfiGuidVariable, type StorageDeps } from './index';

const EFIVARS = '/sys/firmware/efi/efivars';
/** systemd's loader interface: the ESP's partition GUID as UTF-16 text (systemd-stub sets it when no loader did). */
const LOADER_DEVICE_PART_UUID = 'LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f';

export function realStorageDeps(syscalls: Pick<Syscalls, 'mount'>, log: Logger): StorageDeps {
  return {
    syscalls,
    log,
    listBlockDevices: () => readdirSync('/sys/class/block'),
    readHead: (name) => {
      try {
        const head = readAt(name, 0, 2048);
        return head.length === 2048 ? head : null;
      } catch {
        return null;
      }
    },
    parentDisk: (name) => (existsSync(`/sys/class/block/${name}/partition`) ? basename(dirname(realpathSync(`/sys/class/block/${name}`))) : null),
    partitionStart: (name) => {
      try {
        return Number(readFileSync(`/sys/class/block/${name}/start`, 'utf8').trim());
      } catch {
        return null;
      }
    },
    diskInfo: (disk) => ({
      sectors: Number(readFileSync(`/sys/class/block/${disk}/size`, 'utf8').trim()),
      readOnly: readFileSync(`/sys/class/block/${disk}/ro`, 'utf8').trim() === '1',
    }),
    readAt,
    writeAt: (disk, writes) => {
      const fd = openSync(`/dev/${disk}`, 'r+');
      try {
        // One fsync per range: the order (backup table before primary) must hold on the disk, not only here.
        for (const w of writes) {
          writeSync(fd, w.data, 0, w.data.length, w.offset);
          fsyncSync(fd);
        }
      } finally {
        closeSync(fd);
      }
    },
    run: (file, args, timeoutMs) => {
      const r = spawnSync(file, args, { timeout: timeoutMs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      if (r.error) return { code: null, output: `${file}: ${r.error.message}`, missing: (r.error as NodeJS.ErrnoException).code === 'ENOENT' };
      if (r.status === null) return { code: null, output: `${file} killed by ${r.signal ?? 'a signal'}` };
      return { code: r.status, output: `${r.stdout}${r.stderr}` };
    },
    exists: existsSync,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    randomGuid: () => randomUUID(),
    loaderPartUuid: () => {
      // Only on a UEFI boot; efivarfs is mounted here on first use (nothing else in the node needs it).
      if (!existsSync('/sys/firmware/efi')) return null;
      if (!existsSync(`${EFIVARS}/${LOADER_DEVICE_PART_UUID}`)) {
        try {
          syscalls.mount('efivarfs', EFIVARS, 'efivarfs', MOUNT_FLAGS.MS_NOSUID | MOUNT_FLAGS.MS_NODEV | MOUNT_FLAGS.MS_NOEXEC, null);
        } catch (err) {
          log.warn(`storage: mounting efivarfs on ${EFIVARS} failed: ${errorMessage(err)}`);
          return null;
        }
      }
      try {
        return parseEfiGuidVariable(readFileSync(`${EFIVARS}/${LOADER_DEVICE_PART_UUID}`));
      } catch {
        return null; // not booted through systemd-stub (or another loader that sets it)
      }
    },
    mkdir: (path, mode) => mkdirSync(path, { recursive: true, mode }),
  };
}

function readAt(name: string, offset: number, length: number): Buffer {
  return readRange(`/dev/${name}`, offset, length);
}

/** `length` bytes of the file or device at `path` from `offset` (fewer at its end). */
export function readRange(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = readSync(fd, buf, 0, length, offset);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}
