// The real IdentityDeps on a booted node: sysfs for fw_cfg, the boot disk (read-only) for the partition.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Logger } from '../log';
import { IDENTITY_SYSFS_PATH } from './document';
import { type DiskReader, findIdentityPartition, type IdentityDeps } from './index';

export function realIdentityDeps(disks: DiskReader, bootDevice: string | null, log: Logger): IdentityDeps {
  return {
    readFwCfg: () => readFwCfgItem(IDENTITY_SYSFS_PATH),
    readPartition: () => findIdentityPartition(disks, bootDevice),
    mkdir: mkdirExact,
    writeFile: writeFileExact,
    log,
  };
}

/** A fw_cfg item's bytes from sysfs, or null when QEMU was not given it (no such file). */
export function readFwCfgItem(sysfsPath: string): Buffer | null {
  try {
    return readFileSync(sysfsPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** mkdir -p with exactly `mode`: /run/aurae/pki may exist already, and mkdir keeps an existing mode. */
export function mkdirExact(path: string, mode: number): void {
  mkdirSync(path, { recursive: true, mode });
  chmodSync(path, mode);
}

/** Write `content` with exactly `mode` (keys 0600): an existing file keeps its old mode through writeFileSync. */
export function writeFileExact(path: string, content: string, mode: number): void {
  writeFileSync(path, content, { mode });
  chmodSync(path, mode);
}
