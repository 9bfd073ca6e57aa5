import { describe, expect, it } from 'vitest';
import type { BootReport } from '../sdk';
import { formatBoot, formatVersion } from './format';

const phase = (name: string, startMs: number, durationMs: number, outcome = 'ok') => ({ name, outcome, startMs, durationMs });

const REPORT: BootReport = {
  fromInit: true,
  kernelToInitMs: 1200,
  initPhases: [phase('mounts', 1500, 30), phase('storage', 1530, 120), phase('debug-shell', 1650, 0, 'skipped'), phase('network', 1650, 80), phase('auraed', 1730, 20)],
  auraedStartedMs: 1760,
  auraedPhases: [phase('pki', 2900, 90), phase('cells', 2990, 600), phase('vms', 3590, 400), phase('server', 3990, 500), phase('serving', 4490, 10), phase('pods-reconcile', 4500, 1)],
  listeningMs: 4490,
  servingMs: 4500,
  firstServingMs: 4500,
  auraedStarts: 1,
};

describe('formatBoot', () => {
  it('is a short table: when each stage began, how long it took, its slowest phases', () => {
    expect(formatBoot(REPORT)).toEqual([
      'boot    stage            at (s) took (s)',
      '        kernel → /init     1.20     1.20',
      '        init load          1.20     0.30  Node start, loading init',
      '        init phases        1.50     0.25  storage 120 ms, network 80 ms, mounts 30 ms',
      '        auraed load        1.76     1.14  Node start, loading the bundle',
      '        auraed phases      2.90     1.60  cells 600 ms, server 500 ms, vms 400 ms',
      '        listening          4.49',
      '        first SERVING      4.50',
    ]);
  });

  it("says when init's part is missing, and when auraed was restarted", () => {
    const alone = formatBoot({ ...REPORT, fromInit: false, kernelToInitMs: 0, initPhases: [], auraedStarts: 0 });
    expect(alone[1]).toMatch(/^ +auraed load/);
    expect(alone.at(-1)).toContain("no init part: auraed runs without aurae init, or init's report has not arrived");
    const restarted = formatBoot({ ...REPORT, auraedStarts: 2, servingMs: 61_500 });
    expect(restarted.at(-1)).toBe('        auraed started 2 times this boot; this one SERVING at 61.50 s');
    expect(formatBoot({ ...REPORT, auraedPhases: [phase('pki', 2900, 5, 'failed')], listeningMs: 0, servingMs: 0, firstServingMs: 0 })).toContain(
      '        auraed phases      2.90     0.01  pki 5 ms (failed)',
    );
  });

  it('follows the version lines, and is left out for an auraed without a report', () => {
    const info = { healthy: true, version: '0.1.0', nodeName: 'n', uptimeSeconds: 5, kernelRelease: '6.1.0', pid: 42 };
    expect(formatVersion('0.1.0', info).split('\n')).toHaveLength(2);
    expect(formatVersion('0.1.0', { ...info, boot: REPORT }).split('\n')).toHaveLength(2 + 8);
  });
});
