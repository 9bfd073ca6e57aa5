// Reconcile of child VMs on auraed start, as a plan (pure): the stored VMs against the processes now behind
// their recorded pids → an ordered list of actions.
//   1. stop leftovers: a QEMU the previous auraed started is still running (its console pipe and its place in
//      the VM table died with that auraed, so it is not ours to adopt); it is stopped before anything starts.
//      A recorded pid is trusted only when /proc/PID/cmdline is QEMU AND names that VM's QMP socket: pids are
//      reused, and a pid that now belongs to anything else is never signalled.
//   2. restore every stored VM; start again (spawned anew, with a fresh identity and port) those that should
//      run: desired running, and not given up (failed, or crashed without a restart due under its policy).
import { MAX_RESTARTS, type VmState, shouldRestart } from './vm-model';
import type { StoredVm } from './vm-store';

export type VmReconcileAction =
  | { kind: 'stop_leftover'; vm: string; pid: number; qmpSocket: string }
  | { kind: 'ignore_pid'; vm: string; pid: number; reason: string }
  | { kind: 'restore'; vm: string; start: boolean };

/** States in which the previous auraed had (or was about to have) a QEMU process for the VM. */
const WAS_ACTIVE: ReadonlySet<VmState> = new Set(['starting', 'running', 'stopping']);

/** Options of the dynamic loader (ld.so) that take a value, as in `ld-linux-x86-64.so.2 --library-path DIR prog`. */
const LOADER_VALUE_OPTIONS: ReadonlySet<string> = new Set(['--library-path', '--preload', '--argv0', '--audit', '--glibc-hwcaps-prepend', '--glibc-hwcaps-mask']);

const basename = (path: string) => path.slice(path.lastIndexOf('/') + 1);

/**
 * The program a command line runs: argv[0], or — when argv[0] is the dynamic loader, as for the QEMU the boot
 * volume ships (`exec …/ld-linux-x86-64.so.2 --library-path …/lib …/bin/qemu-system-x86_64 …`) — the program
 * after the loader's options. Returns its index, or -1.
 */
export function programIndex(argv: readonly string[]): number {
  if (argv.length === 0) return -1;
  if (!/^ld-.*\.so(\.\d+)*$/.test(basename(argv[0]!))) return 0;
  let i = 1;
  while (i < argv.length && argv[i]!.startsWith('--')) i += LOADER_VALUE_OPTIONS.has(argv[i]!) ? 2 : 1;
  return i < argv.length ? i : -1;
}

/**
 * Whether `argv` (a /proc/PID/cmdline) is a QEMU started for the VM whose QMP socket is `qmpSocket`: the
 * program is qemu-system-* (directly or through the dynamic loader) and its `-qmp` argument is that socket
 * (qemuArgs writes `unix:<path>,server=on,…`).
 */
export function isLeftoverQemu(argv: readonly string[] | null | undefined, qmpSocket: string): boolean {
  if (!argv || argv.length === 0 || qmpSocket === '') return false;
  const at = programIndex(argv);
  if (at < 0 || !basename(argv[at]!).startsWith('qemu-system-')) return false;
  const wanted = `unix:${qmpSocket}`;
  for (let i = at + 1; i < argv.length - 1; i++) {
    if (argv[i] !== '-qmp') continue;
    const value = argv[i + 1]!;
    if (value === wanted || value.startsWith(`${wanted},`)) return true;
  }
  return false;
}

/** Whether a stored VM is started again when auraed starts. */
export function shouldResumeVm(vm: Pick<StoredVm, 'desiredRunning' | 'state' | 'request' | 'restarts' | 'exit'>): boolean {
  if (!vm.desiredRunning) return false;
  switch (vm.state) {
    // Running, or being started/stopped by the previous auraed; "stopped" with desired running means the
    // parent shut down (close stops children but keeps what their owners asked for).
    case 'starting':
    case 'running':
    case 'stopping':
    case 'stopped':
      return true;
    // A crash the previous auraed would have restarted (its policy said so and the limit was not reached).
    case 'crashed':
      return vm.exit !== null && shouldRestart(vm.request.restart, vm.exit) && vm.restarts < MAX_RESTARTS;
    case 'allocated':
    case 'failed':
      return false;
  }
}

/**
 * The plan. `processes` maps each recorded pid that is alive (not a zombie) to its argv; a recorded pid missing
 * from it has no process any more.
 */
export function vmReconcilePlan(stored: readonly StoredVm[], processes: ReadonlyMap<number, readonly string[]>): VmReconcileAction[] {
  const vms = [...stored].sort((a, b) => a.request.name.localeCompare(b.request.name));
  const actions: VmReconcileAction[] = [];
  for (const vm of vms) {
    if (vm.pid <= 0) continue;
    const argv = processes.get(vm.pid);
    if (!argv) continue; // gone with (or before) the previous auraed
    const name = vm.request.name;
    if (isLeftoverQemu(argv, vm.qmpSocket)) {
      actions.push({ kind: 'stop_leftover', vm: name, pid: vm.pid, qmpSocket: vm.qmpSocket });
    } else {
      const program = argv[0] ?? '(no argv)';
      actions.push({ kind: 'ignore_pid', vm: name, pid: vm.pid, reason: `pid ${vm.pid} is now ${program}, not QEMU with ${vm.qmpSocket || 'its QMP socket'}: the pid was reused; left alone` });
    }
  }
  for (const vm of vms) actions.push({ kind: 'restore', vm: vm.request.name, start: shouldResumeVm(vm) });
  return actions;
}

/** The state a restored VM starts from in the new auraed: no QEMU of the previous run survives reconcile. */
export function restoredState(state: VmState): VmState {
  return WAS_ACTIVE.has(state) ? 'stopped' : state;
}
