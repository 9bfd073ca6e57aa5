// The guest payload: everything a spawned child needs to become a node — its config (derived from the parent's:
// same trust root, authz policy and defaults; its own name, certificate and parent) and its PEMs. The parent hands
// it over through QEMU's fw_cfg (GUEST_PAYLOAD_FW_CFG); the child's init reads it from sysfs (init/guest).
import { gunzipSync, gzipSync } from 'node:zlib';
import * as z from 'zod/mini';
import { ConfigError, type NodeConfig, type NodeConfigInput, parseNodeConfig } from '../supervisor/config';
import { NODE_PKI_FILES } from '../supervisor/config/node-paths';
import { GuestError } from './errors';
import type { ChildIdentity } from './identity';
import { depthLeftOf, nodeDepth, parentPathOf } from './names';

/**
 * The payload's fw_cfg items are its parts: `opt/aurae/payload/0`, `/1`, … (QEMU `-fw_cfg name=…,file=…`; "opt/" is
 * the namespace QEMU leaves to users). It travels gzip-compressed in parts of at most a page because Linux 6.1's
 * fw_cfg sysfs file returns at most a page per read and, for a read at an offset, first re-reads the item from its
 * start one byte (one port read, one VM exit) at a time: a payload in one 6 KB item cost thousands of exits, most
 * of a second in a nested child. A part of one page is one read.
 */
export const GUEST_PAYLOAD_FW_CFG = 'opt/aurae/payload';
export const GUEST_PAYLOAD_PART_BYTES = 4096;
/** QEMU has 32 fw_cfg file slots and uses some of them itself: a payload has at most this many parts. */
export const GUEST_PAYLOAD_MAX_PARTS = 16;
/** The fw_cfg name of part `i`. */
export const guestPayloadPartName = (i: number): string => `${GUEST_PAYLOAD_FW_CFG}/${i}`;
/** Where the child's kernel exposes the parts (CONFIG_FW_CFG_SYSFS): `<dir>/0/raw`, `<dir>/1/raw`, … */
export const GUEST_PAYLOAD_SYSFS_DIR = `/sys/firmware/qemu_fw_cfg/by_name/${GUEST_PAYLOAD_FW_CFG}`;
export const guestPayloadPartSysfsPath = (i: number): string => `${GUEST_PAYLOAD_SYSFS_DIR}/${i}/raw`;
/** fw_cfg items are small by design; a payload is a few KB of PEM and JSON (this bounds it unpacked). */
export const GUEST_PAYLOAD_MAX_BYTES = 256 * 1024;

/** A payload's text as fw_cfg parts: gzip (deterministic: no name, no time), cut into GUEST_PAYLOAD_PART_BYTES. */
export function guestPayloadParts(text: string | Buffer): Buffer[] {
  const packed = gzipSync(text, { level: 9 });
  const parts: Buffer[] = [];
  for (let at = 0; at < packed.length; at += GUEST_PAYLOAD_PART_BYTES) parts.push(packed.subarray(at, at + GUEST_PAYLOAD_PART_BYTES));
  if (parts.length > GUEST_PAYLOAD_MAX_PARTS) {
    throw new GuestError(
      'GUEST_INVALID_ARGUMENT',
      `the guest payload is ${packed.length} bytes compressed, more than the ${GUEST_PAYLOAD_MAX_PARTS * GUEST_PAYLOAD_PART_BYTES} that fit in fw_cfg (${GUEST_PAYLOAD_MAX_PARTS} items of ${GUEST_PAYLOAD_PART_BYTES} bytes): give the node fewer authz rules, which its children inherit`,
    );
  }
  return parts;
}

/**
 * The payload's text as a child reads it: parts 0, 1, … through `read` (null: no such part) until one is missing,
 * joined and unpacked (at most GUEST_PAYLOAD_MAX_BYTES). Null when there is no part 0 (not a spawned child).
 */
export function readGuestPayloadParts(read: (sysfsPath: string) => Buffer | null): Buffer | null {
  const parts: Buffer[] = [];
  for (let i = 0; i <= GUEST_PAYLOAD_MAX_PARTS; i++) {
    const part = read(guestPayloadPartSysfsPath(i));
    if (part === null) break;
    parts.push(part);
  }
  if (parts.length === 0) return null;
  if (parts.length > GUEST_PAYLOAD_MAX_PARTS) {
    throw new GuestError('GUEST_PAYLOAD_INVALID', `guest payload: more than ${GUEST_PAYLOAD_MAX_PARTS} parts under ${GUEST_PAYLOAD_SYSFS_DIR}`);
  }
  return unpackGuestPayload(parts);
}

/** The payload's text from its parts in order (guestPayloadParts undone), unpacked to at most GUEST_PAYLOAD_MAX_BYTES. */
export function unpackGuestPayload(parts: Buffer[]): Buffer {
  try {
    return gunzipSync(Buffer.concat(parts), { maxOutputLength: GUEST_PAYLOAD_MAX_BYTES });
  } catch (err) {
    throw new GuestError(
      'GUEST_PAYLOAD_INVALID',
      `guest payload: its ${parts.length} fw_cfg part(s) (${GUEST_PAYLOAD_SYSFS_DIR}) do not unpack to at most ${GUEST_PAYLOAD_MAX_BYTES} bytes: ${(err as Error).message}`,
    );
  }
}

const CERT = /^(-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?)+$/;
// "-{5}" rather than five dashes: the image's bundles then carry no "PRIVATE KEY-----" text for key scanners to trip on.
const KEY = /^-{5}BEGIN PRIVATE KEY-{5}\r?\n[A-Za-z0-9+/=\r\n]+-{5}END PRIVATE KEY-{5}\r?\n?$/;
/** PEM validators shared with the node identity document (init/identity/document.ts). */
export const certPem = z.string().check(z.regex(CERT, 'expected PEM certificate(s) ("-----BEGIN CERTIFICATE-----")'));
export const keyPem = z.string().check(z.regex(KEY, 'expected one PEM PKCS#8 private key (a "BEGIN PRIVATE KEY" block)'));

const GuestPayloadEnvelope = z.strictObject({
  version: z.literal(1),
  /** Validated as a node config by parseNodeConfig, so its messages name config fields. */
  config: z.record(z.string(), z.unknown()),
  pki: z.strictObject({
    /** The root CA certificate the whole tree trusts (the parent's pki.caCert). */
    caCert: certPem,
    /** The child's server certificate, then its issuers below the root. */
    serverCertChain: certPem,
    serverKey: keyPem,
    /** The child's own spawn CA (chain) and key; null when it may not spawn children. */
    spawnCaCert: z.nullable(certPem),
    spawnCaKey: z.nullable(keyPem),
  }),
});

export interface GuestPayload {
  version: 1;
  /** The child's complete node config (defaults applied); config.guest names the parent. */
  config: NodeConfig;
  pki: {
    caCert: string;
    serverCertChain: string;
    serverKey: string;
    spawnCaCert: string | null;
    spawnCaKey: string | null;
  };
}

export interface GuestPayloadOptions {
  /** The child's network (default: QEMU user-mode networking, 10.0.2.15/24 via 10.0.2.2). */
  network?: NodeConfigInput['network'];
  /** The child's debug shell device (default none: the parent's device need not exist in the child). */
  debugShell?: string | null;
  /**
   * What the child inherits (its config's authz.inherited): the parent's effective rules — config, inherited
   * and API rules (supervisor/authz Authz.inheritable()). Default: the parent config's rules only.
   */
  inheritedRules?: NodeConfig['authz']['inherited'];
}

/** A config's own rules (authz.policy entries and authz.inherited) in the inherited form. Pure. */
export function configInheritable(authz: NodeConfig['authz']): NodeConfig['authz']['inherited'] {
  const fromPolicy = authz.policy.flatMap((entry) => {
    const { identity, allow, deny, ...scope } = entry;
    return [
      ...allow.map((method) => ({ identity, effect: 'allow' as const, method, ...scope })),
      ...deny.map((method) => ({ identity, effect: 'deny' as const, method, ...scope })),
    ];
  });
  return [...authz.inherited, ...fromPolicy];
}

/** QEMU user-mode networking's fixed guest address and gateway. */
const QEMU_USER_NET = { mode: 'static', address: '10.0.2.15/24', gateway: '10.0.2.2' } as const;

/**
 * The payload for `child` (minted by mintChildIdentity from this parent's spawn CA). The child's config is the
 * parent's with its own name, PKI paths (NODE_PKI_FILES, where its init writes the payload's PEMs), guest section, network and debug shell; the trust
 * root, authz (admins, audit; the parent's effective rules as authz.inherited), listeners and every default are
 * inherited. No parent key is included.
 */
export function buildGuestPayload(
  parentConfig: NodeConfig,
  parentCaCertPem: string,
  child: ChildIdentity,
  options: GuestPayloadOptions = {},
): GuestPayload {
  const parentPath = parentConfig.node.name;
  if (parentPathOf(child.nodePath) !== parentPath) {
    throw new GuestError('GUEST_INVALID_ARGUMENT', `child "${child.nodePath}" is not a child of node "${parentPath}": mint its identity from this node's spawn CA`);
  }
  if (depthLeftOf(parentConfig) < 1) {
    throw new GuestError('GUEST_DEPTH_EXCEEDED', `node "${parentPath}" may not spawn "${child.nodePath}": vms.maxDepth ${parentConfig.vms.maxDepth} is reached`);
  }
  const input: NodeConfigInput = {
    ...parentConfig,
    node: { ...parentConfig.node, name: child.nodePath },
    pki: {
      caCert: NODE_PKI_FILES.caCert,
      serverCert: NODE_PKI_FILES.serverCert,
      serverKey: NODE_PKI_FILES.serverKey,
      spawnCaCert: child.spawnCa ? NODE_PKI_FILES.spawnCaCert : null,
      spawnCaKey: child.spawnCa ? NODE_PKI_FILES.spawnCaKey : null,
    },
    network: options.network ?? { eth0: QEMU_USER_NET },
    debug: { ...parentConfig.debug, shell: options.debugShell ?? null },
    guest: { parent: parentPath, depth: nodeDepth(child.nodePath) },
    // Every rule in force at the parent becomes an inherited ("parent") rule of the child: deny wins there as
    // here, and the parent pushes the new set after each change (AuthzService/SetParentRules).
    authz: { ...parentConfig.authz, policy: [], inherited: [...(options.inheritedRules ?? configInheritable(parentConfig.authz))] },
  };
  let config: NodeConfig;
  try {
    config = parseNodeConfig(input, `guest payload for "${child.nodePath}"`);
  } catch (err) {
    if (err instanceof ConfigError) throw new GuestError('GUEST_INVALID_ARGUMENT', err.message, err.problems);
    throw err;
  }
  const payload: GuestPayload = {
    version: 1,
    config,
    pki: {
      caCert: parentCaCertPem,
      serverCertChain: child.serverCertChainPem,
      serverKey: child.serverKeyPem,
      spawnCaCert: child.spawnCa?.certPem ?? null,
      spawnCaKey: child.spawnCa?.keyPem ?? null,
    },
  };
  // The same checks the child applies: a payload we build is one the child accepts.
  return parseGuestPayload(guestPayloadText(payload), `guest payload for "${child.nodePath}"`);
}

/** The payload as text (JSON): what guestPayloadParts packs for fw_cfg. */
export function guestPayloadText(payload: GuestPayload): string {
  return `${JSON.stringify(payload)}\n`;
}

/**
 * Parse and validate a payload (strict: unknown fields are errors). Throws GuestError GUEST_PAYLOAD_INVALID whose
 * message starts with `source` and lists one `field: problem` per issue.
 */
export function parseGuestPayload(text: string | Buffer, source = 'guest payload'): GuestPayload {
  const fail = (problems: string[]): never => {
    throw new GuestError('GUEST_PAYLOAD_INVALID', `${source}: invalid guest payload:\n  ${problems.join('\n  ')}`, problems);
  };
  const size = typeof text === 'string' ? Buffer.byteLength(text) : text.length;
  if (size > GUEST_PAYLOAD_MAX_BYTES) fail([`(root): ${size} bytes is more than the ${GUEST_PAYLOAD_MAX_BYTES} a payload may have`]);
  let value: unknown;
  try {
    value = JSON.parse(typeof text === 'string' ? text : text.toString('utf8'));
  } catch (err) {
    fail([`(root): not valid JSON: ${(err as Error).message}`]);
  }
  const envelope = GuestPayloadEnvelope.safeParse(value);
  if (!envelope.success) {
    fail(envelope.error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`));
  }
  const { pki, config: rawConfig } = envelope.data!;
  let config: NodeConfig;
  try {
    config = parseNodeConfig(rawConfig, source);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.problems.map((p) => `config.${p}`));
    throw err;
  }
  const problems: string[] = [];
  if (config!.guest === null) problems.push('config.guest: missing: a spawned node\'s config names its parent (guest.parent, guest.depth)');
  for (const field of ['caCert', 'serverCert', 'serverKey', 'spawnCaCert', 'spawnCaKey'] as const) {
    const value = config!.pki[field];
    if (value !== null && value !== NODE_PKI_FILES[field]) problems.push(`config.pki.${field}: must be ${NODE_PKI_FILES[field]} (where init writes the payload's PEMs), not ${value}`);
  }
  if ((config!.pki.spawnCaCert === null) !== (pki.spawnCaCert === null)) {
    problems.push(`pki.spawnCaCert: ${pki.spawnCaCert === null ? 'missing although config.pki.spawnCaCert is set' : 'present although config.pki.spawnCaCert is null'}`);
  }
  if ((pki.spawnCaCert === null) !== (pki.spawnCaKey === null)) problems.push('pki.spawnCaKey: spawnCaCert and spawnCaKey go together');
  if (problems.length) fail(problems);
  return { version: 1, config: config!, pki };
}

/** A file init writes for the payload. */
export interface GuestFile {
  path: string;
  content: string;
  mode: number;
}

/** The PEM files the child's init writes (keys 0600), at the paths its config names. Pure. */
export function guestPkiFiles(payload: GuestPayload): GuestFile[] {
  const files: GuestFile[] = [
    { path: NODE_PKI_FILES.caCert, content: payload.pki.caCert, mode: 0o644 },
    { path: NODE_PKI_FILES.serverCert, content: payload.pki.serverCertChain, mode: 0o644 },
    { path: NODE_PKI_FILES.serverKey, content: payload.pki.serverKey, mode: 0o600 },
  ];
  if (payload.pki.spawnCaCert !== null && payload.pki.spawnCaKey !== null) {
    files.push(
      { path: NODE_PKI_FILES.spawnCaCert, content: payload.pki.spawnCaCert, mode: 0o644 },
      { path: NODE_PKI_FILES.spawnCaKey, content: payload.pki.spawnCaKey, mode: 0o600 },
    );
  }
  return files;
}
