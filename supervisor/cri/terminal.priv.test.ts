// Terminals with the real addon and crun (root): recvFd / setWindowSize, Exec with tty (crun exec --console-socket)
// and Attach to a container with a terminal (crun run --console-socket), on a busybox bundle made from the host's
// static busybox. A host whose /sys/fs/cgroup is not cgroup2 (hybrid: crun refuses) runs each crun in a private
// mount namespace with cgroup2 mounted there; crun runs with --cgroup-manager=disabled as the node's does.
import { execFileSync, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSyscallsAddon, hostNodeIncludeDir } from '../../native/build';
import { loadSyscallsFrom, type Syscalls } from '../../native';
import { silentLogger } from '../log';
import { ContainerStdio } from './container-stdio';
import { runTtyExec } from './tty-exec';

let work: string;
let sys: Syscalls;
let crun: string;
const root = () => path.join(work, 'crun');
const started: string[] = [];

function bundle(name: string, args: string[], terminal: boolean): string {
  const dir = path.join(work, name);
  const rootfs = path.join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  fs.copyFileSync('/usr/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'cat', 'tty', 'stty', 'sleep', 'echo']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
  execFileSync('crun', ['spec'], { cwd: dir });
  const spec = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  spec.process.terminal = terminal;
  spec.process.args = args;
  spec.root.readonly = false;
  spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => !['network', 'user', 'cgroup'].includes(n.type));
  delete spec.linux.resources;
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(spec));
  return dir;
}

async function until(what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-terminal-'));
  sys = loadSyscallsFrom(await buildSyscallsAddon({ nodeIncludeDir: hostNodeIncludeDir(), outFile: path.join(work, 'syscalls.node') }));
  crun = 'crun';
  if (!fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    crun = path.join(work, 'crun-cgroup2');
    fs.writeFileSync(crun, `#!/bin/sh\nexec unshare -m sh -c 'mount --make-rprivate / && mount -t cgroup2 none /sys/fs/cgroup && exec crun "$@"' crun "$@"\n`, { mode: 0o755 });
  }
}, 120_000);

afterAll(() => {
  for (const id of started) {
    try {
      execFileSync(crun, ['--root', root(), 'delete', '--force', id], { stdio: 'ignore', timeout: 30_000 });
    } catch {
      // not running (it ended with its test)
    }
  }
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('the addon: recvFd and setWindowSize', () => {
  it('recvFd times out on a silent peer, says when a message carries no descriptor; setWindowSize needs a terminal', async () => {
    const file = path.join(work, 'r.sock');
    const conns: net.Socket[] = [];
    const server = net.createServer({ pauseOnConnect: true }, (c) => conns.push(c));
    await new Promise<void>((r) => server.listen(file, r));
    const silent = net.connect(file);
    await until('the connection', () => conns.length === 1);
    const fd = (conns[0] as unknown as { _handle: { fd: number } })._handle.fd;
    await expect(sys.recvFd(fd, 50)).rejects.toMatchObject({ code: 'ETIMEDOUT', message: expect.stringMatching(/^poll\(socket fd \d+, 50 ms\): ETIMEDOUT \(no descriptor arrived in time/) });
    silent.write('x');
    await expect(sys.recvFd(fd, 5000)).rejects.toMatchObject({ code: 'EBADMSG' });
    silent.destroy();
    for (const c of conns) c.destroy();
    server.close();
    expect(() => sys.setWindowSize(0 + fs.openSync('/dev/null', 'r'), 24, 80)).toThrow(/^ioctl\(fd \d+, TIOCSWINSZ 24x80\): ENOTTY/);
    expect(() => sys.setWindowSize(1, 70000, 80)).toThrow(/rows and cols must be 0..65535/);
  });
});

describe('exec with a terminal (crun exec --console-socket)', () => {
  const id = 'aurae-tty-exec';
  let target: Parameters<typeof runTtyExec>[0]['targets'];

  beforeAll(() => {
    const dir = bundle('exec-bundle', ['sleep', '1000'], false);
    // stdio ignored: a detached container inherits crun's, and would hold a pipe open for as long as it runs.
    execFileSync(crun, ['--root', root(), '--cgroup-manager=disabled', 'run', '-d', '--bundle', dir, id], { stdio: 'ignore', timeout: 30_000 });
    started.push(id);
    const t = { pod: 'p', container: 'c', containerId: id, crun, stateRoot: root(), config: path.join(dir, 'config.json'), rootfs: path.join(dir, 'rootfs'), runDir: path.join(work, 'run') };
    target = { get: () => ({ sandbox: 'cell', containers: [{ name: 'c', state: 'running' }] }), execTarget: () => t };
  }, 60_000);

  function exec(cmd: string[]) {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const resize = new EventEmitter();
    let out = '';
    stdout.setEncoding('utf8');
    stdout.on('data', (d: string) => (out += d));
    const done = runTtyExec({ targets: target, sys: () => sys, log: silentLogger }, { pod: 'p', container: 'c', cmd, stdin, stdout, resize });
    return { stdin, resize, done, out: () => out };
  }

  it('the process is on a pty (tty prints /dev/pts/N); its exit code is reported; the files are removed', async () => {
    const e = exec(['tty']);
    expect(await e.done).toEqual({ exitCode: 0 });
    expect(e.out()).toMatch(/^\/dev\/pts\/\d+\r\n$/);
    expect(fs.readdirSync(path.join(work, 'run', 'exec'))).toEqual([]);
    const failing = exec(['sh', '-c', 'exit 3']);
    expect(await failing.done).toEqual({ exitCode: 3 });
  });

  it('a resize reaches the terminal (stty size); stdin is the terminal; its end is ^D', async () => {
    const e = exec(['sh']);
    e.resize.emit('resize', { width: 100, height: 40 });
    e.stdin.write('stty size\n');
    await until('stty size', () => e.out().includes('40 100'));
    e.resize.emit('resize', { width: 120, height: 50 });
    e.stdin.write('stty size; exec cat\n');
    await until('the second size', () => e.out().includes('50 120'));
    e.stdin.write('typed\n');
    await until('the echo of cat', () => e.out().split('typed').length >= 3); // echoed by the terminal, then by cat
    e.stdin.end(); // ^D: cat (the process now) reads its end of input
    expect(await e.done).toEqual({ exitCode: 0 });
  });
});

describe('attach to a container with a terminal (crun run --console-socket)', () => {
  it('the container\'s terminal: output to the client and to the log (CR stripped), stdin and resize from it; ends with the container', async () => {
    const dir = bundle('tty-bundle', ['sh'], true);
    const logged: string[] = [];
    const hub = new ContainerStdio({ sys: () => sys, output: { onLine: (_c, _e, stream, text, partial) => logged.push(`${stream} ${partial ? 'P' : 'F'} ${text}`), subscribe: () => () => {} }, log: silentLogger });
    const paths = { consoleSocket: path.join(work, 'c.console'), stdinFifo: path.join(work, 'c.stdin') };
    await hub.prepare('pod', 'c', { tty: true, stdin: true, stdinOnce: false }, paths);
    const id = 'aurae-tty-attach';
    started.push(id);
    const container = spawn(crun, ['--root', root(), '--cgroup-manager=disabled', 'run', '--console-socket', paths.consoleSocket, '--bundle', dir, id], { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => container.on('exit', (code) => r(code)));
    const stopped = new EventEmitter();
    void exited.then(() => stopped.emit('stopped'));
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    let out = '';
    stdout.setEncoding('utf8');
    stdout.on('data', (d: string) => (out += d));
    const resize = new EventEmitter();
    const attached = hub.attach('pod', 'c', 'container "c"', { tty: true, stdin: true, stdinOnce: false }, {
      stdin,
      stdout,
      stderr: null,
      resize,
      signal: new AbortController().signal,
      running: true,
      onStopped: (cb) => (stopped.once('stopped', cb), () => stopped.off('stopped', cb)),
    });
    resize.emit('resize', { width: 90, height: 30 });
    stdin.write('stty size; echo hello-$((6*7)); exit 5\n');
    await attached;
    expect(await exited).toBe(5);
    expect(out).toContain('30 90\r\n');
    expect(out).toContain('hello-42\r\n');
    expect(logged).toContain('stdout F hello-42');
    // The terminal is gone with the container: a later attach says so (a restart of auraed looks the same).
    const hubWait = new ContainerStdio({ sys: () => sys, output: { onLine: () => {}, subscribe: () => () => {} }, log: silentLogger, ptyWaitMs: 50 });
    await hubWait.prepare('pod', 'd', { tty: true, stdin: false, stdinOnce: false }, { consoleSocket: path.join(work, 'd.console'), stdinFifo: '' });
    await expect(
      hubWait.attach('pod', 'd', 'container "d"', { tty: true, stdin: false, stdinOnce: false }, { stdin: null, stdout: new PassThrough(), stderr: null, resize: new EventEmitter(), signal: new AbortController().signal, running: true, onStopped: () => () => {} }),
    ).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/its terminal is not held by this auraed/) });
    await hub.close();
    await hubWait.close();
    expect(fs.existsSync(paths.consoleSocket)).toBe(false);
  });
});
