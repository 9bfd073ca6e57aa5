// The overlayfs mount a container's rootfs is: the image's layer snapshots as lower directories (TOP layer first,
// overlayfs order), plus an upper and a work directory of its own. Plan (pure) and mount (a few lines) apart.
//
// The kernel reads mount options from one page: "lowerdir=…,upperdir=…,workdir=…" must fit in 4095 bytes.
// With absolute snapshot paths (~100 bytes each) that is ~35 layers; past that the plan switches to paths
// relative to the snapshots' common directory and asks the mounter to run from there (containerd does the same),
// which fits ~60; deeper images are refused with a message saying so.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Syscalls } from '../../native';
import { AuraeError } from '../errors';

/** Longest mount data the kernel takes: one page (4096 on x86-64) including the trailing NUL. */
export const MOUNT_DATA_MAX = 4095;

export interface OverlayMountPlan {
  source: 'overlay';
  target: string;
  fstype: 'overlay';
  flags: number;
  data: string;
  /** When set, `data` names the lower dirs relative to this directory: mount from it (mountOverlay does). */
  cwd: string | null;
}

// overlayfs splits lowerdir on ':' and the option string on ','; a backslash escapes. Our paths never need them.
const UNSAFE_CHARS = /[:,\\\n=]/;

function checkDir(field: string, dir: string): void {
  if (!path.isAbsolute(dir)) throw new AuraeError('INVALID_ARGUMENT', `overlay ${field}: "${dir}" must be an absolute path`);
  if (UNSAFE_CHARS.test(dir)) {
    throw new AuraeError('INVALID_ARGUMENT', `overlay ${field}: "${dir}" contains one of : , \\ = or a newline, which overlayfs options cannot carry: use another directory`);
  }
}

/**
 * The overlay mount for `target`. `lowerDirs` TOP layer first (Images.lowerDirs order), at least one; a directory
 * listed twice keeps only its topmost place. `upper` and `work` (same file system, both or neither): without
 * them the mount is read-only and overlayfs needs at least two lower dirs, so a single-layer image then needs an
 * upper. Throws INVALID_ARGUMENT for bad input and
 * FAILED_PRECONDITION when the options cannot fit in a page even with relative paths.
 */
export function overlayMountPlan(lowerDirs: string[], upper: string | null, work: string | null, target: string): OverlayMountPlan {
  if (lowerDirs.length === 0) throw new AuraeError('INVALID_ARGUMENT', 'overlay lowerDirs: at least one layer is needed');
  lowerDirs.forEach((dir, i) => checkDir(`lowerDirs[${i}]`, dir));
  // overlayfs refuses a directory listed twice (an image repeating a layer, often the empty one). Keeping only
  // the topmost place changes nothing visible: the lower copy could only show what the identical upper one shows.
  lowerDirs = lowerDirs.filter((dir, i) => lowerDirs.indexOf(dir) === i);
  if ((upper === null) !== (work === null)) throw new AuraeError('INVALID_ARGUMENT', 'overlay upper/work: give both or neither');
  if (upper !== null && work !== null) {
    checkDir('upper', upper);
    checkDir('work', work);
  } else if (lowerDirs.length < 2) {
    throw new AuraeError('INVALID_ARGUMENT', 'overlay lowerDirs: a read-only overlay (no upper) needs at least two layers: pass an upper and a work dir for a single-layer image');
  }
  if (!path.isAbsolute(target)) throw new AuraeError('INVALID_ARGUMENT', `overlay target: "${target}" must be an absolute path`);

  const tail = upper !== null ? `,upperdir=${upper},workdir=${work}` : '';
  const plan = (lowers: string[], cwd: string | null): OverlayMountPlan => ({
    source: 'overlay',
    target,
    fstype: 'overlay',
    flags: 0,
    data: `lowerdir=${lowers.join(':')}${tail}`,
    cwd,
  });
  const absolute = plan(lowerDirs, null);
  if (absolute.data.length <= MOUNT_DATA_MAX) return absolute;

  const base = commonDir(lowerDirs);
  const relative = plan(lowerDirs.map((dir) => path.relative(base, dir)), base);
  if (relative.data.length <= MOUNT_DATA_MAX) return relative;
  throw new AuraeError(
    'FAILED_PRECONDITION',
    `overlay for ${target}: ${lowerDirs.length} layers need ${relative.data.length} bytes of mount options even relative to ${base}, ` +
      `over the kernel's ${MOUNT_DATA_MAX}: flatten the image to fewer layers`,
  );
}

function commonDir(dirs: string[]): string {
  let parts = dirs[0]!.split('/');
  for (const dir of dirs.slice(1)) {
    const other = dir.split('/');
    let i = 0;
    while (i < parts.length && i < other.length && parts[i] === other[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join('/') || '/';
}

/**
 * True when the kernel's overlayfs indexes by default (CONFIG_OVERLAY_FS_INDEX or overlay.index=Y). Like
 * containerd we then mount with index=off: the index ties a lower layer to one upper, and snapshots are shared.
 */
export function overlayIndexOnByDefault(read: (file: string) => string = (f) => readFileSync(f, 'utf8')): boolean {
  try {
    return read('/sys/module/overlay/parameters/index').trim() === 'Y';
  } catch {
    return false;
  }
}

/**
 * Mount a plan with the syscall addon (adding index=off when the kernel indexes by default). A plan with `cwd`
 * is mounted from that directory: the process chdirs there for the one synchronous mount(2) and back (no other
 * JavaScript runs in between; every path auraed uses is absolute). Errors name the target and what to check.
 */
export function mountOverlay(plan: OverlayMountPlan, sys: Pick<Syscalls, 'mount'>, indexOn: boolean = overlayIndexOnByDefault()): void {
  const data = indexOn && plan.data.length + ',index=off'.length <= MOUNT_DATA_MAX ? `${plan.data},index=off` : plan.data;
  const previous = plan.cwd ? process.cwd() : null;
  try {
    if (plan.cwd) process.chdir(plan.cwd);
    sys.mount(plan.source, plan.target, plan.fstype, plan.flags, data);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const hint =
      code === 'ENODEV'
        ? 'the kernel has no overlayfs: enable CONFIG_OVERLAY_FS'
        : code === 'EINVAL'
          ? 'are the upper and work dirs on the same file system (not overlay or tmpfs-over-overlay), and every layer a directory?'
          : code === 'ENOENT'
            ? 'a layer snapshot, the upper or the work dir is missing: pull the image again'
            : (err as Error).message;
    throw new AuraeError('FAILED_PRECONDITION', `mounting the overlay rootfs at ${plan.target} failed (${code}): ${hint}`, { cause: err });
  } finally {
    if (previous !== null) process.chdir(previous);
  }
}
