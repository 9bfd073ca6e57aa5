// init in dev daemon mode on the host with a FAKE auraed (init/testing/fake-auraed.cjs).
// Proves: AURAE_READY, pid file, restart with backoff after the fake exits, orphaned
// grandchildren reaped while init still sees its own child's exit status, and a clean
// stop on SIGTERM. Root is needed for nothing but consistency with the priv tier
// (PR_SET_CHILD_SUBREAPER is unprivileged), but it runs real processes, so it lives here.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildSyscallsAddon, hostNodeIncludeDir } from '../../native/build';
import { parseProcStat } from '../reaper';
import { FAKE_AURAED, initArgv, startInit, testNodeConfig, type RunningInit } from '../testing/run-init';

let dir: string;
let addon: string;
let running: RunningInit | undefined;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'aurae-init-dev-'));
  addon = await buildSyscallsAddon({ nodeIncludeDir: hostNodeIncludeDir(), outFile: path.join(dir, 'syscalls.node') });
});
afterEach(() => {
  // A failed test must not leave init (and its fake) running.
  if (running && running.child.exitCode === null && running.child.signalCode === null) running.child.kill('SIGKILL');
  running = undefined;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function statOf(pid: number) {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

function zombieChildrenOf(ppid: number): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map((n) => statOf(Number(n)))
    .filter((s) => s !== null && s.ppid === ppid && s.state === 'Z')
    .map((s) => s!.pid);
}

function start(name: string, fakeEnv: Record<string, string>) {
  const configPath = path.join(dir, `${name}.json`);
  writeFileSync(
    configPath,
    JSON.stringify(testNodeConfig({ supervise: { initialMs: 200, maxMs: 400, stableMs: 60_000 }, shutdown: { graceMs: 2_000 } })),
  );
  const runDir = path.join(dir, `${name}-run`);
  mkdirSync(runDir);
  running = startInit(initArgv(['--config', configPath, '--run-dir', runDir]), {
    ...process.env,
    AURAE_SYSCALLS_ADDON: addon,
    AURAE_AURAED_CMD: JSON.stringify([process.execPath, FAKE_AURAED]),
    AURAE_INIT_DEBUG: '1',
    ...fakeEnv,
  });
  return { init: running, runDir };
}

const READY = /^AURAE_READY (\{.*\})$/;

describe('init dev daemon mode with a fake auraed', () => {
  it('prints AURAE_READY, restarts with backoff, reaps orphans and stops on SIGTERM', async () => {
    const { init, runDir } = start('main', { FAKE_EXIT_AFTER_MS: '1500', FAKE_EXIT_CODE: '3', FAKE_ORPHAN_SLEEP: '1' });
    const initPid = init.child.pid!;

    const ready1 = await init.waitFor(READY);
    const info1 = JSON.parse(ready1.match[1]!);
    expect(info1).toEqual({ node: 'fake-node', version: '0.0.0-fake', socket: '/tmp/fake.sock', tcp: null, pid: expect.any(Number) });
    expect(readFileSync(path.join(runDir, 'auraed.pid'), 'utf8')).toBe(`${info1.pid}\n`);
    // auraed got the effective config init wrote.
    await init.waitFor(new RegExp(`auraed: .*"config":"${runDir}/config.json"`));

    // The orphaned grandchild was re-parented to init (the subreaper) …
    const orphanLine = await init.waitFor(/auraed: .*"orphan":(\d+)/);
    const orphan = Number(orphanLine.match[1]);
    expect(statOf(orphan)?.ppid).toBe(initPid);
    // … and reaped by init's reaper once it died (no zombie left behind).
    await init.waitFor(new RegExp(`reaper: reaped orphan pid ${orphan} \\(exit code 0\\)`), 5_000);
    expect(statOf(orphan)).toBeNull();

    // Node's own exit tracking still works: init saw the fake's real exit code and restarted it.
    await init.waitFor(new RegExp(`auraed \\(pid ${info1.pid}\\) exited with code 3 after [\\d.]+ s; restarting in 200 ms \\(attempt 1\\)`));
    const ready2 = await init.waitFor(READY, 10_000, ready1.index + 1);
    const pid2 = JSON.parse(ready2.match[1]!).pid;
    expect(pid2).not.toBe(info1.pid);
    await init.waitFor(new RegExp(`auraed \\(pid ${pid2}\\) exited with code 3 .*restarting in 400 ms \\(attempt 2\\)`));
    const ready3 = await init.waitFor(READY, 10_000, ready2.index + 1);
    const pid3 = JSON.parse(ready3.match[1]!).pid;

    // Every orphan so far has been reaped.
    await init.waitFor(/reaper: reaped orphan pid/, 5_000, ready2.index);
    expect(zombieChildrenOf(initPid)).toEqual([]);

    init.child.kill('SIGTERM');
    expect(await init.exited).toEqual({ code: 0, signal: null });
    expect(init.output()).toContain(`stopping auraed (pid ${pid3})`);
    expect(init.output()).toMatch(/auraed: .*"msg":"SIGTERM received, exiting"/);
    expect(init.output()).toContain(`auraed (pid ${pid3}) exited with code 0`);
    expect(statOf(pid3)).toBeNull();
    expect(init.output()).not.toMatch(/uncaught|unhandled/);
  });

  it('treats a poweroff IPC request as "stop auraed and exit 0"', async () => {
    const { init } = start('power', { FAKE_POWER: 'poweroff' });
    await init.waitFor(READY);
    expect(await init.exited).toEqual({ code: 0, signal: null });
    expect(init.output()).toContain('auraed asks for poweroff (requested by fake-admin)');
    expect(init.output()).toContain('stopping (poweroff requested by fake-admin)');
  });

  it('refuses to start without --config, saying how to run it', async () => {
    running = startInit(initArgv([]), { ...process.env, AURAE_SYSCALLS_ADDON: addon });
    expect(await running.exited).toEqual({ code: 2, signal: null });
    expect(running.output()).toMatch(/dev daemon mode needs --config PATH[\s\S]*usage: init\/main.ts --config/);
  });
});
