// `aer pod exec POD [-c CONTAINER] [-i] -- COMMAND [ARGS...]`: a new process in a running container, like
// `docker exec` without a terminal. Its stdout and stderr go to ours as bytes (with back-pressure), our stdin goes
// to it with -i, and aer exits with its status (128+N for a signal, as a shell does).
import { constants } from 'node:os';
import { finished } from 'node:stream/promises';
import { type Command, InvalidArgumentError } from 'commander';
import type { ExecExit } from '../sdk';
import type { WithClient } from './types';

/** The byte streams exec connects (the process's by default; tests pass their own). */
export interface ExecStreams {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** The shell's status for an exit: the code, or 128+N for signal N (255 for a signal this host does not know). */
export function execExitStatus(exit: ExecExit): number {
  if (exit.signal !== null) {
    const n = (constants.signals as Record<string, number>)[exit.signal];
    return n === undefined ? 255 : 128 + n;
  }
  return exit.code ?? 255;
}

function envPair(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('expected NAME=VALUE');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

export interface PodExecOptions {
  container?: string;
  interactive?: boolean;
  env?: Record<string, string>;
  workdir?: string;
  user?: string;
}

export function registerPodExecCommand(pod: Command, withClient: WithClient, streams?: ExecStreams): void {
  pod
    .command('exec')
    .description('run a command in a running container: aer pod exec POD [-c CONTAINER] [-i] -- COMMAND [ARGS...]; exits with its status')
    .argument('<pod>', 'pod name')
    .argument('<command...>', 'the program and its arguments (after --)')
    .option('-c, --container <name>', 'which container (default: the only one)')
    .option('-i, --interactive', 'forward our stdin to the process (without it, it reads end of input)')
    .option('-e, --env <NAME=VALUE>', 'environment variable on top of the container\'s (repeatable)', envPair)
    .option('-w, --workdir <dir>', "working directory (absolute; default the container's)")
    .option('-u, --user <user>', "uid, uid:gid, name or name:group (default the container's)")
    .action(
      withClient(async (c, _output, podName: string, command: string[], o: PodExecOptions) => {
        const io = streams ?? { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
        const session = c.pods.execStream(podName, command, { container: o.container, env: o.env, workingDir: o.workdir, user: o.user, stdin: o.interactive === true });
        session.stdout.pipe(io.stdout, { end: false });
        session.stderr.pipe(io.stderr, { end: false });
        if (session.stdin) io.stdin.pipe(session.stdin);
        try {
          const exit = await session.exit;
          await Promise.all([finished(session.stdout), finished(session.stderr)]);
          return execExitStatus(exit);
        } finally {
          if (session.stdin) {
            io.stdin.unpipe(session.stdin);
            // Our stdin must not keep aer running once the process is gone.
            if (io.stdin === process.stdin) process.stdin.destroy();
          }
        }
      }),
    );
}
