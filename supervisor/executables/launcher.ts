// The process side of an executable: spawn aurae-exec with the plan, split its stdout/stderr into lines, read
// the status descriptor, report the exit. An adapter (ProcessLauncher) so the supervisor is unit-tested with
// a fake.
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { AuraeError } from '../errors';
import { LINE_LIMITS, LineSplitter } from '../log';
import type { LogStream } from '../observe/types';
import type { LaunchPlan } from './launch-plan';

export interface ProcessExit {
  code: number | null;
  signal: string | null;
}

/**
 * Whether the program was executed. `pid`, when aurae-exec names one, is the executable's process in its cell
 * (the program, or its pid namespace's init), a child of aurae-exec (the clone3 path); without it the launched
 * process itself is (it became the program, or the init's parent in the cell).
 */
export type ExecOutcome = { executed: true; pid?: number } | { executed: false; message: string };

export interface LaunchedProcess {
  /** The launched process (aurae-exec): its exit is the executable's. */
  pid: number;
  /** Resolves once the program was executed, or with the helper's message when its setup failed. */
  outcome: Promise<ExecOutcome>;
  /** Resolves when the process (aurae-exec or the program it became) exited and its output was read (see OUTPUT_DRAIN_MS). */
  exited: Promise<ProcessExit>;
}

/** A line's pieces, lossless (LineSplitter onPiece): `partial` when the next piece continues the line. */
export type OnOutputPiece = (stream: LogStream, piece: string, partial: boolean) => void;

export interface ProcessLauncher {
  /**
   * Spawn; rejects (FAILED_PRECONDITION) when the helper cannot be spawned at all. `onLine` gets each line (a
   * longer one cut and marked); `onPiece`, when given, the same output losslessly in pieces (CRI log files).
   */
  launch(plan: LaunchPlan, onLine: (stream: LogStream, line: string) => void, onPiece?: OnOutputPiece): Promise<LaunchedProcess>;
}

/**
 * How long an exit waits for the output pipes to drain. They end when the last writer closes them; a process the
 * program left behind may hold them open for ever, and its exit must not wait on that.
 */
export const OUTPUT_DRAIN_MS = 1000;

/** Split `stream` into lines; resolves when it ended (or failed: a read error only means the output is cut). */
function pipeLines(stream: Readable | null, onLine: (line: string) => void, onPiece?: (piece: string, partial: boolean) => void): Promise<void> {
  if (!stream) return Promise.resolve();
  // A workload may write anything: lines are capped (a longer one is cut and marked, see log/line-splitter.ts).
  const splitter = new LineSplitter(onLine, { maxLineBytes: LINE_LIMITS.outputLineBytes, ...(onPiece ? { onPiece } : {}) });
  return new Promise((drained) => {
    const end = () => {
      splitter.end();
      drained();
    };
    stream.on('data', (chunk: Buffer) => splitter.push(chunk));
    stream.once('end', end);
    stream.once('error', end);
    stream.once('close', drained);
  });
}

/** `exit`, reported once `output` drained, or OUTPUT_DRAIN_MS after the exit if something still holds the pipes. */
async function afterDrain(exit: Promise<ProcessExit>, output: Promise<unknown>): Promise<ProcessExit> {
  const result = await exit;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([output, new Promise<void>((res) => (timer = setTimeout(res, OUTPUT_DRAIN_MS)))]);
  clearTimeout(timer);
  return result;
}

/**
 * What aurae-exec wrote on its status descriptor (launch-plan.ts STATUS_FD) until EOF: a line "pid N" names the
 * executable's process in the cell; any other text is why the setup failed; nothing else means executed.
 */
export function parseExecStatus(text: string): ExecOutcome {
  let pid: number | undefined;
  const failure: string[] = [];
  for (const line of text.split('\n')) {
    const named = /^pid ([1-9]\d{0,9})$/.exec(line);
    if (named && pid === undefined) pid = Number(named[1]);
    else if (line.trim() !== '') failure.push(line);
  }
  if (failure.length) return { executed: false, message: failure.join('\n').trim() };
  return pid === undefined ? { executed: true } : { executed: true, pid };
}

/** The real launcher: child_process.spawn, detached (own session: no signals from auraed's terminal). */
export const spawnLauncher: ProcessLauncher = {
  launch(plan, onLine, onPiece) {
    return new Promise((resolve, reject) => {
      const child = spawn(plan.file, plan.args, {
        env: plan.env,
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        detached: true,
      });
      const exit = new Promise<ProcessExit>((res) => child.once('exit', (code, signal) => res({ code, signal })));
      child.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          new AuraeError(
            'FAILED_PRECONDITION',
            `spawning the executable launcher ${plan.file} failed (${err.code ?? err.message}): is aurae-exec installed (the image has /usr/lib/aurae/aurae-exec)?`,
          ),
        );
      });
      child.once('spawn', () => {
        const output = Promise.all([
          pipeLines(child.stdout, (line) => onLine('stdout', line), onPiece && ((piece, partial) => onPiece('stdout', piece, partial))),
          pipeLines(child.stderr, (line) => onLine('stderr', line), onPiece && ((piece, partial) => onPiece('stderr', piece, partial))),
        ]);
        // The exit is reported after the program's last lines, so a log reader or an attached client sees them all.
        const exited = afterDrain(exit, output);
        const status = child.stdio[3] as Readable | null;
        const outcome = new Promise<ExecOutcome>((res) => {
          if (!status) return res({ executed: true });
          let text = '';
          status.setEncoding('utf8');
          status.on('data', (d: string) => {
            if (text.length < 4096) text += d;
          });
          const done = () => res(parseExecStatus(text));
          status.once('end', done);
          status.once('close', done);
          status.once('error', done);
        });
        resolve({ pid: child.pid ?? 0, outcome, exited });
      });
    });
  },
};
