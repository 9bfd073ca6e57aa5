// client.cells: cells and the executables in them (aurae.cells.v0.CellService), with plain objects and string
// unions instead of the generated messages and enums.
import { Metadata } from '@grpc/grpc-js';
import {
  type Cell,
  type CellGraphNode,
  CellServiceClient,
  type Executable,
  type ExecutableExit as ProtoExit,
  ExecutableState as ProtoExecutableState,
  type RestartPolicy,
  RestartMode as ProtoRestartMode,
} from '../../supervisor/gen/aurae/cells/v0/cells';
import type { RestartMode } from '../../supervisor/executables/spec';
import type { ExecutableState } from '../../supervisor/executables/state-machine';
import type { PlainMessage } from '../../supervisor/validation/plain';
import type { SdkCallContext } from './call-context';
import { fromWireInt, fromWireInts, toWireInts } from './int64';

/** A cell to allocate: the API's Cell (without the isolate_* shorthands: use `isolation`). */
export interface CellSpec extends Omit<PlainMessage<Cell>, 'name' | 'isolateProcess' | 'isolateNetwork'> {
  /** "web" or nested "web/cache" (DNS labels). */
  name: string;
}

/** "never", "on-failure" or "always": the server's names of RestartMode. */
export type RestartModeName = RestartMode;

/** An executable to start: the API's Executable, its restart mode by name. */
export interface ExecutableSpec extends Omit<PlainMessage<Executable>, 'name' | 'restart'> {
  /** DNS label, unique within the cell. */
  name: string;
  restart?: Omit<PlainMessage<RestartPolicy>, 'mode'> & { mode: RestartModeName };
}

/** The server's executable states, and 'unknown' for a state this SDK does not know yet. */
export type ExecutableStateName = ExecutableState | 'unknown';

export interface ExecutableExit {
  code: number | null;
  signal: string | null;
  oomKilled: boolean;
  /** Milliseconds since the Unix epoch. */
  at: number;
}

export interface ExecutableInfo {
  name: string;
  state: ExecutableStateName;
  pid: number;
  restarts: number;
  desiredRunning: boolean;
  lastExit: ExecutableExit | null;
  spec: ExecutableSpec;
}

export interface CellInfo {
  name: string;
  spec: CellSpec;
  state: string;
  memoryCurrentBytes: number | null;
  pidsCurrent: number | null;
  cpuUsageUsec: number | null;
  executables: ExecutableInfo[];
  children: CellInfo[];
}

export interface CellsApi {
  allocate(spec: CellSpec): Promise<{ cellName: string }>;
  /** force: stop its executables and free its child cells too. */
  free(name: string, options?: { force?: boolean }): Promise<void>;
  start(cell: string, executable: ExecutableSpec): Promise<{ pid: number }>;
  /** SIGTERM, then after graceMs (default 10 s) SIGKILL to whatever is left. */
  stop(cell: string, executable: string, options?: { graceMs?: number }): Promise<{ exit: ExecutableExit | null }>;
  /** Every cell as a tree. */
  list(): Promise<CellInfo[]>;
  get(name: string): Promise<CellInfo>;
}

const MODES: Record<RestartModeName, ProtoRestartMode> = {
  never: ProtoRestartMode.RESTART_MODE_NEVER,
  'on-failure': ProtoRestartMode.RESTART_MODE_ON_FAILURE,
  always: ProtoRestartMode.RESTART_MODE_ALWAYS,
};

const STATES: Partial<Record<ProtoExecutableState, ExecutableStateName>> = {
  [ProtoExecutableState.EXECUTABLE_STATE_STARTING]: 'starting',
  [ProtoExecutableState.EXECUTABLE_STATE_RUNNING]: 'running',
  [ProtoExecutableState.EXECUTABLE_STATE_STOPPING]: 'stopping',
  [ProtoExecutableState.EXECUTABLE_STATE_BACKOFF]: 'backoff',
  [ProtoExecutableState.EXECUTABLE_STATE_STOPPED]: 'stopped',
  [ProtoExecutableState.EXECUTABLE_STATE_EXITED]: 'exited',
  [ProtoExecutableState.EXECUTABLE_STATE_FAILED]: 'failed',
};

export function toProtoCell(spec: CellSpec): Cell {
  return {
    name: spec.name,
    cpu: spec.cpu && toWireInts('cpu', spec.cpu),
    cpuset: spec.cpuset,
    memory: spec.memory && toWireInts('memory', spec.memory),
    pids: spec.pids && toWireInts('pids', spec.pids),
    io: spec.io && toWireInts('io', spec.io),
    isolateProcess: false,
    isolateNetwork: false,
    isolation: { pid: false, mount: false, uts: false, ipc: false, network: false, ...spec.isolation },
  };
}

export function toProtoExecutable(spec: ExecutableSpec): Executable {
  const restart = spec.restart;
  return {
    name: spec.name,
    command: spec.command ?? '',
    description: spec.description ?? '',
    args: spec.args ?? [],
    env: spec.env ?? {},
    cwd: spec.cwd ?? '',
    uid: spec.uid,
    gid: spec.gid,
    restart: restart
      ? {
          mode: MODES[restart.mode],
          initialDelayMs: restart.initialDelayMs,
          maxDelayMs: restart.maxDelayMs,
          startLimitBurst: restart.startLimitBurst,
          startLimitIntervalMs: restart.startLimitIntervalMs,
        }
      : undefined,
  };
}

function fromExit(exit: ProtoExit | undefined): ExecutableExit | null {
  if (!exit) return null;
  return { code: exit.code ?? null, signal: exit.signal ?? null, oomKilled: exit.oomKilled, at: fromWireInt(exit.timestamp) };
}

function fromProtoExecutable(e: Executable | undefined): ExecutableSpec {
  if (!e) return { name: '' };
  const mode = (Object.entries(MODES).find(([, m]) => m === e.restart?.mode)?.[0] ?? 'never') as RestartModeName;
  return {
    name: e.name,
    ...(e.args.length ? { args: e.args } : {}),
    ...(e.command ? { command: e.command } : {}),
    ...(e.description ? { description: e.description } : {}),
    ...(Object.keys(e.env).length ? { env: e.env } : {}),
    ...(e.cwd ? { cwd: e.cwd } : {}),
    ...(e.uid !== undefined ? { uid: e.uid } : {}),
    ...(e.gid !== undefined ? { gid: e.gid } : {}),
    restart: { mode, initialDelayMs: e.restart?.initialDelayMs, maxDelayMs: e.restart?.maxDelayMs, startLimitBurst: e.restart?.startLimitBurst, startLimitIntervalMs: e.restart?.startLimitIntervalMs },
  };
}

export function fromCellNode(node: CellGraphNode): CellInfo {
  const cell = node.cell;
  const isolation = cell?.isolation;
  return {
    name: cell?.name ?? '',
    spec: {
      name: cell?.name ?? '',
      ...(cell?.cpu ? { cpu: fromWireInts(cell.cpu) } : {}),
      ...(cell?.cpuset ? { cpuset: cell.cpuset } : {}),
      ...(cell?.memory ? { memory: fromWireInts(cell.memory) } : {}),
      ...(cell?.pids ? { pids: fromWireInts(cell.pids) } : {}),
      ...(cell?.io ? { io: fromWireInts(cell.io) } : {}),
      isolation: {
        pid: Boolean(isolation?.pid || cell?.isolateProcess),
        mount: Boolean(isolation?.mount || cell?.isolateProcess),
        uts: Boolean(isolation?.uts || cell?.isolateProcess),
        ipc: Boolean(isolation?.ipc || cell?.isolateProcess),
        network: Boolean(isolation?.network || cell?.isolateNetwork),
      },
    },
    state: node.status?.state ?? 'unknown',
    memoryCurrentBytes: fromWireInt(node.status?.memoryCurrentBytes) ?? null,
    pidsCurrent: fromWireInt(node.status?.pidsCurrent) ?? null,
    cpuUsageUsec: fromWireInt(node.status?.cpuUsageUsec) ?? null,
    executables: node.executables.map((x) => ({
      name: x.executable?.name ?? '',
      state: STATES[x.state] ?? 'unknown',
      pid: x.pid,
      restarts: x.restarts,
      desiredRunning: x.desiredRunning,
      lastExit: fromExit(x.lastExit),
      spec: fromProtoExecutable(x.executable),
    })),
    children: node.children.map(fromCellNode),
  };
}

export function createCellsApi(ctx: SdkCallContext): CellsApi {
  const client = new CellServiceClient(ctx.address, ctx.credentials, ctx.options);
  const name = (method: string) => `aurae.cells.v0.CellService/${method}`;
  return {
    allocate: async (spec) => {
      const r = await ctx.unary<{ cellName: string }>(name('Allocate'), (done) => client.allocate({ cell: toProtoCell(spec) }, new Metadata(), ctx.callOptions(), done));
      return { cellName: r.cellName };
    },
    free: async (cellName, options = {}) => {
      await ctx.unary(name('Free'), (done) => client.free({ cellName, force: options.force ?? false }, new Metadata(), ctx.callOptions(), done));
    },
    start: async (cellName, executable) => {
      const r = await ctx.unary<{ pid: number }>(name('Start'), (done) =>
        client.start({ cellName, executable: toProtoExecutable(executable) }, new Metadata(), ctx.callOptions(), done),
      );
      return { pid: r.pid };
    },
    stop: async (cellName, executableName, options = {}) => {
      const r = await ctx.unary<{ exit?: ProtoExit }>(name('Stop'), (done) =>
        // Stop returns once the processes are gone: allow the grace period plus time for the kill.
        client.stop({ cellName, executableName, gracePeriodMs: options.graceMs }, new Metadata(), { deadline: Date.now() + (options.graceMs ?? 10_000) + 15_000 }, done),
      );
      return { exit: fromExit(r.exit) };
    },
    list: async () => {
      const r = await ctx.unary<{ cells: CellGraphNode[] }>(name('List'), (done) => client.list({}, new Metadata(), ctx.callOptions(), done));
      return r.cells.map(fromCellNode);
    },
    get: async (cellName) => {
      const r = await ctx.unary<{ cell?: CellGraphNode }>(name('Get'), (done) => client.get({ cellName }, new Metadata(), ctx.callOptions(), done));
      if (!r.cell) throw new Error(`cell ${cellName}: the node returned no cell`);
      return fromCellNode(r.cell);
    },
  };
}
