// The wiring A2 uses for the real backend, end to end without root: kubectl-like SPDY client → streaming server →
// streamExecCall → pods' runExec (the PodService.Exec code) with a stand-in for crun that runs the process locally.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../log';
import { type ExecCall, type ExecTarget, runExec, validateExecStart } from '../../pods/exec';
import { streamExecCall } from './exec-call';
import { type StreamingBackend, startStreamingServer } from './server';
import { spdyExec, wsExec } from './testing';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-stream-exec-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
fs.mkdirSync(path.join(dir, 'rootfs/etc'), { recursive: true });
fs.writeFileSync(path.join(dir, 'rootfs/etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
fs.writeFileSync(path.join(dir, 'rootfs/etc/group'), 'root:x:0:\n');
fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ process: { args: ['sleep', '1'], env: [`PATH=${process.env.PATH}`], cwd: '/', user: { uid: 0, gid: 0 } } }));
const target: ExecTarget = { pod: 'web', container: 'app', containerId: 'web.app', crun: 'crun', stateRoot: path.join(dir, 'crun'), config: path.join(dir, 'config.json'), rootfs: path.join(dir, 'rootfs'), runDir: path.join(dir, 'run') };

/** crun stand-in: run the process file's argv, write the pid file. */
function fakeCrun(_file: string, args: string[], opts: { stdin: boolean }): ChildProcess {
  const at = (flag: string) => args[args.indexOf(flag) + 1]!;
  const proc = JSON.parse(fs.readFileSync(at('--process'), 'utf8')) as { args: string[] };
  const child = spawn(proc.args[0]!, proc.args.slice(1), { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
  if (child.pid) fs.writeFileSync(at('--pid-file'), String(child.pid));
  return child;
}

/** What A2's backend does for exec (container id → pod/container lookup left out). */
const backend: StreamingBackend = {
  async exec(req) {
    const start = { podName: 'web', containerName: 'app', command: req.cmd, env: {}, workingDir: '', user: '', stdin: req.stdin !== null };
    const { call, first, exitCode } = streamExecCall(req, start);
    const targets = { get: () => ({ sandbox: 'cell', containers: [{ name: 'app', state: 'running' }] }), execTarget: () => target };
    await runExec({ targets, log: silentLogger, spawn: fakeCrun, exitIdleMs: 200 }, validateExecStart(start), first as never, call as unknown as ExecCall);
    return { exitCode: exitCode() ?? 137 };
  },
  attach: () => Promise.reject(new Error('not in this test')),
  portForward: () => Promise.reject(new Error('not in this test')),
};

describe('streaming exec over pods runExec (the real backend shape)', () => {
  it('stdin, stdout, stderr and the exit code travel through runExec', async () => {
    const server = await startStreamingServer({ backend, log: silentLogger, port: 0 });
    try {
      const big = Buffer.alloc(512 * 1024, 'q');
      const url = server.getExec({ containerId: 'x', cmd: ['sh', '-c', 'cat; echo err >&2; exit 5'], tty: false, stdin: true, stdout: true, stderr: true });
      const r = await spdyExec(url.url, { stdin: big, announceSettings: false });
      expect(r.stdout.equals(big)).toBe(true);
      expect(r.stderr.toString()).toBe('err\n');
      expect(r.exitCode).toBe(5);
      const w = await wsExec(server.getExec({ containerId: 'x', cmd: ['sh', '-c', 'kill -TERM $$'], tty: false, stdin: false, stdout: true, stderr: true }).url);
      expect(w.exitCode).toBe(128 + os.constants.signals.SIGTERM);
    } finally {
      await server.close();
    }
  });

  it('runExec failing (here: the program cannot be spawned) becomes an InternalError status', async () => {
    const server = await startStreamingServer({ backend, log: silentLogger, port: 0 });
    try {
      const r = await spdyExec(server.getExec({ containerId: 'x', cmd: ['/nonexistent/program'], tty: false, stdin: false, stdout: true, stderr: true }).url);
      // The stand-in spawns the program itself: a missing one is a spawn error → runExec rejects → InternalError.
      expect(r.exitCode).toBeNull();
      expect(r.error).toMatch(/Internal error occurred/);
    } finally {
      await server.close();
    }
  });
});
