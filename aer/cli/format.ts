// Text renderings for -o text (json prints the result objects as they are).
import type { NodeInfo } from '../sdk';

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
  ].join('\n');
}
