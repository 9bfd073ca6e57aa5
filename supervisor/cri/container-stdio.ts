// Containers' terminals and kept stdin, for CRI Attach (containers created with `tty` and/or `stdin`).
//
// tty. The container's process has a pty (config.json process.terminal; the start script runs `crun run
// --console-socket <runDir>/<container>.console`, supervisor/pods/crun.ts). auraed listens on that socket from
// CreateContainer on and keeps the master crun sends: what the container writes is read here all the time — into
// the CRI log file as stdout (a terminal has one output), and to every attached client as it comes (raw bytes:
// prompts without a newline show at once). Attached clients' stdin is written to the master, their resizes set its
// size. A slow client pauses the master (the container blocks on its terminal, as on a real one).
//
// stdin without tty. The container's stdin is a FIFO (<runDir>/<container>.stdin) made at CreateContainer; auraed
// holds it open for writing, so the container blocks reading until someone attaches, and sees end-of-file only when
// auraed closes it: after the first attach's stdin ended when `stdin_once`, never otherwise. Output to attached
// clients comes from the executables' output tap (the same pieces the CRI log gets: stdout and stderr apart, line
// by line).
//
// auraed restarts. The master and the FIFO's writer live in auraed: a container started by an earlier auraed lost
// them (its terminal hung up, its stdin reached end-of-file), so Attach to it answers FAILED_PRECONDITION saying so;
// its output is still in its log file.
import fs from 'node:fs';
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { AuraeError } from '../errors';
import { LINE_LIMITS, LineSplitter, type Logger } from '../log';
import type { LogStream } from '../observe/types';
import type { TerminalSize } from './streaming';
import { type ConsoleSocket, listenConsoleSocket, type Pty, type TerminalSyscalls } from './terminal';

export interface StdioSpec {
  tty: boolean;
  stdin: boolean;
  stdinOnce: boolean;
}

/** The native calls: terminals, and mknod for the FIFO (native/index.ts Syscalls). */
export interface StdioSyscalls extends TerminalSyscalls {
  mknod(path: string, mode: number, major: number, minor: number): void;
}

export interface ContainerStdioDeps {
  sys: () => StdioSyscalls;
  /** The executables' output tap with the CRI log files (supervisor/cri/logs createContainerLogTaps). */
  output: {
    onLine(cell: string, executable: string, stream: LogStream, text: string, partial: boolean): void;
    subscribe(cell: string, executable: string, listener: (stream: LogStream, text: string, partial: boolean) => void): () => void;
  };
  log: Logger;
  /** How long an attach waits for a just-started container's terminal to arrive (default 5 s). */
  ptyWaitMs?: number;
}

export interface StdioAttachRequest {
  stdin: Readable | null;
  stdout: Writable | null;
  stderr: Writable | null;
  resize: { on(event: 'resize', fn: (size: TerminalSize) => void): unknown; off(event: 'resize', fn: (size: TerminalSize) => void): unknown };
  signal: AbortSignal;
  /** Whether the container runs now (checked before attaching). */
  running: boolean;
  /** Calls back once when the container stops; returns the unsubscribe. */
  onStopped: (cb: () => void) => () => void;
}

/** Bytes an attached client may have queued before its output is dropped. */
export const ATTACH_QUEUE_BYTES = 4 * 1024 * 1024;
const FIFO_MODE = 0o010000 | 0o600;

interface Entry {
  pod: string;
  container: string;
  spec: StdioSpec;
  console: ConsoleSocket | null;
  pty: Pty | null;
  ptyWaiters: Set<(pty: Pty) => void>;
  /** tty: raw output to attached clients. */
  viewers: Set<Writable>;
  fifoPath: string | null;
  fifo: net.Socket | null;
  /** stdin_once: the first attach's stdin ended, the container's stdin is closed for good. */
  stdinClosed: boolean;
  released: boolean;
}

/** stdin_once: close the container's stdin once what was written reached the FIFO (it reads end-of-file). */
function closeFifo(entry: Entry): void {
  if (entry.stdinClosed) return;
  entry.stdinClosed = true;
  const fifo = entry.fifo;
  if (!fifo) return;
  // Not end(): shutdown(2) does not apply to a FIFO; closing the descriptor is its end-of-file.
  if (fifo.writableLength === 0) fifo.destroy();
  else fifo.once('drain', () => fifo.destroy());
}

export class ContainerStdio {
  private readonly entries = new Map<string, Entry>();
  private readonly log: Logger;

  constructor(private readonly deps: ContainerStdioDeps) {
    this.log = deps.log.child({ subsystem: 'cri-attach' });
  }

  private static key(pod: string, container: string): string {
    return `${pod}\0${container}`;
  }

  /** Whether this auraed holds the container's terminal or stdin (prepared it). */
  has(pod: string, container: string): boolean {
    return this.entries.has(ContainerStdio.key(pod, container));
  }

  /**
   * Before the container starts: listen on its console socket (tty) or make and hold its stdin FIFO (stdin).
   * `paths` come from the pods runtime (consoleSocketPath / stdinFifoPath of the pod's runDir). Idempotent.
   */
  async prepare(pod: string, container: string, spec: StdioSpec, paths: { consoleSocket: string; stdinFifo: string }): Promise<void> {
    if (!spec.tty && !spec.stdin) return;
    const key = ContainerStdio.key(pod, container);
    if (this.entries.has(key)) return;
    const entry: Entry = { pod, container, spec, console: null, pty: null, ptyWaiters: new Set(), viewers: new Set(), fifoPath: null, fifo: null, stdinClosed: false, released: false };
    this.entries.set(key, entry);
    try {
      if (spec.tty) {
        entry.console = await listenConsoleSocket(paths.consoleSocket, this.deps.sys(), (pty) => this.onPty(entry, pty), this.log.child({ pod, container }));
      } else {
        entry.fifoPath = paths.stdinFifo;
        fs.rmSync(paths.stdinFifo, { force: true });
        this.deps.sys().mknod(paths.stdinFifo, FIFO_MODE, 0, 0);
        // O_RDWR: opening does not wait for a reader, and the container never sees end-of-file while auraed holds it.
        const fd = fs.openSync(paths.stdinFifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
        entry.fifo = new net.Socket({ fd, readable: false, writable: true });
        entry.fifo.on('error', (err) => this.log.debug('container stdin write failed', { pod, container, err: err.message }));
      }
    } catch (err) {
      await this.release(pod, container);
      throw new AuraeError('FAILED_PRECONDITION', `container "${container}" of pod "${pod}": preparing its ${spec.tty ? 'terminal' : 'stdin'} failed: ${(err as Error).message}: see auraed's log`, { cause: err });
    }
  }

  /** RemoveContainer (or auraed stops): close the terminal, the FIFO, the socket; remove the files. Idempotent. */
  async release(pod: string, container: string): Promise<void> {
    const key = ContainerStdio.key(pod, container);
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    entry.released = true;
    entry.pty?.close();
    entry.fifo?.destroy();
    if (entry.fifoPath) fs.rmSync(entry.fifoPath, { force: true });
    await entry.console?.close();
  }

  async close(): Promise<void> {
    await Promise.all([...this.entries.values()].map((e) => this.release(e.pod, e.container)));
  }

  private onPty(entry: Entry, pty: Pty): void {
    if (entry.released || entry.pty) {
      pty.close(); // one terminal per run of the container
      return;
    }
    entry.pty = pty;
    const splitter = new LineSplitter(() => {}, {
      maxLineBytes: LINE_LIMITS.outputLineBytes,
      // A terminal ends lines with CR LF: the log's line is without the CR.
      onPiece: (piece, partial) => this.deps.output.onLine(entry.pod, entry.container, 'stdout', !partial && piece.endsWith('\r') ? piece.slice(0, -1) : piece, partial),
    });
    // The terminal is never paused for a viewer: a client that left while full, or never reads, would stop the
    // container and its log. A viewer that is behind loses output instead, as an attached client without a terminal does.
    const behind = new WeakSet<Writable>();
    pty.on('data', (chunk: Buffer) => {
      splitter.push(chunk);
      for (const out of entry.viewers) {
        if (out.destroyed || out.writableEnded) continue;
        if (out.writableLength > ATTACH_QUEUE_BYTES) {
          if (!behind.has(out)) this.log.info('attach: the client is behind: output dropped', { pod: entry.pod, container: entry.container });
          behind.add(out);
          continue;
        }
        out.write(chunk);
      }
    });
    pty.once('end', () => {
      splitter.end();
      if (entry.pty === pty) entry.pty = null;
    });
    for (const w of entry.ptyWaiters) w(pty);
    entry.ptyWaiters.clear();
  }

  /** The container's terminal: now, or once crun sent it (bounded); null when none comes. */
  private waitPty(entry: Entry, signal: AbortSignal): Promise<Pty | null> {
    if (entry.pty && !entry.pty.closed) return Promise.resolve(entry.pty);
    return new Promise((resolve) => {
      const done = (pty: Pty | null) => {
        clearTimeout(timer);
        entry.ptyWaiters.delete(done);
        signal.removeEventListener('abort', onAbort);
        resolve(pty);
      };
      const onAbort = () => done(null);
      const timer = setTimeout(() => done(null), this.deps.ptyWaitMs ?? 5000);
      entry.ptyWaiters.add(done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Attach to the container's process: resolve when it stops or the client leaves. FAILED_PRECONDITION when the
   * container is not running, or when its terminal/stdin is not held by this auraed (see the header).
   */
  async attach(pod: string, container: string, what: string, spec: StdioSpec | undefined, req: StdioAttachRequest): Promise<void> {
    if (!req.running) throw new AuraeError('FAILED_PRECONDITION', `${what} is not running: attach needs a running container`);
    const entry = this.entries.get(ContainerStdio.key(pod, container));
    if ((spec?.tty || spec?.stdin) && !entry) {
      throw new AuraeError(
        'FAILED_PRECONDITION',
        `${what}: its ${spec.tty ? 'terminal' : 'stdin'} is not held by this auraed (the container was started by an earlier auraed, whose restart closed it): its output is in its log file (crictl logs)`,
      );
    }
    if (req.stdin && !entry) {
      throw new AuraeError('FAILED_PRECONDITION', `${what} has no stdin to attach to: create it with stdin (and tty) to attach stdin, or attach without stdin`);
    }
    if (entry?.spec.tty) return this.attachTty(entry, what, req);
    return this.attachPipes(entry ?? null, pod, container, req);
  }

  private async attachTty(entry: Entry, what: string, req: StdioAttachRequest): Promise<void> {
    // A resize may come before the terminal is at hand: the last one is applied once it is.
    let early: TerminalSize | null = null;
    const keep = (size: TerminalSize) => {
      early = size;
    };
    req.resize.on('resize', keep);
    const pty = await this.waitPty(entry, req.signal).finally(() => req.resize.off('resize', keep));
    if (req.signal.aborted) return;
    if (pty && early) pty.resize(early, this.log);
    if (!pty) {
      throw new AuraeError(
        'FAILED_PRECONDITION',
        `${what}: its terminal is not held by this auraed (the container was started by an earlier auraed, whose restart hung its terminal up): its output is in its log file (crictl logs)`,
      );
    }
    await untilFinished((finish, cleanups) => {
      if (req.stdout) {
        entry.viewers.add(req.stdout);
        cleanups.push(() => entry.viewers.delete(req.stdout!));
        req.stdout.once('close', finish);
        cleanups.push(() => req.stdout?.off('close', finish));
      }
      const onResize = (size: TerminalSize) => pty.resize(size, this.log);
      req.resize.on('resize', onResize);
      cleanups.push(() => req.resize.off('resize', onResize));
      const stdin = req.stdin;
      if (stdin && entry.spec.stdin && !entry.stdinClosed) {
        const onData = (chunk: Buffer) => {
          if (!pty.write(chunk)) {
            stdin.pause();
            pty.once('drain', () => stdin.resume());
          }
        };
        const onEnd = () => {
          if (!entry.spec.stdinOnce || entry.stdinClosed) return;
          entry.stdinClosed = true;
          pty.write('\x04'); // a terminal cannot be half-closed: its end-of-file character
        };
        stdin.on('data', onData);
        stdin.once('end', onEnd);
        cleanups.push(() => {
          stdin.off('data', onData);
          stdin.off('end', onEnd);
          onEnd(); // stdin_once: the first attached stdin closes the container's when it leaves, however it leaves
        });
      }
      pty.once('end', finish);
      cleanups.push(() => pty.off('end', finish));
      if (req.signal.aborted) return finish();
      req.signal.addEventListener('abort', finish, { once: true });
      cleanups.push(() => req.signal.removeEventListener('abort', finish));
      cleanups.push(req.onStopped(finish));
    });
  }

  private async attachPipes(entry: Entry | null, pod: string, container: string, req: StdioAttachRequest): Promise<void> {
    await untilFinished((finish, cleanups) => {
      let dropped = false;
      const send = (out: Writable | null, text: string) => {
        if (!out || out.destroyed || out.writableEnded) return;
        if (out.writableLength > ATTACH_QUEUE_BYTES) {
          if (!dropped) this.log.info('attach: the client is behind: output dropped', { pod, container });
          dropped = true;
          return;
        }
        out.write(text);
      };
      cleanups.push(
        this.deps.output.subscribe(pod, container, (stream, text, partial) => {
          const line = partial ? text : `${text}\n`;
          send(stream === 'stderr' ? req.stderr : req.stdout, line);
        }),
      );
      for (const out of [req.stdout, req.stderr]) {
        if (!out) continue;
        out.once('close', finish);
        cleanups.push(() => out.off('close', finish));
      }
      const stdin = req.stdin;
      const fifo = entry?.fifo;
      if (stdin && entry && fifo && !entry.stdinClosed) {
        const onData = (chunk: Buffer) => {
          if (!fifo.write(chunk)) {
            stdin.pause();
            fifo.once('drain', () => stdin.resume());
          }
        };
        const onEnd = () => {
          if (entry.spec.stdinOnce) closeFifo(entry);
        };
        stdin.on('data', onData);
        stdin.once('end', onEnd);
        cleanups.push(() => {
          stdin.off('data', onData);
          stdin.off('end', onEnd);
          onEnd(); // stdin_once: the first attached stdin closes the container's when it leaves, however it leaves
        });
      }
      if (req.signal.aborted) return finish();
      req.signal.addEventListener('abort', finish, { once: true });
      cleanups.push(() => req.signal.removeEventListener('abort', finish));
      cleanups.push(req.onStopped(finish));
    });
  }
}

/** Wait until `finish` is called (once, by whichever event `wire` hooked comes first), then run every cleanup `wire` registered. */
function untilFinished(wire: (finish: () => void, cleanups: (() => void)[]) => void): Promise<void> {
  const cleanups: (() => void)[] = [];
  return new Promise<void>((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      for (const c of cleanups) c();
      resolve();
    };
    wire(finish, cleanups);
  });
}
