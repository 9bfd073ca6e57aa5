// esbuild bundles of the three programs the image runs. CommonJS output so /init can `require` it and no
// loader hooks are needed; native addons stay outside the bundle and are found beside it at run time.
import path from 'node:path';
import * as esbuild from 'esbuild';
import { BUNDLE_OPTIONS } from './options';

export const BUNDLES = {
  'init.cjs': 'init/main.ts',
  'auraed.cjs': 'supervisor/main.ts',
  'aer.cjs': 'aer/cli.ts',
} as const;

export type BundleName = keyof typeof BUNDLES;

/** Bundle every program into `outDir`. Same sources → same bytes (esbuild is deterministic). */
export async function buildBundles(repoRoot: string, outDir: string, log: (line: string) => void): Promise<Record<BundleName, string>> {
  const out = {} as Record<BundleName, string>;
  for (const [name, entry] of Object.entries(BUNDLES) as [BundleName, string][]) {
    const outfile = path.join(outDir, name);
    const result = await esbuild.build({
      absWorkingDir: repoRoot,
      entryPoints: [entry],
      outfile,
      ...BUNDLE_OPTIONS,
    }).catch((err: Error) => {
      throw new Error(`bundle: ${entry} failed to bundle:\n${err.message}`);
    });
    for (const w of result.warnings) log(`bundle: warning in ${entry}: ${w.text}`);
    out[name] = outfile;
  }
  log(`bundle: ${Object.keys(out).join(', ')}`);
  return out;
}

export { AURAED_SNAPSHOT_NAME, buildAuraedSnapshot, type SnapshotBuild } from './snapshot';
