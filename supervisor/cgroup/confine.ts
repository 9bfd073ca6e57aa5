// A single process in a cgroup of its own with limits (a VM's QEMU): the parent is created as needed and
// delegates the controllers the limits use, then the group is created, limited, and the process moves in.
// Throws the errno error of the step that failed; the caller says what it was confining.
import { type CgroupFs, ensureDir } from './fs';
import { dirname, join } from './layout';
import { type CgroupLimits, type Controller, cgroupWrites, enableLine } from './plan';

export interface ConfineSpec {
  /** The process's own cgroup (e.g. vmDir(root, name)); its parent must be a cgroup, or be creatable as one. */
  dir: string;
  /** Controllers the parent enables for it, in the order written. */
  delegate: readonly Controller[];
  limits: CgroupLimits;
  pid: number;
}

/** One step: create a directory (an existing one is fine) or write a control file. */
export type ConfineStep = { mkdir: string } | { file: string; value: string };

/**
 * The steps, in order: the parent, its delegation, then the group (so its control files exist from the start),
 * its limits, and the process. Pure.
 */
export function confineSteps(spec: ConfineSpec): ConfineStep[] {
  const parent = dirname(spec.dir);
  const line = enableLine(spec.delegate);
  return [
    { mkdir: parent },
    ...(line ? [{ file: join(parent, 'cgroup.subtree_control'), value: line }] : []),
    { mkdir: spec.dir },
    ...cgroupWrites(spec.limits).map((w) => ({ file: join(spec.dir, w.file), value: w.value })),
    { file: join(spec.dir, 'cgroup.procs'), value: String(spec.pid) },
  ];
}

export function confineProcess(fs: Pick<CgroupFs, 'mkdir' | 'write'>, spec: ConfineSpec): void {
  for (const step of confineSteps(spec)) {
    if ('mkdir' in step) ensureDir(fs, step.mkdir);
    else fs.write(step.file, step.value);
  }
}
