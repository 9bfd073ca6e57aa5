// 20: configuration inheritance without a parent node. The TEST plays the parent: it mints the identity of the
// child `aurae/web` from the image's spawn CA (out/pki), builds the guest payload and boots the normal image with
// it in fw_cfg. The node must come up as `aurae/web` — reachable with the root CA alone under the TLS name
// `web.aurae`, with the inherited admin — and hold none of its parent's keys.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { buildGuestPayload, depthLeftOf, guestPayloadParts, guestPayloadText, mintChildIdentity } from '../guest';
import { guestPayloadPartName } from '../guest/payload';
import { imageNodeConfig } from '../image/build';
import { parseNodeConfig } from '../supervisor/config';
import { type DiscoverResponse, DiscoveryServiceClient } from '../supervisor/gen/aurae/discovery/v0/discovery';
import { pkiFiles } from '../supervisor/pki';
import { bootNode, testImage, type BootedNode } from './fixture/node';
import { healthStatus, readCreds } from './fixture/raw-grpc';
import { parseReadyLine } from '../supervisor/ipc';

describe('20 guest config', () => {
  const image = testImage();
  const files = pkiFiles(image.pkiDir);
  const read = (p: string) => fs.readFileSync(p, 'utf8');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-20-guest-'));
  let node: BootedNode | null = null;
  const booted = () => {
    if (!node) throw new Error('the child did not boot (see the beforeAll error)');
    return node;
  };

  beforeAll(async () => {
    const parentConfig = parseNodeConfig(imageNodeConfig(image.manifest.node), 'image node config');
    const child = await mintChildIdentity(
      { nodePath: parentConfig.node.name, spawnCa: { certPem: read(files.spawnCaCert), keyPem: read(files.spawnCaKey) } },
      'web',
      depthLeftOf(parentConfig),
    );
    const parts = guestPayloadParts(guestPayloadText(buildGuestPayload(parentConfig, read(files.caCert), child)));
    const fwCfg = parts.map((bytes, i) => {
      const file = path.join(dir, `payload.${i}`);
      fs.writeFileSync(file, bytes, { mode: 0o600 });
      return { name: guestPayloadPartName(i), file };
    });
    // The test is the parent: it hands over the child's payload only, never the root node's identity.
    node = await bootNode({ name: '20-guest-config', identity: false, fwCfg });
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console (full log: ${node.consoleLog}) ---\n${node.vm.tail(60)}`);
  });
  afterAll(async () => {
    await node?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('boots in guest mode as aurae/web', () => {
    const log = booted().vm.console;
    expect(log).toMatch(/init: guest mode: node aurae\/web \(parent aurae, depth 1\)/);
    expect(log).not.toMatch(/init: error: guest mode/);
    expect(parseReadyLine(log)).toMatchObject({ node: 'aurae/web' });
  });

  it('answers Discover over mTLS as aurae/web to a client trusting only the root CA (TLS name web.aurae, admin cert)', async () => {
    expect(read(files.caCert).match(/BEGIN CERTIFICATE/g)).toHaveLength(1); // the root alone
    const creds = readCreds(image.pkiDir);
    // Raw grpc-js (the SDK's client config takes a node name, not a TLS name): trust = ca.crt, TLS name web.aurae.
    const client = new DiscoveryServiceClient(`127.0.0.1:${booted().port}`, grpc.credentials.createSsl(creds.ca, creds.key!, creds.cert!), {
      'grpc.ssl_target_name_override': 'web.aurae',
      'grpc.default_authority': 'web.aurae',
    });
    try {
      const info = await new Promise<DiscoverResponse>((resolve, reject) =>
        client.discover({}, new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (err, res) => (err ? reject(err) : resolve(res))),
      );
      expect(info.nodeName).toBe('aurae/web');
    } finally {
      client.close();
    }
    expect(await healthStatus(`127.0.0.1:${booted().port}`, 'web.aurae', creds)).toBe(0);
  });

  it('is not the parent: the TLS name "aurae" does not match its certificate', async () => {
    const code = await healthStatus(`127.0.0.1:${booted().port}`, 'aurae', readCreds(image.pkiDir));
    expect(code).toBe(14); // UNAVAILABLE: the handshake failed on the host name
  });

  it('holds its own keys under /run/aurae/pki and none of its parent\'s', async () => {
    const sh = await booted().shell();
    expect((await sh.ok('hostname')).trim()).toBe('web');
    expect((await sh.ok('ls /run/aurae/pki')).trim().split(/\s+/).sort()).toEqual(['ca.crt', 'node.crt', 'node.key', 'spawn-ca.crt', 'spawn-ca.key']);
    expect((await sh.ok('stat -c "%a %n" /run/aurae/pki/node.key /run/aurae/pki/spawn-ca.key')).trim()).toBe('600 /run/aurae/pki/node.key\n600 /run/aurae/pki/spawn-ca.key');
    const everything = await sh.ok('cat /run/aurae/pki/* /run/aurae/config.json');
    for (const parentKey of [files.nodeKey, files.caKey, files.spawnCaKey]) {
      const body = read(parentKey).split('\n').slice(1, -2).join('');
      expect(body.length).toBeGreaterThan(40);
      expect(everything.replace(/\n/g, '')).not.toContain(body);
    }
    // The image it booted is the parent's, and holds no key of it: certificates only (the root CA, the pinned image-signing one).
    expect((await sh.run('ls /etc/aurae/pki')).output.trim().split(/\s+/).sort()).toEqual(['ca.crt', 'image-signing.crt']);
    const config = JSON.parse(await sh.ok('cat /run/aurae/config.json')) as { node: { name: string }; guest: unknown; pki: { serverKey: string } };
    expect(config.node.name).toBe('aurae/web');
    expect(config.guest).toEqual({ parent: 'aurae', depth: 1 });
    expect(config.pki.serverKey).toBe('/run/aurae/pki/node.key');
  });
});
