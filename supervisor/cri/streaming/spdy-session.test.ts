import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../log';
import { DEFAULT_WINDOW, GOAWAY_STATUS, SpdyFrameReader } from './spdy-frames';
import { SpdySession, type SpdyStream } from './spdy-session';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const serverSide = await accepted;
  server.close();
  cleanups.push(() => {
    client.destroy();
    serverSide.destroy();
  });
  return [client, serverSide];
}

async function sessions(opts: { announceSettings: boolean }) {
  const [c, s] = await socketPair();
  const client = new SpdySession(c, { server: false, log: silentLogger, announceSettings: opts.announceSettings });
  const server = new SpdySession(s, { server: true, log: silentLogger });
  const incoming = new Promise<SpdyStream>((resolve) => server.once('stream', resolve));
  return { client, server, serverSocket: s, incoming };
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const readAll = (s: SpdyStream) =>
  new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
  });

describe('SPDY session', () => {
  it('opens a stream, replies, carries data both ways and FINs', async () => {
    const { client, incoming } = await sessions({ announceSettings: true });
    const out = client.openStream({ streamtype: 'stdin' });
    const inc = await incoming;
    expect(inc.headers).toEqual({ streamtype: 'stdin' });
    inc.reply({ ok: '1' });
    expect(await out.replied).toEqual({ ok: '1' });
    const got = readAll(inc);
    out.end('to server');
    expect((await got).toString()).toBe('to server');
    const back = readAll(out);
    inc.end('to client');
    expect((await back).toString()).toBe('to client');
  });

  it('a conforming peer that does not read stops the sender (window exhausted, bounded buffer), then gets the rest', async () => {
    const { client, incoming } = await sessions({ announceSettings: true });
    const out = client.openStream({ streamtype: 'stdout' });
    const inc = await incoming;
    inc.reply();
    await out.replied;
    out.pause(); // the client's consumer is not reading
    const payload = Buffer.alloc(300 * 1024, 'x');
    inc.end(payload);
    await waitFor(() => inc.sendWindow === 0);
    await client.ping(); // a round trip: whatever the server sent before has arrived
    await client.ping();
    // Credit is given while the reader's buffer is under its mark (64 KiB): at most that plus one window waits.
    expect(out.readableLength).toBeLessThanOrEqual(2 * DEFAULT_WINDOW);
    expect(out.readableLength).toBeLessThan(payload.length);
    expect(inc.sendWindow).toBe(0);
    const all = readAll(out);
    out.resume();
    expect((await all).length).toBe(payload.length);
  });

  it('a peer without flow control (like spdystream) is not held to windows; overrunning ours pauses the socket, nothing is lost', async () => {
    const { client, server, serverSocket, incoming } = await sessions({ announceSettings: false });
    const out = client.openStream({ streamtype: 'stdin' });
    const inc = await incoming;
    inc.reply();
    await out.replied;
    expect(server.peerDoesFlowControl).toBe(false);
    inc.pause();
    const payload = Buffer.alloc(512 * 1024, 'y');
    out.end(payload);
    await waitFor(() => serverSocket.isPaused());
    expect(inc.resetStatus).toBeNull();
    const all = readAll(inc);
    inc.resume();
    expect((await all).equals(payload)).toBe(true);
  });

  it('answers the peer PING and resolves its own', async () => {
    const { client, server } = await sessions({ announceSettings: true });
    await client.ping();
    await server.ping();
  });

  it('garbage on the wire: GOAWAY(PROTOCOL_ERROR), close, every stream ended, no exception', async () => {
    const [c, s] = await socketPair();
    const server = new SpdySession(s, { server: true, log: silentLogger });
    const closed = new Promise<void>((resolve) => server.once('close', resolve));
    const reader = new SpdyFrameReader();
    const frames: unknown[] = [];
    c.on('data', (b: Buffer) => frames.push(...reader.push(b)));
    c.write(Buffer.from([0x80, 0x02, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])); // a SPDY/2 PING
    await closed;
    await waitFor(() => frames.length > 0);
    expect(frames[0]).toEqual({ type: 'goaway', lastGoodStreamId: 0, status: GOAWAY_STATUS.PROTOCOL_ERROR });
  });

  it('a stream id that goes backwards is a protocol error', async () => {
    const { client, server } = await sessions({ announceSettings: true });
    const closed = new Promise<void>((resolve) => server.once('close', resolve));
    client.openStream({ a: '1' });
    (client as unknown as { nextId: number }).nextId = 1; // reuse id 1
    client.openStream({ a: '2' });
    await closed;
  });

  it('the peer vanishing ends every stream: readable sides end, writes are dropped', async () => {
    const { client, server, incoming } = await sessions({ announceSettings: true });
    client.openStream({ streamtype: 'stdout' });
    const inc = await incoming;
    inc.reply();
    const ended = new Promise<void>((resolve) => inc.on('end', resolve));
    inc.resume();
    client.destroy();
    await ended;
    await new Promise<void>((resolve, reject) => inc.write('into the void', (err) => (err ? reject(err) : resolve())));
    expect(server.closed).toBe(true);
  });
});
