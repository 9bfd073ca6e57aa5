// client.pods.exec / execStream (aurae.pods.v0.PodService/Exec): a new process in a running container, its stdin,
// stdout and stderr streamed both ways, then its exit.
//
//   const { code, stdout } = await client.pods.exec('web', ['cat', '/etc/hostname']);
//   const s = client.pods.execStream('web', ['sh'], { stdin: true });
//   s.stdout.pipe(process.stdout); s.stdin!.end('echo hi; exit 3\n'); const { code } = await s.exit;
//
// Back-pressure holds end to end: a stdout or stderr reader that does not keep up pauses the call (and so, on the
// node, the process); stdin writes complete as the node takes them. The call has no deadline of its own: pass
// `signal` to cancel it (the node then kills the process). With `targetNode` the node relays the call to that
// descendant; a VM-sandboxed pod's exec is relayed to its child VM by the node itself.
import { Readable, Writable } from 'node:stream';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import type { PodServiceClient, PodServiceExecRequest, PodServiceExecResponse } from '../../supervisor/gen/aurae/pods/v0/pods';
import { toApiError } from './errors';

const METHOD = 'aurae.pods.v0.PodService/Exec';
const EMPTY = Buffer.alloc(0);
/** Largest stdin chunk per request (the node refuses more). */
const STDIN_CHUNK = 1024 * 1024;

export interface ExecStartOptions {
  /** Required when the pod has several containers. */
  container?: string;
  /** Added to the container's environment. */
  env?: Record<string, string>;
  /** Absolute; default the container's. */
  workingDir?: string;
  /** "uid", "uid:gid", "name" or "name:group"; default the container's. */
  user?: string;
  signal?: AbortSignal;
}

export interface ExecExit {
  /** The exit code; null when the process died of a signal. */
  code: number | null;
  /** e.g. "SIGKILL"; null when it exited with a code. */
  signal: string | null;
}

export interface ExecSession {
  /** The process's stdin (end() closes it); null unless started with stdin: true. */
  stdin: Writable | null;
  stdout: Readable;
  stderr: Readable;
  /** The exit, once the output was delivered; rejects with an AuraeApiError when the call fails. */
  exit: Promise<ExecExit>;
  /** Cancel the call: the node kills the process. */
  cancel(): void;
}

export interface ExecOptions extends ExecStartOptions {
  /** The process's stdin (then closed); without it the process reads end of input at once. */
  stdin?: string | Uint8Array | AsyncIterable<string | Uint8Array>;
  /** Most bytes kept of stdout and of stderr each; default 64 MiB. More cancels the call with an error. */
  maxBuffer?: number;
}

export interface ExecResult extends ExecExit {
  stdout: Buffer;
  stderr: Buffer;
}

/** Start an exec and hand back its streams (see ExecSession). */
export function execStream(client: PodServiceClient, address: string, pod: string, command: string[], options: ExecStartOptions & { stdin?: boolean } = {}): ExecSession {
  const call: ClientDuplexStream<PodServiceExecRequest, PodServiceExecResponse> = client.exec();
  let exit: ExecExit | null = null;
  // One source feeds two readers: pause the call while either is full, resume when that one asks for more.
  const resume = () => {
    if (call.isPaused()) call.resume();
  };
  const stdout = new Readable({ read: resume });
  const stderr = new Readable({ read: resume });
  let ended = false;
  const endOutput = () => {
    if (ended) return;
    ended = true;
    stdout.push(null);
    stderr.push(null);
  };
  const done = new Promise<ExecExit>((resolve, reject) => {
    call.on('data', (m: PodServiceExecResponse) => {
      let more = true;
      if (ended) return;
      if (m.stdout.length) more = stdout.push(m.stdout) && more;
      if (m.stderr.length) more = stderr.push(m.stderr) && more;
      if (m.exit) exit = { code: m.exit.code ?? null, signal: m.exit.signal ?? null };
      if (!more) call.pause();
    });
    call.on('end', () => {
      endOutput();
      if (exit) resolve(exit);
      else reject(new Error(`${METHOD} at ${address}: the node ended the call without the exit`));
    });
    call.on('error', (err: ServiceError) => {
      options.signal?.removeEventListener('abort', onAbort);
      endOutput();
      reject(toApiError(err, METHOD, address));
    });
  });
  done.catch(() => {}); // a caller that reads only the streams must not get an unhandled rejection
  const onAbort = () => call.cancel();
  if (options.signal?.aborted) call.cancel();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  call.write({
    start: {
      podName: pod,
      containerName: options.container ?? '',
      command,
      env: options.env ?? {},
      workingDir: options.workingDir ?? '',
      user: options.user ?? '',
      stdin: options.stdin === true,
    },
    stdin: EMPTY,
    closeStdin: false,
  });
  let stdin: Writable | null = null;
  if (options.stdin) {
    stdin = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        const parts: Buffer[] = [];
        for (let at = 0; at < chunk.length; at += STDIN_CHUNK) parts.push(chunk.subarray(at, at + STDIN_CHUNK));
        parts.forEach((part, i) => call.write({ stdin: part, closeStdin: false }, i === parts.length - 1 ? () => callback() : undefined));
        if (parts.length === 0) callback();
      },
      final(callback) {
        call.write({ stdin: EMPTY, closeStdin: true });
        call.end();
        callback();
      },
    });
    // After the call ended, writes have nowhere to go: drop them rather than fail the writer.
    stdin.on('error', () => {});
  } else {
    call.end();
  }
  void done.finally(() => options.signal?.removeEventListener('abort', onAbort)).catch(() => {});
  return { stdin, stdout, stderr, exit: done, cancel: () => call.cancel() };
}

/** Run a command to its end and collect its output (see ExecOptions). */
export async function execCollect(client: PodServiceClient, address: string, pod: string, command: string[], options: ExecOptions = {}): Promise<ExecResult> {
  const max = options.maxBuffer ?? 64 * 1024 * 1024;
  const session = execStream(client, address, pod, command, { ...options, stdin: options.stdin !== undefined });
  const collect = async (stream: Readable, name: string): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of stream) {
      size += (chunk as Buffer).length;
      if (size > max) {
        session.cancel();
        throw new Error(`${METHOD}: ${name} exceeded maxBuffer (${max} bytes): use execStream for large output`);
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  };
  const feed = async () => {
    const { stdin } = session;
    if (!stdin || options.stdin === undefined) return;
    const input = options.stdin;
    if (typeof input === 'string' || input instanceof Uint8Array) {
      stdin.end(Buffer.from(input));
      return;
    }
    for await (const chunk of input) {
      if (!stdin.write(Buffer.from(chunk))) await new Promise((r) => stdin.once('drain', r));
    }
    stdin.end();
  };
  const [stdout, stderr, exit] = await Promise.all([collect(session.stdout, 'stdout'), collect(session.stderr, 'stderr'), session.exit, feed()]);
  return { ...exit, stdout, stderr };
}
