// aurae-exec on the host, as root. The cgroup.procs path is tested against a temp dir whose cgroup.procs is a
// plain file (the helper's write lands there), or skipped with `--cgroup none`; the clone3 (CLONE_INTO_CGROUP)
// path against a real cgroup2 directory where the host mounts one (a hybrid host's /sys/fs/cgroup/unified);
// cells' cgroups are tested in the booted image (qemu-tests/10-cells.test.ts). Namespaces, ids, cwd, exit codes,
// the status descriptor, signal forwarding and reaping are all real here.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAuraeExec } from './build';

let dir: string;
let helper: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'aurae-exec-'));
  helper = await buildAuraeExec({ outFile: path.join(dir, 'aurae-exec') });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(flags: string[], argv: string[], options: { env?: Record<string, string> } = {}) {
  const r = spawnSync(helper, [...flags, '--', ...argv], {
    encoding: 'utf8',
    env: options.env ?? { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    timeout: 20_000,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const ALL = ['--cgroup', 'none', '--pid', '--mount', '--uts', 'cellhost', '--ipc', '--net'];

describe('aurae-exec', () => {
  it('joins the cgroup first: writes its own pid to <dir>/cgroup.procs', () => {
    const cg = mkdtempSync(path.join(dir, 'cg-'));
    writeFileSync(path.join(cg, 'cgroup.procs'), '');
    const r = run(['--cgroup', cg], ['/bin/sh', '-c', 'echo $$']);
    expect(r.status).toBe(0);
    // Without a pid namespace the helper execs in place: the program has the pid that joined.
    expect(readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').trim()).toBe(r.stdout.trim());
  });

  it('fails with 125 and says what to do when the cgroup is missing', () => {
    const r = run(['--cgroup', path.join(dir, 'missing')], ['/bin/true']);
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/^aurae-exec: .*missing\/cgroup\.procs failed: No such file or directory \(ENOENT\): open: does the executable's cgroup exist/);
  });

  it('gives the program new pid, mount (private /proc), uts, ipc and net namespaces', () => {
    const script = [
      'echo pid=$$',
      'echo init=$(cat /proc/1/comm)',
      'echo procs=$(ls -d /proc/[0-9]* | wc -l)',
      'echo host=$(hostname)',
      'echo ipc=$(readlink /proc/self/ns/ipc)',
      'echo net=$(cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " " | tr "\\n" ",")',
      'echo lo=$(ip -o link show lo | grep -c "UP")',
    ].join('; ');
    const r = run(ALL, ['/bin/sh', '-c', script]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split('=') as [string, string]));
    expect(out.pid).toBe('2');
    expect(out.init).toBe('aurae-exec');
    // init, the shell, ls (and the subshell): a handful, not the host's hundreds.
    expect(Number(out.procs)).toBeLessThan(6);
    expect(out.host).toBe('cellhost');
    expect(out.ipc).not.toBe(readlinkSync('/proc/self/ns/ipc'));
    expect(out.net).toBe('lo,');
    expect(out.lo).toBe('1');
  });

  it('leaves the host alone: hostname and mounts unchanged', () => {
    const hostname = readFileSync('/proc/sys/kernel/hostname', 'utf8');
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').length;
    expect(run(ALL, ['/bin/true']).status).toBe(0);
    expect(readFileSync('/proc/sys/kernel/hostname', 'utf8')).toBe(hostname);
    expect(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').length).toBe(mounts);
  });

  it('runs as the given uid/gid with no supplementary groups, in the given cwd, with exactly the given env', () => {
    const r = run(['--cgroup', 'none', '--uid', '65534', '--gid', '65533', '--cwd', '/tmp'], ['/bin/sh', '-c', 'id -u; id -g; id -G; pwd; env | sort'], {
      env: { PATH: '/usr/bin:/bin', GREETING: 'hi' },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n').slice(0, 4)).toEqual(['65534', '65533', '65533', '/tmp']);
    expect(r.stdout).toMatch(/^GREETING=hi$/m);
    expect(r.stdout).not.toMatch(/^HOME=/m);
  });

  it('exit codes: the program\'s, 127 not found, 126 not executable, 125 setup failures', () => {
    expect(run(['--cgroup', 'none'], ['/bin/sh', '-c', 'exit 7']).status).toBe(7);
    expect(run(ALL, ['/bin/sh', '-c', 'exit 9']).status).toBe(9);
    const notFound = run(['--cgroup', 'none'], ['no-such-program-xyz']);
    expect(notFound.status).toBe(127);
    expect(notFound.stderr).toMatch(/executing no-such-program-xyz failed: .*ENOENT.*not found in the PATH/);
    expect(run(ALL, ['/no/such/file']).status).toBe(127);
    const notExec = run(['--cgroup', 'none'], ['/etc/passwd']);
    expect(notExec.status).toBe(126);
    expect(notExec.stderr).toMatch(/EACCES/);
    expect(run(['--cgroup', 'none', '--cwd', '/no/such/dir'], ['/bin/true']).status).toBe(125);
    expect(run(['--cgroup', 'none', '--uid', 'x'], ['/bin/true'])).toMatchObject({ status: 125, stderr: expect.stringMatching(/--uid: "x" is not a number/) });
    expect(run(['--pid'], ['/bin/true'])).toMatchObject({ status: 125, stderr: expect.stringMatching(/--cgroup is required/) });
  });

  it('ends exactly like the program: death by signal is reproduced through the pid-namespace init', () => {
    expect(run(['--cgroup', 'none'], ['/bin/sh', '-c', 'kill -KILL $$'])).toMatchObject({ status: null, signal: 'SIGKILL' });
    expect(run(ALL, ['/bin/sh', '-c', 'kill -KILL $$'])).toMatchObject({ status: null, signal: 'SIGKILL' });
    expect(run(ALL, ['/bin/sh', '-c', 'kill -TERM $$'])).toMatchObject({ status: null, signal: 'SIGTERM' });
  });

  it('forwards SIGTERM to the program through the namespace init', async () => {
    const child = spawn(helper, [...ALL, '--', '/bin/sh', '-c', 'trap "echo got TERM; exit 3" TERM; echo ready; while true; do sleep 0.05; done'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    await waitFor(() => out.includes('ready'));
    child.kill('SIGTERM');
    const [code] = await new Promise<[number | null, string | null]>((r) => child.once('exit', (c, s) => r([c, s])));
    expect(out).toContain('got TERM');
    expect(code).toBe(3);
  });

  it('reaps orphans in the namespace, and nothing outlives the program', async () => {
    const marker = `${1000 + Math.floor(Math.random() * 1000)}.4242`;
    const script = `(sleep 0.1 &); (sleep ${marker} &); sleep 0.5; grep -l "^State:.*Z" /proc/[0-9]*/status | wc -l`;
    const r = run(ALL, ['/bin/sh', '-c', script]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('0');
    // The orphaned long sleep was killed with the namespace when the program (and so its init) ended.
    await new Promise((res) => setTimeout(res, 200));
    expect(spawnSync('pgrep', ['-f', `sleep ${marker}`]).status).toBe(1);
  });

  it('reports on --status-fd: EOF without data once executed, the message when setup failed', async () => {
    const status = (argv: string[]) =>
      new Promise<string>((resolve) => {
        const child = spawn(helper, ['--cgroup', 'none', '--pid', '--status-fd', '3', '--', ...argv], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
        let text = '';
        const fd3 = child.stdio[3] as NodeJS.ReadableStream;
        fd3.setEncoding('utf8');
        fd3.on('data', (d: string) => (text += d));
        fd3.on('end', () => resolve(text));
      });
    // The program is still running (sleep) when EOF arrives: exec closed the descriptor.
    const started = Date.now();
    expect(await status(['/bin/sleep', '1'])).toBe('');
    expect(Date.now() - started).toBeLessThan(900);
    expect(await status(['/no/such/program'])).toMatch(/^executing \/no\/such\/program failed: No such file or directory \(ENOENT\)/);
  });
});

async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Where the host mounts cgroup2 (null: none, e.g. a pure cgroup v1 host). */
function cgroup2Mount(): string | null {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [before, after] = line.split(' - ');
    if (after?.startsWith('cgroup2 ')) return before!.split(' ')[4]!;
  }
  return null;
}

const CGROUP2 = cgroup2Mount();

/** Spawn the helper with a status pipe on fd 3; collect stdout, the status text (until EOF) and the exit. */
function launch(flags: string[], argv: string[]) {
  const child = spawn(helper, [...flags, '--status-fd', '3', '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  const seen = { out: '', err: '', status: '', statusEnded: false };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (seen.out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (seen.err += d));
  const fd3 = child.stdio[3] as NodeJS.ReadableStream;
  fd3.setEncoding('utf8');
  fd3.on('data', (d: string) => (seen.status += d));
  fd3.on('end', () => (seen.statusEnded = true));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  return { child, seen, exited };
}

describe.skipIf(CGROUP2 === null)(`aurae-exec with a real cgroup2 leaf (clone3 CLONE_INTO_CGROUP; skipped: no cgroup2 mount on this host)`, () => {
  let leaf: string;
  beforeAll(() => {
    leaf = path.join(CGROUP2!, `aurae-exec-test-${process.pid}`);
    mkdirSync(leaf);
  });
  afterAll(() => rmdirSync(leaf));
  const procs = () => readFileSync(path.join(leaf, 'cgroup.procs'), 'utf8').trim().split('\n').filter(Boolean).map(Number).sort((a, b) => a - b);

  it('creates the program inside the leaf and names it on --status-fd; aurae-exec itself stays outside', async () => {
    const r = launch(['--cgroup', leaf], ['/bin/sh', '-c', 'echo $$; cat /proc/self/cgroup; echo ready; exec sleep 30']);
    await waitFor(() => r.seen.out.includes('ready') && r.seen.statusEnded);
    const programPid = Number(r.seen.out.split('\n')[0]);
    expect(r.seen.status).toBe(`pid ${programPid}\n`);
    expect(programPid).not.toBe(r.child.pid);
    expect(r.seen.out).toContain(`0::/${path.basename(leaf)}\n`);
    expect(procs()).toEqual([programPid]);
    // A signal to the named pid ends the program, and aurae-exec ends exactly as it did.
    process.kill(programPid, 'SIGTERM');
    expect(await r.exited).toEqual({ code: null, signal: 'SIGTERM' });
    expect(r.seen.err).toBe('');
    await waitFor(() => procs().length === 0);
  });

  it('with a pid namespace: names the namespace init (in the leaf, with the program), ends like the program', async () => {
    const r = launch(['--cgroup', leaf, '--pid', '--mount'], ['/bin/sh', '-c', 'echo $$; echo ready; exec sleep 30']);
    await waitFor(() => r.seen.out.includes('ready') && r.seen.statusEnded);
    expect(r.seen.out.split('\n')[0]).toBe('2');
    const init = Number(/^pid (\d+)\n$/.exec(r.seen.status)?.[1]);
    expect(readFileSync(`/proc/${init}/status`, 'utf8')).toMatch(/^NSpid:\s+\d+\s+1$/m);
    expect(procs()).toContain(init);
    expect(procs()).toHaveLength(2); // init and the program
    expect(procs()).not.toContain(r.child.pid);
    // Signalled as auraed does: SIGTERM to the named pid; the init forwards it to the program.
    process.kill(init, 'SIGTERM');
    expect(await r.exited).toEqual({ code: null, signal: 'SIGTERM' });
    await waitFor(() => procs().length === 0);
  });

  it('exit codes and setup failures are the same as on the cgroup.procs path; the status names the child and says the failure', async () => {
    const ok = launch(['--cgroup', leaf], ['/bin/sh', '-c', 'exit 7']);
    expect(await ok.exited).toEqual({ code: 7, signal: null });
    const missing = launch(['--cgroup', leaf], ['/no/such/program']);
    expect(await missing.exited).toEqual({ code: 127, signal: null });
    await waitFor(() => missing.seen.statusEnded);
    // Two writers (aurae-exec names the child, the child reports its failure): the lines come in either order.
    expect(missing.seen.status).toMatch(/^pid \d+$/m);
    expect(missing.seen.status).toMatch(/^executing \/no\/such\/program failed: No such file or directory \(ENOENT\)/m);
    const cwd = launch(['--cgroup', leaf, '--pid', '--cwd', '/no/such/dir'], ['/bin/true']);
    expect(await cwd.exited).toEqual({ code: 125, signal: null });
    const killed = launch(['--cgroup', leaf, '--pid', '--mount', '--uts', 'cellhost', '--ipc', '--net'], ['/bin/sh', '-c', 'hostname; kill -KILL $$']);
    expect(await killed.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(killed.seen.out).toBe('cellhost\n');
    await waitFor(() => procs().length === 0);
  });
});
