// How an executable is started: the aurae-exec command line (pure) and where the helper binary is found.
import { existsSync } from 'node:fs';
import { locateInstalled } from '../config/node-paths';
import { AuraeError } from '../errors';
import { effectiveArgv, effectiveEnv, type ExecutableSpec } from './spec';

export interface IsolationSpec {
  pid: boolean;
  mount: boolean;
  uts: boolean;
  ipc: boolean;
  network: boolean;
}

export interface LaunchInput {
  /** Path of aurae-exec. */
  helper: string;
  /** The executable's leaf cgroup directory; null runs without one (`--cgroup none`, host tests only). */
  cgroupDir: string | null;
  isolation: IsolationSpec;
  /** Hostname in a new UTS namespace (the last label of the cell name). */
  hostname: string;
  spec: ExecutableSpec;
}

export interface LaunchPlan {
  file: string;
  args: string[];
  /** The program's whole environment (the helper passes it on unchanged). */
  env: Record<string, string>;
}

/** The helper reports setup failures on this descriptor (close-on-exec: EOF without data = executed). */
export const STATUS_FD = 3;

export function launchPlan(input: LaunchInput): LaunchPlan {
  const { spec, isolation } = input;
  const args = ['--cgroup', input.cgroupDir ?? 'none'];
  if (isolation.pid) args.push('--pid');
  if (isolation.mount) args.push('--mount');
  if (isolation.uts) args.push('--uts', input.hostname);
  if (isolation.ipc) args.push('--ipc');
  if (isolation.network) args.push('--net');
  if (spec.uid !== null) args.push('--uid', String(spec.uid));
  if (spec.gid !== null) args.push('--gid', String(spec.gid));
  args.push('--cwd', spec.cwd, '--status-fd', String(STATUS_FD), '--', ...effectiveArgv(spec));
  return { file: input.helper, args, env: effectiveEnv(spec) };
}

/**
 * Where aurae-exec is: env AURAE_EXEC_HELPER; beside the running bundle (/usr/lib/aurae/aurae-exec in the
 * image); native/build/aurae-exec in a checkout. Throws FAILED_PRECONDITION naming what was tried.
 */
export function findExecHelper(env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = existsSync): string {
  const { candidates, found } = locateInstalled('aurae-exec', 'native/build/aurae-exec', { override: env.AURAE_EXEC_HELPER, exists });
  if (found) return found;
  throw new AuraeError(
    'FAILED_PRECONDITION',
    `the executable launcher aurae-exec was not found (looked in ${candidates.join(', ')}): build it with \`npx tsx native/build.ts\` or set AURAE_EXEC_HELPER`,
  );
}
