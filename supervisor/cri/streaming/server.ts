// The CRI streaming server: CRI Exec/Attach/PortForward answer a URL here (GET/POST /exec|attach|portforward/<token>,
// single-use tokens that expire), and the client (kubectl through kubelet's proxy, crictl) upgrades it to
//   - SPDY/3.1 with X-Stream-Protocol-Version v5/v4/v3/v2.channel.k8s.io (exec, attach) or portforward.k8s.io, or
//   - WebSocket with Sec-WebSocket-Protocol v5/v4.channel.k8s.io (+ base64 variants) or, for port-forward,
//     v4.channel.k8s.io / portforward.k8s.io.
// The work is the backend's (StreamingBackend: crun exec, TCP to the pod); this module only speaks the protocols:
// which streams exist, what travels where, the final metav1.Status with the exit code, clean ends.
//
// Every failure ends the one connection (a refused upgrade gets an HTTP status with a message); nothing here
// throws into auraed. Memory per connection is bounded by the stream buffers (high-water marks), SPDY's windows
// (or TCP back-pressure for peers without flow control) and the frame size limit.
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Duplex, Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { type WebSocket, WebSocketServer } from 'ws';
import type { AttachRequest, ExecRequest, PortForwardRequest } from '../../gen/runtime/v1/api';
import type { Logger } from '../../log';
import {
  type CommandProtocol,
  decodeChannelMessage,
  encodeChannelMessage,
  errorStreamBytes,
  EXEC_STREAM_TYPES,
  type ExecStreamType,
  exitCodeStatus,
  HEADER_ACCEPTED_PROTOCOL_VERSIONS,
  HEADER_PORT,
  HEADER_PROTOCOL_VERSION,
  HEADER_REQUEST_ID,
  HEADER_STREAM_TYPE,
  headerList,
  internalErrorStatus,
  type K8sStatus,
  negotiateProtocol,
  parsePort,
  PORTFORWARD_PROTOCOL,
  portPrefix,
  ResizeParser,
  SPDY_EXEC_PROTOCOLS,
  spdyCommandProtocol,
  successStatus,
  type TerminalSize,
  validateAttachRequest,
  validateExecRequest,
  validatePortForwardRequest,
  WS_CHANNEL,
  WS_EXEC_PROTOCOLS,
  WS_PORTFORWARD_PROTOCOLS,
  wsCommandProtocol,
} from './k8s-protocol';
import { RST_STATUS } from './spdy-frames';
import { SpdySession, type SpdyStream } from './spdy-session';
import { TokenCache } from './tokens';

/** What the backend is asked to run. Streams never emit 'error'; when the client goes away `signal` aborts. */
export interface BackendExecRequest {
  containerId: string;
  cmd: string[];
  tty: boolean;
  /** Ends when the client closes stdin (or goes away). */
  stdin: Readable | null;
  /** The backend may end() them; the server ends them after the exec resolved anyway. */
  stdout: Writable | null;
  /** null with tty (a terminal has one output). */
  stderr: Writable | null;
  /** Emits 'resize' with {width, height} (TerminalSize) when the client's terminal changes. */
  resize: EventEmitter;
  signal: AbortSignal;
}

export interface BackendAttachRequest {
  containerId: string;
  tty: boolean;
  stdin: Readable | null;
  stdout: Writable | null;
  stderr: Writable | null;
  resize: EventEmitter;
  signal: AbortSignal;
}

export interface BackendPortForwardRequest {
  podSandboxId: string;
  port: number;
  /** Reading: the client's bytes (ends when the client half-closes); writing: to the client (end() to close). */
  stream: Duplex;
  signal: AbortSignal;
}

export interface StreamingBackend {
  /** Run cmd in the container; resolve with its exit code once its output was written. Reject: it could not run. */
  exec(req: BackendExecRequest): Promise<{ exitCode: number }>;
  /** Attach to the container's main process; resolve when it ends or the client leaves. */
  attach(req: BackendAttachRequest): Promise<void>;
  /** Connect to port in the sandbox's network and copy both ways; resolve when both directions ended. */
  portForward(req: BackendPortForwardRequest): Promise<void>;
}

export interface StreamingServerOptions {
  /** Listen address (default 127.0.0.1: kubelet on the same node proxies to it). */
  address?: string;
  /** 0 = any free port. */
  port?: number;
  backend: StreamingBackend;
  log: Logger;
  /** How long a URL stays valid (default 60 s). */
  tokenTtlMs?: number;
  /** How long a SPDY client has to open its streams after the upgrade (default 30 s, as kubelet). */
  streamCreationTimeoutMs?: number;
  /** Base of the URLs handed out (default http://<address>:<port>): set it when listening on a wildcard address. */
  baseUrl?: string;
  /** A connection with no traffic for this long is closed (default 4 h, kubelet's streaming idle timeout). */
  idleTimeoutMs?: number;
}

export interface StreamingServer {
  /** http://address:port */
  readonly url: string;
  getExec(req: ExecRequest): { url: string };
  getAttach(req: AttachRequest): { url: string };
  getPortForward(req: PortForwardRequest): { url: string };
  /** Stop listening and end every live stream (their backends see their signal abort). */
  close(): Promise<void>;
}

type Cached = { kind: 'exec'; req: ExecRequest } | { kind: 'attach'; req: AttachRequest } | { kind: 'portforward'; req: PortForwardRequest };

const PATH = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]{1,128})$/;

export async function startStreamingServer(opts: StreamingServerOptions): Promise<StreamingServer> {
  const log = opts.log.child({ subsystem: 'cri-streaming' });
  const tokens = new TokenCache<Cached>({ ttlMs: opts.tokenTtlMs });
  const live = new Set<() => void>();
  const ctx: Ctx = { backend: opts.backend, log, live, streamCreationTimeoutMs: opts.streamCreationTimeoutMs ?? 30_000, idleTimeoutMs: opts.idleTimeoutMs ?? 4 * 3600_000 };
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024, perMessageDeflate: false, handleProtocols: (_offered, req) => wsChosen.get(req) ?? false });
  const wsChosen = new WeakMap<http.IncomingMessage, string>();
  wss.on('error', (err) => log.warn('websocket server error', { err: err.message }));

  const lookup = (url: string | undefined): { cached: Cached; query: URLSearchParams } | { status: number; message: string } => {
    const parsed = new URL(url ?? '/', 'http://streaming');
    const m = PATH.exec(parsed.pathname);
    if (!m) return { status: 404, message: 'not found: streaming URLs are /exec/<token>, /attach/<token>, /portforward/<token>' };
    const cached = tokens.consume(m[2]!);
    if (!cached || cached.kind !== m[1]) return { status: 404, message: `${m[1]} token not found: it is used already, expired (${Math.round((opts.tokenTtlMs ?? 60_000) / 1000)} s) or never existed: ask the runtime again` };
    return { cached, query: parsed.searchParams };
  };

  const server = http.createServer((req, res) => {
    const found = lookup(req.url);
    const [status, message] = 'status' in found ? [found.status, found.message] : [400, 'upgrade required: connect with Upgrade: SPDY/3.1 or websocket'];
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(`${message}\n`);
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  // Upgraded sockets stay counted by the server: close() destroys whatever is still open.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', (err) => log.debug('streaming socket error', { err: err.message }));
    try {
      const found = lookup(req.url);
      if ('status' in found) return refuse(socket, found.status, found.message);
      socket.setTimeout(ctx.idleTimeoutMs, () => {
        log.info('streaming connection idle: closing it', { idleMs: ctx.idleTimeoutMs });
        socket.destroy();
      });
      const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
      if (upgrade === 'websocket') return upgradeWebSocket(ctx, wss, wsChosen, req, socket, head, found.cached, found.query);
      if (upgrade.split(',').map((s) => s.trim()).includes('spdy/3.1')) return upgradeSpdy(ctx, req, socket, head, found.cached);
      return refuse(socket, 400, `unable to upgrade: "${upgrade}" is not spoken here: use SPDY/3.1 or websocket`);
    } catch (err) {
      log.warn('streaming upgrade failed', { err: (err as Error).message });
      refuse(socket, 500, `streaming upgrade failed: ${(err as Error).message}`);
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.address ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.warn('streaming server error', { err: err.message }));
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const base = (opts.baseUrl ?? `http://${host}:${addr.port}`).replace(/\/$/, '');
  log.info('streaming server listening', { url: base });

  const issue = (c: Cached) => ({ url: `${base}/${c.kind}/${tokens.insert(c)}` });
  return {
    url: base,
    getExec: (req) => issue({ kind: 'exec', req: validateExecRequest(req) }),
    getAttach: (req) => issue({ kind: 'attach', req: validateAttachRequest(req) }),
    getPortForward: (req) => issue({ kind: 'portforward', req: validatePortForwardRequest(req) }),
    close: async () => {
      for (const end of [...live]) end();
      wss.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Ctx {
  backend: StreamingBackend;
  log: Logger;
  live: Set<() => void>;
  streamCreationTimeoutMs: number;
  idleTimeoutMs: number;
}

function refuse(socket: Socket, status: number, message: string, headers: Record<string, string> = {}): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${message}\n`;
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extra}\r\n${body}`,
  );
}

/** Register a live connection: close() ends it; returns the unregister function. */
function track(ctx: Ctx, end: () => void): () => void {
  ctx.live.add(end);
  return () => ctx.live.delete(end);
}

async function endWritable(w: Writable | null | undefined): Promise<void> {
  if (!w) return;
  if (!w.writableEnded) w.end();
  await finished(w, { readable: false }).catch(() => {});
}

function commandStatus(result: PromiseSettledResult<{ exitCode: number } | void>, log: Logger): K8sStatus {
  if (result.status === 'rejected') {
    const message = result.reason instanceof Error ? result.reason.message : String(result.reason);
    log.info('streaming command failed', { err: message });
    return internalErrorStatus(message);
  }
  const code = result.value?.exitCode ?? 0;
  return code === 0 ? successStatus() : exitCodeStatus(code);
}

function runCommand(ctx: Ctx, cached: Extract<Cached, { kind: 'exec' | 'attach' }>, io: { stdin: Readable | null; stdout: Writable | null; stderr: Writable | null; resize: EventEmitter; signal: AbortSignal }): Promise<{ exitCode: number } | void> {
  // A backend that throws synchronously is a rejected run, not a crash.
  return Promise.resolve().then((): Promise<{ exitCode: number } | void> => {
    if (cached.kind === 'exec') {
      const r = cached.req;
      ctx.log.info('exec', { container: r.containerId, program: r.cmd[0], tty: r.tty, stdin: r.stdin });
      return ctx.backend.exec({ containerId: r.containerId, cmd: r.cmd, tty: r.tty, ...io });
    }
    const r = cached.req;
    ctx.log.info('attach', { container: r.containerId, tty: r.tty, stdin: r.stdin });
    return ctx.backend.attach({ containerId: r.containerId, tty: r.tty, ...io });
  });
}

// ---------------------------------------------------------------- SPDY

function upgradeSpdy(ctx: Ctx, req: http.IncomingMessage, socket: Socket, head: Buffer, cached: Cached): void {
  const connection = headerList(req.headers.connection).map((v) => v.toLowerCase());
  if (!connection.includes('upgrade')) return refuse(socket, 400, 'unable to upgrade: missing upgrade headers in request (Connection: Upgrade)');
  const offered = headerList(req.headers[HEADER_PROTOCOL_VERSION]);
  const server: readonly string[] = cached.kind === 'portforward' ? [PORTFORWARD_PROTOCOL] : SPDY_EXEC_PROTOCOLS;
  // No offer at all: the oldest protocol (kubelet does the same).
  const protocol = offered.length === 0 ? (cached.kind === 'portforward' ? PORTFORWARD_PROTOCOL : '') : negotiateProtocol(offered, server);
  if (protocol === null) {
    return refuse(socket, 403, `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(' ')}], server supports [${server.join(' ')}]`, {
      'X-Accepted-Stream-Protocol-Versions': server.join(', '),
    });
  }
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n${protocol ? `X-Stream-Protocol-Version: ${protocol}\r\n` : ''}\r\n`);
  if (head.length > 0) socket.unshift(head);
  socket.setNoDelay(true);
  const session = new SpdySession(socket, { server: true, log: ctx.log });
  const untrack = track(ctx, () => session.destroy());
  session.on('close', untrack);
  if (cached.kind === 'portforward') serveSpdyPortForward(ctx, session, cached.req);
  else serveSpdyCommand(ctx, session, cached, spdyCommandProtocol(protocol));
}

function serveSpdyCommand(ctx: Ctx, session: SpdySession, cached: Extract<Cached, { kind: 'exec' | 'attach' }>, protocol: CommandProtocol): void {
  const r = cached.req;
  const expected: ExecStreamType[] = ['error'];
  if (r.stdin) expected.push('stdin');
  if (r.stdout) expected.push('stdout');
  if (r.stderr && !r.tty) expected.push('stderr');
  if (r.tty && protocol.resize) expected.push('resize');
  const streams: Partial<Record<ExecStreamType, SpdyStream>> = {};
  let started = false;
  const timer = setTimeout(() => {
    ctx.log.info('streaming: client did not open its streams in time: closing', { got: Object.keys(streams), expected, timeoutMs: ctx.streamCreationTimeoutMs });
    session.destroy();
  }, ctx.streamCreationTimeoutMs);
  timer.unref();
  session.on('close', () => clearTimeout(timer));

  session.on('stream', (stream: SpdyStream) => {
    const type = stream.headers[HEADER_STREAM_TYPE] as ExecStreamType | undefined;
    if (!type || !EXEC_STREAM_TYPES.includes(type) || streams[type] || started) {
      ctx.log.debug('streaming: unexpected stream refused', { streamType: type ?? null });
      stream.reset(RST_STATUS.REFUSED_STREAM);
      return;
    }
    stream.reply();
    streams[type] = stream;
    if (expected.every((t) => streams[t])) {
      started = true;
      clearTimeout(timer);
      void run();
    }
  });

  const run = async () => {
    const ac = new AbortController();
    session.on('close', () => ac.abort());
    const resize = new EventEmitter();
    if (streams.resize) pipeResize(streams.resize, resize, ctx.log);
    const result = await Promise.allSettled([
      runCommand(ctx, cached, {
        stdin: r.stdin ? (streams.stdin ?? null) : null,
        stdout: r.stdout ? (streams.stdout ?? null) : null,
        stderr: r.stderr && !r.tty ? (streams.stderr ?? null) : null,
        resize,
        signal: ac.signal,
      }),
    ]);
    if (session.closed) return;
    await Promise.all([endWritable(streams.stdout), endWritable(streams.stderr)]);
    const bytes = errorStreamBytes(commandStatus(result[0]!, ctx.log), protocol);
    const error = streams.error!;
    if (bytes) error.write(bytes);
    await endWritable(error);
    session.end();
  };
}

function pipeResize(stream: Readable, resize: EventEmitter, log: Logger): void {
  const parser = new ResizeParser();
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    for (const size of parser.push(text)) emitResize(resize, size, log);
  });
}

/** A backend's resize listener that throws must not end the session (or reach the socket's event loop). */
function emitResize(resize: EventEmitter, size: TerminalSize, log: Logger): void {
  try {
    resize.emit('resize', size);
  } catch (err) {
    log.warn('streaming: the backend failed to resize the terminal', { err: (err as Error).message, ...size });
  }
}

function serveSpdyPortForward(ctx: Ctx, session: SpdySession, req: PortForwardRequest): void {
  type Pair = { data?: SpdyStream; error?: SpdyStream; timer: NodeJS.Timeout };
  const pairs = new Map<string, Pair>();
  const ac = new AbortController();
  session.on('close', () => {
    ac.abort();
    for (const p of pairs.values()) clearTimeout(p.timer);
    pairs.clear();
  });

  session.on('stream', (stream: SpdyStream) => {
    const type = stream.headers[HEADER_STREAM_TYPE];
    const port = parsePort(stream.headers[HEADER_PORT]);
    if ((type !== 'data' && type !== 'error') || typeof port === 'string') {
      ctx.log.debug('port-forward: stream refused', { streamType: type ?? null, port: stream.headers[HEADER_PORT] ?? null });
      stream.reset(RST_STATUS.REFUSED_STREAM);
      return;
    }
    stream.reply();
    // Clients before requestID paired streams by id: error N, data N+2.
    const requestId = stream.headers[HEADER_REQUEST_ID] || String(type === 'error' ? stream.id : stream.id - 2);
    let pair = pairs.get(requestId);
    if (!pair) {
      const timer = setTimeout(() => {
        pairs.delete(requestId);
        pair?.error?.end(`(request ${requestId}) timed out waiting for the data and error streams`);
        pair?.data?.reset(RST_STATUS.CANCEL);
      }, ctx.streamCreationTimeoutMs);
      timer.unref();
      pair = { timer };
      pairs.set(requestId, pair);
    }
    if (pair[type]) {
      pair.error?.write(`error processing stream for request ${requestId}: ${type} stream already assigned`);
      stream.reset(RST_STATUS.PROTOCOL_ERROR);
      return;
    }
    pair[type] = stream;
    if (pair.data && pair.error) {
      clearTimeout(pair.timer);
      pairs.delete(requestId);
      void forwardPort(ctx, req.podSandboxId, port, pair.data, pair.error, ac.signal);
    }
  });
}

/** One forwarded connection: the backend copies; a failure is reported as text on the error stream. */
async function forwardPort(ctx: Ctx, podSandboxId: string, port: number, data: Duplex, error: Writable, signal: AbortSignal): Promise<void> {
  ctx.log.debug('port-forward', { sandbox: podSandboxId, port });
  try {
    await Promise.resolve().then(() => ctx.backend.portForward({ podSandboxId, port, stream: data, signal }));
  } catch (err) {
    const message = `error forwarding port ${port} to pod ${podSandboxId}: ${(err as Error).message ?? String(err)}`;
    ctx.log.info('port-forward failed', { sandbox: podSandboxId, port, err: (err as Error).message });
    if (!error.writableEnded) error.write(message);
  }
  await Promise.all([endWritable(data), endWritable(error)]);
}

// ---------------------------------------------------------------- WebSocket

function upgradeWebSocket(
  ctx: Ctx,
  wss: WebSocketServer,
  chosen: WeakMap<http.IncomingMessage, string>,
  req: http.IncomingMessage,
  socket: Socket,
  head: Buffer,
  cached: Cached,
  query: URLSearchParams,
): void {
  const offered = headerList(req.headers['sec-websocket-protocol']);
  const server: readonly string[] = cached.kind === 'portforward' ? WS_PORTFORWARD_PROTOCOLS : WS_EXEC_PROTOCOLS;
  const protocol = offered.length === 0 ? '' : negotiateProtocol(offered, server);
  if (protocol === null) return refuse(socket, 400, `unable to upgrade: requested protocol(s) [${offered.join(' ')}] are not supported: use one of [${server.join(' ')}]`);
  let ports: number[] = [];
  if (cached.kind === 'portforward') {
    // Ports come with the CRI request; a WebSocket client may name them in the query instead (?port=80,443).
    ports = cached.req.port.length > 0 ? cached.req.port : [];
    if (ports.length === 0) {
      for (const v of query.getAll('port').flatMap((s) => s.split(','))) {
        const p = parsePort(v);
        if (typeof p === 'string') return refuse(socket, 400, `unable to upgrade: query ${p}`);
        ports.push(p);
      }
    }
    if (ports.length === 0) return refuse(socket, 400, 'unable to upgrade: no port to forward: name them in the PortForward request or as ?port=');
  }
  if (protocol) chosen.set(req, protocol);
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', (err) => ctx.log.debug('websocket error', { err: err.message }));
    const untrack = track(ctx, () => ws.terminate());
    ws.on('close', untrack);
    if (cached.kind === 'portforward') serveWsPortForward(ctx, ws, cached.req.podSandboxId, ports, protocol === 'v4.base64.channel.k8s.io');
    else serveWsCommand(ctx, ws, cached, wsCommandProtocol(protocol || 'channel.k8s.io'));
  });
}

/** A Writable whose chunks become messages on one channel; written when the socket took the previous one. */
function channelWriter(ws: WebSocket, channel: number, base64: boolean): Writable {
  const w = new Writable({
    highWaterMark: 32 * 1024,
    write(chunk: Buffer, _enc, cb) {
      if (ws.readyState !== ws.OPEN) return cb(); // the client is gone: drop (the backend's signal aborted)
      ws.send(encodeChannelMessage(channel, chunk, base64), { binary: !base64 }, () => cb());
    },
  });
  w.on('error', () => {});
  return w;
}

/** A Readable fed from messages; reading pauses the WebSocket while the consumer is behind. */
function channelReader(ws: WebSocket): Readable {
  const r = new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (ws.isPaused) ws.resume();
    },
  });
  r.on('error', () => {});
  return r;
}

function feed(ws: WebSocket, r: Readable, data: Buffer): void {
  if (r.readableEnded || r.destroyed) return;
  if (!r.push(data)) ws.pause();
}

function serveWsCommand(ctx: Ctx, ws: WebSocket, cached: Extract<Cached, { kind: 'exec' | 'attach' }>, protocol: CommandProtocol): void {
  const r = cached.req;
  const ac = new AbortController();
  const stdin = r.stdin ? channelReader(ws) : null;
  const stdout = r.stdout ? channelWriter(ws, WS_CHANNEL.stdout, protocol.base64) : null;
  const stderr = r.stderr && !r.tty ? channelWriter(ws, WS_CHANNEL.stderr, protocol.base64) : null;
  const resize = new EventEmitter();
  const parser = new ResizeParser();
  ws.on('message', (raw: Buffer, isBinary: boolean) => {
    const m = decodeChannelMessage(isBinary ? raw : raw.toString('latin1'), protocol.base64);
    if (!m) return;
    if (m.channel === WS_CHANNEL.stdin && stdin) feed(ws, stdin, m.data);
    else if (m.channel === WS_CHANNEL.resize) for (const size of parser.push(m.data.toString('utf8'))) emitResize(resize, size, ctx.log);
    else if (m.channel === WS_CHANNEL.close && protocol.closeChannel && m.data[0] === WS_CHANNEL.stdin) stdin?.push(null);
  });
  ws.on('close', () => {
    ac.abort();
    if (stdin && !stdin.readableEnded) stdin.push(null);
  });
  // The first (empty) message on the lowest writable channel tells the client the session is ready.
  const first = r.stdout ? WS_CHANNEL.stdout : r.stderr && !r.tty ? WS_CHANNEL.stderr : WS_CHANNEL.error;
  ws.send(encodeChannelMessage(first, Buffer.alloc(0), protocol.base64), { binary: !protocol.base64 });

  void (async () => {
    const result = await Promise.allSettled([runCommand(ctx, cached, { stdin, stdout, stderr, resize, signal: ac.signal })]);
    await Promise.all([endWritable(stdout), endWritable(stderr)]);
    if (ws.readyState !== ws.OPEN) return;
    const bytes = errorStreamBytes(commandStatus(result[0]!, ctx.log), protocol);
    if (bytes) ws.send(encodeChannelMessage(WS_CHANNEL.error, bytes, protocol.base64), { binary: !protocol.base64 });
    ws.close(1000);
  })();
}

function serveWsPortForward(ctx: Ctx, ws: WebSocket, podSandboxId: string, ports: number[], base64: boolean): void {
  const ac = new AbortController();
  const readers: Readable[] = [];
  const runs = ports.map((port, i) => {
    const dataChannel = 2 * i;
    const errorChannel = 2 * i + 1;
    const out = channelWriter(ws, dataChannel, base64);
    const errors = channelWriter(ws, errorChannel, base64);
    const input = channelReader(ws);
    readers.push(input);
    // The port, little-endian, opens both channels of the pair.
    out.write(portPrefix(port));
    errors.write(portPrefix(port));
    const stream = Duplex.from({ readable: input, writable: out });
    stream.on('error', () => {});
    return forwardPort(ctx, podSandboxId, port, stream, errors, ac.signal);
  });
  ws.on('message', (raw: Buffer, isBinary: boolean) => {
    const m = decodeChannelMessage(isBinary ? raw : raw.toString('latin1'), base64);
    if (!m || m.channel % 2 !== 0) return; // error channels are server → client only
    const input = readers[m.channel / 2];
    if (input) feed(ws, input, m.data);
  });
  ws.on('close', () => {
    ac.abort();
    for (const input of readers) if (!input.readableEnded) input.push(null);
  });
  void Promise.allSettled(runs).then(() => {
    if (ws.readyState === ws.OPEN) ws.close(1000);
  });
}
