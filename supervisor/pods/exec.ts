// Exec: a new process in a running container (PodService.Exec), like `docker exec` without a terminal.
//
// How. auraed runs `crun exec --process FILE --pid-file FILE` as its own child with pipes: crun joins the
// container's namespaces and cgroup, runs the process with the pipes as its stdio, waits for it and exits with its
// status (128+N for a signal death, as a shell reports it). The process spec is the container's own (its
// config.json `process`: capabilities, rlimits, no_new_privileges, environment, working directory, user) with the
// request's command and overrides, so an exec'd process has exactly the container's rights. crun's own errors go
// to a log file (--log), which tells "crun could not start it" from "it ran and failed".
//
// Streams. Output is forwarded as it comes, in chunks of at most 64 KiB, with back-pressure: when the caller's
// buffer is full both pipes are paused, so the process blocks on a full pipe instead of auraed buffering without
// bound. Stdin flows the other way with the same rule (the request stream is paused while the pipe is full).
// The exit is sent once the process exited and both pipes closed — or, after the exit, stayed silent for
// exitIdleMs (a background child of the process holding them open).
//
// VM pods. A VM-sandboxed pod's containers run in its child node: Exec there is relayed to the child's
// PodService/Exec for the same pod and container (vm-agent.ts childExecRelay), streams and exit passing through.
//
// Ending. Cancel, deadline or an auraed shutdown kill the process's process group (crun makes it a session
// leader; its children stay in its group unless they leave it) and crun. The caller's end of the request stream
// closes stdin only. Nothing of an exec is persisted: scratch files live in the pod's per-boot directory and are
// removed when the call ends.
import { type ChildProcess, spawn as nodeSpawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { AuraeError } from '../errors';
import type { ExecStart, PodServiceExecRequest, PodServiceExecResponse } from '../gen/aurae/pods/v0/pods';
import type { Logger } from '../log';
import { checkLabel, invalid, shown } from '../validation';
import { type ResolvedUser, resolveUser } from './container-config';
import { readImageFile } from './runtime';
import { POD_LIMITS, USER, validateAbsolute, validateArgv, validateEnv } from './spec';

export const EXEC_LIMITS = {
  /** Largest stdin chunk in one request. */
  stdinChunkBytes: 1024 * 1024,
  /** Largest output chunk in one response. */
  outputChunkBytes: 64 * 1024,
  /** After the process exited: how long its pipes may stay open and silent before the output is cut. */
  exitIdleMs: 1000,
} as const;

/** What the first request asks for, validated. */
export interface ExecInput {
  pod: string;
  /** null: the pod's only container. */
  container: string | null;
  command: string[];
  env: Record<string, string>;
  workingDir: string | null;
  user: string | null;
  stdin: boolean;
}

/** Validate the first request's `start`. Throws INVALID_ARGUMENT naming the field ("start.command", …). */
export function validateExecStart(start: ExecStart | undefined): ExecInput {
  if (!start) throw invalid('start', 'required in the first request: the pod, the container and the command');
  const pod = checkLabel('start.pod_name', start.podName);
  const container = (start.containerName ?? '') === '' ? null : checkLabel('start.container_name', start.containerName);
  const command = validateArgv('start.command', start.command ?? []);
  if (command.length === 0) throw invalid('start.command', 'required: the program and its arguments, e.g. ["sh", "-c", "echo hi"]');
  const workingDir = (start.workingDir ?? '') === '' ? null : validateAbsolute('start.working_dir', start.workingDir);
  const user = (start.user ?? '') === '' ? null : start.user;
  if (user !== null && (user.length > POD_LIMITS.userChars || !USER.test(user))) {
    throw invalid('start.user', `${shown(user)} is not a user: "uid", "uid:gid", "name" or "name:group"`);
  }
  return { pod, container, command, env: validateEnv('start.env', start.env ?? {}), workingDir, user, stdin: start.stdin === true };
}

/**
 * Exec into a VM-sandboxed pod (vm-agent.ts childExecRelay): relay the call, whose first request was `first`, to
 * the PodService/Exec of the pod's child node `vm`. Resolves when the child ended the call (the call is ended) or
 * the caller cancelled; rejects with an AuraeError (the child's status, naming its VM) otherwise.
 */
export type VmExecRelay = (vm: string, first: PodServiceExecRequest, call: ServerDuplexStream<PodServiceExecRequest, PodServiceExecResponse>) => Promise<void>;

/**
 * Whether a VM pod can be exec'd into (pure): its containers run in its child VM, which must be up. The child
 * checks the container itself (its names are the pod's own: vm-sandbox.ts childPodSpec).
 */
export function checkVmExec(pod: string, state: string): void {
  if (state === 'stopped' || state === 'failed') {
    throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}" is ${state}: its VM is not running, exec needs a running pod (aer pod inspect ${pod})`);
  }
}

/** Where and how to exec into one running container (PodRuntime.execTarget). */
export interface ExecTarget {
  pod: string;
  container: string;
  /** crun's container id. */
  containerId: string;
  crun: string;
  stateRoot: string;
  /** The container's bundle config.json: its `process` is the base of the exec'd one. */
  config: string;
  /** The container's root filesystem (its /etc/passwd and /etc/group name users). */
  rootfs: string;
  /** A per-boot directory of the pod for the exec's scratch files. */
  runDir: string;
}

/** What exec needs of the pod runtime (PodRuntime). */
export interface ExecTargets {
  get(pod: string): { sandbox: string; containers: { name: string; state: string }[] } | undefined;
  /** Paths and crun for a container that exists (execContainer checked it). */
  execTarget(pod: string, container: string): ExecTarget;
  /**
   * Where the pod's containers run elsewhere (a VM sandbox's run in its child node): the relay that serves the
   * whole call there (vm-sandbox.ts execRelay); null or absent: they run here, under this node's crun.
   */
  relay?(pod: string): ExecRelay | null;
}

/** An exec call served elsewhere: resolves when the call was ended there (or cancelled), rejects with its status. */
export type ExecRelay = (first: PodServiceExecRequest, call: RelayableExecCall) => Promise<void>;

/** The call as a relay uses it: ExecCall, and its deadline when it has one (grpc-js's getDeadline). */
export type RelayableExecCall = ExecCall & { getDeadline?(): Date | number };

/**
 * The container to exec into (pure): `wanted`, or the pod's only one. NOT_FOUND: no such pod or container;
 * INVALID_ARGUMENT: none named and the pod has several; FAILED_PRECONDITION: it is not running.
 */
export function execContainer(pod: string, status: ReturnType<ExecTargets['get']>, wanted: string | null): string {
  if (!status) throw new AuraeError('NOT_FOUND', `pod "${pod}" does not exist: see aer pod list for the pods there are`);
  if (status.sandbox !== 'cell') throw new AuraeError('UNIMPLEMENTED', `pod "${pod}": exec into a "${status.sandbox}" sandbox is not implemented yet`);
  const names = status.containers.map((c) => c.name);
  const c = wanted === null ? (status.containers.length === 1 ? status.containers[0] : undefined) : status.containers.find((x) => x.name === wanted);
  if (wanted === null && !c) throw invalid('start.container_name', `required: pod "${pod}" has ${names.length} containers (${names.join(', ')})`);
  if (!c) throw new AuraeError('NOT_FOUND', `pod "${pod}" has no container "${wanted}": it has ${names.join(', ')}`);
  if (c.state !== 'running') throw new AuraeError('FAILED_PRECONDITION', `pod "${pod}": container "${c.name}" is not running (${c.state}): exec needs a running container (aer pod inspect ${pod})`);
  return c.name;
}

/** An OCI runtime-spec `process` (the fields exec sets; the rest is kept as the container has it). */
export interface OciProcess {
  args: string[];
  env?: string[];
  cwd: string;
  user: { uid: number; gid: number; additionalGids?: number[]; [k: string]: unknown };
  terminal?: boolean;
  [k: string]: unknown;
}

/**
 * The exec'd process (pure): the container's process with the request's command, its env on top of the
 * container's (request wins, order kept), its working directory and user when given; never a terminal.
 */
export function execProcess(base: OciProcess, input: Pick<ExecInput, 'command' | 'env' | 'workingDir'>, user: ResolvedUser | null): OciProcess {
  const env = new Map<string, string>();
  for (const entry of base.env ?? []) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  for (const [k, v] of Object.entries(input.env)) env.set(k, v);
  const process: OciProcess = { ...base, terminal: false, args: [...input.command], env: [...env].map(([k, v]) => `${k}=${v}`), cwd: input.workingDir ?? base.cwd };
  delete process.consoleSize;
  if (user) process.user = { uid: user.uid, gid: user.gid, ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}) };
  return process;
}

/** The exec's scratch files. */
export interface ExecFiles {
  process: string;
  pid: string;
  log: string;
}

export function execFiles(runDir: string, id: string): ExecFiles {
  const dir = path.join(runDir, 'exec');
  return { process: path.join(dir, `${id}.json`), pid: path.join(dir, `${id}.pid`), log: path.join(dir, `${id}.log`) };
}

/** crun's argv for one exec (pure). */
export function crunExecArgs(target: Pick<ExecTarget, 'stateRoot' | 'containerId'>, files: ExecFiles): string[] {
  return ['--root', target.stateRoot, `--log=${files.log}`, 'exec', '--pid-file', files.pid, '--process', files.process, target.containerId];
}

const EMPTY = Buffer.alloc(0);

export type ExecExit = { code: number; signal?: undefined } | { signal: string; code?: undefined };

/** Signal number → name (the first name of a number: SIGABRT, not SIGIOT). */
const SIGNAL_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(constants.signals)) if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name);

/**
 * What crun's exit means (pure). `started`: crun wrote the pid file (the process was created). A crun that did not
 * start the process and failed: the program was not found (127) or not executable (126), as a shell reports them,
 * or anything else (the container stopped meanwhile, crun's state is gone): FAILED_PRECONDITION with crun's words.
 */
export function execOutcome(status: { code: number | null; signal: string | null }, started: boolean, crunLog: string, what: string): { exit: ExecExit } | { error: AuraeError } {
  if (status.signal) return { exit: { signal: status.signal } };
  const code = status.code ?? 1;
  if (!started && code !== 0) {
    const message = crunLog.trim().split('\n').filter(Boolean).pop()?.trim() ?? '';
    if (/executable file .* not found|exec.*No such file or directory/i.test(message)) return { exit: { code: 127 } };
    if (/exec.*(Permission denied|EACCES)/i.test(message)) return { exit: { code: 126 } };
    const why = message || `crun exited with ${code} and logged nothing`;
    return { error: new AuraeError('FAILED_PRECONDITION', `${what}: crun exec failed: ${why}: is the container still running? (aer pod inspect)`) };
  }
  const signal = code > 128 && code < 160 ? SIGNAL_NAMES.get(code - 128) : undefined;
  return { exit: signal ? { signal } : { code } };
}

/** The request stream as exec uses it (grpc-js's server duplex stream; tests pass a fake). */
export type ExecCall = Pick<
  ServerDuplexStream<PodServiceExecRequest, PodServiceExecResponse>,
  'cancelled' | 'write' | 'end' | 'pause' | 'resume' | 'on' | 'once' | 'off'
>;

export interface ExecDeps {
  targets: ExecTargets;
  log: Logger;
  /** Start crun (default: node's spawn with pipes, no terminal, its own session). */
  spawn?: (file: string, args: string[], opts: { stdin: boolean }) => ChildProcess;
  /** Kill the exec'd process (pid from crun's pid file) with its process group; default killExecProcess. */
  kill?: (pid: number) => void;
  exitIdleMs?: number;
  /** Scratch file ids (tests pin them). */
  newId?: () => string;
}

function defaultSpawn(file: string, args: string[], opts: { stdin: boolean }): ChildProcess {
  return nodeSpawn(file, args, { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true, env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
}

/**
 * SIGKILL the exec'd process and its process group. crun gives an exec'd process a session of its own (its group
 * is the session's), so the group is the process's own tree unless a child left it; never auraed's own group.
 */
export function killExecProcess(pid: number, readStat: (pid: number) => string | null = readProcStat, kill: (pid: number, sig: NodeJS.Signals) => void = process.kill): void {
  const group = processGroupOf(readStat(pid));
  const own = processGroupOf(readStat(process.pid));
  const targets = group !== null && group > 1 && group !== own ? [-group, pid] : [pid];
  for (const target of targets) {
    try {
      kill(target, 'SIGKILL');
    } catch {
      // ESRCH: already gone
    }
  }
}

function readProcStat(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
}

/** The process group from /proc/PID/stat ("pid (comm) state ppid pgrp …"; comm may hold spaces and parens). */
export function processGroupOf(stat: string | null): number | null {
  if (!stat) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const pgrp = Number(fields[2]);
  return Number.isInteger(pgrp) ? pgrp : null;
}

function readBaseProcess(config: string, what: string): OciProcess {
  let spec: { process?: OciProcess };
  try {
    spec = JSON.parse(fs.readFileSync(config, 'utf8')) as { process?: OciProcess };
  } catch (err) {
    throw new AuraeError('FAILED_PRECONDITION', `${what}: reading its bundle ${config} failed (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): restart the pod`);
  }
  if (!spec.process || !Array.isArray(spec.process.args) || typeof spec.process.cwd !== 'string' || typeof spec.process.user !== 'object') {
    throw new AuraeError('FAILED_PRECONDITION', `${what}: its bundle ${config} has no usable process: restart the pod`);
  }
  return spec.process;
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/**
 * Run one exec for `call` (its first request was `first`, already validated into `input`): resolve when the exit
 * was sent and the call ended, or when the call was cancelled (the process killed). Rejects with an AuraeError
 * (the call's status) before the start, or for a bad later request (the process is killed first).
 */
export async function runExec(deps: ExecDeps, input: ExecInput, first: PodServiceExecRequest, call: RelayableExecCall): Promise<void> {
  // A VM sandbox's containers: the whole call is served by the pod's child node (same pod and container names).
  const relay = deps.targets.relay?.(input.pod);
  if (relay) return relay(first, call);
  const target = deps.targets.execTarget(input.pod, execContainer(input.pod, deps.targets.get(input.pod), input.container));
  const what = `pod "${target.pod}": container "${target.container}"`;
  const base = readBaseProcess(target.config, what);
  const user = input.user === null ? null : resolveUser(input.user, { passwd: readImageFile(target.rootfs, 'passwd'), group: readImageFile(target.rootfs, 'group') }, what);
  const files = execFiles(target.runDir, deps.newId?.() ?? randomBytes(6).toString('hex'));
  fs.mkdirSync(path.dirname(files.process), { recursive: true, mode: 0o700 });
  fs.writeFileSync(files.process, JSON.stringify(execProcess(base, input, user)), { mode: 0o600 });
  const log = deps.log.child({ pod: target.pod, container: target.container });
  try {
    if (call.cancelled) return;
    log.info('exec', { program: input.command[0], stdin: input.stdin });
    await pump(deps, input, first, call, target, files, what, log);
  } finally {
    for (const f of Object.values(files)) fs.rmSync(f, { force: true });
  }
}

function pump(deps: ExecDeps, input: ExecInput, first: PodServiceExecRequest, call: ExecCall, target: ExecTarget, files: ExecFiles, what: string, log: Logger): Promise<void> {
  const spawn = deps.spawn ?? defaultSpawn;
  const killProcess = deps.kill ?? ((pid: number) => killExecProcess(pid));
  const exitIdleMs = deps.exitIdleMs ?? EXEC_LIMITS.exitIdleMs;

  return new Promise<void>((resolve, reject) => {
    const child = spawn(target.crun, crunExecArgs(target, files), { stdin: input.stdin });
    const outputs: [NodeJS.ReadableStream & { destroy(): void }, 'stdout' | 'stderr'][] = [
      [child.stdout!, 'stdout'],
      [child.stderr!, 'stderr'],
    ];
    const stdin = input.stdin ? child.stdin : null;
    let open = outputs.length;
    let paused = false;
    let exited: { code: number | null; signal: string | null } | null = null;
    let settled = false;
    let killed = false;
    let stdinClosed = stdin === null;
    let requestsPaused = false;
    let idleTimer: NodeJS.Timeout | null = null;

    const startedPid = (): number | null => {
      const pid = Number(readOr(files.pid, '').trim());
      return Number.isInteger(pid) && pid > 1 ? pid : null;
    };

    const clearIdle = () => {
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = null;
    };
    // After the exit only: pipes silent for exitIdleMs (not counting time paused by the caller) are cut.
    const armIdle = () => {
      clearIdle();
      if (exited === null || paused || open === 0) return;
      idleTimer = setTimeout(() => {
        log.info('exec: output still open after the exit: cutting it (a background process holds it)', { idleMs: exitIdleMs });
        for (const [s] of outputs) s.destroy();
      }, exitIdleMs);
      idleTimer.unref?.();
    };

    const cleanup = () => {
      clearIdle();
      call.off('data', onRequest);
      call.off('end', closeStdin);
      call.off('cancelled', onCancelled);
    };
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      kill();
      cleanup();
      reject(err);
    };
    const kill = () => {
      if (killed) return;
      killed = true;
      const pid = startedPid();
      if (pid !== null) killProcess(pid);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      for (const [s] of outputs) s.destroy();
      stdin?.destroy();
    };
    const finish = () => {
      if (settled || exited === null || open > 0) return;
      settled = true;
      cleanup();
      if (call.cancelled || killed) return resolve();
      const outcome = execOutcome(exited, startedPid() !== null, readOr(files.log, ''), what);
      if ('error' in outcome) return reject(outcome.error);
      log.info('exec exited', { ...outcome.exit });
      call.write({ stdout: EMPTY, stderr: EMPTY, exit: outcome.exit });
      call.end();
      resolve();
    };

    // Output → caller, paused while the caller's buffer is full.
    const onDrain = () => {
      paused = false;
      for (const [s] of outputs) s.resume();
      armIdle();
    };
    for (const [stream, name] of outputs) {
      stream.on('data', (chunk: Buffer) => {
        if (settled || call.cancelled) return;
        let full = false;
        for (let at = 0; at < chunk.length; at += EXEC_LIMITS.outputChunkBytes) {
          const part = chunk.subarray(at, at + EXEC_LIMITS.outputChunkBytes);
          if (!call.write(name === 'stdout' ? { stdout: part, stderr: EMPTY } : { stdout: EMPTY, stderr: part })) full = true;
        }
        if (full && !paused) {
          paused = true;
          for (const [s] of outputs) s.pause();
          call.once('drain', onDrain);
        }
        armIdle();
      });
      stream.on('error', () => {}); // destroyed by kill() or the idle cut: 'close' follows
      stream.on('close', () => {
        open--;
        if (open === 0) clearIdle();
        finish();
      });
    }

    // Caller → stdin, the request stream paused while the pipe is full.
    stdin?.on('error', () => {
      stdinClosed = true; // EPIPE: the process closed its stdin or exited; later bytes are dropped
    });
    function closeStdin(): void {
      if (stdinClosed) return;
      stdinClosed = true;
      stdin?.end();
    }
    function onRequest(request: PodServiceExecRequest): void {
      if (settled) return;
      if (request !== first && request.start) return fail(invalid('start', 'set in the first request only: later requests carry stdin and close_stdin'));
      const bytes = request.stdin;
      if (bytes && bytes.length > 0) {
        if (!input.stdin) return fail(invalid('stdin', 'the call did not attach stdin: set start.stdin in the first request'));
        if (bytes.length > EXEC_LIMITS.stdinChunkBytes) return fail(invalid('stdin', `at most ${EXEC_LIMITS.stdinChunkBytes} bytes per request (got ${bytes.length})`));
        if (!stdinClosed && stdin && !stdin.write(bytes) && !requestsPaused) {
          requestsPaused = true;
          call.pause();
          stdin.once('drain', () => {
            requestsPaused = false;
            call.resume();
          });
        }
      }
      if (request.closeStdin) closeStdin();
    }
    function onCancelled(): void {
      log.info('exec cancelled by the caller: killing the process');
      kill();
      finish();
    }

    child.on('error', (err) => {
      fail(new AuraeError('FAILED_PRECONDITION', `${what}: starting crun (${target.crun}) failed: ${(err as NodeJS.ErrnoException).code ?? err.message}: is crun installed?`, { cause: err }));
    });
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      armIdle();
      finish();
    });
    call.on('cancelled', onCancelled);
    onRequest(first);
    call.on('data', onRequest);
    call.on('end', closeStdin);
    if (!requestsPaused) call.resume();
  });
}
