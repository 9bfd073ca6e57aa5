// `aer exec CELL [--name NAME] -- PROGRAM [ARGS...]`: run a program in a cell like a local command — its
// stdout/stderr stream to ours, and aer exits with its exit code (128+n for a signal, as a shell does).
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import type { AuraeClient, ObservedEvent } from '../sdk';
import type { Print, WithClient } from './types';
import { executableSpecFromOptions } from './cells';

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };

/** The shell's exit status for an exit code or a signal name. */
export function shellStatus(code: number | null, signal: string | null): number {
  if (signal) return 128 + (SIGNALS[signal] ?? 0);
  return code ?? 1;
}

export interface ExecResult {
  executable: string;
  code: number | null;
  signal: string | null;
  oomKilled: boolean;
}

/**
 * Start `argv` as a new executable in `cell`, stream its output through `onLine` until it exits. No line is
 * missed: the log stream asks for every kept line and then follows; no exit is missed: the event stream replays
 * auraed's event history, and events from before the start (a reused name) are skipped by sequence number.
 */
export async function execInCell(
  c: AuraeClient,
  cell: string,
  name: string,
  spec: Parameters<typeof executableSpecFromOptions>,
  onLine: (channel: string, line: string) => void,
): Promise<ExecResult> {
  const abort = new AbortController();
  const events = c.observe.events({ follow: true, cell, signal: abort.signal })[Symbol.asyncIterator]();
  const logsDone = (async () => {
    for await (const entry of c.observe.logs(cell, name, { follow: true, signal: abort.signal })) onLine(entry.channel, entry.line);
  })().catch(() => {});
  try {
    const seen = c.observe.events({ cell });
    let since = 0;
    for await (const e of seen) since = Math.max(since, e.seq);
    const { pid } = await c.cells.start(cell, executableSpecFromOptions(...spec));
    void pid;
    for (;;) {
      const next = await events.next();
      if (next.done) throw new Error(`aer exec: the event stream ended before ${cell}/${name} exited`);
      const e: ObservedEvent = next.value;
      if (e.seq <= since || e.kind !== 'executable_exited' || e.cell !== cell || e.executable !== name) continue;
      // Let the last lines arrive: the exit event can overtake the log stream.
      await new Promise((r) => setTimeout(r, 300));
      const status = (await c.cells.get(cell)).executables.find((x) => x.name === name)?.lastExit;
      return { executable: name, code: e.code, signal: e.signal, oomKilled: status?.oomKilled ?? false };
    }
  } finally {
    abort.abort();
    await events.return?.();
    await logsDone;
  }
}

export function registerExecCommand(program: Command, withClient: WithClient, print: Print, io: { out(t: string): void; err(t: string): void }): void {
  program
    .command('exec')
    .description('run a program in a cell, stream its output, exit with its status: aer exec CELL -- PROGRAM [ARGS...]')
    .argument('<cell>', 'cell name')
    .argument('[argv...]', 'the program and its arguments (after --)')
    .option('--name <name>', 'executable name (default exec-<random>)')
    .option('--shell <command>', 'run COMMAND with /bin/sh -c instead')
    .action(
      withClient(async (c, output, cell: string, argv: string[], options: { name?: string; shell?: string }) => {
        const name = options.name ?? `exec-${randomBytes(3).toString('hex')}`;
        const result = await execInCell(c, cell, name, [name, argv, { shell: options.shell, restart: 'never' }], (channel, line) =>
          output === 'json' ? io.out(JSON.stringify({ channel, line })) : channel === 'stderr' ? io.err(line) : io.out(line),
        );
        if (output === 'json') print(output, result, '');
        else if (result.oomKilled) io.err(`aer exec: ${cell}/${name} was killed by the OOM killer (memory.max of the cell)`);
        return shellStatus(result.code, result.signal);
      }),
    );
}
