// The guest relay's start and stop, run on the host through a local shell (the guest runs the same commands through
// its debug shell): it relays, a stop frees its port for the next start, and a relay that cannot bind says why.
import { execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeLoopbackPort } from '../../supervisor/vms';
import { startGuestRelay, stopGuestRelay, StreamingRelay } from './guest-relay';

const run = promisify(execFile);
const shell = {
  async ok(command: string): Promise<string> {
    return (await run('/bin/sh', ['-c', command], { timeout: 10_000 })).stdout;
  },
};
const opts = { node: process.execPath, address: '127.0.0.1', timeoutMs: 10_000 };

/** Connect to the relay, send `text`, read its echo, close. */
function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const c = net.connect(port, '127.0.0.1', () => c.write(text));
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      got += d;
      if (got.length >= text.length) {
        c.destroy();
        resolve(got);
      }
    });
    c.on('end', () => reject(new Error(`the relay closed after "${got}"`)));
    c.on('error', reject);
  });
}

describe('guest relay', () => {
  let echo: net.Server;
  let target = '';
  beforeAll(async () => {
    echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    target = `127.0.0.1:${(echo.address() as net.AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => echo.close(() => resolve())));

  it('relays to its target; after a stop, a new relay binds the same port at once and serves', async () => {
    const port = await freeLoopbackPort();
    const first = await startGuestRelay(shell, port, target, opts);
    expect(await roundTrip(port, 'one')).toBe('one');
    await stopGuestRelay(shell, first, port, 10_000);
    const second = await startGuestRelay(shell, port, target, opts);
    expect(second).not.toBe(first);
    expect(await roundTrip(port, 'two')).toBe('two');
    await stopGuestRelay(shell, second, port, 10_000);
    await expect(roundTrip(port, 'three')).rejects.toThrow(/ECONNREFUSED/);
  });

  it('a relay whose port is taken fails with what it printed, not a listener that is someone else’s', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      await expect(startGuestRelay(shell, port, target, opts)).rejects.toThrow(new RegExp(`port ${port} .*failed before listening: relay: port ${port}: .*EADDRINUSE`));
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });

  it('a streaming relay follows the server to its new port and is used once the server answers through it', async () => {
    const seen: string[] = [];
    const servers: http.Server[] = [];
    const streaming = async () => {
      const server = http.createServer((req, res) => {
        seen.push(`${(server.address() as net.AddressInfo).port} ${req.url}`);
        res.writeHead(404).end('not found\n');
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    };
    const port = await freeLoopbackPort();
    const relay = new StreamingRelay(async () => shell, port, port, opts);
    try {
      const first = await streaming();
      expect(await relay.hostUrl(`${first}/exec/a?x=1`)).toBe(`http://127.0.0.1:${port}/exec/a?x=1`);
      expect(await relay.hostUrl(`${first}/attach/b`)).toBe(`http://127.0.0.1:${port}/attach/b`);
      // As after an auraed restart: another port; the relay moves there and is probed again.
      const second = await streaming();
      expect(await relay.hostUrl(`${second}/exec/c`)).toBe(`http://127.0.0.1:${port}/exec/c`);
      const probe = (base: string) => `${new URL(base).port} /relay-probe`;
      expect(seen).toEqual([probe(first), probe(second)]);
    } finally {
      await relay.close();
      for (const s of servers) await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  });
});
