// An adapter for the real backend: pods' exec (supervisor/pods/exec.ts runExec) consumes a gRPC-shaped duplex call
// (PodService.Exec: requests carry stdin, responses carry stdout/stderr chunks and a final exit). This turns the
// streaming server's node streams into such a call, so crun exec runs the same code for `aer pod exec` and for
// kubectl/crictl: back-pressure both ways (write() false → 'drain'; pause/resume → stdin), end of stdin → 'end',
// the client leaving → 'cancelled'. Structural types only: nothing here imports pods' internals.
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';

/** A response as runExec writes it: output chunks, then one exit. */
export interface ExecCallResponse {
  stdout?: Buffer;
  stderr?: Buffer;
  exit?: { code?: number; signal?: string } | undefined;
}

/** The members of grpc-js's ServerDuplexStream that runExec uses (its ExecCall). */
export interface ExecCallLike extends EventEmitter {
  cancelled: boolean;
  write(response: ExecCallResponse): boolean;
  end(): void;
  pause(): this;
  resume(): this;
}

export interface StreamExecCall {
  call: ExecCallLike;
  /** The first request (its start is the caller's; stdin comes later as 'data' events). */
  first: { start: unknown; stdin: Buffer; closeStdin: boolean };
  /** The exit code runExec reported: its code, or 128+N for a signal death; null when it sent none (cancelled). */
  exitCode(): number | null;
}

/**
 * Wrap the streams of a BackendExecRequest as an exec call. `start` is passed through as the first request's
 * start (PodService's ExecStart: pod, container, command, stdin flag).
 */
export function streamExecCall<S>(io: { stdin: Readable | null; stdout: Writable | null; stderr: Writable | null; signal: AbortSignal }, start: S): StreamExecCall {
  let exit: ExecCallResponse['exit'] = undefined;
  let flowing = false;
  let waitingDrain = 0;
  const emitter = new EventEmitter();
  const call = emitter as ExecCallLike;
  call.cancelled = false;

  const onDrain = () => {
    if (--waitingDrain === 0) emitter.emit('drain');
  };
  call.write = (response: ExecCallResponse): boolean => {
    if (response.exit) {
      exit = response.exit;
      return true;
    }
    let ok = true;
    for (const [bytes, out] of [
      [response.stdout, io.stdout],
      [response.stderr, io.stderr],
    ] as const) {
      if (!bytes || bytes.length === 0 || !out || out.writableEnded) continue;
      if (!out.write(bytes)) {
        ok = false;
        waitingDrain++;
        out.once('drain', onDrain);
      }
    }
    return ok;
  };
  call.end = () => {};
  call.pause = () => {
    io.stdin?.pause();
    return call;
  };
  call.resume = () => {
    if (!flowing && io.stdin) {
      // Start reading stdin only once runExec listens (its first resume()).
      flowing = true;
      io.stdin.on('data', (chunk: Buffer) => emitter.emit('data', { stdin: chunk, closeStdin: false }));
      io.stdin.on('end', () => emitter.emit('end'));
    }
    io.stdin?.resume();
    return call;
  };
  const cancel = () => {
    call.cancelled = true;
    emitter.emit('cancelled');
  };
  if (io.signal.aborted) call.cancelled = true;
  else io.signal.addEventListener('abort', cancel, { once: true });

  return {
    call,
    first: { start, stdin: Buffer.alloc(0), closeStdin: false },
    exitCode: () => {
      if (!exit) return null;
      if (exit.code !== undefined) return exit.code;
      const n = exit.signal ? constants.signals[exit.signal as NodeJS.Signals] : undefined;
      return 128 + (n ?? 9);
    },
  };
}
