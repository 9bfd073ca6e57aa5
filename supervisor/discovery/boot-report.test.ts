import { describe, expect, it } from 'vitest';
import { HealthRegistry } from '../health';
import { createBootRecorder, discover } from './index';

const initPart = {
  startedMs: 1200,
  phases: [
    { name: 'mounts', outcome: 'ok' as const, startMs: 1500, ms: 30 },
    { name: 'debug-shell', outcome: 'skipped' as const, startMs: 1530, ms: 0 },
    { name: 'auraed', outcome: 'ok' as const, startMs: 1530, ms: 5 },
  ],
  auraedStarts: 1,
  firstServingMs: null,
};

describe('the boot report', () => {
  it("records auraed's phases as they end, and marks listening and SERVING by their phases' ends", () => {
    const boot = createBootRecorder(2000.4);
    boot.phase({ name: 'pki', outcome: 'ok', startMs: 3000, ms: 10 });
    expect(boot.report()).toEqual({
      fromInit: false,
      kernelToInitMs: 0,
      initPhases: [],
      auraedStartedMs: 2000,
      auraedPhases: [{ name: 'pki', outcome: 'ok', startMs: 3000, durationMs: 10 }],
      listeningMs: 0,
      servingMs: 0,
      firstServingMs: 0,
      auraedStarts: 0,
    });
    boot.phase({ name: 'server', outcome: 'ok', startMs: 3010, ms: 40 });
    boot.phase({ name: 'serving', outcome: 'ok', startMs: 3050, ms: 1 });
    expect(boot.report()).toMatchObject({ listeningMs: 3050, servingMs: 3051, firstServingMs: 3051 });
  });

  it("carries init's part once it came: the kernel's time to /init, init's phases, the starts", () => {
    const boot = createBootRecorder(2000);
    boot.phase({ name: 'serving', outcome: 'ok', startMs: 3050, ms: 1 });
    boot.init(initPart);
    expect(boot.report()).toMatchObject({
      fromInit: true,
      kernelToInitMs: 1200,
      initPhases: [
        { name: 'mounts', outcome: 'ok', startMs: 1500, durationMs: 30 },
        { name: 'debug-shell', outcome: 'skipped', startMs: 1530, durationMs: 0 },
        { name: 'auraed', outcome: 'ok', startMs: 1530, durationMs: 5 },
      ],
      firstServingMs: 3051,
      auraedStarts: 1,
    });
  });

  it("after a restart: the boot's first SERVING is the earlier auraed's, this one's is its own", () => {
    const boot = createBootRecorder(60_000);
    boot.init({ ...initPart, auraedStarts: 2, firstServingMs: 3051 });
    boot.phase({ name: 'serving', outcome: 'ok', startMs: 61_000, ms: 2 });
    expect(boot.report()).toMatchObject({ auraedStarts: 2, firstServingMs: 3051, servingMs: 61_002 });
  });

  it('is what Discover answers, when auraed has one', () => {
    const health = new HealthRegistry();
    const system = { uptimeSeconds: () => 5, kernelRelease: () => '6.1.0', pid: () => 7 };
    const boot = createBootRecorder(2000);
    expect(discover({ nodeName: 'n', version: '1', health, system }).boot).toBeUndefined();
    expect(discover({ nodeName: 'n', version: '1', health, system, boot: () => boot.report() }).boot).toMatchObject({ auraedStartedMs: 2000 });
  });
});
