// auraed from a V8 startup snapshot (Node's `--build-snapshot` / `--snapshot-blob`): the image build runs the
// whole auraed bundle's module-level code once, in the image's own Node, and saves the heap. At boot init starts
// `node --snapshot-blob auraed.blob auraed.cjs --config …` and auraed's main runs on the deserialised heap,
// without parsing, compiling and running 2.6 MB of JavaScript under an emulated CPU.
//
// What cannot be in the snapshot, measured with Node 22.23 (README "auraed from a V8 startup snapshot"):
// - node:http, node:https, node:http2 and node:tls: loading them creates native handles the snapshot cannot
//   hold (http's HTTPParser and http2's Http2Session bindings: "global handle not serialized"; tls's JSStream:
//   "Unknown external reference"). The snapshot bundle's `require` hands out a stand-in for them while the
//   snapshot is built: it answers the module's keys and its plain data (http2.constants, which grpc-js
//   destructures at load) from the same Node run beforehand, and loads the real module on first use after
//   deserialisation. Any other use while building fails the build, naming the property, and so does Node
//   itself loading one of them while building (process.moduleLoadList).
// - node:os, the same way: it reads the kernel's release, version and machine once, when it loads.
// - undici (the registry client): at load it touches the fetch globals, whose WebAssembly HTTP parser does not
//   exist while a snapshot is built. supervisor/images/http.ts imports it on the first request.
// - native addons (better-sqlite3, native/syscalls): loaded with process.dlopen at run time, as before.
// - sockets, timers, the environment, the clock, the pid, randomness: nothing at module level may use them.
//   The build checks randomness (a random value baked into the image would be the same on every node) and the
//   environment (it runs the builder with an empty one and lists what module-level code read).
//
// Reproducible (measured: without each of these, two builds differ): V8's random seed is fixed while building
// (Math.random is reseeded at every start), garbage collection runs on the main thread only, the builder reads its
// script from /dev/stdin (the script's path is recorded in the blob), writes the blob under a fixed name, runs as
// pid 1 of a new pid namespace (Node records its pid in the blob) and without address space randomisation
// (`setarch -R`: some values in the blob depend on addresses).
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { $ } from 'zx';
import * as esbuild from 'esbuild';
import { cached, cacheRoot, sha256 } from '../lib/cache';
import type { Runtime } from '../runtime';
import { BUNDLE_OPTIONS } from './options';

/**
 * The built-ins whose load cannot be snapshotted: stand-ins until the first use after deserialisation. node:os
 * could be snapshotted, but it reads the kernel's release, version and machine once when it loads: loaded while
 * building it would report the build host's kernel forever (qemu-tests/01 caught Discover saying 6.18).
 */
export const SNAPSHOT_DEFERRED_BUILTINS = ['http', 'https', 'http2', 'tls', 'os'] as const;

/** The blob's file name beside auraed.cjs in the image (IMAGE_LIB_DIR), which init looks for. */
export const AURAED_SNAPSHOT_NAME = 'auraed.blob';

/**
 * Environment variables module-level code may read while the snapshot is built (it sees an empty environment,
 * so they read as unset), each with why that is acceptable. Any other read fails the build.
 */
export const SNAPSHOT_ENV_READS_ALLOWED: Record<string, string> = {
  GRPC_TRACE: "grpc-js's tracers are off in the image (set at load from the environment)",
  GRPC_NODE_TRACE: "grpc-js's tracers are off in the image (set at load from the environment)",
  GRPC_VERBOSITY: 'grpc-js logs errors only in the image (set at load from the environment)',
  GRPC_NODE_VERBOSITY: 'grpc-js logs errors only in the image (set at load from the environment)',
  GRPC_NODE_USE_ALTERNATIVE_RESOLVER: 'grpc-js resolves names with dns.lookup, its default',
  GRPC_EXPERIMENTAL_ENABLE_OUTLIER_DETECTION: "grpc-js's default",
  GRPC_SSL_CIPHER_SUITES: "grpc-js's default TLS ciphers",
  GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: "grpc-js's default roots (auraed passes its own CA)",
  GRPC_NODE_OVERRIDE_EVENT_LOOP_CHECK: "grpc-js's default",
  GRPC_NODE_DEBUG_SEND_ERROR_DETAILS: "grpc-js's default (no server error details to clients)",
  NODE_DEBUG: 'debuglog sections of bundled libraries are off in the image',
  FORCE_COLOR: 'log lines are JSON, never coloured',
  BUF_BIGINT_DISABLE: "@peculiar's buffer helpers use BigInt, their default",
  WS_NO_BUFFER_UTIL: "ws's default (its optional native module is not in the image anyway)",
  TESTING_TAR_FAKE_PLATFORM: "node-tar's own test hook",
  __FAKE_PLATFORM__: "node-tar's own test hook",
  __FAKE_FS_O_FILENAME__: "node-tar's own test hook",
};

/** Each deferred built-in's own keys and its plain-data properties, as the image's Node has them. */
export type BuiltinShapes = Record<string, { keys: string[]; data: Record<string, unknown> }>;

/** Read the shapes from the image's Node itself (a build-host Node of another version could differ). */
export async function builtinShapes(node: string): Promise<BuiltinShapes> {
  const script = `
    // Plain data: what JSON carries unchanged (os.constants, http2.constants, http.STATUS_CODES, …).
    const plain = (v) => v === null || ['string', 'number', 'boolean'].includes(typeof v) ||
      (typeof v === 'object' && (Array.isArray(v) || [Object.prototype, null].includes(Object.getPrototypeOf(v))) && Object.values(v).every(plain));
    const out = {};
    for (const id of ${JSON.stringify(SNAPSHOT_DEFERRED_BUILTINS)}) {
      const m = require(id);
      const keys = Object.getOwnPropertyNames(m);
      const data = {};
      for (const k of keys) {
        const d = Object.getOwnPropertyDescriptor(m, k);
        if (!('value' in d)) continue;
        const v = d.value;
        if (plain(v)) data[k] = v;
      }
      out[id] = { keys, data };
    }
    process.stdout.write(JSON.stringify(out));`;
  const { stdout } = await $({ quiet: true, env: {} })`${node} -e ${script}`;
  return JSON.parse(stdout) as BuiltinShapes;
}

/**
 * The snapshot bundle's first lines: `require` with stand-ins for the deferred built-ins while building and
 * process.getBuiltinModule after deserialisation; import.meta.url (image/bundle: the bundle's own URL) from
 * argv[1] after deserialisation (init passes auraed.cjs's path there); and the guard that records randomness
 * and environment reads while building.
 */
export function snapshotBanner(shapes: BuiltinShapes): string {
  return `var require = (function (realRequire) {
  "use strict";
  var v8 = realRequire("v8");
  var building = function () { return v8.startupSnapshot.isBuildingSnapshot(); };
  var SHAPES = ${JSON.stringify(shapes)};
  var standIns = new Map();
  function standIn(name, shape) {
    var real = null;
    var load = function (key) {
      if (real) return real;
      if (building()) throw new Error("snapshot: node:" + name + " cannot be loaded while the snapshot is built (module-level code used its " + String(key) + "): use it inside a function, or add its plain data to image/bundle/snapshot.ts");
      return (real = process.getBuiltinModule(name));
    };
    var stale = function () { return real === null && building(); };
    var has = function (k) { return typeof k === "string" && shape.keys.indexOf(k) >= 0; };
    return new Proxy({}, {
      get: function (_, k) {
        if (stale()) { if (typeof k === "string" && Object.prototype.hasOwnProperty.call(shape.data, k)) return shape.data[k]; if (!has(k)) return undefined; }
        return load(k)[k];
      },
      set: function (_, k, v) { load(k)[k] = v; return true; },
      has: function (_, k) { return stale() ? has(k) : k in load(k); },
      ownKeys: function () { return stale() ? shape.keys.slice() : Reflect.ownKeys(load("keys")); },
      getOwnPropertyDescriptor: function (_, k) {
        if (stale()) return has(k) ? { configurable: true, enumerable: true, writable: true, value: undefined } : undefined;
        var d = Reflect.getOwnPropertyDescriptor(load(k), k);
        if (d) d.configurable = true;
        return d;
      },
    });
  }
  return function require(id) {
    if (building()) {
      var name = String(id).replace(/^node:/, "");
      var shape = Object.prototype.hasOwnProperty.call(SHAPES, name) ? SHAPES[name] : null;
      if (!shape) return realRequire(id);
      if (!standIns.has(name)) standIns.set(name, standIn(name, shape));
      return standIns.get(name);
    }
    var builtin = process.getBuiltinModule(id);
    return builtin !== undefined ? builtin : realRequire(id);
  };
})(require);
var __aurae_import_meta_url = require("url").pathToFileURL(__filename).href;
var __aurae_snapshot_guard = (function () {
  var v8 = require("v8");
  if (!v8.startupSnapshot.isBuildingSnapshot()) return null;
  v8.startupSnapshot.addDeserializeCallback(function () {
    if (process.argv[1]) __aurae_import_meta_url = require("url").pathToFileURL(process.argv[1]).href;
  });
  var randomUses = [];
  var envReads = new Set();
  var restore = [];
  function record(what) {
    return function () {
      if (v8.startupSnapshot.isBuildingSnapshot()) randomUses.push(what + " " + String(new Error().stack).split("\\n").slice(2, 5).join(" | "));
    };
  }
  function wrap(object, key, what) {
    var original = object[key];
    if (typeof original !== "function") return;
    var note = record(what);
    object[key] = function () { note(); return original.apply(this, arguments); };
    restore.push(function () { object[key] = original; });
  }
  var crypto = require("crypto");
  wrap(Math, "random", "Math.random");
  for (var k of ["randomBytes", "randomUUID", "randomFillSync", "randomFill", "randomInt", "getRandomValues"]) wrap(crypto, k, "crypto." + k);
  if (globalThis.crypto) wrap(globalThis.crypto, "getRandomValues", "crypto.getRandomValues");
  var env = process.env;
  process.env = new Proxy(env, { get: function (t, k) { if (typeof k === "string") envReads.add(k); return t[k]; }, has: function (t, k) { if (typeof k === "string") envReads.add(k); return k in t; } });
  restore.push(function () { process.env = env; });
  return {
    finish: function () {
      for (var r of restore) r();
      process.stderr.write("AURAE_SNAPSHOT_ENV_READS " + JSON.stringify([...envReads].sort()) + "\\n");
      if (randomUses.length) throw new Error("snapshot: module-level code used randomness while the snapshot was built (every node would get the same values): " + randomUses.join("; "));
      // A deferred built-in that Node itself loaded while building would be the build's, stand-in or not.
      var deferred = new Set(${JSON.stringify(Object.keys(shapes))});
      var loaded = process.moduleLoadList.filter(function (m) { return deferred.has(m.replace(/^NativeModule /, "")) && m.indexOf("NativeModule ") === 0; });
      if (loaded.length) throw new Error("snapshot: " + loaded.join(", ") + " got loaded while the snapshot was built: it must stay out of the snapshot (image/bundle/snapshot.ts SNAPSHOT_DEFERRED_BUILTINS)");
    },
  };
})();
`;
}

/** The snapshot bundle's last line: the guard's verdict once every module ran. */
const SNAPSHOT_FOOTER = 'if (__aurae_snapshot_guard) __aurae_snapshot_guard.finish();';

/** Bundle auraed for the snapshot builder (not shipped: the image carries auraed.cjs and the blob made from this). */
export async function buildSnapshotBundle(repoRoot: string, entry: string, outfile: string, shapes: BuiltinShapes): Promise<string> {
  await esbuild
    .build({
      ...BUNDLE_OPTIONS,
      absWorkingDir: repoRoot,
      entryPoints: [entry],
      outfile,
      banner: { js: snapshotBanner(shapes) },
      footer: { js: SNAPSHOT_FOOTER },
    })
    .catch((err: Error) => {
      throw new Error(`snapshot: ${entry} failed to bundle:\n${err.message}`);
    });
  return outfile;
}

/**
 * V8 flags of the builder only (the node runs without them): a fixed random seed (the hash seed and Math.random's
 * state while building), and garbage collection on the main thread only (concurrent GC threads make the heap's
 * layout, so the blob, depend on timing).
 */
const SNAPSHOT_BUILD_FLAGS = ['--random-seed=1', '--single-threaded-gc'];

/** The blob's name while it is built (recorded in the blob: fixed for reproducibility). */
const SNAPSHOT_FILE_IN_BUILD = 'snapshot.blob';

/** How to run a command as pid 1 of a new pid namespace: as root directly, else in a user namespace. */
function pidNamespace(): string[] {
  const base = ['unshare', '--pid', '--fork', '--kill-child'];
  return process.getuid?.() === 0 ? base : [...base, '--user', '--map-root-user'];
}

export interface SnapshotBuild {
  /** The blob to ship (in the cache, keyed by the snapshot bundle and the runtime). */
  blob: string;
  /** What module-level code read from the (empty) environment while building. */
  envReads: string[];
  cached: boolean;
}

/**
 * Run the snapshot builder in the image's Node, check the blob starts auraed in that Node, and cache it by its
 * inputs. Throws saying what failed: a module that cannot be snapshotted, randomness or an unexpected
 * environment read at module level, or a blob that does not start.
 */
export async function buildSnapshotBlob(
  runtime: Runtime,
  snapshotBundle: string,
  log: (line: string) => void,
  /** How the built blob is proven to start (default: as auraed, checkSnapshotStarts). */
  check: (runtime: Runtime, blob: string) => Promise<void> = checkSnapshotStarts,
): Promise<SnapshotBuild> {
  const key = sha256(fs.readFileSync(snapshotBundle), runtime.version, runtime.integrity, SNAPSHOT_BUILD_FLAGS.join(' ')).slice(0, 16);
  const dir = path.join(cacheRoot(), 'snapshot', `auraed-${key}`);
  const blob = path.join(dir, AURAED_SNAPSHOT_NAME);
  const reads = path.join(dir, 'env-reads.json');
  const { hit } = await cached(dir, async (tmp) => {
    const stdin = fs.openSync(snapshotBundle, 'r');
    let stderr: string;
    try {
      const [cmd, ...args] = [...pidNamespace(), 'setarch', '-R', runtime.node, ...SNAPSHOT_BUILD_FLAGS, '--snapshot-blob', SNAPSHOT_FILE_IN_BUILD, '--build-snapshot', '/dev/stdin'];
      const out = await run(cmd!, args, { cwd: tmp, stdin });
      stderr = out.stderr;
      if (out.code !== 0) throw new Error(`snapshot: building auraed's startup snapshot failed (exit ${out.code}):\n${stderr.slice(-3000)}`);
    } finally {
      fs.closeSync(stdin);
    }
    const envReads = JSON.parse(/^AURAE_SNAPSHOT_ENV_READS (.*)$/m.exec(stderr)?.[1] ?? 'null') as string[] | null;
    if (!envReads) throw new Error(`snapshot: the builder did not report its environment reads (was ${snapshotBundle} bundled by buildSnapshotBundle?):\n${stderr.slice(-2000)}`);
    const unexpected = envReads.filter((name) => !(name in SNAPSHOT_ENV_READS_ALLOWED));
    if (unexpected.length) {
      throw new Error(
        `snapshot: module-level code read ${unexpected.join(', ')} from the environment while the snapshot was built: the value would be the build's, not the node's: read it inside a function, or allow it in SNAPSHOT_ENV_READS_ALLOWED (image/bundle/snapshot.ts) saying why`,
      );
    }
    fs.renameSync(path.join(tmp, SNAPSHOT_FILE_IN_BUILD), path.join(tmp, AURAED_SNAPSHOT_NAME));
    await check(runtime, path.join(tmp, AURAED_SNAPSHOT_NAME));
    fs.writeFileSync(path.join(tmp, 'env-reads.json'), JSON.stringify(envReads));
  });
  const envReads = JSON.parse(fs.readFileSync(reads, 'utf8')) as string[];
  log(`snapshot: ${AURAED_SNAPSHOT_NAME} ${(fs.statSync(blob).size / 1e6).toFixed(1)} MB${hit ? ' (cached)' : ''}; module-level environment reads: ${envReads.join(', ') || 'none'}`);
  return { blob, envReads, cached: hit };
}

/**
 * Deserialise the blob in the image's Node and run auraed's main far enough to prove it: with a config path
 * that does not exist it must say so and exit 2 (its usage/config exit code), as auraed.cjs does.
 */
export async function checkSnapshotStarts(runtime: Runtime, blob: string): Promise<void> {
  const missing = '/nonexistent/aurae-snapshot-check.json';
  const out = await run(runtime.node, ['--snapshot-blob', blob, '/usr/lib/aurae/auraed.cjs', '--config', missing], {});
  if (out.code !== 2 || !out.stderr.includes(`cannot read config ${missing}`)) {
    throw new Error(`snapshot: auraed from ${blob} did not start as auraed.cjs does (exit ${out.code}, expected 2 and "cannot read config"):\n${(out.stderr + out.stdout).slice(-2000)}`);
  }
}

/** Run a program with an empty environment; its exit code and output. */
function run(cmd: string, args: string[], opts: { cwd?: string; stdin?: number }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: {}, stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => reject(new Error(`snapshot: running ${cmd} failed: ${err.message}${cmd === 'unshare' ? ': install util-linux' : ''}`)));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * auraed's startup snapshot for the image: the shapes of the deferred built-ins in the image's Node, the
 * snapshot bundle of `entry` (supervisor/main.ts) written into `outDir`, and the blob built from it (cached).
 */
export async function buildAuraedSnapshot(repoRoot: string, entry: string, runtime: Runtime, outDir: string, log: (line: string) => void): Promise<SnapshotBuild> {
  const shapes = await builtinShapes(runtime.node);
  const bundle = await buildSnapshotBundle(repoRoot, entry, path.join(outDir, 'auraed-snapshot.cjs'), shapes);
  return buildSnapshotBlob(runtime, bundle, log);
}
