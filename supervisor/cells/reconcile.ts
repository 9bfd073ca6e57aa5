// Reconcile on auraed start, as a plan (pure): the stored state (cells, executables) against the cgroups found
// under <root>/aurae → an ordered list of actions.
//   1. remove strays: cgroups no stored cell or executable accounts for (their processes are killed first);
//   2. recreate the cgroups of stored cells that are missing, parents first;
//   3. empty the leaves of stored executables: processes left by the previous auraed have lost their output
//      pipes and are not ours to adopt, so they are killed and, when they should run, started again;
//   4. restore every stored executable; start those that should be running: desired running and last known
//      as starting/running/backoff (an executable that had finished under its policy stays finished).
import { cellDepth, isWithin } from './names';
import type { ObservedCgroups } from '../cgroup';
import type { ExecutableState } from '../executables';
import type { CellSpec } from './spec';

export interface StoredExecutableState {
  cell: string;
  name: string;
  desiredRunning: boolean;
  state: ExecutableState;
}

export type ReconcileAction =
  | { kind: 'remove_stray'; path: string; reason: string }
  | { kind: 'create_cell'; cell: string; spec: CellSpec }
  | { kind: 'clear_leaf'; cell: string; executable: string }
  | { kind: 'restore_executable'; cell: string; executable: string; start: boolean };

const RESUME_STATES: ReadonlySet<ExecutableState> = new Set(['starting', 'running', 'backoff']);

export function shouldResume(e: Pick<StoredExecutableState, 'desiredRunning' | 'state'>): boolean {
  return e.desiredRunning && RESUME_STATES.has(e.state);
}

export function reconcilePlan(stored: { cells: CellSpec[]; executables: StoredExecutableState[] }, observed: ObservedCgroups): ReconcileAction[] {
  const storedCells = new Set(stored.cells.map((c) => c.name));
  const storedExes = new Set(stored.executables.map((e) => `${e.cell}/exe.${e.name}`));
  const observedCells = new Set(observed.cells);

  const strays: { path: string; reason: string }[] = [
    ...observed.unknown.map((path) => ({ path, reason: 'not a cell or executable cgroup' })),
    ...observed.cells.filter((c) => !storedCells.has(c)).map((path) => ({ path, reason: 'cell not in the store' })),
    ...observed.leaves
      .filter((l) => storedCells.has(l.cell) && !storedExes.has(`${l.cell}/exe.${l.executable}`))
      .map((l) => ({ path: `${l.cell}/exe.${l.executable}`, reason: 'executable not in the store' })),
  ];
  // Removing a stray removes what is below it; list only the topmost.
  const topmost = strays
    .filter((s) => !strays.some((o) => o !== s && isWithin(s.path, o.path)))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  const actions: ReconcileAction[] = topmost.map((s) => ({ kind: 'remove_stray', path: s.path, reason: s.reason }));
  const cells = [...stored.cells].sort((a, b) => cellDepth(a.name) - cellDepth(b.name) || (a.name < b.name ? -1 : 1));
  for (const spec of cells) if (!observedCells.has(spec.name)) actions.push({ kind: 'create_cell', cell: spec.name, spec });
  const observedLeaves = new Set(observed.leaves.map((l) => `${l.cell}/exe.${l.executable}`));
  const exes = [...stored.executables].sort((a, b) => (a.cell === b.cell ? (a.name < b.name ? -1 : 1) : a.cell < b.cell ? -1 : 1));
  for (const e of exes) {
    if (observedLeaves.has(`${e.cell}/exe.${e.name}`)) actions.push({ kind: 'clear_leaf', cell: e.cell, executable: e.name });
  }
  for (const e of exes) actions.push({ kind: 'restore_executable', cell: e.cell, executable: e.name, start: shouldResume(e) });
  return actions;
}
