// auraed on the host (spawned, as root) serves the CRI on cri.sock beside its API socket, and stops it cleanly.
// Priv tier: the CRI is only served when auraed runs as root.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PreparedNode, type RunningTestAuraed, launchAuraed, prepareTestNode } from '../daemon/testing';
import { AURAED_VERSION } from '../daemon/version';
import { type CriClients, call, criClients } from './testing';

describe('auraed with the CRI (default config)', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let clients: CriClients;
  let socket: string;
  beforeAll(async () => {
    node = await prepareTestNode({ nodeName: 'cri-1' });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
    socket = path.join(path.dirname(node.socket), 'cri.sock');
    clients = criClients(socket);
  }, 60_000);

  afterAll(async () => {
    clients?.close();
    await auraed?.stop();
    node?.cleanup();
  });

  it('listens on cri.sock beside the API socket, 0600', () => {
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(auraed.logs.some((l) => l.msg === 'listening' && l.subsystem === 'cri' && l.address === `unix://${socket}`)).toBe(true);
  });

  it('answers Version, Status and ImageFsInfo over plain gRPC', async () => {
    const { runtime, images } = clients;
    expect(await call(runtime, runtime.version, { version: 'v1' })).toMatchObject({ runtimeName: 'aurae', runtimeVersion: AURAED_VERSION, runtimeApiVersion: 'v1' });
    const conditions = (await call(runtime, runtime.status, { verbose: false })).status!.conditions;
    expect(conditions.map((c) => c.type)).toEqual(['RuntimeReady', 'NetworkReady']);
    expect((await call(images, images.listImages, {})).images).toEqual([]);
    const fs = (await call(images, images.imageFsInfo, {})).imageFilesystems[0]!;
    expect(fs.fsId!.mountpoint).toBe(path.join(node.dir, 'state', 'images'));
  });

  it('stops with auraed: a graceful exit, nothing answering on the socket', async () => {
    clients.close();
    expect(await auraed.stop()).toEqual({ code: 0, signal: null });
    const again = criClients(socket);
    try {
      await expect(call(again.runtime, again.runtime.version, { version: '' }, 2000)).rejects.toThrow();
    } finally {
      again.close();
    }
  });
});

describe('auraed with cri.enabled false', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  beforeAll(async () => {
    node = await prepareTestNode({ nodeName: 'cri-off', config: { cri: { enabled: false } } });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
  }, 60_000);

  afterAll(async () => {
    await auraed?.stop();
    node?.cleanup();
  });

  it('serves no CRI socket', () => {
    expect(existsSync(path.join(path.dirname(node.socket), 'cri.sock'))).toBe(false);
  });
});
