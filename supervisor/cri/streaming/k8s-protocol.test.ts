import { describe, expect, it } from 'vitest';
import {
  decodeChannelMessage,
  encodeChannelMessage,
  errorStreamBytes,
  exitCodeStatus,
  headerList,
  internalErrorStatus,
  negotiateProtocol,
  parsePort,
  portPrefix,
  readErrorStream,
  ResizeParser,
  SPDY_EXEC_PROTOCOLS,
  spdyCommandProtocol,
  successStatus,
  wsCommandProtocol,
} from './k8s-protocol';
import { TokenCache } from './tokens';

describe('protocol negotiation', () => {
  it('takes the first protocol of the client that the server speaks', () => {
    expect(negotiateProtocol(['v5.channel.k8s.io', 'v4.channel.k8s.io'], SPDY_EXEC_PROTOCOLS)).toBe('v5.channel.k8s.io');
    expect(negotiateProtocol(['v9.channel.k8s.io', 'v3.channel.k8s.io'], SPDY_EXEC_PROTOCOLS)).toBe('v3.channel.k8s.io');
    expect(negotiateProtocol(['v9.channel.k8s.io'], SPDY_EXEC_PROTOCOLS)).toBeNull();
  });

  it('reads repeated and comma-joined headers', () => {
    expect(headerList(['v4.channel.k8s.io', 'v3.channel.k8s.io, v2.channel.k8s.io'])).toEqual(['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io']);
    expect(headerList(undefined)).toEqual([]);
  });

  it('knows what each version implies', () => {
    expect(spdyCommandProtocol('v5.channel.k8s.io')).toMatchObject({ jsonStatus: true, resize: true });
    expect(spdyCommandProtocol('v3.channel.k8s.io')).toMatchObject({ jsonStatus: false, resize: true });
    expect(spdyCommandProtocol('v2.channel.k8s.io')).toMatchObject({ jsonStatus: false, resize: false });
    expect(wsCommandProtocol('v5.channel.k8s.io')).toMatchObject({ jsonStatus: true, closeChannel: true, base64: false });
    expect(wsCommandProtocol('v4.base64.channel.k8s.io')).toMatchObject({ jsonStatus: true, closeChannel: false, base64: true });
  });
});

describe('the error stream', () => {
  it('carries metav1.Status JSON in v4: Success, or Failure with the ExitCode cause', () => {
    const v4 = { jsonStatus: true };
    expect(JSON.parse(errorStreamBytes(successStatus(), v4)!.toString())).toEqual({ metadata: {}, status: 'Success' });
    const failure = JSON.parse(errorStreamBytes(exitCodeStatus(42), v4)!.toString());
    expect(failure).toEqual({
      metadata: {},
      status: 'Failure',
      message: 'command terminated with non-zero exit code: exit status 42',
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: '42' }] },
    });
    expect(readErrorStream(Buffer.from(JSON.stringify(failure)), v4)).toEqual({ exitCode: 42 });
    expect(readErrorStream(errorStreamBytes(internalErrorStatus('gone'), v4)!, v4)).toEqual({ error: 'Internal error occurred: error executing command in container: gone' });
  });

  it('carries only failure text before v4', () => {
    const v2 = { jsonStatus: false };
    expect(errorStreamBytes(successStatus(), v2)).toBeNull();
    expect(errorStreamBytes(exitCodeStatus(1), v2)!.toString()).toMatch(/non-zero exit code/);
  });
});

describe('resize messages', () => {
  it('split a stream of JSON sizes however it is cut', () => {
    const text = '{"Width":80,"Height":24}\n{"Width":120,"Height":40}\n';
    for (const cut of [1, 5, text.length]) {
      const p = new ResizeParser();
      const sizes = [];
      for (let i = 0; i < text.length; i += cut) sizes.push(...p.push(text.slice(i, i + cut)));
      expect(sizes).toEqual([
        { width: 80, height: 24 },
        { width: 120, height: 40 },
      ]);
    }
  });

  it('skip invalid sizes and bound an endless object', () => {
    const p = new ResizeParser(64);
    expect(p.push('{"Width":-1,"Height":2}{"Width":"x"}{"Width":1,"Height":2}')).toEqual([{ width: 1, height: 2 }]);
    expect(p.push(`{"Width":1,"junk":"${'x'.repeat(200)}"}{"Width":3,"Height":4}`)).toEqual([{ width: 3, height: 4 }]);
    expect(p.push('{"Width":5,"Height":6,"s":"}{"}')).toEqual([{ width: 5, height: 6 }]);
  });
});

describe('ports and channels', () => {
  it('parse a port header: 1..65535 only', () => {
    expect(parsePort('8080')).toBe(8080);
    expect(parsePort('0')).toMatch(/not a port/);
    expect(parsePort('65536')).toMatch(/not a port/);
    expect(parsePort('80; rm')).toMatch(/not a port/);
    expect(parsePort(undefined)).toMatch(/required/);
  });

  it('frame channel messages in binary and base64, and the little-endian port prefix', () => {
    expect(encodeChannelMessage(1, Buffer.from('hi'), false)).toEqual(Buffer.from([1, 0x68, 0x69]));
    expect(encodeChannelMessage(2, Buffer.from('hi'), true)).toBe('2aGk=');
    expect(decodeChannelMessage(Buffer.from([3, 1, 2]), false)).toEqual({ channel: 3, data: Buffer.from([1, 2]) });
    expect(decodeChannelMessage('0aGk=', true)).toEqual({ channel: 0, data: Buffer.from('hi') });
    expect(decodeChannelMessage(Buffer.alloc(0), false)).toBeNull();
    expect([...portPrefix(8080)]).toEqual([0x90, 0x1f]);
  });
});

describe('tokens', () => {
  it('are single use, expire, and are bounded', () => {
    let now = 1000;
    const cache = new TokenCache<string>({ ttlMs: 100, maxPending: 2, now: () => now });
    const a = cache.insert('a');
    expect(cache.consume(a)).toBe('a');
    expect(cache.consume(a)).toBeUndefined();
    const b = cache.insert('b');
    now += 100;
    expect(cache.consume(b)).toBeUndefined();
    cache.insert('c');
    cache.insert('d');
    expect(() => cache.insert('e')).toThrow(/RESOURCE|waiting for their client/);
    now += 100;
    expect(cache.size).toBe(0);
    expect(cache.insert('f')).toMatch(/^[A-Za-z0-9_-]{24}$/);
  });
});
