// Builds the syscall addon (syscalls.c) with the C compiler directly: no node-gyp, no
// downloaded headers. N-API is ABI-stable and the napi_* symbols resolve from the node
// binary at load time, so the only input besides the source is a directory holding
// node_api.h: the host's for tests, the pinned Node tarball (image/runtime)'s `include/node` for the image.
//
// CLI: `npx tsx native/build.ts [--include DIR] [--out FILE]` builds native/build/syscalls.node, and aurae-exec
// (the cell executable launcher, aurae-exec.c) beside it.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const NATIVE_DIR = path.dirname(fileURLToPath(import.meta.url));
export const SYSCALLS_SOURCE = path.join(NATIVE_DIR, 'syscalls.c');
export const DEFAULT_ADDON_PATH = path.join(NATIVE_DIR, 'build', 'syscalls.node');

export interface BuildSyscallsAddonOptions {
  /** Directory containing node_api.h (e.g. /usr/include/node or <node tarball>/include/node). */
  nodeIncludeDir: string;
  /** Where to write the .node file; its directory is created. */
  outFile: string;
  /** C compiler; default `cc`. */
  cc?: string;
}

/**
 * The compiler arguments, fixed so that the same source, headers and compiler give the same bytes:
 * no debug info (which would embed paths), stripped, source named relative to NATIVE_DIR.
 */
export function compilerArgs(nodeIncludeDir: string, outFile: string): string[] {
  return [
    '-O2',
    '-shared',
    '-fPIC',
    '-std=gnu11',
    '-Wall',
    '-Wextra',
    '-fvisibility=hidden',
    `-I${nodeIncludeDir}`,
    '-s',
    '-o',
    outFile,
    'syscalls.c',
  ];
}

/** Compile native/syscalls.c into `outFile`; resolves to outFile. Written atomically (temp + rename). */
export async function buildSyscallsAddon(options: BuildSyscallsAddonOptions): Promise<string> {
  const header = path.join(options.nodeIncludeDir, 'node_api.h');
  if (!existsSync(header)) {
    throw new Error(
      `building the syscall addon: ${header} not found: pass the "include/node" directory of the Node runtime ` +
        `the addon is for (the image build passes the pinned Node's headers)`,
    );
  }
  return compileAtomically({
    what: 'the syscall addon',
    cc: options.cc,
    outFile: options.outFile,
    args: (tmp) => compilerArgs(path.resolve(options.nodeIncludeDir), tmp),
  });
}

export const AURAE_EXEC_SOURCE = path.join(NATIVE_DIR, 'aurae-exec.c');

export interface BuildAuraeExecOptions {
  /** Where to write the executable; its directory is created. */
  outFile: string;
  /** C compiler; default `cc`. */
  cc?: string;
}

/**
 * The compiler arguments for aurae-exec: static (glibc's libc.a; it needs no NSS), so the same binary runs on
 * the host and in the image whatever libraries the image carries; stripped, no debug info, reproducible.
 */
export function auraeExecCompilerArgs(outFile: string): string[] {
  return ['-O2', '-static', '-std=gnu11', '-Wall', '-Wextra', '-Werror', '-s', '-o', outFile, 'aurae-exec.c'];
}

/** Compile native/aurae-exec.c (the cell executable launcher) into `outFile`; written atomically. */
export async function buildAuraeExec(options: BuildAuraeExecOptions): Promise<string> {
  return compileAtomically({
    what: 'aurae-exec',
    cc: options.cc,
    outFile: options.outFile,
    args: auraeExecCompilerArgs,
    hint: ' (a static build needs libc.a from libc6-dev)',
  });
}

/** Run the C compiler into a temp file beside `outFile`, then rename: a failed build leaves nothing half-written. */
async function compileAtomically(o: { what: string; cc?: string; outFile: string; args: (tmp: string) => string[]; hint?: string }): Promise<string> {
  const outFile = path.resolve(o.outFile);
  await mkdir(path.dirname(outFile), { recursive: true });
  const tmp = `${outFile}.tmp-${process.pid}`;
  const cc = o.cc ?? 'cc';
  try {
    await execFileAsync(cc, o.args(tmp), { cwd: NATIVE_DIR, env: { ...process.env, LC_ALL: 'C', SOURCE_DATE_EPOCH: '0' } });
  } catch (err) {
    await rm(tmp, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error(`building ${o.what}: C compiler "${cc}" not found: install build-essential`);
    throw new Error(`building ${o.what}: ${cc} failed${o.hint ?? ''}:\n${e.stderr ?? e.message}`);
  }
  await rename(tmp, outFile);
  return outFile;
}

/**
 * Headers for the host build: /usr/include/node (Debian's nodejs package), else the
 * `include/node` beside the running node binary (official tarballs). Throws saying what to install.
 */
export function hostNodeIncludeDir(): string {
  const candidates = [
    '/usr/include/node',
    path.resolve(path.dirname(process.execPath), '..', 'include', 'node'),
  ];
  for (const dir of candidates) {
    if (existsSync(path.join(dir, 'node_api.h'))) return dir;
  }
  throw new Error(
    `Node headers not found (looked for node_api.h in ${candidates.join(', ')}): install the Node headers ` +
      `(Debian: the nodejs package ships /usr/include/node; a nodejs.org tarball ships include/node), ` +
      `or pass --include DIR`,
  );
}

async function cli(argv: string[]): Promise<void> {
  let include: string | undefined;
  let out = DEFAULT_ADDON_PATH;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if ((arg === '--include' || arg === '--out') && value !== undefined) {
      if (arg === '--include') include = value;
      else out = value;
      i++;
    } else {
      throw new Error(`native/build.ts: unknown argument "${arg}"; usage: native/build.ts [--include DIR] [--out FILE]`);
    }
  }
  const built = await buildSyscallsAddon({ nodeIncludeDir: include ?? hostNodeIncludeDir(), outFile: out });
  process.stdout.write(`built ${built}\n`);
  // The cell launcher beside it (native/build/aurae-exec), for auraed run from a checkout.
  const exec = await buildAuraeExec({ outFile: path.join(path.dirname(out), 'aurae-exec') });
  process.stdout.write(`built ${exec}\n`);
}

// Run as a script (`npx tsx native/build.ts`), not when imported by the image build.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  cli(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
