// Image signing: one RSA key and a self-signed X.509 certificate "Aurae image signing", kept beside the build's
// PKI (out/pki/image-signing.{key,crt}: never in out/image; image/disk/no-keys.ts looks for the key in every
// output), that signs
//  - the UKI and systemd-boot with Authenticode (Debian's sbsigntool, what Secure Boot checks once the
//    certificate is enrolled in the firmware's db), and
//  - the release manifest aurae-release.json (supervisor/upgrade/release.ts owns its format) with a detached
//    signature aurae-release.json.sig, what a node checks against its pinned certificates before an upgrade.
// sbsign stamps the signing time into the signature; it runs with the clock frozen at SOURCE_DATE_EPOCH
// (libfaketime) so the same inputs give the same bytes.
import fs from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import { RELEASE_MANIFEST_FILE, RELEASE_SIGNATURE_FILE, RELEASE_VERSION, RELEASE_VERSION_FORM, releaseManifestText, sha256Hex, signRelease, type ReleaseRole } from '../../supervisor/upgrade/release';

export const IMAGE_SIGNING_FILES = { key: 'image-signing.key', cert: 'image-signing.crt' } as const;
export const IMAGE_SIGNING_SUBJECT = '/CN=Aurae image signing';
const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

export interface SigningKey {
  key: string;
  cert: string;
}

/** The image-signing key and certificate in `pkiDir`, created once (RSA 3072, 10 years). */
export async function ensureImageSigningKey(pkiDir: string, log: (line: string) => void): Promise<SigningKey> {
  const key = path.join(pkiDir, IMAGE_SIGNING_FILES.key);
  const cert = path.join(pkiDir, IMAGE_SIGNING_FILES.cert);
  if (!fs.existsSync(key) || !fs.existsSync(cert)) {
    fs.mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
    const tmpKey = `${key}.tmp`;
    const tmpCert = `${cert}.tmp`;
    await $({ quiet: true })`openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 -subj ${IMAGE_SIGNING_SUBJECT} -keyout ${tmpKey} -out ${tmpCert}`;
    fs.chmodSync(tmpKey, 0o600);
    fs.renameSync(tmpCert, cert);
    fs.renameSync(tmpKey, key);
    log(`sign: created the image-signing key ${path.basename(key)} and certificate ${path.basename(cert)} in ${pkiDir}`);
  }
  fs.chmodSync(key, 0o600);
  return { key, cert };
}

/** "2024-01-01 00:00:00" for libfaketime (a frozen clock). Pure. */
export function fakeTime(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

/** Authenticode-sign the PE `input` into `output` (sbsign), reproducibly: the signing time is `epoch`. */
export async function sbsignFile(input: string, output: string, signing: SigningKey, epoch: number): Promise<void> {
  for (const [file, why] of [['/usr/bin/sbsign', 'sbsigntool'], [LIBFAKETIME, 'faketime']] as const) {
    if (!fs.existsSync(file)) throw new Error(`sign: ${file} is missing: install Debian's ${why} (image/setup.sh does)`);
  }
  const tmp = `${output}.tmp`;
  fs.rmSync(tmp, { force: true });
  const env = { ...process.env, LD_PRELOAD: LIBFAKETIME, FAKETIME: fakeTime(epoch), TZ: 'UTC' };
  const r = await $({ quiet: true, nothrow: true, env })`sbsign --key ${signing.key} --cert ${signing.cert} --output ${tmp} ${input}`;
  if (r.exitCode !== 0 || !fs.existsSync(tmp)) throw new Error(`sign: sbsign ${input} failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
  fs.renameSync(tmp, output);
}

/** Check an Authenticode signature with sbverify; returns its output, throws when it does not verify. */
export async function sbverifyFile(file: string, cert: string): Promise<string> {
  const r = await $({ quiet: true, nothrow: true })`sbverify --cert ${cert} ${file}`;
  if (r.exitCode !== 0) throw new Error(`sign: ${file} does not verify with ${cert}: ${r.stdout}${r.stderr}`);
  return `${r.stdout}${r.stderr}`;
}

/** The release version: AURAE_IMAGE_VERSION, else `fallback` (package.json's version); checked against the release format. */
export function imageVersion(env: NodeJS.ProcessEnv, fallback: string): string {
  const v = env.AURAE_IMAGE_VERSION !== undefined && env.AURAE_IMAGE_VERSION !== '' ? env.AURAE_IMAGE_VERSION : fallback;
  if (!RELEASE_VERSION.test(v)) throw new Error(`AURAE_IMAGE_VERSION=${JSON.stringify(v)} is not a release version: expected ${RELEASE_VERSION_FORM}`);
  return v;
}

export interface ReleaseInputs {
  /** The folder the manifest is written to; every file must be in it (the manifest names them by file name). */
  dir: string;
  version: string;
  files: { role: ReleaseRole; file: string }[];
  signing: SigningKey;
}

export interface Release {
  manifest: string;
  signature: string;
  /** The manifest's bytes (as signed). */
  bytes: Buffer;
}

/** Write `dir`/aurae-release.json (version, each file's role, name, size, sha256) and its detached signature. */
export function writeRelease(i: ReleaseInputs): Release {
  const files = i.files.map(({ role, file }) => {
    if (path.dirname(path.resolve(file)) !== path.resolve(i.dir)) throw new Error(`sign: ${file} is not in the release folder ${i.dir}`);
    const data = fs.readFileSync(file);
    return { role, name: path.basename(file), size: data.length, sha256: sha256Hex(data) };
  });
  const bytes = Buffer.from(releaseManifestText({ version: i.version, files }));
  const manifest = path.join(i.dir, RELEASE_MANIFEST_FILE);
  const signature = path.join(i.dir, RELEASE_SIGNATURE_FILE);
  fs.writeFileSync(manifest, bytes);
  fs.writeFileSync(signature, `${signRelease(bytes, fs.readFileSync(i.signing.key)).toString('base64')}\n`);
  return { manifest, signature, bytes };
}
