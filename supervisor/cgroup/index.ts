// cgroup v2, in one place: every read and write under the cgroup mount goes through this folder.
//   layout.ts      where things live: the mount (CGROUP_ROOT), the cells' tree (aurae/), the executables' leaves
//                  (exe.<name>), the VMs' groups (aurae-vms/)
//   fs.ts          the CgroupFs adapter and nodeCgroupFs, the only code that opens files there
//   plan.ts        pure: the control-file writes for a set of limits (cgroupWrites), controllers, subtree_control lines
//   delegation.ts  enabling controllers for children, at once or one by one; the boot's delegation from the root
//   stats.ts       parsing and reading the stat files (metrics, usage, OOM kills)
//   tree.ts        CgroupTree: the cells' and executables' cgroups (create, observe, kill, remove), LeafCgroup
//   confine.ts     one process in a group of its own with limits (a VM's QEMU)
//   testing.ts     FakeCgroupFs (in memory, kernel-like) and plainDirCgroupFs for tests
// Clients: init (mount point, boot delegation), cells and executables (the tree and the leaves), observe
// (metrics), vms (confinement). init bundles what it imports: keep this folder free of heavy dependencies.
export { type ConfineSpec, type ConfineStep, confineProcess, confineSteps } from './confine';
export { delegateRootControllers, type DelegationLog, type DelegationState, type EnableHooks, enableControllers, readDelegation } from './delegation';
export { type CgroupFs, ensureDir, errnoCode, isCgroup2, isGone, nodeCgroupFs } from './fs';
export {
  AURAE_CGROUP,
  CELL_TREE_DIR,
  CGROUP_ROOT,
  cellDir,
  cellTreeDir,
  executableOfLeaf,
  join,
  LEAF_PREFIX,
  leafDir,
  leafName,
  VMS_CGROUP,
  vmDir,
} from './layout';
export {
  type CgroupLimits,
  type CgroupWrite,
  cgroupWrites,
  type Controller,
  controllerOf,
  enableLine,
  MANAGED_CONTROLLERS,
  parseControllers,
  requiredControllers,
  subtreeControlWrite,
} from './plan';
export {
  CGROUP_METRIC_FILES,
  type CgroupFiles,
  type CgroupMetrics,
  CgroupReadError,
  type CgroupUsage,
  cgroupMetrics,
  parseFlatKeyed,
  parseIoStat,
  parseSingleValue,
  readOomKills,
  readStatFiles,
  readUsage,
} from './stats';
export { type CellCgroupSpec, CgroupTree, type CgroupTreeOptions, type LeafCgroup, type ObservedCgroups } from './tree';
