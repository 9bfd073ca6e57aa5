import { describe, expect, it } from 'vitest';
import { bootClockMs, findPhaseLine, formatMs, need, PhaseError, phaseSummary, processStartMs, runPhases, type Phase, type PhaseResult } from './index';

/** A log that records lines, and a clock that advances 5 ms per reading. */
function fakes() {
  const lines: string[] = [];
  let t = 0;
  return {
    lines,
    log: { info: (l: string) => lines.push(`info ${l}`), error: (l: string) => lines.push(`error ${l}`) },
    options: { now: () => (t += 5) },
  };
}

interface Ctx {
  order: string[];
  value?: number;
}

describe('runPhases', () => {
  it('runs phases in order and logs each once with its duration', async () => {
    const { lines, log, options } = fakes();
    const ctx: Ctx = { order: [] };
    const phases: Phase<Ctx>[] = [
      { name: 'first', run: (c) => void c.order.push('first') },
      {
        name: 'second',
        run: async (c) => {
          await Promise.resolve();
          c.order.push('second');
        },
      },
    ];
    const results = await runPhases(phases, ctx, log, options);
    expect(ctx.order).toEqual(['first', 'second']);
    expect(lines).toEqual(['info phase first ok 5ms', 'info phase second ok 5ms']);
    // The fake clock reads 5 at the first start, 10 at its end, 15 at the second start.
    expect(results).toEqual([
      { name: 'first', outcome: 'ok', startMs: 5, ms: 5 },
      { name: 'second', outcome: 'ok', startMs: 15, ms: 5 },
    ]);
  });

  it('skips a phase whose condition is false, reading the context left by earlier phases', async () => {
    const { lines, log, options } = fakes();
    const ctx: Ctx = { order: [] };
    await runPhases(
      [
        { name: 'set', run: (c) => void (c.value = 2) },
        { name: 'when-one', when: (c) => c.value === 1, run: (c) => void c.order.push('when-one') },
        { name: 'when-two', when: (c) => c.value === 2, run: (c) => void c.order.push('when-two') },
      ],
      ctx,
      log,
      options,
    );
    expect(ctx.order).toEqual(['when-two']);
    expect(lines).toEqual(['info phase set ok 5ms', 'info phase when-one skipped', 'info phase when-two ok 5ms']);
  });

  it('stops at a failed phase with an error naming it; later phases do not run', async () => {
    const { lines, log, options } = fakes();
    const ctx: Ctx = { order: [] };
    const run = runPhases<Ctx>(
      [
        {
          name: 'mounts',
          run: () => {
            throw new Error('EPERM');
          },
        },
        { name: 'later', run: (c) => void c.order.push('later') },
      ],
      ctx,
      log,
      options,
    );
    const err = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PhaseError);
    expect((err as PhaseError).message).toBe('phase mounts failed: EPERM');
    expect((err as PhaseError).phase).toBe('mounts');
    expect(((err as PhaseError).cause as Error).message).toBe('EPERM');
    expect(ctx.order).toEqual([]);
    expect(lines).toEqual(['error phase mounts failed after 5ms: EPERM']);
  });

  it('goes on after a failed optional phase, and reports it', async () => {
    const { lines, log, options } = fakes();
    const ctx: Ctx = { order: [] };
    const results = await runPhases<Ctx>(
      [
        { name: 'sync', optional: true, run: () => Promise.reject(new Error('EIO')) },
        { name: 'unmount', run: (c) => void c.order.push('unmount') },
      ],
      ctx,
      log,
      options,
    );
    expect(ctx.order).toEqual(['unmount']);
    expect(lines).toEqual(['error phase sync failed after 5ms: EIO; continuing', 'info phase unmount ok 5ms']);
    expect(results.map((r) => r.outcome)).toEqual(['failed', 'ok']);
  });

  it('counts a throwing condition as the phase failing', async () => {
    const { lines, log, options } = fakes();
    const err = await runPhases<Ctx>(
      [
        {
          name: 'odd',
          when: () => {
            throw new Error('no config');
          },
          run: () => {},
        },
      ],
      { order: [] },
      log,
      options,
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe('phase odd failed: no config');
    expect(lines).toEqual(['error phase odd failed after 5ms: no config']);
  });

  it('measures with the boot clock by default: starts fall after this process started', async () => {
    const { lines, log } = fakes();
    const before = bootClockMs();
    const [result] = await runPhases([{ name: 'quick', run: () => {} }], {}, log);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^info phase quick ok \d+ms$/);
    expect(result!.startMs).toBeGreaterThanOrEqual(Math.floor(before));
    expect(result!.startMs).toBeGreaterThan(processStartMs());
  });

  it('tells each result as it comes, before the next phase runs', async () => {
    const { log, options } = fakes();
    const seen: string[] = [];
    await runPhases<Ctx>(
      [
        { name: 'a', run: () => void seen.push('run a') },
        { name: 'b', when: () => false, run: () => {} },
        { name: 'c', run: () => void seen.push('run c') },
      ],
      { order: [] },
      log,
      { ...options, onResult: (r: PhaseResult) => void seen.push(`${r.name} ${r.outcome}`) },
    );
    expect(seen).toEqual(['run a', 'a ok', 'b skipped', 'run c', 'c ok']);
  });
});

describe('the boot clock', () => {
  it('is monotonic milliseconds on the clock /proc/uptime counts (no suspend in a test run)', () => {
    const a = bootClockMs();
    const b = bootClockMs();
    expect(b).toBeGreaterThanOrEqual(a);
    expect(processStartMs()).toBeLessThan(a);
    expect(processStartMs()).toBeGreaterThan(0);
  });
});

describe('phaseSummary', () => {
  it('sums a finished sequence in table order, marking failures and counting skips', () => {
    const results: PhaseResult[] = [
      { name: 'kernel', outcome: 'ok', startMs: 0, ms: 245_000 },
      { name: 'debug', outcome: 'skipped', startMs: 0, ms: 0 },
      { name: 'runtime', outcome: 'ok', startMs: 0, ms: 12 },
      { name: 'sync', outcome: 'failed', startMs: 0, ms: 1500 },
    ];
    expect(phaseSummary('build', results)).toBe('build: 4 min 07 s in 3 phases (1 skipped): kernel 4 min 05 s, runtime 12 ms, sync 1.5 s (failed)');
  });

  it('formats durations for people', () => {
    expect([formatMs(0), formatMs(999), formatMs(1000), formatMs(59_949), formatMs(60_000), formatMs(3_723_000)]).toEqual(['0 ms', '999 ms', '1.0 s', '59.9 s', '1 min 00 s', '62 min 03 s']);
  });
});

describe('need', () => {
  it('returns a field an earlier phase set, and names a missing one', () => {
    const ctx: Ctx = { order: [] };
    expect(() => need(ctx, 'value')).toThrow('value is not set yet: the phase that sets it must run earlier in the table');
    ctx.value = 0;
    expect(need(ctx, 'value')).toBe(0);
  });
});

describe('findPhaseLine', () => {
  it('reads back every line the runner writes, inside a console line or a JSON record', () => {
    expect(findPhaseLine('[   1.234] init: phase mounts ok 12ms')).toEqual({ name: 'mounts', outcome: 'ok', ms: 12 });
    expect(findPhaseLine('[   3.000] auraed: {"level":"info","subsystem":"auraed","msg":"phase cells ok 250ms"}')).toEqual({ name: 'cells', outcome: 'ok', ms: 250 });
    expect(findPhaseLine('[   1.300] init: phase debug-shell skipped')).toEqual({ name: 'debug-shell', outcome: 'skipped', ms: 0 });
    expect(findPhaseLine('[   1.300] init: error: phase storage failed after 7ms: EIO; continuing')).toEqual({ name: 'storage', outcome: 'failed', ms: 7 });
    expect(findPhaseLine('[   1.300] init: hostname: aurae')).toBeNull();
  });

  it('matches what runPhases logged', async () => {
    const { lines, log, options } = fakes();
    await runPhases<Ctx>(
      [
        { name: 'a', run: () => {} },
        { name: 'b', when: () => false, run: () => {} },
        { name: 'c', optional: true, run: () => Promise.reject(new Error('x')) },
      ],
      { order: [] },
      log,
      options,
    );
    expect(lines.map(findPhaseLine)).toEqual([
      { name: 'a', outcome: 'ok', ms: 5 },
      { name: 'b', outcome: 'skipped', ms: 0 },
      { name: 'c', outcome: 'failed', ms: 5 },
    ]);
  });
});
