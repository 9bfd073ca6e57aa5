// The VM core: the table of child VMs and their lifecycle. Spawn = allocate + start: mint the child's identity,
// write its payload (0600) under the state dir, boot QEMU from the node's own kernel and initramfs, wait for the
// child's AURAE_READY line, record its address. Every side effect goes through VmRuntimeDeps, so the logic is
// unit-tested with fakes and the priv test runs it for real.
import { AuraeError, isAuraeError } from '../errors';
import type { Logger } from '../log';
import type { Accel, VmSpec } from './qemu-args';
import type { QmpClient } from './qmp';
import {
  AURAE_READY_LINE,
  canTransition,
  checkSpawnDepth,
  childVmSpec,
  isActive,
  nodeDepth,
  MAX_RESTARTS,
  restartDelayMs,
  shouldRestart,
  type VmRequest,
  type VmState,
} from './vm-model';

/** The identity the parent mints for a child (guest/ mintChildIdentity). */
export interface ChildIdentity {
  nodePath: string;
  tlsName: string;
  serverCertChainPem: string;
  serverKeyPem: string;
  spawnCa?: { certPem: string; keyPem: string };
}

/** How the node makes a child's identity and payload (guest/). */
export interface GuestAdapter {
  /** fw_cfg name the child's init reads its payload from (GUEST_PAYLOAD_FW_CFG). */
  payloadName: string;
  mintChildIdentity(childLabel: string, depthLeft: number): Promise<ChildIdentity>;
  /** The payload file's bytes for this child. */
  payloadBytes(child: ChildIdentity): Buffer | string;
}

/** The part of a launched QEMU the core uses (supervisor/vms launch.ts Vm; a fake in unit tests). */
export interface VmProcess {
  readonly process: { pid?: number };
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly running: boolean;
  waitForConsole(pattern: RegExp, timeoutMs: number, from?: number): Promise<RegExpExecArray>;
  waitForExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  qmp(): Promise<Pick<QmpClient, 'systemPowerdown' | 'quit'>>;
  kill(): Promise<unknown>;
  tail(n?: number): string;
}

export interface VmRuntimeDeps {
  /** This node's path, e.g. "aurae" (a child's own children are "aurae/web/…"). */
  nodePath: string;
  limits: { maxMemoryMiB: number; maxDepth: number; bootTimeoutMs: number; stopTimeoutMs: number };
  kernel: string;
  initrd: string;
  /** Where per-VM files go (payload, QMP socket): <state.dir>/vms. */
  stateDir: string;
  /** The guest API port the child listens on (8443). */
  guestPort: number;
  guest: GuestAdapter | null;
  launch(spec: VmSpec, onConsoleLine: (line: string) => void): Promise<VmProcess>;
  accel(): Accel;
  freePort(): Promise<number>;
  files: {
    exists(path: string): boolean;
    /** mkdir -p with mode 0700. */
    mkdirPrivate(path: string): void;
    /** Write with mode 0600 (the payload holds the child's private key). */
    writePrivate(path: string, data: Buffer | string): void;
    remove(path: string): void;
  };
  /**
   * Put QEMU's pid into a cgroup-bounded cell for this VM. Resolves false (and the VM runs unconfined, with
   * a warning) when cgroup v2 is not available on this node.
   */
  confine(name: string, pid: number, limits: { memoryMiB: number; cpus: number }): Promise<boolean>;
  /** Lifecycle notifications (vm_started, vm_exited, vm_restarted, vm_failed) for logs and observe. */
  onEvent?(event: VmEvent): void;
  log: Logger;
  /** Timers, injected so tests need not wait for restart backoff. */
  sleep?(ms: number): Promise<void>;
}

export type VmEvent =
  | { kind: 'vm_started'; vm: string; pid: number; address: string }
  | { kind: 'vm_exited'; vm: string; code: number | null; signal: string | null; expected: boolean }
  | { kind: 'vm_restarted'; vm: string; attempt: number }
  | { kind: 'vm_failed'; vm: string; reason: string };

/** What List shows (observed). */
export interface VmStatus {
  request: VmRequest;
  nodePath: string;
  state: VmState;
  address: string;
  tlsName: string;
  pid: number;
  restarts: number;
  lastExit: string;
  confined: boolean;
}

interface VmEntry {
  status: VmStatus;
  process: VmProcess | null;
  /** Set while a stop was asked for, so the exit is not a crash. */
  stopRequested: boolean;
  /** Serialises start/stop/free on one VM. */
  busy: boolean;
}

export class VmRuntime {
  private readonly vms = new Map<string, VmEntry>();
  private closing = false;

  constructor(private readonly deps: VmRuntimeDeps) {}

  list(): VmStatus[] {
    return [...this.vms.values()].map((e) => ({ ...e.status, request: { ...e.status.request } })).sort((a, b) => a.request.name.localeCompare(b.request.name));
  }

  get(name: string): VmStatus {
    return { ...this.entry(name).status };
  }

  /** The address and TLS name of a running child, for routing. NOT_FOUND / UNAVAILABLE otherwise. */
  route(name: string): { address: string; tlsName: string; nodePath: string } {
    const entry = this.vms.get(name);
    if (!entry) throw new AuraeError('NOT_FOUND', `node "${this.deps.nodePath}" has no child "${name}": list them with \`aer vm list\``);
    if (entry.status.state !== 'running') {
      throw new AuraeError('UNAVAILABLE', `child "${entry.status.nodePath}" is ${entry.status.state}, not running: start it with \`aer vm start ${name}\``);
    }
    return { address: entry.status.address, tlsName: entry.status.tlsName, nodePath: entry.status.nodePath };
  }

  /** Define a VM. Checks everything a start would need up front, so a bad request never starts QEMU. */
  allocate(request: VmRequest): VmStatus {
    this.checkSpawnable(request);
    if (this.vms.has(request.name)) throw new AuraeError('ALREADY_EXISTS', `vm "${request.name}" already exists: free it first or pick another name`);
    const nodePath = `${this.deps.nodePath}/${request.name}`;
    const entry: VmEntry = {
      status: { request, nodePath, state: 'allocated', address: '', tlsName: '', pid: 0, restarts: 0, lastExit: '', confined: false },
      process: null,
      stopRequested: false,
      busy: false,
    };
    this.vms.set(request.name, entry);
    return { ...entry.status };
  }

  /** Allocate + start; a failed start frees the definition again (nothing is left behind). */
  async spawn(request: VmRequest): Promise<VmStatus> {
    this.allocate(request);
    try {
      return await this.start(request.name);
    } catch (err) {
      this.vms.delete(request.name);
      this.deps.files.remove(this.vmDir(request.name));
      throw err;
    }
  }

  async start(name: string): Promise<VmStatus> {
    const entry = this.entry(name);
    if (this.closing) throw new AuraeError('UNAVAILABLE', 'auraed is shutting down: no new VMs start');
    if (entry.busy || isActive(entry.status.state)) throw new AuraeError('FAILED_PRECONDITION', `vm "${name}" is ${entry.status.state}: stop it first`);
    entry.busy = true;
    try {
      await this.boot(entry);
      return { ...entry.status };
    } finally {
      entry.busy = false;
    }
  }

  /** Graceful stop: ACPI powerdown, wait stopTimeoutMs, QMP quit, then SIGKILL. Resolves once QEMU exited. */
  async stop(name: string, timeoutMs = this.deps.limits.stopTimeoutMs): Promise<VmStatus> {
    const entry = this.entry(name);
    if (!entry.process || !isActive(entry.status.state)) return { ...entry.status };
    await this.halt(entry, timeoutMs);
    return { ...entry.status };
  }

  /** Remove a stopped VM. FAILED_PRECONDITION while it runs. */
  free(name: string): void {
    const entry = this.entry(name);
    if (entry.busy || isActive(entry.status.state)) throw new AuraeError('FAILED_PRECONDITION', `vm "${name}" is ${entry.status.state}: stop it first (\`aer vm stop ${name}\`)`);
    this.vms.delete(name);
    this.deps.files.remove(this.vmDir(name));
  }

  /** Parent shutdown: no new starts, stop every child (in parallel, each gracefully). */
  async close(timeoutMs = this.deps.limits.stopTimeoutMs): Promise<void> {
    this.closing = true;
    await Promise.all(
      [...this.vms.values()].filter((e) => e.process && isActive(e.status.state)).map((e) => this.halt(e, timeoutMs).catch(() => undefined)),
    );
  }

  private checkSpawnable(request: VmRequest): void {
    const { limits } = this.deps;
    checkSpawnDepth(this.deps.nodePath, limits.maxDepth);
    if (request.memoryMiB > limits.maxMemoryMiB) {
      throw new AuraeError('INVALID_ARGUMENT', `vm "${request.name}": memory_mib ${request.memoryMiB} exceeds vms.maxMemoryMiB ${limits.maxMemoryMiB}`);
    }
    for (const [what, file] of [['vms.kernel', this.deps.kernel], ['vms.initrd', this.deps.initrd]] as const) {
      if (!this.deps.files.exists(file)) {
        throw new AuraeError('FAILED_PRECONDITION', `cannot spawn "${request.name}": ${what} ${file} does not exist: the node's own boot artifacts are missing (set ${what} in the node config)`);
      }
    }
    if (!this.deps.guest) {
      throw new AuraeError('FAILED_PRECONDITION', `cannot spawn "${request.name}": this node has no spawn CA (pki.spawnCaCert/spawnCaKey) to mint the child's identity`);
    }
  }

  private async boot(entry: VmEntry): Promise<void> {
    const { deps } = this;
    const { request } = entry.status;
    this.checkSpawnable(request);
    const guest = deps.guest!;
    // Levels this node may still create below itself (guest/ depthLeftOf): at least 1 here (checked above).
    const depthLeft = deps.limits.maxDepth - nodeDepth(deps.nodePath);
    const dir = this.vmDir(request.name);
    const payloadFile = `${dir}/payload.json`;
    let identity: ChildIdentity;
    try {
      identity = await guest.mintChildIdentity(request.name, depthLeft);
      deps.files.mkdirPrivate(dir);
      deps.files.writePrivate(payloadFile, guest.payloadBytes(identity));
    } catch (err) {
      if (isAuraeError(err)) throw err;
      throw new AuraeError('FAILED_PRECONDITION', `vm "${request.name}": preparing the child's identity and payload failed: ${(err as Error).message}`);
    }
    const hostPort = await deps.freePort();
    const spec = childVmSpec(request, {
      kernel: deps.kernel,
      initrd: deps.initrd,
      accel: deps.accel(),
      hostPort,
      guestPort: deps.guestPort,
      qmpSocket: `${dir}/qmp.sock`,
      payloadFile,
      payloadName: guest.payloadName,
    });
    this.transition(entry, 'starting');
    entry.stopRequested = false;
    entry.status.tlsName = identity.tlsName;
    const log = deps.log.child({ vm: request.name });
    let vm: VmProcess;
    try {
      vm = await deps.launch(spec, (line) => log.debug('console', { line }));
    } catch (err) {
      this.transition(entry, 'failed');
      entry.status.lastExit = `QEMU did not start: ${(err as Error).message}`;
      throw new AuraeError('FAILED_PRECONDITION', `vm "${request.name}": ${(err as Error).message}`);
    }
    entry.process = vm;
    entry.status.pid = vm.process.pid ?? 0;
    try {
      entry.status.confined = await deps.confine(request.name, entry.status.pid, { memoryMiB: request.memoryMiB, cpus: request.cpus });
    } catch (err) {
      await vm.kill();
      this.transition(entry, 'failed');
      entry.process = null;
      entry.status.pid = 0;
      throw err;
    }
    if (!entry.status.confined) log.warn('QEMU runs without a cell: cgroup v2 is not available, so its memory and CPU are bounded only by QEMU itself', { pid: entry.status.pid });
    void vm.exited.then((exit) => this.onExit(entry, vm, exit));
    let ready: RegExpExecArray;
    try {
      ready = await vm.waitForConsole(AURAE_READY_LINE, deps.limits.bootTimeoutMs);
    } catch (err) {
      entry.stopRequested = true;
      await vm.kill();
      await vm.exited;
      this.transition(entry, 'failed');
      entry.status.lastExit = 'no AURAE_READY within the boot timeout';
      const message = (err as Error).message.split('\n')[0];
      throw new AuraeError('UNAVAILABLE', `vm "${request.name}" did not become ready: ${message}; console tail:\n${vm.tail(20)}`);
    }
    if (entry.status.state !== 'starting') {
      throw new AuraeError('UNAVAILABLE', `vm "${request.name}" exited while starting: ${entry.status.lastExit}`);
    }
    entry.status.address = `127.0.0.1:${hostPort}`;
    this.transition(entry, 'running');
    log.info('vm running', { pid: entry.status.pid, address: entry.status.address, nodePath: entry.status.nodePath, ready: ready[1] });
    deps.onEvent?.({ kind: 'vm_started', vm: request.name, pid: entry.status.pid, address: entry.status.address });
  }

  private async halt(entry: VmEntry, timeoutMs: number): Promise<void> {
    const vm = entry.process!;
    const name = entry.status.request.name;
    entry.stopRequested = true;
    if (canTransition(entry.status.state, 'stopping')) this.transition(entry, 'stopping');
    const log = this.deps.log.child({ vm: name });
    try {
      const qmp = await vm.qmp();
      await qmp.systemPowerdown();
      await vm.waitForExit(timeoutMs);
      log.info('vm stopped gracefully (ACPI powerdown)');
    } catch (err) {
      log.warn('vm did not power down in time; quitting QEMU', { timeoutMs, err: (err as Error).message.split('\n')[0] });
      await vm.kill(); // QMP quit, then SIGKILL
    }
    await vm.exited;
    // onExit runs from the exited promise; make sure the state is final before returning.
    this.settleStopped(entry, vm);
  }

  private onExit(entry: VmEntry, vm: VmProcess, exit: { code: number | null; signal: string | null }): void {
    if (entry.process !== vm) return;
    const name = entry.status.request.name;
    const expected = entry.stopRequested;
    entry.status.lastExit = exit.signal ? `QEMU killed by ${exit.signal}` : `QEMU exited with code ${exit.code}`;
    this.deps.onEvent?.({ kind: 'vm_exited', vm: name, code: exit.code, signal: exit.signal, expected });
    if (expected) return this.settleStopped(entry, vm);
    if (entry.status.state === 'starting') return; // boot() reports it
    this.deps.log.warn('vm crashed', { vm: name, code: exit.code, signal: exit.signal });
    this.transition(entry, 'crashed');
    entry.process = null;
    entry.status.pid = 0;
    entry.status.address = '';
    void this.maybeRestart(entry, exit);
  }

  private settleStopped(entry: VmEntry, vm: VmProcess): void {
    if (entry.process !== vm) return;
    entry.process = null;
    entry.status.pid = 0;
    entry.status.address = '';
    if (entry.status.state === 'starting') return;
    if (entry.status.state !== 'stopped') {
      if (canTransition(entry.status.state, 'stopping')) this.transition(entry, 'stopping');
      this.transition(entry, 'stopped');
    }
  }

  private async maybeRestart(entry: VmEntry, exit: { code: number | null; signal: string | null }): Promise<void> {
    const name = entry.status.request.name;
    if (this.closing || !shouldRestart(entry.status.request.restart, exit)) return;
    if (entry.status.restarts >= MAX_RESTARTS) {
      this.transition(entry, 'failed');
      this.deps.onEvent?.({ kind: 'vm_failed', vm: name, reason: `restart limit (${MAX_RESTARTS}) reached` });
      return;
    }
    entry.status.restarts += 1;
    const sleep = this.deps.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms).unref()));
    await sleep(restartDelayMs(entry.status.restarts));
    if (this.closing || this.vms.get(name) !== entry || entry.status.state !== 'crashed' || entry.busy) return;
    this.deps.onEvent?.({ kind: 'vm_restarted', vm: name, attempt: entry.status.restarts });
    entry.busy = true;
    try {
      await this.boot(entry);
    } catch (err) {
      this.deps.log.warn('vm restart failed', { vm: name, err: isAuraeError(err) ? err.message.split('\n')[0] : String(err) });
    } finally {
      entry.busy = false;
    }
  }

  private transition(entry: VmEntry, to: VmState): void {
    const from = entry.status.state;
    if (!canTransition(from, to)) throw new AuraeError('INTERNAL', `vm "${entry.status.request.name}": state ${from} → ${to} is not allowed`);
    entry.status.state = to;
  }

  private entry(name: string): VmEntry {
    const entry = this.vms.get(name);
    if (!entry) throw new AuraeError('NOT_FOUND', `vm "${name}" does not exist on node "${this.deps.nodePath}": list them with \`aer vm list\``);
    return entry;
  }

  private vmDir(name: string): string {
    return `${this.deps.stateDir}/${name}`;
  }
}
