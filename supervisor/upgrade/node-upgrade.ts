// The upgrade core over this node's real ESP, state volume and EFI variables (the composition root's one call).
import { loadSyscalls, MOUNT_FLAGS } from '../../native';
import type { NodeConfig } from '../config';
import type { Logger } from '../log';
import { ESP_LOCK_FILE, fsEsp, readBootedBy } from './esp';
import { fsPartialStore } from './partial-store';
import { createUpgradeCore, type UpgradeCore } from './upgrade-core';

/**
 * The core for `config`: the ESP at upgrade.esp (init mounts it read-only; a change remounts it read-write with
 * init's other flags for its duration), partial uploads under state.dir/upgrade, the pinned certificates.
 */
export function createNodeUpgrade(config: NodeConfig, log: Logger): UpgradeCore {
  const { MS_REMOUNT, MS_NOSUID, MS_NODEV, MS_RDONLY } = MOUNT_FLAGS;
  const remount = (root: string, readWrite: boolean) => loadSyscalls().mount(null, root, null, MS_REMOUNT | MS_NOSUID | MS_NODEV | (readWrite ? 0 : MS_RDONLY), null);
  return createUpgradeCore({
    esp: fsEsp(config.upgrade.esp, remount, { lock: ESP_LOCK_FILE }),
    partial: fsPartialStore(config.state.dir),
    bootedBy: () => readBootedBy(),
    signingCertFiles: config.upgrade.signingCerts,
    child: config.guest !== null,
    log: log.child({ subsystem: 'upgrade' }),
  });
}
