// The SDK's exec over a real grpc-js server on loopback (insecure: the wire mapping, not the auth, is under test):
// the first request's fields, stdin streamed and closed, output collected or streamed (5 MiB read slowly arrives
// whole), the exit, the node's status as an AuraeApiError, cancel through an AbortSignal.
import { type ServerDuplexStream, Server, ServerCredentials, credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PodServiceClient, PodServiceService, type PodServiceExecRequest, type PodServiceExecResponse } from '../../supervisor/gen/aurae/pods/v0/pods';
import { execCollect, execStream } from './pod-exec';

const EMPTY = Buffer.alloc(0);
type Call = ServerDuplexStream<PodServiceExecRequest, PodServiceExecResponse>;

/** What the fake node does for a command (the first request's argv[0]). */
const programs: Record<string, (call: Call, first: PodServiceExecRequest) => void> = {
  // Echo stdin to stdout; exit 0 once stdin is closed.
  cat: (call) => {
    call.on('data', (m: PodServiceExecRequest) => {
      if (m.stdin.length) call.write({ stdout: m.stdin, stderr: EMPTY });
      if (m.closeStdin) {
        call.write({ stdout: EMPTY, stderr: EMPTY, exit: { code: 0 } });
        call.end();
      }
    });
  },
  // Report the start fields on stdout, something on stderr, exit 3.
  show: (call, first) => {
    call.write({ stdout: Buffer.from(JSON.stringify(first.start)), stderr: Buffer.from('warn\n') });
    call.write({ stdout: EMPTY, stderr: EMPTY, exit: { code: 3 } });
    call.end();
  },
  // 5 MiB in 64 KiB chunks, honouring back-pressure, then SIGKILL as the exit.
  big: (call) => {
    const chunk = Buffer.alloc(64 * 1024, 7);
    let sent = 0;
    const more = () => {
      while (sent < 80) {
        sent++;
        if (!call.write({ stdout: chunk, stderr: EMPTY })) return void call.once('drain', more);
      }
      call.write({ stdout: EMPTY, stderr: EMPTY, exit: { signal: 'SIGKILL' } });
      call.end();
    };
    more();
  },
  refuse: (call) => void call.emit('error', { code: status.FAILED_PRECONDITION, details: 'pod "web": container "app" is not running (exited)' }),
  noexit: (call) => void call.end(),
  hang: (call) => {
    call.write({ stdout: Buffer.from('up\n'), stderr: EMPTY });
    call.on('cancelled', () => (cancelled = true));
  },
};
let cancelled = false;

let server: Server;
let client: PodServiceClient;
let address: string;

beforeAll(async () => {
  server = new Server();
  server.addService(PodServiceService, {
    exec: (call: Call) => {
      call.once('data', (first: PodServiceExecRequest) => programs[first.start!.command[0]!]!(call, first));
    },
  } as never);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  address = `127.0.0.1:${port}`;
  client = new PodServiceClient(address, credentials.createInsecure());
});
afterAll(() => {
  client.close();
  server.forceShutdown();
});

describe('pods.exec', () => {
  it('sends the start fields and collects stdout, stderr and the exit', async () => {
    const r = await execCollect(client, address, 'web', ['show', 'a'], { container: 'app', env: { A: '1' }, workingDir: '/tmp', user: '1000' });
    expect(JSON.parse(r.stdout.toString())).toEqual({ podName: 'web', containerName: 'app', command: ['show', 'a'], env: { A: '1' }, workingDir: '/tmp', user: '1000', stdin: false });
    expect(r.stderr.toString()).toBe('warn\n');
    expect(r).toMatchObject({ code: 3, signal: null });
  });

  it('feeds stdin given whole or as an iterable, then closes it', async () => {
    expect((await execCollect(client, address, 'web', ['cat'], { stdin: 'hello' })).stdout.toString()).toBe('hello');
    async function* parts() {
      yield 'a';
      yield Buffer.from('b');
    }
    expect((await execCollect(client, address, 'web', ['cat'], { stdin: parts() })).stdout.toString()).toBe('ab');
  });

  it('streams: stdin written piece by piece, stdout read as it comes', async () => {
    const s = execStream(client, address, 'web', ['cat'], { stdin: true });
    let out = '';
    s.stdout.on('data', (c: Buffer) => (out += c.toString()));
    s.stdin!.write('one ');
    s.stdin!.end('two');
    expect(await s.exit).toEqual({ code: 0, signal: null });
    expect(out).toBe('one two');
  });

  it('a slow reader still gets all 5 MiB, and a signal exit', async () => {
    const s = execStream(client, address, 'web', ['big']);
    let bytes = 0;
    for await (const chunk of s.stdout) {
      bytes += (chunk as Buffer).length;
      if (bytes % (1024 * 1024) === 0) await new Promise((r) => setTimeout(r, 20));
    }
    expect(bytes).toBe(80 * 64 * 1024);
    expect(await s.exit).toEqual({ code: null, signal: 'SIGKILL' });
  });

  it("rejects with the node's status, and when the node ends the call without an exit", async () => {
    await expect(execCollect(client, address, 'web', ['refuse'])).rejects.toMatchObject({ name: 'AuraeApiError', code: 'FAILED_PRECONDITION', details: expect.stringMatching(/not running/) });
    await expect(execCollect(client, address, 'web', ['noexit'])).rejects.toThrow(/ended the call without the exit/);
  });

  it('maxBuffer cancels the call; an AbortSignal cancels it', async () => {
    await expect(execCollect(client, address, 'web', ['big'], { maxBuffer: 1024 * 1024 })).rejects.toThrow(/stdout exceeded maxBuffer/);
    const abort = new AbortController();
    const s = execStream(client, address, 'web', ['hang'], { signal: abort.signal });
    await new Promise((r) => s.stdout.once('data', r));
    abort.abort();
    await expect(s.exit).rejects.toMatchObject({ code: 'CANCELLED' });
    await waitFor(() => cancelled);
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within the deadline');
    await new Promise((r) => setTimeout(r, 10));
  }
}
