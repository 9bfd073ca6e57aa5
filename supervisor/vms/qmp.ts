// A small typed QMP client: the QEMU Machine Protocol over a Unix socket.
// QEMU greets, we negotiate capabilities, then send {"execute", "id"} commands and match replies by id;
// everything without an id is an asynchronous event.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { LINE_LIMITS, LineSplitter } from '../log';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpStatus {
  running: boolean;
  status: string;
}

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    desc: string,
  ) {
    super(`qmp ${command}: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
  }
}

type Pending = { command: string; resolve: (value: unknown) => void; reject: (err: Error) => void };

export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  // QEMU's replies and events are single JSON lines; a line beyond the cap is cut (and then ignored as not JSON)
  // rather than buffered without bound: the guest can put its own text into some events.
  private readonly lines = new LineSplitter((line) => this.onLine(line), { maxLineBytes: LINE_LIMITS.qmpLineBytes });
  private closed = false;

  private constructor(private readonly socket: net.Socket) {
    super();
    socket.on('data', (chunk: Buffer) => this.lines.push(chunk));
    socket.on('close', () => this.onClose());
    socket.on('error', () => this.onClose());
  }

  /**
   * Connect, wait for the greeting, and negotiate capabilities. Retries until `timeoutMs` (QEMU may still be
   * starting), or until `signal` aborts (QEMU exited: nothing will listen). `onEvent` sees every event from the
   * greeting on, including those QEMU sends before this resolves.
   */
  static async connect(
    path: string,
    timeoutMs = 10_000,
    { signal, onEvent }: { signal?: AbortSignal; onEvent?: (e: QmpEvent) => void } = {},
  ): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (signal?.aborted) throw new Error(`qmp: not connecting to ${path}: ${String(signal.reason)}`);
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const client = new QmpClient(socket);
        if (onEvent) client.on('event', onEvent);
        await client.greeting(Math.max(1000, deadline - Date.now()));
        await client.execute('qmp_capabilities');
        return client;
      } catch (err) {
        if (Date.now() > deadline) {
          throw new Error(`qmp: cannot connect to ${path}: ${(err as Error).message}: is QEMU running with -qmp unix:${path},server=on?`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private greetingWaiter: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private greeted = false;

  private greeting(timeoutMs: number): Promise<void> {
    if (this.greeted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no QMP greeting')), timeoutMs);
      this.greetingWaiter = {
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
  }

  /** True once the socket closed (QEMU exited or close() was called): no more events come. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Lines cut at LINE_LIMITS.qmpLineBytes so far (each one dropped as not JSON). */
  get cutLines(): number {
    return this.lines.stats.cutLines;
  }

  private onLine(raw: string): void {
    const line = raw.trim();
    if (line) this.onMessage(line);
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // QEMU only sends JSON; ignore a torn line rather than crash the caller.
    }
    if ('QMP' in msg) {
      this.greeted = true;
      this.greetingWaiter?.resolve();
      return;
    }
    if (typeof msg.event === 'string') {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const waiter = id ? this.pending.get(id) : undefined;
    if (!waiter || !id) return;
    this.pending.delete(id);
    if ('error' in msg) {
      const e = msg.error as { class?: string; desc?: string };
      waiter.reject(new QmpError(waiter.command, e.class ?? 'GenericError', e.desc ?? 'unknown error'));
    } else {
      waiter.resolve(msg.return);
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.greetingWaiter?.reject(new Error('QMP socket closed'));
    for (const waiter of this.pending.values()) waiter.reject(new Error(`qmp ${waiter.command}: QEMU closed the connection`));
    this.pending.clear();
    this.emit('close');
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`qmp ${command}: connection is closed`));
    const id = `aurae-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  queryStatus(): Promise<QmpStatus> {
    return this.execute<QmpStatus>('query-status');
  }

  /** ACPI power button: the guest's init shuts down gracefully. */
  systemPowerdown(): Promise<void> {
    return this.execute<void>('system_powerdown');
  }

  systemReset(): Promise<void> {
    return this.execute<void>('system_reset');
  }

  /** Stop QEMU at once (no guest shutdown). The connection closes as QEMU exits. */
  async quit(): Promise<void> {
    await this.execute<void>('quit').catch((err: Error) => {
      if (!/closed/.test(err.message)) throw err;
    });
  }

  /** Resolve with the first event named `name` (and matching `filter`), or reject after `timeoutMs`. */
  waitForEvent(name: string, timeoutMs: number, filter: (e: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (e.event !== name || !filter(e)) return;
        cleanup();
        resolve(e);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`qmp: no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
      };
      this.on('event', onEvent);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
