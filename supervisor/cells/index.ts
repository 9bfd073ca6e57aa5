// Cells: aurae.cells.v0.CellService. cgroup v2 cells with limits and namespaces, the executables in them
// (supervisor/executables), their persistent state and the reconcile at start. The cgroups themselves (layout,
// limits, delegation, the tree's executor) are supervisor/cgroup's.
export { CellServiceDefinition, createCellService, executableStatusToProto, exitToProto, nodeToProto } from './cell-service';
export { cellHostname, parentCell, validateCellName } from './names';
export { type ReconcileAction, reconcilePlan, shouldResume } from './reconcile';
export { CellRuntime, type CellRuntimeDeps, type CellState, type CellView, DEFAULT_STOP_GRACE_MS } from './runtime';
export { type CellSpec, cellToProto, validateCell } from './spec';
export { type CellStore, CELLS_MIGRATIONS, memoryCellStore, sqliteCellStore, type StoredCell, type StoredExecutable } from './store';
