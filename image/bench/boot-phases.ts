// Where boot time goes, read from a boot's console: init's and auraed's phase lines (supervisor/phases logs each
// phase once with its duration) and their console stamps. init stamps lines with the kernel's uptime once /proc is
// mounted (its 'mounts' phase) and with Node's own uptime before that (init/log bootClock), so its first line says
// how long Node took to start and load init, and the first phase line says when the kernel had reached that point.
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
  /** init's first line: seconds from Node's start to init running (its own uptime; /proc is not mounted yet). */
  initFirstLineS: number | null;
  /** Seconds from the kernel's start to the start of init's first phase. */
  firstPhaseS: number | null;
  /** Seconds from the end of init's 'auraed' phase (spawned) to the start of auraed's first phase (Node start, bundle load). */
  auraedLoadS: number | null;
  /** The boot's phases that ran, in console order: the first run of each (skipped and shutdown phases left out). */
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
    initFirstLineS,
    firstPhaseS: startS(firstInit),
    auraedLoadS: spawned && firstAuraed !== null ? firstAuraed - spawned.endS : null,
    phases,
  };
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
    row("kernel start → init's first phase (s)", (t) => t.firstPhaseS, 2),
    row("of which Node start → init's first line (s)", (t) => t.initFirstLineS, 2),
    ...keys.map(({ program, phase }) => row(`${program}: ${phase} (ms)`, (t) => t.phases.find((p) => p.program === program && p.phase === phase)?.ms, 0)),
    row("auraed spawned → its first phase: Node start, loading the bundle (s)", (t) => t.auraedLoadS, 2),
  ];
}

/** One line for the bench's progress output: `first phase at 4.22 s (Node 1.27 s); init: mounts 12, …; auraed: …` (ms). */
export function timelineSummary(t: BootTimeline): string {
  const byProgram = new Map<string, string[]>();
  for (const p of t.phases) byProgram.set(p.program, [...(byProgram.get(p.program) ?? []), `${p.phase} ${p.ms}`]);
  const s = (x: number | null) => (x === null ? '?' : x.toFixed(2));
  const head = `first phase at ${s(t.firstPhaseS)} s (Node start ${s(t.initFirstLineS)} s), auraed load ${s(t.auraedLoadS)} s`;
  return [head, ...[...byProgram].map(([program, list]) => `${program}: ${list.join(', ')} (ms)`)].join('; ');
}
