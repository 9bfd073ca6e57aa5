// Which command starts auraed:
//   AURAE_AURAED_CMD (JSON argv array) if set, else
//   node --snapshot-blob /usr/lib/aurae/auraed.blob /usr/lib/aurae/auraed.cjs
//                                             (the image: auraed's V8 startup snapshot beside it, image/bundle;
//                                             not with AURAE_SNAPSHOT=off), else
//   node /usr/lib/aurae/auraed.cjs            (auraed.cjs beside init.cjs, no snapshot), else
//   node --import tsx supervisor/main.ts      (a dev checkout)
// followed by `--config <path>`.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { inCheckout, locateInstalled } from '../../supervisor/config/node-paths';

export interface AuraedCommandInputs {
  /** Value of AURAE_AURAED_CMD, if set. */
  override?: string | undefined;
  /** auraed.cjs beside the running bundle, when it exists. */
  bundledEntry: string | null;
  /** auraed's startup snapshot beside auraed.cjs, when it exists (auraed.cjs stays argv[1]: auraed locates its files from it). */
  snapshotBlob?: string | null;
  /** tsx loader URL + supervisor/main.ts, when running from a checkout. */
  devEntry: { tsxLoader: string; mainTs: string } | null;
  nodePath: string;
  configPath: string;
}

/** The argv (argv[0] is the program). Throws saying how to fix a bad override or a missing auraed. */
export function auraedCommand(inputs: AuraedCommandInputs): string[] {
  const config = ['--config', inputs.configPath];
  if (inputs.override !== undefined && inputs.override !== '') {
    let argv: unknown;
    try {
      argv = JSON.parse(inputs.override);
    } catch {
      argv = undefined;
    }
    if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string' && a.length > 0)) {
      throw new Error(
        `AURAE_AURAED_CMD must be a non-empty JSON array of strings, e.g. ["/usr/bin/node","/path/auraed.cjs"]; got ${inputs.override}`,
      );
    }
    return [...(argv as string[]), ...config];
  }
  if (inputs.bundledEntry) return [inputs.nodePath, ...(inputs.snapshotBlob ? ['--snapshot-blob', inputs.snapshotBlob] : []), inputs.bundledEntry, ...config];
  if (inputs.devEntry) return [inputs.nodePath, '--import', inputs.devEntry.tsxLoader, inputs.devEntry.mainTs, ...config];
  throw new Error(
    'auraed not found: no auraed.cjs beside the init bundle and no supervisor/main.ts checkout; ' +
      'set AURAE_AURAED_CMD to a JSON argv array',
  );
}

/** Look around the running init for auraed (beside the bundle first, then the source checkout). */
export function locateAuraed(env: NodeJS.ProcessEnv, configPath: string): string[] {
  const { found } = locateInstalled('auraed.cjs', 'supervisor/main.ts');
  const bundledEntry = found?.endsWith('.cjs') ? found : null;
  let devEntry: AuraedCommandInputs['devEntry'] = null;
  if (found !== null && bundledEntry === null) {
    try {
      const tsx = createRequire(inCheckout('package.json')).resolve('tsx');
      devEntry = { tsxLoader: pathToFileURL(tsx).href, mainTs: found };
    } catch {
      devEntry = null; // No tsx installed: only the bundle or an override can work.
    }
  }
  // AURAE_SNAPSHOT=off (e.g. on the kernel command line, which hands it to init's environment) starts auraed.cjs
  // without its snapshot: the bench compares both in one run, and it is the way around a snapshot that misbehaves.
  const snapshotBlob = bundledEntry && env.AURAE_SNAPSHOT !== 'off' ? locateInstalled('auraed.blob', null).found : null;
  return auraedCommand({ override: env.AURAE_AURAED_CMD, bundledEntry, snapshotBlob, devEntry, nodePath: process.execPath, configPath });
}
