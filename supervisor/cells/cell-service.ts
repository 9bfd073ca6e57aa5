// aurae.cells.v0.CellService: decode → validate → CellRuntime → response. No logic beyond mapping.
import type { ServiceDefinition } from '@grpc/grpc-js';
import { executableToProto, type ExecutableSnapshot, type ExecutableState, invalid, checkInt, checkLabel, type RecordedExit, validateExecutable } from '../executables';
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
import { type RpcContext, unary } from '../server';
import { validateCellName } from './names';
import { type CellRuntime, type CellView, DEFAULT_STOP_GRACE_MS, MAX_STOP_GRACE_MS } from './runtime';
import { cellToProto, validateCell } from './spec';

const SERVICE = 'aurae.cells.v0.CellService';

export function createCellService(ctx: RpcContext, runtime: CellRuntime): CellServiceServer {
  return {
    allocate: unary(ctx, {
      method: `${SERVICE}/Allocate`,
      access: 'admin',
      validate: (request: CellServiceAllocateRequest) => validateCell(decoded(request).cell),
      summary: (spec) => spec.name,
      run: async (spec): Promise<CellServiceAllocateResponse> => {
        await runtime.allocate(spec);
        return { cellName: spec.name, cgroupV2: true };
      },
    }),
    free: unary(ctx, {
      method: `${SERVICE}/Free`,
      access: 'admin',
      validate: (request: CellServiceFreeRequest) => ({ name: validateCellName(decoded(request).cellName), force: request.force === true }),
      summary: ({ name, force }) => (force ? `${name} (force)` : name),
      run: async ({ name, force }): Promise<CellServiceFreeResponse> => {
        await runtime.free(name, force);
        return {};
      },
    }),
    start: unary(ctx, {
      method: `${SERVICE}/Start`,
      access: 'admin',
      validate: (request: CellServiceStartRequest) => ({ cell: validateCellName(decoded(request).cellName), spec: validateExecutable(request.executable) }),
      summary: ({ cell, spec }) => `${cell}/${spec.name}`,
      run: async ({ cell, spec }): Promise<CellServiceStartResponse> => runtime.start(cell, spec),
    }),
    stop: unary(ctx, {
      method: `${SERVICE}/Stop`,
      access: 'admin',
      validate: (request: CellServiceStopRequest) => ({
        cell: validateCellName(decoded(request).cellName),
        executable: checkLabel('executable_name', request.executableName),
        graceMs: checkInt('grace_period_ms', request.gracePeriodMs, 0, MAX_STOP_GRACE_MS) ?? DEFAULT_STOP_GRACE_MS,
      }),
      summary: ({ cell, executable }) => `${cell}/${executable}`,
      run: async ({ cell, executable, graceMs }): Promise<CellServiceStopResponse> => {
        const exit = await runtime.stop(cell, executable, graceMs);
        return exit ? { exit: exitToProto(exit) } : {};
      },
    }),
    list: unary(ctx, {
      method: `${SERVICE}/List`,
      access: 'read',
      validate: (request: CellServiceListRequest) => void decoded(request),
      run: (): CellServiceListResponse => ({ cells: runtime.list().map(nodeToProto) }),
    }),
    get: unary(ctx, {
      method: `${SERVICE}/Get`,
      access: 'read',
      validate: (request: CellServiceGetRequest) => validateCellName(decoded(request).cellName),
      run: (name): CellServiceGetResponse => ({ cell: nodeToProto(runtime.get(name)) }),
    }),
  };
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
    timestamp: exit.time,
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
      memoryCurrentBytes: view.usage.memoryCurrentBytes,
      pidsCurrent: view.usage.pidsCurrent,
      cpuUsageUsec: view.usage.cpuUsageUsec,
    },
    executables: view.executables.map(executableStatusToProto),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Requests that fail to decode. grpc-js answers a deserializer's exception with INTERNAL ("Error deserializing
// request"), but a client sending, say, an int64 beyond 2^53 made a bad argument, not us a bug. The service
// definition below decodes leniently: a failure becomes a marker object the handler's validate turns into
// INVALID_ARGUMENT.

const DECODE_ERROR = Symbol('decode error');
type MaybeUndecodable = { [DECODE_ERROR]?: string };

function decoded<T>(request: T): T {
  const problem = (request as MaybeUndecodable)[DECODE_ERROR];
  if (problem !== undefined) throw invalid('request', `could not be decoded (${problem}): check the field types and ranges (64-bit integers must be below 2^53)`);
  return request;
}

type AnyDefinition = Record<string, { requestDeserialize: (b: Buffer) => unknown }>;

function lenientDecoding<D extends ServiceDefinition>(definition: D): D {
  const out: AnyDefinition = {};
  for (const [name, method] of Object.entries(definition as unknown as AnyDefinition)) {
    out[name] = {
      ...method,
      requestDeserialize: (buffer: Buffer) => {
        try {
          return method.requestDeserialize(buffer);
        } catch (err) {
          return { [DECODE_ERROR]: (err as Error).message } satisfies MaybeUndecodable;
        }
      },
    };
  }
  return out as unknown as D;
}

/** CellServiceService with lenient request decoding (see above); register this one. */
export const CellServiceDefinition = lenientDecoding(CellServiceService);
