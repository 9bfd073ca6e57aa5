import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  decodeHeaderBlock,
  encodeHeaderBlock,
  FLAG_FIN,
  FRAME_TYPE,
  RST_STATUS,
  SETTING,
  SPDY_DICTIONARY,
  type SpdyFrame,
  SpdyFrameReader,
  SpdyFrameWriter,
  SpdyProtocolError,
} from './spdy-frames';

const roundTrip = (frames: SpdyFrame[], chunk = 3): SpdyFrame[] => {
  const w = new SpdyFrameWriter();
  const r = new SpdyFrameReader();
  const bytes = Buffer.concat(frames.map((f) => w.encode(f)));
  const out: SpdyFrame[] = [];
  for (let i = 0; i < bytes.length; i += chunk) out.push(...r.push(bytes.subarray(i, i + chunk)));
  return out;
};

describe('SPDY/3 dictionary', () => {
  it('is the 1423 bytes of the spec (length and digest pinned)', () => {
    expect(SPDY_DICTIONARY.length).toBe(1423);
    expect(createHash('sha256').update(SPDY_DICTIONARY).digest('hex')).toBe('51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02');
    expect(SPDY_DICTIONARY.subarray(0, 11)).toEqual(Buffer.from('\0\0\0\x07options', 'latin1'));
    expect(SPDY_DICTIONARY.subarray(-6).toString()).toBe('enq=0.');
  });
});

describe('header blocks', () => {
  it('encode count, then length-prefixed lowercase names and values', () => {
    const block = encodeHeaderBlock({ streamType: 'error', port: '80' });
    expect(block.readUInt32BE(0)).toBe(2);
    expect(block.readUInt32BE(4)).toBe(10);
    expect(block.subarray(8, 18).toString()).toBe('streamtype');
    expect(decodeHeaderBlock(block)).toEqual({ streamtype: 'error', port: '80' });
  });

  it('refuses truncated blocks and trailing bytes', () => {
    const block = encodeHeaderBlock({ a: 'b' });
    expect(() => decodeHeaderBlock(block.subarray(0, block.length - 1))).toThrow(SpdyProtocolError);
    expect(() => decodeHeaderBlock(Buffer.concat([block, Buffer.of(0)]))).toThrow(/after the last header/);
  });
});

describe('frames', () => {
  it('round-trip every frame type, fed 3 bytes at a time', () => {
    const frames: SpdyFrame[] = [
      { type: 'syn_stream', streamId: 1, associatedId: 0, priority: 3, flags: 0, headers: { streamtype: 'error' } },
      { type: 'syn_stream', streamId: 3, associatedId: 0, priority: 0, flags: FLAG_FIN, headers: { streamtype: 'stdout' } },
      { type: 'syn_reply', streamId: 1, flags: 0, headers: {} },
      { type: 'headers', streamId: 1, flags: FLAG_FIN, headers: { x: 'y' } },
      { type: 'data', streamId: 3, flags: 0, data: Buffer.from('hello') },
      { type: 'data', streamId: 3, flags: FLAG_FIN, data: Buffer.alloc(0) },
      { type: 'rst_stream', streamId: 5, status: RST_STATUS.CANCEL },
      { type: 'settings', flags: 0, entries: [{ id: SETTING.INITIAL_WINDOW_SIZE, flags: 0, value: 1 << 20 }] },
      { type: 'ping', id: 7 },
      { type: 'goaway', lastGoodStreamId: 5, status: 0 },
      { type: 'window_update', streamId: 0, delta: 4096 },
    ];
    expect(roundTrip(frames)).toEqual(frames);
  });

  it('lay out a control frame as C bit, version 3, type, flags, 24-bit length', () => {
    const bytes = new SpdyFrameWriter().encode({ type: 'ping', id: 0x01020304 });
    expect([...bytes]).toEqual([0x80, 0x03, 0x00, FRAME_TYPE.PING, 0, 0, 0, 4, 1, 2, 3, 4]);
    const data = new SpdyFrameWriter().encode({ type: 'data', streamId: 5, flags: FLAG_FIN, data: Buffer.from('ab') });
    expect([...data]).toEqual([0, 0, 0, 5, FLAG_FIN, 0, 0, 2, 0x61, 0x62]);
  });

  it('share one compression context across header blocks (later blocks shrink)', () => {
    const w = new SpdyFrameWriter();
    const headers = { streamtype: 'stdout', port: '8080', requestid: '17' };
    const first = w.encode({ type: 'syn_stream', streamId: 1, associatedId: 0, priority: 0, flags: 0, headers });
    const second = w.encode({ type: 'syn_stream', streamId: 3, associatedId: 0, priority: 0, flags: 0, headers });
    expect(second.length).toBeLessThan(first.length);
    const r = new SpdyFrameReader();
    expect(r.push(Buffer.concat([first, second])).map((f) => (f as { headers: unknown }).headers)).toEqual([headers, headers]);
  });

  it('interoperate with zlib: a block compressed by node:zlib with the dictionary decodes, ours inflates', () => {
    const block = encodeHeaderBlock({ streamtype: 'stdin' });
    const compressed = zlib.deflateSync(block, { dictionary: SPDY_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    const payload = Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), compressed]);
    const head = Buffer.from([0x80, 3, 0, FRAME_TYPE.SYN_STREAM, 0, 0, 0, 0]);
    head.writeUInt32BE(payload.length, 4);
    expect(new SpdyFrameReader().push(Buffer.concat([head, payload]))).toEqual([
      { type: 'syn_stream', streamId: 1, associatedId: 0, priority: 0, flags: 0, headers: { streamtype: 'stdin' } },
    ]);
    const ours = new SpdyFrameWriter().encode({ type: 'syn_reply', streamId: 1, flags: 0, headers: { a: 'b' } });
    expect(ours[13]! & 0x20).toBe(0x20); // zlib FDICT: compressed with a preset dictionary
    const inflated = zlib.inflateSync(ours.subarray(12), { dictionary: SPDY_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    expect(decodeHeaderBlock(inflated)).toEqual({ a: 'b' });
  });

  it('pass unknown control frame types through as "unknown" (the spec says ignore them)', () => {
    const w = new SpdyFrameWriter();
    const bytes = w.encode({ type: 'unknown', frameType: 10, flags: 0, payload: Buffer.from([1, 2]) });
    expect(new SpdyFrameReader().push(bytes)).toEqual([{ type: 'unknown', frameType: 10, flags: 0, payload: Buffer.from([1, 2]) }]);
  });

  it('refuse another SPDY version, oversized frames, short frames and corrupt header blocks', () => {
    const v2 = Buffer.from([0x80, 0x02, 0, FRAME_TYPE.PING, 0, 0, 0, 4, 0, 0, 0, 1]);
    expect(() => new SpdyFrameReader().push(v2)).toThrow(/version 2/);
    const big = Buffer.from([0, 0, 0, 1, 0, 0x20, 0, 0]);
    expect(() => new SpdyFrameReader({ maxFrameBytes: 1024 }).push(big)).toThrow(/exceeds the limit/);
    const shortRst = Buffer.from([0x80, 3, 0, FRAME_TYPE.RST_STREAM, 0, 0, 0, 4, 0, 0, 0, 1]);
    expect(() => new SpdyFrameReader().push(shortRst)).toThrow(/RST_STREAM/);
    const junk = Buffer.from([0x80, 3, 0, FRAME_TYPE.SYN_REPLY, 0, 0, 0, 8, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    expect(() => new SpdyFrameReader().push(junk)).toThrow(SpdyProtocolError);
  });

  it('bound a decompressed header block', () => {
    const w = new SpdyFrameWriter();
    const bytes = w.encode({ type: 'syn_reply', streamId: 1, flags: 0, headers: { big: 'x'.repeat(10_000) } });
    expect(() => new SpdyFrameReader({ maxHeaderBytes: 1000 }).push(bytes)).toThrow(/limit of 1000/);
  });

  it('hold a partial frame until the rest arrives', () => {
    const bytes = new SpdyFrameWriter().encode({ type: 'data', streamId: 1, flags: 0, data: Buffer.alloc(100, 7) });
    const r = new SpdyFrameReader();
    expect(r.push(bytes.subarray(0, 50))).toEqual([]);
    expect(r.buffered).toBe(50);
    expect(r.push(bytes.subarray(50))).toHaveLength(1);
    expect(r.buffered).toBe(0);
  });
});
