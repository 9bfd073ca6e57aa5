// The runner with the real launcher and the real aurae-exec on the host (root: namespaces). The host has no
// cgroup v2, so the leaf is a stand-in: a temp dir whose cgroup.procs is a plain file, with the executable's
// process group playing the cgroup (procs = members of the group, kill = SIGKILL to the group).
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAuraeExec } from '../../native/build';
import { silentLogger } from '../log';
import { type LeafCgroup, ExecutableRunner, systemClock } from './runner';
import { spawnLauncher } from './launcher';
import { validateExecutable } from './spec';
import { MemoryEventBus, MemoryLogStore } from './testing';

let dir: string;
let helper: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'aurae-launch-'));
  helper = await buildAuraeExec({ outFile: path.join(dir, 'aurae-exec') });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Pids whose process group is `pgid` (the launcher spawns detached: the helper leads a new group). */
function groupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

function groupLeaf(): LeafCgroup & { leader: () => number } {
  const leafDir = mkdtempSync(path.join(dir, 'leaf-'));
  writeFileSync(path.join(leafDir, 'cgroup.procs'), '');
  const leader = () => Number(readFileSync(path.join(leafDir, 'cgroup.procs'), 'utf8').trim().split('\n').pop() || 0);
  const procs = () => (leader() > 0 ? groupMembers(leader()) : []);
  return {
    dir: leafDir,
    leader,
    prepare: () => 'existing' as const,
    procs,
    kill: () => {
      if (procs().length) process.kill(-leader(), 'SIGKILL');
    },
    waitEmpty: async (timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      while (procs().length) {
        if (Date.now() > deadline) return false;
        await new Promise((r) => setTimeout(r, 20));
      }
      return true;
    },
    oomKills: () => 0,
    watchEvents: () => () => {},
  };
}

function runner(args: string[], isolation = { pid: true, mount: true, uts: true, ipc: true, network: true }) {
  const events = new MemoryEventBus();
  const logs = new MemoryLogStore();
  const leaf = groupLeaf();
  const r = new ExecutableRunner({
    cell: 'cell',
    spec: validateExecutable({ name: 'x', command: '', description: '', args, env: {}, cwd: '' }),
    isolation,
    hostname: 'cell',
    leaf,
    launcher: spawnLauncher,
    helper: () => helper,
    events,
    logs,
    clock: systemClock,
    log: silentLogger,
    signal: (pid, sig) => process.kill(pid, sig),
    onChange: () => {},
  });
  return { r, events, logs, leaf };
}

/** Deadline for a condition: generous, so a loaded 2-core machine still passes (the wait ends as soon as it holds). */
const WAIT_MS = 30_000;

async function until(check: () => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether the program has printed `line` on stdout (the log store holds it as soon as the runner read it). */
function printed(t: ReturnType<typeof runner>, line: string): boolean {
  return (t.logs.lines.get('cell/x') ?? []).some((l) => l.stream === 'stdout' && l.line === line);
}

describe('runner + spawnLauncher + aurae-exec', () => {
  it('captures stdout and stderr as lines (the last one without newline too) and records the exit code', async () => {
    const t = runner(['/bin/sh', '-c', 'echo out1; echo err1 >&2; echo; printf tail; exit 4']);
    const { pid } = await t.r.start();
    expect(pid).toBeGreaterThan(0);
    await until(() => t.r.snapshot().state === 'failed', 'the exit');
    expect(t.r.snapshot().lastExit).toMatchObject({ code: 4, signal: null });
    const lines = await t.logs.read('cell', 'x');
    expect(lines.filter((l) => l.stream === 'stdout').map((l) => l.line)).toEqual(['out1', '', 'tail']);
    expect(lines.filter((l) => l.stream === 'stderr').map((l) => l.line)).toEqual(['err1']);
    expect(t.events.kinds()).toEqual(['executable_started', 'executable_exited']);
  });

  it('a missing program fails Start with the helper\'s message', async () => {
    const t = runner(['/no/such/program']);
    await expect(t.r.start()).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/could not be started: executing \/no\/such\/program failed: No such file or directory/) });
    expect(t.r.snapshot()).toMatchObject({ state: 'failed', lastExit: { code: 127 } });
  });

  it('stop: SIGTERM reaches the program through the pid-namespace init; nothing of the group survives', async () => {
    // "trapped" is printed once the trap is installed: a SIGTERM before it would kill the shell instead.
    const t = runner(['/bin/sh', '-c', 'trap "echo bye; exit 0" TERM; echo trapped; sleep 1000 & while true; do sleep 0.05; done']);
    await t.r.start();
    await until(() => t.leaf.procs().length >= 3, 'the helper, its init and the program');
    await until(() => printed(t, 'trapped'), 'the program to install its SIGTERM trap');
    const exit = await t.r.stop(5_000);
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect((await t.logs.read('cell', 'x')).map((l) => l.line)).toContain('bye');
    expect(t.leaf.procs()).toEqual([]);
    expect(t.r.snapshot().state).toBe('stopped');
  });

  it('stop: a program ignoring SIGTERM is killed after the grace period', async () => {
    // "ignoring" is printed once SIGTERM is ignored: a stop before it would end the shell at once.
    const t = runner(['/bin/sh', '-c', 'trap "" TERM; echo ignoring; while true; do sleep 0.05; done'], { pid: false, mount: false, uts: false, ipc: false, network: false });
    await t.r.start();
    await until(() => printed(t, 'ignoring'), 'the program to ignore SIGTERM');
    const started = Date.now();
    const exit = await t.r.stop(300);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(exit).toMatchObject({ signal: 'SIGKILL' });
    expect(t.leaf.procs()).toEqual([]);
  });
});

describe('spawnLauncher: the exit comes after the output', () => {
  const plan = (script: string) => ({ file: '/bin/sh', args: ['-c', script], env: { PATH: '/usr/bin:/bin' } });

  it('every line the program wrote is delivered before its exit is reported', async () => {
    const lines: string[] = [];
    const launched = await spawnLauncher.launch(plan('i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done'), (stream, line) => {
      if (stream === 'stdout') lines.push(line);
    });
    await launched.exited;
    expect(lines.length).toBe(5000);
    expect(lines.at(-1)).toBe('line4999');
  });

  it('a process left behind holding the pipes does not hold back the exit', async () => {
    const lines: string[] = [];
    // The background sleep keeps stdout open for a minute after the shell exits.
    const launched = await spawnLauncher.launch(plan('sleep 60 & echo started'), (_stream, line) => lines.push(line));
    try {
      const outcome = await Promise.race([
        launched.exited.then((exit) => ({ exit })),
        new Promise<null>((res) => setTimeout(() => res(null), WAIT_MS)),
      ]);
      expect(outcome).toEqual({ exit: { code: 0, signal: null } });
      expect(lines).toEqual(['started']);
    } finally {
      // The shell led its own process group (detached): end the sleep with it.
      try {
        process.kill(-launched.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
});
