// Start QEMU for a VmSpec and watch it: the serial console (stdout) is captured line by line so callers
// can wait for tokens such as the AURAE_READY line; QMP is the control channel.
// The console is the guest's to write, so it is read as an untrusted stream: lines are capped (a longer one is
// cut and marked, see log/line-splitter.ts), the text kept is bounded, and each chunk costs work in proportion
// to its size (waiters look at each new line once, never at the whole console again).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { LINE_LIMITS, LineSplitter, type LineSplitterStats, RingBuffer } from '../log';
import { hostTscKhz } from './accel';
import { qemuArgs, type VmSpec } from './qemu-args';
import { QmpClient } from './qmp';

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /**
   * Why QEMU stopped the machine, from its last QMP SHUTDOWN event: 'guest-shutdown' (the guest powered off),
   * 'guest-reset' (a reboot or a triple fault, which -no-reboot turns into an exit), 'guest-panic', 'host-qmp-quit',
   * 'host-signal', …; absent when QEMU sent none (killed, or started without a QMP socket).
   */
  shutdown?: string;
}

/** How long an exit waits for the QMP connection to deliver QEMU's last events (it closes as QEMU exits). */
const QMP_DRAIN_MS = 1000;
/** How long the QMP watch keeps trying to connect while QEMU starts (it creates the socket early, but may be slow on an emulated CPU). */
const QMP_WATCH_CONNECT_MS = 60_000;

export interface LaunchOptions {
  qemuBinary?: string;
  /** Called with every console line as it arrives (e.g. to show progress); a cut line ends with "…[cut N bytes]". */
  onConsoleLine?: (line: string) => void;
}

/** Console text kept for console/tail()/waitForConsole: the newest lines up to this many characters. */
export const CONSOLE_RETAIN_CHARS = 8 * 1024 * 1024;
/** …and at most this many lines (a flood of empty lines is bounded too). */
export const CONSOLE_RETAIN_LINES = 100_000;

export class ConsoleTimeoutError extends Error {
  readonly code = 'DEADLINE_EXCEEDED';
}

/** One console line and where it starts in the console (characters since boot, newlines included). */
interface ConsoleLine {
  text: string;
  start: number;
}

interface ConsoleWatcher {
  line(line: ConsoleLine): void;
  exit(): void;
}

export class Vm {
  readonly exited: Promise<VmExit>;
  private exitInfo: VmExit | null = null;
  private qmpClient: Promise<QmpClient> | null = null;
  /** The cause in QEMU's last SHUTDOWN event, seen by the QMP watch (watchShutdown). */
  private shutdownCause: string | null = null;
  /** Aborted when QEMU exits: a QMP connection still being tried stops. */
  private readonly gone = new AbortController();
  private readonly watchers = new Set<ConsoleWatcher>();
  private readonly lines = new RingBuffer<ConsoleLine>(CONSOLE_RETAIN_LINES, CONSOLE_RETAIN_CHARS, (l) => l.text.length + 1);
  private consoleEnd = 0;
  private readonly splitters: LineSplitter[];

  constructor(
    readonly spec: VmSpec,
    readonly process: ChildProcess,
    private readonly options: LaunchOptions,
  ) {
    const onLine = (text: string) => {
      const line = { text, start: this.consoleEnd };
      this.consoleEnd += text.length + 1;
      this.lines.push(line);
      options.onConsoleLine?.(text);
      for (const w of this.watchers) w.line(line);
    };
    // QEMU's own warnings (stderr) land in the same console, each stream split on its own.
    this.splitters = [process.stdout, process.stderr].map((stream) => {
      const splitter = new LineSplitter(onLine, { maxLineBytes: LINE_LIMITS.consoleLineBytes, trimCr: true });
      stream?.on('data', (chunk: Buffer) => splitter.push(chunk));
      stream?.on('end', () => splitter.end());
      return splitter;
    });
    this.exited = new Promise((resolve) => {
      process.once('exit', (code, signal) => {
        this.gone.abort('QEMU exited');
        void this.qmpDrained().then(() => {
          this.exitInfo = { code, signal, ...(this.shutdownCause ? { shutdown: this.shutdownCause } : {}) };
          for (const w of this.watchers) w.exit();
          resolve(this.exitInfo);
        });
      });
    });
  }

  /**
   * Connect QMP now and remember why QEMU stops the machine (its SHUTDOWN event), so that an exit nobody asked for
   * says whether the guest powered off, reset (a triple fault, with -no-reboot) or panicked. The connection is the
   * one qmp() returns; when it cannot be made, qmp() tries again later.
   */
  watchShutdown(): void {
    if (!this.spec.qmpSocket || this.qmpClient) return;
    const attempt = QmpClient.connect(this.spec.qmpSocket, QMP_WATCH_CONNECT_MS, {
      signal: this.gone.signal,
      onEvent: (e) => {
        if (e.event === 'SHUTDOWN' && typeof e.data?.reason === 'string') this.shutdownCause = e.data.reason;
      },
    });
    this.qmpClient = attempt;
    attempt.catch(() => {
      if (this.qmpClient === attempt) this.qmpClient = null;
    });
  }

  /** Resolves once a connected QMP client has read QEMU's last events (its socket closed), or after QMP_DRAIN_MS. */
  private async qmpDrained(): Promise<void> {
    const qmp = await Promise.race([this.qmpClient?.catch(() => null) ?? null, new Promise<null>((r) => setTimeout(r, 0, null))]);
    if (!qmp || qmp.isClosed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, QMP_DRAIN_MS);
      qmp.once('close', () => (clearTimeout(timer), resolve()));
    });
  }

  /** What the guest printed on its serial console: the newest lines (bounded, see CONSOLE_RETAIN_CHARS). */
  get console(): string {
    return this.lines.last().map((l) => `${l.text}\n`).join('');
  }

  /** Console lines seen and how many were cut (and by how many bytes) at LINE_LIMITS.consoleLineBytes. */
  get consoleStats(): LineSplitterStats {
    const total = { lines: 0, cutLines: 0, cutBytes: 0 };
    for (const s of this.splitters) {
      total.lines += s.stats.lines;
      total.cutLines += s.stats.cutLines;
      total.cutBytes += s.stats.cutBytes;
    }
    return total;
  }

  get running(): boolean {
    return this.exitInfo === null;
  }

  /** Last `n` console lines, for error messages. */
  tail(n = 40): string {
    return this.lines
      .last(n)
      .map((l) => l.text)
      .join('\n');
  }

  /**
   * Wait until a console line (from character offset `from`, e.g. an earlier `console.length`) matches `pattern`
   * (tested on the line with its newline). Rejects when QEMU exits first or after `timeoutMs`, with the console
   * tail attached.
   */
  waitForConsole(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const match = (line: ConsoleLine): RegExpExecArray | null => {
      const end = line.start + line.text.length + 1;
      if (end <= from) return null;
      const text = `${line.text}\n`;
      pattern.lastIndex = 0;
      return pattern.exec(line.start >= from ? text : text.slice(from - line.start));
    };
    return new Promise((resolve, reject) => {
      for (const line of this.lines.last()) {
        const m = match(line);
        if (m) return resolve(m);
      }
      const exitedFirst = () =>
        new Error(`QEMU exited (${JSON.stringify(this.exitInfo)}) before the console showed ${pattern}\n--- console tail ---\n${this.tail()}`);
      if (this.exitInfo) return reject(exitedFirst());
      const timer = setTimeout(
        () => done(() => reject(new ConsoleTimeoutError(`no ${pattern} on the console within ${timeoutMs} ms\n--- console tail ---\n${this.tail()}`))),
        timeoutMs,
      );
      const watcher: ConsoleWatcher = {
        line: (line) => {
          const m = match(line);
          if (m) done(() => resolve(m));
        },
        exit: () => done(() => reject(exitedFirst())),
      };
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.watchers.delete(watcher);
        fn();
      };
      this.watchers.add(watcher);
    });
  }

  qmp(): Promise<QmpClient> {
    if (!this.spec.qmpSocket) return Promise.reject(new Error('this VM was started without a QMP socket'));
    this.qmpClient ??= QmpClient.connect(this.spec.qmpSocket);
    return this.qmpClient;
  }

  /** Wait for QEMU to exit by itself, up to `timeoutMs`; rejects (QEMU keeps running) on timeout. */
  async waitForExit(timeoutMs: number): Promise<VmExit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`QEMU did not exit within ${timeoutMs} ms\n--- console tail ---\n${this.tail()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stop QEMU now: QMP quit, then SIGKILL if it lingers. Safe to call twice. */
  async kill(): Promise<VmExit> {
    if (this.exitInfo) return this.exitInfo;
    try {
      if (this.qmpClient) {
        const qmp = await Promise.race([this.qmpClient, new Promise<never>((_, r) => setTimeout(() => r(new Error('qmp timeout')), 1000))]);
        await Promise.race([qmp.quit(), new Promise((r) => setTimeout(r, 2000))]);
      }
    } catch {
      // fall through to SIGKILL
    }
    if (!this.exitInfo) this.process.kill('SIGKILL');
    const exit = await this.exited;
    (await this.qmpClient?.catch(() => null))?.close();
    return exit;
  }
}

/** Boot `spec`. Throws at once if the kernel or initrd is missing (with what to do). */
export async function launchVm(spec: VmSpec, options: LaunchOptions = {}): Promise<Vm> {
  const files = spec.firmware
    ? ([['firmware', spec.firmware.code], ['firmware variables', spec.firmware.vars], ...spec.disks.slice(0, 1).map((d) => ['boot disk', d.path] as const)] as const)
    : ([['kernel', spec.kernel], ['initrd', spec.initrd]] as const);
  for (const [what, file] of files) {
    if (!fs.existsSync(file)) throw new Error(`vm: ${what} ${file} does not exist: run \`npm run image\` first (firmware: apt-get install ovmf)`);
  }
  for (const sock of [spec.qmpSocket, spec.debugConsoleSocket]) if (sock) fs.rmSync(sock, { force: true });
  if (spec.tscKhz === undefined) spec = { ...spec, tscKhz: spec.accel === 'tcg' ? hostTscKhz() : null };
  const binary = options.qemuBinary ?? 'qemu-system-x86_64';
  const child = spawn(binary, qemuArgs(spec), { stdio: ['pipe', 'pipe', 'pipe'] });
  const spawned = once(child, 'spawn').then(() => null);
  const failed = once(child, 'error').then(([err]) => err as Error);
  const err = await Promise.race([spawned, failed]);
  if (err) {
    throw new Error(`vm: cannot start ${binary}: ${err.message}: install it with \`apt-get install qemu-system-x86\``);
  }
  const vm = new Vm(spec, child, options);
  vm.watchShutdown();
  return vm;
}
