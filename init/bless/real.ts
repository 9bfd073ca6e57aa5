// The real BlessDeps on a booted node: the ESP through supervisor/upgrade/esp.ts (remounted read-write only for
// the rename), systemd-boot's EFI variables from efivarfs, the status file for auraed.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { MOUNT_FLAGS, type Syscalls } from '../../native';
import { EFIVARS_DIR, ESP_LOCK_FILE, espRemount, fsEsp, readBootedBy } from '../../supervisor/upgrade/esp';
import { BOOT_SLOT_STATUS_PATH, ESP_PATHS } from '../../supervisor/upgrade/slots';
import { errorMessage, type Logger } from '../log';
import type { BlessDeps } from './index';

export function realBlessDeps(syscalls: Pick<Syscalls, 'mount'>, espRoot: string, log: Logger, reboot: (reason: string) => void): BlessDeps {
  const esp = fsEsp(espRoot, espRemount((...args) => syscalls.mount(...args)), { lock: ESP_LOCK_FILE });
  return {
    espRoot,
    listEntries: () => esp.list(ESP_PATHS.entries),
    bootedBy: () => {
      if (!existsSync('/sys/firmware/efi')) return null;
      // init/state-disk mounts efivarfs on a UEFI boot; mount it here when it did not.
      if (!existsSync(EFIVARS_DIR) || readdirSync(EFIVARS_DIR).length === 0) {
        try {
          syscalls.mount('efivarfs', EFIVARS_DIR, 'efivarfs', MOUNT_FLAGS.MS_NOSUID | MOUNT_FLAGS.MS_NODEV | MOUNT_FLAGS.MS_NOEXEC, null);
        } catch (err) {
          log.warn(`boot slot: mounting efivarfs on ${EFIVARS_DIR} failed: ${errorMessage(err)}`);
        }
      }
      return readBootedBy(EFIVARS_DIR);
    },
    rename: (from, to) => esp.writable(async () => esp.rename(from, to)),
    writeStatus: (status) => {
      mkdirSync(dirname(BOOT_SLOT_STATUS_PATH), { recursive: true, mode: 0o755 });
      writeFileSync(BOOT_SLOT_STATUS_PATH, `${JSON.stringify(status)}\n`);
    },
    exists: existsSync,
    timers: { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) },
    now: Date.now,
    reboot,
    log,
  };
}
