// Attach to a container without a terminal (container-stdio.ts): its kept stdin is a FIFO auraed holds, its output
// reaches the client through the executables' output tap. A `cat` reading the FIFO stands in for the container
// (as the start script runs crun with `exec < FIFO`), its stdout fed line by line into the taps as the runner does.
// Terminals need the native addon and a real pty: container-stdio.priv.test.ts.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { LineSplitter, silentLogger } from '../log';
import { ContainerStdio, type StdioSyscalls } from './container-stdio';
import { createContainerLogTaps } from './logs';

let dir: string;
const children: ChildProcess[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-stdio-'));
});
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

// No terminal here: mknod of a FIFO is all the pipe path asks of the addon (mkfifo(1) stands in).
const sys: StdioSyscalls = {
  mknod: (p) => void execFileSync('mkfifo', ['-m', '600', p]),
  recvFd: () => Promise.reject(new Error('no terminals in this test')),
  setWindowSize: () => {},
};

function setup(stdinOnce: boolean) {
  const taps = createContainerLogTaps({ log: silentLogger });
  const hub = new ContainerStdio({ sys: () => sys, output: taps, log: silentLogger });
  const paths = { consoleSocket: path.join(dir, 'c.console'), stdinFifo: path.join(dir, 'c.stdin') };
  const stopped = new EventEmitter();
  const start = () => {
    // The container: cat with the FIFO as stdin; its output split into lines into the taps, as the runner does.
    const child = spawn('sh', ['-c', `exec cat < ${paths.stdinFifo}; `], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const splitter = new LineSplitter(() => {}, { onPiece: (piece, partial) => taps.onLine('k8s-pod', 'c-app', 'stdout', piece, partial) });
    child.stdout!.on('data', (d: Buffer) => splitter.push(d));
    child.stdout!.on('end', () => splitter.end());
    // 'close', not 'exit': this test checks the attach path, not the order of exit and output (the runner reports an
    // exit at 'exit', so an attach can end before the last lines reach it: they are in the log; noted on issue 12).
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    void exited.then(() => stopped.emit('stopped'));
    return exited;
  };
  /**
   * Until the container holds the FIFO as its stdin. The runner's StartContainer returns only then (the start script
   * opens it before crun runs) and attach is refused before; here `start` returns at once, so the tests wait.
   */
  const reading = async () => {
    const child = children.at(-1)!;
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) {
      if (fs.readlinkSync(`/proc/${child.pid}/fd/0`, { encoding: 'utf8' }) === paths.stdinFifo) return;
    }
    throw new Error(`the container did not open ${paths.stdinFifo} as its stdin within 10 s`);
  };
  const attach = (io: { stdin?: PassThrough; stdout?: PassThrough; stderr?: PassThrough; signal?: AbortSignal; running?: boolean; spec?: { tty: boolean; stdin: boolean; stdinOnce: boolean } }) =>
    hub.attach('k8s-pod', 'c-app', 'container "app"', io.spec, {
      stdin: io.stdin ?? null,
      stdout: io.stdout ?? null,
      stderr: io.stderr ?? null,
      resize: new EventEmitter(),
      signal: io.signal ?? new AbortController().signal,
      running: io.running ?? true,
      onStopped: (cb) => {
        stopped.once('stopped', cb);
        return () => stopped.off('stopped', cb);
      },
    });
  return { hub, taps, paths, start, reading, attach, prepare: () => hub.prepare('k8s-pod', 'c-app', { tty: false, stdin: true, stdinOnce }, paths) };
}

const text = (s: PassThrough) => {
  let out = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => (out += d));
  return () => out;
};

async function refusal(p: Promise<unknown>): Promise<AuraeError> {
  try {
    await p;
  } catch (err) {
    return err as AuraeError;
  }
  throw new Error('expected a refusal');
}

describe('attach without a terminal', () => {
  it('stdin_once: what the client sends reaches the container; its end is the container\'s end of input; the output comes back', async () => {
    const s = setup(true);
    await s.prepare();
    expect(fs.statSync(s.paths.stdinFifo).isFIFO()).toBe(true);
    const exited = s.start();
    await s.reading();
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const out = text(stdout);
    const attached = s.attach({ stdin, stdout, stderr: new PassThrough() });
    stdin.write('hello\n');
    stdin.end('world\n');
    expect(await exited).toBe(0); // cat saw end-of-file: stdin_once closed the FIFO
    await attached; // the container stopped: the attach ends
    expect(out()).toBe('hello\nworld\n');
    // RemoveContainer: the FIFO goes.
    await s.hub.release('k8s-pod', 'c-app');
    expect(fs.existsSync(s.paths.stdinFifo)).toBe(false);
  });

  it('without stdin_once the container keeps its stdin when a client leaves; a later client writes on', async () => {
    const s = setup(false);
    await s.prepare();
    const exited = s.start();
    await s.reading();
    const first = { stdin: new PassThrough(), stdout: new PassThrough() };
    const ac = new AbortController();
    const out1 = text(first.stdout);
    const one = s.attach({ ...first, signal: ac.signal });
    first.stdin.end('one\n');
    const deadline = Date.now() + 10_000;
    while (!out1().includes('one\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    ac.abort(); // the client leaves
    await one;
    const second = { stdin: new PassThrough(), stdout: new PassThrough() };
    const out2 = text(second.stdout);
    const two = s.attach(second);
    second.stdin.write('two\n');
    while (!out2().includes('two\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(out2()).toBe('two\n');
    await s.hub.release('k8s-pod', 'c-app'); // RemoveContainer: the FIFO closes, cat ends
    expect(await exited).toBe(0);
    await two;
  });

  it('refusals: a container that is not running; stdin of a container created without it', async () => {
    const s = setup(false);
    const notRunning = await refusal(s.attach({ stdout: new PassThrough(), running: false }));
    expect([notRunning.code, notRunning.message]).toEqual(['FAILED_PRECONDITION', 'container "app" is not running: attach needs a running container']);
    const noStdin = await refusal(s.attach({ stdin: new PassThrough(), stdout: new PassThrough() }));
    expect([noStdin.code, noStdin.message]).toEqual(['FAILED_PRECONDITION', expect.stringMatching(/^container "app" has no stdin to attach to: create it with stdin/)]);
    // A stdin container this auraed did not prepare (an earlier auraed started it): said so, not a hang.
    const earlier = await refusal(s.attach({ stdout: new PassThrough(), spec: { tty: false, stdin: true, stdinOnce: false } }));
    expect([earlier.code, earlier.message]).toEqual(['FAILED_PRECONDITION', expect.stringMatching(/^container "app": its stdin is not held by this auraed \(the container was started by an earlier auraed/)]);
  });

  it('prepare is idempotent and does nothing for a container with neither tty nor stdin', async () => {
    const s = setup(false);
    await s.hub.prepare('k8s-pod', 'c-none', { tty: false, stdin: false, stdinOnce: false }, s.paths);
    expect(s.hub.has('k8s-pod', 'c-none')).toBe(false);
    await s.prepare();
    await s.prepare();
    expect(s.hub.has('k8s-pod', 'c-app')).toBe(true);
    await s.hub.close();
    expect(s.hub.has('k8s-pod', 'c-app')).toBe(false);
  });
});
