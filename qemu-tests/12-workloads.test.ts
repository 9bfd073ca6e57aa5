// 12: workloads as a user drives them — the aer CLI and an `aer run` script against a booted node: exec with
// streamed output and the exit status, logs (tail and follow), the event stream, top, and a reboot with a state
// disk that keeps cells and executables.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../image/build';
import { aer } from './fixture/aer';
import { bootNode, createStateDisk, eventually, useNode, type BootedNode } from './fixture/node';

describe('12 workloads through aer', () => {
  const node = useNode({ name: '12-workloads' });

  it('aer exec streams output and exits with the program\'s status', async () => {
    expect((await aer(node(), ['cell', 'allocate', 'jobs', '--memory-max', '64M', '--pids-max', '32'])).code).toBe(0);
    const ok = await aer(node(), ['exec', 'jobs', '--', '/bin/sh', '-c', 'echo out-line; echo err-line >&2; exit 3']);
    expect(ok.stdout).toContain('out-line');
    expect(ok.stderr).toContain('err-line');
    expect(ok.code).toBe(3);
    const killed = await aer(node(), ['exec', 'jobs', '--shell', 'kill -9 $$']);
    expect(killed.code).toBe(137);
  });

  it('aer logs shows the tail and follows new lines; aer events shows the lifecycle', async () => {
    const started = await aer(node(), ['cell', 'start', 'jobs', 'ticker', '--shell', 'i=0; while [ $i -lt 400 ]; do echo tick-$i; i=$((i+1)); sleep 0.05; done']);
    expect(started.code, started.stderr).toBe(0);
    await eventually(async () => (await aer(node(), ['logs', 'jobs', 'ticker', '-n', '2'])).stdout.includes('tick-'), 20_000, 'ticker output');
    const tail = (await aer(node(), ['logs', 'jobs', 'ticker', '-n', '2'])).stdout.trim().split('\n');
    expect(tail).toHaveLength(2);

    // Follow: new lines arrive while the command runs.
    const cli = path.join(REPO_ROOT, 'out/bundle/aer.cjs');
    const follower = spawn(process.execPath, [cli, '--config', node().image.clientConfig, '--address', `127.0.0.1:${node().port}`, 'logs', 'jobs', 'ticker', '-n', '0', '-f']);
    let followed = '';
    follower.stdout.on('data', (d: Buffer) => (followed += d.toString()));
    try {
      await eventually(async () => (followed.match(/tick-\d+/g)?.length ?? 0) >= 3, 30_000, 'three followed lines');
    } finally {
      follower.kill('SIGINT');
    }

    const stopped = await aer(node(), ['-o', 'json', 'cell', 'stop', 'jobs', 'ticker', '--grace', '1000']);
    expect(stopped.code, stopped.stderr).toBe(0);
    const events = (await aer(node(), ['-o', 'json', 'events', '--cell', 'jobs'])).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; executable?: string });
    const kinds = events.filter((e) => e.executable === 'ticker').map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(['executable_started', 'executable_exited']));
    expect(events.map((e) => e.kind)).toContain('cell_allocated');

    const top = await aer(node(), ['-o', 'json', 'top', 'jobs', '-n', '1']);
    expect(top.code, top.stderr).toBe(0);
    expect(top.stdout).toContain('jobs');
  });

  it('runs the seeds\' example with `aer run examples/hello-cell.ts`', async () => {
    const res = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        process.execPath,
        [path.join(REPO_ROOT, 'out/bundle/aer.cjs'), '--config', node().image.clientConfig, '--address', `127.0.0.1:${node().port}`, 'run', path.join(REPO_ROOT, 'examples/hello-cell.ts'), 'hello-test'],
        { timeout: 120_000 },
        (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }),
      );
    });
    expect(res.out).toMatch(/started hello-test\/greeter as pid \d+/);
    expect(res.out).toMatch(/stopped: SIGTERM|stopped: code/);
    expect(res.out).toContain('freed hello-test');
    expect(res.code, res.out).toBe(0);
    const logs = await aer(node(), ['cell', 'list']);
    expect(logs.stdout).not.toContain('hello-test');
  });
});

describe('12 state disk keeps workloads across a reboot', () => {
  let dir: string;
  let disk: string;
  let node: BootedNode | null = null;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-state-'));
    disk = createStateDisk(dir, 128);
  });
  afterAll(async () => {
    await node?.vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('cells, limits and running executables come back after `aer reboot`', async () => {
    node = await bootNode({ name: '12-state-reboot', disks: [disk], noReboot: false });
    const n = node;
    expect((await aer(n, ['cell', 'allocate', 'keep', '--memory-max', '32M'])).code).toBe(0);
    expect((await aer(n, ['cell', 'start', 'keep', 'sleeper', '--restart', 'always', '--', '/bin/sleep', '3600'])).code).toBe(0);
    const from = n.vm.console.length;
    expect((await aer(n, ['reboot'])).code).toBe(0);
    await n.waitReady(180_000, from);
    const listed = await eventually(
      async () => {
        const r = await aer(n, ['-o', 'json', 'cell', 'list']);
        const cells = JSON.parse(r.stdout || '[]') as { name: string; spec: { memory?: { max?: number } }; executables: { name: string; state: string; pid: number }[] }[];
        const keep = cells.find((c) => c.name === 'keep');
        return keep?.executables.find((x) => x.name === 'sleeper' && x.state === 'running') ? keep : null;
      },
      60_000,
      'cell keep with sleeper running after the reboot',
    );
    expect(listed.spec.memory?.max).toBe(32 * 1024 * 1024);
    const sh = await (await import('../image/lib/debug-shell')).DebugShell.connect(n.vm.spec.debugConsoleSocket!);
    try {
      expect((await sh.ok('cat /sys/fs/cgroup/aurae/keep/memory.max')).trim()).toBe(String(32 * 1024 * 1024));
    } finally {
      sh.close();
    }
  });
});
