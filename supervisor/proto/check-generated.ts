// CI guard for "one source of API truth": regenerate the TypeScript from the .proto files into a temp dir
// and compare it with the committed supervisor/gen. Needs no network (buf's built-in compiler + local ts-proto).
// Usage (from anywhere): tsx supervisor/proto/check-generated.ts
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { $ } from 'zx';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const GEN_DIR = 'supervisor/gen';

/** Files under `dir`, as paths relative to it, sorted. */
function listFiles(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { recursive: true, withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath ?? e.path, e.name)))
    .sort();
}

/** Paths that differ between two trees (missing on either side or different bytes). */
function diffTrees(expectedDir: string, actualDir: string): string[] {
  const expected = listFiles(expectedDir);
  const actual = listFiles(actualDir);
  const all = [...new Set([...expected, ...actual])].sort();
  return all.filter((file) => {
    if (!expected.includes(file)) return true;
    if (!actual.includes(file)) return true;
    return !readFileSync(join(expectedDir, file)).equals(readFileSync(join(actualDir, file)));
  });
}

async function main(): Promise<number> {
  const tmp = mkdtempSync(join(tmpdir(), 'aurae-gen-check-'));
  try {
    const buf = join(repoRoot, 'node_modules/.bin/buf');
    await $({ cwd: repoRoot, quiet: true })`${buf} generate supervisor/proto --template supervisor/proto/buf.gen.yaml -o ${tmp}`;
    const stale = diffTrees(join(tmp, GEN_DIR), join(repoRoot, GEN_DIR));
    if (stale.length > 0) {
      console.error(`generated code is stale: run npm run gen\n  differs: ${stale.map((f) => join(GEN_DIR, f)).join('\n  differs: ')}`);
      return 1;
    }
    console.log(`${GEN_DIR} is up to date with supervisor/proto`);
    return 0;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

void main().then((code) => {
  process.exitCode = code;
});
