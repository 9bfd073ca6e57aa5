// Test fixture: run the real auraed on the host (supervisor/daemon/host-node.ts) and the aer CLI as a process.
// Used by the host tests of supervisor/ and aer/. Not part of auraed.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../config/node-paths';

export {
  type AuraedExit as Exit,
  launchAuraed,
  type PreparedNode,
  prepareHostNode as prepareTestNode,
  type RunningAuraed as RunningTestAuraed,
} from './host-node';
export { freeLoopbackPort as freePort } from '../vms';

export { REPO_ROOT };

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run the aer CLI as a separate process (from source through tsx, or through the bin launcher) with `env` on top
 * of this process's environment; AURAE_ADDRESS is cleared unless `env` sets it.
 */
export function runAer(args: string[], env: Record<string, string>, options: { launcher?: boolean } = {}): Promise<CliResult> {
  const argv = options.launcher ? [join(REPO_ROOT, 'aer/bin/aer.mjs'), ...args] : ['--import', 'tsx', join(REPO_ROOT, 'aer/cli.ts'), ...args];
  return new Promise((resolve) => {
    execFile(process.execPath, argv, { cwd: REPO_ROOT, env: { ...process.env, AURAE_ADDRESS: '', ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
