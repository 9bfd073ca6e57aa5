// 42: pod networking end to end (supervisor/pods/network-plan.ts, network.ts). The host runs the test registry
// (reached by the guest as 10.0.2.100:5000, as in 41) and forwards 127.0.0.1:<free port> to the node's port 8080
// (QEMU hostfwd). With the SDK: a pod gets an address from the pod CIDR (inspect shows it) and its own /etc/hosts,
// /etc/resolv.conf and hostname; two containers of the pod talk over localhost; another pod reaches it by its
// address; a pod reaches the host registry through the node (egress masquerade); the pod's published port 8080 → 80
// answers the host through the node (prerouting DNAT) and the node itself (output DNAT); a second pod publishing
// the same node port is refused; after an auraed SIGKILL the pod keeps its address and its published port;
// stop and remove take the veth and the DNAT rule away and free the address. A second node, with a state disk,
// reboots with a pod holding an address that is not the lowest: the pod comes back on it, its port published again.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuraeClient, PodInfo } from '../aer/sdk';
import { buildTestImages, startTestRegistry, testImagesDir, type TestRegistry } from '../supervisor/images/test-registry';
import { freeLoopbackPort } from '../supervisor/vms';
import { hostVethName } from '../supervisor/pods/network-plan';
import { bootNode, createStateDisk, eventually, type BootedNode } from './fixture/node';
import { GUEST_REGISTRY, GUEST_REGISTRY_HOST, withGuestRegistry } from '../image/lib/guest-registry';

const IMAGE = `${GUEST_REGISTRY_HOST}/busybox:latest`;
/** The node port the web pod publishes (forwarded from the host). */
const NODE_PORT = 8080;

/** A container serving "hello-from-web" on port 80 with busybox httpd. */
const SERVER = ['/bin/sh', '-c', 'mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www'];

async function registryWithBusybox(): Promise<TestRegistry> {
  const images = await buildTestImages(testImagesDir());
  const registry = await startTestRegistry();
  await registry.push(images.layout, images.tags.base, 'busybox:latest');
  return registry;
}

/** GET http://127.0.0.1:port/ on the host; null while nothing answers. */
async function fetchFromHost(port: number): Promise<string | null> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5_000) });
  return res.ok ? await res.text() : null;
}

describe('42 pod network', () => {
  let registry: TestRegistry | null = null;
  let node: BootedNode | null = null;
  let sdk: AuraeClient | null = null;
  let hostPort = 0;
  const booted = () => {
    if (!node) throw new Error('the node did not boot (see the beforeAll error)');
    return node;
  };
  const client = () => (sdk ??= booted().client());

  beforeAll(async () => {
    registry = await registryWithBusybox();
    hostPort = await freeLoopbackPort();
    node = await bootNode({
      name: '42-pod-network',
      guestForwards: [{ guestAddress: GUEST_REGISTRY.address, guestPort: GUEST_REGISTRY.port, hostPort: registry.port }],
      hostForwards: [{ hostPort, guestPort: NODE_PORT }],
      nodeConfig: withGuestRegistry,
    });
  }, 600_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console of 42-pod-network (full log: ${node.consoleLog}) ---\n${node.vm.tail(60)}`);
  });
  afterAll(async () => {
    sdk?.close();
    await node?.stop();
    await registry?.stop();
  });

  const sh = async (command: string) => (await booted().shell()).ok(command);
  const logs = async (pod: string, container: string) => {
    const lines: string[] = [];
    for await (const entry of client().observe.logs(pod, container, { tail: 1000 })) lines.push(entry.line);
    return lines.join('\n');
  };
  const logsContain = (pod: string, container: string, text: string, timeoutMs = 90_000) =>
    eventually(async () => {
      const l = await logs(pod, container);
      return l.includes(text) && l;
    }, timeoutMs, `${pod}/${container} to print ${text}`);
  const until = (pod: string, what: string, ok: (p: PodInfo) => boolean, timeoutMs = 90_000) =>
    eventually(async () => {
      const p = await client().pods.inspect(pod);
      return ok(p) && p;
    }, timeoutMs, `pod ${pod} ${what}`);
  const fromHost = () => fetchFromHost(hostPort);
  let webIp = '';

  it('gives a pod an address from the pod CIDR, its /etc files and hostname; its containers talk over localhost', async () => {
    const started = await client().pods.run({
      name: 'web',
      publish: [{ nodePort: NODE_PORT, podPort: 80 }],
      containers: [
        { name: 'server', image: IMAGE, command: SERVER },
        {
          name: 'client',
          image: IMAGE,
          command: [
            '/bin/sh',
            '-c',
            'echo "hostname=$(hostname) etc-hostname=$(cat /etc/hostname)"; cat /etc/hosts /etc/resolv.conf; ip addr show eth0; ' +
              'until wget -q -O- http://127.0.0.1:80/; do sleep 0.2; done; echo localhost-ok; exec sleep 3600',
          ],
        },
      ],
    });
    expect(started.ip).toMatch(/^10\.88\.\d+\.\d+$/);
    webIp = started.ip!;
    expect((await client().pods.inspect('web')).ip).toBe(webIp);
    const out = await logsContain('web', 'client', 'localhost-ok');
    expect(out).toContain('hello-from-web');
    expect(out).toContain('hostname=web etc-hostname=web');
    expect(out).toContain('127.0.0.1\tlocalhost');
    expect(out).toContain(`${webIp}\tweb`);
    // The node has no /etc/resolv.conf of its own: pods get the documented default.
    expect(out).toContain('nameserver 8.8.8.8');
    expect(out).toContain(`inet ${webIp}/16`);
  });

  it('another pod reaches the pod by its address over the bridge', async () => {
    await client().pods.run({
      name: 'peer',
      containers: [{ name: 'get', image: IMAGE, command: ['/bin/sh', '-c', `until wget -q -O- http://${webIp}:80/; do sleep 0.2; done; echo peer-ok`] }],
    });
    const done = await until('peer', 'to succeed', (p) => p.state === 'succeeded' || p.state === 'failed', 120_000);
    expect(done.state).toBe('succeeded');
    expect(done.ip).toMatch(/^10\.88\./);
    expect(done.ip).not.toBe(webIp);
    expect(await logs('peer', 'get')).toContain('hello-from-web');
  });

  it('a pod reaches the host registry through the node (egress masquerade)', async () => {
    await client().pods.run({
      name: 'egress',
      containers: [{ name: 'get', image: IMAGE, command: ['/bin/sh', '-c', `wget -q -O- http://${GUEST_REGISTRY_HOST}/v2/ && echo && echo egress-ok`] }],
    });
    const done = await until('egress', 'to end', (p) => p.state === 'succeeded' || p.state === 'failed', 120_000);
    const out = await logs('egress', 'get');
    expect(done.state, out).toBe('succeeded');
    expect(out).toContain('{}');
    expect(out).toContain('egress-ok');
  });

  it("the published port answers the host through the node, and the node itself on 127.0.0.1", async () => {
    expect(await eventually(fromHost, 60_000, 'the published port to answer the host')).toContain('hello-from-web');
    expect(await sh(`wget -q -O- http://127.0.0.1:${NODE_PORT}/`)).toContain('hello-from-web');
    const rules = await sh('/usr/sbin/nft list table ip aurae');
    expect(rules).toContain(`dnat to ${webIp}:80`);
    expect(rules).toContain('masquerade');
  });

  it('refuses a second pod publishing the same node port, naming the pod that has it', async () => {
    await expect(
      client().pods.run({ name: 'clash', publish: [{ nodePort: NODE_PORT, podPort: 80 }], containers: [{ name: 'app', image: IMAGE, command: SERVER }] }),
    ).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', details: expect.stringContaining('already published by pod "web"') });
    await expect(client().pods.inspect('clash')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('after an auraed SIGKILL the pod keeps its address and its published port', async () => {
    const from = booted().vm.console.length;
    await sh('kill -9 "$(cat /run/aurae/auraed.pid)"');
    await booted().waitReady(180_000, from);
    sdk?.close();
    sdk = null;
    const after = await until('web', 'to run again', (p) => p.state === 'running', 120_000);
    expect(after.ip).toBe(webIp);
    expect(await eventually(fromHost, 90_000, 'the published port to answer after the restart')).toContain('hello-from-web');
  });

  it('stop and remove take the veth and the DNAT rule away; the freed address is given again', async () => {
    const veth = hostVethName('web');
    expect(await sh(`ls /sys/class/net`)).toContain(veth);
    await client().pods.stop('web', { graceMs: 2_000 });
    expect(await sh('ls /sys/class/net')).not.toContain(veth);
    expect(await sh('/usr/sbin/nft list table ip aurae')).not.toContain('dnat');
    await client().pods.remove('web');
    await client().pods.remove('peer');
    await client().pods.run({ name: 'again', containers: [{ name: 'app', image: IMAGE, command: ['/bin/sh', '-c', 'exec sleep 3600'] }] });
    // web's address was the lowest: it is free again.
    expect((await client().pods.inspect('again')).ip).toBe(webIp);
    await client().pods.remove('again', { force: true });
    await client().pods.remove('egress');
    expect(await sh('ls /sys/class/net')).not.toMatch(/\bav[0-9a-f]{12}\b/);
  });
});

describe('42 pod network across a reboot (state disk)', () => {
  let registry: TestRegistry | null = null;
  let node: BootedNode | null = null;
  let sdk: AuraeClient | null = null;
  let hostPort = 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-42-'));
  const booted = () => {
    if (!node) throw new Error('the node did not boot (see the beforeAll error)');
    return node;
  };
  const client = () => (sdk ??= booted().client());

  beforeAll(async () => {
    registry = await registryWithBusybox();
    hostPort = await freeLoopbackPort();
    node = await bootNode({
      name: '42-pod-network-reboot',
      disks: [createStateDisk(dir, 256)],
      noReboot: false,
      guestForwards: [{ guestAddress: GUEST_REGISTRY.address, guestPort: GUEST_REGISTRY.port, hostPort: registry.port }],
      hostForwards: [{ hostPort, guestPort: NODE_PORT }],
      nodeConfig: withGuestRegistry,
    });
  }, 600_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console of 42-pod-network-reboot (full log: ${node.consoleLog}) ---\n${node.vm.tail(60)}`);
  });
  afterAll(async () => {
    sdk?.close();
    await node?.stop();
    await registry?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a pod comes back on its stored address, its port published again', async () => {
    await client().pods.run({ name: 'first', containers: [{ name: 'app', image: IMAGE, command: ['/bin/sh', '-c', 'exec sleep 600'] }] });
    const kept = await client().pods.run({ name: 'kept', restart: 'always', publish: [{ nodePort: NODE_PORT, podPort: 80 }], containers: [{ name: 'server', image: IMAGE, command: SERVER }] });
    await client().pods.remove('first', { force: true });
    // kept's address is no longer the lowest free one: a fresh allocation would differ.
    expect(kept.ip).toBe('10.88.0.3');
    expect(await eventually(() => fetchFromHost(hostPort), 60_000, 'the published port before the reboot')).toContain('hello-from-web');
    const from = booted().vm.console.length;
    await client().node.reboot({ reason: '42: pod networking across a reboot' });
    sdk?.close();
    sdk = null;
    await booted().waitReady(240_000, from);
    const after = await eventually(async () => {
      const p = await client().pods.inspect('kept');
      return p.state === 'running' && p;
    }, 120_000, 'kept to run again after the reboot');
    expect(after.ip).toBe('10.88.0.3');
    expect(await eventually(() => fetchFromHost(hostPort), 120_000, 'the published port after the reboot')).toContain('hello-from-web');
    await client().pods.remove('kept', { force: true });
  });
});
