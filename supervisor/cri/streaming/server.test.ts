import http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ExecRequest } from '../../gen/runtime/v1/api';
import { silentLogger } from '../../log';
import { REMOTECOMMAND_V2, REMOTECOMMAND_V4, REMOTECOMMAND_V5, WS_BASE64_V4 } from './k8s-protocol';
import { startStreamingServer, type StreamingServer } from './server';
import {
  closedPort,
  type LocalBackend,
  localBackend,
  spdyConnect,
  spdyExec,
  spdyForward,
  spdyPortForward,
  startEchoServer,
  UpgradeRefused,
  wsExec,
  wsPortForward,
} from './testing';

const exec = (cmd: string[], over: Partial<ExecRequest> = {}): ExecRequest => ({ containerId: 'c1', cmd, tty: false, stdin: false, stdout: true, stderr: true, ...over });
const sh = (script: string, over: Partial<ExecRequest> = {}) => exec(['sh', '-c', script], over);

let backend: LocalBackend;
let server: StreamingServer;
let echo: Awaited<ReturnType<typeof startEchoServer>>;

beforeAll(async () => {
  echo = await startEchoServer();
});
afterAll(async () => {
  await echo.close();
});

async function start(opts: { tokenTtlMs?: number } = {}) {
  backend = localBackend();
  server = await startStreamingServer({ backend, log: silentLogger, port: 0, ...opts });
}
afterEach(async () => {
  await server?.close();
});

describe('URLs', () => {
  it('are http://127.0.0.1:<port>/<kind>/<token>, a new token each time', async () => {
    await start();
    const a = server.getExec(sh('true')).url;
    const b = server.getExec(sh('true')).url;
    expect(a).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]{24}$/);
    expect(a).not.toBe(b);
    expect(server.getAttach({ containerId: 'c1', stdin: true, tty: false, stdout: true, stderr: false }).url).toContain('/attach/');
    expect(server.getPortForward({ podSandboxId: 'p1', port: [80] }).url).toContain('/portforward/');
  });

  it('validate the request, naming the field', async () => {
    await start();
    expect(() => server.getExec(exec([]))).toThrow(/cmd/);
    expect(() => server.getExec(sh('true', { containerId: '' }))).toThrow(/container_id/);
    expect(() => server.getExec(sh('true', { tty: true, stderr: true }))).toThrow(/stderr: must be false with tty/);
    expect(() => server.getExec(sh('true', { stdout: false, stderr: false }))).toThrow(/one of stdin, stdout or stderr/);
    expect(() => server.getPortForward({ podSandboxId: 'p', port: [70000] })).toThrow(/port\[0\]/);
  });
});

describe('exec over SPDY/3.1 (v4.channel.k8s.io)', () => {
  it('exit code 0: stdout, stderr kept apart, Success status', async () => {
    await start();
    const r = await spdyExec(server.getExec(sh('echo out; echo err >&2')).url);
    expect(r.protocol).toBe(REMOTECOMMAND_V4);
    expect(r.stdout.toString()).toBe('out\n');
    expect(r.stderr.toString()).toBe('err\n');
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.errorStream.toString())).toEqual({ metadata: {}, status: 'Success' });
  });

  it('non-zero exit: Failure status with reason NonZeroExitCode and cause ExitCode', async () => {
    await start();
    const r = await spdyExec(server.getExec(sh('echo bye; exit 3')).url);
    expect(r.stdout.toString()).toBe('bye\n');
    expect(r.exitCode).toBe(3);
    const status = JSON.parse(r.errorStream.toString());
    expect(status).toMatchObject({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '3' }] } });
  });

  it('stdin reaches the process and closes: cat echoes it', async () => {
    await start();
    const r = await spdyExec(server.getExec(exec(['cat'], { stdin: true, stderr: false })).url, { stdin: 'hello through cat\n', stderr: false });
    expect(r.stdout.toString()).toBe('hello through cat\n');
    expect(r.exitCode).toBe(0);
  });

  it('moves 1 MiB each way under flow control (a conforming client) and without it (a spdystream-like client)', async () => {
    await start();
    const big = Buffer.alloc(1024 * 1024, 'abcdefghijklmnopqrstuvwxyz');
    for (const announceSettings of [true, false]) {
      const r = await spdyExec(server.getExec(exec(['cat'], { stdin: true, stderr: false })).url, { stdin: big, stderr: false, announceSettings });
      expect(r.stdout.length).toBe(big.length);
      expect(r.stdout.equals(big)).toBe(true);
      expect(r.exitCode).toBe(0);
    }
  });

  it('a backend failure is an InternalError status, not a crash', async () => {
    await start();
    const r = await spdyExec(server.getExec(sh('true', { containerId: 'missing' })).url);
    expect(r.exitCode).toBeNull();
    expect(r.error).toMatch(/container "missing" not found/);
    expect(JSON.parse(r.errorStream.toString())).toMatchObject({ status: 'Failure', reason: 'InternalError', code: 500 });
  });

  it('TTY: the backend gets tty and the resize events, stderr is not a stream', async () => {
    await start();
    const url = server.getExec(exec(['cat'], { tty: true, stdin: true, stderr: false })).url;
    const r = await spdyExec(url, { tty: true, stdin: 'typed\n', resize: [{ width: 80, height: 24 }, { width: 120, height: 40 }] });
    expect(r.stdout.toString()).toBe('typed\n');
    expect(r.exitCode).toBe(0);
    expect(backend.calls.at(-1)).toMatchObject({ tty: true, resizes: [{ width: 80, height: 24 }, { width: 120, height: 40 }] });
  });

  it('v5.channel.k8s.io offered first (kubectl >= 1.30) is accepted and behaves as v4 over SPDY', async () => {
    await start();
    const r = await spdyExec(server.getExec(sh('exit 7')).url, { protocols: [REMOTECOMMAND_V5, REMOTECOMMAND_V4] });
    expect(r.protocol).toBe(REMOTECOMMAND_V5);
    expect(r.exitCode).toBe(7);
  });

  it('close() ends live sessions and aborts their backends', async () => {
    await start();
    const { session } = await spdyConnect(server.getExec(exec(['sleep', '30'], { stderr: false })).url, [REMOTECOMMAND_V4]);
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    await Promise.all([session.openStream({ streamtype: 'error' }), session.openStream({ streamtype: 'stdout' })].map((s) => s.replied));
    await waitFor(() => backend.calls.length === 1);
    await server.close();
    await closed;
    await waitFor(() => backend.aborted === 1);
  });

  it('v2.channel.k8s.io: errors as text, nothing on success', async () => {
    await start();
    const ok = await spdyExec(server.getExec(sh('echo v2')).url, { protocols: [REMOTECOMMAND_V2] });
    expect(ok.protocol).toBe(REMOTECOMMAND_V2);
    expect(ok.stdout.toString()).toBe('v2\n');
    expect(ok.errorStream.length).toBe(0);
    const bad = await spdyExec(server.getExec(sh('exit 2')).url, { protocols: [REMOTECOMMAND_V2] });
    expect(bad.errorStream.toString()).toMatch(/non-zero exit code/);
  });

  it('attach copies stdin to stdout (the local backend) and ends with Success', async () => {
    await start();
    const r = await spdyExec(server.getAttach({ containerId: 'c1', stdin: true, tty: false, stdout: true, stderr: false }).url, { stdin: 'attached\n', stderr: false });
    expect(r.stdout.toString()).toBe('attached\n');
    expect(r.exitCode).toBe(0);
  });

  it('the client leaving mid-exec aborts the backend (its signal) and auraed carries on', async () => {
    await start();
    const { session } = await spdyConnect(server.getExec(exec(['sleep', '30'], { stderr: false })).url, [REMOTECOMMAND_V4]);
    const streams = [session.openStream({ streamtype: 'error' }), session.openStream({ streamtype: 'stdout' })];
    await Promise.all(streams.map((s) => s.replied));
    await waitFor(() => backend.calls.length === 1);
    session.destroy();
    await waitFor(() => backend.aborted === 1);
    const r = await spdyExec(server.getExec(sh('echo still here')).url);
    expect(r.stdout.toString()).toBe('still here\n');
  });
});

describe('a faulty backend never takes the server down', () => {
  it('exec, attach and portForward throwing synchronously, and a throwing resize listener', async () => {
    const faulty = {
      exec: (req: { resize: NodeJS.EventEmitter }) => {
        req.resize.on('resize', () => {
          throw new Error('resize exploded');
        });
        throw new Error('exec exploded');
      },
      attach: () => {
        throw new Error('attach exploded');
      },
      portForward: () => {
        throw new Error('forward exploded');
      },
    } as unknown as LocalBackend;
    backend = faulty;
    server = await startStreamingServer({ backend: faulty, log: silentLogger, port: 0 });
    const e = await spdyExec(server.getExec(sh('true', { tty: true, stdin: true, stderr: false })).url, { tty: true, stdin: 'x', resize: [{ width: 1, height: 1 }] });
    expect(e.error).toMatch(/exec exploded/);
    const a = await wsExec(server.getAttach({ containerId: 'c1', stdin: false, tty: false, stdout: true, stderr: false }).url);
    expect(a.error).toMatch(/attach exploded/);
    const p = await spdyPortForward(server.getPortForward({ podSandboxId: 'p1', port: [] }).url, echo.port, Buffer.from('x'));
    expect(p.error).toMatch(/forward exploded/);
  });

  it('an idle connection is closed after idleTimeoutMs', async () => {
    backend = localBackend();
    server = await startStreamingServer({ backend, log: silentLogger, port: 0, idleTimeoutMs: 100 });
    const { session } = await spdyConnect(server.getExec(exec(['sleep', '30'], { stderr: false })).url, [REMOTECOMMAND_V4]);
    await new Promise<void>((resolve) => session.once('close', resolve));
  });
});

describe('tokens', () => {
  it('a used token is refused with 404', async () => {
    await start();
    const url = server.getExec(sh('true')).url;
    await spdyExec(url);
    await expect(spdyExec(url)).rejects.toMatchObject({ status: 404 });
  });

  it('an expired token is refused with 404', async () => {
    await start({ tokenTtlMs: 30 });
    const url = server.getExec(sh('true')).url;
    await sleepUntil(Date.now() + 60);
    const err = await spdyExec(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpgradeRefused);
    expect((err as UpgradeRefused).status).toBe(404);
    expect((err as UpgradeRefused).body).toMatch(/token not found/);
  });

  it('a token of another kind, an unknown path or a plain GET is refused', async () => {
    await start();
    const url = server.getExec(sh('true')).url;
    await expect(spdyExec(url.replace('/exec/', '/attach/'))).rejects.toMatchObject({ status: 404 });
    const plain = await get(server.getExec(sh('true')).url);
    expect(plain.status).toBe(400);
    expect(plain.body).toMatch(/upgrade required/);
    expect((await get(`${server.url}/nothing`)).status).toBe(404);
  });

  it('an unsupported protocol is refused with 403 and the accepted versions', async () => {
    await start();
    const err = (await spdyExec(server.getExec(sh('true')).url, { protocols: ['v9.channel.k8s.io'] }).catch((e: unknown) => e)) as UpgradeRefused;
    expect(err.status).toBe(403);
    expect(err.body).toMatch(/unable to negotiate protocol/);
  });
});

describe('exec over WebSocket', () => {
  it('v5.channel.k8s.io: stdin (closed with channel 255), stdout, stderr, exit code', async () => {
    await start();
    const r = await wsExec(server.getExec(sh('cat; echo err >&2; exit 4', { stdin: true })).url, { stdin: 'via websocket\n' });
    expect(r.protocol).toBe(REMOTECOMMAND_V5);
    expect(r.stdout.toString()).toBe('via websocket\n');
    expect(r.stderr.toString()).toBe('err\n');
    expect(r.exitCode).toBe(4);
  });

  it('v4.channel.k8s.io: exit 0 is a Success status', async () => {
    await start();
    const r = await wsExec(server.getExec(sh('echo four')).url, { protocols: [REMOTECOMMAND_V4] });
    expect(r.protocol).toBe(REMOTECOMMAND_V4);
    expect(r.stdout.toString()).toBe('four\n');
    expect(r.exitCode).toBe(0);
  });

  it('v4.base64.channel.k8s.io: text messages carry the same streams', async () => {
    await start();
    const r = await wsExec(server.getExec(sh('printf "\\001\\002binary"; exit 1')).url, { protocols: [WS_BASE64_V4] });
    expect(r.protocol).toBe(WS_BASE64_V4);
    expect(r.stdout).toEqual(Buffer.from('\x01\x02binary'));
    expect(r.exitCode).toBe(1);
  });

  it('resize messages reach the backend with tty', async () => {
    await start();
    const r = await wsExec(server.getExec(exec(['cat'], { tty: true, stdin: true, stderr: false })).url, { stdin: 'x', resize: [{ width: 100, height: 30 }] });
    expect(r.stdout.toString()).toBe('x');
    expect(backend.calls.at(-1)).toMatchObject({ tty: true, resizes: [{ width: 100, height: 30 }] });
  });

  it('an unknown subprotocol is refused with 400', async () => {
    await start();
    await expect(wsExec(server.getExec(sh('true')).url, { protocols: ['v9.channel.k8s.io'] })).rejects.toMatchObject({ status: 400 });
  });
});

describe('port-forward', () => {
  it('SPDY portforward.k8s.io: a round trip through a TCP echo server, half-close included', async () => {
    await start();
    const payload = Buffer.from('ping through the pod\n');
    const r = await spdyPortForward(server.getPortForward({ podSandboxId: 'p1', port: [] }).url, echo.port, payload);
    expect(r.data.toString()).toBe(payload.toString());
    expect(r.error).toBe('');
  });

  it('SPDY: several forwarded connections on one session, 256 KiB each', async () => {
    await start();
    const { session } = await spdyConnect(server.getPortForward({ podSandboxId: 'p1', port: [] }).url, ['portforward.k8s.io']);
    const payloads = [0, 1, 2].map((i) => Buffer.alloc(256 * 1024, String(i)));
    const results = await Promise.all(payloads.map((p, i) => spdyForward(session, echo.port, String(i), p)));
    for (const [i, r] of results.entries()) expect(r.data.equals(payloads[i]!)).toBe(true);
    session.end();
  });

  it('SPDY: a port nobody listens on is reported on the error stream', async () => {
    await start();
    const port = await closedPort();
    const r = await spdyPortForward(server.getPortForward({ podSandboxId: 'p1', port: [] }).url, port, Buffer.from('x'));
    expect(r.error).toMatch(new RegExp(`error forwarding port ${port} to pod p1: .*ECONNREFUSED`));
  });

  it('WebSocket v4.channel.k8s.io: data/error channel pairs per port, each opened by the port (little-endian)', async () => {
    await start();
    const port = await closedPort();
    const url = server.getPortForward({ podSandboxId: 'p1', port: [echo.port, port] }).url;
    const r = await wsPortForward(url, [Buffer.from('over websocket'), Buffer.from('nobody')], (i, got) => (i === 0 ? got.toString() === 'over websocket' : false));
    expect(r.data[0]!.toString()).toBe('over websocket');
    expect(r.prefixes[0]).toEqual([echo.port & 0xff, echo.port >> 8]);
    expect(r.prefixes[1]).toEqual([echo.port & 0xff, echo.port >> 8]);
    expect(r.prefixes[2]).toEqual([port & 0xff, port >> 8]);
    expect(r.errors[1]).toMatch(/ECONNREFUSED/);
  });

  it('WebSocket without ports in the request takes ?port=', async () => {
    await start();
    const url = `${server.getPortForward({ podSandboxId: 'p1', port: [] }).url}?port=${echo.port}`;
    const r = await wsPortForward(url, [Buffer.from('query port')], (_i, got) => got.length === 10);
    expect(r.data[0]!.toString()).toBe('query port');
  });
});

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      })
      .on('error', reject);
  });
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Wait until the clock passes `at` (token expiry is a clock condition, not a fixed sleep). */
async function sleepUntil(at: number): Promise<void> {
  await waitFor(() => Date.now() > at);
}
