// Exec with a terminal (CRI Exec with tty=true; `kubectl exec -t`, `crictl exec -it`). Like pods' exec.ts (the same
// process spec: the container's own, with the command), but the process gets a pty: auraed listens on a console
// socket in the pod's per-boot directory and runs `crun exec --console-socket SOCK` with `process.terminal`; crun
// creates the pty in the container and sends its master here (terminal.ts). The master carries everything: the
// client's stdin is written to it, what it reads goes to the client's stdout (a terminal has one output: stderr is
// part of it), resize messages set its size (TIOCSWINSZ: the process gets SIGWINCH). crun waits for the process and
// exits with its status, which is the exit code reported.
//
// End. The output ends when the last holder of the slave closed it (the master reads EIO); after the process exited
// a background child still holding it is cut after exitIdleMs of silence, as exec.ts does. The client closing stdin
// sends the terminal's end-of-file character (^D): a pty cannot be half-closed. The client leaving kills the
// process's group and crun.
import { type ChildProcess, spawn as nodeSpawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import { EXEC_LIMITS, type ExecTarget, type ExecTargets, execContainer, execFiles, execOutcome, execProcess, killExecProcess, type OciProcess } from '../pods';
import type { TerminalSize } from './streaming';
import { type ConsoleSocket, listenConsoleSocket, type Pty, type TerminalSyscalls } from './terminal';

/** crun's argv for an exec with a terminal (pure): the process file says terminal: true. */
export function crunTtyExecArgs(target: Pick<ExecTarget, 'stateRoot' | 'containerId'>, files: { process: string; pid: string; log: string; console: string }): string[] {
  return ['--root', target.stateRoot, `--log=${files.log}`, 'exec', '--console-socket', files.console, '--pid-file', files.pid, '--process', files.process, target.containerId];
}

/** The exec'd process with a terminal (pure): exec.ts's process, terminal on, TERM set unless the image sets it. */
export function ttyExecProcess(base: OciProcess, command: string[], size: TerminalSize | null): OciProcess {
  const p = execProcess(base, { command, env: {}, workingDir: null }, null);
  p.terminal = true;
  if (!(p.env ?? []).some((e) => e.startsWith('TERM='))) p.env = [...(p.env ?? []), 'TERM=xterm'];
  if (size) p.consoleSize = { height: size.height, width: size.width };
  return p;
}

export interface TtyExecRequest {
  pod: string;
  container: string;
  cmd: string[];
  stdin: Readable | null;
  stdout: Writable | null;
  resize: EventEmitter;
  signal?: AbortSignal;
}

export interface TtyExecDeps {
  targets: ExecTargets;
  sys: () => TerminalSyscalls;
  log: Logger;
  /** Start crun (default: node's spawn, its stdio ignored but for crun's own messages on stderr). */
  spawn?: (file: string, args: string[]) => ChildProcess;
  kill?: (pid: number) => void;
  exitIdleMs?: number;
  newId?: () => string;
}

function readBase(config: string, what: string): OciProcess {
  try {
    const spec = JSON.parse(fs.readFileSync(config, 'utf8')) as { process?: OciProcess };
    if (spec.process && Array.isArray(spec.process.args)) return spec.process;
  } catch (err) {
    throw new AuraeError('FAILED_PRECONDITION', `${what}: reading its bundle ${config} failed (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): restart the pod`);
  }
  throw new AuraeError('FAILED_PRECONDITION', `${what}: its bundle ${config} has no usable process: restart the pod`);
}

const readOr = (file: string): string => {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

/** Run cmd in the container on a new terminal; resolve with its exit code (137 when the client left first). */
export async function runTtyExec(deps: TtyExecDeps, req: TtyExecRequest): Promise<{ exitCode: number }> {
  const target = deps.targets.execTarget(req.pod, execContainer(req.pod, deps.targets.get(req.pod), req.container));
  const what = `pod "${target.pod}": container "${target.container}"`;
  if (req.cmd.length === 0) throw new AuraeError('INVALID_ARGUMENT', 'cmd: required: the program and its arguments, e.g. ["sh"]');
  let size: TerminalSize | null = null;
  const onResize = (s: TerminalSize) => {
    size = s;
  };
  req.resize.on('resize', onResize);
  const base = readBase(target.config, what);
  const id = deps.newId?.() ?? randomBytes(6).toString('hex');
  const files = { ...execFiles(target.runDir, id), console: path.join(target.runDir, 'exec', `${id}.console`) };
  fs.mkdirSync(path.dirname(files.process), { recursive: true, mode: 0o700 });
  fs.writeFileSync(files.process, JSON.stringify(ttyExecProcess(base, req.cmd, size)), { mode: 0o600 });
  const log = deps.log.child({ pod: target.pod, container: target.container });
  let pty: Pty | null = null;
  let ptyWaiters: ((p: Pty) => void)[] = [];
  let socket: ConsoleSocket | null = null;
  try {
    socket = await listenConsoleSocket(files.console, deps.sys(), (p) => {
      if (pty) return p.close(); // one terminal per exec
      pty = p;
      for (const w of ptyWaiters) w(p);
      ptyWaiters = [];
    }, log);
    if (req.signal?.aborted) return { exitCode: 137 };
    log.info('exec', { program: req.cmd[0], tty: true, stdin: req.stdin !== null });
    return await pumpTty(deps, req, target, files, what, log, () => pty, (w) => ptyWaiters.push(w), () => size);
  } finally {
    req.resize.off('resize', onResize);
    await socket?.close();
    (pty as Pty | null)?.close();
    for (const f of Object.values(files)) fs.rmSync(f, { force: true });
  }
}

function pumpTty(
  deps: TtyExecDeps,
  req: TtyExecRequest,
  target: ExecTarget,
  files: { process: string; pid: string; log: string; console: string },
  what: string,
  log: Logger,
  currentPty: () => Pty | null,
  onPty: (w: (p: Pty) => void) => void,
  lastSize: () => TerminalSize | null,
): Promise<{ exitCode: number }> {
  const spawn = deps.spawn ?? ((file: string, args: string[]) => nodeSpawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } }));
  const killProcess = deps.kill ?? ((pid: number) => killExecProcess(pid));
  const exitIdleMs = deps.exitIdleMs ?? EXEC_LIMITS.exitIdleMs;

  return new Promise((resolve, reject) => {
    const child = spawn(target.crun, crunTtyExecArgs(target, files));
    let crunStderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      if (crunStderr.length < 4096) crunStderr += d;
    });
    child.stderr?.on('error', () => {});
    let exited: { code: number | null; signal: string | null } | null = null;
    let outputDone = false;
    let settled = false;
    let killed = false;
    let idle: NodeJS.Timeout | null = null;
    const cleanups: (() => void)[] = [];

    const startedPid = (): number | null => {
      const pid = Number(readOr(files.pid).trim());
      return Number.isInteger(pid) && pid > 1 ? pid : null;
    };
    const kill = () => {
      if (killed) return;
      killed = true;
      const pid = startedPid();
      if (pid !== null) killProcess(pid);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      currentPty()?.close();
    };
    const clearIdle = () => {
      if (idle) clearTimeout(idle);
      idle = null;
    };
    const armIdle = () => {
      clearIdle();
      if (exited === null || outputDone) return;
      idle = setTimeout(() => {
        log.info('exec: the terminal is still open after the exit: cutting it (a background process holds it)', { idleMs: exitIdleMs });
        outputDone = true;
        currentPty()?.close();
        finish();
      }, exitIdleMs);
      idle.unref?.();
    };
    const finish = () => {
      if (settled || exited === null || !outputDone) return;
      settled = true;
      clearIdle();
      for (const c of cleanups) c();
      if (killed) return resolve({ exitCode: 137 });
      const outcome = execOutcome(exited, startedPid() !== null, readOr(files.log) || crunStderr, what);
      if ('error' in outcome) return reject(outcome.error);
      log.info('exec exited', { ...outcome.exit });
      const exit = outcome.exit;
      resolve({ exitCode: exit.code !== undefined ? exit.code : 128 + (signalNumber(exit.signal) ?? 9) });
    };
    const gone = () => {
      if (settled) return;
      log.info('exec cancelled by the client: killing the process');
      kill();
      outputDone = true;
      if (exited === null) exited = { code: null, signal: 'SIGKILL' };
      finish();
    };
    if (req.signal) {
      req.signal.addEventListener('abort', gone, { once: true });
      cleanups.push(() => req.signal?.removeEventListener('abort', gone));
    }
    req.stdout?.once('close', gone);
    cleanups.push(() => req.stdout?.off('close', gone));

    onPty((pty) => {
      clearIdle();
      if (settled) return;
      const size = lastSize();
      if (size) pty.resize(size, log);
      const onResize = (s: TerminalSize) => pty.resize(s, log);
      req.resize.on('resize', onResize);
      cleanups.push(() => req.resize.off('resize', onResize));
      // Terminal → client, the terminal paused while the client is behind.
      pty.on('data', (chunk: Buffer) => {
        armIdle();
        const out = req.stdout;
        if (!out || out.destroyed || out.writableEnded) return;
        if (!out.write(chunk)) {
          pty.pause();
          out.once('drain', () => pty.resume());
        }
      });
      pty.once('end', () => {
        outputDone = true;
        finish();
      });
      // Client → terminal, the client's stream paused while the terminal is full.
      const stdin = req.stdin;
      if (stdin) {
        const onData = (chunk: Buffer) => {
          if (!pty.write(chunk)) {
            stdin.pause();
            pty.once('drain', () => stdin.resume());
          }
        };
        const onEnd = () => pty.write('\x04');
        stdin.on('data', onData);
        stdin.once('end', onEnd);
        cleanups.push(() => {
          stdin.off('data', onData);
          stdin.off('end', onEnd);
        });
      }
    });

    child.on('error', (err) => {
      if (settled) return;
      settled = true;
      kill();
      for (const c of cleanups) c();
      reject(new AuraeError('FAILED_PRECONDITION', `${what}: starting crun (${target.crun}) failed: ${(err as NodeJS.ErrnoException).code ?? err.message}: is crun installed?`, { cause: err }));
    });
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      if (currentPty() === null) {
        // crun failed before a terminal was made (no such container, crun error): no output to wait for. Or the
        // process ran and the descriptor is still on its way here (a quick command): wait for it, bounded.
        if (startedPid() === null) outputDone = true;
        else {
          idle = setTimeout(() => {
            outputDone = true;
            finish();
          }, exitIdleMs);
          return;
        }
      }
      armIdle();
      finish();
    });
  });
}

function signalNumber(name: string | undefined): number | undefined {
  return name ? (constants.signals as Record<string, number>)[name] : undefined;
}
