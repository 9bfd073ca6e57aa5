// Where boot time goes, as the node reports it (Discover's boot report: every phase of init and auraed with its
// start on the kernel's clock, the kernel's time to /init, first SERVING), cross-checked with the boot's console:
// init's and auraed's phase lines (supervisor/phases logs each phase once with its duration) and their console
// stamps. init stamps lines with the kernel's uptime once /proc is mounted (its 'mounts' phase) and with Node's own
// uptime before that (init/log bootClock), so its first line says how long Node took to start and load init.
import type { BootReport } from '../../aer/sdk';
import { findPhaseLine } from '../../supervisor/phases';

export interface PhaseTiming {
  /** Who logged it: init, or auraed (relayed by init). */
  program: string;
  phase: string;
  ms: number;
  /** Console stamp of the phase's line: seconds since the kernel started, when it ended. */
  endS: number;
}

export interface BootTimeline {
  /** Where it was read: the node's boot report (the API) or the console. */
  source: 'report' | 'console';
  /** Seconds from the kernel's start to init (Node as /init) starting: the report only. */
  kernelToInitS: number | null;
  /** init's first line: seconds from Node's start to init running (its own uptime; /proc is not mounted yet). Console only. */
  initFirstLineS: number | null;
  /** Seconds from the kernel's start to the start of init's first phase. */
  firstPhaseS: number | null;
  /** Seconds from the end of init's 'auraed' phase (spawned) to the start of auraed's first phase (Node start, bundle load). */
  auraedLoadS: number | null;
  /** Seconds from the kernel's start to the boot's first SERVING: the report only. */
  servingS: number | null;
  /** The boot's phases that ran, in order: the first run of each (skipped and shutdown phases left out). */
  phases: PhaseTiming[];
}

/** `[   12.345] source: message`: init's console format (init/log). */
const CONSOLE_LINE = /^\[\s*(\d+\.\d+)\] ([\w-]+): (.*)$/;

/** The boot timeline in a console's text. */
export function bootTimeline(console: string): BootTimeline {
  let initFirstLineS: number | null = null;
  const phases: PhaseTiming[] = [];
  for (const line of console.split('\n')) {
    const m = CONSOLE_LINE.exec(line.trimEnd());
    if (!m) continue;
    const [, seconds, program, message] = m as unknown as [string, string, string, string];
    if (program === 'init' && initFirstLineS === null && message.startsWith('aurae init starting')) initFirstLineS = Number(seconds);
    // The shutdown's phases are init's too; they are not boot time.
    if (message.startsWith('shutdown: ') || message.startsWith('error: shutdown: ')) continue;
    const result = findPhaseLine(message);
    if (!result || result.outcome === 'skipped') continue;
    // A restarted auraed logs its phases again: only the boot's first run counts.
    if (phases.some((p) => p.program === program && p.phase === result.name)) continue;
    phases.push({ program, phase: result.name, ms: result.ms, endS: Number(seconds) });
  }
  const startS = (p: PhaseTiming | undefined) => (p ? p.endS - p.ms / 1000 : null);
  const firstInit = phases.find((p) => p.program === 'init');
  const spawned = phases.find((p) => p.program === 'init' && p.phase === 'auraed');
  const firstAuraed = startS(phases.find((p) => p.program === 'auraed'));
  return {
    source: 'console',
    kernelToInitS: null,
    initFirstLineS,
    firstPhaseS: startS(firstInit),
    auraedLoadS: spawned && firstAuraed !== null ? firstAuraed - spawned.endS : null,
    servingS: null,
    phases,
  };
}

/**
 * The boot timeline from the node's own report (Discover's `boot`; `aer version -o json` prints it). A restarted
 * auraed reports its own phases: its times are then later than the boot's first SERVING, which is what counts.
 */
export function timelineFromReport(report: BootReport): BootTimeline {
  const s = (ms: number) => (ms > 0 ? ms / 1000 : null);
  const phases: PhaseTiming[] = [];
  for (const [program, list] of [['init', report.initPhases], ['auraed', report.auraedPhases]] as const) {
    for (const p of list) if (p.outcome !== 'skipped') phases.push({ program, phase: p.name, ms: p.durationMs, endS: (p.startMs + p.durationMs) / 1000 });
  }
  const firstInit = report.initPhases.find((p) => p.outcome !== 'skipped');
  const spawned = report.initPhases.find((p) => p.name === 'auraed' && p.outcome === 'ok');
  const firstAuraed = report.auraedPhases.find((p) => p.outcome !== 'skipped');
  return {
    source: 'report',
    kernelToInitS: report.fromInit ? s(report.kernelToInitMs) : null,
    initFirstLineS: null,
    firstPhaseS: firstInit ? firstInit.startMs / 1000 : null,
    // Restarted auraed: its start is not the boot's.
    auraedLoadS: spawned && firstAuraed && report.auraedStarts <= 1 ? (firstAuraed.startMs - (spawned.startMs + spawned.durationMs)) / 1000 : null,
    servingS: s(report.firstServingMs),
    phases,
  };
}

/**
 * Where the report and the console disagree (empty when they agree): a phase in one and not the other, or a
 * duration that differs (both are the same measurement, so only by rounding). Pass the same boot's two timelines.
 */
export function crossCheck(report: BootTimeline, console: BootTimeline): string[] {
  const problems: string[] = [];
  const key = (p: PhaseTiming) => `${p.program}: ${p.phase}`;
  const fromConsole = new Map(console.phases.map((p) => [key(p), p]));
  for (const p of report.phases) {
    const c = fromConsole.get(key(p));
    if (!c) problems.push(`${key(p)}: in the report, not on the console`);
    else if (Math.abs(c.ms - p.ms) > 1) problems.push(`${key(p)}: ${p.ms} ms in the report, ${c.ms} ms on the console`);
    fromConsole.delete(key(p));
  }
  for (const k of fromConsole.keys()) problems.push(`${k}: on the console, not in the report`);
  return problems;
}

/**
 * Markdown table rows, one mean per variant: the start-up gaps, then one row per (program, phase) seen in any run,
 * in first-seen order. A value missing from a run is left out of its mean.
 */
export function phaseRows(variants: { timelines: BootTimeline[] }[]): string[] {
  const keys: { program: string; phase: string }[] = [];
  for (const v of variants)
    for (const t of v.timelines)
      for (const p of t.phases) if (!keys.some((k) => k.program === p.program && k.phase === p.phase)) keys.push({ program: p.program, phase: p.phase });
  const mean = (xs: number[], digits: number) => (xs.length ? (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(digits) : '—');
  const row = (label: string, pick: (t: BootTimeline) => number | null | undefined, digits: number) =>
    `| ${label} | ${variants.map((v) => mean(v.timelines.flatMap((t) => pick(t) ?? []), digits)).join(' | ')} |`;
  return [
    row('kernel start → init (Node) started (s)', (t) => t.kernelToInitS, 2),
    row("kernel start → init's first phase (s)", (t) => t.firstPhaseS, 2),
    row("of which Node start → init's first line (s)", (t) => t.initFirstLineS, 2),
    ...keys.map(({ program, phase }) => row(`${program}: ${phase} (ms)`, (t) => t.phases.find((p) => p.program === program && p.phase === phase)?.ms, 0)),
    row("auraed spawned → its first phase: Node start, loading the bundle (s)", (t) => t.auraedLoadS, 2),
    row('kernel start → first SERVING (s)', (t) => t.servingS, 2),
  ];
}

/** One line for the bench's progress output: `first phase at 4.22 s (Node 1.27 s); init: mounts 12, …; auraed: …` (ms). */
export function timelineSummary(t: BootTimeline): string {
  const byProgram = new Map<string, string[]>();
  for (const p of t.phases) byProgram.set(p.program, [...(byProgram.get(p.program) ?? []), `${p.phase} ${p.ms}`]);
  const s = (x: number | null) => (x === null ? '?' : x.toFixed(2));
  const head =
    t.source === 'report'
      ? `init at ${s(t.kernelToInitS)} s, first phase at ${s(t.firstPhaseS)} s, auraed load ${s(t.auraedLoadS)} s, SERVING at ${s(t.servingS)} s`
      : `first phase at ${s(t.firstPhaseS)} s (Node start ${s(t.initFirstLineS)} s), auraed load ${s(t.auraedLoadS)} s`;
  return [head, ...[...byProgram].map(([program, list]) => `${program}: ${list.join(', ')} (ms)`)].join('; ');
}

/**
 * A boot's timeline as the bench keeps it: the node's report when it gave one (Discover's `boot`), else its
 * console (an auraed without the report); with what the two disagree on (crossCheck), for the bench to print.
 */
export function benchTimeline(report: BootReport | undefined, console: string): { timeline: BootTimeline; disagreements: string[] } {
  const fromConsole = bootTimeline(console);
  if (!report) return { timeline: fromConsole, disagreements: [] };
  const fromReport = timelineFromReport(report);
  // Node start → init's first line is only on the console (the report starts at Node's start).
  return { timeline: { ...fromReport, initFirstLineS: fromConsole.initFirstLineS }, disagreements: crossCheck(fromReport, fromConsole) };
}
