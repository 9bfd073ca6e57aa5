// auraed on the host, for real: spawned process, mTLS over the unix socket and TCP, IPC to a fake init.
// No root needed (temp dir, loopback); it runs in the priv tier because it spawns daemons and binds sockets.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import tls from 'node:tls';
import { Metadata, type ServiceError, credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuraeClient, AuraeApiError, connect } from '../../aer/sdk';
import { HealthClient } from '../gen/grpc/health/v1/health';
import { createCa, issueClientCert } from '../pki';
import { HEALTH_SERVICE_NAMES } from './auraed';
import { AURAED_VERSION } from './version';
import { type PreparedNode, type RunningTestAuraed, launchAuraed, prepareTestNode } from './testing';

/** Health Check with raw grpc-js credentials; resolves with the status code (OK = 0). */
function rawHealthCheck(address: string, serverName: string, creds: { ca: Buffer; key?: Buffer; cert?: Buffer }): Promise<number> {
  const client = new HealthClient(address, credentials.createSsl(creds.ca, creds.key ?? null, creds.cert ?? null), {
    'grpc.ssl_target_name_override': serverName,
    'grpc.default_authority': serverName,
  });
  return new Promise<number>((resolve) => {
    client.check({ service: '' }, new Metadata(), { deadline: Date.now() + 10_000 }, (err: ServiceError | null) => resolve(err ? err.code : status.OK));
  }).finally(() => client.close());
}

/** TLS handshake only; resolves with the negotiated protocol or the error. */
function handshake(target: { port: number } | { path: string }, creds: { ca: Buffer; key: Buffer; cert: Buffer }, servername: string, maxVersion: tls.SecureVersion) {
  return new Promise<{ protocol: string | null } | { error: string }>((resolve) => {
    const socket = tls.connect({ ...('port' in target ? { host: '127.0.0.1', port: target.port } : { path: target.path }), servername, ...creds, maxVersion, ALPNProtocols: ['h2'] });
    const timer = setTimeout(() => (socket.destroy(), resolve({ error: 'timeout' })), 10_000);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      resolve({ protocol: socket.getProtocol() });
      socket.destroy();
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      resolve({ error: err.message });
    });
  });
}

async function expectApiError(promise: Promise<unknown>, code: string, message?: string | RegExp): Promise<AuraeApiError> {
  const err = await promise.then(
    () => {
      throw new Error(`expected ${code}, but the call succeeded`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuraeApiError);
  expect((err as AuraeApiError).code).toBe(code);
  if (message !== undefined) expect((err as AuraeApiError).details).toMatch(message);
  return err as AuraeApiError;
}

describe('auraed on the host, not under init', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let admin: { ca: Buffer; key: Buffer; cert: Buffer };
  const clients: AuraeClient[] = [];
  const client = (address?: string) => {
    const c = connect({ config: node.clientConfigPath, address, env: {}, timeoutMs: 10_000 });
    clients.push(c);
    return c;
  };
  const addresses = () => ({ unix: `unix://${node.socket}`, tcp: `127.0.0.1:${node.port}` });

  beforeAll(async () => {
    node = await prepareTestNode({ nodeName: 'host-1' });
    admin = { ca: readFileSync(node.pki.caCert), key: readFileSync(node.pki.adminKey), cert: readFileSync(node.pki.adminCert) };
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
  }, 30_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await auraed?.stop();
    node?.cleanup();
  });

  it('logs ready with both listeners, and makes the socket 0600', () => {
    expect(auraed.logs.find((l) => l.msg === 'ready')).toMatchObject({
      subsystem: 'auraed',
      node: 'host-1',
      version: AURAED_VERSION,
      socket: node.socket,
      tcp: `127.0.0.1:${node.port}`,
      underInit: false,
    });
    expect(auraed.logs.every((l) => typeof l.time === 'string' && typeof l.level === 'string')).toBe(true);
    const st = statSync(node.socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it.each(['unix', 'tcp'] as const)('answers Health Check and Watch over %s with the admin certificate', async (kind) => {
    const c = client(addresses()[kind]);
    expect(await c.health.check()).toEqual({ status: 'SERVING' });
    expect(await c.health.check('aurae.node.v0.NodeService')).toEqual({ status: 'SERVING' });
    await expectApiError(c.health.check('no.Such'), 'NOT_FOUND', 'unknown service "no.Such"');
    // Storage: not under aurae init (no /run/aurae/storage.json) and an intact database → SERVING.
    expect(await c.health.list()).toEqual(Object.fromEntries([...HEALTH_SERVICE_NAMES, 'aurae.storage'].map((name) => [name, 'SERVING'])));

    // Watch sends the current status at once; unknown services get SERVICE_UNKNOWN (stream stays open).
    for (const [service, first] of [['', 'SERVING'], ['no.Such', 'SERVICE_UNKNOWN']] as const) {
      const abort = new AbortController();
      const seen: string[] = [];
      const started = Date.now();
      for await (const s of c.health.watch(service, { signal: abort.signal })) {
        seen.push(s);
        abort.abort(); // cancelling ends the iteration cleanly
      }
      expect(seen).toEqual([first]);
      expect(Date.now() - started).toBeLessThan(5000);
    }
  });

  it('Discover returns the node name, version, kernel release and pid', async () => {
    const info = await client().discovery.discover();
    expect(info).toMatchObject({ healthy: true, nodeName: 'host-1', version: AURAED_VERSION, pid: auraed.proc.pid });
    expect(info.kernelRelease).toBe(os.release());
    expect(info.uptimeSeconds).toBeGreaterThan(0);
    // The boot report: auraed's own phases on the kernel's clock (no init here, so none of init's part).
    const boot = info.boot!;
    expect(boot).toMatchObject({ fromInit: false, kernelToInitMs: 0, initPhases: [], auraedStarts: 0 });
    expect(boot.auraedPhases.map((p) => p.name).slice(0, 2)).toEqual(['pki', 'database']);
    expect(boot.auraedPhases.map((p) => p.name)).toContain('serving');
    expect(boot.auraedPhases.every((p) => p.outcome === 'ok' && p.startMs >= boot.auraedStartedMs && p.durationMs >= 0)).toBe(true);
    expect(boot.auraedStartedMs).toBeGreaterThan(0);
    expect(boot.listeningMs).toBeGreaterThan(boot.auraedStartedMs);
    expect(boot.servingMs).toBeGreaterThanOrEqual(boot.listeningMs);
    expect(boot.firstServingMs).toBe(boot.servingMs);
    // On the clock /proc/uptime counts: auraed started before now.
    expect(boot.servingMs / 1000).toBeLessThanOrEqual(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) + 1);
  });

  it('rejects a client with no certificate (TCP and unix socket)', async () => {
    expect(await rawHealthCheck(addresses().tcp, 'host-1', { ca: admin.ca })).toBe(status.UNAVAILABLE);
    expect(await rawHealthCheck(addresses().unix, 'host-1', { ca: admin.ca })).toBe(status.UNAVAILABLE);
    // Same path with the admin certificate: the rejection is about the certificate, not the setup.
    expect(await rawHealthCheck(addresses().tcp, 'host-1', admin)).toBe(status.OK);
    expect(await rawHealthCheck(addresses().unix, 'host-1', admin)).toBe(status.OK);
  });

  it('rejects a client whose certificate comes from another CA', async () => {
    const intruder = await issueClientCert(await createCa('intruder-ca'), { identity: 'admin' });
    const creds = { ca: admin.ca, key: Buffer.from(intruder.keyPem), cert: Buffer.from(intruder.certPem) };
    expect(await rawHealthCheck(addresses().tcp, 'host-1', creds)).toBe(status.UNAVAILABLE);
    expect(await rawHealthCheck(addresses().unix, 'host-1', creds)).toBe(status.UNAVAILABLE);
  });

  it('refuses TLS 1.2 and speaks TLS 1.3', async () => {
    for (const target of [{ port: node.port }, { path: node.socket }]) {
      const old = await handshake(target, admin, 'host-1', 'TLSv1.2');
      expect(old).toEqual({ error: expect.stringMatching(/protocol version|alert/i) });
      expect(await handshake(target, admin, 'host-1', 'TLSv1.3')).toEqual({ protocol: 'TLSv1.3' });
    }
  });

  it('Shutdown without init is FAILED_PRECONDITION, and the call is logged with the caller', async () => {
    await expectApiError(client().node.shutdown({ reason: 'test' }), 'FAILED_PRECONDITION', 'auraed is not running under aurae init; stop it with SIGTERM');
    await expectApiError(client().node.reboot(), 'FAILED_PRECONDITION');
    await expect.poll(() => auraed.logs, { timeout: 10_000 }).toContainEqual(expect.objectContaining({ msg: 'rpc', method: 'aurae.node.v0.NodeService/Shutdown', caller: 'admin' }));
  });

  it('validates the reason before acting', async () => {
    await expectApiError(client().node.shutdown({ reason: 'x'.repeat(257) }), 'INVALID_ARGUMENT', 'reason: at most 256 characters (got 257)');
    await expectApiError(client().node.reboot({ reason: 'a\nb' }), 'INVALID_ARGUMENT', /^reason: character 2 \(U\+000A\)/);
  });

  it('lets any identity from the node CA probe, but only admins (or a policy rule) power the node', async () => {
    const viewer = await node.issueClient('viewer');
    const config = `${node.dir}/viewer.json`;
    writeFileSync(config, JSON.stringify({ version: 1, node: 'host-1', address: addresses().tcp, ca: node.pki.caCert, ...viewer }));
    const c = connect({ config, env: {} });
    clients.push(c);
    expect(await c.health.check()).toEqual({ status: 'SERVING' });
    await expectApiError(c.node.shutdown(), 'PERMISSION_DENIED', /^identity "viewer" may not call aurae.node.v0.NodeService\/Shutdown: .*aer authz allow viewer aurae.node.v0.NodeService\/Shutdown$/);
  });

  it('a second auraed on the same socket refuses to start and says why', async () => {
    const second = launchAuraed(node.configPath);
    const exit = await Promise.race([second.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
    if (exit === null) await second.stop();
    expect(exit).toEqual({ code: 1, signal: null });
    expect(second.logs).toContainEqual(expect.objectContaining({ level: 'error', err: `listen.socket ${node.socket} is in use: another auraed is running; stop it first` }));
    expect(await client().health.check()).toEqual({ status: 'SERVING' });
  });

  // Last: it stops this node.
  it('on SIGTERM: Watch sees NOT_SERVING and ends, auraed exits 0 gracefully and removes its socket', async () => {
    const c = client(addresses().tcp);
    const seen: string[] = [];
    const watching = (async () => {
      for await (const s of c.health.watch('')) {
        seen.push(s);
        if (seen.length === 1) auraed.proc.kill('SIGTERM');
      }
    })();
    const outcome = await Promise.race([watching.then(() => 'ended'), new Promise((r) => setTimeout(() => r('timeout'), 15_000))]);
    expect(outcome).toBe('ended');
    expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
    expect(await auraed.exited).toEqual({ code: 0, signal: null });
    expect(auraed.logs).toContainEqual(expect.objectContaining({ msg: 'stopped', how: 'graceful' }));
    expect(existsSync(node.socket)).toBe(false);
  });
});

describe('auraed under a fake init (IPC channel)', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;

  beforeAll(async () => {
    node = await prepareTestNode({ nodeName: 'ipc-1' });
    auraed = launchAuraed(node.configPath, { ipc: true });
    await auraed.waitReady();
  }, 30_000);

  afterAll(async () => {
    await auraed?.stop();
    node?.cleanup();
  });

  it('reports ready over IPC once both listeners serve', async () => {
    const ready = await auraed.waitForMessage((m) => m.type === 'ready');
    expect(ready).toEqual({ type: 'ready', node: 'ipc-1', version: AURAED_VERSION, socket: node.socket, tcp: `127.0.0.1:${node.port}`, servingMs: expect.any(Number) });
  });

  it("serves init's part of the boot report once init sent it, and ignores a malformed one", async () => {
    const c = connect({ config: node.clientConfigPath, env: {} });
    try {
      auraed.proc.send({ type: 'boot', init: { startedMs: -5 } });
      const init = { startedMs: 1200, phases: [{ name: 'mounts', outcome: 'ok', startMs: 1300, ms: 12 }], auraedStarts: 2, firstServingMs: 4800 };
      auraed.proc.send({ type: 'boot', init });
      let boot = (await c.discovery.discover()).boot!;
      for (const deadline = Date.now() + 10_000; !boot.fromInit && Date.now() < deadline; ) boot = (await c.discovery.discover()).boot!;
      expect(boot).toMatchObject({ fromInit: true, kernelToInitMs: 1200, initPhases: [{ name: 'mounts', outcome: 'ok', startMs: 1300, durationMs: 12 }], auraedStarts: 2, firstServingMs: 4800 });
      expect(boot.servingMs).toBeGreaterThan(0);
      await expect.poll(() => auraed.logs, { timeout: 10_000 }).toContainEqual(expect.objectContaining({ msg: 'ignoring a malformed IPC message from aurae init' }));
    } finally {
      c.close();
    }
  });

  it('delivers Shutdown and Reboot to init with the caller identity, then replies OK', async () => {
    const c = connect({ config: node.clientConfigPath, env: {} });
    try {
      await c.node.shutdown();
      expect(await auraed.waitForMessage((m) => m.type === 'power')).toEqual({ type: 'power', action: 'poweroff', by: 'admin' });
      await c.node.reboot({ reason: 'kernel update' });
      expect(await auraed.waitForMessage((m) => m.type === 'power' && m.action === 'reboot')).toEqual({
        type: 'power',
        action: 'reboot',
        by: 'admin',
        reason: 'kernel update',
      });
    } finally {
      c.close();
    }
  });

  it('stops cleanly when init closes the IPC channel', async () => {
    auraed.proc.disconnect();
    const exit = await Promise.race([auraed.exited, new Promise<null>((r) => setTimeout(() => r(null), 15_000))]);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(auraed.logs).toContainEqual(expect.objectContaining({ msg: 'stopping', why: 'aurae init closed the IPC channel' }));
  });
});

describe('auraed startup errors', () => {
  it('a bad config exits 2 with the error text naming the field', async () => {
    const node = await prepareTestNode();
    try {
      writeFileSync(node.configPath, JSON.stringify({ version: 1, node: { name: 'Bad Name' }, pki: {}, bogus: 1 }));
      const auraed = launchAuraed(node.configPath);
      const exit = await Promise.race([auraed.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
      if (exit === null) await auraed.stop();
      expect(exit).toEqual({ code: 2, signal: null });
      expect(auraed.stderr()).toContain(`auraed: ${node.configPath}: invalid node config:`);
      expect(auraed.stderr()).toMatch(/node\.name: expected a DNS label/);
      expect(auraed.stderr()).toMatch(/pki\.caCert: /);
      expect(auraed.stderr()).toMatch(/Unrecognized key: "bogus"/);
    } finally {
      node.cleanup();
    }
  });
});
