// Builds the appliance kernel: Debian's linux-source-6.1 + `make tinyconfig` + our fragment,
// everything built in, cached under ~/.cache/aurae/kernel/<key> by a hash of its inputs.
//
// Layout of the cache (all under <cacheDir>/kernel/):
//   src-<debian version>/   pristine extracted source (extracted once, atomically)
//   build-<debian version>/ out-of-tree objects (make O=…), reused so a fragment change
//                           rebuilds incrementally (seconds to a minute instead of ~4 min)
//   <key>/{vmlinuz,config}  finished outputs; present = done
//   .lock/                  one build at a time per cache (other callers wait)
//   make-files.json         files the last build per source compiled: the total in "N of M files" (make-progress.ts)

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { $, type Shell } from 'zx';
import { cacheRoot as buildCacheRoot } from '../lib/cache';
import { mergeKconfig, verifyKernelConfig } from './config-text';
import { type ExpectedFiles, expectedFiles, lineSplitter, makeProgress } from './make-progress';
import { missingPrerequisites, prerequisitesMessage } from './prerequisites';

export { mergeKconfig, parseKconfig, verifyKernelConfig } from './config-text';

/** Bump when the recipe below changes in a way that changes the output for the same inputs. */
export const BUILD_RECIPE_VERSION = 1;

export const SOURCE_PACKAGE = 'linux-source-6.1';
export const SOURCE_TARBALL = '/usr/src/linux-source-6.1.tar.xz';
export const FRAGMENT_PATH = join(dirname(fileURLToPath(import.meta.url)), 'fragment.config');

/** 2026-01-01T00:00:00Z: the build timestamp when SOURCE_DATE_EPOCH is not set. */
export const DEFAULT_SOURCE_DATE_EPOCH = 1767225600;

export type BuildKernelOptions = {
  log: (line: string) => void;
  /** Default: the build cache (~/.cache/aurae, or AURAE_CACHE_DIR). */
  cacheDir?: string;
  /** Parallel make jobs; default: the number of CPUs. */
  jobs?: number;
};

export type KernelBuild = {
  /** The bzImage (also an EFI application: EFI_STUB). */
  vmlinuz: string;
  /** The final .config it was built from. */
  config: string;
  /** Cache key (sha256 of the inputs). */
  key: string;
  /** True when the outputs came from the cache. */
  cached: boolean;
  /** Debian version of linux-source-6.1, e.g. 6.1.192-2. */
  sourceVersion: string;
  /** sha256 of vmlinuz. */
  sha256: string;
};

export class KernelBuildError extends Error {
  override name = 'KernelBuildError';
}

const quiet = $({ quiet: true });

/** SOURCE_DATE_EPOCH from the environment (reproducible-builds.org), else a fixed date. */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return DEFAULT_SOURCE_DATE_EPOCH;
  if (!/^\d+$/.test(raw)) {
    throw new KernelBuildError(`SOURCE_DATE_EPOCH=${JSON.stringify(raw)} is not a whole number of seconds; unset it or fix it`);
  }
  return Number(raw);
}

/** `date -u` style, as the kernel's own builds show it in `uname -v`. */
export function kbuildTimestamp(epoch: number): string {
  const d = new Date(epoch * 1000);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${time} UTC ${d.getUTCFullYear()}`;
}

/** The cache key: every input that changes the bytes of vmlinuz. */
export function kernelCacheKey(inputs: {
  sourceVersion: string;
  fragment: string;
  compiler: string;
  sourceDateEpoch: number;
}): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ recipe: BUILD_RECIPE_VERSION, ...inputs }));
  return h.digest('hex');
}

export async function buildKernel(opts: BuildKernelOptions): Promise<KernelBuild> {
  const { log } = opts;
  const cacheRoot = join(opts.cacheDir ?? buildCacheRoot(), 'kernel');
  const sourceVersion = await debianSourceVersion();
  const fragment = await readFile(FRAGMENT_PATH, 'utf8');
  const compiler = await compilerVersion();
  const epoch = sourceDateEpoch();
  const key = kernelCacheKey({ sourceVersion, fragment, compiler, sourceDateEpoch: epoch });
  const outDir = join(cacheRoot, key);

  const hit = await cachedResult(outDir, key, sourceVersion);
  if (hit) return hit;

  await mkdir(cacheRoot, { recursive: true });
  return withBuildLock(join(cacheRoot, '.lock'), log, async () => {
    // Another process may have finished the same build while we waited for the lock.
    const late = await cachedResult(outDir, key, sourceVersion);
    if (late) return late;

    checkPrerequisites();
    const started = Date.now();
    const srcDir = await ensureSource(cacheRoot, sourceVersion, log);
    const buildDir = join(cacheRoot, `build-${sourceVersion}`);
    await mkdir(buildDir, { recursive: true });
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      LC_ALL: 'C',
      KBUILD_BUILD_TIMESTAMP: kbuildTimestamp(epoch),
      KBUILD_BUILD_USER: 'aurae',
      KBUILD_BUILD_HOST: 'aurae',
      KBUILD_BUILD_VERSION: '1',
      KCONFIG_NOTIMESTAMP: '1',
      SOURCE_DATE_EPOCH: String(epoch),
    };
    const make = $({ cwd: srcDir, env, quiet: true, nothrow: true });

    log(`kernel: configuring ${SOURCE_PACKAGE} ${sourceVersion} (tinyconfig + ${FRAGMENT_PATH})`);
    await runMake(make, ['tinyconfig'], buildDir, log, 'make tinyconfig');
    const configPath = join(buildDir, '.config');
    const base = await readFile(configPath, 'utf8');
    await writeFile(configPath, mergeKconfig(base, fragment));
    await runMake(make, ['olddefconfig'], buildDir, log, 'make olddefconfig');
    const finalConfig = await readFile(configPath, 'utf8');
    const dropped = verifyKernelConfig(fragment, finalConfig);
    if (dropped.length > 0) {
      throw new KernelBuildError(
        `kernel config: ${dropped.length} option(s) of ${FRAGMENT_PATH} did not survive olddefconfig:\n` +
          dropped.map((d) => `  - ${d}`).join('\n') +
          `\nCheck each option's "depends on" (e.g. grep -rn "config NAME" ${srcDir} --include=Kconfig*) ` +
          `and add the missing dependencies to the fragment; the resulting .config is ${configPath}.`,
      );
    }

    const jobs = opts.jobs ?? availableParallelism();
    const filesRecord = join(cacheRoot, MAKE_FILES_RECORD);
    const recorded = await readMakeFiles(filesRecord, sourceVersion);
    // A kernel already in the build directory: kbuild compiles only what the config change touched.
    const incremental = existsSync(join(buildDir, 'vmlinux'));
    const expected = expectedFiles(recorded, incremental);
    log(`kernel: building bzImage with make -j${jobs}: ${describeExpected(expected)} (a full build takes ~4 min on 2 free cores)`);
    const progress = await runMake(make, [`-j${jobs}`, 'bzImage'], buildDir, log, 'make bzImage', expected);
    // The next build's total: a full build's own count, or after an incremental one what a full build of this
    // config would compile (the objects now in the build directory), unless a full count is already known.
    if (!incremental) await writeMakeFiles(filesRecord, sourceVersion, progress.compiled());
    else if (recorded === null) await writeMakeFiles(filesRecord, sourceVersion, await countObjects(buildDir));

    const tmpOut = `${outDir}.tmp-${process.pid}`;
    await rm(tmpOut, { recursive: true, force: true });
    await mkdir(tmpOut, { recursive: true });
    await copyFile(join(buildDir, 'arch/x86/boot/bzImage'), join(tmpOut, 'vmlinuz'));
    await writeFile(join(tmpOut, 'config'), finalConfig);
    await rename(tmpOut, outDir);
    const stored = await cachedResult(outDir, key, sourceVersion);
    if (!stored) throw new KernelBuildError(`kernel: outputs vanished from ${outDir} right after the build`);
    const result: KernelBuild = { ...stored, cached: false };
    const size = (await stat(result.vmlinuz)).size;
    log(
      `kernel: built ${result.vmlinuz} (${(size / 1e6).toFixed(2)} MB, ${progress.compiled()} files compiled, ` +
        `${((Date.now() - started) / 1000).toFixed(0)} s)`,
    );
    return result;
  });
}

async function cachedResult(outDir: string, key: string, sourceVersion: string): Promise<KernelBuild | undefined> {
  const vmlinuz = join(outDir, 'vmlinuz');
  const config = join(outDir, 'config');
  if (!existsSync(vmlinuz) || !existsSync(config)) return undefined;
  const sha256 = createHash('sha256').update(await readFile(vmlinuz)).digest('hex');
  return { vmlinuz, config, key, cached: true, sourceVersion, sha256 };
}

async function debianSourceVersion(): Promise<string> {
  const out = await quiet({ nothrow: true })`dpkg-query -W -f ${'${Status}|${Version}'} ${SOURCE_PACKAGE}`;
  const [status, version] = out.stdout.split('|');
  if (out.exitCode !== 0 || !status?.includes('ok installed') || !version || !existsSync(SOURCE_TARBALL)) {
    throw new KernelBuildError(
      `kernel: ${SOURCE_PACKAGE} is not installed (need ${SOURCE_TARBALL}). ` +
        `Install it with:\n  sudo apt-get install -y ${SOURCE_PACKAGE}`,
    );
  }
  return version.trim();
}

async function compilerVersion(): Promise<string> {
  const out = await quiet({ nothrow: true })`gcc --version`;
  const first = out.stdout.split('\n')[0]?.trim();
  if (out.exitCode !== 0 || !first) {
    throw new KernelBuildError(`kernel: gcc is not available. Install it with:\n  sudo apt-get install -y build-essential`);
  }
  return first;
}

function checkPrerequisites(): void {
  const pathDirs = (process.env.PATH ?? '/usr/bin:/bin').split(':').filter(Boolean);
  const includeDirs = ['/usr/include', '/usr/local/include', '/usr/include/x86_64-linux-gnu'];
  const missing = missingPrerequisites({
    hasCommand: (name) => pathDirs.some((d) => existsSync(join(d, name))),
    hasHeader: (rel) => includeDirs.some((d) => existsSync(join(d, rel))),
  });
  if (missing.length > 0) throw new KernelBuildError(prerequisitesMessage(missing));
}

/** Extracts the tarball once; a half-extracted tree is never visible under its final name. */
async function ensureSource(cacheRoot: string, version: string, log: (line: string) => void): Promise<string> {
  const srcDir = join(cacheRoot, `src-${version}`);
  if (existsSync(join(srcDir, 'Makefile'))) return srcDir;
  // We hold the lock, so leftovers of interrupted extractions belong to nobody.
  for (const name of await readdir(cacheRoot)) {
    if (name.startsWith(`src-${version}.tmp-`)) await rm(join(cacheRoot, name), { recursive: true, force: true });
  }
  const tmp = join(cacheRoot, `src-${version}.tmp-${process.pid}`);
  await mkdir(tmp, { recursive: true });
  log(`kernel: extracting ${SOURCE_TARBALL} into ${srcDir} (once, ~10 s)`);
  const out = await quiet({ nothrow: true })`tar -xJf ${SOURCE_TARBALL} --strip-components=1 -C ${tmp}`;
  if (out.exitCode !== 0) {
    await rm(tmp, { recursive: true, force: true });
    throw new KernelBuildError(
      `kernel: extracting ${SOURCE_TARBALL} failed (exit ${out.exitCode}): ${out.stderr.trim()}\n` +
        `Check free space under ${cacheRoot} and that the tarball is intact (sudo apt-get install --reinstall ${SOURCE_PACKAGE}).`,
    );
  }
  await rename(tmp, srcDir);
  return srcDir;
}

type Make = Shell;

async function runMake(make: Make, args: string[], buildDir: string, log: (line: string) => void, what: string, expected?: ExpectedFiles) {
  const progress = makeProgress({ log, expected });
  const out = makeSplitter(progress);
  const err = makeSplitter(progress);
  const p = make`make ${`O=${buildDir}`} ${args}`;
  p.stdout.on('data', (c: Buffer) => out.push(c));
  p.stderr.on('data', (c: Buffer) => err.push(c));
  const result = await p;
  out.flush();
  err.flush();
  if (result.exitCode !== 0) {
    throw new KernelBuildError(
      `kernel: ${what} failed (exit ${result.exitCode}) in ${buildDir}. Last lines:\n` +
        progress.tail().map((l) => `  | ${l}`).join('\n') +
        `\nWhat to do: read the first error above. Missing headers or tools usually mean a missing package:\n` +
        `  sudo apt-get install -y build-essential bc flex bison libelf-dev libssl-dev xz-utils zstd\n` +
        `If the build directory is in a bad state, delete it and rebuild: rm -rf ${buildDir}`,
    );
  }
  return progress;
}

/** Under the kernel cache: { "<Debian source version>": { "files": N } }, the files the last build compiled. */
const MAKE_FILES_RECORD = 'make-files.json';

function describeExpected(expected: ExpectedFiles): string {
  if (expected.basis === 'recorded') return `${expected.files} files to compile, as the last full build`;
  if (expected.basis === 'estimate') return `about ${expected.files} files to compile (first build: an estimate)`;
  return `an incremental build, at most about ${expected.files} files`;
}

async function readMakeFiles(file: string, sourceVersion: string): Promise<number | null> {
  try {
    const files = (JSON.parse(await readFile(file, 'utf8')) as Record<string, { files?: unknown }>)[sourceVersion]?.files;
    return typeof files === 'number' && Number.isInteger(files) && files > 0 ? files : null;
  } catch {
    return null; // none yet, or unreadable: the next build writes it again
  }
}

/** Best effort: a lost record only means the next build shows an estimate. */
async function writeMakeFiles(file: string, sourceVersion: string, files: number): Promise<void> {
  if (files <= 0) return;
  let record: Record<string, unknown> = {};
  try {
    record = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch {
    record = {};
  }
  record[sourceVersion] = { files };
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`);
    await rename(tmp, file);
  } catch {
    await rm(tmp, { force: true });
  }
}

/** Kernel objects in a build directory (host tools under scripts/ and tools/ are not counted: make prints them as HOSTCC). */
async function countObjects(buildDir: string): Promise<number> {
  const entries = await readdir(buildDir, { recursive: true });
  return entries.filter((e) => e.endsWith('.o') && !e.startsWith('scripts/') && !e.startsWith('tools/')).length;
}

function makeSplitter(progress: ReturnType<typeof makeProgress>) {
  return lineSplitter((line) => progress.line(line));
}

/**
 * One kernel build per cache directory at a time (two builds in the same build tree would
 * corrupt it). The lock is a directory holding the owner's pid; a lock whose owner died is
 * taken over. Waits at most `maxWaitMs`.
 */
async function withBuildLock<T>(
  lockDir: string,
  log: (line: string) => void,
  fn: () => Promise<T>,
  maxWaitMs = 60 * 60 * 1000,
): Promise<T> {
  const deadline = Date.now() + maxWaitMs;
  let announced = false;
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = Number((await readFile(join(lockDir, 'pid'), 'utf8').catch(() => '')).trim());
    if (!owner || !isAlive(owner)) {
      // Owner died (or had not written its pid yet: give it a moment before taking over).
      if (!owner) await sleep(500);
      const again = Number((await readFile(join(lockDir, 'pid'), 'utf8').catch(() => '')).trim());
      if (!again || !isAlive(again)) {
        await rm(lockDir, { recursive: true, force: true });
        continue;
      }
    }
    if (Date.now() > deadline) {
      throw new KernelBuildError(
        `kernel: gave up waiting for another kernel build (pid ${owner}, lock ${lockDir}); ` +
          `if no build is running, remove the lock directory`,
      );
    }
    if (!announced) log(`kernel: waiting for another kernel build to finish (pid ${owner})`);
    announced = true;
    await sleep(2000);
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
