// `aer cell …`: allocate and free cells, start and stop executables in them, list the tree.
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type CellInfo, type CellSpec, DEFAULTS, type ExecutableSpec, RANGES, type RestartModeName } from '../sdk';
import { intIn } from './options';
import type { Print, WithClient } from './types';

export { intIn } from './options';

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** commander parser: bytes, with an optional K/M/G suffix (powers of 1024), e.g. 64M. */
export function bytes(value: string): number {
  const m = /^(\d+)([kmg]?)i?b?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected bytes, e.g. 67108864, 64M or 1G');
  const n = Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('too large');
  return n;
}

const NAMESPACES = ['pid', 'mount', 'uts', 'ipc', 'network'] as const;

export function isolation(value: string): NonNullable<CellSpec['isolation']> {
  const out: NonNullable<CellSpec['isolation']> = {};
  for (const ns of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(NAMESPACES as readonly string[]).includes(ns)) throw new InvalidArgumentError(`unknown namespace "${ns}": use ${NAMESPACES.join(', ')}`);
    out[ns as (typeof NAMESPACES)[number]] = true;
  }
  return out;
}

function envPair(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('expected NAME=VALUE');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

interface AllocateOptions {
  cpuWeight?: number;
  cpuMax?: number;
  cpuPeriod?: number;
  cpus?: string;
  mems?: string;
  memoryMin?: number;
  memoryLow?: number;
  memoryHigh?: number;
  memoryMax?: number;
  swapMax?: number;
  pidsMax?: number;
  ioWeight?: number;
  isolate?: NonNullable<CellSpec['isolation']>;
}

/** Build a CellSpec from CLI options, leaving out what was not given (pure; tested). */
export function cellSpecFromOptions(name: string, o: AllocateOptions): CellSpec {
  const pick = <T extends object>(obj: T) => (Object.values(obj).some((v) => v !== undefined) ? (JSON.parse(JSON.stringify(obj)) as T) : undefined);
  const spec: CellSpec = { name };
  const cpu = pick({ weight: o.cpuWeight, max: o.cpuMax, period: o.cpuPeriod });
  const cpuset = pick({ cpus: o.cpus, mems: o.mems });
  const memory = pick({ min: o.memoryMin, low: o.memoryLow, high: o.memoryHigh, max: o.memoryMax, swapMax: o.swapMax });
  if (cpu) spec.cpu = cpu;
  if (cpuset) spec.cpuset = cpuset;
  if (memory) spec.memory = memory;
  if (o.pidsMax !== undefined) spec.pids = { max: o.pidsMax };
  if (o.ioWeight !== undefined) spec.io = { weight: o.ioWeight };
  if (o.isolate) spec.isolation = o.isolate;
  return spec;
}

interface StartOptions {
  shell?: string;
  env?: Record<string, string>;
  cwd?: string;
  uid?: number;
  gid?: number;
  restart: RestartModeName;
  description?: string;
}

export function executableSpecFromOptions(name: string, argv: string[], o: StartOptions): ExecutableSpec {
  if (o.shell !== undefined && argv.length) throw new InvalidArgumentError('give either --shell COMMAND or a program after --, not both');
  if (o.shell === undefined && !argv.length) throw new InvalidArgumentError('missing the program: aer cell start CELL NAME -- PROGRAM [ARGS...] (or --shell COMMAND)');
  return JSON.parse(
    JSON.stringify({
      name,
      ...(o.shell !== undefined ? { command: o.shell } : { args: argv }),
      env: o.env,
      cwd: o.cwd,
      uid: o.uid,
      gid: o.gid,
      description: o.description,
      restart: { mode: o.restart },
    }),
  ) as ExecutableSpec;
}

const mib = (n: number | null) => (n === null ? '-' : `${(n / 1024 / 1024).toFixed(1)}M`);

/** The tree as text: one line per cell, executables indented under it. */
export function formatCells(cells: CellInfo[], depth = 0): string {
  const lines: string[] = [];
  for (const cell of cells) {
    const pad = '  '.repeat(depth);
    lines.push(`${pad}${cell.name}  [${cell.state}]  mem ${mib(cell.memoryCurrentBytes)}  pids ${cell.pidsCurrent ?? '-'}  cpu ${cell.cpuUsageUsec === null ? '-' : `${(cell.cpuUsageUsec / 1e6).toFixed(2)}s`}`);
    for (const x of cell.executables) {
      const exit = x.lastExit ? ` last exit: ${x.lastExit.signal ?? `code ${x.lastExit.code}`}${x.lastExit.oomKilled ? ' (OOM-killed)' : ''}` : '';
      lines.push(`${pad}  - ${x.name}: ${x.state}${x.pid ? ` pid ${x.pid}` : ''}${x.restarts ? ` restarts ${x.restarts}` : ''}${exit}`);
    }
    if (cell.children.length) lines.push(formatCells(cell.children, depth + 1));
  }
  return lines.join('\n') || (depth === 0 ? 'no cells' : '');
}

export function registerCellCommands(program: Command, withClient: WithClient, print: Print): void {
  const cell = program.command('cell').description('cells (cgroup v2 + namespaces) and the executables in them');

  cell
    .command('allocate')
    .description('create a cell with limits; nested cells are named parent/child')
    .argument('<name>', 'cell name: DNS labels joined by "/", e.g. web or web/cache')
    .option('--cpu-weight <n>', `cpu.weight ${RANGES.cpuWeight.join('..')}`, intIn(...RANGES.cpuWeight))
    .option('--cpu-max <usec>', 'CPU time per period in microseconds (cpu.max quota)', intIn(...RANGES.cpuMax))
    .option('--cpu-period <usec>', `cpu.max period in microseconds (default ${DEFAULTS.cpuPeriod})`, intIn(...RANGES.cpuPeriod))
    .option('--cpus <list>', 'cpuset.cpus, e.g. 0-1')
    .option('--mems <list>', 'cpuset.mems, e.g. 0')
    .option('--memory-min <bytes>', 'memory.min (K/M/G suffixes)', bytes)
    .option('--memory-low <bytes>', 'memory.low', bytes)
    .option('--memory-high <bytes>', 'memory.high', bytes)
    .option('--memory-max <bytes>', 'memory.max: the OOM killer acts above it', bytes)
    .option('--swap-max <bytes>', 'memory.swap.max', bytes)
    .option('--pids-max <n>', 'pids.max', intIn(...RANGES.pidsMax))
    .option('--io-weight <n>', `io.weight ${RANGES.ioWeight.join('..')}`, intIn(...RANGES.ioWeight))
    .option('--isolate <namespaces>', `new namespaces for its executables: ${NAMESPACES.join(',')}`, isolation)
    .action(
      withClient(async (c, output, name: string, options: AllocateOptions) => {
        const r = await c.cells.allocate(cellSpecFromOptions(name, options));
        print(output, r, `allocated ${r.cellName}`);
      }),
    );

  cell
    .command('free')
    .description('free a cell (and its child cells with --force): no process or cgroup is left behind')
    .argument('<name>', 'cell name')
    .option('--force', 'stop its executables and free its child cells too')
    .action(
      withClient(async (c, output, name: string, options: { force?: boolean }) => {
        await c.cells.free(name, { force: options.force ?? false });
        print(output, { cellName: name, freed: true }, `freed ${name}`);
      }),
    );

  cell
    .command('list')
    .description('every cell as a tree, with state, usage and executables')
    .action(
      withClient(async (c, output) => {
        const cells = await c.cells.list();
        print(output, cells, formatCells(cells));
      }),
    );

  cell
    .command('start')
    .description('start an executable in a cell: aer cell start CELL NAME -- PROGRAM [ARGS...]')
    .argument('<cell>', 'cell name')
    .argument('<name>', 'executable name (DNS label, unique in the cell)')
    .argument('[argv...]', 'the program and its arguments (after --)')
    .option('--shell <command>', 'run COMMAND with /bin/sh -c instead of a program')
    .option('--env <NAME=VALUE>', 'environment variable (repeatable)', envPair)
    .option('--cwd <dir>', 'working directory (absolute)')
    .option('--uid <uid>', 'user id to run as', intIn(...RANGES.id))
    .option('--gid <gid>', 'group id to run as', intIn(...RANGES.id))
    .option('--description <text>', 'free text shown in listings')
    .addOption(new Option('--restart <mode>', 'restart policy').choices(['never', 'on-failure', 'always']).default('never'))
    .action(
      withClient(async (c, output, cellName: string, name: string, argv: string[], options: StartOptions) => {
        const r = await c.cells.start(cellName, executableSpecFromOptions(name, argv, options));
        print(output, { cellName, executable: name, ...r }, `started ${cellName}/${name} (pid ${r.pid})`);
      }),
    );

  cell
    .command('stop')
    .description('stop an executable: SIGTERM to all its processes, SIGKILL after the grace period')
    .argument('<cell>', 'cell name')
    .argument('<name>', 'executable name')
    .option('--grace <ms>', `grace period in milliseconds (default ${DEFAULTS.stopGraceMs})`, intIn(...RANGES.stopGraceMs))
    .action(
      withClient(async (c, output, cellName: string, name: string, options: { grace?: number }) => {
        const r = await c.cells.stop(cellName, name, { graceMs: options.grace });
        const how = r.exit ? (r.exit.signal ? `killed by ${r.exit.signal}` : `exited with code ${r.exit.code}`) : 'was not running';
        print(output, { cellName, executable: name, ...r }, `stopped ${cellName}/${name}: ${how}`);
      }),
    );
}
