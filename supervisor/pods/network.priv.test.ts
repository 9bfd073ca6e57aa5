// Pod networking's adapter on a real kernel (priv tier: root on the host). Nothing touches the host's own network:
// the "node" is a network namespace pinned in a temp directory, and every command of the adapter runs inside it
// (nsenter), as do its /sys/class/net checks and /proc/sys writes. Two pods (pinned namespaces) are connected to
// the node's bridge; they reach each other, and a published port answers the node on 127.0.0.1 (output DNAT,
// route_localnet, masquerade); connecting again changes nothing; disconnecting removes the veth.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execRunner, nodePodNetwork, type PodNetwork } from './network';
import { DEFAULT_POD_NETWORK, hostVethName } from './network-plan';

const root = process.getuid?.() === 0;
const haveTools = ['ip', 'nft', 'nsenter', 'unshare', 'busybox'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);

describe.skipIf(!root || !haveTools)('pod network adapter (priv: needs root, iproute2, nftables, util-linux, busybox)', () => {
  let dir = '';
  const ns = (name: string) => path.join(dir, name);
  let network: PodNetwork;
  let server: ChildProcess | null = null;
  const inNode = (...argv: string[]) => execFileSync('nsenter', [`--net=${ns('node')}`, ...argv], { encoding: 'utf8', timeout: 20_000 });
  const inPod = (pod: string, ...argv: string[]) => execFileSync('nsenter', [`--net=${ns(pod)}`, ...argv], { encoding: 'utf8', timeout: 20_000 });
  const cfg = DEFAULT_POD_NETWORK;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-podnet-'));
    for (const n of ['node', 'a', 'b']) {
      fs.writeFileSync(ns(n), '');
      execFileSync('unshare', [`--net=${ns(n)}`, 'true']);
    }
    inNode('ip', 'link', 'set', 'lo', 'up'); // as on a booted node
    const run = execRunner();
    network = nodePodNetwork({
      run: (file, args, opts) => run('nsenter', [`--net=${ns('node')}`, file, ...args], opts),
      ip: 'ip',
      nft: 'nft',
      exists: (p) => (p.startsWith('/sys/class/net/') ? spawnSync('nsenter', [`--net=${ns('node')}`, 'ip', 'link', 'show', path.basename(p)]).status === 0 : fs.existsSync(p)),
      writeFile: (p, v) => void inNode('sh', '-c', 'echo "$1" > "$2"', 'sh', v, p),
    });
  });
  afterAll(() => {
    server?.kill('SIGKILL');
    for (const n of ['a', 'b', 'node']) spawnSync('umount', [ns(n)]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('connects pods to the bridge: they reach each other; a published port answers the node on 127.0.0.1', async () => {
    await network.ensureNode(cfg);
    await network.connectPod(cfg, { pod: 'a', address: '10.88.0.2', netns: ns('a') });
    await network.connectPod(cfg, { pod: 'b', address: '10.88.0.3', netns: ns('b') });
    await network.applyRuleset(cfg, [
      { name: 'a', address: '10.88.0.2', publish: [] },
      { name: 'b', address: '10.88.0.3', publish: [{ nodePort: 8080, podPort: 80, protocol: 'tcp' }] },
    ]);
    expect(inNode('cat', '/proc/sys/net/ipv4/ip_forward').trim()).toBe('1');
    expect(inNode('ip', '-o', 'addr', 'show', 'dev', 'aurae0')).toContain('inet 10.88.0.1/16');
    expect(inPod('b', 'ip', '-o', 'addr', 'show', 'dev', 'eth0')).toContain('inet 10.88.0.3/16');
    expect(inPod('b', 'ip', 'route')).toContain('default via 10.88.0.1 dev eth0');

    const www = path.join(dir, 'www');
    fs.mkdirSync(www);
    fs.writeFileSync(path.join(www, 'index.html'), 'hello-from-b\n');
    server = spawn('nsenter', [`--net=${ns('b')}`, 'busybox', 'httpd', '-f', '-p', '80', '-h', www], { stdio: 'ignore' });
    // busybox nc rather than wget (the host's static busybox wget crashes resolving); numeric addresses only.
    const httpGet = (netns: string, host: string, port: number) =>
      execFileSync('nsenter', [`--net=${netns}`, 'busybox', 'nc', '-w', '2', host, String(port)], { input: 'GET / HTTP/1.0\r\n\r\n', encoding: 'utf8', timeout: 20_000 });
    const get = (where: () => string) => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          return where();
        } catch (err) {
          if (Date.now() > deadline) throw err;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100); // poll again shortly (the server may be starting)
        }
      }
    };
    expect(get(() => httpGet(ns('a'), '10.88.0.3', 80))).toMatch(/^HTTP\/1\.1 200[\s\S]*hello-from-b\n$/);
    expect(get(() => httpGet(ns('node'), '127.0.0.1', 8080))).toMatch(/hello-from-b\n$/);
  });

  it('is idempotent, and disconnecting removes the veth (twice is fine)', async () => {
    await network.ensureNode(cfg);
    await network.connectPod(cfg, { pod: 'a', address: '10.88.0.2', netns: ns('a') });
    expect(inPod('a', 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0').match(/inet /g)).toHaveLength(1);
    // A changed address is replaced, not added.
    await network.connectPod(cfg, { pod: 'a', address: '10.88.0.9', netns: ns('a') });
    expect(inPod('a', 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0')).toMatch(/inet 10\.88\.0\.9\/16/);
    expect(inPod('a', 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0').match(/inet /g)).toHaveLength(1);
    await network.disconnectPod('a');
    await network.disconnectPod('a');
    expect(inNode('ip', '-o', 'link')).not.toContain(hostVethName('a'));
    expect(inPod('a', 'ip', '-o', 'link')).not.toContain('eth0');
  });
});
