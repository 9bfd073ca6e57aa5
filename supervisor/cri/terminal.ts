// Terminals for CRI containers and execs: crun creates the pty and hands its master over a Unix socket
// (`--console-socket PATH`: one connection, one message carrying the descriptor with SCM_RIGHTS). Node cannot take
// a descriptor from a message, so the native addon does (recvFd on the thread pool), and the master is then an
// ordinary stream of the event loop (a tty.ReadStream: libuv's tty handle, non-blocking, readable and writable).
//
// The master's end: once every holder of the slave closed it (the process and its children exited), reading
// fails with EIO on Linux. That is the terminal's normal end, not an error: `Pty` ends then.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import tty from 'node:tty';
import type { Logger } from '../log';
import type { TerminalSize } from './streaming';

/** What terminals need of the native addon (native/index.ts Syscalls). */
export interface TerminalSyscalls {
  recvFd(socketFd: number, timeoutMs: number): Promise<number>;
  setWindowSize(fd: number, rows: number, cols: number): void;
}

/** How long a connected peer has to send the descriptor (crun sends it right after connecting). */
export const CONSOLE_RECV_TIMEOUT_MS = 10_000;

/**
 * A pty master as a stream: 'data' (Buffer), 'end' once (the slave side is closed everywhere, or close()).
 * write() returns false when the kernel's buffer is full ('drain' follows); pause()/resume() stop reading.
 */
export class Pty extends EventEmitter {
  private readonly stream: tty.ReadStream;
  private ended = false;
  private size: TerminalSize | null = null;

  constructor(
    readonly fd: number,
    private readonly sys: Pick<TerminalSyscalls, 'setWindowSize'>,
  ) {
    super();
    this.stream = new tty.ReadStream(fd);
    this.stream.on('data', (chunk: Buffer) => this.emit('data', chunk));
    this.stream.on('drain', () => this.emit('drain'));
    // EIO: the slave was closed by its last holder, the terminal's normal end. Any other error ends it too.
    this.stream.on('error', () => this.finish());
    this.stream.on('end', () => this.finish());
    this.stream.on('close', () => this.finish());
  }

  get closed(): boolean {
    return this.ended;
  }

  write(chunk: Buffer | string): boolean {
    if (this.ended) return true;
    return this.stream.write(chunk);
  }

  pause(): void {
    if (!this.ended) this.stream.pause();
  }

  resume(): void {
    if (!this.ended) this.stream.resume();
  }

  /** The terminal's size (TIOCSWINSZ); a later resize of the same size is not repeated. Never throws. */
  resize(size: TerminalSize, log?: Logger): void {
    if (this.ended || (this.size && this.size.width === size.width && this.size.height === size.height)) return;
    this.size = size;
    try {
      this.sys.setWindowSize(this.fd, size.height, size.width);
    } catch (err) {
      log?.debug('resizing a terminal failed', { err: (err as Error).message, ...size });
    }
  }

  /** Close the master (the process on the slave sees a hangup). Idempotent. */
  close(): void {
    this.stream.destroy();
    this.finish();
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.stream.destroyed) this.stream.destroy();
    this.emit('end');
  }
}

export interface ConsoleSocket {
  readonly path: string;
  /** Stop listening and remove the socket file (a terminal already received stays open). Idempotent. */
  close(): Promise<void>;
}

/**
 * Listen on `path` (a stale file there is replaced; mode 0600) for crun's console socket: every connection's
 * descriptor becomes a Pty handed to `onPty`. A connection that sends none is logged and dropped.
 */
export async function listenConsoleSocket(path: string, sys: TerminalSyscalls, onPty: (pty: Pty) => void, log: Logger): Promise<ConsoleSocket> {
  fs.rmSync(path, { force: true });
  // pauseOnConnect: libuv must not read the connection, or the descriptor would be dropped with the byte it came with.
  const server = net.createServer({ pauseOnConnect: true }, (conn) => {
    const fd = (conn as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) {
      conn.destroy();
      return;
    }
    sys.recvFd(fd, CONSOLE_RECV_TIMEOUT_MS).then(
      (master) => {
        conn.destroy();
        let pty: Pty;
        try {
          pty = new Pty(master, sys);
        } catch (err) {
          fs.closeSync(master);
          log.warn('console socket: the descriptor received is not a terminal', { path, err: (err as Error).message });
          return;
        }
        onPty(pty);
      },
      (err: Error) => {
        conn.destroy();
        log.warn('console socket: no terminal received', { path, err: err.message });
      },
    );
  });
  server.on('error', (err) => log.warn('console socket error', { path, err: err.message }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(path, 0o600);
  let closed: Promise<void> | null = null;
  return {
    path,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        fs.rmSync(path, { force: true });
      });
      return closed;
    },
  };
}
