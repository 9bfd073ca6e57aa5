import { describe, expect, it } from 'vitest';
import { RestartMode } from '../gen/aurae/cells/v0/cells';
import { launchPlan, findExecHelper, STATUS_FD } from './launch-plan';
import { parseExecStatus } from './launcher';
import { backoffDelayMs, decideAfterExit, isCleanExit, startLimitReached, wantsRestart } from './restart-policy';
import { effectiveArgv, effectiveEnv, executableToProto, validateExecutable } from './spec';
import { EXECUTABLE_EVENTS, EXECUTABLE_STATES, nextState, TRANSITIONS, TransitionError } from './state-machine';

const base = { name: 'web', command: '', description: '', args: ['/bin/true'], env: {}, cwd: '' };

function rejects(message: Parameters<typeof validateExecutable>[0], pattern: RegExp) {
  try {
    validateExecutable(message);
  } catch (err) {
    expect((err as { code: string }).code).toBe('INVALID_ARGUMENT');
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error(`accepted ${JSON.stringify(message)}`);
}

describe('validateExecutable', () => {
  it('accepts argv and fills defaults', () => {
    const spec = validateExecutable(base);
    expect(spec).toMatchObject({ name: 'web', args: ['/bin/true'], cwd: '/', uid: null, gid: null });
    expect(spec.restart).toEqual({ mode: 'never', initialDelayMs: 100, maxDelayMs: 30_000, startLimitBurst: 5, startLimitIntervalMs: 10_000 });
  });

  it('turns the shell form into /bin/sh -c', () => {
    const spec = validateExecutable({ ...base, args: [], command: 'echo hi; sleep 1' });
    expect(effectiveArgv(spec)).toEqual(['/bin/sh', '-c', 'echo hi; sleep 1']);
  });

  it('gives a standard PATH unless the caller sets one', () => {
    expect(effectiveEnv(validateExecutable(base)).PATH).toMatch(/\/bin/);
    expect(effectiveEnv(validateExecutable({ ...base, env: { PATH: '/x' } })).PATH).toBe('/x');
  });

  it('names the field and the rule for bad input', () => {
    rejects(undefined, /^executable: required/);
    rejects({ ...base, name: '' }, /^executable\.name: required/);
    rejects({ ...base, name: 'Web' }, /^executable\.name: "Web" is not a DNS label/);
    rejects({ ...base, name: '../x' }, /executable\.name/);
    rejects({ ...base, name: 'wéb' }, /executable\.name/);
    rejects({ ...base, name: 'a'.repeat(64) }, /executable\.name/);
    rejects({ ...base, args: [] }, /^executable\.args: required/);
    rejects({ ...base, command: 'x' }, /either command .* or args/);
    rejects({ ...base, args: ['/bin/echo', 'a\0b'] }, /^executable\.args\[1\]: NUL/);
    rejects({ ...base, args: [''] }, /^executable\.args\[0\]/);
    rejects({ ...base, args: Array.from({ length: 2000 }, () => 'x') }, /too many entries/);
    rejects({ ...base, args: ['/bin/echo', 'x'.repeat(300_000)] }, /^executable\.args: too long/);
    rejects({ ...base, env: { 'A=B': 'x' } }, /^executable\.env: "A=B" is not a variable name/);
    rejects({ ...base, env: { A: 'x\0' } }, /^executable\.env\[A\]: NUL/);
    rejects({ ...base, cwd: 'tmp' }, /^executable\.cwd: "tmp" is not an absolute path/);
    rejects({ ...base, cwd: '/tmp/../etc' }, /^executable\.cwd: .*"\.\." components/);
    rejects({ ...base, cwd: '/tmp/\u202e' }, /^executable\.cwd: control/);
    rejects({ ...base, description: 'a\nb' }, /^executable\.description/);
    rejects({ ...base, description: 'x'.repeat(300) }, /^executable\.description: too long/);
    rejects({ ...base, uid: -1 }, /^executable\.uid: -1 is out of range: allowed 0\.\.4294967294/);
    rejects({ ...base, gid: 100 }, /^executable\.gid: set uid too/);
    rejects({ ...base, gid: 4294967295 }, /^executable\.gid: .*out of range/);
    rejects({ ...base, restart: { mode: 42 as RestartMode } }, /^executable\.restart\.mode: 42 is not a restart mode/);
    rejects({ ...base, restart: { mode: RestartMode.RESTART_MODE_ALWAYS, initialDelayMs: 0 } }, /initial_delay_ms: 0 is out of range: allowed 1\.\.3600000/);
    rejects({ ...base, restart: { mode: RestartMode.RESTART_MODE_ALWAYS, initialDelayMs: 500, maxDelayMs: 100 } }, /max_delay_ms: 100 is below initial_delay_ms/);
    rejects({ ...base, restart: { mode: RestartMode.RESTART_MODE_ALWAYS, startLimitBurst: 0 } }, /start_limit_burst/);
  });

  it('round-trips through the API message', () => {
    const spec = validateExecutable({ ...base, uid: 1000, env: { A: '1' }, restart: { mode: RestartMode.RESTART_MODE_ON_FAILURE } });
    expect(validateExecutable(executableToProto(spec))).toEqual(spec);
  });
});

describe('launchPlan', () => {
  const spec = validateExecutable({ ...base, args: ['/bin/sh', '-c', 'id'], uid: 1000, gid: 100, cwd: '/tmp', env: { A: '1' } });

  it('joins the leaf cgroup and passes the namespaces, ids and cwd to aurae-exec', () => {
    const plan = launchPlan({
      helper: '/usr/lib/aurae/aurae-exec',
      cgroupDir: '/sys/fs/cgroup/aurae/a/b/exe.web',
      isolation: { pid: true, mount: true, uts: true, ipc: true, network: true },
      hostname: 'b',
      spec,
    });
    expect(plan.file).toBe('/usr/lib/aurae/aurae-exec');
    expect(plan.args).toEqual([
      '--cgroup', '/sys/fs/cgroup/aurae/a/b/exe.web', '--pid', '--mount', '--uts', 'b', '--ipc', '--net',
      '--uid', '1000', '--gid', '100', '--cwd', '/tmp', '--status-fd', String(STATUS_FD), '--', '/bin/sh', '-c', 'id',
    ]);
    expect(plan.env).toMatchObject({ A: '1', PATH: expect.any(String) });
  });

  it('without a cgroup or namespaces: --cgroup none and nothing else', () => {
    const plan = launchPlan({ helper: 'h', cgroupDir: null, isolation: { pid: false, mount: false, uts: false, ipc: false, network: false }, hostname: 'x', spec: validateExecutable(base) });
    expect(plan.args).toEqual(['--cgroup', 'none', '--cwd', '/', '--status-fd', '3', '--', '/bin/true']);
  });

  it('finds the helper from the environment first, and says where it looked otherwise', () => {
    expect(findExecHelper({ AURAE_EXEC_HELPER: '/x/aurae-exec' }, (p) => p === '/x/aurae-exec')).toBe('/x/aurae-exec');
    expect(() => findExecHelper({}, () => false)).toThrow(/aurae-exec was not found \(looked in .*native\/build\/aurae-exec\)/);
  });
});

describe('restart policy', () => {
  const ok = { code: 0, signal: null, oomKilled: false };
  const fail = { code: 1, signal: null, oomKilled: false };
  const term = { code: null, signal: 'SIGTERM', oomKilled: false };
  const kill = { code: null, signal: 'SIGKILL', oomKilled: false };
  const oom = { code: null, signal: 'SIGKILL', oomKilled: true };

  it('follows systemd: clean = exit 0 or SIGHUP/SIGINT/SIGTERM/SIGPIPE, never an OOM kill', () => {
    expect([ok, fail, term, kill, oom].map(isCleanExit)).toEqual([true, false, true, false, false]);
    expect(isCleanExit({ code: 0, signal: null, oomKilled: true })).toBe(false);
  });

  it('restarts per mode', () => {
    const modes = ['never', 'on-failure', 'always'] as const;
    expect(modes.map((mode) => [ok, fail, kill].map((e) => wantsRestart({ mode }, e)))).toEqual([
      [false, false, false],
      [false, true, true],
      [true, true, true],
    ]);
  });

  it('backs off exponentially up to the maximum', () => {
    const p = { initialDelayMs: 100, maxDelayMs: 1000 };
    expect([1, 2, 3, 4, 5, 6, 1000].map((n) => backoffDelayMs(p, n))).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('counts starts within the interval', () => {
    const p = { startLimitBurst: 3, startLimitIntervalMs: 1000 };
    expect(startLimitReached([0, 100, 200], 500, p)).toBe(true);
    expect(startLimitReached([0, 100, 200], 1001, p)).toBe(false);
    expect(startLimitReached([0, 100], 500, p)).toBe(false);
  });

  it('decides: restart with the next attempt, reset after a stable run, start limit, done', () => {
    const policy = { mode: 'on-failure' as const, initialDelayMs: 100, maxDelayMs: 10_000, startLimitBurst: 3, startLimitIntervalMs: 10_000 };
    expect(decideAfterExit({ policy, exit: fail, runMs: 10, previousAttempts: 1, starts: [0, 50], now: 100 })).toEqual({ action: 'restart', attempt: 2, delayMs: 200 });
    expect(decideAfterExit({ policy, exit: fail, runMs: 20_000, previousAttempts: 5, starts: [0, 50], now: 20_000 })).toEqual({ action: 'restart', attempt: 1, delayMs: 100 });
    expect(decideAfterExit({ policy, exit: fail, runMs: 10, previousAttempts: 2, starts: [0, 100, 300], now: 400 })).toEqual({ action: 'start_limit_hit', starts: 3 });
    expect(decideAfterExit({ policy, exit: ok, runMs: 10, previousAttempts: 0, starts: [0], now: 10 })).toEqual({ action: 'done', failed: false });
    expect(decideAfterExit({ policy: { ...policy, mode: 'never' }, exit: fail, runMs: 10, previousAttempts: 0, starts: [0], now: 10 })).toEqual({ action: 'done', failed: true });
  });
});

describe('executable state table', () => {
  it('has a row for every state, and only known states and events', () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...EXECUTABLE_STATES].sort());
    for (const row of Object.values(TRANSITIONS)) {
      for (const [event, to] of Object.entries(row)) {
        expect(EXECUTABLE_EVENTS).toContain(event);
        expect(EXECUTABLE_STATES).toContain(to);
      }
    }
  });

  it('walks the lifecycle', () => {
    const walk = (events: Parameters<typeof nextState>[1][], from: Parameters<typeof nextState>[0] = 'stopped') => events.reduce(nextState, from);
    expect(walk(['start', 'spawned'])).toBe('running');
    expect(walk(['start', 'spawned', 'exit_restart', 'backoff_elapsed', 'spawned'])).toBe('running');
    expect(walk(['start', 'spawned', 'exit_restart', 'stop'])).toBe('stopped');
    expect(walk(['start', 'spawned', 'stop', 'exit_done_failed'])).toBe('stopped');
    expect(walk(['start', 'spawned', 'stop', 'exit_restart'])).toBe('stopped');
    expect(walk(['start', 'spawned', 'start_limit_hit'])).toBe('failed');
    expect(walk(['start', 'spawn_failed'])).toBe('failed');
    expect(walk(['start', 'spawned', 'exit_done_ok', 'start'])).toBe('starting');
    expect(walk(['stop'], 'exited')).toBe('exited');
  });

  it('refuses events that cannot happen', () => {
    expect(() => nextState('running', 'start')).toThrow(TransitionError);
    expect(() => nextState('stopped', 'spawned')).toThrow(/event "spawned" is not allowed in state "stopped"/);
    expect(() => nextState('backoff', 'exit_restart')).toThrow(TransitionError);
  });
});

describe('parseExecStatus (what aurae-exec wrote on its status descriptor)', () => {
  it('nothing: executed; "pid N": executed, that child is the executable; any other text: the setup failure', () => {
    expect(parseExecStatus('')).toEqual({ executed: true });
    expect(parseExecStatus('pid 4242\n')).toEqual({ executed: true, pid: 4242 });
    // The child failed after aurae-exec named it: the failure wins, the pid line is not part of the message.
    expect(parseExecStatus('pid 4242\nexecuting /x failed: No such file or directory (ENOENT): check the path\n')).toEqual({
      executed: false,
      message: 'executing /x failed: No such file or directory (ENOENT): check the path',
    });
    expect(parseExecStatus('chdir(/nope) failed: …\npid 12\n')).toEqual({ executed: false, message: 'chdir(/nope) failed: …' });
    expect(parseExecStatus('pid 0\n')).toEqual({ executed: false, message: 'pid 0' });
  });
});
