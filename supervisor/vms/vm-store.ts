// Persistent state of child VMs (SQLite through supervisor/store): each VM's request, whether it should run,
// its last known state, and the QEMU pid and QMP socket of its current run. What reconcile reads when auraed
// starts: a restarted auraed finds the children it had, stops the QEMU processes its predecessor left behind,
// and starts again those that should run.
import { type Db, type Migration, migrate } from '../store';
import type { VmRequest, VmState } from './vm-model';

export const VMS_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'child VMs: request, desired state, last known state, QEMU pid and QMP socket',
    up(db) {
      db.exec(`
        CREATE TABLE vms (
          name        TEXT PRIMARY KEY,
          request     TEXT NOT NULL,
          desired     TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
          state       TEXT NOT NULL,
          pid         INTEGER NOT NULL DEFAULT 0,
          qmp_socket  TEXT NOT NULL DEFAULT '',
          restarts    INTEGER NOT NULL DEFAULT 0,
          last_exit   TEXT NOT NULL DEFAULT '',
          exit_code   INTEGER,
          exit_signal TEXT,
          created_at  TEXT NOT NULL,
          updated_at  TEXT NOT NULL
        ) WITHOUT ROWID;
      `);
    },
  },
];

/** How QEMU's last run ended (null: it has not ended since the VM was allocated). */
export interface VmExitRecord {
  code: number | null;
  signal: string | null;
}

export interface StoredVm {
  request: VmRequest;
  /** Set by spawn/start, cleared by stop: what the VM's owner asked for. A parent shutdown leaves it set. */
  desiredRunning: boolean;
  state: VmState;
  /** QEMU's pid while a run is (or was, when auraed died) active; 0 otherwise. */
  pid: number;
  /** The QMP socket of the current or last run ("" before the first start). */
  qmpSocket: string;
  restarts: number;
  lastExit: string;
  exit: VmExitRecord | null;
}

/** The store the VM runtime writes through; an interface so unit tests keep it in memory. */
export interface VmStore {
  /** Every stored VM, by name. */
  list(): StoredVm[];
  /** Insert or replace one VM's row. */
  put(vm: StoredVm): void;
  delete(name: string): void;
}

interface VmRow {
  name: string;
  request: string;
  desired: 'running' | 'stopped';
  state: VmState;
  pid: number;
  qmp_socket: string;
  restarts: number;
  last_exit: string;
  exit_code: number | null;
  exit_signal: string | null;
}

/** The SQLite store; runs the vms migrations on `db` first. */
export function sqliteVmStore(db: Db, now: () => Date = () => new Date()): VmStore {
  migrate(db, 'vms', VMS_MIGRATIONS);
  const q = {
    list: db.prepare('SELECT name, request, desired, state, pid, qmp_socket, restarts, last_exit, exit_code, exit_signal FROM vms ORDER BY name'),
    put: db.prepare(`INSERT INTO vms (name, request, desired, state, pid, qmp_socket, restarts, last_exit, exit_code, exit_signal, created_at, updated_at)
      VALUES (@name, @request, @desired, @state, @pid, @qmp_socket, @restarts, @last_exit, @exit_code, @exit_signal, @now, @now)
      ON CONFLICT (name) DO UPDATE SET request = excluded.request, desired = excluded.desired, state = excluded.state,
        pid = excluded.pid, qmp_socket = excluded.qmp_socket, restarts = excluded.restarts, last_exit = excluded.last_exit,
        exit_code = excluded.exit_code, exit_signal = excluded.exit_signal, updated_at = excluded.updated_at`),
    delete: db.prepare('DELETE FROM vms WHERE name = ?'),
  };
  return {
    list: () =>
      (q.list.all() as VmRow[]).map((r) => ({
        request: JSON.parse(r.request) as VmRequest,
        desiredRunning: r.desired === 'running',
        state: r.state,
        pid: r.pid,
        qmpSocket: r.qmp_socket,
        restarts: r.restarts,
        lastExit: r.last_exit,
        // A row whose run never ended has neither; a signal death has no code.
        exit: r.exit_code === null && r.exit_signal === null ? null : { code: r.exit_code, signal: r.exit_signal },
      })),
    put(vm) {
      q.put.run({
        name: vm.request.name,
        request: JSON.stringify(vm.request),
        desired: vm.desiredRunning ? 'running' : 'stopped',
        state: vm.state,
        pid: vm.pid,
        qmp_socket: vm.qmpSocket,
        restarts: vm.restarts,
        last_exit: vm.lastExit,
        exit_code: vm.exit?.code ?? null,
        exit_signal: vm.exit?.signal ?? null,
        now: now().toISOString(),
      });
    },
    delete: (name) => void q.delete.run(name),
  };
}

/** A store that keeps nothing across restarts (unit tests). */
export function memoryVmStore(initial: StoredVm[] = []): VmStore & { rows: Map<string, StoredVm> } {
  const rows = new Map(initial.map((vm) => [vm.request.name, structuredClone(vm)]));
  return {
    rows,
    list: () => [...rows.values()].map((vm) => structuredClone(vm)).sort((a, b) => a.request.name.localeCompare(b.request.name)),
    put: (vm) => void rows.set(vm.request.name, structuredClone(vm)),
    delete: (name) => void rows.delete(name),
  };
}
