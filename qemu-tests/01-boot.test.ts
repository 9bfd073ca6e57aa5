// 01: the boot spine. The image boots to a serving auraed; the API answers over mTLS through a forwarded
// port; PID 1 set up the system the way the design says.
import fs from 'node:fs';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { NODE_RUNTIME } from '../image/runtime';
import { parseReadyLine } from '../supervisor/ipc';
import { createCa, issueClientCert } from '../supervisor/pki';
import { useNode } from './fixture/node';
import { healthStatus, readCreds } from './fixture/raw-grpc';

describe('01 boot', () => {
  const node = useNode({ name: '01-boot' });

  it('prints an ordered boot log and exactly one readiness line', () => {
    const log = node().vm.console;
    expect(log).not.toMatch(/Kernel panic/);
    expect(node().readyCount()).toBe(1);
    const ready = parseReadyLine(log);
    expect(ready).toMatchObject({ node: 'aurae', tcp: '0.0.0.0:8443', socket: '/run/aurae/aurae.sock' });
    expect(ready.pid).toBeGreaterThan(1);
  });

  it('answers Health over mTLS from the host through the forwarded port', async () => {
    const client = node().client();
    try {
      const res = await client.health.check('');
      expect(res.status).toBe('SERVING');
      const info = await client.discovery.discover();
      expect(info.nodeName).toBe('aurae');
      expect(info.kernelRelease).toMatch(/^6\.1\./);
      expect(info.healthy).toBe(true);
    } finally {
      client.close();
    }
  });

  it("reports where the boot's time went: init's and auraed's phases on the kernel's clock (Discover's boot report)", async () => {
    const client = node().client();
    try {
      const boot = (await client.discovery.discover()).boot!;
      expect(boot).toMatchObject({ fromInit: true, auraedStarts: 1 });
      const names = (phases: { name: string }[]) => phases.map((p) => p.name);
      // Every phase of init's table, in order, the last one spawning auraed; then auraed's, up to serving.
      expect(names(boot.initPhases).slice(0, 4)).toEqual(['mounts', 'storage', 'ctrl-alt-del', 'config']);
      expect(names(boot.initPhases).at(-1)).toBe('auraed');
      expect(names(boot.auraedPhases)).toEqual(expect.arrayContaining(['pki', 'database', 'server', 'serving']));
      for (const p of [...boot.initPhases, ...boot.auraedPhases]) {
        expect(['ok', 'skipped'], `${p.name}: ${p.outcome}`).toContain(p.outcome);
        expect(p.durationMs).toBeGreaterThanOrEqual(0);
      }
      // One timeline: the kernel ran before init, init's phases one after another, then auraed, listening, serving.
      const ran = (phases: typeof boot.initPhases) => phases.filter((p) => p.outcome === 'ok');
      const timeline = [boot.kernelToInitMs, ...ran(boot.initPhases).map((p) => p.startMs), boot.auraedStartedMs, ...ran(boot.auraedPhases).map((p) => p.startMs)];
      expect(timeline[0]).toBeGreaterThan(0);
      for (let i = 1; i < timeline.length; i++) expect(timeline[i]! + 1, `timeline step ${i}`).toBeGreaterThanOrEqual(timeline[i - 1]!);
      expect(boot.listeningMs).toBeGreaterThan(boot.auraedStartedMs);
      expect(boot.servingMs).toBeGreaterThanOrEqual(boot.listeningMs);
      expect(boot.firstServingMs).toBe(boot.servingMs);
      // The clock is the guest kernel's: SERVING came before this call, at most the node's uptime.
      const { uptimeSeconds } = await client.discovery.discover();
      expect(boot.servingMs).toBeLessThanOrEqual(uptimeSeconds * 1000 + 1000);
    } finally {
      client.close();
    }
  });

  it('rejects a client with no certificate', async () => {
    const { ca } = readCreds(node().image.pkiDir);
    const code = await healthStatus(`127.0.0.1:${node().port}`, 'aurae', { ca });
    expect(code).toBe(grpc.status.UNAVAILABLE);
  });

  it('rejects a client whose certificate comes from another CA', async () => {
    const otherCa = await createCa('intruder-ca');
    const intruder = await issueClientCert(otherCa, { identity: 'admin' });
    const { ca } = readCreds(node().image.pkiDir);
    const code = await healthStatus(`127.0.0.1:${node().port}`, 'aurae', {
      ca,
      key: Buffer.from(intruder.keyPem),
      cert: Buffer.from(intruder.certPem),
    });
    expect(code).toBe(grpc.status.UNAVAILABLE);
    // The same call with the node's admin certificate succeeds, so the rejection is about the certificate.
    expect(await healthStatus(`127.0.0.1:${node().port}`, 'aurae', readCreds(node().image.pkiDir))).toBe(grpc.status.OK);
  });

  it('refuses TLS 1.2', async () => {
    const creds = readCreds(node().image.pkiDir);
    const error = await new Promise<Error | null>((resolve) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: node().port,
        servername: 'aurae',
        ca: creds.ca,
        key: creds.key,
        cert: creds.cert,
        maxVersion: 'TLSv1.2',
        ALPNProtocols: ['h2'],
      });
      socket.once('secureConnect', () => (socket.destroy(), resolve(null)));
      socket.once('error', (err) => resolve(err));
    });
    expect(error?.message).toMatch(/protocol version|handshake|alert/i);
  });

  it('mounted the system and delegated cgroup controllers', async () => {
    const sh = await node().shell();
    const mounts = await sh.ok('cat /proc/mounts');
    for (const fs of ['proc /proc', 'sysfs /sys', 'devtmpfs /dev', 'devpts /dev/pts', 'tmpfs /run', 'tmpfs /tmp', 'cgroup2 /sys/fs/cgroup']) {
      expect(mounts).toContain(fs.split(' ')[1]);
    }
    expect(mounts).toMatch(/cgroup2 \/sys\/fs\/cgroup cgroup2/);
    const delegated = (await sh.ok('cat /sys/fs/cgroup/cgroup.subtree_control')).trim().split(/\s+/);
    expect(delegated).toEqual(expect.arrayContaining(['cpu', 'cpuset', 'memory', 'pids', 'io']));
    expect((await sh.ok('hostname')).trim()).toBe('aurae');
    expect(await sh.ok('ip addr show eth0')).toContain('10.0.2.15/24');
    expect(await sh.ok('ip addr show lo')).toContain('127.0.0.1/8');
  });

  it('ships native addons built for the image runtime', async () => {
    const sh = await node().shell();
    const out = await sh.ok(
      `/usr/bin/node -e 'for (const f of ["better_sqlite3", "syscalls"]) { const m = { exports: {} }; process.dlopen(m, "/usr/lib/aurae/" + f + ".node"); } console.log("addons ok " + process.version)'`,
    );
    expect(out).toContain(`addons ok v${NODE_RUNTIME.version}`);
  });

  it('serves the API on the Unix socket inside the guest too', async () => {
    const sh = await node().shell();
    const out = await sh.ok(
      'AURAE_CONFIG=/tmp/client.json; cat > /tmp/client.json <<EOF\n' +
        JSON.stringify({ version: 1, node: 'aurae', address: 'unix:///run/aurae/aurae.sock', ca: '/etc/aurae/pki/ca.crt', cert: '/tmp/admin.crt', key: '/tmp/admin.key' }) +
        '\nEOF\n' +
        `cat > /tmp/admin.crt <<'EOF'\n${fs.readFileSync(`${node().image.pkiDir}/admin.crt`, 'utf8')}EOF\n` +
        `cat > /tmp/admin.key <<'EOF'\n${fs.readFileSync(`${node().image.pkiDir}/admin.key`, 'utf8')}EOF\n` +
        '/usr/bin/node /usr/lib/aurae/aer.cjs --config /tmp/client.json -o json health',
      60_000,
    );
    expect(JSON.parse(out.trim().split('\n').pop()!)).toMatchObject({ status: 'SERVING' });
  });
});
