// Start QEMU for a VmSpec and watch it: the serial console (stdout) is captured line by line so callers
// can wait for tokens such as the AURAE_READY line; QMP is the control channel.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { hostTscKhz } from './accel';
import { qemuArgs, type VmSpec } from './qemu-args';
import { QmpClient } from './qmp';

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LaunchOptions {
  qemuBinary?: string;
  /** Called with every console line as it arrives (e.g. to show progress). */
  onConsoleLine?: (line: string) => void;
}

const CONSOLE_LIMIT = 8 * 1024 * 1024;

export class ConsoleTimeoutError extends Error {
  readonly code = 'DEADLINE_EXCEEDED';
}

export class Vm {
  /** Everything the guest printed on its serial console (bounded; the oldest part is dropped past 8 MiB). */
  console = '';
  readonly exited: Promise<VmExit>;
  private exitInfo: VmExit | null = null;
  private qmpClient: Promise<QmpClient> | null = null;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly spec: VmSpec,
    readonly process: ChildProcess,
    private readonly options: LaunchOptions,
  ) {
    let partial = '';
    const onChunk = (chunk: Buffer) => {
      const text = chunk.toString('utf8').replace(/\r/g, '');
      this.console += text;
      if (this.console.length > CONSOLE_LIMIT) this.console = this.console.slice(-CONSOLE_LIMIT / 2);
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) options.onConsoleLine?.(line);
      for (const w of this.waiters) w();
    };
    process.stdout?.on('data', onChunk);
    process.stderr?.on('data', onChunk); // QEMU's own warnings land in the same log, in order.
    this.exited = new Promise((resolve) => {
      process.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        for (const w of this.waiters) w();
        resolve(this.exitInfo);
      });
    });
  }

  get running(): boolean {
    return this.exitInfo === null;
  }

  /** Last `n` console lines, for error messages. */
  tail(n = 40): string {
    return this.console.split('\n').slice(-n).join('\n');
  }

  /**
   * Wait until the console (from byte offset `from`) matches `pattern`. Rejects when QEMU exits first or after
   * `timeoutMs`, with the console tail attached.
   */
  waitForConsole(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(this.console.slice(from));
        if (m) return done(() => resolve(m));
        if (this.exitInfo) {
          return done(() =>
            reject(new Error(`QEMU exited (${JSON.stringify(this.exitInfo)}) before the console showed ${pattern}\n--- console tail ---\n${this.tail()}`)),
          );
        }
      };
      const timer = setTimeout(
        () => done(() => reject(new ConsoleTimeoutError(`no ${pattern} on the console within ${timeoutMs} ms\n--- console tail ---\n${this.tail()}`))),
        timeoutMs,
      );
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        fn();
      };
      this.waiters.add(check);
      check();
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
  return new Vm(spec, child, options);
}
