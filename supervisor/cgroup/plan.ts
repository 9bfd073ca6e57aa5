// What a cgroup should look like, as data (pure): the control-file writes for a set of limits, the controllers
// they need, and the subtree_control line that delegates controllers to children. Cells and VMs both take
// their writes from here.
import { DEFAULTS } from '../validation/ranges';

/** cgroup v2 limits as auraed sets them (cells: from CellSpec; VMs: from the VM's RAM and CPUs). */
export interface CgroupLimits {
  cpu?: { weight?: number; max?: number; period?: number };
  cpuset?: { cpus?: string; mems?: string };
  memory?: { min?: number; low?: number; high?: number; max?: number; swapMax?: number };
  pids?: { max?: number };
  io?: { weight?: number };
}

export interface CgroupWrite {
  /** Control file, relative to the cgroup's directory (e.g. "memory.max"). */
  file: string;
  value: string;
}

/** Controllers auraed manages, in the order they are enabled. */
export const MANAGED_CONTROLLERS = ['cpu', 'cpuset', 'memory', 'pids', 'io'] as const;
export type Controller = (typeof MANAGED_CONTROLLERS)[number];

/**
 * The writes that give a fresh cgroup the limits, in order. Unset limits are not written: a new cgroup
 * already has the kernel's defaults ("max", weight 100, the parent's cpuset).
 */
export function cgroupWrites(spec: CgroupLimits): CgroupWrite[] {
  const writes: CgroupWrite[] = [];
  const put = (file: string, value: number | string | undefined) => {
    if (value !== undefined) writes.push({ file, value: String(value) });
  };
  put('cpu.weight', spec.cpu?.weight);
  if (spec.cpu?.max !== undefined || spec.cpu?.period !== undefined) {
    put('cpu.max', `${spec.cpu.max ?? 'max'} ${spec.cpu.period ?? DEFAULTS.cpuPeriod}`);
  }
  // cpus before mems: both must be within the parent's; the kernel checks each on its own.
  put('cpuset.cpus', spec.cpuset?.cpus);
  put('cpuset.mems', spec.cpuset?.mems);
  // Protections first, then the throttle, then the hard limit.
  put('memory.min', spec.memory?.min);
  put('memory.low', spec.memory?.low);
  put('memory.high', spec.memory?.high);
  put('memory.max', spec.memory?.max);
  put('memory.swap.max', spec.memory?.swapMax);
  put('pids.max', spec.pids?.max);
  if (spec.io?.weight !== undefined) put('io.weight', `default ${spec.io.weight}`);
  return writes;
}

/** The controller a control file belongs to ("memory.swap.max" → "memory"). */
export function controllerOf(file: string): Controller {
  return file.slice(0, file.indexOf('.')) as Controller;
}

/** Controllers the limits' writes need enabled in the parent's cgroup.subtree_control, in managed order. */
export function requiredControllers(spec: CgroupLimits): Controller[] {
  const needed = new Set(cgroupWrites(spec).map((w) => controllerOf(w.file)));
  return MANAGED_CONTROLLERS.filter((c) => needed.has(c));
}

/** Parse a cgroup.controllers / cgroup.subtree_control line. */
export function parseControllers(text: string): Set<string> {
  return new Set(text.trim().split(/\s+/).filter(Boolean));
}

/** The subtree_control line that enables `controllers`, in the given order: ["memory", "cpu"] → "+memory +cpu". */
export function enableLine(controllers: readonly string[]): string | null {
  return controllers.length ? controllers.map((c) => `+${c}`).join(' ') : null;
}

/** The controllers a subtree_control line enables ("+cpu +memory" → ["cpu", "memory"]). */
export function controllersOfLine(line: string): Controller[] {
  return line.split(' ').map((entry) => entry.slice(1) as Controller);
}

/**
 * The line to write to a cgroup's subtree_control so its children get every managed controller it has
 * (`available`: its cgroup.controllers) and does not yet delegate (`enabled`: its subtree_control); null when
 * nothing is missing.
 */
export function subtreeControlWrite(available: Set<string>, enabled: Set<string>): string | null {
  return enableLine(MANAGED_CONTROLLERS.filter((c) => available.has(c) && !enabled.has(c)));
}
