import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OVMF_SNAKEOIL_CERT, OVMF_VARS, OVMF_VARS_SNAKEOIL } from './ovmf';
import {
  EFI_IMAGE_SECURITY_DATABASE,
  enrolledKeys,
  guidBytes,
  guidText,
  liveVariable,
  parseVarStore,
  readPemCertificates,
  VarStoreError,
  withDbCertificates,
  writeStoreWithDb,
  x509Certificates,
  x509SignatureLists,
} from './ovmf-vars';

// Debian's ovmf package (image/setup.sh installs it) supplies the real templates these tests read.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ovmf-vars-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function selfSignedCert(name: string): string {
  const key = path.join(tmp, `${name}.key`);
  const cert = path.join(tmp, `${name}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return cert;
}

describe('OVMF variable store', () => {
  it('GUIDs round-trip in UEFI byte order', () => {
    const g = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
    expect(guidBytes(g).toString('hex')).toBe('61dfe48bca93d211aa0d00e098032b8c');
    expect(guidText(guidBytes(g))).toBe(g);
    expect(() => guidBytes('nope')).toThrow(/guid "nope" is invalid/);
  });

  it("reads Debian's snakeoil store: the snakeoil certificate as PK, KEK and db, SecureBootEnable on", () => {
    const snakeoil = readPemCertificates(OVMF_SNAKEOIL_CERT)[0]!;
    const keys = enrolledKeys(fs.readFileSync(OVMF_VARS_SNAKEOIL));
    expect(keys.secureBootEnable).toBe(true);
    for (const list of [keys.pk, keys.kek, keys.db]) expect(list).toEqual([snakeoil]);
    // The empty template enrols nothing: Secure Boot stays off with it.
    expect(enrolledKeys(fs.readFileSync(OVMF_VARS))).toEqual({ pk: [], kek: [], db: [], secureBootEnable: false });
  });

  it('puts other certificates in db the way the firmware would: the old copy marked replaced, the new one appended', () => {
    const template = fs.readFileSync(OVMF_VARS_SNAKEOIL);
    const ours = [readPemCertificates(selfSignedCert('one'))[0]!, readPemCertificates(selfSignedCert('two'))[0]!];
    const out = withDbCertificates(template, ours);
    expect(out.length).toBe(template.length);
    const before = parseVarStore(template);
    const after = parseVarStore(out);
    const oldDb = liveVariable(before, 'db', EFI_IMAGE_SECURITY_DATABASE)!;
    expect(after.variables.find((v) => v.offset === oldDb.offset)?.live).toBe(false);
    const newDb = liveVariable(after, 'db', EFI_IMAGE_SECURITY_DATABASE)!;
    expect(newDb.offset).toBe(before.end);
    expect(newDb.attributes).toBe(oldDb.attributes);
    expect(newDb.timestamp).toEqual(oldDb.timestamp);
    expect(x509Certificates(newDb.data)).toEqual(ours);
    const keys = enrolledKeys(out);
    expect(keys.db).toEqual(ours);
    expect(keys.pk).toEqual(enrolledKeys(template).pk);
    expect(keys.kek).toEqual(enrolledKeys(template).kek);
    // Everything else is byte for byte the template's.
    const changed = [...out.keys()].filter((i) => out[i] !== template[i]);
    expect(changed.every((i) => i === oldDb.offset + 2 || (i >= before.end && i < after.end))).toBe(true);
  });

  it('signature lists hold one DER certificate each and parse back', () => {
    const cert = readPemCertificates(OVMF_SNAKEOIL_CERT)[0]!;
    const lists = x509SignatureLists([cert, cert]);
    expect(lists.readUInt32LE(16)).toBe(28 + 16 + cert.length);
    expect(x509Certificates(lists)).toEqual([cert, cert]);
    expect(new X509Certificate(x509Certificates(lists)[0]!).subject).toMatch(/O=SnakeOil/);
    expect(() => x509Certificates(Buffer.alloc(40))).toThrow(/signature list at offset 0 is malformed/);
  });

  it('refuses what is not a variable store, an empty db, a full store and a template without keys', () => {
    expect(() => parseVarStore(Buffer.alloc(4096))).toThrow(/no firmware volume header .*expected an OVMF_VARS image/);
    const template = fs.readFileSync(OVMF_VARS_SNAKEOIL);
    expect(() => withDbCertificates(template, [])).toThrow(VarStoreError);
    const store = parseVarStore(template);
    const full = Buffer.from(template);
    full.fill(0, store.end, store.limit);
    expect(() => withDbCertificates(full, readPemCertificates(OVMF_SNAKEOIL_CERT))).toThrow(/no room for a db of \d+ bytes/);
    expect(() => writeStoreWithDb(OVMF_VARS, path.join(tmp, 'x.fd'), [OVMF_SNAKEOIL_CERT])).toThrow(/has no PK: Secure Boot would stay off/);
    expect(() => readPemCertificates(OVMF_VARS)).toThrow(/holds no PEM certificate/);
  });

  it('writes a store whose db is exactly the certificates of the PEM files', () => {
    const cert = selfSignedCert('image-signing');
    const out = path.join(tmp, 'vars.fd');
    writeStoreWithDb(OVMF_VARS_SNAKEOIL, out, [cert]);
    expect(enrolledKeys(fs.readFileSync(out)).db).toEqual(readPemCertificates(cert));
  });
});
