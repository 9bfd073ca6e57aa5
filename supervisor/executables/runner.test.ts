import { describe, expect, it } from 'vitest';
import { RestartMode } from '../gen/aurae/cells/v0/cells';
import { silentLogger } from '../log';
import { type ExecutableSnapshot, ExecutableRunner } from './runner';
import { type Executable } from '../gen/aurae/cells/v0/cells';
import { validateExecutable } from './spec';
import { FakeClock, FakeLauncher, FakeLeaf, flush, MemoryEventBus, MemoryLogStore } from './testing';

function setup(exe: Partial<Executable> = {}, options: { signal?: (launcher: FakeLauncher) => (pid: number, sig: NodeJS.Signals) => void } = {}) {
  const launcher = new FakeLauncher();
  const leaf = new FakeLeaf(launcher);
  const clock = new FakeClock();
  const events = new MemoryEventBus();
  const logs = new MemoryLogStore();
  const changes: ExecutableSnapshot[] = [];
  const spec = validateExecutable({ name: 'web', command: '', description: '', args: ['/bin/server'], env: {}, cwd: '', ...exe });
  const runner = new ExecutableRunner({
    cell: 'cell',
    spec,
    isolation: { pid: false, mount: false, uts: false, ipc: false, network: false },
    hostname: 'cell',
    leaf,
    launcher,
    helper: () => '/aurae-exec',
    events,
    logs,
    clock,
    log: silentLogger,
    signal: options.signal?.(launcher) ?? launcher.signal,
    onChange: (s) => changes.push(s),
  });
  return { launcher, leaf, clock, events, logs, changes, runner };
}

const always = (extra: Partial<NonNullable<Executable['restart']>> = {}) => ({ restart: { mode: RestartMode.RESTART_MODE_ALWAYS, ...extra } });

describe('ExecutableRunner', () => {
  it('starts into its leaf, reports the pid, pipes output to the log sink, records the exit', async () => {
    const t = setup();
    const { pid } = await t.runner.start();
    expect(pid).toBe(t.launcher.last.pid);
    expect(t.launcher.last.plan.args.slice(0, 2)).toEqual(['--cgroup', t.leaf.dir]);
    expect(t.leaf.prepared).toBe(1);
    expect(t.runner.snapshot()).toMatchObject({ state: 'running', pid, desiredRunning: true });
    t.launcher.last.emit('stdout', 'hello');
    t.launcher.last.emit('stderr', 'oops');
    expect(await t.logs.read('cell', 'web')).toMatchObject([{ stream: 'stdout', line: 'hello' }, { stream: 'stderr', line: 'oops' }]);

    t.launcher.last.exit(3, null);
    await flush();
    expect(t.runner.snapshot()).toMatchObject({ state: 'failed', pid: 0, lastExit: { code: 3, signal: null, oomKilled: false } });
    expect(t.events.kinds()).toEqual(['executable_started', 'executable_exited']);
    expect(t.logs.openSinks).toBe(0);
    expect(t.changes.map((c) => c.state)).toContain('running');
    expect(t.changes.at(-1)?.state).toBe('failed');
  });

  it('a child named by aurae-exec (clone3 into the cell) is the pid reported and signalled; a fresh leaf is not read back', async () => {
    const signals: [number, string][] = [];
    const t = setup({}, {
      // aurae-exec ends as its child does: a signal to the child ends the launched process the same way.
      signal: (launcher) => (pid, sig) => {
        signals.push([pid, sig]);
        if (pid === 7001) launcher.last.exit(null, sig);
      },
    });
    t.launcher.autoExecute = false;
    let reads = 0;
    const procs = t.leaf.procs.bind(t.leaf);
    t.leaf.procs = () => (reads++, procs());
    t.leaf.oomKills = () => (reads++, 0);
    const starting = t.runner.start();
    await flush();
    expect(t.runner.snapshot().pid).toBe(t.launcher.last.pid); // until aurae-exec names its child
    t.launcher.last.executed(7001);
    expect(await starting).toEqual({ pid: 7001 });
    expect(reads).toBe(0);
    expect(t.runner.snapshot()).toMatchObject({ state: 'running', pid: 7001 });
    expect(t.events.recent()[0]).toMatchObject({ kind: 'executable_started', pid: 7001 });
    // The leaf holds the child (not aurae-exec): SIGTERM reaches it once.
    t.leaf.procs = () => [7001];
    const exit = await t.runner.stop(5000);
    expect(signals).toEqual([[7001, 'SIGTERM']]);
    expect(exit).toMatchObject({ code: null, signal: 'SIGTERM' });
  });

  it('a clean exit with restart never ends "exited"', async () => {
    const t = setup();
    await t.runner.start();
    t.launcher.last.exit(0, null);
    await flush();
    expect(t.runner.snapshot().state).toBe('exited');
  });

  it('fails Start with the helper\'s message when setup fails before exec, and does not restart', async () => {
    const t = setup(always());
    t.launcher.autoExecute = false;
    const started = t.runner.start();
    await flush();
    t.launcher.last.setupFailed('executing /bin/server failed: No such file or directory (ENOENT): check the path');
    await expect(started).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/could not be started: executing \/bin\/server failed/) });
    expect(t.runner.snapshot()).toMatchObject({ state: 'failed', lastExit: { code: 127 } });
    await t.clock.advance(60_000);
    expect(t.launcher.processes).toHaveLength(1);
  });

  it('fails Start when the helper cannot be spawned', async () => {
    const t = setup();
    t.launcher.onLaunch = () => {
      throw Object.assign(new Error('spawning the executable launcher failed (ENOENT)'), { code: 'FAILED_PRECONDITION' });
    };
    await expect(t.runner.start()).rejects.toThrow(/ENOENT/);
    expect(t.runner.snapshot().state).toBe('failed');
    expect(t.logs.openSinks).toBe(0);
  });

  it('restarts with exponential backoff, then hits the start limit (systemd semantics)', async () => {
    const t = setup(always({ initialDelayMs: 100, maxDelayMs: 10_000, startLimitBurst: 3, startLimitIntervalMs: 10_000 }));
    await t.runner.start();
    const delays: number[] = [];
    for (let i = 0; i < 2; i++) {
      t.launcher.last.exit(1, null);
      await flush();
      expect(t.runner.snapshot().state).toBe('backoff');
      delays.push(t.clock.pending()[0]!);
      await t.clock.advance(delays.at(-1)!);
      expect(t.runner.snapshot().state).toBe('running');
    }
    expect(delays).toEqual([100, 200]);
    expect(t.runner.snapshot().restarts).toBe(2);
    // Third start happened; the next exit would make a fourth within 10 s: refused.
    t.launcher.last.exit(1, null);
    await flush();
    expect(t.runner.snapshot().state).toBe('failed');
    expect(t.events.events.filter((e) => e.kind === 'executable_restarted')).toMatchObject([{ attempt: 1, delayMs: 100 }, { attempt: 2, delayMs: 200 }]);
    expect(t.events.events.at(-1)).toMatchObject({ kind: 'start_limit_hit', starts: 3, intervalMs: 10_000 });
    await t.clock.advance(60_000);
    expect(t.launcher.processes).toHaveLength(3);
    // A Start call resets the counters.
    await t.runner.start();
    expect(t.runner.snapshot()).toMatchObject({ state: 'running', restarts: 0 });
  });

  it('on-failure does not restart after a clean exit', async () => {
    const t = setup({ restart: { mode: RestartMode.RESTART_MODE_ON_FAILURE } });
    await t.runner.start();
    t.launcher.last.exit(null, 'SIGTERM');
    await flush();
    expect(t.runner.snapshot().state).toBe('exited');
  });

  it('stop: SIGTERM to every process of the leaf; the leftovers are killed; no restart', async () => {
    const t = setup(always());
    await t.runner.start();
    t.leaf.extra = [4242]; // a grandchild in the leaf
    const delivered: number[] = [];
    const signal = t.launcher.signal;
    (t.runner as unknown as { deps: { signal: typeof signal } }).deps.signal = (pid, sig) => {
      delivered.push(pid);
      if (pid !== 4242) signal(pid, sig);
    };
    const exit = await t.runner.stop(5_000);
    expect(delivered.sort()).toEqual([t.launcher.last.pid, 4242].sort());
    expect(exit).toMatchObject({ signal: 'SIGTERM' });
    expect(t.leaf.kills).toBe(1);
    expect(t.leaf.procs()).toEqual([]);
    expect(t.runner.snapshot()).toMatchObject({ state: 'stopped', desiredRunning: false });
    await t.clock.advance(60_000);
    expect(t.launcher.processes).toHaveLength(1);
  });

  it('stop: after the grace period, cgroup.kill', async () => {
    const t = setup();
    t.launcher.onTerm = 'ignore';
    await t.runner.start();
    const stopping = t.runner.stop(3_000);
    await flush();
    expect(t.runner.snapshot().state).toBe('stopping');
    expect(t.launcher.last.signals).toEqual(['SIGTERM']);
    await t.clock.advance(2_999);
    expect(t.launcher.last.alive).toBe(true);
    await t.clock.advance(1);
    expect(await stopping).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(t.runner.snapshot().state).toBe('stopped');
  });

  it('stop during backoff cancels the restart; stop when stopped is a no-op', async () => {
    const t = setup(always());
    await t.runner.start();
    t.launcher.last.exit(1, null);
    await flush();
    expect(t.runner.snapshot().state).toBe('backoff');
    await t.runner.stop(1000);
    expect(t.runner.snapshot().state).toBe('stopped');
    await t.clock.advance(60_000);
    expect(t.launcher.processes).toHaveLength(1);
    expect(await t.runner.stop(1000)).toBeNull();
  });

  it('refuses a second Start while active', async () => {
    const t = setup();
    await t.runner.start();
    await expect(t.runner.start()).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
  });

  it('reports OOM kills from memory.events while running and marks the exit', async () => {
    const t = setup();
    await t.runner.start();
    t.leaf.oomKill();
    expect(t.events.events.at(-1)).toMatchObject({ kind: 'executable_oom_killed', count: 1 });
    t.launcher.last.exit(null, 'SIGKILL');
    await flush();
    expect(t.runner.snapshot().lastExit).toMatchObject({ signal: 'SIGKILL', oomKilled: true });
    expect(t.events.kinds().filter((k) => k === 'executable_oom_killed')).toHaveLength(1);
  });

  it('finds an OOM kill at exit even without a watch notification', async () => {
    const t = setup({ restart: { mode: RestartMode.RESTART_MODE_ON_FAILURE } });
    await t.runner.start();
    t.leaf.oom = 1;
    t.launcher.last.exit(null, 'SIGKILL');
    await flush();
    expect(t.events.kinds()).toEqual(['executable_started', 'executable_oom_killed', 'executable_exited']);
    expect(t.runner.snapshot()).toMatchObject({ state: 'backoff', lastExit: { oomKilled: true } });
  });

  it('a process that exits right after exec is still reported as started, then exited', async () => {
    const t = setup();
    t.launcher.autoExecute = false;
    const started = t.runner.start();
    await flush();
    t.launcher.last.exit(0, null);
    expect(await started).toEqual({ pid: t.launcher.last.pid });
    await flush();
    expect(t.events.kinds()).toEqual(['executable_started', 'executable_exited']);
    expect(t.runner.snapshot().state).toBe('exited');
  });
});
