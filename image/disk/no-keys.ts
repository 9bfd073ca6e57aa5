// "No private key in any build output", checked the way an attacker with the image file would look: every output
// unpacked — compressed data decompressed (zstd, gzip), cpio archives split into their files, the root image
// (erofs or squashfs) into its files, PE files (the UKI) into their sections (.initrd), FAT volumes (esp.img, the ESP inside disk.raw) into their files with mtools —
// and every byte searched for a PEM private key and for the DER (and raw) bytes of each key of the build's PKI.
// Used by qemu-tests/00-image on the real outputs; unit-tested on small synthetic ones that do hold a key.
import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseGpt, SECTOR_SIZE } from '../../init/disk';

export interface KeyNeedle {
  /** e.g. "node.key (PKCS#8 DER)". */
  name: string;
  bytes: Buffer;
}

export interface Finding {
  /** Where in the unpacked tree, e.g. "esp.img::/EFI/BOOT/BOOTX64.EFI[.initrd]{zstd}/etc/aurae/pki/node.key". */
  where: string;
  what: string;
}

export interface ScanResult {
  findings: Finding[];
  /** Every unpacked item that was searched (to prove the scan reached inside archives and volumes). */
  visited: string[];
}

const PEM_PRIVATE = Buffer.from('PRIVATE KEY-----');
const PEM_BEGIN = Buffer.from('-----BEGIN ');
/** Base64 characters a PEM body starts with right after its BEGIN line. */
const PEM_BODY_MIN = 40;
const MAX_DEPTH = 6;
const MTOOLS_ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

/** The byte strings that give a key away: its PKCS#8 DER, its SEC1/PKCS#1 DER, and an EC key's private scalar. */
export function keyNeedles(pkiDir: string): KeyNeedle[] {
  const needles: KeyNeedle[] = [];
  for (const file of fs.readdirSync(pkiDir).filter((f) => f.endsWith('.key')).sort()) {
    const key = createPrivateKey(fs.readFileSync(path.join(pkiDir, file)));
    needles.push({ name: `${file} (PKCS#8 DER)`, bytes: key.export({ format: 'der', type: 'pkcs8' }) });
    if (key.asymmetricKeyType === 'ec') {
      needles.push({ name: `${file} (SEC1 DER)`, bytes: key.export({ format: 'der', type: 'sec1' }) });
      const d = key.export({ format: 'jwk' }).d;
      if (d) needles.push({ name: `${file} (private scalar)`, bytes: Buffer.from(d, 'base64url') });
    } else if (key.asymmetricKeyType === 'rsa') {
      needles.push({ name: `${file} (PKCS#1 DER)`, bytes: key.export({ format: 'der', type: 'pkcs1' }) });
    }
  }
  return needles;
}

/** Scan build outputs (files: raw images, archives, volumes) unpacking everything inside them. */
export function scanForKeys(files: string[], needles: KeyNeedle[]): ScanResult {
  const result: ScanResult = { findings: [], visited: [] };
  for (const file of files) {
    const name = path.basename(file);
    expand(fs.readFileSync(file), name, needles, result, 0);
    for (const volume of fatVolumes(file)) {
      for (const inner of listFat(file, volume.offset)) {
        expand(readFat(file, volume.offset, inner), `${name}${volume.label}:${inner}`, needles, result, 1);
      }
    }
  }
  return result;
}

function search(buf: Buffer, where: string, needles: KeyNeedle[], result: ScanResult): void {
  result.visited.push(where);
  for (const digest of pemPrivateKeys(buf)) {
    if (!PUBLIC_TEST_KEYS.has(digest)) result.findings.push({ where, what: `a PEM private key ("-----BEGIN … PRIVATE KEY-----" and a body; DER sha256 ${digest})` });
  }
  for (const n of needles) if (buf.includes(n.bytes)) result.findings.push({ where, what: n.name });
}

const isBase64 = (b: number | undefined) =>
  b !== undefined && ((b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2b || b === 0x2f || b === 0x3d);

/**
 * Public test vectors, not secrets: the PEM private keys GnuTLS compiles into libgnutls.so.30 for its FIPS
 * self-tests (lib/crypto-selftests-pk.c; Debian 3.7.9), which the boot volume carries as a library of QEMU. Listed
 * by the sha256 of their DER so that any other key, in any file, is still reported.
 */
export const PUBLIC_TEST_KEYS = new Set([
  '87e288dc7dbc29a24241b596ec8c84f949d9f09f34fc0cf69242481fb2274770',
  'd245e52c341a76645e1b0e56c58dc964cd4f3ecaea64a9c6d6db9897d4948a8a',
  '0294b4406902e33bb02f89eaf4c691328790d7a9cd01b873d68edac994f310a1',
  '458022ddcb5598b39253bc027eb02c4f3dba00e2bdbaef239a35bc91c9bd4f3a',
  '09f1c1a4680df80b9e8e6e587d3a787de7402a919e366426ad807a1c0f8c98c1',
  '2859ff03b44c8f0e4f96604b8cced325ef4d01ca935422b2041d88d8809f8fa1',
]);

/**
 * The sha256 (of the DER) of every PEM private key in `buf`: a "-----BEGIN [RSA |EC |…]PRIVATE KEY-----" line
 * followed by a base64 body. The marker alone is not one: TLS libraries and our own validators (guest/payload.ts)
 * hold it as a string or in a regex.
 */
export function pemPrivateKeys(buf: Buffer): string[] {
  const digests: string[] = [];
  for (let at = buf.indexOf(PEM_PRIVATE); at !== -1; at = buf.indexOf(PEM_PRIVATE, at + 1)) {
    const begin = buf.lastIndexOf(PEM_BEGIN, at);
    if (begin === -1 || at - begin > 40) continue;
    let p = at + PEM_PRIVATE.length;
    if (buf[p] === 0x0d) p++;
    if (buf[p] !== 0x0a) continue;
    p++;
    const bodyStart = p;
    while (p < buf.length && (isBase64(buf[p]) || buf[p] === 0x0a || buf[p] === 0x0d)) p++;
    const body = buf.subarray(bodyStart, p).toString('latin1').replace(/\s/g, '');
    if (body.length >= PEM_BODY_MIN) digests.push(createHash('sha256').update(Buffer.from(body, 'base64')).digest('hex'));
  }
  return digests;
}

function expand(buf: Buffer, where: string, needles: KeyNeedle[], result: ScanResult, depth: number): void {
  search(buf, where, needles, result);
  if (depth >= MAX_DEPTH || buf.length < 6) return;
  if (buf.readUInt32LE(0) === 0xfd2fb528) {
    expand(execFileSync('zstd', ['-d', '-c', '-q'], { input: buf, maxBuffer: 2 ** 31 - 1 }), `${where}{zstd}`, needles, result, depth + 1);
  } else if (buf[0] === 0x1f && buf[1] === 0x8b) {
    expand(gunzipSync(buf), `${where}{gzip}`, needles, result, depth + 1);
  } else if (buf.subarray(0, 6).toString('latin1') === '070701') {
    for (const entry of cpioFiles(buf)) expand(entry.data, `${where}/${entry.name}`, needles, result, depth + 1);
  } else if (buf[0] === 0x4d && buf[1] === 0x5a) {
    for (const section of peSections(buf)) expand(section.data, `${where}[${section.name}]`, needles, result, depth + 1);
  } else if (fileSystemImage(buf)) {
    for (const entry of fileSystemFiles(buf, fileSystemImage(buf)!)) expand(entry.data, `${where}{${entry.fs}}/${entry.name}`, needles, result, depth + 1);
  }
}

/** The read-only root image formats (image/rootimg) by their superblock magic. */
function fileSystemImage(buf: Buffer): 'erofs' | 'squashfs' | null {
  if (buf.subarray(0, 4).toString('latin1') === 'hsqs') return 'squashfs';
  if (buf.length >= 1028 && buf.readUInt32LE(1024) === 0xe0f5e1e2) return 'erofs';
  return null;
}

/** The regular files of an erofs or squashfs image, extracted with its own tools (fsck.erofs, unsquashfs). */
function fileSystemFiles(buf: Buffer, fs_: 'erofs' | 'squashfs'): { fs: string; name: string; data: Buffer }[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-no-keys-'));
  try {
    const image = path.join(dir, 'image');
    const tree = path.join(dir, 'tree');
    fs.writeFileSync(image, buf);
    if (fs_ === 'erofs') execFileSync('fsck.erofs', [`--extract=${tree}`, image], { stdio: 'ignore' });
    else execFileSync('unsquashfs', ['-no-progress', '-quiet', '-no-xattrs', '-d', tree, image], { stdio: 'ignore' });
    fs.rmSync(image);
    const files: { fs: string; name: string; data: Buffer }[] = [];
    const walk = (rel: string) => {
      for (const d of fs.readdirSync(path.join(tree, rel), { withFileTypes: true })) {
        const r = rel ? `${rel}/${d.name}` : d.name;
        if (d.isDirectory()) walk(r);
        else if (d.isFile()) files.push({ fs: fs_, name: r, data: fs.readFileSync(path.join(tree, r)) });
      }
    };
    walk('');
    return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The regular files of concatenated newc archives (the kernel's initramfs format). */
export function cpioFiles(buf: Buffer): { name: string; data: Buffer }[] {
  const files: { name: string; data: Buffer }[] = [];
  let at = 0;
  const align4 = (n: number) => (n + 3) & ~3;
  while (at + 110 <= buf.length) {
    const magic = buf.subarray(at, at + 6).toString('latin1');
    if (magic !== '070701' && magic !== '070702') {
      if (buf[at] === 0) {
        at++; // padding between concatenated archives
        continue;
      }
      break;
    }
    const field = (i: number) => parseInt(buf.subarray(at + 6 + i * 8, at + 14 + i * 8).toString('latin1'), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = buf.subarray(at + 110, at + 110 + nameSize - 1).toString('utf8');
    const dataAt = align4(at + 110 + nameSize);
    if (name === 'TRAILER!!!') {
      at = align4(dataAt + size);
      continue;
    }
    if ((mode & 0o170000) === 0o100000) files.push({ name, data: buf.subarray(dataAt, dataAt + size) });
    at = align4(dataAt + size);
  }
  return files;
}

/** The sections of a PE image (a UKI: .linux, .initrd, .cmdline, …) by their raw data. */
export function peSections(buf: Buffer): { name: string; data: Buffer }[] {
  if (buf.length < 0x40) return [];
  const pe = buf.readUInt32LE(0x3c);
  if (pe + 24 > buf.length || buf.readUInt32LE(pe) !== 0x00004550) return [];
  const count = buf.readUInt16LE(pe + 6);
  const table = pe + 24 + buf.readUInt16LE(pe + 20);
  const sections: { name: string; data: Buffer }[] = [];
  for (let i = 0; i < count && table + (i + 1) * 40 <= buf.length; i++) {
    const s = table + i * 40;
    const name = buf.subarray(s, s + 8).toString('latin1').replace(/\0+$/, '');
    // VirtualSize is the content; SizeOfRawData is padded to the file alignment (zeros zstd would refuse).
    const virtualSize = buf.readUInt32LE(s + 8);
    const rawSize = buf.readUInt32LE(s + 16);
    const size = virtualSize > 0 ? Math.min(virtualSize, rawSize) : rawSize;
    const ptr = buf.readUInt32LE(s + 20);
    if (size > 0 && ptr + size <= buf.length) sections.push({ name, data: buf.subarray(ptr, ptr + size) });
  }
  return sections;
}

/** FAT volumes in a file: the file itself (esp.img), or the partitions of a GPT disk (disk.raw) that hold one. */
function fatVolumes(file: string): { offset: number; label: string }[] {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const read = (offset: number, length: number) => {
      const buf = Buffer.alloc(length);
      return buf.subarray(0, fs.readSync(fd, buf, 0, length, offset));
    };
    const isFat = (offset: number) => read(offset + 0x52, 8).toString('latin1') === 'FAT32   ' || read(offset + 0x36, 5).toString('latin1') === 'FAT16' || read(offset + 0x36, 5).toString('latin1') === 'FAT12';
    if (isFat(0)) return [{ offset: 0, label: ':' }];
    const gpt = size >= 34 * SECTOR_SIZE ? parseGpt(read, Math.floor(size / SECTOR_SIZE)) : null;
    return (gpt?.partitions ?? []).filter((p) => isFat(p.firstLba * SECTOR_SIZE)).map((p) => ({ offset: p.firstLba * SECTOR_SIZE, label: `(partition ${p.index + 1} ${p.name})` }));
  } finally {
    fs.closeSync(fd);
  }
}

function listFat(file: string, offset: number): string[] {
  const out = execFileSync('mdir', ['-/', '-b', '-i', `${file}@@${offset}`, '::'], { env: MTOOLS_ENV, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  return out.split('\n').filter((l) => l.startsWith('::/') && !l.endsWith('/')).map((l) => l.slice(2));
}

function readFat(file: string, offset: number, inner: string): Buffer {
  return execFileSync('mcopy', ['-n', '-i', `${file}@@${offset}`, `::${inner}`, '-'], { env: MTOOLS_ENV, maxBuffer: 2 ** 31 - 1 });
}
