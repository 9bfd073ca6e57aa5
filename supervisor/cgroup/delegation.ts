// Controller delegation: what a cgroup's children may use is what it lists in cgroup.subtree_control. Enabling
// is written all at once, then one by one when the kernel refuses the set, so one missing or busy controller
// does not cost the others. Used by init at boot (the root) and by the cell tree (aurae/ and every cell).
import type { CgroupFs } from './fs';
import { CGROUP_ROOT, join } from './layout';
import { type Controller, controllersOfLine, MANAGED_CONTROLLERS, parseControllers, subtreeControlWrite } from './plan';

export interface DelegationState {
  /** cgroup.controllers: what the cgroup itself has (its parent delegates). */
  available: Set<string>;
  /** cgroup.subtree_control: what it already delegates to its children. */
  enabled: Set<string>;
}

/** Read what `dir` has and delegates. Throws the read's errno error (ENOENT: no cgroup2 there). */
export function readDelegation(fs: Pick<CgroupFs, 'read'>, dir: string): DelegationState {
  return {
    available: parseControllers(fs.read(join(dir, 'cgroup.controllers'))),
    enabled: parseControllers(fs.read(join(dir, 'cgroup.subtree_control'))),
  };
}

export interface EnableHooks {
  /** The whole line was refused; each controller is tried on its own next. */
  onSetRefused?(line: string, err: unknown): void;
  /** The kernel refused one controller; throw from here to stop (the rest are not tried). */
  onRefused?(controller: Controller, err: unknown): void;
}

/**
 * Write `line` ("+cpu +memory") to `dir`'s cgroup.subtree_control: at once, else entry by entry. Returns the
 * controllers enabled. Precondition: `dir` holds no process (cgroup v2: no internal processes; the root is
 * exempt).
 */
export function enableControllers(fs: Pick<CgroupFs, 'write'>, dir: string, line: string, hooks: EnableHooks = {}): Controller[] {
  const target = join(dir, 'cgroup.subtree_control');
  try {
    fs.write(target, line);
    return controllersOfLine(line);
  } catch (err) {
    hooks.onSetRefused?.(line, err);
  }
  const enabled: Controller[] = [];
  for (const controller of controllersOfLine(line)) {
    try {
      fs.write(target, `+${controller}`);
      enabled.push(controller);
    } catch (err) {
      hooks.onRefused?.(controller, err);
    }
  }
  return enabled;
}

/** The log init gives (plain lines); auraed's Logger fits too. */
export interface DelegationLog {
  info(message: string): void;
  warn(message: string): void;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * At boot: delegate every managed controller the kernel offers from the cgroup root to its children (auraed
 * creates one per cell). Never throws: a node without some controller is degraded, not dead; each problem is
 * logged with what to check. Returns the controllers enabled.
 */
export function delegateRootControllers(deps: { fs: Pick<CgroupFs, 'read' | 'write'>; log: DelegationLog }, root: string = CGROUP_ROOT): string[] {
  const { fs, log } = deps;
  let available: string;
  try {
    available = fs.read(join(root, 'cgroup.controllers'));
  } catch (err) {
    log.warn(`cgroups: reading ${root}/cgroup.controllers failed: ${message(err)}: is cgroup2 mounted?`);
    return [];
  }
  // At boot the root delegates nothing yet: every offered controller is written.
  const line = subtreeControlWrite(parseControllers(available), new Set());
  if (!line) {
    log.warn(`cgroups: none of ${MANAGED_CONTROLLERS.join(', ')} is available (cgroup.controllers: "${available.trim()}")`);
    return [];
  }
  const target = join(root, 'cgroup.subtree_control');
  let together = true;
  const enabled = enableControllers(fs, root, line, {
    onSetRefused: (_line, err) => {
      together = false;
      log.warn(`cgroups: writing "${line}" to ${target} failed (${message(err)}); trying one by one`);
    },
    onRefused: (controller, err) => log.warn(`cgroups: enabling ${controller} failed: ${message(err)}`),
  });
  if (together) log.info(`cgroups: enabled ${line.replaceAll('+', '')} for child cgroups`);
  return enabled;
}
