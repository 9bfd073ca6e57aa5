// Cells: aurae.cells.v0.CellService. cgroup v2 cells with limits and namespaces, the executables in them
// (supervisor/executables), their persistent state and the reconcile at start.
export { CellServiceDefinition, createCellService, executableStatusToProto, exitToProto, nodeToProto } from './cell-service';
export { type CgroupFs, nodeCgroupFs } from './cgroupfs';
export { AURAE_CGROUP, CGROUP_ROOT, CgroupTree, type CgroupUsage, LEAF_PREFIX, type ObservedCgroups } from './cgroups';
export { cgroupWrites, MANAGED_CONTROLLERS, requiredControllers, subtreeControlWrite, type CgroupWrite } from './cgroup-plan';
export { cellHostname, MAX_CELL_DEPTH, MAX_CELL_NAME_CHARS, parentCell, validateCellName } from './names';
export { type ReconcileAction, reconcilePlan, shouldResume } from './reconcile';
export { CellRuntime, type CellRuntimeDeps, type CellState, type CellView, DEFAULT_STOP_GRACE_MS } from './runtime';
export { type CellSpec, cellToProto, RANGES as CELL_RANGES, validateCell } from './spec';
export { type CellStore, CELLS_MIGRATIONS, memoryCellStore, sqliteCellStore, type StoredCell, type StoredExecutable } from './store';
