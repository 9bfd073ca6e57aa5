// The upgrade core over this node's real ESP, state volume and EFI variables (the composition root's one call).
import { loadSyscalls } from '../../native';
import type { NodeConfig } from '../config';
import type { Logger } from '../log';
import { ESP_LOCK_FILE, espRemount, fsEsp, readBootedBy } from './esp';
import { fsPartialStore } from './partial-store';
import { createUpgradeCore, type UpgradeCore } from './upgrade-core';

/**
 * The core for `config`: the ESP at upgrade.esp (init mounts it read-only; a change remounts it read-write with
 * init's other flags for its duration), partial uploads under state.dir/upgrade, the pinned certificates.
 */
export function createNodeUpgrade(config: NodeConfig, log: Logger): UpgradeCore {
  const remount = espRemount((...args) => loadSyscalls().mount(...args));
  return createUpgradeCore({
    esp: fsEsp(config.upgrade.esp, remount, { lock: ESP_LOCK_FILE }),
    partial: fsPartialStore(config.state.dir),
    bootedBy: () => readBootedBy(),
    signingCertFiles: config.upgrade.signingCerts,
    child: config.guest !== null,
    uploadIdleMs: config.upgrade.uploadIdleMs,
    log: log.child({ subsystem: 'upgrade' }),
  });
}
