// Guest mode: a node spawned by another node finds its payload (config + PEMs, see guest/) in fw_cfg and
// becomes the child the payload describes instead of the node its image describes. Everything it needs is in
// the payload, its keys included; the image holds no key (a child boots its parent's image), so an unusable
// payload leaves init with the image config and no identity (init/identity): the child then serves nothing.
import { IMAGE_CONFIG_PATH, type NodeConfig } from '../../supervisor/config';
import { NODE_PKI_DIR } from '../../supervisor/config/node-paths';
import { GUEST_PAYLOAD_SYSFS_DIR, guestPkiFiles, parseGuestPayload, readGuestPayloadParts } from '../../guest/child';
import { resolveNodeConfig } from '../cmdline';
import { mkdirExact, readFwCfgItem, writeFileExact } from '../identity/real';
import { errorMessage, type Logger } from '../log';

export interface GuestModeDeps {
  /** The payload's bytes (its fw_cfg parts joined and unpacked), or null when there is none (a node booted from its image, not spawned). */
  readPayload(): Buffer | null;
  mkdir(path: string, mode: number): void;
  /** Write `content` with exactly `mode` (keys 0600). */
  writeFile(path: string, content: string, mode: number): void;
  /** /proc/cmdline: applied on top of the payload's config as it is on top of the image's. */
  cmdline: string;
  log: Logger;
}

/**
 * The node config from the guest payload, with its PEMs written under NODE_PKI_DIR (/run/aurae/pki); null when there is no
 * payload or it is unusable (logged with every problem: init then boots from the image config, so the node stays
 * reachable for debugging).
 */
export function loadGuestConfig(deps: GuestModeDeps): NodeConfig | null {
  const { log } = deps;
  let raw: Buffer | null;
  try {
    raw = deps.readPayload();
  } catch (err) {
    log.error(`guest mode: reading ${GUEST_PAYLOAD_SYSFS_DIR} failed: ${errorMessage(err)}; ${FALLBACK}`);
    return null;
  }
  if (raw === null) return null;
  try {
    const payload = parseGuestPayload(raw, GUEST_PAYLOAD_SYSFS_DIR);
    const config = resolveNodeConfig(JSON.stringify(payload.config), `guest payload ${GUEST_PAYLOAD_SYSFS_DIR}`, deps.cmdline, log);
    if (config.guest === null || config.node.name !== payload.config.node.name) {
      throw new Error(`the kernel command line changed the node name to "${config.node.name}": a spawned node keeps the name its parent gave it (${payload.config.node.name})`);
    }
    deps.mkdir(NODE_PKI_DIR, 0o700);
    for (const file of guestPkiFiles(payload)) deps.writeFile(file.path, file.content, file.mode);
    log.info(`guest mode: node ${config.node.name} (parent ${config.guest.parent}, depth ${config.guest.depth})`);
    return config;
  } catch (err) {
    log.error(`guest mode: ${errorMessage(err)}\n${FALLBACK}`);
    return null;
  }
}

const FALLBACK = `ignoring the guest payload and booting from the image config ${IMAGE_CONFIG_PATH} (without an identity: the image holds no key, so the node serves nothing); the parent must rebuild the payload`;

/** The real adapters (PID 1 in a guest). */
export function realGuestModeDeps(cmdline: string, log: Logger): GuestModeDeps {
  return {
    readPayload: () => readGuestPayloadParts(readFwCfgItem),
    mkdir: mkdirExact,
    writeFile: writeFileExact,
    cmdline,
    log,
  };
}
