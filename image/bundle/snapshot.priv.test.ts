// auraed's V8 startup snapshot as the image build makes it (priv: the builder runs in a new pid namespace, and in
// the image's own Node from ~/.cache/aurae/runtime). The blob must be reproducible (qemu 00 compares images, but the
// blob comes from a cache there), must start auraed, and the build must refuse module-level randomness and
// environment reads it has not been told about.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../supervisor/config/node-paths';
import { fetchRuntime, type Runtime } from '../runtime';
import { BUNDLES } from './index';
import { buildAuraedSnapshot, buildSnapshotBlob, buildSnapshotBundle, builtinShapes } from './snapshot';

let runtime: Runtime;
let dir: string;
const savedCache = process.env.AURAE_CACHE_DIR;

beforeAll(async () => {
  runtime = await fetchRuntime(() => {});
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-snapshot-test-'));
});

afterAll(() => {
  if (savedCache === undefined) delete process.env.AURAE_CACHE_DIR;
  else process.env.AURAE_CACHE_DIR = savedCache;
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh blob cache, so each build really runs the builder. */
function freshCache(name: string): void {
  process.env.AURAE_CACHE_DIR = path.join(dir, `cache-${name}`);
}

describe('auraed startup snapshot', () => {
  it('two builds from different folders give the same bytes, and auraed starts from it as from auraed.cjs', async () => {
    freshCache('a');
    const a = await buildAuraedSnapshot(REPO_ROOT, BUNDLES['auraed.cjs'], runtime, fs.mkdtempSync(path.join(dir, 'out-')), () => {});
    freshCache('b');
    const b = await buildAuraedSnapshot(REPO_ROOT, BUNDLES['auraed.cjs'], runtime, fs.mkdtempSync(path.join(dir, 'out-')), () => {});
    expect(a.cached || b.cached).toBe(false);
    expect(fs.readFileSync(a.blob).equals(fs.readFileSync(b.blob))).toBe(true);
    // The builder saw an empty environment; what module-level code read is listed (grpc-js's tracers, …).
    expect(a.envReads).toContain('GRPC_TRACE');
    // Deserialised, main runs: a missing config is a usage error (exit 2), as with auraed.cjs.
    const run = spawnSync(runtime.node, ['--snapshot-blob', a.blob, '/usr/lib/aurae/auraed.cjs', '--config', path.join(dir, 'missing.json')], { encoding: 'utf8', env: {} });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`cannot read config ${path.join(dir, 'missing.json')}`);
  }, 180_000);

  it('refuses module-level randomness and unlisted environment reads, naming them', async () => {
    const shapes = await builtinShapes(runtime.node);
    const build = async (name: string, source: string) => {
      const entry = path.join(dir, `${name}.ts`);
      // No exports: the builder runs the bundle as a plain script (no `module`).
      fs.writeFileSync(entry, `${source}\nimport { startupSnapshot } from 'node:v8';\nstartupSnapshot.setDeserializeMainFunction(() => {});\n`);
      freshCache(name);
      const bundle = await buildSnapshotBundle(REPO_ROOT, entry, path.join(dir, `${name}.cjs`), shapes);
      // Not auraed: proven by deserialising it at all.
      return buildSnapshotBlob(runtime, bundle, () => {}, async (rt, blob) => {
        expect(spawnSync(rt.node, ['--snapshot-blob', blob, 'x.cjs'], { env: {} }).status).toBe(0);
      });
    };
    await expect(build('random', "import { randomUUID } from 'node:crypto';\n(globalThis as Record<string, unknown>).id = randomUUID();")).rejects.toThrow(/module-level code used randomness .*crypto\.randomUUID/);
    await expect(build('env', '(globalThis as Record<string, unknown>).home = process.env.AURAE_SOMETHING;')).rejects.toThrow(/module-level code read AURAE_SOMETHING from the environment/);
    // http2.constants is answered while building (grpc-js destructures it at load); using the module is refused.
    await expect(build('http2', "import http2 from 'node:http2';\n(globalThis as Record<string, unknown>).s = http2.createServer;")).rejects.toThrow(/node:http2 cannot be loaded while the snapshot is built .*createServer/);
    expect((await build('constants', "import http2 from 'node:http2';\n(globalThis as Record<string, unknown>).p = http2.constants.HTTP2_HEADER_PATH;")).envReads).toEqual([]);
  }, 180_000);
});
