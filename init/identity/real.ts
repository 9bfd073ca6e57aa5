// The real IdentityDeps on a booted node: sysfs for fw_cfg, the boot disk (read-only) for the partition.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Logger } from '../log';
import { IDENTITY_SYSFS_PATH } from './document';
import { type DiskReader, findIdentityPartition, type IdentityDeps } from './index';

export function realIdentityDeps(disks: DiskReader, bootDevice: string | null, log: Logger): IdentityDeps {
  return {
    readFwCfg: () => {
      try {
        return readFileSync(IDENTITY_SYSFS_PATH);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    readPartition: () => findIdentityPartition(disks, bootDevice),
    mkdir: (path, mode) => {
      mkdirSync(path, { recursive: true, mode });
      chmodSync(path, mode); // /run/aurae/pki may exist already (mkdir keeps its mode)
    },
    writeFile: (path, content, mode) => {
      writeFileSync(path, content, { mode });
      chmodSync(path, mode);
    },
    log,
  };
}
