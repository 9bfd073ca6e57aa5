// A root node's identity (its keys: see document.ts). No image holds one; before auraed starts, init looks for it
// in order: the fw_cfg item opt/aurae/identity (QEMU: npm start, the tests) → the AURAE_IDENTITY partition of the
// disk the node booted from (a disk flashed with `aer image flash … --identity …`). It writes the PEMs to
// /run/aurae/pki (tmpfs, 0700; keys 0600) and logs where they came from (never a key). A spawned child never
// gets here: its payload (init/guest) carries its own identity.
// Without an identity the node serves nothing: init says so on the console with what to do, and prints one
// machine-readable AURAE_NO_IDENTITY line (the counterpart of AURAE_READY).
import type { NodeConfig } from '../../supervisor/config';
import { NODE_PKI_DIR, NODE_PKI_FILES } from '../../supervisor/config/node-paths';
import { type Gpt, parseGpt, SECTOR_SIZE } from '../disk';
import { errorMessage, type Logger } from '../log';
import {
  IDENTITY_FW_CFG,
  IDENTITY_MAX_BYTES,
  IDENTITY_PARTITION_NAME,
  IDENTITY_PARTITION_TYPE,
  identityBytes,
  identityPkiFiles,
  parseIdentityDocument,
} from './document';

export * from './document';

export interface IdentityDeps {
  /** The fw_cfg item's bytes, or null when QEMU was given none (or this is not QEMU). */
  readFwCfg(): Buffer | null;
  /** The identity partition on the boot disk: its device name and first bytes; null when there is none. */
  readPartition(): { device: string; data: Buffer } | null;
  mkdir(path: string, mode: number): void;
  /** Write `content` with exactly `mode` (keys 0600). */
  writeFile(path: string, content: string, mode: number): void;
  log: Logger;
}

export type IdentityOutcome =
  | { ok: true; config: NodeConfig; source: string }
  | { ok: false; node: string; tried: { source: string; problem: string }[] };

/** The first word of the line init prints for a node without an identity (the counterpart of AURAE_READY). */
export const NO_IDENTITY_LINE_PREFIX = 'AURAE_NO_IDENTITY';
/** That line in console text, as a console waiter tests each line (group 1: its JSON: node, tried, fix). */
export const NO_IDENTITY_LINE = /AURAE_NO_IDENTITY (\{.*\})/;

/** What an operator does about a node without an identity (console text and the AURAE_NO_IDENTITY line). */
export const NO_IDENTITY_FIX = [
  `in QEMU, hand the build's identity over fw_cfg (npm start does: -fw_cfg name=${IDENTITY_FW_CFG},file=out/pki/identity.json)`,
  `on bare metal, flash the disk with it: aer image flash out/image/disk.raw /dev/DISK --identity out/pki/identity.json`,
];

/**
 * Find the node's identity and write its PEMs; returns the config pointing at them (spawn CA only when both the
 * config and the identity have one), or why there is none. Never throws.
 */
export function loadNodeIdentity(config: NodeConfig, deps: IdentityDeps): IdentityOutcome {
  const { log } = deps;
  const tried: { source: string; problem: string }[] = [];
  // Each source gives raw bytes (null: absent); the document is what comes before the first NUL.
  const sources: { source: string; read: () => { raw: Buffer; device: string | null } | null; absent: string }[] = [
    {
      source: `fw_cfg ${IDENTITY_FW_CFG}`,
      read: () => {
        const raw = deps.readFwCfg();
        return raw === null ? null : { raw, device: null };
      },
      absent: 'not given',
    },
    {
      source: `partition ${IDENTITY_PARTITION_NAME}`,
      read: () => {
        const part = deps.readPartition();
        return part === null ? null : { raw: part.data, device: `/dev/${part.device}` };
      },
      absent: 'no such partition on the boot disk',
    },
  ];
  for (const { source, read, absent } of sources) {
    let found: { raw: Buffer; device: string | null } | null;
    try {
      found = read();
    } catch (err) {
      tried.push({ source, problem: `reading failed: ${errorMessage(err)}` });
      log.error(`identity: ${source}: reading failed: ${errorMessage(err)}`);
      continue;
    }
    if (found === null) {
      tried.push({ source, problem: absent });
      continue;
    }
    const where = found.device ? `${source} (${found.device})` : source;
    try {
      const bytes = identityBytes(found.raw);
      if (bytes === null) throw new Error(`${where}: blank${found.device ? ' (the disk was flashed without --identity)' : ''}`);
      if (found.device && bytes.length >= IDENTITY_MAX_BYTES) throw new Error(`${where}: no end of document (NUL) within ${IDENTITY_MAX_BYTES} bytes`);
      const identity = parseIdentityDocument(bytes, where);
      if (identity.node !== config.node.name) {
        throw new Error(`${where}: it is the identity of node "${identity.node}", not of this node "${config.node.name}" (aurae.name= on the kernel command line needs that node's identity)`);
      }
      const withSpawnCa = config.pki.spawnCaCert !== null && identity.spawnCaCert !== null;
      deps.mkdir(NODE_PKI_DIR, 0o700);
      for (const f of identityPkiFiles(identity, withSpawnCa)) deps.writeFile(f.path, f.content, f.mode);
      const pki: NodeConfig['pki'] = {
        ...config.pki,
        serverCert: NODE_PKI_FILES.serverCert,
        serverKey: NODE_PKI_FILES.serverKey,
        spawnCaCert: withSpawnCa ? NODE_PKI_FILES.spawnCaCert : null,
        spawnCaKey: withSpawnCa ? NODE_PKI_FILES.spawnCaKey : null,
      };
      const spawn = withSpawnCa ? 'with its spawn CA' : config.pki.spawnCaCert !== null ? 'without a spawn CA (this node will not spawn children)' : 'without a spawn CA';
      log.info(`identity: node ${identity.node} from ${where}, ${spawn}; PEMs in ${NODE_PKI_DIR}`);
      return { ok: true, config: { ...config, pki }, source: where };
    } catch (err) {
      tried.push({ source: where, problem: errorMessage(err) });
      log.error(`identity: ${errorMessage(err)}`);
    }
  }
  return { ok: false, node: config.node.name, tried };
}

/** Console text and the machine-readable line for a node without an identity. */
export function noIdentityReport(outcome: Extract<IdentityOutcome, { ok: false }>): { message: string; line: string } {
  const message = [
    `no identity for node ${outcome.node}: auraed is not started and this node serves nothing (no key is ever in the image)`,
    ...outcome.tried.map((t) => `  ${t.source}: ${t.problem}`),
    'to fix:',
    ...NO_IDENTITY_FIX.map((f) => `  ${f}`),
  ].join('\n');
  const line = `${NO_IDENTITY_LINE_PREFIX} ${JSON.stringify({ node: outcome.node, tried: outcome.tried, fix: NO_IDENTITY_FIX })}`;
  return { message, line };
}

/** The storage adapters findIdentityPartition needs (a subset of init/state-disk's StorageDeps). */
export interface DiskReader {
  parentDisk(name: string): string | null;
  diskInfo(disk: string): { sectors: number };
  readAt(disk: string, offset: number, length: number): Buffer;
}

/**
 * The AURAE_IDENTITY partition (by GPT name and type) on the disk holding the boot volume `bootDevice`, read-only:
 * its device name and first IDENTITY_MAX_BYTES. Only the boot disk: another disk plugged in cannot hand this node
 * an identity. null when there is no boot disk or no such partition.
 */
export function findIdentityPartition(deps: DiskReader, bootDevice: string | null): { device: string; data: Buffer } | null {
  if (bootDevice === null) return null;
  const disk = deps.parentDisk(bootDevice);
  if (disk === null) return null;
  const gpt: Gpt | null = parseGpt((offset, length) => deps.readAt(disk, offset, length), deps.diskInfo(disk).sectors);
  const entry = gpt?.partitions.find((p) => p.name === IDENTITY_PARTITION_NAME && p.typeGuid === IDENTITY_PARTITION_TYPE);
  if (!entry) return null;
  const length = Math.min(IDENTITY_MAX_BYTES, (entry.lastLba - entry.firstLba + 1) * SECTOR_SIZE);
  const device = /\d$/.test(disk) ? `${disk}p${entry.index + 1}` : `${disk}${entry.index + 1}`;
  return { device, data: deps.readAt(disk, entry.firstLba * SECTOR_SIZE, length) };
}
