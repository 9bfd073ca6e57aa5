// Native addons for the image, compiled against the image runtime's own headers (never the host's Node):
// better-sqlite3 uses V8's C++ API, so its binary is tied to one Node ABI.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { $ } from 'zx';
import { cached, cacheRoot, sha256 } from '../lib/cache';
import type { Runtime } from '../runtime';

type Log = (line: string) => void;
const require = createRequire(import.meta.url);

async function toolchainId(): Promise<string> {
  return (await $({ quiet: true })`cc --version`).stdout.split('\n')[0] ?? 'unknown';
}

/** Build better-sqlite3 (the version in our lockfile) for the image runtime. Returns the .node path. */
export async function buildBetterSqlite3(runtime: Runtime, log: Log, root = cacheRoot()): Promise<string> {
  const pkgDir = path.dirname(require.resolve('better-sqlite3/package.json'));
  const { version } = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  const gyp = require.resolve('node-gyp/bin/node-gyp.js');
  const key = sha256('better-sqlite3', version, runtime.version, await toolchainId()).slice(0, 16);
  const dir = path.join(root, 'addons', `better-sqlite3-${version}-node-${runtime.version}-${key}`);
  const { hit } = await cached(dir, async (tmp) => {
    log(`addons: building better-sqlite3 ${version} against node ${runtime.version} headers (about a minute)`);
    const src = path.join(tmp, 'src');
    fs.cpSync(pkgDir, src, { recursive: true, filter: (p) => !p.includes(`${path.sep}build`) && !p.endsWith('node_modules') });
    // npm exports npm_config_nodedir (the host's headers) to scripts; node-gyp would prefer it over --nodedir.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)));
    await $({ cwd: src, quiet: true, env })`${process.execPath} ${gyp} rebuild --release --jobs=2 --nodedir=${runtime.nodeDir}`.catch(
      (err: Error) => {
        throw new Error(`addons: better-sqlite3 build failed:\n${err.message.slice(-3000)}\nIs build-essential installed (npm run setup)?`);
      },
    );
    fs.copyFileSync(path.join(src, 'build/Release/better_sqlite3.node'), path.join(tmp, 'better_sqlite3.node'));
    await $({ quiet: true })`strip --strip-unneeded ${path.join(tmp, 'better_sqlite3.node')}`;
    fs.rmSync(src, { recursive: true, force: true });
    await checkLoads(runtime, path.join(tmp, 'better_sqlite3.node'));
    await checkStatementsCollectable(runtime, path.join(tmp, 'better_sqlite3.node'), pkgDir);
  });
  if (hit) log(`addons: better-sqlite3 ${version} for node ${runtime.version} (cached)`);
  return path.join(dir, 'better_sqlite3.node');
}

/** Load `addon` in the image runtime itself (it runs on the build host): an ABI mismatch fails the build, not the boot. */
export async function checkLoads(runtime: Runtime, addon: string): Promise<void> {
  const script = `const m = { exports: {} }; process.dlopen(m, ${JSON.stringify(addon)});`;
  await $({ quiet: true })`${runtime.node} -e ${script}`.catch((err: Error) => {
    throw new Error(`addons: ${path.basename(addon)} does not load in node ${runtime.version}:\n${err.message.slice(-1500)}`);
  });
}

/**
 * Run better-sqlite3 in the image runtime for about a second while the garbage collector frees prepared statements
 * from the event loop, as in a running auraed: Node 24 with better-sqlite3 12.11 aborts there (see NODE_RUNTIME).
 */
export async function checkStatementsCollectable(runtime: Runtime, addon: string, betterSqlite3Dir: string): Promise<void> {
  const script = `
    const Database = require(${JSON.stringify(betterSqlite3Dir)});
    const db = new Database(':memory:', { nativeBinding: ${JSON.stringify(addon)} });
    const until = Date.now() + 1000;
    (function churn() {
      for (let i = 0; i < 500; i++) db.prepare('SELECT ' + (i % 50)).get();
      const garbage = [];
      for (let i = 0; i < 20000; i++) garbage.push({ i });
      if (Date.now() < until) setImmediate(churn);
    })();`;
  await $({ quiet: true })`${runtime.node} -e ${script}`.catch((err: Error) => {
    throw new Error(
      `addons: better-sqlite3 crashes in node ${runtime.version} when a prepared statement is garbage-collected ` +
        `(auraed would abort at random):\n${err.message.slice(-1500)}\nPin another runtime in image/runtime/index.ts (Node 22 LTS works).`,
    );
  });
}
