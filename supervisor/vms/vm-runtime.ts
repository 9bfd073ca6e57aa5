// The VM core: the table of child VMs and their lifecycle. Spawn = allocate + start: mint the child's identity,
// write its payload (0600) under the state dir, boot QEMU from the node's own kernel and initramfs, wait for the
// child's AURAE_READY line, record its address. Every side effect goes through VmRuntimeDeps, so the logic is
// unit-tested with fakes and the priv test runs it for real. Each VM's request, desired state and current QEMU
// pid are written to the store, so a restarted auraed reconciles (init) instead of forgetting its children.
import { guestPayloadPartName, guestPayloadParts } from '../../guest/payload';
import { AuraeError, isAuraeError } from '../errors';
import type { VmStatus as ProtoVmStatus } from '../gen/aurae/vms/v0/vms';
import { READY_LINE } from '../ipc';
import type { Logger } from '../log';
import type { VmLifecycleEvent } from '../observe';
import type { ChildRoot } from './child-root';
import type { VmExit } from './launch';
import type { Accel, VmSpec } from './qemu-args';
import type { QmpClient } from './qmp';
import {
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
import type { LeftoverControl } from './vm-leftovers';
import { type VmReconcileAction, isLeftoverQemu, restoredState, vmReconcilePlan } from './vm-reconcile';
import { type StoredVm, type VmExitRecord, type VmStore, memoryVmStore } from './vm-store';

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
  mintChildIdentity(childLabel: string, depthLeft: number): Promise<ChildIdentity>;
  /** The payload's text for this child (handed over as fw_cfg parts, guest/ guestPayloadParts). */
  payloadBytes(child: ChildIdentity): Buffer | string;
}

/** The part of a launched QEMU the core uses (supervisor/vms launch.ts Vm; a fake in unit tests). */
export interface VmProcess {
  readonly process: { pid?: number };
  readonly exited: Promise<VmExit>;
  readonly running: boolean;
  waitForConsole(pattern: RegExp, timeoutMs: number, from?: number): Promise<RegExpExecArray>;
  waitForExit(timeoutMs: number): Promise<VmExit>;
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
  /** The node's boot volume, given to children read-only (vms.bootDisk resolved); null: none. */
  bootDisk?: string | null;
  /** Where per-VM files go (payload, QMP socket): <state.dir>/vms. */
  stateDir: string;
  /** The guest API port the child listens on (8443). */
  guestPort: number;
  guest: GuestAdapter | null;
  launch(spec: VmSpec, onConsoleLine: (line: string) => void): Promise<VmProcess>;
  /** The child root for an initramfs (child-root.ts childRootFor); absent or null: children boot the whole initramfs. */
  childRoot?(initrd: string): ChildRoot | null;
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
  /** Remove the VM's (empty) cell when the VM is freed; absent: nothing to remove. */
  unconfine?(name: string): void;
  /** Lifecycle notifications (vm_started, vm_exited, vm_restarted, vm_failed) for logs and observe. */
  onEvent?(event: VmEvent): void;
  log: Logger;
  /** Timers, injected so tests need not wait for restart backoff. */
  sleep?(ms: number): Promise<void>;
  /** Where VMs are persisted (SQLite in auraed); default: in memory, forgotten with this process. */
  store?: VmStore;
  /** How reconcile inspects and stops a previous auraed's QEMU processes; without it none are looked for. */
  leftovers?: LeftoverControl;
}

/** The observe event of a VM (supervisor/observe types: the same union the event stream carries). */
export type VmEvent = VmLifecycleEvent;

/** What List shows (observed): the API's VmStatus, with the validated request and the state by name. */
export interface VmStatus extends Omit<ProtoVmStatus, 'vm' | 'state'> {
  request: VmRequest;
  state: VmState;
}

interface VmEntry {
  status: VmStatus;
  process: VmProcess | null;
  /** Set while a stop was asked for, so the exit is not a crash. */
  stopRequested: boolean;
  /** Serialises start/stop/free on one VM. */
  busy: boolean;
  /** What the owner asked for (spawn/start: true, stop: false); a parent shutdown keeps it. Persisted. */
  desiredRunning: boolean;
  /** The QMP socket of the current (or last) run: reconcile's check that a recorded pid is still this QEMU. */
  qmpSocket: string;
  /** How the last run ended, for the restart decision after an auraed restart. */
  exit: VmExitRecord | null;
  /**
   * The server certificate (chain) minted for the current run: the router accepts this one only, so an old
   * incarnation's certificate (a freed or re-spawned VM) is refused. '' before the first boot.
   */
  serverCertPem: string;
}

/** How long reconcile polls for a previous auraed's QEMU to be gone after a signal or QMP quit. */
/** Console lines kept with a VM that did not become ready (in the error and the node's log). */
const CONSOLE_TAIL_LINES = 40;
/**
 * Boots of one start, when a child resets itself before it is ready with no kernel panic on its console: a triple
 * fault. That is seen, rarely, with KVM inside an emulated CPU (QEMU's TCG emulates AMD-V), and the same boot
 * then succeeds. A panic (the child's command line has panic=-1, so it too ends as a reset) is not retried.
 */
const BOOT_ATTEMPTS = 3;
const LEFTOVER_POLL_MS = 50;
const LEFTOVER_KILL_WAIT_MS = 2000;

export class VmRuntime {
  private readonly vms = new Map<string, VmEntry>();
  private readonly store: VmStore;
  private closing = false;

  constructor(private readonly deps: VmRuntimeDeps) {
    this.store = deps.store ?? memoryVmStore();
  }

  list(): VmStatus[] {
    return [...this.vms.values()].map((e) => ({ ...e.status, request: { ...e.status.request } })).sort((a, b) => a.request.name.localeCompare(b.request.name));
  }

  get(name: string): VmStatus {
    return { ...this.entry(name).status };
  }

  /** The address and TLS name of a running child, for routing. NOT_FOUND / UNAVAILABLE otherwise. */
  route(name: string): { address: string; tlsName: string; nodePath: string; serverCertPem: string } {
    const entry = this.vms.get(name);
    if (!entry) throw new AuraeError('NOT_FOUND', `node "${this.deps.nodePath}" has no child "${name}": list them with \`aer vm list\``);
    if (entry.status.state !== 'running') {
      throw new AuraeError('UNAVAILABLE', `child "${entry.status.nodePath}" is ${entry.status.state}, not running: start it with \`aer vm start ${name}\``);
    }
    return { address: entry.status.address, tlsName: entry.status.tlsName, nodePath: entry.status.nodePath, serverCertPem: entry.serverCertPem };
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
      desiredRunning: false,
      qmpSocket: '',
      exit: null,
      serverCertPem: '',
    };
    // Stored first: a VM the store cannot hold would be forgotten by the next auraed, so it is refused now.
    try {
      this.store.put(storedVm(entry));
    } catch (err) {
      throw new AuraeError('UNAVAILABLE', `vm "${request.name}": writing it to the state database failed: ${(err as Error).message}: is the state directory writable?`);
    }
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
      this.forget(request.name);
      this.deps.files.remove(this.vmDir(request.name));
      throw err;
    }
  }

  async start(name: string): Promise<VmStatus> {
    const entry = this.entry(name);
    if (this.closing) throw new AuraeError('UNAVAILABLE', 'auraed is shutting down: no new VMs start');
    if (entry.busy || isActive(entry.status.state)) throw new AuraeError('FAILED_PRECONDITION', `vm "${name}" is ${entry.status.state}: stop it first`);
    entry.busy = true;
    // An explicit start is a fresh chance: the restart policy counts again from zero.
    entry.desiredRunning = true;
    entry.status.restarts = 0;
    this.save(entry);
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
    // Also for a crashed VM waiting for its restart: the owner wants it down, so the restart is called off.
    entry.desiredRunning = false;
    this.save(entry);
    if (!entry.process || !isActive(entry.status.state)) return { ...entry.status };
    await this.halt(entry, timeoutMs);
    return { ...entry.status };
  }

  /** Remove a stopped VM. FAILED_PRECONDITION while it runs. */
  free(name: string): void {
    const entry = this.entry(name);
    if (entry.busy || isActive(entry.status.state)) throw new AuraeError('FAILED_PRECONDITION', `vm "${name}" is ${entry.status.state}: stop it first (\`aer vm stop ${name}\`)`);
    this.vms.delete(name);
    this.forget(name);
    this.deps.files.remove(this.vmDir(name));
    this.deps.unconfine?.(name);
  }

  /**
   * Parent shutdown: no new starts, stop every child (in parallel, each gracefully). What the owners asked for
   * stays stored, so the children that were running start again with the next auraed (see init).
   */
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
    let identity: ChildIdentity;
    let payload: { name: string; file: string }[];
    try {
      identity = await guest.mintChildIdentity(request.name, depthLeft);
      deps.files.mkdirPrivate(dir);
      payload = guestPayloadParts(guest.payloadBytes(identity)).map((bytes, i) => {
        const file = `${dir}/payload.${i}`;
        deps.files.writePrivate(file, bytes);
        return { name: guestPayloadPartName(i), file };
      });
    } catch (err) {
      if (isAuraeError(err)) throw err;
      throw new AuraeError('FAILED_PRECONDITION', `vm "${request.name}": preparing the child's identity and payload failed: ${(err as Error).message}`);
    }
    const hostPort = await deps.freePort();
    const root = this.childRoot();
    const spec = childVmSpec(request, {
      kernel: deps.kernel,
      initrd: root?.initrd ?? deps.initrd,
      rootDisk: root?.rootDisk ?? null,
      bootDisk: deps.bootDisk ?? null,
      accel: deps.accel(),
      hostPort,
      guestPort: deps.guestPort,
      qmpSocket: `${dir}/qmp.sock`,
      payload,
    });
    // Checked again here: a restart or a reconcile start may have waited while the parent began shutting down.
    if (this.closing) throw new AuraeError('UNAVAILABLE', `vm "${request.name}": auraed is shutting down: not started`);
    entry.qmpSocket = spec.qmpSocket ?? '';
    this.transition(entry, 'starting');
    entry.stopRequested = false;
    entry.status.tlsName = identity.tlsName;
    entry.serverCertPem = identity.serverCertChainPem;
    const log = deps.log.child({ vm: request.name });
    let vm: VmProcess;
    let ready: RegExpExecArray;
    for (let attempt = 1; ; attempt++) {
      vm = await this.launchConfined(entry, spec, log);
      try {
        ready = await vm.waitForConsole(READY_LINE, deps.limits.bootTimeoutMs);
        break;
      } catch (err) {
        entry.stopRequested = true;
        await vm.kill();
        const exit = await vm.exited;
        const message = (err as Error).message.split('\n')[0]!;
        const tail = vm.tail(CONSOLE_TAIL_LINES);
        const again = attempt < BOOT_ATTEMPTS && resetWithoutPanic(exit, tail) && entry.desiredRunning && !this.closing;
        // The console's last lines go to the node's log: the error's text may be cut on its way to a client.
        log.warn(again ? 'vm reset itself while booting, with no kernel panic on its console: booting it again' : 'vm did not become ready; its console follows', {
          reason: message,
          attempt,
          attempts: BOOT_ATTEMPTS,
        });
        for (const line of tail.split('\n')) log.warn('console', { line });
        if (again) {
          entry.stopRequested = false;
          continue;
        }
        this.transition(entry, 'failed');
        entry.status.lastExit = message;
        this.save(entry);
        const tries = attempt > 1 ? ` (boot attempt ${attempt}; the earlier ones reset without a panic)` : '';
        throw new AuraeError('UNAVAILABLE', `vm "${request.name}" did not become ready${tries}: ${message}; console tail:\n${tail}`);
      }
    }
    if (entry.status.state !== 'starting') {
      throw new AuraeError('UNAVAILABLE', `vm "${request.name}" exited while starting: ${entry.status.lastExit}`);
    }
    entry.status.address = `127.0.0.1:${hostPort}`;
    this.transition(entry, 'running');
    log.info('vm running', { pid: entry.status.pid, address: entry.status.address, nodePath: entry.status.nodePath, accel: spec.accel, ready: ready[1] });
    deps.onEvent?.({ kind: 'vm_started', vm: request.name, pid: entry.status.pid, address: entry.status.address });
    // A stop that came while QEMU was being launched found no process to stop: honour it now.
    if (!entry.desiredRunning && !this.closing) {
      log.info('a stop was requested while the vm booted; stopping it now');
      await this.halt(entry, deps.limits.stopTimeoutMs);
    }
  }

  /** Start QEMU for the spec, record its pid, put it in its cell and watch its exit; a failure leaves the entry failed. */
  private async launchConfined(entry: VmEntry, spec: VmSpec, log: Logger): Promise<VmProcess> {
    const { deps } = this;
    const { request } = entry.status;
    let vm: VmProcess;
    try {
      vm = await deps.launch(spec, (line) => log.debug('console', { line }));
    } catch (err) {
      this.transition(entry, 'failed');
      entry.status.lastExit = `QEMU did not start: ${(err as Error).message}`;
      this.save(entry);
      throw new AuraeError('FAILED_PRECONDITION', `vm "${request.name}": ${(err as Error).message}`);
    }
    entry.process = vm;
    entry.status.pid = vm.process.pid ?? 0;
    // Recorded before anything else can fail: if auraed dies from here on, the next one finds this QEMU.
    this.save(entry);
    try {
      entry.status.confined = await deps.confine(request.name, entry.status.pid, { memoryMiB: request.memoryMiB, cpus: request.cpus });
    } catch (err) {
      await vm.kill();
      this.transition(entry, 'failed');
      entry.process = null;
      entry.status.pid = 0;
      this.save(entry);
      throw err;
    }
    if (!entry.status.confined) log.warn('QEMU runs without a cell: cgroup v2 is not available, so its memory and CPU are bounded only by QEMU itself', { pid: entry.status.pid });
    void vm.exited.then((exit) => this.onExit(entry, vm, exit));
    return vm;
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

  private onExit(entry: VmEntry, vm: VmProcess, exit: VmExit): void {
    if (entry.process !== vm) return;
    const name = entry.status.request.name;
    const expected = entry.stopRequested;
    entry.status.lastExit = describeExit(exit);
    entry.exit = { code: exit.code, signal: exit.signal };
    this.deps.onEvent?.({ kind: 'vm_exited', vm: name, pid: entry.status.pid, code: exit.code, signal: exit.signal, expected });
    if (expected) return this.settleStopped(entry, vm);
    if (entry.status.state === 'starting') return; // boot() reports it
    this.deps.log.warn('vm crashed', { vm: name, code: exit.code, signal: exit.signal, shutdown: exit.shutdown ?? null });
    entry.process = null;
    entry.status.pid = 0;
    entry.status.address = '';
    this.transition(entry, 'crashed');
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
    this.save(entry);
  }

  private async maybeRestart(entry: VmEntry, exit: { code: number | null; signal: string | null }): Promise<void> {
    const name = entry.status.request.name;
    if (this.closing || !entry.desiredRunning || !shouldRestart(entry.status.request.restart, exit)) return;
    if (entry.status.restarts >= MAX_RESTARTS) {
      this.transition(entry, 'failed');
      this.deps.onEvent?.({ kind: 'vm_failed', vm: name, reason: `restart limit (${MAX_RESTARTS}) reached` });
      return;
    }
    entry.status.restarts += 1;
    this.save(entry);
    const delayMs = restartDelayMs(entry.status.restarts);
    const sleep = this.deps.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms).unref()));
    await sleep(delayMs);
    // A stop (desired no longer running), a free, a start by hand or the parent's shutdown may have come first.
    if (this.closing || this.vms.get(name) !== entry || entry.status.state !== 'crashed' || entry.busy || !entry.desiredRunning) return;
    this.deps.onEvent?.({ kind: 'vm_restarted', vm: name, attempt: entry.status.restarts, delayMs });
    await this.bootInBackground(entry, 'restart');
  }

  /** Boot an entry nobody awaits (a restart, a reconcile start); a failure is logged and becomes vm_failed. */
  private async bootInBackground(entry: VmEntry, why: 'restart' | 'reconcile'): Promise<void> {
    const name = entry.status.request.name;
    if (entry.busy) return;
    entry.busy = true;
    try {
      await this.boot(entry);
    } catch (err) {
      const reason = (isAuraeError(err) ? err.message : String(err)).split('\n')[0]!;
      this.deps.log.warn(why === 'restart' ? 'vm restart failed' : 'vm did not start again after the auraed restart', { vm: name, err: reason });
      if (this.closing) return; // not a failure of the VM: its parent is going away
      // boot() may have failed before QEMU (e.g. a limit lowered in the config): the status says why, and a
      // crashed VM that cannot be restarted has failed.
      entry.status.lastExit = reason;
      if (entry.status.state === 'crashed') this.transition(entry, 'failed');
      this.save(entry);
      this.deps.onEvent?.({ kind: 'vm_failed', vm: name, reason });
    } finally {
      entry.busy = false;
    }
  }

  /**
   * Reconcile with what the previous auraed left (call once, before serving, and before any spawn): stop the
   * QEMU processes it left running (identified by the recorded pid AND its cmdline naming the VM's QMP socket),
   * restore every stored VM, and start again, in the background, those that should run. Returns the plan.
   */
  async init(): Promise<VmReconcileAction[]> {
    const { deps } = this;
    const stored = this.store.list();
    const processes = new Map<number, string[]>();
    for (const vm of stored) {
      const argv = vm.pid > 0 ? (deps.leftovers?.cmdline(vm.pid) ?? null) : null;
      if (argv) processes.set(vm.pid, argv);
    }
    const plan = vmReconcilePlan(stored, processes);
    const stopped = new Map<string, boolean>();
    await Promise.all(
      plan.map(async (action) => {
        if (action.kind === 'stop_leftover') stopped.set(action.vm, await this.stopLeftover(action));
        if (action.kind === 'ignore_pid') deps.log.warn('vm: not touching a recorded pid', { vm: action.vm, pid: action.pid, why: action.reason });
      }),
    );
    const starts: VmEntry[] = [];
    for (const action of plan) {
      if (action.kind !== 'restore') continue;
      const vm = stored.find((s) => s.request.name === action.vm)!;
      const entry = restoredEntry(vm, `${deps.nodePath}/${vm.request.name}`);
      if (stopped.has(vm.request.name)) entry.status.lastExit = 'QEMU of the previous auraed stopped when auraed started again';
      else if (entry.status.state !== vm.state) entry.status.lastExit = 'QEMU was gone when auraed started again';
      this.vms.set(vm.request.name, entry);
      this.save(entry);
      // A leftover that would not die keeps its resources: starting a second QEMU beside it would double them.
      if (action.start && stopped.get(vm.request.name) !== false) starts.push(entry);
      else if (action.start) deps.onEvent?.({ kind: 'vm_failed', vm: vm.request.name, reason: `QEMU of the previous auraed (pid ${vm.pid}) could not be stopped` });
    }
    if (plan.length) deps.log.info('vms reconciled', { actions: plan.map((a) => `${a.kind}:${a.vm}`), starting: starts.map((e) => e.status.request.name) });
    for (const entry of starts) void this.bootInBackground(entry, 'reconcile');
    return plan;
  }

  /** QMP quit through the recorded socket, wait; then SIGKILL, but only if the pid is still that QEMU. */
  private async stopLeftover(action: { vm: string; pid: number; qmpSocket: string }): Promise<boolean> {
    const leftovers = this.deps.leftovers!;
    const log = this.deps.log.child({ vm: action.vm });
    const isThatQemu = () => isLeftoverQemu(leftovers.cmdline(action.pid), action.qmpSocket);
    const gone = async (timeoutMs: number) => {
      for (let waited = 0; waited < timeoutMs && isThatQemu(); waited += LEFTOVER_POLL_MS) await leftovers.sleep(LEFTOVER_POLL_MS);
      return !isThatQemu();
    };
    log.info("stopping the previous auraed's QEMU", { pid: action.pid, qmp: action.qmpSocket });
    const quit = await leftovers.qmpQuit(action.qmpSocket, Math.min(this.deps.limits.stopTimeoutMs, 5000));
    if (quit && (await gone(this.deps.limits.stopTimeoutMs))) return true;
    // Checked right before the signal: the pid may have exited and been reused while we waited.
    if (isThatQemu()) {
      log.warn('QEMU did not quit through QMP; killing it', { pid: action.pid, qmpReached: quit });
      try {
        leftovers.kill(action.pid);
      } catch (err) {
        log.error('killing a leftover QEMU failed', { pid: action.pid, err: (err as Error).message });
      }
    }
    if (await gone(LEFTOVER_KILL_WAIT_MS)) return true;
    log.error('a QEMU of the previous auraed is still running; not starting this VM beside it', { pid: action.pid });
    return false;
  }

  private transition(entry: VmEntry, to: VmState): void {
    const from = entry.status.state;
    if (!canTransition(from, to)) throw new AuraeError('INTERNAL', `vm "${entry.status.request.name}": state ${from} → ${to} is not allowed`);
    entry.status.state = to;
    this.save(entry);
  }

  /** Write the entry's row (while it is still in the table). A failing write is logged: the VM runs on. */
  private save(entry: VmEntry): void {
    if (this.vms.get(entry.status.request.name) !== entry) return;
    try {
      this.store.put(storedVm(entry));
    } catch (err) {
      this.deps.log.error('vm state write failed; a restarted auraed may not know this VM as it is now', { vm: entry.status.request.name, err: (err as Error).message });
    }
  }

  private forget(name: string): void {
    try {
      this.store.delete(name);
    } catch (err) {
      this.deps.log.error('vm row delete failed; the next auraed will list it again', { vm: name, err: (err as Error).message });
    }
  }

  private entry(name: string): VmEntry {
    const entry = this.vms.get(name);
    if (!entry) throw new AuraeError('NOT_FOUND', `vm "${name}" does not exist on node "${this.deps.nodePath}": list them with \`aer vm list\``);
    return entry;
  }

  /** The root image as a disk and the stage initramfs (child-root.ts), or null: boot the whole initramfs. */
  private childRoot(): ChildRoot | null {
    if (!this.deps.childRoot) return null;
    try {
      return this.deps.childRoot(this.deps.initrd);
    } catch (err) {
      this.deps.log.warn('vm: cannot hand the root image over as a disk; the child boots the whole initramfs', { initrd: this.deps.initrd, err: (err as Error).message });
      return null;
    }
  }

  private vmDir(name: string): string {
    return `${this.deps.stateDir}/${name}`;
  }
}

function storedVm(entry: VmEntry): StoredVm {
  return {
    request: { ...entry.status.request },
    desiredRunning: entry.desiredRunning,
    state: entry.status.state,
    pid: entry.status.pid,
    qmpSocket: entry.qmpSocket,
    restarts: entry.status.restarts,
    lastExit: entry.status.lastExit,
    exit: entry.exit,
  };
}

/** A stored VM as the new auraed holds it: no process (reconcile stopped any leftover), the counters kept. */
function restoredEntry(vm: StoredVm, nodePath: string): VmEntry {
  return {
    status: {
      request: { ...vm.request },
      nodePath,
      state: restoredState(vm.state),
      address: '',
      tlsName: '',
      pid: 0,
      restarts: vm.restarts,
      lastExit: vm.lastExit,
      confined: false,
    },
    process: null,
    stopRequested: false,
    busy: false,
    desiredRunning: vm.desiredRunning,
    qmpSocket: vm.qmpSocket,
    exit: vm.exit,
    serverCertPem: '',
  };
}

/** An exit for status and logs: "QEMU exited with code 0 (the guest reset)" and the like. */
/** A reset before AURAE_READY that is not a kernel panic (which prints "Kernel panic" before its reboot). */
export function resetWithoutPanic(exit: VmExit, consoleTail: string): boolean {
  return exit.shutdown === 'guest-reset' && !/Kernel panic/.test(consoleTail);
}

export function describeExit(exit: VmExit): string {
  const how = exit.signal ? `QEMU killed by ${exit.signal}` : `QEMU exited with code ${exit.code}`;
  return exit.shutdown ? `${how} (QMP shutdown reason: ${exit.shutdown})` : how;
}
