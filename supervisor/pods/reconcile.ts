// Reconcile on auraed start, as a plan (pure): the stored pods against what the node has (cells, mounts, pinned
// namespaces, this boot's ready markers, pod directories) → an ordered list of actions.
//   1. remove strays: pod directories no stored pod accounts for (a remove cut short), their mounts first;
//   2. for every pod that should run: recreate its cell when missing; pin its namespaces and mount its
//      containers' root filesystems when this boot has not (after a reboot /run and the mounts are gone);
//      connect its network (address, veth, /etc files: network.ts); rewrite the bundles; mark it ready (the
//      containers' start scripts wait for that);
//   3. start the containers desired 'running' that have no executable in the cell (a run or a start cut short).
//      Containers that have one are the cells' reconcile's: it restarts those that were running (they wait for
//      the ready marker) and leaves alone those that ended under the pod's restart policy or were stopped.
//      A container created and never started ('created') or stopped alone ('stopped') is prepared (mounted,
//      bundle written: it may be started or inspected later) but not started.
// A pod that should not run (stopped) gets nothing: it can only be removed, which copes with what is missing.
import type { PodPaths } from './crun';
import type { PodSpec } from './spec';
import type { ContainerDesired } from './store';

export interface ReconcileInput {
  /** `containers`: each container's desired state; one not listed is 'running' (stored before containers had their own). */
  pods: { spec: PodSpec; desiredRunning: boolean; containers?: ReadonlyMap<string, ContainerDesired> }[];
  /** Cells that exist (names). */
  cells: ReadonlySet<string>;
  /** Executables per existing cell. */
  executables: ReadonlyMap<string, ReadonlySet<string>>;
  /** Mount point → fstype. */
  mounts: ReadonlyMap<string, string>;
  /** Pods whose ready marker exists (this boot's preparation was done). */
  ready: ReadonlySet<string>;
  /** Directory names under <state.dir>/pods. */
  podDirs: readonly string[];
  paths(pod: string): PodPaths;
}

export type PodReconcileAction =
  | { kind: 'remove_stray'; pod: string; unmount: string[] }
  | { kind: 'create_cell'; pod: string }
  | { kind: 'pin_namespaces'; pod: string }
  | { kind: 'connect_network'; pod: string }
  | { kind: 'mount_rootfs'; pod: string; container: string }
  | { kind: 'write_bundle'; pod: string; container: string }
  | { kind: 'mark_ready'; pod: string }
  | { kind: 'start_container'; pod: string; container: string };

export function podReconcilePlan(input: ReconcileInput): PodReconcileAction[] {
  const actions: PodReconcileAction[] = [];
  const stored = new Set(input.pods.map((p) => p.spec.name));
  for (const dir of [...input.podDirs].sort()) {
    if (stored.has(dir)) continue;
    const base = input.paths(dir);
    const unmount = [...input.mounts.keys()].filter((m) => m.startsWith(`${base.dir}/`) || m.startsWith(`${base.runDir}/`)).sort().reverse();
    actions.push({ kind: 'remove_stray', pod: dir, unmount });
  }
  for (const pod of [...input.pods].sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1))) {
    if (!pod.desiredRunning) continue;
    const name = pod.spec.name;
    const paths = input.paths(name);
    if (!input.cells.has(name)) actions.push({ kind: 'create_cell', pod: name });
    const ready = input.ready.has(name);
    const pinned = Object.values(paths.ns).every((f) => input.mounts.get(f) === 'nsfs');
    if (!pinned) actions.push({ kind: 'pin_namespaces', pod: name });
    // Always: connecting is idempotent and checks what is there (the veth dies with a re-created namespace).
    actions.push({ kind: 'connect_network', pod: name });
    for (const c of pod.spec.containers) {
      if (input.mounts.get(paths.container(c.name).rootfs) !== 'overlay') actions.push({ kind: 'mount_rootfs', pod: name, container: c.name });
    }
    if (!ready || !pinned) {
      for (const c of pod.spec.containers) actions.push({ kind: 'write_bundle', pod: name, container: c.name });
    }
    actions.push({ kind: 'mark_ready', pod: name });
    const exes = input.executables.get(name) ?? new Set<string>();
    for (const c of pod.spec.containers) {
      const desired = pod.containers?.get(c.name) ?? 'running';
      if (desired === 'running' && !exes.has(c.name)) actions.push({ kind: 'start_container', pod: name, container: c.name });
    }
  }
  return actions;
}
