// A container with a terminal or a kept stdin (the CRI's tty/stdin, Attach): the OCI process asks for a terminal,
// the executable tells the start script where the console socket and the stdin FIFO are, and the script hands them
// to crun (a stand-in recording its arguments and what it reads on stdin).
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { consoleSocketPath, containerSpecInput, crunExecutable, podPaths, stdinFifoPath } from './crun';
import { ociSpec } from './oci-spec';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-crun-stdio-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function run(args: string[], env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(args[0]!, args.slice(1), { env }, (err, _out, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }));
  });
}

describe('containers with a terminal or a kept stdin', () => {
  it('paths: <runDir>/<container>.console and .stdin, the same from PodPaths and from the runDir alone', () => {
    const paths = podPaths('/var/lib/aurae/pods', 'web');
    expect(paths.consoleSocket('app')).toBe('/run/aurae/pods/web/app.console');
    expect(paths.stdinFifo('app')).toBe('/run/aurae/pods/web/app.stdin');
    expect(consoleSocketPath(paths.runDir, 'app')).toBe(paths.consoleSocket('app'));
    expect(stdinFifoPath(paths.runDir, 'app')).toBe(paths.stdinFifo('app'));
  });

  it('tty: the OCI process has terminal true; without, false', () => {
    const paths = podPaths('/s/pods', 'web', '/run/pods');
    const base = {
      process: { args: ['sh'], env: ['PATH=/bin'], cwd: '/', user: '' },
      user: { uid: 0, gid: 0, additionalGids: [] },
      paths: { rootfs: '/s/pods/web/app/rootfs' },
      pod: paths,
      readOnlyRootfs: false,
      cgroupsPath: '/aurae/web/exe.app',
    };
    expect(ociSpec(containerSpecInput({ ...base, container: { tty: true } })).process.terminal).toBe(true);
    expect(ociSpec(containerSpecInput(base)).process.terminal).toBe(false);
  });

  it('the executable passes the console socket and the stdin FIFO in its environment (absent: neither)', () => {
    const paths = podPaths('/s/pods', 'web', '/run/pods');
    const input = { crun: '/usr/bin/crun', pod: { name: 'web', restart: 'never' as const }, container: 'app', paths: paths.container('app'), ready: paths.ready, pidFile: paths.pidFile('app') };
    expect(crunExecutable(input).env).toEqual({ PATH: expect.any(String) });
    expect(crunExecutable({ ...input, consoleSocket: paths.consoleSocket('app') }).env).toMatchObject({ AURAE_CONSOLE_SOCKET: '/run/pods/web/app.console' });
    expect(crunExecutable({ ...input, stdinFifo: paths.stdinFifo('app') }).env).toMatchObject({ AURAE_STDIN: '/run/pods/web/app.stdin' });
  });

  it('the start script runs crun with --console-socket, and with the FIFO as its stdin', async () => {
    const calls = path.join(dir, 'calls');
    const crun = path.join(dir, 'crun');
    fs.writeFileSync(crun, `#!/bin/sh\necho "crun $*" >> ${calls}\ncase "$*" in *" run "*) while read -r l; do echo "read $l" >> ${calls}; done;; esac\n`, { mode: 0o755 });
    const ready = path.join(dir, 'ready');
    fs.writeFileSync(ready, '');
    const fifo = path.join(dir, 'app.stdin');
    execFileSync('mkfifo', [fifo]);
    // As auraed holds it: open for writing without waiting for a reader; the reader sees EOF once it is closed.
    const writer = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    fs.writeSync(writer, 'hello from attach\n');
    const exe = crunExecutable({ crun, stateRoot: path.join(dir, 'state'), pod: { name: 'web', restart: 'never' }, container: 'app', paths: { bundle: path.join(dir, 'bundle') }, ready, pidFile: path.join(dir, 'pid'), consoleSocket: path.join(dir, 'app.console'), stdinFifo: fifo });
    const done = run(exe.args, { ...exe.env, PATH: `${dir}:${process.env.PATH}` });
    await until('crun to start reading its stdin', () => fs.existsSync(calls) && fs.readFileSync(calls, 'utf8').includes('read hello'));
    fs.closeSync(writer);
    expect((await done).code).toBe(0);
    expect(fs.readFileSync(calls, 'utf8').trim().split('\n')).toEqual([
      `crun --root ${dir}/state --cgroup-manager=disabled run --pid-file ${dir}/pid --console-socket ${dir}/app.console --bundle ${dir}/bundle web.app`,
      'read hello from attach',
    ]);
  });

  it('a missing stdin FIFO (auraed did not prepare it) stops the start with 125 and says why', async () => {
    const crun = path.join(dir, 'crun');
    fs.writeFileSync(crun, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const ready = path.join(dir, 'ready');
    fs.writeFileSync(ready, '');
    const exe = crunExecutable({ crun, stateRoot: path.join(dir, 'state'), pod: { name: 'web', restart: 'never' }, container: 'app', paths: { bundle: dir }, ready, pidFile: path.join(dir, 'pid'), stdinFifo: path.join(dir, 'gone.stdin') });
    const { code, stderr } = await run(exe.args, { ...exe.env, PATH: `${dir}:${process.env.PATH}` });
    expect(code).toBe(125);
    expect(stderr).toMatch(/its stdin .*gone\.stdin is missing: auraed makes it at CreateContainer/);
  });
});
