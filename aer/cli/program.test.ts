import { describe, expect, it } from 'vitest';
import { type AuraeClient, AuraeApiError, ClientConfigError, type ConnectOptions } from '../sdk';
import { AER_VERSION } from '../version';
import { describeError } from './errors';
import { formatDuration } from './format';
import { runAer } from './program';

const info = { healthy: true, version: '0.1.0', nodeName: 'node-1', uptimeSeconds: 3725.5, kernelRelease: '6.1.0', pid: 42 };

/** A fake SDK client recording calls; `fail` makes every call reject with that error. */
function fakeClient(fail?: Error) {
  const calls: string[] = [];
  const act = async <T>(name: string, value: T): Promise<T> => {
    calls.push(name);
    if (fail) throw fail;
    return value;
  };
  const client = {
    config: { path: '/c.json', node: 'node-1', address: 'unix:///run/aurae/aurae.sock', version: 1, ca: '', cert: '', key: '' },
    health: {
      check: (service = '') => act(`check ${service}`, { status: service === 'down' ? 'NOT_SERVING' : 'SERVING' }),
      list: () => act('list', {}),
      watch: () => ({ [Symbol.asyncIterator]: async function* () {} }),
    },
    discovery: { discover: () => act('discover', info) },
    node: {
      shutdown: (o?: { reason?: string }) => act(`shutdown ${o?.reason ?? ''}`, undefined),
      reboot: (o?: { reason?: string }) => act(`reboot ${o?.reason ?? ''}`, undefined),
    },
    close: () => void calls.push('close'),
  } as unknown as AuraeClient;
  return { client, calls };
}

async function run(argv: string[], client = fakeClient().client, connectError?: Error) {
  const out: string[] = [];
  const err: string[] = [];
  let connected: ConnectOptions | undefined;
  const code = await runAer(argv, {
    out: (t) => void out.push(t),
    err: (t) => void err.push(t),
    env: {},
    connect: (options) => {
      connected = options;
      if (connectError) throw connectError;
      return client;
    },
  });
  return { code, out, err, connected };
}

describe('aer', () => {
  it('health: prints the status, exit 0 only when SERVING; -o json anywhere on the line', async () => {
    expect(await run(['health'])).toMatchObject({ code: 0, out: ['SERVING'] });
    expect(await run(['health', 'down'])).toMatchObject({ code: 1, out: ['down: NOT_SERVING'] });
    expect(await run(['-o', 'json', 'health'])).toMatchObject({ code: 0, out: ['{"service":"","status":"SERVING"}'] });
    expect(await run(['health', '-o', 'json', 'x.Svc'])).toMatchObject({ code: 0, out: ['{"service":"x.Svc","status":"SERVING"}'] });
  });

  it('passes --config, --address and --node to connect, and closes the client', async () => {
    const { client, calls } = fakeClient();
    const result = await run(['--config', '/my.json', 'health', '--address', '127.0.0.1:9', '--node', 'n2'], client);
    expect(result.connected).toEqual({ config: '/my.json', address: '127.0.0.1:9', node: 'n2', env: {} });
    expect(calls).toEqual(['check ', 'close']);
  });

  it('version: both versions, text and json', async () => {
    expect((await run(['version'])).out).toEqual([
      `aer     ${AER_VERSION}\nauraed  0.1.0 on node-1 (kernel 6.1.0, pid 42, up 1h 2m, healthy)`,
    ]);
    expect(JSON.parse((await run(['version', '-o', 'json'])).out[0]!)).toEqual({ aer: AER_VERSION, auraed: info });
  });

  it("version: the node's boot report, whole in json and as a table in text", async () => {
    const boot = { fromInit: true, kernelToInitMs: 1200, initPhases: [{ name: 'mounts', outcome: 'ok', startMs: 1500, durationMs: 30 }], auraedStartedMs: 1760, auraedPhases: [], listeningMs: 4490, servingMs: 4500, firstServingMs: 4500, auraedStarts: 1 };
    const { client } = fakeClient();
    (client.discovery as { discover: () => Promise<unknown> }).discover = async () => ({ ...info, boot });
    expect(JSON.parse((await run(['version', '-o', 'json'], client)).out[0]!)).toEqual({ aer: AER_VERSION, auraed: { ...info, boot } });
    const text = (await run(['version'], client)).out[0]!;
    expect(text).toContain('kernel → /init     1.20     1.20');
    expect(text).toContain('first SERVING      4.50');
  });

  it('shutdown and reboot pass the reason and report the node', async () => {
    const { client, calls } = fakeClient();
    expect(await run(['shutdown', '--reason', 'disk swap'], client)).toMatchObject({ code: 0, out: ['node-1: powering off'] });
    expect(await run(['-o', 'json', 'reboot'], client)).toMatchObject({ code: 0, out: ['{"node":"node-1","action":"reboot","accepted":true}'] });
    expect(calls.filter((c) => c !== 'close')).toEqual(['shutdown disk swap', 'reboot ']);
  });

  it('usage errors exit 2, help exits 0', async () => {
    expect((await run(['-o', 'yaml', 'health'])).code).toBe(2);
    expect((await run(['frobnicate'])).code).toBe(2);
    expect((await run(['health', 'a', 'b'])).code).toBe(2);
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.out.join('\n')).toMatch(/health \[service\]/);
  });

  it('failures print one line and exit 1', async () => {
    const unavailable = new AuraeApiError('UNAVAILABLE', 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ', 'grpc.health.v1.Health/Check', '127.0.0.1:1');
    const result = await run(['health'], fakeClient(unavailable).client);
    expect(result.code).toBe(1);
    expect(result.err).toEqual([
      'aer: cannot reach auraed at 127.0.0.1:1: is the node running and is the address right? (No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1.)',
    ]);
    const config = await run(['health'], undefined, new ClientConfigError('CLIENT_CONFIG_UNREADABLE', 'cannot read client config /x (ENOENT): pass --config PATH'));
    expect(config).toMatchObject({ code: 1, err: ['aer: cannot read client config /x (ENOENT): pass --config PATH'] });
  });
});

describe('describeError', () => {
  const api = (code: ConstructorParameters<typeof AuraeApiError>[0], details: string) => new AuraeApiError(code, details, 'a.B/C', 'node:8443');

  it('tells TLS failures from network failures: the fix is the client config', () => {
    expect(describeError(api('UNAVAILABLE', 'Last error: Error: self-signed certificate in certificate chain'), { configPath: '/c.json' })).toBe(
      'aer: TLS with auraed at node:8443 failed (Last error: Error: self-signed certificate in certificate chain): check the client config /c.json: ca, cert and key must come from this node\'s PKI and "node" must be its name',
    );
    expect(describeError(api('UNAVAILABLE', 'connect ENOENT /run/aurae/aurae.sock'))).toMatch(/^aer: cannot reach auraed at node:8443: is the node running/);
  });

  it('passes the server message through for request errors', () => {
    expect(describeError(api('FAILED_PRECONDITION', 'auraed is not running under aurae init; stop it with SIGTERM'))).toBe(
      'aer: auraed is not running under aurae init; stop it with SIGTERM',
    );
    expect(describeError(api('DEADLINE_EXCEEDED', 'x'))).toBe('aer: auraed at node:8443 did not answer in time: is the address right and the node responsive?');
    expect(describeError(api('DATA_LOSS', 'x'))).toBe('aer: a.B/C failed at node:8443 (DATA_LOSS): x');
  });

  it('formats durations compactly', () => {
    expect([5, 65, 3725, 90_061].map(formatDuration)).toEqual(['5s', '1m 5s', '1h 2m', '1d 1h']);
  });
});
