import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { DEV_SIGNALS, installSignalHandlers, PID1_SIGNALS } from './index';

describe('signal tables', () => {
  it('PID 1: TERM/USR2 power off, INT/USR1 reboot, CHLD reaps, HUP is ignored', () => {
    expect(PID1_SIGNALS).toEqual({
      SIGTERM: 'poweroff',
      SIGUSR2: 'poweroff',
      SIGINT: 'reboot',
      SIGUSR1: 'reboot',
      SIGCHLD: 'reap',
      SIGHUP: 'ignore',
    });
  });

  it('dev mode: TERM/INT stop', () => {
    expect(DEV_SIGNALS.SIGTERM).toBe('stop');
    expect(DEV_SIGNALS.SIGINT).toBe('stop');
    expect(DEV_SIGNALS.SIGCHLD).toBe('reap');
  });
});

describe('installSignalHandlers', () => {
  it('routes each signal to its action and uninstalls cleanly', () => {
    const target = new EventEmitter();
    const seen: string[] = [];
    const uninstall = installSignalHandlers(PID1_SIGNALS, {
      poweroff: (s) => seen.push(`poweroff:${s}`),
      reboot: (s) => seen.push(`reboot:${s}`),
      reap: () => seen.push('reap'),
    }, target as never);
    for (const s of ['SIGTERM', 'SIGINT', 'SIGUSR1', 'SIGUSR2', 'SIGCHLD', 'SIGHUP']) target.emit(s, s);
    expect(seen).toEqual(['poweroff:SIGTERM', 'reboot:SIGINT', 'reboot:SIGUSR1', 'poweroff:SIGUSR2', 'reap']);
    uninstall();
    expect(target.eventNames()).toEqual([]);
  });
});
