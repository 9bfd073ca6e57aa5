// Exec for the CRI, over the pods' exec machinery (supervisor/pods exec.ts: `crun exec` with the container's own
// process spec, back-pressure, process-group kill). runExec speaks to a gRPC duplex call; here that call is an
// adapter: ExecSync collects the output in memory (capped, as the CRI says) with a deadline; the streaming backend
// (what D's streaming server calls for Exec and PortForward) connects it to node streams, and port-forward is a TCP
// connection to the pod's address.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { constants } from 'node:os';
import type { Duplex, Readable, Writable } from 'node:stream';
import { status as grpcStatus } from '@grpc/grpc-js';
import { AuraeError } from '../errors';
import type { PodServiceExecRequest, PodServiceExecResponse } from '../gen/aurae/pods/v0/pods';
import { ContainerEventType, type ContainerEventResponse } from '../gen/runtime/v1/api';
import type { Logger } from '../log';
import { type ExecDeps, runExec } from '../pods';
import type { CriRuntime } from './cri-runtime';
import type { CriPods } from './pods-contract';
import { CriStatusError } from './rpc';
import type { ContainerStdio } from './container-stdio';
import type { TerminalSyscalls } from './terminal';
import { runTtyExec } from './tty-exec';

/** Each of ExecSync's outputs is capped at 16 MiB; the rest is dropped without an error (the CRI's rule). */
export const EXEC_SYNC_MAX_OUTPUT = 16 * 1024 * 1024;

export type CriExecAdapters = Partial<Pick<ExecDeps, 'spawn' | 'kill' | 'exitIdleMs' | 'newId'>>;

type ExecInput = Parameters<typeof runExec>[1];
type ExecCall = Parameters<typeof runExec>[3];


/** The exit as a number, 128+N for a signal death (what ExecSync's exit_code and the v4 protocol carry). */
export function exitCodeOf(exit: { code?: number; signal?: string } | undefined): number {
  if (!exit) return 1;
  if (exit.code !== undefined) return exit.code;
  // Looked up here, not at module level: node:os is loaded on first use (auraed's startup snapshot).
  const signals = constants.signals as Record<string, number>;
  return exit.signal !== undefined && signals[exit.signal] !== undefined ? 128 + signals[exit.signal]! : 1;
}

/** A runExec call whose output goes to `sink`; the caller drives 'cancelled', 'data' and 'end'. */
class ExecCallAdapter extends EventEmitter {
  cancelled = false;
  exit: { code?: number; signal?: string } | undefined;
  constructor(private readonly sink: (msg: PodServiceExecResponse) => boolean) {
    super();
  }
  write(msg: PodServiceExecResponse): boolean {
    if (msg.exit) {
      this.exit = msg.exit;
      return true;
    }
    return this.sink(msg);
  }
  end(): void {}
  pause(): this {
    this.emit('x-pause');
    return this;
  }
  resume(): this {
    this.emit('x-resume');
    return this;
  }
  /** No deadline of its own (ExecSync's timeout cancels it): a relayed call has none either. */
  getDeadline(): number {
    return Infinity;
  }
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancelled');
  }
}

function execInput(pod: string, container: string, cmd: string[], stdin: boolean): ExecInput {
  if (cmd.length === 0) throw new AuraeError('INVALID_ARGUMENT', 'cmd: required: the program and its arguments, e.g. ["sh", "-c", "echo hi"]');
  if (cmd.some((a) => a.includes('\0'))) throw new AuraeError('INVALID_ARGUMENT', 'cmd: NUL characters are not allowed');
  return { pod, container, command: [...cmd], env: {}, workingDir: null, user: null, stdin };
}

function firstRequest(input: ExecInput): PodServiceExecRequest {
  return { start: { podName: input.pod, containerName: input.container ?? '', command: input.command, env: {}, workingDir: '', user: '', stdin: input.stdin }, stdin: Buffer.alloc(0), closeStdin: false };
}

/** ExecSync, and the streaming server's backend (exec, attach, port-forward); `signal` aborts when the client leaves. */
export interface CriExec {
  execSync(containerId: string, cmd: string[], timeoutSeconds: bigint): Promise<{ stdout: Buffer; stderr: Buffer; exitCode: number }>;
  exec(req: { containerId: string; cmd: string[]; tty: boolean; stdin: Readable | null; stdout: Writable | null; stderr: Writable | null; resize: EventEmitter; signal?: AbortSignal }): Promise<{ exitCode: number }>;
  attach(req: { containerId: string; tty: boolean; stdin: Readable | null; stdout: Writable | null; stderr: Writable | null; resize: EventEmitter; signal: AbortSignal }): Promise<void>;
  portForward(req: { podSandboxId: string; port: number; stream: Duplex; signal?: AbortSignal }): Promise<void>;
}

export interface CriExecOptions {
  /** The native addon's terminal calls (loadSyscalls), loaded on first use; absent: Exec with tty answers UNIMPLEMENTED. */
  terminals?: () => TerminalSyscalls;
  /** Containers' terminals and stdin (Attach); absent: Attach answers UNIMPLEMENTED. */
  stdio?: ContainerStdio;
}

/** What exec needs of the pods runtime: its containers here (execTarget), and the relay for those elsewhere. */
export type CriExecPods = { execTarget: ExecDeps['targets']['execTarget']; get: ExecDeps['targets']['get'] } & Partial<Pick<CriPods, 'execRelay' | 'openPort'>>;

/**
 * Pipe `conn` (a connection made elsewhere) and the client's `stream` both ways until either closes (or `signal`
 * aborts). Rejects when the connection failed before any byte came back (nothing listening there), resolves else.
 */
function pipeBoth(conn: Duplex, stream: Duplex, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let received = false;
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      conn.destroy();
      if (err && !received) reject(err instanceof AuraeError ? err : new AuraeError('UNAVAILABLE', `${what} failed: ${err.message}`));
      else resolve();
    };
    conn.once('data', () => void (received = true));
    stream.pipe(conn);
    conn.pipe(stream);
    conn.once('error', done);
    conn.once('close', () => done());
    stream.once('close', () => done());
    stream.once('error', () => done());
    if (signal?.aborted) done();
    signal?.addEventListener('abort', () => done(), { once: true });
  });
}

export function createCriExec(runtime: CriRuntime, pods: CriExecPods, log: Logger, adapters: CriExecAdapters = {}, opts: CriExecOptions = {}): CriExec {
  // runExec serves a pod whose containers run elsewhere (a VM sandbox's) through its relay, the others with crun.
  const targets: ExecDeps['targets'] = { get: (pod) => pods.get(pod), execTarget: (pod, c) => pods.execTarget(pod, c), relay: (pod) => pods.execRelay?.(pod) ?? null };
  const deps = (): ExecDeps => ({ targets, log: log.child({ subsystem: 'cri-exec' }), ...adapters });

  const target = (containerId: string) => {
    const c = runtime.requireContainer(containerId);
    return { pod: c.sandbox.pod, container: c.record.container };
  };

  return {
    async execSync(containerId, cmd, timeoutSeconds) {
      const { pod, container } = target(containerId);
      const input = execInput(pod, container, cmd, false);
      const out = { stdout: [] as Buffer[], stderr: [] as Buffer[], bytes: { stdout: 0, stderr: 0 } };
      const keep = (name: 'stdout' | 'stderr', chunk: Buffer) => {
        const room = EXEC_SYNC_MAX_OUTPUT - out.bytes[name];
        if (room <= 0 || chunk.length === 0) return;
        const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
        out[name].push(Buffer.from(part));
        out.bytes[name] += part.length;
      };
      const call = new ExecCallAdapter((msg) => {
        keep('stdout', msg.stdout);
        keep('stderr', msg.stderr);
        return true;
      });
      let timedOut = false;
      const timer = timeoutSeconds > 0n ? setTimeout(() => ((timedOut = true), call.cancel()), Number(timeoutSeconds) * 1000) : null;
      try {
        await runExec(deps(), input, firstRequest(input), call as unknown as ExecCall);
      } finally {
        if (timer) clearTimeout(timer);
      }
      if (timedOut) throw new CriStatusError(grpcStatus.DEADLINE_EXCEEDED, `ExecSync: command ${JSON.stringify(cmd[0])} timed out after ${timeoutSeconds} s: it was killed`);
      return { stdout: Buffer.concat(out.stdout), stderr: Buffer.concat(out.stderr), exitCode: exitCodeOf(call.exit) };
    },

    async exec(req) {
      const { pod, container } = target(req.containerId);
      if (req.tty) {
        // A terminal (tty-exec.ts): crun exec --console-socket; its one output is stdout.
        if (!opts.terminals) throw new AuraeError('UNIMPLEMENTED', 'Exec with tty: this auraed cannot make terminals (the native addon is not loaded): exec without -t');
        if (targets.relay?.(pod)) {
          throw new AuraeError('UNIMPLEMENTED', `Exec with tty: pod "${pod}" runs in a VM sandbox, whose agent (PodService/Exec in its child) has no terminals yet: exec without -t`);
        }
        execInput(pod, container, req.cmd, false); // validates cmd
        return runTtyExec({ targets: deps().targets, sys: opts.terminals, log: log.child({ subsystem: 'cri-exec' }), ...(adapters.kill ? { kill: adapters.kill } : {}), ...(adapters.exitIdleMs !== undefined ? { exitIdleMs: adapters.exitIdleMs } : {}) }, {
          pod,
          container,
          cmd: req.cmd,
          stdin: req.stdin,
          stdout: req.stdout,
          resize: req.resize,
          ...(req.signal ? { signal: req.signal } : {}),
        });
      }
      const input = execInput(pod, container, req.cmd, req.stdin !== null);
      // No terminal: the exec'd process has pipes (exec.ts).
      const stderr = req.stderr;
      let waiting = false;
      const call: ExecCallAdapter = new ExecCallAdapter((msg) => {
        let ok = true;
        for (const [bytes, stream] of [
          [msg.stdout, req.stdout],
          [msg.stderr, stderr],
        ] as const) {
          if (bytes.length === 0 || !stream || stream.destroyed) continue;
          if (!stream.write(bytes)) {
            ok = false;
            if (!waiting) {
              waiting = true;
              stream.once('drain', () => {
                waiting = false;
                call.emit('drain');
              });
            }
          }
        }
        return ok;
      });
      const onGone = () => call.cancel();
      for (const s of [req.stdout, stderr]) s?.once('close', onGone);
      if (req.signal?.aborted) call.cancel();
      req.signal?.addEventListener('abort', onGone, { once: true });
      if (req.stdin) {
        const stdin = req.stdin;
        stdin.on('data', (chunk: Buffer) => call.emit('data', { stdin: chunk, closeStdin: false } satisfies Partial<PodServiceExecRequest>));
        // Until the exec listens (it resumes the call; a relay only once connected to the child): nothing is lost.
        stdin.pause();
        stdin.once('end', () => call.emit('end'));
        call.on('x-pause', () => stdin.pause());
        call.on('x-resume', () => stdin.resume());
      }
      try {
        await runExec(deps(), input, firstRequest(input), call as unknown as ExecCall);
      } finally {
        for (const s of [req.stdout, stderr]) s?.off('close', onGone);
        req.signal?.removeEventListener('abort', onGone);
      }
      return { exitCode: call.cancelled ? 137 : exitCodeOf(call.exit) };
    },

    async attach(req) {
      if (!opts.stdio) throw new AuraeError('UNIMPLEMENTED', 'Attach: this auraed cannot hold terminals (the native addon is not loaded): read the output with crictl logs');
      const c = runtime.requireContainer(req.containerId);
      const id = c.record.id;
      const onStopped = (cb: () => void) => {
        const listener = (e: ContainerEventResponse) => {
          if (e.containerId === id && (e.containerEventType === ContainerEventType.CONTAINER_STOPPED_EVENT || e.containerEventType === ContainerEventType.CONTAINER_DELETED_EVENT)) cb();
        };
        runtime.containerEvents.on('event', listener);
        return () => runtime.containerEvents.off('event', listener);
      };
      return opts.stdio.attach(c.sandbox.pod, c.record.container, `container "${id}"`, c.record.extra.stdio, { ...req, running: c.status?.state === 'running', onStopped });
    },

    portForward(req) {
      const sandbox = runtime.requireSandbox(req.podSandboxId);
      // A pod whose network is elsewhere (a VM sandbox's, in its child): the connection is made there.
      let elsewhere: Duplex | null;
      try {
        elsewhere = pods.openPort?.(sandbox.pod, req.port) ?? null;
      } catch (err) {
        return Promise.reject(err);
      }
      if (elsewhere) return pipeBoth(elsewhere, req.stream, req.signal, `port-forward to port ${req.port} of pod sandbox "${sandbox.id}"`);
      const pod = pods.get(sandbox.pod) as { ip?: string | null } | undefined;
      const host = sandbox.extra.namespaces.network === 'NODE' ? '127.0.0.1' : (pod?.ip ?? '');
      if (host === '') return Promise.reject(new AuraeError('FAILED_PRECONDITION', `pod sandbox "${sandbox.id}" has no address (is it running?): nothing to forward to`));
      return new Promise<void>((resolve, reject) => {
        const socket = net.connect({ host, port: req.port });
        let connected = false;
        socket.once('connect', () => {
          connected = true;
          req.stream.pipe(socket);
          socket.pipe(req.stream);
        });
        const done = (err?: Error) => {
          socket.destroy();
          if (!connected && err) reject(new AuraeError('UNAVAILABLE', `port-forward to ${host}:${req.port} failed: ${(err as NodeJS.ErrnoException).code ?? err.message}: is something listening on that port in the pod?`));
          else resolve();
        };
        socket.once('error', done);
        socket.once('close', () => done());
        req.stream.once('close', () => done());
        req.stream.once('error', () => done());
        req.signal?.addEventListener('abort', () => done(), { once: true });
      });
    },
  };
}
