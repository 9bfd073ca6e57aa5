// `aer logs`, `aer events`, `aer top`: read-only views of a node (aurae.observe.v0.ObserveService).
// Streams print as they arrive; with -o json every line of output is one JSON object.
import type { Command } from 'commander';
import { type AuraeClient, type MetricsSnapshot, RANGES } from '../sdk';
import { intIn } from './options';
import { formatDaemonLine, formatEvent, formatLogEntry, formatTop, topJson, topRows } from './observe-format';
import type { OutputFormat, Print, WithClient } from './types';


export interface ObserveCommandOptions {
  /** Waits between top samples (replaced in tests). */
  sleep?: (ms: number) => Promise<void>;
}

export function registerObserveCommands(program: Command, withClient: WithClient, print: Print, options: ObserveCommandOptions = {}): void {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  const logs: Command = program
    .command('logs')
    .description("show an executable's output (stdout and stderr), or with --daemon auraed's own log")
    .argument('[cell]', 'cell path, e.g. web or web/cache')
    .argument('[executable]', 'executable name in the cell')
    .option('-n, --tail <lines>', 'only the last N lines (0: none, useful with -f)', intIn(...RANGES.logTail))
    .option('-f, --follow', 'keep printing new lines until interrupted')
    .option('-t, --timestamps', 'prefix each line with its time and stream')
    .option('--daemon', "auraed's own log instead of an executable's");
  logs.action(
    withClient(async (c, output, cell: string | undefined, executable: string | undefined, opts: { tail?: number; follow?: boolean; timestamps?: boolean; daemon?: boolean }) => {
      const stream = { tail: opts.tail, follow: opts.follow ?? false };
      if (opts.daemon) {
        if (cell !== undefined) logs.error('aer logs --daemon takes no CELL or EXECUTABLE', { exitCode: 2, code: 'aer.usage' });
        for await (const entry of c.observe.daemonLogs(stream)) print(output, entry, opts.timestamps ? entry.line : formatDaemonLine(entry.line));
        return;
      }
      if (cell === undefined || executable === undefined) logs.error('aer logs needs CELL and EXECUTABLE (or --daemon)', { exitCode: 2, code: 'aer.usage' });
      for await (const entry of c.observe.logs(cell, executable, stream)) print(output, entry, formatLogEntry(entry, opts.timestamps ?? false));
    }),
  );

  const events: Command = program
    .command('events')
    .description('show lifecycle events (cells allocated/freed, executables started, exited, restarted, OOM-killed; child VMs started, exited, restarted, failed)')
    .option('-f, --follow', 'keep printing new events until interrupted')
    .option('--since <seq>', 'only events after this sequence number', intIn(0, Number.MAX_SAFE_INTEGER))
    .option('--cell <cell>', 'only this cell and its child cells')
    .option('--vm <name>', "only this child VM's events");
  events.action(
    withClient(async (c, output, opts: { follow?: boolean; since?: number; cell?: string; vm?: string }) => {
      if (opts.cell !== undefined && opts.vm !== undefined) events.error('aer events takes --cell or --vm, not both', { exitCode: 2, code: 'aer.usage' });
      for await (const event of c.observe.events({ follow: opts.follow ?? false, sinceSeq: opts.since, cell: opts.cell, vm: opts.vm })) print(output, event, formatEvent(event));
    }),
  );

  program
    .command('top')
    .description('resource use per cell and executable from their cgroups (CPU% over --interval)')
    .argument('[cell]', 'only this cell and its subtree (default: every cell)')
    .option('--interval <ms>', 'time between samples; 0 takes one sample and shows no CPU%', intIn(0, 3_600_000), 1000)
    .option('-n, --iterations <n>', 'tables to print; 0 keeps going until interrupted', intIn(0, 1_000_000), 1)
    .action(
      withClient(async (c, output, cell: string | undefined, opts: { interval: number; iterations: number }) => {
        let previous: MetricsSnapshot | null = opts.interval > 0 ? await c.observe.metrics(cell) : null;
        for (let i = 0; opts.iterations === 0 || i < opts.iterations; i++) {
          if (opts.interval > 0) await sleep(opts.interval);
          const current = await c.observe.metrics(cell);
          const rows = topRows(current, previous);
          print(output, topJson(current, rows), formatTop(rows));
          previous = current;
        }
      }),
    );
}
