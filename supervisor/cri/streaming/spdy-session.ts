// A SPDY/3.1 session over one socket (after the HTTP upgrade): streams as node Duplexes, flow control, PING,
// GOAWAY. Used by the streaming server (server side) and by our test clients (client side).
//
// Flow control. SPDY/3.1 windows (per stream and per session, 64 KiB initially) are enforced on what we send once
// the peer shows that it speaks them (it sent SETTINGS or WINDOW_UPDATE). The Go implementation kubectl, crictl
// and kubelet's proxy use (moby/spdystream) never sends either and never reads them: it relies on TCP alone, and a
// sender that waited for its WINDOW_UPDATE would stall after 64 KiB. What we receive is credited back (WINDOW_UPDATE)
// as the consumer reads it; a peer that overruns our window while the consumer is slow gets the socket paused when
// it does not do flow control (TCP pushes back) and FLOW_CONTROL_ERROR when it does.
//
// Errors never escape as 'error' events: streams handed to a backend end (readable side) and swallow writes
// (writable side) when reset or when the session dies; the session emits 'close' once.
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import type { Logger } from '../../log';
import {
  DEFAULT_WINDOW,
  FLAG_FIN,
  GOAWAY_STATUS,
  MAX_WINDOW,
  RST_STATUS,
  SETTING,
  type SpdyFrame,
  SpdyFrameReader,
  SpdyFrameWriter,
  type SpdyHeaders,
  SpdyProtocolError,
} from './spdy-frames';

export const SPDY_LIMITS = {
  /** Largest DATA payload we send. */
  dataFrameBytes: 32 * 1024,
  /** Largest frame we accept (kubelet's Go peers send ≤ 32 KiB DATA frames). */
  maxFrameBytes: 1024 * 1024,
  /** Streams open at once per session (exec needs 5; a port-forward 2 per forwarded connection). */
  maxStreams: 256,
  /** After our GOAWAY and end: how long the peer may keep its side open. */
  closeGraceMs: 5000,
} as const;

export interface SpdySessionOptions {
  /** Server side: accepts odd (client-initiated) stream ids and opens even ones. */
  server: boolean;
  log: Logger;
  /** Client side: announce SETTINGS (our window) at the start, which also tells the peer we do flow control. */
  announceSettings?: boolean;
  maxStreams?: number;
}

type Pending = { data: Buffer; cb: (err?: Error | null) => void } | { fin: true; cb: (err?: Error | null) => void };

export class SpdyStream extends Duplex {
  /** The SYN_STREAM headers (incoming streams) or the SYN_REPLY headers (ours, once replied). */
  headers: SpdyHeaders;
  /** Resolves with the peer's SYN_REPLY headers (streams we opened); rejects when reset first. */
  readonly replied: Promise<SpdyHeaders>;
  /** RST status when reset by either side, else null. */
  resetStatus: number | null = null;
  sendWindow: number;
  recvWindow = DEFAULT_WINDOW;
  private uncredited = 0;
  private stalled = false;
  private queue: Pending[] = [];
  private localFin = false;
  private remoteFin = false;
  private done = false;
  private resolveReply!: (h: SpdyHeaders) => void;
  private rejectReply!: (e: Error) => void;

  constructor(
    private readonly session: SpdySession,
    readonly id: number,
    headers: SpdyHeaders,
    sendWindow: number,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 32 * 1024 });
    this.headers = headers;
    this.sendWindow = sendWindow;
    this.replied = new Promise<SpdyHeaders>((resolve, reject) => {
      this.resolveReply = resolve;
      this.rejectReply = reject;
    });
    this.replied.catch(() => {});
    this.on('error', () => {}); // never thrown at a backend: see the header comment
  }

  /** Accept an incoming stream (SYN_REPLY). */
  reply(headers: SpdyHeaders = {}, fin = false): void {
    if (this.done) return;
    this.session.send({ type: 'syn_reply', streamId: this.id, flags: fin ? FLAG_FIN : 0, headers });
    if (fin) this.localFin = true;
  }

  /** Abort the stream (RST_STREAM): the readable side ends, pending writes are dropped. */
  reset(status: number = RST_STATUS.CANCEL): void {
    if (this.done) return;
    this.session.send({ type: 'rst_stream', streamId: this.id, status });
    this.terminate(status);
  }

  get writableClosed(): boolean {
    return this.localFin || this.done;
  }

  // ---- called by the session ----

  /** Peer data for this stream (the session pauses reading when the consumer is slow: see flow control). */
  onData(data: Buffer, fin: boolean): void {
    if (this.done) return;
    if (this.remoteFin) {
      this.reset(RST_STATUS.STREAM_ALREADY_CLOSED);
      return;
    }
    if (data.length > 0) {
      this.recvWindow -= data.length;
      if (this.recvWindow < 0 && this.session.peerDoesFlowControl) {
        this.reset(RST_STATUS.FLOW_CONTROL_ERROR);
        return;
      }
      this.uncredited += data.length;
      if (this.push(data)) this.credit();
      else {
        this.stalled = true;
        // Beyond our window: the peer does not do flow control; only TCP can hold it back.
        if (this.recvWindow < 0) this.session.pauseFor(this);
      }
    }
    if (fin) this.onRemoteFin();
  }

  onRemoteFin(): void {
    if (this.remoteFin || this.done) return;
    this.remoteFin = true;
    this.push(null);
    this.maybeDone();
  }

  onReply(headers: SpdyHeaders, fin: boolean): void {
    this.headers = headers;
    this.resolveReply(headers);
    if (fin) this.onRemoteFin();
  }

  onWindowUpdate(delta: number): void {
    this.sendWindow = Math.min(MAX_WINDOW, this.sendWindow + delta);
    this.flush();
  }

  /** The stream is over (reset by either side or the session died). */
  terminate(status: number | null): void {
    if (this.done) return;
    this.done = true;
    this.resetStatus = status;
    this.rejectReply(new Error(`SPDY stream ${this.id} reset (status ${status ?? 'session closed'})`));
    const queue = this.queue;
    this.queue = [];
    for (const p of queue) p.cb();
    if (!this.remoteFin) {
      this.remoteFin = true;
      this.push(null);
    }
    this.session.forget(this);
    this.emit('reset', status);
  }

  /** Send what the windows and the socket allow. */
  flush(): void {
    while (this.queue.length > 0 && !this.done) {
      if (this.session.congested) {
        this.session.waitDrain(this);
        return;
      }
      const head = this.queue[0]!;
      if ('fin' in head) {
        this.queue.shift();
        this.localFin = true;
        this.session.send({ type: 'data', streamId: this.id, flags: FLAG_FIN, data: Buffer.alloc(0) });
        head.cb();
        this.maybeDone();
        continue;
      }
      let allowed: number = SPDY_LIMITS.dataFrameBytes;
      if (this.session.enforceSendWindows) allowed = Math.min(allowed, this.sendWindow, this.session.sendWindow);
      if (allowed <= 0) return; // a WINDOW_UPDATE calls flush again
      const part = head.data.subarray(0, allowed);
      this.session.send({ type: 'data', streamId: this.id, flags: 0, data: part });
      this.sendWindow -= part.length;
      this.session.sendWindow -= part.length;
      if (part.length === head.data.length) {
        this.queue.shift();
        head.cb();
      } else head.data = head.data.subarray(part.length);
    }
  }

  private maybeDone(): void {
    if (this.localFin && this.remoteFin && !this.done) {
      this.done = true;
      this.resetStatus = null;
      this.session.forget(this);
    }
  }

  /** Consumed bytes go back to the peer as WINDOW_UPDATE, batched (a quarter window) so small writes stay cheap. */
  private credit(): void {
    if (this.uncredited < DEFAULT_WINDOW / 4 || this.done) return;
    const n = this.uncredited;
    this.uncredited = 0;
    this.recvWindow += n;
    this.session.credit(this, n);
  }

  override _read(): void {
    if (this.stalled) {
      this.stalled = false;
      this.session.resumeFor(this);
    }
    this.credit();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.done || this.localFin) return cb(); // the peer is gone: drop (the backend learns through its signal)
    this.queue.push({ data: chunk, cb });
    this.flush();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.done || this.localFin) return cb();
    this.queue.push({ fin: true, cb });
    this.flush();
  }

  override _destroy(_err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.done) this.reset(RST_STATUS.CANCEL);
    cb(null);
  }
}

export class SpdySession extends EventEmitter {
  readonly streams = new Map<number, SpdyStream>();
  peerDoesFlowControl = false;
  sendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private sessionUncredited = 0;
  private readonly reader = new SpdyFrameReader({ maxFrameBytes: SPDY_LIMITS.maxFrameBytes });
  private readonly writer = new SpdyFrameWriter();
  private nextId: number;
  private lastRemoteId = 0;
  private nextPingId: number;
  private readonly pings = new Map<number, () => void>();
  private readonly pausedBy = new Set<SpdyStream>();
  private readonly drainWaiters = new Set<SpdyStream>();
  private goneAway = false;
  closed = false;
  private readonly maxStreams: number;

  constructor(
    private readonly socket: Duplex,
    private readonly opts: SpdySessionOptions,
  ) {
    super();
    this.nextId = opts.server ? 2 : 1;
    this.nextPingId = opts.server ? 2 : 1;
    this.maxStreams = opts.maxStreams ?? SPDY_LIMITS.maxStreams;
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', (err) => {
      opts.log.debug('spdy: socket error', { err: err.message });
      this.teardown();
    });
    socket.on('close', () => this.teardown());
    socket.on('end', () => this.teardown());
    if (opts.announceSettings) {
      this.send({ type: 'settings', flags: 0, entries: [{ id: SETTING.INITIAL_WINDOW_SIZE, flags: 0, value: DEFAULT_WINDOW }] });
    }
  }

  /** A client announcing SETTINGS honours windows from the start; otherwise once the peer showed it does. */
  get enforceSendWindows(): boolean {
    return this.opts.announceSettings === true || this.peerDoesFlowControl;
  }

  get congested(): boolean {
    return this.socket.writableNeedDrain;
  }

  /** Open a stream (client side, or server push): SYN_STREAM with these headers. */
  openStream(headers: SpdyHeaders, opts: { fin?: boolean } = {}): SpdyStream {
    if (this.closed || this.goneAway) throw new Error('SPDY session is closed: open a new connection');
    const id = this.nextId;
    this.nextId += 2;
    const stream = new SpdyStream(this, id, headers, this.peerInitialWindow);
    this.streams.set(id, stream);
    this.send({ type: 'syn_stream', streamId: id, associatedId: 0, priority: 0, flags: opts.fin ? FLAG_FIN : 0, headers });
    return stream;
  }

  /** Round trip of a PING. */
  ping(): Promise<void> {
    const id = this.nextPingId;
    this.nextPingId += 2;
    return new Promise((resolve) => {
      this.pings.set(id, resolve);
      this.send({ type: 'ping', id });
    });
  }

  /** Graceful end: GOAWAY(OK), then close our side of the socket once written. */
  end(): void {
    if (this.closed) return;
    if (!this.goneAway) {
      this.goneAway = true;
      this.send({ type: 'goaway', lastGoodStreamId: this.lastRemoteId, status: GOAWAY_STATUS.OK });
    }
    this.socket.end();
    // Once everything is flushed the peer has a few seconds to close its side too; then the socket goes.
    this.socket.once('finish', () => setTimeout(() => this.destroy(), SPDY_LIMITS.closeGraceMs).unref());
  }

  /** Abrupt end: every stream terminates, the socket is destroyed. */
  destroy(): void {
    this.teardown();
    this.socket.destroy();
  }

  send(frame: SpdyFrame): void {
    if (this.closed) return;
    let bytes: Buffer;
    try {
      bytes = this.writer.encode(frame);
    } catch (err) {
      this.opts.log.warn('spdy: encoding a frame failed: closing the session', { err: (err as Error).message, frame: frame.type });
      this.destroy();
      return;
    }
    this.socket.write(bytes);
  }

  // ---- stream helpers ----

  forget(stream: SpdyStream): void {
    this.streams.delete(stream.id);
    this.drainWaiters.delete(stream);
    this.resumeFor(stream);
  }

  credit(stream: SpdyStream, n: number): void {
    this.send({ type: 'window_update', streamId: stream.id, delta: n });
    this.sessionUncredited += n;
    if (this.sessionUncredited >= DEFAULT_WINDOW / 2) {
      this.send({ type: 'window_update', streamId: 0, delta: this.sessionUncredited });
      this.sessionUncredited = 0;
    }
  }

  pauseFor(stream: SpdyStream): void {
    this.pausedBy.add(stream);
    this.socket.pause();
  }

  resumeFor(stream: SpdyStream): void {
    if (this.pausedBy.delete(stream) && this.pausedBy.size === 0 && !this.closed) this.socket.resume();
  }

  waitDrain(stream: SpdyStream): void {
    this.drainWaiters.add(stream);
  }

  private onDrain(): void {
    const waiting = [...this.drainWaiters];
    this.drainWaiters.clear();
    for (const s of waiting) s.flush();
  }

  private onBytes(chunk: Buffer): void {
    if (this.closed) return;
    let frames: SpdyFrame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.protocolError(err);
      return;
    }
    for (const frame of frames) {
      if (this.closed) return;
      try {
        this.onFrame(frame);
      } catch (err) {
        this.protocolError(err);
        return;
      }
    }
  }

  private protocolError(err: unknown): void {
    const status = err instanceof SpdyProtocolError ? err.goaway : GOAWAY_STATUS.INTERNAL_ERROR;
    this.opts.log.warn('spdy: protocol error: closing the session', { err: (err as Error).message });
    if (!this.goneAway) {
      this.goneAway = true;
      this.send({ type: 'goaway', lastGoodStreamId: this.lastRemoteId, status });
    }
    this.socket.end();
    this.teardown();
  }

  private onFrame(frame: SpdyFrame): void {
    switch (frame.type) {
      case 'data': {
        const stream = this.streams.get(frame.streamId);
        if (!stream) {
          // A stream that ended or was reset: its late data is dropped (but still counts against the session).
          this.sessionUncredited += frame.data.length;
          if (frame.streamId > this.lastRemoteId && frame.streamId % 2 === (this.opts.server ? 1 : 0)) this.send({ type: 'rst_stream', streamId: frame.streamId, status: RST_STATUS.INVALID_STREAM });
          return;
        }
        stream.onData(frame.data, (frame.flags & FLAG_FIN) !== 0);
        return;
      }
      case 'syn_stream':
        return this.onSynStream(frame);
      case 'syn_reply': {
        const stream = this.streams.get(frame.streamId);
        if (stream) stream.onReply(frame.headers, (frame.flags & FLAG_FIN) !== 0);
        return;
      }
      case 'headers': {
        const stream = this.streams.get(frame.streamId);
        if (stream && (frame.flags & FLAG_FIN) !== 0) stream.onRemoteFin();
        return;
      }
      case 'rst_stream': {
        this.streams.get(frame.streamId)?.terminate(frame.status);
        return;
      }
      case 'settings':
        this.peerDoesFlowControl = true;
        for (const e of frame.entries) {
          if (e.id === SETTING.INITIAL_WINDOW_SIZE) {
            if (e.value > MAX_WINDOW) throw new SpdyProtocolError(`SPDY SETTINGS: initial window ${e.value} exceeds 2^31-1`);
            const delta = e.value - this.peerInitialWindow;
            this.peerInitialWindow = e.value;
            for (const s of this.streams.values()) s.onWindowUpdate(delta);
          }
        }
        return;
      case 'ping':
        if ((frame.id % 2 === 1) === this.opts.server) this.send(frame); // the peer's ping: echo it
        else {
          this.pings.get(frame.id)?.();
          this.pings.delete(frame.id);
        }
        return;
      case 'goaway':
        this.goneAway = true;
        this.emit('goaway', frame.status);
        return;
      case 'window_update':
        this.peerDoesFlowControl = true;
        if (frame.delta === 0) throw new SpdyProtocolError('SPDY WINDOW_UPDATE with a delta of 0');
        if (frame.streamId === 0) {
          this.sendWindow = Math.min(MAX_WINDOW, this.sendWindow + frame.delta);
          for (const s of this.streams.values()) s.flush();
        } else this.streams.get(frame.streamId)?.onWindowUpdate(frame.delta);
        return;
      case 'unknown':
        return; // ignored, as the spec says
    }
  }

  private onSynStream(frame: Extract<SpdyFrame, { type: 'syn_stream' }>): void {
    const id = frame.streamId;
    const fromPeer = this.opts.server ? id % 2 === 1 : id % 2 === 0;
    if (id === 0 || !fromPeer || id <= this.lastRemoteId) {
      throw new SpdyProtocolError(`SPDY SYN_STREAM with stream id ${id}: ids from the peer must be ${this.opts.server ? 'odd' : 'even'} and increasing (last ${this.lastRemoteId})`);
    }
    this.lastRemoteId = id;
    if (this.goneAway || this.streams.size >= this.maxStreams) {
      this.send({ type: 'rst_stream', streamId: id, status: RST_STATUS.REFUSED_STREAM });
      return;
    }
    const stream = new SpdyStream(this, id, frame.headers, this.peerInitialWindow);
    this.streams.set(id, stream);
    if ((frame.flags & FLAG_FIN) !== 0) stream.onRemoteFin();
    this.emit('stream', stream);
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.streams.values()]) s.terminate(null);
    this.streams.clear();
    for (const resolve of this.pings.values()) resolve();
    this.pings.clear();
    this.emit('close');
  }
}
