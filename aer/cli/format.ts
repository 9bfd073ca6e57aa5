// Text renderings for -o text (json prints the result objects as they are).
import type { BootPhase, BootReport, NodeInfo } from '../sdk';

/** 42s, 12m 3s, 2h 5m, 3d 4h. */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export function formatVersion(aerVersion: string, info: NodeInfo): string {
  const health = info.healthy ? 'healthy' : 'NOT healthy';
  return [
    `aer     ${aerVersion}`,
    `auraed  ${info.version} on ${info.nodeName} (kernel ${info.kernelRelease}, pid ${info.pid}, up ${formatDuration(info.uptimeSeconds)}, ${health})`,
    ...(info.boot ? formatBoot(info.boot) : []),
  ].join('\n');
}

/**
 * The boot report as a short table: when each stage began (seconds since the kernel started), how long it took,
 * and the slowest phases in it. Every phase is in `aer version -o json`.
 */
export function formatBoot(boot: BootReport): string[] {
  const ran = (phases: BootPhase[]) => phases.filter((p) => p.outcome !== 'skipped');
  const span = (phases: BootPhase[]) => {
    const r = ran(phases);
    if (r.length === 0) return { at: 0, took: 0 };
    const at = r[0]!.startMs;
    return { at, took: Math.max(...r.map((p) => p.startMs + p.durationMs)) - at };
  };
  const slowest = (phases: BootPhase[]) =>
    [...ran(phases)]
      .sort((a, b) => b.durationMs - a.durationMs)
      .slice(0, 3)
      .map((p) => `${p.name} ${Math.round(p.durationMs)} ms${p.outcome === 'failed' ? ' (failed)' : ''}`)
      .join(', ');
  const init = span(boot.initPhases);
  const auraed = span(boot.auraedPhases);
  const rows: [string, number, number, string][] = [];
  if (boot.fromInit) {
    rows.push(['kernel → /init', boot.kernelToInitMs, boot.kernelToInitMs, '']);
    rows.push(['init load', boot.kernelToInitMs, init.at ? init.at - boot.kernelToInitMs : 0, 'Node start, loading init']);
    rows.push(['init phases', init.at, init.took, slowest(boot.initPhases)]);
  }
  rows.push(['auraed load', boot.auraedStartedMs, auraed.at ? auraed.at - boot.auraedStartedMs : 0, 'Node start, loading the bundle']);
  rows.push(['auraed phases', auraed.at, auraed.took, slowest(boot.auraedPhases)]);
  rows.push(['listening', boot.listeningMs, 0, '']);
  rows.push(['first SERVING', boot.firstServingMs, 0, '']);
  const seconds = (ms: number) => (ms > 0 ? (ms / 1000).toFixed(2) : '—');
  const lines = [`boot    ${'stage'.padEnd(15)} ${'at (s)'.padStart(7)} ${'took (s)'.padStart(8)}`];
  for (const [stage, at, took, detail] of rows) {
    const tookText = took > 0 ? (took / 1000).toFixed(2) : '';
    lines.push(`        ${stage.padEnd(15)} ${seconds(at).padStart(7)} ${tookText.padStart(8)}${detail ? `  ${detail}` : ''}`.trimEnd());
  }
  if (!boot.fromInit) lines.push("        (no init part: auraed runs without aurae init, or init's report has not arrived)");
  if (boot.auraedStarts > 1) lines.push(`        auraed started ${boot.auraedStarts} times this boot; this one SERVING at ${seconds(boot.servingMs)} s`);
  return lines;
}
