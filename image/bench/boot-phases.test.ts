import { describe, expect, it } from 'vitest';
import { bootTimeline, phaseRows, timelineSummary } from './boot-phases';

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
    expect(bootTimeline('[    0.5] Run /init as init process\nAURAE_READY {}')).toEqual({ initFirstLineS: null, firstPhaseS: null, auraedLoadS: null, phases: [] });
  });
});

describe('phaseRows', () => {
  it('gives one row per gap and phase with the mean per variant', () => {
    const a = bootTimeline(CONSOLE);
    const b = bootTimeline(CONSOLE.replace('mounts ok 100ms', 'mounts ok 300ms').replace('[   1.250]', '[   1.450]'));
    expect(phaseRows([{ timelines: [a, b] }, { timelines: [] }])).toEqual([
      "| kernel start → init's first phase (s) | 4.10 | — |",
      "| of which Node start → init's first line (s) | 1.35 | — |",
      '| init: mounts (ms) | 200 | — |',
      '| init: auraed (ms) | 200 | — |',
      '| auraed: pki (ms) | 100 | — |',
      '| auraed: serving (ms) | 5 | — |',
      '| auraed spawned → its first phase: Node start, loading the bundle (s) | 3.40 | — |',
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
