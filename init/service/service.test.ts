import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createMemoryLogger } from '../log';
import {
  afterExit,
  auraedCommand,
  createAuraedService,
  nextFailureCount,
  restartDelay,
  type Timers,
} from './index';
import { parseAuraedMessage, parseInitMessage, readyLine } from '../../supervisor/ipc';
import { cutMarker, LINE_LIMITS } from '../../supervisor/log';

const policy = { initialMs: 100, maxMs: 1_000, stableMs: 10_000 };

describe('restart backoff', () => {
  it('doubles from initialMs up to maxMs', () => {
    expect([1, 2, 3, 4, 5, 6, 50].map((n) => restartDelay(n, policy))).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('counts consecutive short runs and resets after a stable run', () => {
    const schedule: number[] = [];
    let failures = 0;
    for (const ranMs of [50, 50, 50, 20_000, 50]) {
      failures = nextFailureCount(failures, ranMs, policy);
      schedule.push(restartDelay(failures, policy));
    }
    expect(schedule).toEqual([100, 200, 400, 100, 200]);
  });
});

describe('IPC messages', () => {
  it('accepts ready and power messages', () => {
    expect(parseAuraedMessage({ type: 'ready', node: 'n', version: '0.1.0', socket: '/run/aurae/aurae.sock', tcp: null })).toMatchObject({ type: 'ready' });
    expect(parseAuraedMessage({ type: 'power', action: 'reboot', by: 'admin' })).toEqual({ type: 'power', action: 'reboot', by: 'admin' });
    expect(parseAuraedMessage({ type: 'power', action: 'poweroff', by: 'admin', reason: 'maintenance' })).toMatchObject({ reason: 'maintenance' });
    expect(parseAuraedMessage({ type: 'power', action: 'poweroff', by: 'admin', reason: 'x'.repeat(257) })).toMatch(/^reason: /);
  });

  it('explains what is wrong with a bad message', () => {
    expect(parseAuraedMessage({ type: 'power', action: 'explode', by: 'x' })).toMatch(/^action: /);
    expect(parseAuraedMessage('hello')).toEqual(expect.any(String));
  });

  it('formats the AURAE_READY line with a fixed key order', () => {
    const line = readyLine({ type: 'ready', tcp: '0.0.0.0:8443', socket: '/run/aurae/aurae.sock', version: '0.1.0', node: 'n1' }, 42);
    expect(line).toBe('AURAE_READY {"node":"n1","version":"0.1.0","socket":"/run/aurae/aurae.sock","tcp":"0.0.0.0:8443","pid":42}');
  });
});

describe('auraedCommand', () => {
  const base = { nodePath: '/usr/bin/node', configPath: '/run/aurae/config.json' };
  it('prefers the override, then the bundle, then the checkout', () => {
    const dev = { tsxLoader: 'file:///repo/node_modules/tsx/dist/loader.mjs', mainTs: '/repo/supervisor/main.ts' };
    expect(auraedCommand({ ...base, override: '["/bin/fake","-x"]', bundledEntry: '/usr/lib/aurae/auraed.cjs', devEntry: dev })).toEqual([
      '/bin/fake', '-x', '--config', '/run/aurae/config.json',
    ]);
    expect(auraedCommand({ ...base, bundledEntry: '/usr/lib/aurae/auraed.cjs', devEntry: dev })).toEqual([
      '/usr/bin/node', '/usr/lib/aurae/auraed.cjs', '--config', '/run/aurae/config.json',
    ]);
    expect(auraedCommand({ ...base, bundledEntry: null, devEntry: dev })).toEqual([
      '/usr/bin/node', '--import', dev.tsxLoader, dev.mainTs, '--config', '/run/aurae/config.json',
    ]);
  });

  it('starts the bundle from its V8 startup snapshot when the image has one (auraed.cjs stays argv[1])', () => {
    expect(auraedCommand({ ...base, bundledEntry: '/usr/lib/aurae/auraed.cjs', snapshotBlob: '/usr/lib/aurae/auraed.blob', devEntry: null })).toEqual([
      '/usr/bin/node', '--snapshot-blob', '/usr/lib/aurae/auraed.blob', '/usr/lib/aurae/auraed.cjs', '--config', '/run/aurae/config.json',
    ]);
    // An override is taken as given.
    expect(auraedCommand({ ...base, override: '["/bin/fake"]', bundledEntry: '/usr/lib/aurae/auraed.cjs', snapshotBlob: '/usr/lib/aurae/auraed.blob', devEntry: null })).toEqual([
      '/bin/fake', '--config', '/run/aurae/config.json',
    ]);
  });

  it('rejects a malformed override and a missing auraed with a fix', () => {
    expect(() => auraedCommand({ ...base, override: 'node fake.js', bundledEntry: null, devEntry: null })).toThrow(/AURAE_AURAED_CMD must be a non-empty JSON array/);
    expect(() => auraedCommand({ ...base, override: '[]', bundledEntry: null, devEntry: null })).toThrow(/AURAE_AURAED_CMD/);
    expect(() => auraedCommand({ ...base, bundledEntry: null, devEntry: null })).toThrow(/auraed not found/);
  });
});

class FakeChild extends EventEmitter {
  stdout = new PassThrough();
  stderr = new PassThrough();
  signals: string[] = [];
  /** IPC messages init sent to this auraed. */
  sent: unknown[] = [];
  send(message: unknown, callback?: (error: Error | null) => void) {
    this.sent.push(message);
    callback?.(null);
    return true;
  }
  constructor(public pid: number | undefined) {
    super();
  }
  kill(signal: string) {
    this.signals.push(signal);
    return true;
  }
  exit(code: number | null, signal: string | null = null) {
    this.emit('exit', code, signal);
  }
}

function manualTimers() {
  const queue: Array<{ at: number; fn: () => void; id: number }> = [];
  let id = 0;
  const timers: Timers & { t: number; advance(ms: number): void; pending(): number[] } = {
    t: 0,
    now: () => timers.t,
    setTimeout: (fn, ms) => {
      queue.push({ at: timers.t + ms, fn, id: ++id });
      return id;
    },
    clearTimeout: (handle) => {
      const i = queue.findIndex((q) => q.id === handle);
      if (i !== -1) queue.splice(i, 1);
    },
    advance(ms) {
      timers.t += ms;
      for (;;) {
        queue.sort((a, b) => a.at - b.at);
        const next = queue[0];
        if (!next || next.at > timers.t) break;
        queue.shift();
        next.fn();
      }
    },
    pending: () => queue.map((q) => q.at - timers.t),
  };
  return timers;
}

function setup() {
  const children: FakeChild[] = [];
  let nextPid = 100;
  const files = new Map<string, string>();
  const tracked = new Set<number>();
  const power: string[] = [];
  const timers = manualTimers();
  const log = createMemoryLogger();
  const service = createAuraedService({
    argv: ['/usr/bin/node', 'auraed.cjs', '--config', '/run/aurae/config.json'],
    policy,
    pidFile: '/run/aurae/auraed.pid',
    files: { write: (p, t) => files.set(p, t), remove: (p) => files.delete(p) },
    tracked,
    log,
    onPower: (action, by, reason) => power.push(`${action}:${by}${reason ? `:${reason}` : ''}`),
    timers,
    spawn: (cmd, args, opts) => {
      expect(cmd).toBe('/usr/bin/node');
      expect(args).toEqual(['auraed.cjs', '--config', '/run/aurae/config.json']);
      expect(opts.stdio).toEqual(['ignore', 'pipe', 'pipe', 'ipc']);
      const child = new FakeChild(nextPid++);
      children.push(child);
      return child as unknown as ChildProcess;
    },
  });
  return { service, children, files, tracked, power, timers, log };
}

describe('auraed service', () => {
  it('relays output, prints AURAE_READY, writes the pid file and forwards power requests', async () => {
    const { service, children, files, tracked, power, log } = setup();
    service.start();
    const child = children[0]!;
    expect(tracked.has(100)).toBe(true);
    child.stdout.write('{"level":"info","msg":"hello"}\n');
    child.stderr.write('warn line\n');
    child.emit('message', { type: 'ready', node: 'n1', version: '0.1.0', socket: '/run/aurae/aurae.sock', tcp: '0.0.0.0:8443' });
    child.emit('message', { type: 'power', action: 'reboot', by: 'admin' });
    child.emit('message', { type: 'bogus' });
    await new Promise((r) => setImmediate(r));
    expect(log.lines).toContain('[   0.000] auraed: {"level":"info","msg":"hello"}');
    expect(log.lines).toContain('[   0.000] auraed: warn line');
    expect(log.lines).toContain('AURAE_READY {"node":"n1","version":"0.1.0","socket":"/run/aurae/aurae.sock","tcp":"0.0.0.0:8443","pid":100}');
    expect(files.get('/run/aurae/auraed.pid')).toBe('100\n');
    expect(power).toEqual(['reboot:admin']);
    expect(log.lines.some((l) => l.includes('ignoring malformed IPC message'))).toBe(true);
  });

  it('restarts with exponential backoff and resets after a stable run', () => {
    const { service, children, files, tracked, timers, log } = setup();
    service.start();
    children[0]!.emit('message', { type: 'ready', node: 'n', version: 'v', socket: null, tcp: null });
    children[0]!.exit(1);
    expect(files.size).toBe(0); // pid file removed on exit
    expect(tracked.size).toBe(0);
    expect(timers.pending()).toEqual([100]);
    timers.advance(100);
    expect(children).toHaveLength(2);
    children[1]!.exit(null, 'SIGSEGV');
    expect(timers.pending()).toEqual([200]);
    timers.advance(200);
    children[2]!.exit(2);
    expect(timers.pending()).toEqual([400]);
    timers.advance(400);
    timers.advance(20_000); // runs stably
    children[3]!.exit(3);
    expect(timers.pending()).toEqual([100]);
    expect(log.lines.filter((l) => l.includes('restarting in'))).toEqual([
      expect.stringContaining('auraed (pid 100) exited with code 1 after 0.0 s; restarting in 100 ms (attempt 1)'),
      expect.stringContaining('auraed (pid 101) was killed by SIGSEGV after 0.0 s; restarting in 200 ms (attempt 2)'),
      expect.stringContaining('restarting in 400 ms (attempt 3)'),
      expect.stringContaining('after 20.0 s; restarting in 100 ms (attempt 1)'),
    ]);
  });

  it('treats a spawn failure like an exit and retries', () => {
    const { timers, log } = setup();
    const failing = createAuraedService({
      argv: ['/nonexistent'],
      policy,
      pidFile: '/x.pid',
      files: { write: () => {}, remove: () => {} },
      tracked: new Set(),
      log,
      onPower: () => {},
      timers,
      spawn: () => {
        const child = new FakeChild(undefined);
        setImmediate(() => child.emit('error', Object.assign(new Error('spawn /nonexistent ENOENT'), { code: 'ENOENT' })));
        return child as unknown as ChildProcess;
      },
    });
    failing.start();
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        expect(log.lines.at(-1)).toMatch(/auraed could not be started \(\/nonexistent\): spawn \/nonexistent ENOENT; restarting in 100 ms/);
        expect(timers.pending()).toEqual([100]);
        resolve();
      }),
    );
  });

  it('stop(): SIGTERM, and no restart once it exits', async () => {
    const { service, children, timers } = setup();
    service.start();
    const stopped = service.stop(5_000);
    expect(children[0]!.signals).toEqual(['SIGTERM']);
    children[0]!.exit(0);
    await stopped;
    expect(timers.pending()).toEqual([]);
    service.start();
    expect(children).toHaveLength(1);
  });

  it('stop(): SIGKILL after the grace period', async () => {
    const { service, children, timers, log } = setup();
    service.start();
    const stopped = service.stop(1_000);
    timers.advance(999);
    expect(children[0]!.signals).toEqual(['SIGTERM']);
    timers.advance(1);
    await Promise.resolve();
    expect(children[0]!.signals).toEqual(['SIGTERM', 'SIGKILL']);
    children[0]!.exit(null, 'SIGKILL');
    await stopped;
    expect(log.lines.some((l) => l.includes('still running 1000 ms after SIGTERM; sending SIGKILL'))).toBe(true);
  });

  it('stop() cancels a pending restart', async () => {
    const { service, children, timers } = setup();
    service.start();
    children[0]!.exit(1);
    expect(timers.pending()).toEqual([100]);
    await service.stop(1_000);
    expect(timers.pending()).toEqual([]);
  });

  it('cuts an over-long output line at the cap, counts it, and keeps relaying', async () => {
    const { service, children, log } = setup();
    service.start();
    const child = children[0]!;
    const cap = LINE_LIMITS.auraedLineBytes;
    // A line 4 times the cap, written in chunks without a newline, then a normal line.
    for (let i = 0; i < 4; i++) child.stdout.write('x'.repeat(cap));
    child.stdout.write('\nafter\r\n');
    child.stderr.write('y'.repeat(cap + 10));
    child.stderr.end(); // the last line has no newline: relayed (cut) at the stream's end
    await new Promise((r) => setImmediate(r));
    const relayed = log.lines.filter((l) => l.includes('auraed: '));
    expect(relayed).toEqual([
      `[   0.000] auraed: ${'x'.repeat(cap)}${cutMarker(3 * cap)}`,
      '[   0.000] auraed: after',
      `[   0.000] auraed: ${'y'.repeat(cap)}${cutMarker(10)}`,
    ]);
    expect(service.output).toEqual({ lines: 3, cutLines: 2, cutBytes: 3 * cap + 10 });
  });

  it('after an exit: stays down when stopping, restarts at once when asked, else backs off', () => {
    expect(afterExit({ stopping: true, restartRequested: true })).toBe('stay-down');
    expect(afterExit({ stopping: false, restartRequested: true })).toBe('restart-now');
    expect(afterExit({ stopping: false, restartRequested: false })).toBe('restart-after-backoff');
  });

  it('restartNow() restarts at once without backoff', () => {
    const { service, children, timers } = setup();
    service.start();
    service.restartNow();
    expect(children[0]!.signals).toEqual(['SIGTERM']);
    children[0]!.exit(null, 'SIGTERM');
    expect(children).toHaveLength(2);
    expect(timers.pending()).toEqual([]);
  });

  it("sends init's boot phases to the running auraed and to every restarted one, with the starts and the first SERVING", () => {
    const { service, children, timers } = setup();
    service.start();
    expect(children[0]!.sent).toEqual([]); // nothing to send before init's phases are done
    const phases = [{ name: 'mounts', outcome: 'ok' as const, startMs: 1300, ms: 12, error: undefined }];
    service.reportBoot({ startedMs: 1200, phases });
    expect(children[0]!.sent).toEqual([{ type: 'boot', init: { startedMs: 1200, phases: [{ name: 'mounts', outcome: 'ok', startMs: 1300, ms: 12 }], auraedStarts: 1, firstServingMs: null } }]);
    expect(parseInitMessage(children[0]!.sent[0])).toEqual(children[0]!.sent[0]); // the schema auraed checks it with
    children[0]!.emit('message', { type: 'ready', node: 'n', version: 'v', socket: null, tcp: null, servingMs: 4800.4 });
    children[0]!.exit(1);
    timers.advance(100);
    expect(children[1]!.sent).toEqual([{ type: 'boot', init: expect.objectContaining({ startedMs: 1200, auraedStarts: 2, firstServingMs: 4800 }) }]);
    // The second's ready does not move the boot's first SERVING.
    children[1]!.emit('message', { type: 'ready', node: 'n', version: 'v', socket: null, tcp: null, servingMs: 90_000 });
    service.restartNow();
    children[1]!.exit(null, 'SIGTERM');
    expect(children[2]!.sent).toEqual([{ type: 'boot', init: expect.objectContaining({ auraedStarts: 3, firstServingMs: 4800 }) }]);
  });

  it('a failed send of the boot report is logged, not fatal', () => {
    const { service, children, log } = setup();
    service.start();
    children[0]!.send = (_m: unknown, callback?: (error: Error | null) => void) => {
      callback?.(new Error('channel closed'));
      return false;
    };
    service.reportBoot({ startedMs: 1, phases: [] });
    expect(log.lines.some((l) => l.includes('sending the boot report to auraed (pid 100) failed: channel closed'))).toBe(true);
    expect(service.running).toBe(true);
  });
});
