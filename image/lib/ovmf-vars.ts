// OVMF's variable store (the VARS pflash image) read and edited on the host: which certificates PK, KEK and db
// hold, and a copy whose db holds other certificates — what an operator does in the firmware's setup menu (or
// with virt-fw-vars, which Debian 12 lacks) to trust the image-signing key. The tests use it to boot the build's
// own signed systemd-boot and UKI with Secure Boot on.
//
// Layout (EDK2 MdeModulePkg/Include/Guid/VariableFormat.h, the authenticated format every OVMF build uses): a
// firmware volume header ("_FVH"), a variable store header, then the variables one after another, each a 60-byte
// header, its UTF-16 name and its data, 4-byte aligned, up to the first erased (0xFF) byte. The firmware never
// rewrites a variable in place: it appends the new copy and clears bits of the old one's State (deleted). That
// is what withDbCertificates does too, so the firmware reads the result as if it had made the change itself.
// The store carries no checksum over variables (only the volume header has one, and it is left alone).
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';

/** EFI_GLOBAL_VARIABLE: PK, KEK, SecureBoot, SetupMode, Boot####. */
export const EFI_GLOBAL_VARIABLE = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
/** EFI_IMAGE_SECURITY_DATABASE_GUID: db and dbx. */
export const EFI_IMAGE_SECURITY_DATABASE = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';
/** EFI_CERT_X509_GUID: a signature list of DER certificates. */
export const EFI_CERT_X509 = 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072';
/** EDK2's SecureBootEnable (1: the firmware enforces signatures once a PK is enrolled). */
export const SECURE_BOOT_ENABLE_GUID = 'f0a30bc7-af08-4556-99c4-001009c93a44';
/** The owner recorded beside each certificate this module enrols (any GUID will do; this one is Aurae's). */
export const AURAE_SIGNATURE_OWNER = '6c6b3a52-7c1e-4d39-9d59-61757261650a';

const AUTHENTICATED_VARIABLE_STORE = 'aaf32c78-947b-439a-a180-2e144ec37792';
const VARIABLE_START_ID = 0x55aa;
const VAR_ADDED = 0x3f;
/** VAR_ADDED & VAR_IN_DELETED_TRANSITION: still the live copy until its replacement is complete. */
const VAR_ADDED_IN_TRANSITION = 0x3e;
/** VAR_ADDED & VAR_IN_DELETED_TRANSITION & VAR_DELETED: what the firmware leaves of a replaced copy. */
const VAR_REPLACED = 0x3c;
const VARIABLE_HEADER_BYTES = 60;
const STORE_HEADER_BYTES = 28;
/** NV + boot-service + runtime access + time-based authenticated write: how PK, KEK, db and dbx are stored. */
const SECURE_BOOT_DB_ATTRIBUTES = 0x27;

/** One variable as stored: live or a replaced (deleted) copy. */
export interface StoredVariable {
  /** Offset of its header in the image. */
  offset: number;
  name: string;
  vendor: string;
  attributes: number;
  state: number;
  /** The firmware reads this copy (not replaced). */
  live: boolean;
  /** EFI_TIME of its last authenticated write (16 bytes). */
  timestamp: Buffer;
  data: Buffer;
}

export interface VarStore {
  variables: StoredVariable[];
  /** Offset of the first byte after the last variable (4-byte aligned): where the next one goes. */
  end: number;
  /** Offset of the first byte after the variable store. */
  limit: number;
}

export class VarStoreError extends Error {}

/** GUID text → the 16 bytes UEFI stores (the first three fields little-endian). Pure. */
export function guidBytes(guid: string): Buffer {
  const hex = guid.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new VarStoreError(`ovmf vars: guid ${JSON.stringify(guid)} is invalid: expected 8-4-4-4-12 hex digits`);
  const b = Buffer.from(hex, 'hex');
  return Buffer.concat([Buffer.from(b.subarray(0, 4)).reverse(), Buffer.from(b.subarray(4, 6)).reverse(), Buffer.from(b.subarray(6, 8)).reverse(), b.subarray(8)]);
}

/** The 16 bytes UEFI stores → GUID text (lower case). Pure. */
export function guidText(bytes: Buffer): string {
  const h = (b: Buffer) => b.toString('hex');
  const rev = (s: number, e: number) => h(Buffer.from(bytes.subarray(s, e)).reverse());
  return `${rev(0, 4)}-${rev(4, 6)}-${rev(6, 8)}-${h(bytes.subarray(8, 10))}-${h(bytes.subarray(10, 16))}`;
}

const align4 = (n: number) => (n + 3) & ~3;

/** Parse an OVMF_VARS image. Throws VarStoreError naming what is wrong. Pure. */
export function parseVarStore(image: Buffer): VarStore {
  const bad = (why: string): never => {
    throw new VarStoreError(`ovmf vars: ${why}: expected an OVMF_VARS image (e.g. /usr/share/OVMF/OVMF_VARS_4M.fd)`);
  };
  if (image.length < 0x48 + STORE_HEADER_BYTES || image.toString('latin1', 0x28, 0x2c) !== '_FVH') bad('no firmware volume header (_FVH at offset 0x28)');
  const storeStart = image.readUInt16LE(0x30);
  if (storeStart + STORE_HEADER_BYTES > image.length) bad(`the volume header length ${storeStart} runs past the image`);
  if (guidText(image.subarray(storeStart, storeStart + 16)) !== AUTHENTICATED_VARIABLE_STORE) bad('the variable store is not in the authenticated format');
  const limit = storeStart + image.readUInt32LE(storeStart + 16);
  if (limit > image.length) bad(`the variable store size runs past the image`);
  const variables: StoredVariable[] = [];
  let p = storeStart + STORE_HEADER_BYTES;
  while (p + VARIABLE_HEADER_BYTES <= limit && image.readUInt16LE(p) === VARIABLE_START_ID) {
    const nameSize = image.readUInt32LE(p + 36);
    const dataSize = image.readUInt32LE(p + 40);
    const nameAt = p + VARIABLE_HEADER_BYTES;
    if (nameAt + nameSize + dataSize > limit) bad(`the variable at offset ${p} runs past the store`);
    const state = image[p + 2]!;
    variables.push({
      offset: p,
      name: image.toString('utf16le', nameAt, nameAt + nameSize).replace(/\0+$/, ''),
      vendor: guidText(image.subarray(p + 44, p + 60)),
      attributes: image.readUInt32LE(p + 4),
      state,
      live: state === VAR_ADDED || state === VAR_ADDED_IN_TRANSITION,
      timestamp: Buffer.from(image.subarray(p + 16, p + 32)),
      data: Buffer.from(image.subarray(nameAt + nameSize, nameAt + nameSize + dataSize)),
    });
    p = align4(nameAt + nameSize + dataSize);
  }
  return { variables, end: p, limit };
}

/** The live copy of a variable, or null. Pure. */
export function liveVariable(store: VarStore, name: string, vendor: string): StoredVariable | null {
  return store.variables.filter((v) => v.live && v.name === name && v.vendor === vendor).at(-1) ?? null;
}

/** The DER certificates of a list of EFI_SIGNATURE_LISTs (other signature types, e.g. hashes, are skipped). Pure. */
export function x509Certificates(lists: Buffer): Buffer[] {
  const certs: Buffer[] = [];
  for (let p = 0; p + 28 <= lists.length; ) {
    const listSize = lists.readUInt32LE(p + 16);
    const headerSize = lists.readUInt32LE(p + 20);
    const signatureSize = lists.readUInt32LE(p + 24);
    if (listSize < 28 || p + listSize > lists.length || signatureSize < 16) throw new VarStoreError(`ovmf vars: a signature list at offset ${p} is malformed`);
    if (guidText(lists.subarray(p, p + 16)) === EFI_CERT_X509) {
      for (let s = p + 28 + headerSize; s + signatureSize <= p + listSize; s += signatureSize) certs.push(Buffer.from(lists.subarray(s + 16, s + signatureSize)));
    }
    p += listSize;
  }
  return certs;
}

/** EFI_SIGNATURE_LISTs holding `certs` (DER), one list per certificate (a list's entries share one size). Pure. */
export function x509SignatureLists(certs: Buffer[], owner = AURAE_SIGNATURE_OWNER): Buffer {
  return Buffer.concat(
    certs.map((cert) => {
      const header = Buffer.alloc(28);
      guidBytes(EFI_CERT_X509).copy(header, 0);
      header.writeUInt32LE(28 + 16 + cert.length, 16);
      header.writeUInt32LE(0, 20);
      header.writeUInt32LE(16 + cert.length, 24);
      return Buffer.concat([header, guidBytes(owner), cert]);
    }),
  );
}

/** What a store enrols: the certificates of PK, KEK and db, and whether SecureBootEnable is set. Pure. */
export function enrolledKeys(image: Buffer): { pk: Buffer[]; kek: Buffer[]; db: Buffer[]; secureBootEnable: boolean } {
  const store = parseVarStore(image);
  const certs = (name: string, vendor: string) => x509Certificates(liveVariable(store, name, vendor)?.data ?? Buffer.alloc(0));
  return {
    pk: certs('PK', EFI_GLOBAL_VARIABLE),
    kek: certs('KEK', EFI_GLOBAL_VARIABLE),
    db: certs('db', EFI_IMAGE_SECURITY_DATABASE),
    secureBootEnable: liveVariable(store, 'SecureBootEnable', SECURE_BOOT_ENABLE_GUID)?.data[0] === 1,
  };
}

/**
 * A copy of the store `image` whose db holds exactly `certs` (DER): the live db is marked replaced and a new one
 * appended (keeping its timestamp, so a later authenticated update by a KEK holder is still newer). PK, KEK, dbx
 * and the rest are unchanged. Precondition: the store has a PK (or Secure Boot stays off whatever db holds).
 * Pure.
 */
export function withDbCertificates(image: Buffer, certs: Buffer[]): Buffer {
  if (certs.length === 0) throw new VarStoreError('ovmf vars: certs is empty: expected at least one certificate for db');
  const store = parseVarStore(image);
  const old = liveVariable(store, 'db', EFI_IMAGE_SECURITY_DATABASE);
  const name = Buffer.from('db\0', 'utf16le');
  const data = x509SignatureLists(certs);
  const header = Buffer.alloc(VARIABLE_HEADER_BYTES);
  header.writeUInt16LE(VARIABLE_START_ID, 0);
  header[2] = VAR_ADDED;
  header.writeUInt32LE(old?.attributes ?? SECURE_BOOT_DB_ATTRIBUTES, 4);
  (old?.timestamp ?? Buffer.alloc(16)).copy(header, 16);
  header.writeUInt32LE(name.length, 36);
  header.writeUInt32LE(data.length, 40);
  guidBytes(EFI_IMAGE_SECURITY_DATABASE).copy(header, 44);
  const record = Buffer.concat([header, name, data]);
  const free = image.subarray(store.end, store.end + record.length);
  if (store.end + record.length > store.limit || free.some((b) => b !== 0xff)) {
    throw new VarStoreError(`ovmf vars: no room for a db of ${data.length} bytes (${store.limit - store.end} bytes free): start from a fresh template`);
  }
  const out = Buffer.from(image);
  if (old) out[old.offset + 2] = VAR_REPLACED;
  record.copy(out, store.end);
  return out;
}

/** The DER bytes of every certificate in a PEM file. */
export function readPemCertificates(file: string): Buffer[] {
  const pems = fs.readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new VarStoreError(`ovmf vars: ${file} holds no PEM certificate`);
  return pems.map((pem) => Buffer.from(new X509Certificate(pem).raw));
}

/**
 * Write `out`: the variable store `template` (with a PK and SecureBootEnable, e.g. OVMF_VARS_SNAKEOIL) with db
 * holding exactly the certificates of `certFiles` (PEM) — the firmware then runs only EFI binaries they signed.
 */
export function writeStoreWithDb(template: string, out: string, certFiles: string[]): void {
  const image = fs.readFileSync(template);
  const keys = enrolledKeys(image);
  if (keys.pk.length === 0 || !keys.secureBootEnable) {
    throw new VarStoreError(`ovmf vars: ${template} has ${keys.pk.length === 0 ? 'no PK' : 'SecureBootEnable off'}: Secure Boot would stay off; use a template with keys enrolled (OVMF_VARS_SNAKEOIL)`);
  }
  fs.writeFileSync(out, withDbCertificates(image, certFiles.flatMap(readPemCertificates)));
}
