// SPDY/3.1 framing (the draft-mbelshe SPDY/3 and 3.1 definitions): frame layouts, name/value header blocks, and the
// zlib header compression seeded with the SPDY/3 dictionary. Pure apart from zlib: no sockets, no timers.
//
// Why by hand: kubelet's streaming protocol (kubectl exec, crictl exec/attach/port-forward) runs over SPDY/3.1 and
// the npm `spdy` package is broken on Node >= 15 (DESIGN.md §2b).
//
// Header compression. Each direction of a session is ONE zlib stream: every header block continues it and ends on
// a sync flush, so the compressor and decompressor are stateful and live as long as the session, and a frame must
// be encoded or decoded synchronously, in order. node:zlib cannot do that: its streams are asynchronous and its
// synchronous step closes the stream after one call. pako (zlib in plain JS) can: push(block, Z_SYNC_FLUSH).
import pako from 'pako';

export const SPDY_VERSION = 3;

/** Control frame types (SPDY/3: 5 NOOP was dropped; CREDENTIAL 10 is not supported). */
export const FRAME_TYPE = {
  SYN_STREAM: 1,
  SYN_REPLY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  HEADERS: 8,
  WINDOW_UPDATE: 9,
} as const;

export const FLAG_FIN = 0x01;
/** SYN_STREAM only: the sender will not receive on this stream. */
export const FLAG_UNIDIRECTIONAL = 0x02;
/** SETTINGS frame flag. */
export const FLAG_SETTINGS_CLEAR_SETTINGS = 0x01;

export const RST_STATUS = {
  PROTOCOL_ERROR: 1,
  INVALID_STREAM: 2,
  REFUSED_STREAM: 3,
  UNSUPPORTED_VERSION: 4,
  CANCEL: 5,
  INTERNAL_ERROR: 6,
  FLOW_CONTROL_ERROR: 7,
  STREAM_IN_USE: 8,
  STREAM_ALREADY_CLOSED: 9,
  FRAME_TOO_LARGE: 11,
} as const;

export const GOAWAY_STATUS = { OK: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;

export const SETTING = {
  UPLOAD_BANDWIDTH: 1,
  DOWNLOAD_BANDWIDTH: 2,
  ROUND_TRIP_TIME: 3,
  MAX_CONCURRENT_STREAMS: 4,
  CURRENT_CWND: 5,
  DOWNLOAD_RETRANS_RATE: 6,
  INITIAL_WINDOW_SIZE: 7,
  CLIENT_CERTIFICATE_VECTOR_SIZE: 8,
} as const;

/** Initial stream and session flow-control window (SPDY/3.1). */
export const DEFAULT_WINDOW = 64 * 1024;
/** Largest window a WINDOW_UPDATE may produce (2^31 - 1). */
export const MAX_WINDOW = 0x7fffffff;
/** 24-bit frame length field. */
export const MAX_FRAME_LENGTH = 0xffffff;

/**
 * The SPDY/3 header compression dictionary (1423 bytes): a run of length-prefixed (32-bit big-endian) words, then
 * a run of bare text, with no trailing NUL.
 */
const DICTIONARY_WORDS = [
  'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding', 'accept-language',
  'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection', 'content-base', 'content-encoding',
  'content-language', 'content-length', 'content-location', 'content-md5', 'content-range', 'content-type', 'date',
  'etag', 'expect', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'pragma', 'proxy-authenticate',
  'proxy-authorization', 'range', 'referer', 'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'user-agent', 'vary', 'via', 'warning', 'www-authenticate', 'method', 'get', 'status', '200 OK', 'version',
  'HTTP/1.1', 'url', 'public', 'set-cookie', 'keep-alive', 'origin',
];
const DICTIONARY_TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

function buildDictionary(): Buffer {
  const parts: Buffer[] = [];
  for (const word of DICTIONARY_WORDS) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(word.length);
    parts.push(len, Buffer.from(word, 'latin1'));
  }
  parts.push(Buffer.from(DICTIONARY_TAIL, 'latin1'));
  return Buffer.concat(parts);
}

export const SPDY_DICTIONARY: Buffer = buildDictionary();

/** Header names are lowercase on the wire; a name with several values carries them NUL-separated. */
export type SpdyHeaders = Record<string, string>;

export type SpdyFrame =
  | { type: 'data'; streamId: number; flags: number; data: Buffer }
  | { type: 'syn_stream'; streamId: number; associatedId: number; priority: number; flags: number; headers: SpdyHeaders }
  | { type: 'syn_reply'; streamId: number; flags: number; headers: SpdyHeaders }
  | { type: 'rst_stream'; streamId: number; status: number }
  | { type: 'settings'; flags: number; entries: { id: number; flags: number; value: number }[] }
  | { type: 'ping'; id: number }
  | { type: 'goaway'; lastGoodStreamId: number; status: number }
  | { type: 'headers'; streamId: number; flags: number; headers: SpdyHeaders }
  | { type: 'window_update'; streamId: number; delta: number }
  /** A control frame type this implementation does not know: the spec says to ignore it. */
  | { type: 'unknown'; frameType: number; flags: number; payload: Buffer };

/** A framing or compression error: the session is unusable (GOAWAY with `goaway`, then close). */
export class SpdyProtocolError extends Error {
  constructor(
    message: string,
    readonly goaway: number = GOAWAY_STATUS.PROTOCOL_ERROR,
  ) {
    super(message);
    this.name = 'SpdyProtocolError';
  }
}

/** One zlib stream (deflate or inflate) fed block by block, each block ending on a sync flush. */
class ZlibStream {
  private out: Uint8Array[] = [];
  private outBytes = 0;

  constructor(
    private readonly engine: pako.Deflate | pako.Inflate,
    private readonly what: string,
    private readonly maxOutputBytes: number,
  ) {
    engine.onData = (chunk) => {
      const bytes = chunk as Uint8Array;
      this.outBytes += bytes.length;
      if (this.outBytes <= this.maxOutputBytes) this.out.push(bytes);
    };
  }

  step(block: Buffer): Buffer {
    this.out = [];
    this.outBytes = 0;
    const ok = this.engine.push(block, pako.constants.Z_SYNC_FLUSH);
    const { err, msg } = this.engine as unknown as { err: number; msg: string };
    if (!ok || err) throw new SpdyProtocolError(`SPDY header block: ${this.what} failed: ${msg || `zlib error ${err}`}`);
    if (this.outBytes > this.maxOutputBytes) throw new SpdyProtocolError(`SPDY header block: ${this.outBytes} bytes after ${this.what}, more than the limit of ${this.maxOutputBytes}`);
    return Buffer.concat(this.out);
  }
}

/** The name/value block before compression: count, then (length, name, length, value) pairs, 32-bit lengths. */
export function encodeHeaderBlock(headers: SpdyHeaders): Buffer {
  const entries = Object.entries(headers);
  const parts: Buffer[] = [u32(entries.length)];
  for (const [name, value] of entries) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(value, 'utf8');
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

/** Parse an uncompressed name/value block. Names are lowercased; a repeated name's values are NUL-joined. */
export function decodeHeaderBlock(block: Buffer): SpdyHeaders {
  const headers: SpdyHeaders = Object.create(null) as SpdyHeaders;
  let at = 0;
  const need = (n: number) => {
    if (at + n > block.length) throw new SpdyProtocolError(`SPDY header block: truncated at byte ${at} (wanted ${n} more of ${block.length})`);
  };
  need(4);
  const count = block.readUInt32BE(at);
  at += 4;
  for (let i = 0; i < count; i++) {
    need(4);
    const nameLen = block.readUInt32BE(at);
    at += 4;
    need(nameLen);
    if (nameLen === 0) throw new SpdyProtocolError('SPDY header block: empty header name');
    const name = block.toString('utf8', at, at + nameLen).toLowerCase();
    at += nameLen;
    need(4);
    const valueLen = block.readUInt32BE(at);
    at += 4;
    need(valueLen);
    const value = block.toString('utf8', at, at + valueLen);
    at += valueLen;
    headers[name] = name in headers ? `${headers[name]}\0${value}` : value;
  }
  if (at !== block.length) throw new SpdyProtocolError(`SPDY header block: ${block.length - at} bytes after the last header`);
  return headers;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  if (payload.length > MAX_FRAME_LENGTH) throw new SpdyProtocolError(`SPDY frame type ${type}: ${payload.length} bytes do not fit a frame`, GOAWAY_STATUS.INTERNAL_ERROR);
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([head, payload]);
}

function streamIdField(id: number): Buffer {
  return u32(id & 0x7fffffff);
}

/** Encodes frames for one direction of a session (owns that direction's header compressor). */
export class SpdyFrameWriter {
  private readonly deflate = new ZlibStream(new pako.Deflate({ dictionary: SPDY_DICTIONARY, level: 6, memLevel: 7 }), 'compression', MAX_FRAME_LENGTH);

  encode(frame: SpdyFrame): Buffer {
    switch (frame.type) {
      case 'data': {
        if (frame.data.length > MAX_FRAME_LENGTH) throw new SpdyProtocolError(`SPDY DATA: ${frame.data.length} bytes do not fit a frame`, GOAWAY_STATUS.INTERNAL_ERROR);
        const head = Buffer.alloc(8);
        head.writeUInt32BE(frame.streamId & 0x7fffffff, 0);
        head.writeUInt32BE(((frame.flags & 0xff) << 24) | frame.data.length, 4);
        return Buffer.concat([head, frame.data]);
      }
      case 'syn_stream': {
        const fixed = Buffer.alloc(10);
        fixed.writeUInt32BE(frame.streamId & 0x7fffffff, 0);
        fixed.writeUInt32BE(frame.associatedId & 0x7fffffff, 4);
        fixed.writeUInt8((frame.priority & 0x7) << 5, 8);
        fixed.writeUInt8(0, 9); // credential slot: unused
        return controlFrame(FRAME_TYPE.SYN_STREAM, frame.flags, Buffer.concat([fixed, this.compress(frame.headers)]));
      }
      case 'syn_reply':
        return controlFrame(FRAME_TYPE.SYN_REPLY, frame.flags, Buffer.concat([streamIdField(frame.streamId), this.compress(frame.headers)]));
      case 'headers':
        return controlFrame(FRAME_TYPE.HEADERS, frame.flags, Buffer.concat([streamIdField(frame.streamId), this.compress(frame.headers)]));
      case 'rst_stream':
        return controlFrame(FRAME_TYPE.RST_STREAM, 0, Buffer.concat([streamIdField(frame.streamId), u32(frame.status)]));
      case 'settings': {
        const parts = [u32(frame.entries.length)];
        for (const e of frame.entries) {
          const b = Buffer.alloc(8);
          b.writeUInt32BE((((e.flags & 0xff) << 24) | (e.id & 0xffffff)) >>> 0, 0);
          b.writeUInt32BE(e.value >>> 0, 4);
          parts.push(b);
        }
        return controlFrame(FRAME_TYPE.SETTINGS, frame.flags, Buffer.concat(parts));
      }
      case 'ping':
        return controlFrame(FRAME_TYPE.PING, 0, u32(frame.id));
      case 'goaway':
        return controlFrame(FRAME_TYPE.GOAWAY, 0, Buffer.concat([streamIdField(frame.lastGoodStreamId), u32(frame.status)]));
      case 'window_update':
        return controlFrame(FRAME_TYPE.WINDOW_UPDATE, 0, Buffer.concat([streamIdField(frame.streamId), u32(frame.delta & 0x7fffffff)]));
      case 'unknown':
        return controlFrame(frame.frameType, frame.flags, frame.payload);
    }
  }

  private compress(headers: SpdyHeaders): Buffer {
    return this.deflate.step(encodeHeaderBlock(headers));
  }
}

export interface SpdyFrameReaderOptions {
  /** Largest frame payload accepted (default 1 MiB; the field allows 16 MiB). */
  maxFrameBytes?: number;
  /** Largest decompressed header block (default 64 KiB). */
  maxHeaderBytes?: number;
}

/** Decodes the byte stream of one direction of a session into frames (owns its header decompressor). */
export class SpdyFrameReader {
  private readonly inflate: ZlibStream;
  private readonly maxFrameBytes: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(opts: SpdyFrameReaderOptions = {}) {
    this.maxFrameBytes = opts.maxFrameBytes ?? 1024 * 1024;
    this.inflate = new ZlibStream(new pako.Inflate({ dictionary: SPDY_DICTIONARY }), 'decompression', opts.maxHeaderBytes ?? 64 * 1024);
  }

  /** Bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.pendingBytes;
  }

  /** Feed bytes; returns every frame they complete. Throws SpdyProtocolError (the session must go away). */
  push(chunk: Buffer): SpdyFrame[] {
    if (chunk.length > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    const frames: SpdyFrame[] = [];
    for (;;) {
      if (this.pendingBytes < 8) break;
      const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [buf];
      const length = buf.readUInt32BE(4) & 0xffffff;
      if (length > this.maxFrameBytes) throw new SpdyProtocolError(`SPDY frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`);
      if (buf.length < 8 + length) break;
      const frame = buf.subarray(0, 8 + length);
      const rest = buf.subarray(8 + length);
      this.pending = rest.length ? [rest] : [];
      this.pendingBytes = rest.length;
      frames.push(this.decode(frame));
    }
    return frames;
  }

  private decode(frame: Buffer): SpdyFrame {
    const flags = frame.readUInt8(4);
    const payload = frame.subarray(8);
    if ((frame.readUInt8(0) & 0x80) === 0) {
      return { type: 'data', streamId: frame.readUInt32BE(0) & 0x7fffffff, flags, data: Buffer.from(payload) };
    }
    const version = frame.readUInt16BE(0) & 0x7fff;
    const type = frame.readUInt16BE(2);
    if (version !== SPDY_VERSION) throw new SpdyProtocolError(`SPDY control frame of version ${version}: only version 3 (SPDY/3.1) is spoken`);
    const need = (n: number, what: string) => {
      if (payload.length < n) throw new SpdyProtocolError(`SPDY ${what}: ${payload.length} bytes, at least ${n} expected`);
    };
    switch (type) {
      case FRAME_TYPE.SYN_STREAM:
        need(10, 'SYN_STREAM');
        return {
          type: 'syn_stream',
          streamId: payload.readUInt32BE(0) & 0x7fffffff,
          associatedId: payload.readUInt32BE(4) & 0x7fffffff,
          priority: payload.readUInt8(8) >> 5,
          flags,
          headers: this.decompress(payload.subarray(10)),
        };
      case FRAME_TYPE.SYN_REPLY:
        need(4, 'SYN_REPLY');
        return { type: 'syn_reply', streamId: payload.readUInt32BE(0) & 0x7fffffff, flags, headers: this.decompress(payload.subarray(4)) };
      case FRAME_TYPE.HEADERS:
        need(4, 'HEADERS');
        return { type: 'headers', streamId: payload.readUInt32BE(0) & 0x7fffffff, flags, headers: this.decompress(payload.subarray(4)) };
      case FRAME_TYPE.RST_STREAM:
        need(8, 'RST_STREAM');
        return { type: 'rst_stream', streamId: payload.readUInt32BE(0) & 0x7fffffff, status: payload.readUInt32BE(4) };
      case FRAME_TYPE.SETTINGS: {
        need(4, 'SETTINGS');
        const count = payload.readUInt32BE(0);
        if (payload.length !== 4 + count * 8) throw new SpdyProtocolError(`SPDY SETTINGS: ${count} entries need ${4 + count * 8} bytes, got ${payload.length}`);
        const entries = [];
        for (let i = 0; i < count; i++) {
          const word = payload.readUInt32BE(4 + i * 8);
          entries.push({ flags: word >>> 24, id: word & 0xffffff, value: payload.readUInt32BE(8 + i * 8) });
        }
        return { type: 'settings', flags, entries };
      }
      case FRAME_TYPE.PING:
        need(4, 'PING');
        return { type: 'ping', id: payload.readUInt32BE(0) };
      case FRAME_TYPE.GOAWAY:
        need(4, 'GOAWAY');
        return { type: 'goaway', lastGoodStreamId: payload.readUInt32BE(0) & 0x7fffffff, status: payload.length >= 8 ? payload.readUInt32BE(4) : 0 };
      case FRAME_TYPE.WINDOW_UPDATE:
        need(8, 'WINDOW_UPDATE');
        return { type: 'window_update', streamId: payload.readUInt32BE(0) & 0x7fffffff, delta: payload.readUInt32BE(4) & 0x7fffffff };
      default:
        return { type: 'unknown', frameType: type, flags, payload: Buffer.from(payload) };
    }
  }

  private decompress(block: Buffer): SpdyHeaders {
    return decodeHeaderBlock(this.inflate.step(block));
  }
}
