// aurae.cells.v0.CellService: decode → validate → CellRuntime → response. No logic beyond mapping.
import { executableToProto, type ExecutableSnapshot, type ExecutableSpec, type ExecutableState, type RecordedExit, validateExecutable } from '../executables';
import {
  type CellGraphNode,
  type CellServiceAllocateRequest,
  type CellServiceAllocateResponse,
  type CellServiceFreeRequest,
  type CellServiceFreeResponse,
  type CellServiceGetRequest,
  type CellServiceGetResponse,
  type CellServiceListRequest,
  type CellServiceListResponse,
  CellServiceService,
  type CellServiceServer,
  type CellServiceStartRequest,
  type CellServiceStartResponse,
  type CellServiceStopRequest,
  type CellServiceStopResponse,
  type ExecutableExit,
  ExecutableState as ExecutableStateProto,
  type ExecutableStatus,
} from '../gen/aurae/cells/v0/cells';
import { toInt64 } from '../errors';
import { type RpcContext, unary } from '../server';
import { checkInt, checkLabel, RANGES } from '../validation';
import { validateCellName } from './names';
import { type CellRuntime, type CellView, DEFAULT_STOP_GRACE_MS } from './runtime';
import { cellToProto, validateCell } from './spec';

const SERVICE = 'aurae.cells.v0.CellService';

export function createCellService(ctx: RpcContext, runtime: CellRuntime): CellServiceServer {
  return {
    allocate: unary(ctx, {
      method: `${SERVICE}/Allocate`,
      access: 'admin',
      validate: (request: CellServiceAllocateRequest) => validateCell(request.cell),
      summary: (spec) => spec.name,
      resource: (spec) => ({ cell: spec.name }),
      run: async (spec): Promise<CellServiceAllocateResponse> => {
        await runtime.allocate(spec);
        return { cellName: spec.name, cgroupV2: true };
      },
    }),
    free: unary(ctx, {
      method: `${SERVICE}/Free`,
      access: 'admin',
      validate: (request: CellServiceFreeRequest) => ({ name: validateCellName(request.cellName), force: request.force === true }),
      summary: ({ name, force }) => (force ? `${name} (force)` : name),
      resource: ({ name }) => ({ cell: name }),
      run: async ({ name, force }): Promise<CellServiceFreeResponse> => {
        await runtime.free(name, force);
        return {};
      },
    }),
    start: unary(ctx, {
      method: `${SERVICE}/Start`,
      access: 'admin',
      validate: (request: CellServiceStartRequest) => ({ cell: validateCellName(request.cellName), spec: validateExecutable(request.executable) }),
      summary: ({ cell, spec }) => `${cell}/${spec.name}`,
      // Who the program runs as is part of what is authorized: non-admins may not run as root by default.
      resource: ({ cell, spec }) => ({ cell, runAs: runAsOf(spec) }),
      // The executable's row is committed with this call's audit row, in one transaction before the reply
      // (server/rpc.ts settle → the audit log commits the database's write group).
      run: async ({ cell, spec }): Promise<CellServiceStartResponse> => runtime.start(cell, spec, { commit: 'caller' }),
    }),
    stop: unary(ctx, {
      method: `${SERVICE}/Stop`,
      access: 'admin',
      validate: (request: CellServiceStopRequest) => ({
        cell: validateCellName(request.cellName),
        executable: checkLabel('executable_name', request.executableName),
        graceMs: checkInt('grace_period_ms', request.gracePeriodMs, RANGES.stopGraceMs) ?? DEFAULT_STOP_GRACE_MS,
      }),
      summary: ({ cell, executable }) => `${cell}/${executable}`,
      resource: ({ cell }) => ({ cell }),
      run: async ({ cell, executable, graceMs }): Promise<CellServiceStopResponse> => {
        const exit = await runtime.stop(cell, executable, graceMs);
        return exit ? { exit: exitToProto(exit) } : {};
      },
    }),
    list: unary(ctx, {
      method: `${SERVICE}/List`,
      access: 'read',
      validate: (_request: CellServiceListRequest) => undefined,
      resource: () => 'each',
      run: (_, _caller, access): CellServiceListResponse => ({ cells: visibleCells(runtime.list(), (cell) => access.sees({ cell })).map(nodeToProto) }),
    }),
    get: unary(ctx, {
      method: `${SERVICE}/Get`,
      access: 'read',
      validate: (request: CellServiceGetRequest) => validateCellName(request.cellName),
      resource: (name) => ({ cell: name }),
      run: (name, _caller, access): CellServiceGetResponse => {
        const view = runtime.get(name);
        // A deny on a cell below this one hides it here too.
        return { cell: nodeToProto({ ...view, children: visibleCells(view.children, (cell) => access.sees({ cell })) }) };
      },
    }),
  };
}

/** The uid and gid an executable runs as: aurae-exec's defaults (root without a uid; the uid's group without a gid). */
export function runAsOf(spec: Pick<ExecutableSpec, 'uid' | 'gid'>): { uid: number; gid: number } {
  return { uid: spec.uid ?? 0, gid: spec.gid ?? spec.uid ?? 0 };
}

/**
 * The cells a caller may see, as a forest: a visible cell keeps its visible descendants; the visible
 * descendants of a hidden cell take its place (a tenant allowed "nova/*" sees nova/web, not nova).
 */
export function visibleCells(views: readonly CellView[], sees: (cell: string) => boolean): CellView[] {
  return views.flatMap((view) => {
    const children = visibleCells(view.children, sees);
    return sees(view.spec.name) ? [{ ...view, children }] : children;
  });
}

const STATE_TO_PROTO: Record<ExecutableState, ExecutableStateProto> = {
  starting: ExecutableStateProto.EXECUTABLE_STATE_STARTING,
  running: ExecutableStateProto.EXECUTABLE_STATE_RUNNING,
  stopping: ExecutableStateProto.EXECUTABLE_STATE_STOPPING,
  backoff: ExecutableStateProto.EXECUTABLE_STATE_BACKOFF,
  stopped: ExecutableStateProto.EXECUTABLE_STATE_STOPPED,
  exited: ExecutableStateProto.EXECUTABLE_STATE_EXITED,
  failed: ExecutableStateProto.EXECUTABLE_STATE_FAILED,
};

export function exitToProto(exit: RecordedExit): ExecutableExit {
  return {
    ...(exit.code !== null ? { code: exit.code } : {}),
    ...(exit.signal !== null ? { signal: exit.signal } : {}),
    oomKilled: exit.oomKilled,
    timestamp: toInt64(exit.time),
  };
}

export function executableStatusToProto(s: ExecutableSnapshot): ExecutableStatus {
  return {
    executable: executableToProto(s.spec),
    state: STATE_TO_PROTO[s.state],
    pid: s.pid,
    restarts: s.restarts,
    lastExit: s.lastExit ? exitToProto(s.lastExit) : undefined,
    desiredRunning: s.desiredRunning,
  };
}

export function nodeToProto(view: CellView): CellGraphNode {
  return {
    cell: cellToProto(view.spec),
    children: view.children.map(nodeToProto),
    status: {
      state: view.state,
      memoryCurrentBytes: toInt64(view.usage.memoryCurrentBytes),
      pidsCurrent: toInt64(view.usage.pidsCurrent),
      cpuUsageUsec: toInt64(view.usage.cpuUsageUsec),
    },
    executables: view.executables.map(executableStatusToProto),
  };
}

/** The service definition to register (bytes that are no message are refused for every service: server/decode.ts). */
export const CellServiceDefinition = CellServiceService;
