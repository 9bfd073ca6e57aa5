import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeIdentityDocument } from '../../image/build';
import { writeDiskImage } from '../../image/disk/disk';
import { buildGpt, guidFromSeed, PARTITION_TYPES } from '../../init/disk';
import { findIdentityPartition, identityBytes, parseIdentityDocument } from '../../init/identity';
import { ensurePki } from '../../supervisor/pki';
import { formatIdentityWritten, prepareIdentity, writeIdentity } from './identity';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-flash-identity-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let image: string;
let identityFile: string;
beforeAll(async () => {
  const { files } = await ensurePki(path.join(tmp, 'pki'), { nodeName: 'aurae' });
  identityFile = writeIdentityDocument(path.join(tmp, 'pki'), 'aurae', files);
  const esp = path.join(tmp, 'esp.img');
  fs.writeFileSync(esp, Buffer.alloc(2 * 1024 * 1024, 0xe5));
  image = path.join(tmp, 'disk.raw');
  writeDiskImage(esp, image, 'seed');
});

/** What `aer image flash` leaves before the identity step: the image's bytes on a larger target. */
function flashed(name: string): string {
  const target = path.join(tmp, name);
  fs.copyFileSync(image, target);
  fs.truncateSync(target, 16 * 1024 * 1024);
  return target;
}

/** The identity as init reads it from the target (init/identity over the file). */
function readAsInit(target: string) {
  const disk = fs.readFileSync(target);
  const found = findIdentityPartition(
    { parentDisk: () => 'vda', diskInfo: () => ({ sectors: disk.length / 512 }), readAt: (_d, o, n) => Buffer.from(disk.subarray(o, o + n)) },
    'vda1',
  );
  return found && identityBytes(found.data);
}

describe('aer image flash --identity', () => {
  it('writes the document into the AURAE_IDENTITY partition of the target, where init finds it; the image stays zeros', () => {
    const before = fs.readFileSync(image);
    const prepared = prepareIdentity(path.join(tmp, 'pki'), image); // a directory: its identity.json
    expect(prepared.file).toBe(identityFile);
    const target = flashed('target.raw');
    const written = writeIdentity(target, prepared);
    expect(written).toMatchObject({ node: 'aurae', partition: 2, bytes: fs.statSync(identityFile).size });
    expect(formatIdentityWritten(written)).toMatch(/^identity of node aurae \(.*identity.json, \d+ bytes\) written to partition 2 \(AURAE_IDENTITY\) and verified$/);
    const bytes = readAsInit(target);
    expect(parseIdentityDocument(bytes!).serverKey).toBe(parseIdentityDocument(fs.readFileSync(identityFile)).serverKey);
    expect(fs.readFileSync(image).equals(before)).toBe(true);
    expect(readAsInit(image)).toBeNull();
    // Written twice (a reflash with another identity): no trace of the first is left after the document.
    const shorter = { ...prepared, text: Buffer.from('{}\n') };
    writeIdentity(target, shorter);
    expect(readAsInit(target)?.toString()).toBe('{}\n');
  });

  it('refuses before flashing: no file, an invalid document, an image without the partition', () => {
    expect(() => prepareIdentity(path.join(tmp, 'nope.json'), image)).toThrow(/--identity .*nope.json: no such file \(npm run image writes out\/pki\/identity.json\)/);
    expect(() => prepareIdentity(tmp, image)).toThrow(/--identity .*identity.json: no such file/);
    const bad = path.join(tmp, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ ...JSON.parse(fs.readFileSync(identityFile, 'utf8')), serverKey: 'x' }));
    expect(() => prepareIdentity(bad, image)).toThrow(/--identity .*bad.json: invalid node identity:\n {2}serverKey: expected one PEM PKCS#8 private key/);
    const old = path.join(tmp, 'old.raw');
    const gpt = buildGpt({ diskSectors: 8192, diskGuid: guidFromSeed('d'), partitions: [{ typeGuid: PARTITION_TYPES.esp, uniqueGuid: guidFromSeed('e'), firstLba: 2048, lastLba: 4095, name: 'AURAE_BOOT' }] });
    const raw = Buffer.alloc(8192 * 512);
    gpt.primary.copy(raw, 0);
    gpt.backup.copy(raw, gpt.backupOffset);
    fs.writeFileSync(old, raw);
    expect(() => prepareIdentity(identityFile, old)).toThrow(/old.raw has no AURAE_IDENTITY partition: rebuild it with npm run image/);
  });

  it('refuses a target that does not hold the image (its table differs), and a symlink', () => {
    const prepared = prepareIdentity(identityFile, image);
    const blank = path.join(tmp, 'blank.raw');
    fs.writeFileSync(blank, Buffer.alloc(4 * 1024 * 1024));
    expect(() => writeIdentity(blank, prepared)).toThrow(/blank.raw has no valid primary GPT/);
    const link = path.join(tmp, 'link.raw');
    fs.symlinkSync(flashed('linked.raw'), link);
    expect(() => writeIdentity(link, prepared)).toThrow(/writing the identity to .*link.raw: ELOOP/);
  });
});
