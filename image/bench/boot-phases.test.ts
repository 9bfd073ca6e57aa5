import { describe, expect, it } from 'vitest';
import type { BootReport } from '../../aer/sdk';
import { benchTimeline, bootTimeline, crossCheck, phaseRows, timelineFromReport, timelineSummary } from './boot-phases';

// As a real console shows it: init's first line stamped with Node's uptime, the rest with the kernel's.
const CONSOLE = [
  '[    0.000000] Linux version 6.1.0',
  '[   1.250] init: aurae init starting (Node v22.0.0, pid 1)',
  '[   4.300] init: phase mounts ok 100ms',
  '[   4.500] init: phase debug-shell skipped',
  '[   5.000] init: phase auraed ok 200ms',
  '[   8.500] auraed: {"time":"2026-01-01T00:00:00.000Z","level":"info","subsystem":"auraed","msg":"phase pki ok 100ms"}',
  '[   9.000] auraed: {"time":"2026-01-01T00:00:00.500Z","level":"info","subsystem":"auraed","msg":"phase serving ok 5ms"}',
  'AURAE_READY {"node":"aurae"}',
  '[  20.000] auraed: {"time":"2026-01-01T00:00:11.000Z","level":"info","subsystem":"auraed","msg":"phase pki ok 30ms"}',
  '[  29.000] init: shutdown: phase sync ok 3ms',
  '[  29.001] init: error: shutdown: phase unmount failed after 1ms: EBUSY; continuing',
].join('\n');

describe('bootTimeline', () => {
  it("reads the start-up gaps and the boot's phases, leaving out skipped, repeated and shutdown phases", () => {
    const t = bootTimeline(CONSOLE);
    expect(t.phases).toEqual([
      { program: 'init', phase: 'mounts', ms: 100, endS: 4.3 },
      { program: 'init', phase: 'auraed', ms: 200, endS: 5 },
      { program: 'auraed', phase: 'pki', ms: 100, endS: 8.5 },
      { program: 'auraed', phase: 'serving', ms: 5, endS: 9 },
    ]);
    expect(t.initFirstLineS).toBe(1.25);
    expect(t.firstPhaseS).toBeCloseTo(4.2);
    expect(t.auraedLoadS).toBeCloseTo(3.4);
  });

  it('finds nothing in a console without phase lines (the busybox baseline)', () => {
    expect(bootTimeline('[    0.5] Run /init as init process\nAURAE_READY {}')).toEqual({
      source: 'console',
      kernelToInitS: null,
      initFirstLineS: null,
      firstPhaseS: null,
      auraedLoadS: null,
      servingS: null,
      phases: [],
    });
  });
});

describe('phaseRows', () => {
  it('gives one row per gap and phase with the mean per variant', () => {
    const a = bootTimeline(CONSOLE);
    const b = bootTimeline(CONSOLE.replace('mounts ok 100ms', 'mounts ok 300ms').replace('[   1.250]', '[   1.450]'));
    expect(phaseRows([{ timelines: [a, b] }, { timelines: [] }])).toEqual([
      '| kernel start → init (Node) started (s) | — | — |',
      "| kernel start → init's first phase (s) | 4.10 | — |",
      "| of which Node start → init's first line (s) | 1.35 | — |",
      '| init: mounts (ms) | 200 | — |',
      '| init: auraed (ms) | 200 | — |',
      '| auraed: pki (ms) | 100 | — |',
      '| auraed: serving (ms) | 5 | — |',
      '| auraed spawned → its first phase: Node start, loading the bundle (s) | 3.40 | — |',
      '| kernel start → first SERVING (s) | — | — |',
    ]);
  });
});

describe('timelineSummary', () => {
  it('is one line per boot', () => {
    expect(timelineSummary(bootTimeline(CONSOLE))).toBe(
      'first phase at 4.20 s (Node start 1.25 s), auraed load 3.40 s; init: mounts 100, auraed 200 (ms); auraed: pki 100, serving 5 (ms)',
    );
  });
});

// The same boot as CONSOLE, as the node reports it (Discover's boot; times in ms since the kernel started).
const REPORT: BootReport = {
  fromInit: true,
  kernelToInitMs: 2900,
  initPhases: [
    { name: 'mounts', outcome: 'ok', startMs: 4200, durationMs: 100 },
    { name: 'debug-shell', outcome: 'skipped', startMs: 4500, durationMs: 0 },
    { name: 'auraed', outcome: 'ok', startMs: 4800, durationMs: 200 },
  ],
  auraedStartedMs: 5100,
  auraedPhases: [
    { name: 'pki', outcome: 'ok', startMs: 8400, durationMs: 100 },
    { name: 'serving', outcome: 'ok', startMs: 8995, durationMs: 5 },
  ],
  listeningMs: 8995,
  servingMs: 9000,
  firstServingMs: 9000,
  auraedStarts: 1,
};

describe('timelineFromReport', () => {
  it("reads the boot from the node's report: the kernel's time to /init, the phases on one clock, first SERVING", () => {
    const t = timelineFromReport(REPORT);
    expect(t).toMatchObject({ source: 'report', kernelToInitS: 2.9, firstPhaseS: 4.2, servingS: 9, initFirstLineS: null });
    expect(t.auraedLoadS).toBeCloseTo(3.4);
    expect(t.phases).toEqual(bootTimeline(CONSOLE).phases);
    expect(timelineSummary(t)).toBe('init at 2.90 s, first phase at 4.20 s, auraed load 3.40 s, SERVING at 9.00 s; init: mounts 100, auraed 200 (ms); auraed: pki 100, serving 5 (ms)');
  });

  it("leaves out what a restarted auraed's report cannot say about the boot, and init's part when init sent none", () => {
    expect(timelineFromReport({ ...REPORT, auraedStarts: 2 }).auraedLoadS).toBeNull();
    expect(timelineFromReport({ ...REPORT, fromInit: false, kernelToInitMs: 0, initPhases: [] })).toMatchObject({ kernelToInitS: null, firstPhaseS: null, auraedLoadS: null });
  });
});

describe('crossCheck and benchTimeline', () => {
  it('find nothing to say when the report and the console tell the same boot', () => {
    expect(benchTimeline(REPORT, CONSOLE)).toEqual({ timeline: { ...timelineFromReport(REPORT), initFirstLineS: 1.25 }, disagreements: [] });
  });

  it('name each phase missing on one side or timed differently', () => {
    const report = timelineFromReport({ ...REPORT, auraedPhases: [{ name: 'pki', outcome: 'ok', startMs: 8400, durationMs: 140 }, { name: 'cells', outcome: 'ok', startMs: 8540, durationMs: 3 }] });
    expect(crossCheck(report, bootTimeline(CONSOLE))).toEqual([
      'auraed: pki: 140 ms in the report, 100 ms on the console',
      'auraed: cells: in the report, not on the console',
      'auraed: serving: on the console, not in the report',
    ]);
  });

  it('falls back to the console for an auraed without a report', () => {
    expect(benchTimeline(undefined, CONSOLE)).toEqual({ timeline: bootTimeline(CONSOLE), disagreements: [] });
  });
});
