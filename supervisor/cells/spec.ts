// CellSpec: a cell as allocated, validated. Plain data (stored as JSON), with the API message on both sides.
import { checkInt64, toInt64 } from '../errors';
import type { IsolationSpec } from '../executables';
import type { Cell } from '../gen/aurae/cells/v0/cells';
import { invalid, type PlainMessage, RANGES, shown } from '../validation';
import { validateCellName } from './names';

/** The API's Cell as validated: limits as numbers, the isolate_* shorthands folded into `isolation`. */
export interface CellSpec extends Omit<PlainMessage<Cell>, 'name' | 'isolateProcess' | 'isolateNetwork' | 'isolation'> {
  name: string;
  isolation: IsolationSpec;
}

// Every limit is a 64-bit field on the wire (bigint, see errors/int64.ts); the spec keeps numbers.
const range = (field: string, value: bigint | undefined, r: readonly [number, number]) => checkInt64(field, value, r[0], r[1]);

/** "0-3,6" style lists: comma-separated ids or ascending ranges, each id within `r`. */
export function checkIdList(field: string, value: string | undefined, r: readonly [number, number]): string | undefined {
  if (value === undefined) return undefined;
  const rule = `a list such as "0-3,6" (ids ${r[0]}..${r[1]}, ranges ascending)`;
  if (value.length > 1024) throw invalid(field, `too long: at most 1024 characters of ${rule}`);
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(value)) throw invalid(field, `${shown(value)} is not ${rule}`);
  for (const part of value.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    if (a < r[0] || a > r[1] || (b !== undefined && (b < a || b > r[1]))) throw invalid(field, `${shown(part)} is out of range: ${rule}`);
  }
  return value;
}

const defined = <T extends object>(o: T): T | undefined => (Object.values(o).some((v) => v !== undefined) ? o : undefined);

/** Validate the Allocate request's cell. Throws INVALID_ARGUMENT naming the field and the allowed range. */
export function validateCell(message: Cell | undefined, field = 'cell'): CellSpec {
  if (!message) throw invalid(field, 'required');
  const name = validateCellName(message.name, `${field}.name`);
  const cpu = message.cpu && {
    weight: range(`${field}.cpu.weight`, message.cpu.weight, RANGES.cpuWeight),
    max: range(`${field}.cpu.max`, message.cpu.max, RANGES.cpuMax),
    period: range(`${field}.cpu.period`, message.cpu.period, RANGES.cpuPeriod),
  };
  const cpuset = message.cpuset && {
    cpus: checkIdList(`${field}.cpuset.cpus`, message.cpuset.cpus, RANGES.cpuId),
    mems: checkIdList(`${field}.cpuset.mems`, message.cpuset.mems, RANGES.memNode),
  };
  const m = message.memory;
  const memory = m && {
    min: range(`${field}.memory.min`, m.min, RANGES.memory),
    low: range(`${field}.memory.low`, m.low, RANGES.memory),
    high: range(`${field}.memory.high`, m.high, RANGES.memory),
    max: range(`${field}.memory.max`, m.max, RANGES.memory),
    swapMax: range(`${field}.memory.swap_max`, m.swapMax, RANGES.memory),
  };
  if (memory?.max !== undefined) {
    for (const key of ['min', 'low', 'high'] as const) {
      const v = memory[key];
      if (v !== undefined && v > memory.max) throw invalid(`${field}.memory.${key}`, `${v} is above memory.max (${memory.max}): allowed 0..${memory.max}`);
    }
  }
  const pids = message.pids && { max: range(`${field}.pids.max`, message.pids.max, RANGES.pidsMax) };
  const io = message.io && { weight: range(`${field}.io.weight`, message.io.weight, RANGES.ioWeight) };
  const iso = message.isolation;
  const spec: CellSpec = {
    name,
    isolation: {
      pid: message.isolateProcess || !!iso?.pid,
      mount: message.isolateProcess || !!iso?.mount,
      uts: message.isolateProcess || !!iso?.uts,
      ipc: message.isolateProcess || !!iso?.ipc,
      network: message.isolateNetwork || !!iso?.network,
    },
  };
  const parts = { cpu: cpu && defined(cpu), cpuset: cpuset && defined(cpuset), memory: memory && defined(memory), pids: pids && defined(pids), io: io && defined(io) };
  for (const [key, value] of Object.entries(parts)) if (value) Object.assign(spec, { [key]: value });
  return spec;
}

/** The API message for a stored spec. */
export function cellToProto(spec: CellSpec): Cell {
  const iso = spec.isolation;
  return {
    name: spec.name,
    cpu: spec.cpu && { weight: toInt64(spec.cpu.weight), max: toInt64(spec.cpu.max), period: toInt64(spec.cpu.period) },
    cpuset: spec.cpuset && { ...spec.cpuset },
    memory: spec.memory && {
      min: toInt64(spec.memory.min),
      low: toInt64(spec.memory.low),
      high: toInt64(spec.memory.high),
      max: toInt64(spec.memory.max),
      swapMax: toInt64(spec.memory.swapMax),
    },
    pids: spec.pids && { max: toInt64(spec.pids.max) },
    io: spec.io && { weight: toInt64(spec.io.weight) },
    isolateProcess: iso.pid && iso.mount && iso.uts && iso.ipc,
    isolateNetwork: iso.network,
    isolation: { ...iso },
  };
}
