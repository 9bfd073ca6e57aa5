import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listenTargets, prepareUnixSocket, withPort } from './listeners';

const scratch = mkdtempSync(join(tmpdir(), 'aurae-listen-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('listenTargets', () => {
  it('plans the unix socket first, then TCP, leaving out disabled listeners', () => {
    expect(listenTargets({ socket: '/run/aurae/aurae.sock', tcp: '0.0.0.0:8443' })).toEqual([
      { kind: 'unix', path: '/run/aurae/aurae.sock', address: 'unix:///run/aurae/aurae.sock' },
      { kind: 'tcp', address: '0.0.0.0:8443' },
    ]);
    expect(listenTargets({ socket: null, tcp: '[::]:1' })).toEqual([{ kind: 'tcp', address: '[::]:1' }]);
    expect(listenTargets({ socket: null, tcp: null })).toEqual([]);
  });

  it('withPort replaces the port, also for IPv6', () => {
    expect(withPort('0.0.0.0:8443', 9000)).toBe('0.0.0.0:9000');
    expect(withPort('[::1]:8443', 9000)).toBe('[::1]:9000');
  });
});

describe('prepareUnixSocket', () => {
  it('creates the directory for a fresh socket', async () => {
    const path = join(scratch, 'a', 'b', 'aurae.sock');
    expect(await prepareUnixSocket(path)).toBe('fresh');
    expect(existsSync(join(scratch, 'a', 'b'))).toBe(true);
  });

  it('removes a socket nobody answers on (left by a dead auraed)', async () => {
    const path = join(scratch, 'stale.sock');
    // A real crash: a process that listens and is SIGKILLed leaves its socket file behind.
    const crash = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`], {
      timeout: 10_000,
    });
    expect(crash.signal).toBe('SIGKILL');
    expect(existsSync(path)).toBe(true);
    expect(await prepareUnixSocket(path)).toBe('removed-stale');
    expect(existsSync(path)).toBe(false);
  });

  it('refuses a socket another process is serving on, and a path that is not a socket', async () => {
    const live = join(scratch, 'live.sock');
    const server = createServer();
    await new Promise<void>((r) => server.listen(live, r));
    try {
      await expect(prepareUnixSocket(live)).rejects.toThrow(`listen.socket ${live} is in use: another auraed is running; stop it first`);
    } finally {
      await new Promise((r) => server.close(r));
    }
    const file = join(scratch, 'file.sock');
    writeFileSync(file, '');
    await expect(prepareUnixSocket(file)).rejects.toThrow(`listen.socket ${file} exists and is not a socket: remove it or choose another path`);
  });
});
