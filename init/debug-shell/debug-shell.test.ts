import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createMemoryLogger } from '../log';
import { createDebugShell, debugShellSpec, respawnDelay } from './index';

describe('debug shell', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs /bin/sh with the device as stdin/stdout/stderr, tracks it and respawns it', () => {
    const spawned: Array<{ cmd: string; opts: unknown; child: EventEmitter & { pid: number } }> = [];
    const closed: number[] = [];
    const killed: string[] = [];
    const tracked = new Set<number>();
    const log = createMemoryLogger();
    const shell = createDebugShell({
      spec: debugShellSpec('/dev/hvc0'),
      tracked,
      log,
      open: (device) => {
        expect(device).toBe('/dev/hvc0');
        return 7;
      },
      close: (fd) => closed.push(fd),
      spawn: (cmd, _args, opts) => {
        const child = Object.assign(new EventEmitter(), { pid: 500 + spawned.length, kill: (sig: string) => killed.push(sig) });
        spawned.push({ cmd, opts, child });
        return child as unknown as ChildProcess;
      },
      now: () => Date.now(),
    });
    shell.start();
    expect(log.lines[0]).toMatch(/warning: debug shell ENABLED on \/dev\/hvc0/);
    expect(spawned[0]).toMatchObject({
      cmd: '/bin/sh',
      opts: { stdio: [7, 7, 7], env: { PATH: '/bin:/usr/bin', TERM: 'dumb' }, detached: true },
    });
    expect(closed).toEqual([7]);
    expect(tracked.has(500)).toBe(true);

    spawned[0]!.child.emit('exit', 0, null);
    expect(tracked.has(500)).toBe(false);
    vi.advanceTimersByTime(999);
    expect(spawned).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(spawned).toHaveLength(2);
    expect(shell.pid).toBe(501);

    shell.stop();
    // An interactive shell ignores SIGTERM: stop() hangs it up instead of letting it hold the shutdown.
    expect(killed).toEqual(['SIGHUP']);
    spawned[1]!.child.emit('exit', null, 'SIGHUP');
    vi.advanceTimersByTime(60_000);
    expect(spawned).toHaveLength(2);
  });

  it('gives up with an error when the device cannot be opened', () => {
    const log = createMemoryLogger();
    const shell = createDebugShell({
      spec: debugShellSpec('/dev/hvc9'),
      tracked: new Set(),
      log,
      open: () => {
        throw new Error("ENOENT: no such file or directory, open '/dev/hvc9'");
      },
      spawn: () => {
        throw new Error('must not spawn');
      },
    });
    shell.start();
    expect(log.lines.at(-1)).toMatch(/error: debug shell: opening \/dev\/hvc9 failed: ENOENT.*; no debug shell/);
  });

  it('backs off while the shell dies immediately', () => {
    expect(respawnDelay(undefined, 0)).toBe(1_000);
    expect(respawnDelay(1_000, 10)).toBe(2_000);
    expect(respawnDelay(16_000, 10)).toBe(30_000);
    expect(respawnDelay(30_000, 60_000)).toBe(1_000);
  });
});
