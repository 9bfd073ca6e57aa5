// Exec without crun: the pure parts (validation naming the field, the container choice, the process spec, crun's
// argv, what crun's exit means) and the streaming core over real pipes, with a stand-in for crun that runs the
// process spec's argv directly and writes the pid file as crun does. The caller is a fake gRPC duplex stream
// whose buffer fills after a few messages, so back-pressure is observable. crun itself: qemu-tests/43-pod-exec.
import { type ChildProcess, spawn as nodeSpawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Metadata, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { type CheckTarget, NODE_METADATA, withRouting } from '../server';
import { PodServiceService } from '../gen/aurae/pods/v0/pods';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from '../server/testing';
import { AuraeError } from '../errors';
import type { ExecStart, PodServiceExecRequest, PodServiceExecResponse } from '../gen/aurae/pods/v0/pods';
import { silentLogger } from '../log';
import {
  type ExecCall,
  type ExecDeps,
  type ExecTarget,
  type OciProcess,
  crunExecArgs,
  execContainer,
  execFiles,
  execOutcome,
  execProcess,
  killExecProcess,
  processGroupOf,
  runExec,
  validateExecStart,
} from './exec';
import { createPodService, execRunAs } from './pod-service';

const start = (over: Partial<ExecStart> = {}): ExecStart => ({ podName: 'web', containerName: '', command: ['echo', 'hi'], env: {}, workingDir: '', user: '', stdin: false, ...over });
const req = (over: Partial<PodServiceExecRequest> = {}): PodServiceExecRequest => ({ start: undefined, stdin: Buffer.alloc(0), closeStdin: false, ...over });

function invalidField(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AuraeError);
    expect((err as AuraeError).code).toBe('INVALID_ARGUMENT');
    return (err as AuraeError).message;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as AuraeError).code;
  }
  return 'OK';
}

describe('validateExecStart', () => {
  it('takes the pod, the optional container, the command and the overrides', () => {
    expect(validateExecStart(start({ containerName: 'app', env: { A: '1' }, workingDir: '/tmp', user: 'nobody', stdin: true }))).toEqual({
      pod: 'web',
      container: 'app',
      command: ['echo', 'hi'],
      env: { A: '1' },
      workingDir: '/tmp',
      user: 'nobody',
      stdin: true,
    });
    expect(validateExecStart(start())).toMatchObject({ container: null, workingDir: null, user: null, stdin: false });
  });

  it('names the bad field', () => {
    expect(invalidField(() => validateExecStart(undefined))).toMatch(/^start: required/);
    expect(invalidField(() => validateExecStart(start({ podName: 'Web!' })))).toMatch(/^start\.pod_name:/);
    expect(invalidField(() => validateExecStart(start({ containerName: '-x' })))).toMatch(/^start\.container_name:/);
    expect(invalidField(() => validateExecStart(start({ command: [] })))).toMatch(/^start\.command: required/);
    expect(invalidField(() => validateExecStart(start({ command: ['', 'x'] })))).toMatch(/^start\.command\[0\]:/);
    expect(invalidField(() => validateExecStart(start({ command: ['a\0b'] })))).toMatch(/^start\.command\[0\]: NUL/);
    expect(invalidField(() => validateExecStart(start({ workingDir: 'tmp' })))).toMatch(/^start\.working_dir:/);
    expect(invalidField(() => validateExecStart(start({ workingDir: '/a/../b' })))).toMatch(/^start\.working_dir:/);
    expect(invalidField(() => validateExecStart(start({ user: 'a b' })))).toMatch(/^start\.user:/);
    expect(invalidField(() => validateExecStart(start({ env: { '1A': 'x' } })))).toMatch(/^start\.env:/);
  });
});

describe('execContainer', () => {
  const pod = (containers: { name: string; state: string }[], sandbox = 'cell') => ({ sandbox, containers });

  it('picks the named container, or the only one', () => {
    expect(execContainer('web', pod([{ name: 'app', state: 'running' }]), null)).toBe('app');
    expect(execContainer('web', pod([{ name: 'a', state: 'exited' }, { name: 'b', state: 'running' }]), 'b')).toBe('b');
  });

  it('NOT_FOUND for a missing pod or container, INVALID_ARGUMENT when one must be named, FAILED_PRECONDITION when not running', () => {
    expect(codeOf(() => execContainer('web', undefined, null))).toBe('NOT_FOUND');
    expect(codeOf(() => execContainer('web', pod([{ name: 'app', state: 'running' }]), 'db'))).toBe('NOT_FOUND');
    expect(invalidField(() => execContainer('web', pod([{ name: 'a', state: 'running' }, { name: 'b', state: 'running' }]), null))).toMatch(/^start\.container_name: required: pod "web" has 2 containers \(a, b\)/);
    expect(codeOf(() => execContainer('web', pod([{ name: 'app', state: 'exited' }]), null))).toBe('FAILED_PRECONDITION');
    expect(() => execContainer('web', pod([{ name: 'app', state: 'created' }]), 'app')).toThrow(/container "app" is not running \(created\)/);
    expect(codeOf(() => execContainer('web', pod([{ name: 'app', state: 'running' }], 'vm'), null))).toBe('UNIMPLEMENTED');
  });
});

describe('execProcess', () => {
  const base: OciProcess = {
    terminal: false,
    args: ['/bin/httpd', '-f'],
    env: ['PATH=/bin', 'HOSTNAME=web', 'A=container'],
    cwd: '/srv',
    user: { uid: 1000, gid: 1000 },
    capabilities: { bounding: ['CAP_CHOWN'] },
    noNewPrivileges: true,
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
  };

  it("is the container's process with the command; the request's env on top; cwd and user kept unless given", () => {
    const p = execProcess(base, { command: ['sh', '-c', 'id'], env: { A: 'exec', B: '2' }, workingDir: null }, null);
    expect(p).toEqual({ ...base, args: ['sh', '-c', 'id'], env: ['PATH=/bin', 'HOSTNAME=web', 'A=exec', 'B=2'] });
  });

  it('sets the working directory and the resolved user, never a terminal', () => {
    const p = execProcess({ ...base, terminal: true, consoleSize: { height: 1, width: 1 } }, { command: ['id'], env: {}, workingDir: '/tmp' }, { uid: 65534, gid: 65534, additionalGids: [5] });
    expect(p).toMatchObject({ terminal: false, cwd: '/tmp', user: { uid: 65534, gid: 65534, additionalGids: [5] } });
    expect(p).not.toHaveProperty('consoleSize');
    expect(execProcess(base, { command: ['id'], env: {}, workingDir: null }, { uid: 0, gid: 0, additionalGids: [] }).user).toEqual({ uid: 0, gid: 0 });
  });
});

describe("crun's argv and exit", () => {
  it('runs crun exec with the state root, a log file, the pid file and the process file', () => {
    const files = execFiles('/run/aurae/pods/web', 'abc');
    expect(files).toEqual({ process: '/run/aurae/pods/web/exec/abc.json', pid: '/run/aurae/pods/web/exec/abc.pid', log: '/run/aurae/pods/web/exec/abc.log' });
    expect(crunExecArgs({ stateRoot: '/run/aurae/crun', containerId: 'web.app' }, files)).toEqual([
      '--root',
      '/run/aurae/crun',
      '--log=/run/aurae/pods/web/exec/abc.log',
      'exec',
      '--pid-file',
      '/run/aurae/pods/web/exec/abc.pid',
      '--process',
      '/run/aurae/pods/web/exec/abc.json',
      'web.app',
    ]);
  });

  it("maps crun's status: the code, 128+N as the signal, a program crun could not start as 127/126, other crun failures as FAILED_PRECONDITION", () => {
    const what = 'pod "web": container "app"';
    expect(execOutcome({ code: 0, signal: null }, true, '', what)).toEqual({ exit: { code: 0 } });
    expect(execOutcome({ code: 7, signal: null }, true, '', what)).toEqual({ exit: { code: 7 } });
    expect(execOutcome({ code: 137, signal: null }, true, '', what)).toEqual({ exit: { signal: 'SIGKILL' } });
    expect(execOutcome({ code: 134, signal: null }, true, '', what)).toEqual({ exit: { signal: 'SIGABRT' } });
    expect(execOutcome({ code: 255, signal: null }, true, '', what)).toEqual({ exit: { code: 255 } });
    expect(execOutcome({ code: null, signal: 'SIGKILL' }, false, '', what)).toEqual({ exit: { signal: 'SIGKILL' } });
    expect(execOutcome({ code: 255, signal: null }, false, 'executable file `nope` not found in $PATH: No such file or directory\n', what)).toEqual({ exit: { code: 127 } });
    expect(execOutcome({ code: 255, signal: null }, false, 'exec `/etc/passwd`: Permission denied\n', what)).toEqual({ exit: { code: 126 } });
    const failed = execOutcome({ code: 1, signal: null }, false, 'error opening file `/run/aurae/crun/web.app/status`: No such file or directory\n', what);
    expect('error' in failed && failed.error.code).toBe('FAILED_PRECONDITION');
    expect('error' in failed && failed.error.message).toMatch(/^pod "web": container "app": crun exec failed: error opening file .*: is the container still running\?/);
  });

  it('reads the process group from /proc/PID/stat, whatever the command name holds', () => {
    expect(processGroupOf('42 (sh) S 1 40 40 0 -1')).toBe(40);
    expect(processGroupOf('42 (a) b (c) R 7 99 99 0')).toBe(99);
    expect(processGroupOf(null)).toBeNull();
  });

  it("kills the exec'd process's group and the process, never auraed's own group", () => {
    const stats: Record<number, string> = { 500: '500 (sh) S 400 500 500 0', [process.pid]: `${process.pid} (node) S 1 77 77 0` };
    const killed: number[] = [];
    killExecProcess(500, (pid) => stats[pid] ?? null, (pid) => void killed.push(pid));
    expect(killed).toEqual([-500, 500]);
    killed.length = 0;
    stats[600] = '600 (sh) S 400 77 77 0';
    killExecProcess(600, (pid) => stats[pid] ?? null, (pid) => void killed.push(pid));
    expect(killed).toEqual([600]);
  });
});

// ---- the streaming core ------------------------------------------------------------------------------------

/** A gRPC duplex stream as exec sees it: write() says "full" once `capacity` messages are outstanding. */
class FakeCall extends EventEmitter {
  cancelled = false;
  ended = false;
  paused = false;
  capacity = Number.POSITIVE_INFINITY;
  outstanding = 0;
  maxOutstanding = 0;
  sent: PodServiceExecResponse[] = [];

  write(message: PodServiceExecResponse): boolean {
    this.sent.push(message);
    this.outstanding++;
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
    return this.outstanding < this.capacity;
  }
  end(): void {
    this.ended = true;
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  /** The caller read everything sent so far. */
  drain(): void {
    const wasFull = this.outstanding >= this.capacity;
    this.outstanding = 0;
    if (wasFull) this.emit('drain');
  }
  cancel(): void {
    this.cancelled = true;
    this.emit('cancelled');
  }
  text(stream: 'stdout' | 'stderr'): string {
    return Buffer.concat(this.sent.map((m) => m[stream])).toString('utf8');
  }
  bytes(stream: 'stdout' | 'stderr'): number {
    return this.sent.reduce((n, m) => n + m[stream].length, 0);
  }
  exit(): PodServiceExecResponse['exit'] {
    return this.sent.find((m) => m.exit)?.exit;
  }
}

const dirs: string[] = [];
const leftovers: number[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  for (const pid of leftovers.splice(0)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

/** A pod "web" with one running container "app": its bundle's process and /etc/passwd. */
function fixture(): { target: ExecTarget; targets: ExecDeps['targets'] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-exec-'));
  dirs.push(dir);
  fs.mkdirSync(path.join(dir, 'rootfs/etc'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'rootfs/etc/passwd'), 'root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n');
  fs.writeFileSync(path.join(dir, 'rootfs/etc/group'), 'root:x:0:\nnogroup:x:65534:\nusers:x:100:nobody\n');
  const base: OciProcess = { terminal: false, args: ['sleep', '1000'], env: [`PATH=${process.env.PATH}`, 'FROM_CONTAINER=yes'], cwd: '/', user: { uid: 0, gid: 0 } };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', process: base }));
  const target: ExecTarget = { pod: 'web', container: 'app', containerId: 'web.app', crun: '/usr/bin/crun', stateRoot: path.join(dir, 'crun'), config: path.join(dir, 'config.json'), rootfs: path.join(dir, 'rootfs'), runDir: path.join(dir, 'run') };
  return { target, targets: { get: (pod) => (pod === 'web' ? { sandbox: 'cell', containers: [{ name: 'app', state: 'running' }] } : undefined), execTarget: () => target } };
}

/**
 * A stand-in for crun: reads the process file, runs its argv with its env (its own process group, as crun's
 * exec'd process has its own session) and writes the pid file; `fail` instead logs crun's error and exits 1
 * without starting anything.
 */
function fakeCrun(opts: { fail?: string } = {}) {
  const processes: OciProcess[] = [];
  const spawn = (_file: string, args: string[], { stdin }: { stdin: boolean }): ChildProcess => {
    const at = (flag: string) => args[args.indexOf(flag) + 1]!;
    const proc = JSON.parse(fs.readFileSync(at('--process'), 'utf8')) as OciProcess;
    processes.push(proc);
    const stdio: ('pipe' | 'ignore')[] = [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'];
    const logFile = args.find((a) => a.startsWith('--log='))!.slice('--log='.length);
    if (opts.fail) return nodeSpawn('/bin/sh', ['-c', 'printf "%s\\n" "$1" > "$2"; exit 1', 'fake-crun', opts.fail, logFile], { stdio });
    const env = Object.fromEntries((proc.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    const child = nodeSpawn(proc.args[0]!, proc.args.slice(1), { stdio, env, cwd: proc.cwd, detached: true });
    if (child.pid) {
      fs.writeFileSync(at('--pid-file'), String(child.pid));
      leftovers.push(child.pid);
    }
    return child;
  };
  return { spawn, processes };
}

function exec(over: Partial<ExecStart>, call: FakeCall, deps: Partial<ExecDeps> = {}, first: Partial<PodServiceExecRequest> = {}) {
  const { targets } = fixture();
  const crun = fakeCrun();
  const s = start(over);
  const done = runExec({ targets, log: silentLogger, spawn: crun.spawn, exitIdleMs: 200, ...deps }, validateExecStart(s), req({ start: s, ...first }), call as unknown as ExecCall);
  return { done, crun };
}

describe('runExec', () => {
  it('streams stdout and stderr separately, then the exit, then ends the call; the scratch files are gone', async () => {
    const call = new FakeCall();
    const { done, crun } = exec({ command: ['sh', '-c', 'echo out; echo err >&2; echo "$FROM_CONTAINER $EXTRA"; exit 7'], env: { EXTRA: 'x' } }, call);
    await done;
    expect(call.text('stdout')).toBe('out\nyes x\n');
    expect(call.text('stderr')).toBe('err\n');
    expect(call.exit()).toEqual({ code: 7 });
    expect(call.sent.at(-1)!.exit).toBeDefined();
    expect(call.ended).toBe(true);
    expect(crun.processes[0]).toMatchObject({ args: ['sh', '-c', expect.any(String)], terminal: false });
    expect(fs.readdirSync(path.join(dirs.at(-1)!, 'run/exec'))).toEqual([]);
  });

  it('forwards stdin chunk by chunk and closes it on close_stdin', async () => {
    const call = new FakeCall();
    const { done } = exec({ command: ['cat'], stdin: true }, call, {}, { stdin: Buffer.from('hello ') });
    call.emit('data', req({ stdin: Buffer.from('world\n') }));
    call.emit('data', req({ closeStdin: true }));
    await done;
    expect(call.text('stdout')).toBe('hello world\n');
    expect(call.exit()).toEqual({ code: 0 });
  });

  it("closes stdin when the caller ends its request stream", async () => {
    const call = new FakeCall();
    const { done } = exec({ command: ['wc', '-c'], stdin: true }, call, {}, { stdin: Buffer.from('12345') });
    call.emit('end');
    await done;
    expect(call.text('stdout').trim()).toBe('5');
  });

  it('pauses the request stream while the stdin pipe is full, and resumes it when the process reads', async () => {
    const call = new FakeCall();
    let pausedSeen = false;
    const pause = call.pause.bind(call);
    call.pause = () => ((pausedSeen = true), pause());
    // The process reads nothing until the test says so (a bounded wait for a file): the pipe must fill up.
    const go = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-exec-go-')), 'go');
    const script = `i=0; while [ ! -e ${go} ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; wc -c`;
    const { done } = exec({ command: ['sh', '-c', script], stdin: true }, call);
    const mib = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 4; i++) call.emit('data', req({ stdin: mib }));
    expect(pausedSeen).toBe(true);
    expect(call.paused).toBe(true);
    fs.writeFileSync(go, '');
    await waitFor(() => !call.paused);
    call.emit('data', req({ closeStdin: true }));
    await done;
    expect(call.text('stdout').trim()).toBe(String(4 * 1024 * 1024));
    fs.rmSync(path.dirname(go), { recursive: true, force: true });
  });

  it('without stdin attached the process reads end of input', async () => {
    const call = new FakeCall();
    const { done } = exec({ command: ['wc', '-c'] }, call);
    await done;
    expect(call.text('stdout').trim()).toBe('0');
  });

  it('a slow caller slows the process down: all 5 MiB arrive, never more than a couple of messages past "full"', async () => {
    const call = new FakeCall();
    call.capacity = 4;
    const { done } = exec({ command: ['head', '-c', String(5 * 1024 * 1024), '/dev/zero'] }, call);
    const reader = setInterval(() => call.drain(), 2);
    try {
      await done;
    } finally {
      clearInterval(reader);
    }
    expect(call.bytes('stdout')).toBe(5 * 1024 * 1024);
    expect(call.exit()).toEqual({ code: 0 });
    expect(call.maxOutstanding).toBeLessThanOrEqual(call.capacity + 2);
    expect(Math.max(...call.sent.map((m) => m.stdout.length))).toBeLessThanOrEqual(64 * 1024);
  });

  it("cancelling the call kills the process's group and ends without an exit message", async () => {
    const call = new FakeCall();
    const { done, crun } = exec({ command: ['sh', '-c', 'sleep 60 & echo started; wait'] }, call);
    await waitFor(() => call.text('stdout') === 'started\n');
    expect(crun.processes).toHaveLength(1);
    const pid = leftovers.at(-1)!;
    call.cancel();
    await done;
    expect(call.exit()).toBeUndefined();
    await waitFor(() => !alive(-pid));
  });

  it('cuts the output after the exit when a background child keeps the pipes open and silent', async () => {
    const call = new FakeCall();
    const { done } = exec({ command: ['sh', '-c', 'sleep 30 & echo bye'] }, call);
    await done;
    expect(call.text('stdout')).toBe('bye\n');
    expect(call.exit()).toEqual({ code: 0 });
  });

  it('resolves a user name through the container\'s /etc/passwd and /etc/group', async () => {
    const { targets } = fixture();
    const crun = fakeCrun({ fail: 'stop here' });
    const s = start({ user: 'nobody', workingDir: '/tmp' });
    await runExec({ targets, log: silentLogger, spawn: crun.spawn }, validateExecStart(s), req({ start: s }), new FakeCall() as unknown as ExecCall).catch(() => {});
    expect(crun.processes[0]).toMatchObject({ user: { uid: 65534, gid: 65534, additionalGids: [100] }, cwd: '/tmp' });
    const bad = start({ user: 'nosuchuser' });
    await expect(runExec({ targets, log: silentLogger, spawn: crun.spawn }, validateExecStart(bad), req({ start: bad }), new FakeCall() as unknown as ExecCall)).rejects.toThrow(
      /container "app": user "nosuchuser": no user "nosuchuser" in the image's \/etc\/passwd/,
    );
  });

  it("a crun that fails before starting the process fails the call with crun's words (FAILED_PRECONDITION)", async () => {
    const { targets } = fixture();
    const crun = fakeCrun({ fail: 'container `web.app` is not running' });
    const s = start();
    const err = await runExec({ targets, log: silentLogger, spawn: crun.spawn }, validateExecStart(s), req({ start: s }), new FakeCall() as unknown as ExecCall).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuraeError);
    expect((err as AuraeError).code).toBe('FAILED_PRECONDITION');
    expect((err as AuraeError).message).toMatch(/crun exec failed: container `web\.app` is not running/);
  });

  it('refuses a second start, and stdin bytes when stdin is not attached, killing the process', async () => {
    const call = new FakeCall();
    const { done } = exec({ command: ['sleep', '60'] }, call);
    call.emit('data', req({ stdin: Buffer.from('x') }));
    await expect(done).rejects.toThrow(/^stdin: the call did not attach stdin/);
    const pid = leftovers.at(-1)!;
    await waitFor(() => !alive(pid));

    const call2 = new FakeCall();
    const second = exec({ command: ['sleep', '60'], stdin: true }, call2);
    call2.emit('data', req({ start: start() }));
    await expect(second.done).rejects.toThrow(/^start: set in the first request only/);
  });

  it('NOT_FOUND before anything starts when the pod is not there', async () => {
    const { targets } = fixture();
    const s = start({ podName: 'nope' });
    const crun = fakeCrun();
    await expect(runExec({ targets, log: silentLogger, spawn: crun.spawn }, validateExecStart(s), req({ start: s }), new FakeCall() as unknown as ExecCall)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(crun.processes).toEqual([]);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Let the handler's admission (a promise chain) run and attach its listeners. */
function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within the deadline');
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---- through PodService's handler (server/rpc.ts bidiStream) -------------------------------------------------

describe('PodService/Exec', () => {
  /** A grpc-js duplex call from `cn`, recording what the handler sends and the status it ends with. */
  function duplexCall(cn: string) {
    const call = Object.assign(new FakeCall(), {
      getPeer: () => '127.0.0.1:40000',
      getAuthContext: () => fakeAuthContext(cn),
      metadata: new Metadata(),
      errors: [] as { code?: number; details?: string }[],
    });
    call.on('error', (e: { code?: number; details?: string }) => void call.errors.push(e));
    return call;
  }
  function service(allows: (identity: string, target?: CheckTarget) => boolean = () => true) {
    const authz = fakeAuthorizer((caller, _method, target) => allows(caller.identity, target));
    const ctx = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
    const { target } = fixture();
    const spec = { name: 'web', containers: [{ name: 'app', user: '1000' }] };
    const runtime = {
      run: async () => ({}) as never,
      list: () => [],
      get: (pod: string) => (pod === 'web' ? ({ name: 'web', sandbox: 'cell', state: 'running', containers: [{ name: 'app', state: 'running' }], spec } as never) : undefined),
      stop: async () => ({}) as never,
      remove: async () => {},
      execTarget: () => target,
    };
    const crun = fakeCrun();
    const svc = createPodService(ctx, { runtime, exec: { spawn: crun.spawn, exitIdleMs: 200 } });
    return { svc, authz };
  }
  const settled = (call: FakeCall & { errors: unknown[] }) => waitFor(() => call.ended || call.errors.length > 0);

  it('runs the command and audits the call with the program only', async () => {
    const { svc, authz } = service();
    const call = duplexCall('admin');
    svc.exec(call as never);
    await tick();
    call.emit('data', req({ start: start({ command: ['sh', '-c', 'echo secret-arg-stays-out'] }) }));
    await settled(call);
    expect(call.text('stdout')).toBe('secret-arg-stays-out\n');
    expect(call.exit()).toEqual({ code: 0 });
    expect(authz.audits).toEqual([expect.objectContaining({ identity: 'admin', method: 'aurae.pods.v0.PodService/Exec', code: 'OK', detail: 'web: sh' })]);
  });

  it('answers a bad first request with INVALID_ARGUMENT naming the field, and a stream without one too', async () => {
    const { svc } = service();
    const call = duplexCall('admin');
    svc.exec(call as never);
    await tick();
    call.emit('data', req({ start: start({ command: [] }) }));
    await settled(call);
    expect(call.errors[0]).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^start\.command: required/) });

    const empty = duplexCall('admin');
    svc.exec(empty as never);
    await tick();
    empty.emit('end');
    await settled(empty);
    expect(empty.errors[0]).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^request: the stream ended before its first message/) });
  });

  it("authorizes the pod's cell and who the process runs as (the request's user, else the container's)", async () => {
    const seen: (CheckTarget | undefined)[] = [];
    const { svc, authz } = service((identity, target) => {
      seen.push(target);
      return identity === 'admin' || target?.resource === null || target?.resource?.cell === 'other';
    });
    const call = duplexCall('tenant');
    svc.exec(call as never);
    await tick();
    call.emit('data', req({ start: start() }));
    await settled(call);
    expect(call.errors[0]).toMatchObject({ code: status.PERMISSION_DENIED });
    expect(seen.at(-1)).toEqual({ resource: { pod: 'web', cell: 'web', runAs: { uid: 1000, gid: 1000 } } });
    expect(authz.audits.at(-1)).toMatchObject({ identity: 'tenant', code: 'PERMISSION_DENIED' });
    expect(execRunAs({ container: null, user: '0' }, { containers: [{ user: '1000' }] as never })).toEqual({ uid: 0, gid: 0 });
    expect(execRunAs({ container: null, user: 'nobody' }, undefined)).toEqual({ uid: 0, gid: 0 });
  });

  it('a routed Exec is relayed to the child node, not run here (server/route.ts; relaying itself: route.test.ts)', async () => {
    const { svc } = service();
    const ctx = { log: silentLogger, admins: new Set(['admin']), authz: fakeAuthorizer(), parentIdentity: null, issuerOf: issuerByName() };
    const asked: string[] = [];
    const router = {
      nodePath: 'aurae',
      clientFor: async (label: string) => {
        asked.push(label);
        throw new AuraeError('UNAVAILABLE', `child "aurae/${label}" is stopped, not running`);
      },
    };
    const routed = withRouting(ctx, router, PodServiceService, svc as never) as unknown as typeof svc;
    const call = Object.assign(duplexCall('admin'), { getDeadline: () => Infinity });
    call.metadata.set(NODE_METADATA, 'aurae/web');
    routed.exec(call as never);
    await tick();
    call.emit('data', req({ start: start() }));
    await settled(call);
    expect(asked).toEqual(['web']);
    expect(call.errors[0]).toMatchObject({ code: status.UNAVAILABLE, details: 'child "aurae/web" is stopped, not running' });
    expect(call.sent).toEqual([]);
  });

  it('NOT_FOUND for an unknown pod', async () => {
    const { svc } = service();
    const call = duplexCall('admin');
    svc.exec(call as never);
    await tick();
    call.emit('data', req({ start: start({ podName: 'nope' }) }));
    await settled(call);
    expect(call.errors[0]).toMatchObject({ code: status.NOT_FOUND, details: expect.stringMatching(/pod "nope" does not exist/) });
  });
});
