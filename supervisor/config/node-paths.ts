// Where things are on a node: the paths the image build writes (image/initramfs/layout.ts), init prepares and
// auraed reads. Each is a contract between programs, so it is stated here once and imported by all of them.
// Dependency-free on purpose (node built-ins only): init, auraed and the build all bundle or import it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Everything the image installs for the node's programs: the bundles, native addons and aurae-exec. */
export const IMAGE_LIB_DIR = '/usr/lib/aurae';
/** The node config the image carries (written by the build, read by init). */
export const IMAGE_CONFIG_PATH = '/etc/aurae/config.json';
/** Public trust material in the image: the root CA certificate only, never a key. */
export const IMAGE_PKI_DIR = '/etc/aurae/pki';
/** The root CA certificate in the image: the trust root of the node and of every child it spawns. */
export const IMAGE_CA_CERT = `${IMAGE_PKI_DIR}/ca.crt`;
/** The image-signing certificate the image pins (upgrade.signingCerts): upgrades must be signed by its key (image/sign). */
export const IMAGE_SIGNING_CERT = `${IMAGE_PKI_DIR}/image-signing.crt`;

/**
 * The initramfs's boot stage: what /init needs before the root image is mounted (a static busybox) and the root
 * image itself (image/initramfs/layout.ts). A dot folder, so /init's `/*` does not copy it into the node's root.
 */
export const STAGE_DIR = '/.stage';
export const STAGE_BUSYBOX = `${STAGE_DIR}/busybox`;
export const STAGE_ROOT_IMAGE = `${STAGE_DIR}/root.img`;
/**
 * The root image's data starts at a multiple of this many bytes in the (uncompressed) initramfs, so a parent can
 * hand it to a child as a disk at that offset (supervisor/vms/child-root.ts) instead of the whole initramfs.
 */
export const ROOT_IMAGE_ALIGN = 4096;
/** The virtio serial of that disk: a child's /init mounts the disk with this serial on /usr. */
export const ROOT_DISK_SERIAL = 'aurae-root';

/** init's and auraed's runtime files (tmpfs). */
export const RUN_DIR = '/run/aurae';
/** The effective (command-line merged) config init writes for auraed. */
export const RUNTIME_CONFIG_PATH = `${RUN_DIR}/config.json`;
/** auraed's API socket by default (config listen.socket). */
export const DEFAULT_API_SOCKET = `${RUN_DIR}/aurae.sock`;
/** auraed's pid, written by init on each readiness line and removed when auraed exits. */
export const AURAED_PID_FILE = `${RUN_DIR}/auraed.pid`;
/** Where init leaves the storage status for auraed (health service aurae.storage). */
export const STORAGE_STATUS_PATH = `${RUN_DIR}/storage.json`;
/**
 * Where init writes the node's PEMs — its identity's (init/identity) or its guest payload's (init/guest): tmpfs,
 * 0700, keys 0600; never in the image.
 */
export const NODE_PKI_DIR = `${RUN_DIR}/pki`;
export const NODE_PKI_FILES = {
  caCert: `${NODE_PKI_DIR}/ca.crt`,
  serverCert: `${NODE_PKI_DIR}/node.crt`,
  serverKey: `${NODE_PKI_DIR}/node.key`,
  spawnCaCert: `${NODE_PKI_DIR}/spawn-ca.crt`,
  spawnCaKey: `${NODE_PKI_DIR}/spawn-ca.key`,
} as const;

/**
 * The folder of the running code: the bundle's when bundled (all of a program is one file there; the build
 * defines import.meta.url as the bundle's own URL, image/bundle), this file's folder when run from source.
 */
function runningFrom(): string {
  return path.dirname(fileURLToPath(import.meta.url));
}

/** A path in the checkout this code runs from (meaningful only from source: tsx, vitest). */
export function inCheckout(relative: string): string {
  return path.resolve(runningFrom(), '..', '..', relative);
}

/** The root of the checkout this code runs from (the build, the dev tools and the tests; meaningful only from source). */
export const REPO_ROOT = inCheckout('.');

export interface LocatedFile {
  /** Every path tried, in order (for the error message when none exists). */
  candidates: string[];
  /** The first candidate that exists, or null. */
  found: string | null;
}

/**
 * Find a file the build installs beside the bundles (IMAGE_LIB_DIR in the image: addons, aurae-exec, auraed.cjs),
 * trying in order: `override` (an environment setting), beside the running bundle, then `checkoutPath` (relative
 * to the checkout's root, for a program run from source; null when the checkout has no equivalent).
 */
export function locateInstalled(
  name: string,
  checkoutPath: string | null,
  options: { override?: string | undefined; exists?: (file: string) => boolean } = {},
): LocatedFile {
  const exists = options.exists ?? existsSync;
  const candidates = [...(options.override ? [options.override] : []), path.join(runningFrom(), name), ...(checkoutPath === null ? [] : [inCheckout(checkoutPath)])];
  const unique = [...new Set(candidates)];
  return { candidates: unique, found: unique.find((file) => exists(file)) ?? null };
}
