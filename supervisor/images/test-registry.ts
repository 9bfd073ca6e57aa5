// Test fixture (priv and qemu tiers; also `npm start -- --registry`): images built offline with umoci from
// busybox-static, served by Debian's docker-registry on 127.0.0.1:<free port> — plain HTTP, Basic auth over TLS
// (htpasswd, bcrypt cost 4), or Bearer tokens from a small ES256 token server written here — and pushed with skopeo.
// Every process and temp dir it makes is removed by stop(); readiness is polled with deadlines, never slept for.
//
//   const images = await buildTestImages(dir);            // OCI layout with tags base, whiteout, nonroot, multi, evil
//   const reg = await startTestRegistry({ auth: 'basic', tls: true });
//   await reg.push(images.layout, 'base', 'busybox:latest');
//   … pull `${reg.host}/busybox` with { caFile: reg.caFile, auth: reg.credentials } …
//   await reg.stop();
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { Agent, request } from 'undici';

const BUSYBOX = '/bin/busybox';
/** Bump when the images change (the cache in the layout dir is keyed by it). */
const IMAGES_VERSION = 'aurae-test-images-6';

function run(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { cwd: opts.cwd, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message.split('\n')[0]}\n${stderr}`));
      else resolve(stdout);
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export interface TestImages {
  /** The OCI layout directory holding every test image, one tag each. */
  layout: string;
  tags: {
    /** busybox-static, applet links, /etc/passwd and group, /etc/motd, /data/{a,b}; Cmd ["/bin/sh"]. */
    base: 'base';
    /** base + a layer whiting out /etc/motd + a layer making /data opaque with only /data/c. */
    whiteout: 'whiteout';
    /** base with User "1000:1000" and WorkingDir /home/app. */
    nonroot: 'nonroot';
    /** An OCI index: linux/arm64 (listed first) and linux/amd64 (= base's manifest). */
    multi: 'multi';
    /** base + a layer whose entry is `../../etc/passwd` (an unpacker must refuse it). */
    evil: 'evil';
    /**
     * base with StopSignal SIGQUIT and an Entrypoint (sh, no Cmd) that prints "started", ignores SIGTERM (prints
     * "got-term-ignored") and exits 0 on SIGQUIT (prints "got-quit"): like nginx, whose graceful stop is SIGQUIT.
     */
    stopsignal: 'stopsignal';
  };
  /** The manifest digests of the tags (multi: the index digest; its amd64 entry is `base`). */
  digests: Record<'base' | 'whiteout' | 'nonroot' | 'multi' | 'evil' | 'arm64' | 'stopsignal', string>;
}

interface OciIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string>; platform?: unknown }[];
}

const REF_NAME = 'org.opencontainers.image.ref.name';

async function readIndex(layout: string): Promise<OciIndex> {
  return JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')) as OciIndex;
}

function tagDescriptor(index: OciIndex, tag: string) {
  const d = index.manifests.find((m) => m.annotations?.[REF_NAME] === tag);
  if (!d) throw new Error(`OCI layout: no tag ${tag}`);
  return d;
}

async function writeBlob(layout: string, bytes: Buffer): Promise<{ digest: string; size: number }> {
  const hex = createHash('sha256').update(bytes).digest('hex');
  await fs.writeFile(path.join(layout, 'blobs', 'sha256', hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

async function readBlob(layout: string, digest: string): Promise<Buffer> {
  return fs.readFile(path.join(layout, 'blobs', 'sha256', digest.slice(7)));
}

async function setTag(layout: string, tag: string, desc: OciIndex['manifests'][number]): Promise<void> {
  const index = await readIndex(layout);
  index.manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
  index.manifests.push({ ...desc, annotations: { ...desc.annotations, [REF_NAME]: tag } });
  await fs.writeFile(path.join(layout, 'index.json'), JSON.stringify(index));
}

/** A ustar header + body for one regular file or (type '5') directory: for hand-made layers. */
function tarEntry(name: string, body: Buffer, type: '0' | '5' = '0'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(type === '5' ? '0000755\0' : '0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(body.length.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write(type, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([h, body, pad]);
}

/** Add a layer made of `tar` on top of `from`, as tag `tag` (config diff_ids and history updated). Also used by image/bench/pods.ts. */
export async function addRawLayer(layout: string, from: string, tag: string, tar: Buffer, createdBy: string): Promise<void> {
  const index = await readIndex(layout);
  const desc = tagDescriptor(index, from);
  const manifest = JSON.parse((await readBlob(layout, desc.digest)).toString()) as { config: { digest: string; size: number; mediaType: string }; layers: unknown[] };
  const config = JSON.parse((await readBlob(layout, manifest.config.digest)).toString()) as { rootfs: { diff_ids: string[] }; history?: unknown[] };
  const gz = zlib.gzipSync(tar);
  const layer = await writeBlob(layout, gz);
  config.rootfs.diff_ids.push(`sha256:${createHash('sha256').update(tar).digest('hex')}`);
  config.history = [...(config.history ?? []), { created_by: `aurae test fixture: ${createdBy}` }];
  const cfg = await writeBlob(layout, Buffer.from(JSON.stringify(config)));
  manifest.config = { ...manifest.config, ...cfg };
  manifest.layers = [...manifest.layers, { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }];
  const m = await writeBlob(layout, Buffer.from(JSON.stringify(manifest)));
  await setTag(layout, tag, { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m });
}

/** What a tag of the OCI layout holds: its manifest digest, config, layers (bottom first) and their diffIds. */
export async function readLayoutImage(
  layout: string,
  tag: string,
): Promise<{ digest: string; config: { digest: string; size: number }; layers: { digest: string; size: number; diffId: string }[] }> {
  const desc = tagDescriptor(await readIndex(layout), tag);
  const manifest = JSON.parse((await readBlob(layout, desc.digest)).toString()) as { config: { digest: string; size: number }; layers: { digest: string; size: number }[] };
  const config = JSON.parse((await readBlob(layout, manifest.config.digest)).toString()) as { rootfs: { diff_ids: string[] } };
  return {
    digest: desc.digest,
    config: { digest: manifest.config.digest, size: manifest.config.size },
    layers: manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, diffId: config.rootfs.diff_ids[i]! })),
  };
}

/**
 * Build the test images into `dir` (an OCI layout at `dir/oci`), or reuse them when `dir` already holds this
 * version's build. Under a second with umoci. Needs root (ownership is kept) and busybox-static.
 */
export async function buildTestImages(dir: string): Promise<TestImages> {
  const layout = path.join(dir, 'oci');
  const marker = path.join(dir, 'complete.json');
  const tags = { base: 'base', whiteout: 'whiteout', nonroot: 'nonroot', multi: 'multi', evil: 'evil', stopsignal: 'stopsignal' } as const;
  const cached = (): TestImages | null => {
    if (!existsSync(marker) || !existsSync(layout)) return null;
    const done = JSON.parse(readFileSync(marker, 'utf8')) as { version: string; digests: TestImages['digests'] };
    return done.version === IMAGES_VERSION ? { layout, tags, digests: done.digests } : null;
  };
  const hit = cached();
  if (hit) return hit;
  // Built aside and renamed in, so concurrent test processes sharing `dir` never see a half layout.
  mkdirSync(dir, { recursive: true });
  const scratch = await fs.mkdtemp(path.join(dir, 'build-'));
  try {
    const digests = await buildInto(scratch, tags);
    const again = cached();
    if (again) return again;
    await fs.rm(marker, { force: true });
    await fs.rm(layout, { recursive: true, force: true });
    try {
      await fs.rename(path.join(scratch, 'oci'), layout);
    } catch (err) {
      const other = cached();
      if (other) return other;
      throw err;
    }
    writeFileSync(marker, JSON.stringify({ version: IMAGES_VERSION, digests }));
    return { layout, tags, digests };
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

async function buildInto(dir: string, tags: TestImages['tags']): Promise<TestImages['digests']> {
  const layout = path.join(dir, 'oci');
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: install busybox-static (image/setup.sh)`);
  const work = path.join(dir, 'work');
  const rootfs = path.join(work, 'rootfs');
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'data', 'tmp', 'root', 'home/app']) mkdirSync(path.join(rootfs, d), { recursive: true });
  await fs.copyFile(BUSYBOX, path.join(rootfs, 'bin/busybox'));
  await fs.chmod(path.join(rootfs, 'bin/busybox'), 0o755);
  for (const applet of (await run(BUSYBOX, ['--list-full'])).split('\n').filter(Boolean)) {
    if (applet === 'bin/busybox') continue;
    const depth = applet.split('/').length - 1;
    await fs.symlink(`${'../'.repeat(depth)}bin/busybox`, path.join(rootfs, applet)).catch(() => undefined);
  }
  writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n');
  writeFileSync(path.join(rootfs, 'etc/motd'), 'aurae test image\n');
  writeFileSync(path.join(rootfs, 'data/a'), 'a\n');
  writeFileSync(path.join(rootfs, 'data/b'), 'b\n');
  await fs.chmod(path.join(rootfs, 'tmp'), 0o1777);
  await fs.chown(path.join(rootfs, 'home/app'), 1000, 1000);

  const img = (tag: string) => `${layout}:${tag}`;
  await run('umoci', ['init', '--layout', layout]);
  await run('umoci', ['new', '--image', img(tags.base)]);
  // GNU tar rather than `umoci insert DIR /`: umoci names the root entry "/", which strict unpackers refuse.
  const baseTar = path.join(work, 'base.tar');
  await run('tar', ['-C', rootfs, '--numeric-owner', '--sort=name', '-cf', baseTar, '.']);
  await addRawLayer(layout, tags.base, tags.base, await fs.readFile(baseTar), 'busybox-static rootfs');
  await run('umoci', ['config', '--image', img(tags.base), '--os', 'linux', '--architecture', 'amd64', '--config.cmd', '/bin/sh', '--config.env', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', '--config.label', 'org.aurae.test=base']);

  await run('umoci', ['insert', '--image', img(tags.base), '--tag', tags.whiteout, '--whiteout', '/etc/motd']);
  // By hand: umoci 0.4.7's `insert --opaque` writes a truncated tar (no padding, no end blocks).
  const opaqueLayer = Buffer.concat([
    tarEntry('data/', Buffer.alloc(0), '5'),
    tarEntry('data/.wh..wh..opq', Buffer.alloc(0)),
    tarEntry('data/c', Buffer.from('c\n')),
    Buffer.alloc(1024),
  ]);
  await addRawLayer(layout, tags.whiteout, tags.whiteout, opaqueLayer, 'opaque /data');

  await run('umoci', ['config', '--image', img(tags.base), '--tag', tags.nonroot, '--config.user', '1000:1000', '--config.workingdir', '/home/app']);
  await run('umoci', ['config', '--image', img(tags.base), '--tag', 'arm64', '--architecture', 'arm64']);
  const stopScript = 'trap "echo got-quit; exit 0" QUIT; trap "echo got-term-ignored" TERM; echo started; while :; do sleep 0.2; done';
  await run('umoci', ['config', '--image', img(tags.base), '--tag', tags.stopsignal, '--config.stopsignal', 'SIGQUIT', '--clear', 'config.cmd', '--config.entrypoint', '/bin/sh', '--config.entrypoint', '-c', '--config.entrypoint', stopScript]);

  await addRawLayer(layout, tags.base, tags.evil, Buffer.concat([tarEntry('../../etc/passwd', Buffer.from('evil::0:0::/:/bin/sh\n')), Buffer.alloc(1024)]), 'hostile layer');

  const index = await readIndex(layout);
  const amd64 = tagDescriptor(index, tags.base);
  const arm64 = tagDescriptor(index, 'arm64');
  const strip = (d: OciIndex['manifests'][number]) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size });
  const multi: OciIndex = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { ...strip(arm64), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { ...strip(amd64), platform: { os: 'linux', architecture: 'amd64' } },
    ],
  };
  const multiBlob = await writeBlob(layout, Buffer.from(JSON.stringify(multi)));
  await setTag(layout, tags.multi, { mediaType: 'application/vnd.oci.image.index.v1+json', ...multiBlob });

  const final = await readIndex(layout);
  const digests = {
    base: amd64.digest,
    arm64: arm64.digest,
    whiteout: tagDescriptor(final, tags.whiteout).digest,
    nonroot: tagDescriptor(final, tags.nonroot).digest,
    evil: tagDescriptor(final, tags.evil).digest,
    stopsignal: tagDescriptor(final, tags.stopsignal).digest,
    multi: multiBlob.digest,
  };
  return digests;
}

/** The default cache dir for the test images (shared by priv and qemu tests). */
export function testImagesDir(): string {
  return path.join(os.homedir(), '.cache', 'aurae', 'test-images');
}

export interface TestRegistryOptions {
  auth?: 'none' | 'basic' | 'bearer';
  /** HTTPS with a CA of its own (caFile); the certificate names 127.0.0.1, 10.0.2.100 and localhost. */
  tls?: boolean;
  /** Bearer only: the token server grants anonymous pulls. Default false (credentials required). */
  anonymousPull?: boolean;
}

export interface TestRegistry {
  /** `127.0.0.1:<port>` — the registry part of image references. */
  host: string;
  port: number;
  /** `http(s)://127.0.0.1:<port>` */
  url: string;
  /** The CA that signed the registry's certificate (tls), else null. */
  caFile: string | null;
  /** The account that may push and pull (basic, bearer), else null. */
  credentials: { username: string; password: string } | null;
  /** The token server's URL (bearer), else null. */
  tokenUrl: string | null;
  /** How many tokens the token server issued (bearer). */
  tokensIssued(): number;
  /** Push `tag` of the OCI layout to `dest` ("name:tag") with skopeo; `format: 'v2s2'` converts to Docker schema 2. */
  push(layout: string, tag: string, dest: string, opts?: { format?: 'oci' | 'v2s2' }): Promise<void>;
  /** Overwrite a stored blob with other bytes of the same size: the registry then serves a wrong digest. */
  corruptBlob(digest: string): Promise<void>;
  /** The registry's log so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A test runner that dies without stop() must not leave registries behind.
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

/** libtrust's key id (what docker-registry matches a token's `kid` against): base32 of SHA-256(SPKI)[:30], in 4s. */
export function libtrustKeyId(spkiDer: Buffer): string {
  const bytes = createHash('sha256').update(spkiDer).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out.match(/.{1,4}/g)!.join(':');
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

interface TokenServer {
  url: string;
  issued: () => number;
  close(): Promise<void>;
}

async function startTokenServer(opts: { keyPem: string; service: string; issuer: string; credentials: { username: string; password: string }; anonymousPull: boolean }): Promise<TokenServer> {
  const key = createPrivateKey(opts.keyPem);
  const kid = libtrustKeyId(createPublicKey(key).export({ type: 'spki', format: 'der' }));
  let issued = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    const authz = req.headers.authorization ?? '';
    let user: string | null = null;
    if (authz.startsWith('Basic ')) {
      const [u, ...p] = Buffer.from(authz.slice(6), 'base64').toString().split(':');
      if (u !== opts.credentials.username || p.join(':') !== opts.credentials.password) {
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
        return;
      }
      user = u;
    }
    const access = url.searchParams.getAll('scope').flatMap((scope) => {
      const parts = scope.split(':');
      if (parts.length < 3) return [];
      const type = parts[0]!;
      const actions = parts[parts.length - 1]!.split(',');
      const name = parts.slice(1, -1).join(':');
      const granted = user !== null ? actions : opts.anonymousPull ? actions.filter((a) => a === 'pull') : [];
      return [{ type, name, actions: granted }];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid }));
    const claims = b64url(
      JSON.stringify({ iss: opts.issuer, sub: user ?? '', aud: opts.service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access }),
    );
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), { key, dsaEncoding: 'ieee-p1363' });
    const token = `${header}.${claims}.${b64url(signature)}`;
    issued++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/token`,
    issued: () => issued,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function makeCerts(dir: string): Promise<{ caFile: string; cert: string; key: string }> {
  const caKey = path.join(dir, 'ca.key');
  const caFile = path.join(dir, 'ca.crt');
  const key = path.join(dir, 'server.key');
  const csr = path.join(dir, 'server.csr');
  const cert = path.join(dir, 'server.crt');
  const ext = path.join(dir, 'server.ext');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=aurae test registry CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...ec, '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1']);
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,IP:10.0.2.100,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n');
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  return { caFile, cert, key };
}

/** Start a docker-registry on 127.0.0.1:<free port>; resolves once it answers /v2/. Needs docker-registry, skopeo, openssl (+ htpasswd for basic). */
export async function startTestRegistry(opts: TestRegistryOptions = {}): Promise<TestRegistry> {
  const auth = opts.auth ?? 'none';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'aurae-registry-'));
  let child: ChildProcess | null = null;
  let tokens: TokenServer | null = null;
  const logChunks: string[] = [];
  const cleanup = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const c = child;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await tokens?.close();
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    const credentials = auth === 'none' ? null : { username: 'tester', password: randomBytes(9).toString('base64url') };
    const tls = opts.tls ? await makeCerts(dir) : null;
    const storage = path.join(dir, 'storage');
    mkdirSync(storage);
    let authYaml = '';
    if (auth === 'basic') {
      const htpasswd = path.join(dir, 'htpasswd');
      writeFileSync(htpasswd, await run('htpasswd', ['-Bbn', '-C', '4', credentials!.username, credentials!.password]));
      authYaml = `auth:\n  htpasswd:\n    realm: aurae-test\n    path: ${htpasswd}\n`;
    } else if (auth === 'bearer') {
      const key = path.join(dir, 'token.key');
      const cert = path.join(dir, 'token.crt');
      await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=aurae test token signer']);
      const service = 'aurae-test-registry';
      const issuer = 'aurae-test-issuer';
      tokens = await startTokenServer({ keyPem: readFileSync(key, 'utf8'), service, issuer, credentials: credentials!, anonymousPull: opts.anonymousPull ?? false });
      authYaml = `auth:\n  token:\n    realm: ${tokens.url}\n    service: ${service}\n    issuer: ${issuer}\n    rootcertbundle: ${cert}\n`;
    }

    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const config = path.join(dir, 'config.yml');
      writeFileSync(
        config,
        `version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\n  delete:\n    enabled: true\n` +
          `http:\n  addr: 127.0.0.1:${port}\n` +
          (tls ? `  tls:\n    certificate: ${tls.cert}\n    key: ${tls.key}\n` : '') +
          authYaml,
      );
      const c = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
      child = c;
      track(c);
      c.stdout!.on('data', (d: Buffer) => logChunks.push(d.toString()));
      c.stderr!.on('data', (d: Buffer) => logChunks.push(d.toString()));
      const ready = await waitReady(c, `${tls ? 'https' : 'http'}://127.0.0.1:${port}/v2/`, tls?.caFile ?? null, 15_000);
      if (ready === 'ok') break;
      if (attempt >= 3 || !/address already in use/.test(logChunks.join(''))) {
        throw new Error(`docker-registry did not become ready (${ready}):\n${logChunks.join('').slice(-3000)}`);
      }
      logChunks.length = 0;
    }
    const host = `127.0.0.1:${port}`;
    const url = `${tls ? 'https' : 'http'}://${host}`;
    return {
      host,
      port,
      url,
      caFile: tls?.caFile ?? null,
      credentials,
      tokenUrl: tokens?.url ?? null,
      tokensIssued: () => tokens?.issued() ?? 0,
      async push(layout, tag, dest, pushOpts = {}) {
        const args = ['--insecure-policy', 'copy', '--all', '--quiet', '--dest-tls-verify=false'];
        if (pushOpts.format === 'v2s2') args.push('--format', 'v2s2');
        if (credentials) args.push('--dest-creds', `${credentials.username}:${credentials.password}`);
        args.push(`oci:${layout}:${tag}`, `docker://${host}/${dest}`);
        await run('skopeo', args);
      },
      async corruptBlob(digest) {
        const hex = digest.replace(/^sha256:/, '');
        const file = path.join(storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
        const bytes = await fs.readFile(file);
        for (let i = 0; i < bytes.length; i += 97) bytes[i] = bytes[i]! ^ 0xff;
        await fs.writeFile(file, bytes);
      },
      log: () => logChunks.join(''),
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Poll `url` until the registry answers (200 or 401), the process exits, or the deadline passes. */
async function waitReady(child: ChildProcess, url: string, caFile: string | null, timeoutMs: number): Promise<'ok' | string> {
  const agent = new Agent({ connect: caFile ? { ca: readFileSync(caFile, 'utf8') } : {} });
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  try {
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) return `exited with ${child.exitCode ?? child.signalCode}`;
      try {
        const res = await request(url, { dispatcher: agent, signal: AbortSignal.timeout(2000) });
        await res.body.dump();
        if (res.statusCode === 200 || res.statusCode === 401) return 'ok';
        lastError = `HTTP ${res.statusCode}`;
      } catch (err) {
        lastError = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    return `no answer within ${timeoutMs} ms: ${lastError}`;
  } finally {
    await agent.close();
  }
}

/** The standard names the fixture's images are pushed under by pushTestImages. */
export const TEST_IMAGE_NAMES = { base: 'busybox:latest', whiteout: 'whiteout:latest', nonroot: 'nonroot:latest', multi: 'multi:latest', evil: 'evil:latest', stopsignal: 'stopsignal:latest' } as const;

/** Push every test image under TEST_IMAGE_NAMES (about 2 s). */
export async function pushTestImages(registry: TestRegistry, images: TestImages): Promise<void> {
  for (const key of Object.keys(TEST_IMAGE_NAMES) as (keyof typeof TEST_IMAGE_NAMES)[]) {
    await registry.push(images.layout, images.tags[key], TEST_IMAGE_NAMES[key]);
  }
}
