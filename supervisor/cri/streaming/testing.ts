// Test helpers: our own clients of the streaming server (SPDY/3.1 and WebSocket, written from the protocol, as
// kubectl/crictl speak it) and a local backend (exec = a local process, port-forward = TCP to 127.0.0.1).
// Used by the unit tests here and by the QEMU suite (qemu-tests/45-cri.test.ts) against a booted node.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { constants } from 'node:os';
import { WebSocket } from 'ws';
import { silentLogger } from '../../log';
import {
  decodeChannelMessage,
  encodeChannelMessage,
  encodeTerminalSize,
  PORTFORWARD_PROTOCOL,
  readErrorStream,
  REMOTECOMMAND_V4,
  REMOTECOMMAND_V5,
  spdyCommandProtocol,
  type TerminalSize,
  WS_CHANNEL,
  wsCommandProtocol,
} from './k8s-protocol';
import type { BackendAttachRequest, BackendExecRequest, BackendPortForwardRequest, StreamingBackend } from './server';
import { SpdySession, type SpdyStream } from './spdy-session';

// ---------------------------------------------------------------- SPDY client

export interface SpdyConnection {
  session: SpdySession;
  /** The server's X-Stream-Protocol-Version ('' when it sent none). */
  protocol: string;
}

/** Thrown when the server refuses the upgrade: its HTTP status and body. */
export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused: HTTP ${status}: ${body.trim()}`);
  }
}

/** POST url with Upgrade: SPDY/3.1 offering `protocols`; the session once the server switched. */
export function spdyConnect(url: string, protocols: string[], opts: { announceSettings?: boolean } = {}): Promise<SpdyConnection> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', ...(protocols.length ? { 'X-Stream-Protocol-Version': protocols } : {}) },
    });
    req.on('upgrade', (res, socket, head) => {
      if (head.length) socket.unshift(head);
      const session = new SpdySession(socket, { server: false, log: silentLogger, announceSettings: opts.announceSettings ?? true });
      resolve({ session, protocol: String(res.headers['x-stream-protocol-version'] ?? '') });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => reject(new UpgradeRefused(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
    });
    req.on('error', reject);
    req.end();
  });
}

export interface ExecOutcome {
  stdout: Buffer;
  stderr: Buffer;
  /** From the error stream: the exit code, or the failure message. */
  exitCode: number | null;
  error: string | null;
  protocol: string;
  /** The raw error stream. */
  errorStream: Buffer;
}

export interface ExecClientOptions {
  /** Sent then closed; null: no stdin stream. */
  stdin?: Buffer | string | null;
  /** Default true. */
  stdout?: boolean;
  /** Default true (false with tty). */
  stderr?: boolean;
  tty?: boolean;
  /** Sent on the resize stream/channel before stdin. */
  resize?: TerminalSize[];
  /** Offered protocols (default v4.channel.k8s.io for SPDY, v5 for WebSocket). */
  protocols?: string[];
  /** SPDY: announce SETTINGS (flow control) as a conforming client; false behaves like Go's spdystream. */
  announceSettings?: boolean;
}

function collect(stream: SpdyStream | null): Promise<Buffer> {
  if (!stream) return Promise.resolve(Buffer.alloc(0));
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

/** Run an exec (or attach) URL over SPDY as kubectl does: error, stdin, stdout, stderr, resize streams. */
export async function spdyExec(url: string, opts: ExecClientOptions = {}): Promise<ExecOutcome> {
  const { session, protocol } = await spdyConnect(url, opts.protocols ?? [REMOTECOMMAND_V4], { announceSettings: opts.announceSettings });
  const tty = opts.tty ?? false;
  const open = (type: string) => session.openStream({ streamtype: type });
  const error = open('error');
  error.end(); // the client never writes on the error stream
  const stdin = opts.stdin !== undefined && opts.stdin !== null ? open('stdin') : null;
  const stdout = opts.stdout ?? true ? open('stdout') : null;
  const stderr = (opts.stderr ?? !tty) && !tty ? open('stderr') : null;
  const resize = tty && spdyCommandProtocol(protocol).resize ? open('resize') : null;
  for (const s of [stdout, stderr]) s?.end(); // server → client only
  const outputs = Promise.all([collect(stdout), collect(stderr), collect(error)]);
  await Promise.all([error, stdin, stdout, stderr, resize].filter((s): s is SpdyStream => s !== null).map((s) => s.replied));
  if (resize) {
    for (const size of opts.resize ?? []) resize.write(encodeTerminalSize(size));
    resize.end();
  }
  if (stdin) stdin.end(Buffer.from(opts.stdin!));
  const closed = new Promise<void>((resolve) => session.once('close', resolve));
  const [out, err, errorStream] = await Promise.race([outputs, closed.then(() => outputs)]);
  session.destroy();
  const parsed = readErrorStream(errorStream, spdyCommandProtocol(protocol));
  return { stdout: out, stderr: err, errorStream, protocol, exitCode: 'exitCode' in parsed ? parsed.exitCode : null, error: 'error' in parsed ? parsed.error : null };
}

/** One forwarded connection over an open port-forward session: send `payload`, half-close, read to the end. */
export async function spdyForward(session: SpdySession, port: number, requestId: string, payload: Buffer): Promise<{ data: Buffer; error: string }> {
  const error = session.openStream({ streamtype: 'error', port: String(port), requestid: requestId });
  error.end();
  const data = session.openStream({ streamtype: 'data', port: String(port), requestid: requestId });
  const results = Promise.all([collect(data), collect(error)]);
  await Promise.all([error.replied, data.replied]);
  data.end(payload);
  const [bytes, err] = await results;
  return { data: bytes, error: err.toString('utf8') };
}

export async function spdyPortForward(url: string, port: number, payload: Buffer): Promise<{ data: Buffer; error: string }> {
  const { session } = await spdyConnect(url, [PORTFORWARD_PROTOCOL]);
  try {
    return await spdyForward(session, port, '0', payload);
  } finally {
    session.end();
  }
}

// ---------------------------------------------------------------- WebSocket client

function wsUrl(url: string): string {
  return url.replace(/^http/, 'ws');
}

/** Open a WebSocket; onMessage is attached before 'open' (messages may arrive in the same read as the upgrade). */
export function wsConnect(url: string, protocols: string[], onMessage: (ws: WebSocket, raw: Buffer, isBinary: boolean) => void): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(url), protocols);
    ws.on('message', (raw: Buffer, isBinary: boolean) => onMessage(ws, raw, isBinary));
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => reject(new UpgradeRefused(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
    });
    ws.once('error', reject);
  });
}

/** Run an exec (or attach) URL over WebSocket channels (v5 by default: stdin is closed with [255, 0]). */
export async function wsExec(url: string, opts: ExecClientOptions = {}): Promise<ExecOutcome> {
  const chunks: Record<number, Buffer[]> = { 1: [], 2: [], 3: [] };
  const ws = await wsConnect(url, opts.protocols ?? [REMOTECOMMAND_V5], (socket, raw, isBinary) => {
    const m = decodeChannelMessage(isBinary ? raw : raw.toString('latin1'), wsCommandProtocol(socket.protocol).base64);
    if (m) chunks[m.channel]?.push(m.data);
  });
  const protocol = ws.protocol;
  const p = wsCommandProtocol(protocol || 'channel.k8s.io');
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  const send = (channel: number, data: Buffer) => ws.send(encodeChannelMessage(channel, data, p.base64), { binary: !p.base64 });
  for (const size of opts.resize ?? []) send(WS_CHANNEL.resize, Buffer.from(encodeTerminalSize(size)));
  if (opts.stdin !== undefined && opts.stdin !== null) {
    send(WS_CHANNEL.stdin, Buffer.from(opts.stdin));
    if (p.closeChannel) ws.send(Buffer.of(WS_CHANNEL.close, WS_CHANNEL.stdin));
  }
  await closed;
  const errorStream = Buffer.concat(chunks[3]!);
  const parsed = readErrorStream(errorStream, p);
  return {
    stdout: Buffer.concat(chunks[1]!),
    stderr: Buffer.concat(chunks[2]!),
    errorStream,
    protocol,
    exitCode: 'exitCode' in parsed ? parsed.exitCode : null,
    error: 'error' in parsed ? parsed.error : null,
  };
}

/**
 * Port-forward over WebSocket: send payloads[i] on port i's data channel, wait until `expect(i, received)` holds
 * for every port (the channels cannot be half-closed), close. Returns what each port's data/error channel carried,
 * without the 2-byte port prefix, and the prefixes seen.
 */
export async function wsPortForward(
  url: string,
  payloads: Buffer[],
  expect: (i: number, received: Buffer) => boolean,
  opts: { protocols?: string[]; timeoutMs?: number } = {},
): Promise<{ data: Buffer[]; errors: string[]; prefixes: number[][] }> {
  const early: [Buffer, boolean][] = [];
  let onMessage = (raw: Buffer, isBinary: boolean) => void early.push([raw, isBinary]);
  const ws = await wsConnect(url, opts.protocols ?? [REMOTECOMMAND_V4], (_ws, raw, isBinary) => onMessage(raw, isBinary));
  const base64 = ws.protocol === 'v4.base64.channel.k8s.io';
  const n = payloads.length;
  const data = Array.from({ length: n }, () => [] as Buffer[]);
  const errors = Array.from({ length: n }, () => [] as Buffer[]);
  const prefixes = Array.from({ length: 2 * n }, () => [] as number[]);
  const seen = new Set<number>();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`wsPortForward: no complete answer within ${opts.timeoutMs ?? 10_000} ms`));
    }, opts.timeoutMs ?? 10_000);
    const done = () => Array.from({ length: n }, (_, i) => i).every((i) => expect(i, Buffer.concat(data[i]!)) || errors[i]!.length > 0);
    onMessage = (raw: Buffer, isBinary: boolean) => {
      const m = decodeChannelMessage(isBinary ? raw : raw.toString('latin1'), base64);
      if (!m) return;
      let bytes = m.data;
      if (!seen.has(m.channel)) {
        // The first two bytes of each channel are its port.
        seen.add(m.channel);
        prefixes[m.channel] = [...bytes.subarray(0, 2)];
        bytes = bytes.subarray(2);
      }
      const i = Math.floor(m.channel / 2);
      if (bytes.length) (m.channel % 2 === 0 ? data : errors)[i]?.push(bytes);
      if (done()) ws.close(1000);
    };
    for (const [raw, isBinary] of early.splice(0)) onMessage(raw, isBinary);
    for (const [i, payload] of payloads.entries()) ws.send(encodeChannelMessage(2 * i, payload, base64), { binary: !base64 });
    ws.once('close', () => {
      clearTimeout(timer);
      resolve({ data: data.map((d) => Buffer.concat(d)), errors: errors.map((e) => Buffer.concat(e).toString('utf8')), prefixes });
    });
  });
}

// ---------------------------------------------------------------- a local backend

export interface LocalBackend extends StreamingBackend {
  /** Every exec/attach request seen (with the resize events it received). */
  calls: { kind: 'exec' | 'attach'; containerId: string; cmd: string[]; tty: boolean; resizes: TerminalSize[] }[];
  aborted: number;
}

/**
 * exec: spawn cmd locally (cmd[0] with the rest as arguments), pipes as the request says, exit code (128+N for a
 * signal); attach: copy stdin to stdout until stdin ends; portForward: TCP to 127.0.0.1:port. A containerId of
 * "missing" makes exec and attach reject (the runtime's "container not found").
 */
export function localBackend(): LocalBackend {
  const backend: LocalBackend = {
    calls: [],
    aborted: 0,
    exec(req: BackendExecRequest) {
      if (req.containerId === 'missing') return Promise.reject(new Error('container "missing" not found'));
      const call = { kind: 'exec' as const, containerId: req.containerId, cmd: req.cmd, tty: req.tty, resizes: [] as TerminalSize[] };
      backend.calls.push(call);
      req.resize.on('resize', (size: TerminalSize) => call.resizes.push(size));
      return new Promise((resolve, reject) => {
        const child = spawn(req.cmd[0]!, req.cmd.slice(1), { stdio: [req.stdin ? 'pipe' : 'ignore', req.stdout ? 'pipe' : 'ignore', req.stderr ? 'pipe' : 'ignore'] });
        child.on('error', reject);
        if (req.stdin && child.stdin) {
          child.stdin.on('error', () => {});
          req.stdin.pipe(child.stdin);
        }
        if (req.stdout && child.stdout) child.stdout.pipe(req.stdout, { end: false });
        if (req.stderr && child.stderr) child.stderr.pipe(req.stderr, { end: false });
        const onAbort = () => {
          backend.aborted++;
          child.kill('SIGKILL');
        };
        req.signal.addEventListener('abort', onAbort, { once: true });
        child.on('close', (code, signal) => {
          req.signal.removeEventListener('abort', onAbort);
          resolve({ exitCode: code ?? 128 + (signal ? constants.signals[signal] : 0) });
        });
      });
    },
    attach(req: BackendAttachRequest) {
      if (req.containerId === 'missing') return Promise.reject(new Error('container "missing" not found'));
      const call = { kind: 'attach' as const, containerId: req.containerId, cmd: [], tty: req.tty, resizes: [] as TerminalSize[] };
      backend.calls.push(call);
      req.resize.on('resize', (size: TerminalSize) => call.resizes.push(size));
      return new Promise((resolve) => {
        if (!req.stdin) return resolve();
        req.stdin.on('data', (c: Buffer) => req.stdout?.write(c));
        req.stdin.on('end', () => resolve());
        req.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    },
    portForward(req: BackendPortForwardRequest) {
      return new Promise((resolve, reject) => {
        const sock = net.connect(req.port, '127.0.0.1');
        sock.once('error', reject);
        sock.once('connect', () => {
          req.stream.pipe(sock);
          sock.pipe(req.stream);
        });
        req.signal.addEventListener('abort', () => sock.destroy(), { once: true });
        sock.once('close', () => resolve());
      });
    },
  };
  return backend;
}

/** A TCP echo server on 127.0.0.1 (half-close aware: ends its side when the client ends). */
export async function startEchoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    sock.pipe(sock);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port on 127.0.0.1 where nothing listens (bound then released). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

