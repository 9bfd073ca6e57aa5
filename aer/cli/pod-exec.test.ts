// `aer pod exec` over a fake SDK session: options mapped to the start, bytes passed through to our stdout and
// stderr untouched, stdin forwarded only with -i, aer's exit status the process's (128+N for a signal).
import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { AuraeClient, ExecSession } from '../sdk';
import { execExitStatus } from './pod-exec';
import { runAer } from './program';

function sink() {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

/** A client whose execStream echoes stdin (when attached) then exits with `exit`. */
function fakeClient(exit: { code: number | null; signal: string | null }, output: { stdout?: string; stderr?: string } = {}) {
  const calls: unknown[] = [];
  const client = {
    config: { path: '/c.json', node: 'n', address: 'unix:///x', version: 1, ca: '', cert: '', key: '' },
    pods: {
      execStream: (pod: string, command: string[], options: Record<string, unknown>): ExecSession => {
        calls.push([pod, command, options]);
        const stdout = new PassThrough();
        const stderr = Readable.from(output.stderr ? [Buffer.from(output.stderr)] : []);
        const stdin = options.stdin ? new PassThrough() : null;
        const done = (async () => {
          if (output.stdout) stdout.write(output.stdout);
          if (stdin) for await (const chunk of stdin) stdout.write(chunk);
          stdout.end();
          return exit;
        })();
        return { stdin, stdout, stderr, exit: done, cancel: () => {} };
      },
    },
    close: () => {},
  } as unknown as AuraeClient;
  return { client, calls };
}

async function run(argv: string[], client: AuraeClient, input = '') {
  const out = sink();
  const err = sink();
  const lines: string[] = [];
  const code = await runAer(argv, {
    out: (t) => void lines.push(t),
    err: (t) => void lines.push(`ERR ${t}`),
    env: {},
    connect: () => client,
    execStreams: { stdin: Readable.from(input ? [Buffer.from(input)] : []), stdout: out.stream, stderr: err.stream },
  });
  return { code, stdout: out.text(), stderr: err.text(), lines };
}

describe('aer pod exec', () => {
  it('maps the options, passes the bytes through and exits with the code', async () => {
    const { client, calls } = fakeClient({ code: 7, signal: null }, { stdout: 'out\n', stderr: 'err\n' });
    const r = await run(['pod', 'exec', 'web', '-c', 'app', '-e', 'A=1', '-e', 'B=x=y', '-w', '/tmp', '-u', '1000', '--', 'sh', '-c', 'exit 7'], client);
    expect(r).toMatchObject({ code: 7, stdout: 'out\n', stderr: 'err\n', lines: [] });
    expect(calls).toEqual([['web', ['sh', '-c', 'exit 7'], { container: 'app', env: { A: '1', B: 'x=y' }, workingDir: '/tmp', user: '1000', stdin: false }]]);
  });

  it('forwards stdin with -i only', async () => {
    const { client, calls } = fakeClient({ code: 0, signal: null });
    const r = await run(['pod', 'exec', '-i', 'web', '--', 'cat'], client, 'typed\n');
    expect(r).toMatchObject({ code: 0, stdout: 'typed\n' });
    expect((calls[0] as [string, string[], { stdin: boolean }])[2].stdin).toBe(true);
  });

  it('exits 128+N for a signal, as a shell does', async () => {
    expect((await run(['pod', 'exec', 'web', '--', 'x'], fakeClient({ code: null, signal: 'SIGTERM' }).client)).code).toBe(143);
    expect(execExitStatus({ code: null, signal: 'SIGKILL' })).toBe(137);
    expect(execExitStatus({ code: null, signal: 'SIGNOPE' })).toBe(255);
    expect(execExitStatus({ code: 0, signal: null })).toBe(0);
  });

  it('needs a command', async () => {
    const r = await run(['pod', 'exec', 'web'], fakeClient({ code: 0, signal: null }).client);
    expect(r.code).toBe(2);
    expect(r.lines.join('\n')).toMatch(/missing required argument 'command'/);
  });
});
