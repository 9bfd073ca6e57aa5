// Test doubles for the VM core (unit tests only; not used by auraed): a QEMU process that boots and exits on
// command, a harness wiring VmRuntime to fakes, and a fake /proc + QMP for reconcile's leftovers.
import { silentLogger } from '../log';
import type { VmExit } from './launch';
import type { VmSpec } from './qemu-args';
import type { LeftoverControl } from './vm-leftovers';
import { type GuestAdapter, type VmEvent, type VmProcess, VmRuntime, type VmRuntimeDeps } from './vm-runtime';
import { memoryVmStore } from './vm-store';

export class FakeVm implements VmProcess {
  readonly process: { pid: number };
  readonly exited: Promise<VmExit>;
  running = true;
  powerdowns = 0;
  quits = 0;
  private resolveExit!: (e: VmExit) => void;
  constructor(
    readonly spec: VmSpec,
    pid: number,
    private readonly behaviour: FakeBehaviour,
    /** This boot resets before AURAE_READY (a triple fault, or a panic when `console` says so). */
    private readonly resets = false,
  ) {
    this.process = { pid };
    this.exited = new Promise((r) => (this.resolveExit = r));
  }
  exit(code: number | null, signal: NodeJS.Signals | null = null, shutdown?: string) {
    if (!this.running) return;
    this.running = false;
    this.resolveExit({ code, signal, ...(shutdown ? { shutdown } : {}) });
  }
  async waitForConsole(pattern: RegExp) {
    if (this.resets) {
      this.exit(0, null, 'guest-reset');
      throw new Error(`QEMU exited ({"code":0,"signal":null,"shutdown":"guest-reset"}) before the console showed ${pattern}`);
    }
    if (!this.behaviour.ready) throw new Error('no AURAE_READY on the console within 10 ms');
    const m = pattern.exec('AURAE_READY {"node":"aurae/web"}');
    if (!m) throw new Error('pattern mismatch');
    return m;
  }
  async waitForExit(timeoutMs: number) {
    const timeout = new Promise<never>((_, r) => setTimeout(() => r(new Error(`QEMU did not exit within ${timeoutMs} ms`)), timeoutMs));
    return Promise.race([this.exited, timeout]);
  }
  async qmp() {
    return {
      systemPowerdown: async () => {
        this.powerdowns++;
        if (this.behaviour.obeysPowerdown) setTimeout(() => this.exit(0), 1);
      },
      quit: async () => {
        this.quits++;
        this.exit(0);
      },
    };
  }
  async kill() {
    this.quits++;
    this.exit(null, 'SIGKILL');
    return this.exited;
  }
  tail() {
    return this.behaviour.console ?? '(console)';
  }
}

export interface FakeBehaviour {
  ready: boolean;
  obeysPowerdown: boolean;
  /** How many launches, from the first, reset while booting. */
  bootResets?: number;
  /** What tail() shows. */
  console?: string;
}

export function harness(overrides: Partial<VmRuntimeDeps> = {}, behaviour: FakeBehaviour = { ready: true, obeysPowerdown: true }) {
  const launched: FakeVm[] = [];
  const files = new Map<string, { data: Buffer; mode: string }>();
  const events: VmEvent[] = [];
  let port = 40000;
  const guest: GuestAdapter = {
    mintChildIdentity: async (label) => ({ nodePath: `aurae/${label}`, tlsName: `${label}.aurae`, serverCertChainPem: 'CERT', serverKeyPem: 'KEY' }),
    payloadBytes: (child) => JSON.stringify({ node: child.nodePath, key: child.serverKeyPem }),
  };
  const store = memoryVmStore();
  const deps: VmRuntimeDeps = {
    nodePath: 'aurae',
    limits: { maxMemoryMiB: 1024, maxDepth: 2, bootTimeoutMs: 1000, stopTimeoutMs: 50 },
    kernel: '/img/vmlinuz',
    initrd: '/img/initramfs',
    stateDir: '/state/vms',
    guestPort: 8443,
    guest,
    launch: async (spec) => {
      const vm = new FakeVm(spec, 1000 + launched.length, behaviour, launched.length < (behaviour.bootResets ?? 0));
      launched.push(vm);
      return vm;
    },
    accel: () => 'tcg',
    freePort: async () => ++port,
    files: {
      exists: (p) => p.startsWith('/img/'),
      mkdirPrivate: () => undefined,
      writePrivate: (p, d) => void files.set(p, { data: Buffer.from(d), mode: '0600' }),
      remove: (p) => {
        for (const k of [...files.keys()]) if (k.startsWith(p)) files.delete(k);
      },
    },
    confine: async () => false,
    onEvent: (e) => void events.push(e),
    log: silentLogger,
    sleep: async () => undefined,
    store,
    ...overrides,
  };
  return { runtime: new VmRuntime(deps), launched, files, events, store: (deps.store ?? store) as typeof store, deps };
}

/** A process table as reconcile sees it: pid → argv (absent: no such process), with QMP and SIGKILL effects. */
export class FakeProcesses implements LeftoverControl {
  readonly table = new Map<number, string[]>();
  readonly killed: number[] = [];
  readonly quitSockets: string[] = [];
  /** Pids whose QEMU ignores QMP quit (only SIGKILL ends them). */
  readonly ignoresQuit = new Set<number>();
  /** Pids that survive even SIGKILL (e.g. EPERM, or a D-state process). */
  readonly unkillable = new Set<number>();

  cmdline(pid: number): string[] | null {
    return this.table.get(pid) ?? null;
  }
  async qmpQuit(socket: string): Promise<boolean> {
    this.quitSockets.push(socket);
    for (const [pid, argv] of this.table) {
      if (!argv.some((a) => a.startsWith(`unix:${socket}`))) continue;
      if (this.ignoresQuit.has(pid)) return true; // answered, but keeps running
      this.table.delete(pid);
      return true;
    }
    return false; // nobody listening on that socket
  }
  kill(pid: number): void {
    this.killed.push(pid);
    if (!this.unkillable.has(pid)) this.table.delete(pid);
  }
  async sleep(): Promise<void> {}
}

/** argv of the QEMU the runtime starts for VM `name` under the harness's state dir. */
export function qemuArgv(name: string, stateDir = '/state/vms'): string[] {
  return ['/usr/bin/qemu-system-x86_64', '-M', 'microvm', '-qmp', `unix:${stateDir}/${name}/qmp.sock,server=on,wait=off`, '-nographic'];
}
