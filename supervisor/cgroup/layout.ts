// Where things live in the cgroup v2 hierarchy: the mount point, the tree of cells (<root>/aurae/<cell path>),
// the executables' leaves in it (<cell>/exe.<name>) and the VMs' cells beside it (<root>/aurae-vms/<name>).
// Every path below /sys/fs/cgroup is made here; other code asks for it.
import path from 'node:path';

/** Where init mounts cgroup2 (init/mounts) and where auraed finds it. */
export const CGROUP_ROOT = '/sys/fs/cgroup';
/** The directory under the cgroup root that holds every cell (the cells reconcile owns it). */
export const AURAE_CGROUP = 'aurae';
/** The directory under the cgroup root that holds one cgroup per VM's QEMU (kept out of the cells' tree). */
export const VMS_CGROUP = 'aurae-vms';
/** Leaf directories of executables: "exe.<name>" (the dot cannot clash with a DNS label). */
export const LEAF_PREFIX = 'exe.';

export function join(...parts: string[]): string {
  return path.posix.join(...parts);
}

/** The cgroup above `dir` (its parent directory). */
export function dirname(dir: string): string {
  return path.posix.dirname(dir);
}

/** The cells' tree under a cgroup2 mount: <root>/aurae. */
export function cellTreeDir(root: string = CGROUP_ROOT): string {
  return join(root, AURAE_CGROUP);
}

/** The cell tree of the image: /sys/fs/cgroup/aurae. */
export const CELL_TREE_DIR = cellTreeDir(CGROUP_ROOT);

/** A cell's cgroup, "a/b" → <tree>/a/b. Precondition: `cell` is a validated cell path. */
export function cellDir(tree: string, cell: string): string {
  return join(tree, ...cell.split('/'));
}

/** The leaf directory name of an executable: "exe.<name>". */
export function leafName(executable: string): string {
  return `${LEAF_PREFIX}${executable}`;
}

/** The executable a directory name is the leaf of ("exe.web" → "web"), or null for any other name. */
export function executableOfLeaf(name: string): string | null {
  return name.startsWith(LEAF_PREFIX) ? name.slice(LEAF_PREFIX.length) : null;
}

/** An executable's leaf: <tree>/<cell>/exe.<name>. */
export function leafDir(tree: string, cell: string, executable: string): string {
  return join(cellDir(tree, cell), leafName(executable));
}

/** The cgroup of a VM's QEMU: <root>/aurae-vms/<name>. */
export function vmDir(root: string, name: string): string {
  return join(root, VMS_CGROUP, name);
}
