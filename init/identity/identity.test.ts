import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeIdentityDocument } from '../../image/build';
import { parseNodeConfig, type NodeConfig } from '../../supervisor/config';
import { ensurePki } from '../../supervisor/pki';
import { buildGpt, guidFromSeed, PARTITION_TYPES } from '../disk';
import { createMemoryLogger } from '../log';
import {
  findIdentityPartition,
  IDENTITY_PARTITION_NAME,
  IDENTITY_PARTITION_TYPE,
  identityBytes,
  identityDocumentText,
  type IdentityDeps,
  IdentityError,
  loadNodeIdentity,
  noIdentityReport,
  parseIdentityDocument,
} from './index';

const scratch = mkdtempSync(join(tmpdir(), 'aurae-identity-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let text: string;
let otherText: string;
let keys: string[];
beforeAll(async () => {
  const { files } = await ensurePki(join(scratch, 'pki'), { nodeName: 'aurae' });
  text = readFileSync(writeIdentityDocument(join(scratch, 'pki'), 'aurae', files), 'utf8');
  const other = await ensurePki(join(scratch, 'other'), { nodeName: 'aurae' });
  otherText = readFileSync(writeIdentityDocument(join(scratch, 'other'), 'aurae', other.files), 'utf8');
  keys = [files.nodeKey, files.spawnCaKey].map((f) => readFileSync(f, 'utf8'));
});

const imageConfig = (): NodeConfig =>
  parseNodeConfig(
    {
      version: 1,
      node: { name: 'aurae' },
      pki: { caCert: '/etc/aurae/pki/ca.crt', serverCert: '/run/aurae/pki/node.crt', serverKey: '/run/aurae/pki/node.key', spawnCaCert: '/run/aurae/pki/spawn-ca.crt', spawnCaKey: '/run/aurae/pki/spawn-ca.key' },
    },
    'test',
  );

describe('identity document', () => {
  it('the build writes it beside the PKI, 0600, with the node key and the spawn CA, and it parses back', () => {
    const file = join(scratch, 'pki', 'identity.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const identity = parseIdentityDocument(text);
    expect(identity).toMatchObject({ version: 1, kind: 'aurae-node-identity', node: 'aurae' });
    expect(identity.serverKey).toBe(keys[0]);
    expect(identity.spawnCaKey).toBe(keys[1]);
    expect(identityDocumentText(identity)).toBe(text);
  });

  it('refuses unknown fields, bad PEMs, half a spawn CA and a key of another PKI, naming each field', () => {
    const good = JSON.parse(text) as Record<string, unknown>;
    const problems = (value: unknown) => {
      try {
        parseIdentityDocument(JSON.stringify(value), 'test');
      } catch (err) {
        expect(err).toBeInstanceOf(IdentityError);
        expect((err as Error).message).toMatch(/^test: invalid node identity:/);
        return (err as IdentityError).problems;
      }
      throw new Error('accepted');
    };
    expect(problems({ ...good, extra: 1 })).toEqual([expect.stringMatching(/^\(root\): .*extra/)]);
    expect(problems({ ...good, serverKey: 'nope' })).toEqual(['serverKey: expected one PEM PKCS#8 private key (a "BEGIN PRIVATE KEY" block)']);
    expect(problems({ ...good, spawnCaKey: null })).toEqual(['spawnCaKey: spawnCaCert and spawnCaKey go together: set both or neither']);
    const other = JSON.parse(otherText) as Record<string, unknown>;
    expect(problems({ ...good, serverKey: other.serverKey })).toEqual([expect.stringMatching(/^serverKey: is not the key of the first certificate in serverCertChain/)]);
    expect(() => parseIdentityDocument('{', 'x')).toThrow(/x: invalid node identity:\n {2}\(root\): not valid JSON/);
    expect(() => parseIdentityDocument(Buffer.alloc(70_000, 0x20), 'x')).toThrow(/70000 bytes is more than the 65536/);
  });

  it('a partition or fw_cfg item holds the document up to the first NUL; zeros are no document', () => {
    expect(identityBytes(Buffer.concat([Buffer.from('{"a":1}'), Buffer.alloc(100)]))?.toString()).toBe('{"a":1}');
    expect(identityBytes(Buffer.alloc(4096))).toBeNull();
    expect(identityBytes(Buffer.from('{}'))?.toString()).toBe('{}');
  });
});

function fakes(o: { fwCfg?: Buffer | null | Error; partition?: { device: string; data: Buffer } | null } = {}) {
  const log = createMemoryLogger();
  const written = new Map<string, { content: string; mode: number }>();
  const dirs: [string, number][] = [];
  const deps: IdentityDeps = {
    readFwCfg: () => {
      if (o.fwCfg instanceof Error) throw o.fwCfg;
      return o.fwCfg ?? null;
    },
    readPartition: () => o.partition ?? null,
    mkdir: (path, mode) => dirs.push([path, mode]),
    writeFile: (path, content, mode) => written.set(path, { content, mode }),
    log,
  };
  return { deps, log, written, dirs };
}

describe('loadNodeIdentity', () => {
  it('from fw_cfg: writes the PEMs to /run/aurae/pki (0700, keys 0600), returns the config and logs the source, never a key', () => {
    const f = fakes({ fwCfg: Buffer.from(text), partition: { device: 'vda2', data: Buffer.from(otherText) } });
    const out = loadNodeIdentity(imageConfig(), f.deps);
    expect(out).toMatchObject({ ok: true, source: 'fw_cfg opt/aurae/identity' });
    expect(f.dirs).toEqual([['/run/aurae/pki', 0o700]]);
    expect([...f.written].map(([p, w]) => [p, w.mode.toString(8)])).toEqual([
      ['/run/aurae/pki/node.crt', '644'],
      ['/run/aurae/pki/node.key', '600'],
      ['/run/aurae/pki/spawn-ca.crt', '644'],
      ['/run/aurae/pki/spawn-ca.key', '600'],
    ]);
    expect(f.written.get('/run/aurae/pki/node.key')?.content).toBe(keys[0]);
    expect(f.log.lines).toEqual(['[   0.000] init: identity: node aurae from fw_cfg opt/aurae/identity, with its spawn CA; PEMs in /run/aurae/pki']);
    const log = f.log.lines.join('\n');
    for (const key of keys) expect(log).not.toContain(key.split('\n')[1]);
  });

  it('from the partition when fw_cfg has none: the document ends at the first NUL', () => {
    const f = fakes({ partition: { device: 'vda2', data: Buffer.concat([Buffer.from(text), Buffer.alloc(65536 - text.length)]) } });
    const out = loadNodeIdentity(imageConfig(), f.deps);
    expect(out).toMatchObject({ ok: true, source: 'partition AURAE_IDENTITY (/dev/vda2)' });
    expect(f.written.get('/run/aurae/pki/node.key')?.mode).toBe(0o600);
  });

  it('an identity without a spawn CA: the node runs and does not spawn (no spawn paths in its config)', () => {
    const noSpawn = identityDocumentText({ ...parseIdentityDocument(text), spawnCaCert: null, spawnCaKey: null });
    const f = fakes({ fwCfg: Buffer.from(noSpawn) });
    const out = loadNodeIdentity(imageConfig(), f.deps);
    expect(out.ok && out.config.pki).toEqual({ caCert: '/etc/aurae/pki/ca.crt', serverCert: '/run/aurae/pki/node.crt', serverKey: '/run/aurae/pki/node.key', spawnCaCert: null, spawnCaKey: null });
    expect([...f.written.keys()]).toEqual(['/run/aurae/pki/node.crt', '/run/aurae/pki/node.key']);
    expect(f.log.lines.join('\n')).toMatch(/without a spawn CA \(this node will not spawn children\)/);
  });

  it('a bad fw_cfg item is logged and the partition is tried next', () => {
    const f = fakes({ fwCfg: Buffer.from('{"version":2}'), partition: { device: 'vda2', data: Buffer.from(text) } });
    expect(loadNodeIdentity(imageConfig(), f.deps)).toMatchObject({ ok: true, source: 'partition AURAE_IDENTITY (/dev/vda2)' });
    expect(f.log.lines.join('\n')).toMatch(/init: error: identity: fw_cfg opt\/aurae\/identity: invalid node identity:/);
  });

  it('no identity: says what it tried and what to do, in text and in one AURAE_NO_IDENTITY line; writes nothing', () => {
    const f = fakes({ fwCfg: null, partition: { device: 'vda2', data: Buffer.alloc(4096) } });
    const out = loadNodeIdentity(imageConfig(), f.deps);
    expect(out).toEqual({
      ok: false,
      node: 'aurae',
      tried: [
        { source: 'fw_cfg opt/aurae/identity', problem: 'not given' },
        { source: 'partition AURAE_IDENTITY (/dev/vda2)', problem: 'partition AURAE_IDENTITY (/dev/vda2): blank (the disk was flashed without --identity)' },
      ],
    });
    expect(f.written.size).toBe(0);
    if (out.ok) throw new Error('unreachable');
    const report = noIdentityReport(out);
    expect(report.message).toMatch(/^no identity for node aurae: auraed is not started and this node serves nothing/);
    expect(report.message).toMatch(/aer image flash out\/image\/disk.raw \/dev\/DISK --identity out\/pki\/identity.json/);
    const line = /^AURAE_NO_IDENTITY (\{.*\})$/.exec(report.line);
    expect(JSON.parse(line![1]!)).toMatchObject({ node: 'aurae', tried: out.tried, fix: [expect.stringMatching(/npm start/), expect.stringMatching(/--identity/)] });
  });

  it('refuses the identity of another node name, and read errors are reported, not thrown', () => {
    const renamed = parseNodeConfig({ ...imageConfig(), node: { name: 'edge' } }, 'test');
    const f = fakes({ fwCfg: Buffer.from(text), partition: null });
    const out = loadNodeIdentity(renamed, f.deps);
    expect(out.ok).toBe(false);
    expect(f.log.lines.join('\n')).toMatch(/it is the identity of node "aurae", not of this node "edge"/);
    const broken = fakes({ fwCfg: Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }) });
    expect(loadNodeIdentity(imageConfig(), broken.deps)).toMatchObject({ ok: false, tried: [{ problem: 'reading failed: EIO: i/o error' }, { problem: 'no such partition on the boot disk' }] });
  });
});

describe('findIdentityPartition', () => {
  const MIB = 1024 * 1024;
  /** vda: ESP + identity partition (disk.raw); vdb: another disk with an identity partition of its own. */
  function disks(identityType = IDENTITY_PARTITION_TYPE) {
    const make = (seed: string) => {
      const disk = Buffer.alloc(8 * MIB);
      const gpt = buildGpt({
        diskSectors: disk.length / 512,
        diskGuid: guidFromSeed(seed),
        partitions: [
          { typeGuid: PARTITION_TYPES.esp, uniqueGuid: guidFromSeed(`${seed}esp`), firstLba: 2048, lastLba: 4095, name: 'AURAE_BOOT' },
          { typeGuid: identityType, uniqueGuid: guidFromSeed(`${seed}id`), firstLba: 4096, lastLba: 6143, name: IDENTITY_PARTITION_NAME },
        ],
      });
      gpt.primary.copy(disk, 0);
      gpt.backup.copy(disk, gpt.backupOffset);
      disk.write(`identity of ${seed}`, 4096 * 512);
      return disk;
    };
    const all: Record<string, Buffer> = { vda: make('vda'), vdb: make('vdb') };
    return {
      parentDisk: (n: string) => /^vd[a-z]\d+$/.test(n) ? n.slice(0, 3) : null,
      diskInfo: (d: string) => ({ sectors: all[d]!.length / 512 }),
      readAt: (d: string, offset: number, length: number) => Buffer.from(all[d]!.subarray(offset, offset + length)),
    };
  }

  it('reads the partition of the boot disk only, up to the document limit', () => {
    const found = findIdentityPartition(disks(), 'vda1');
    expect(found?.device).toBe('vda2');
    expect(found?.data.length).toBe(65536);
    expect(identityBytes(found!.data)?.toString()).toBe('identity of vda');
    expect(findIdentityPartition(disks(), 'vdb1')?.data.subarray(0, 15).toString()).toBe('identity of vdb');
  });

  it('none without a boot disk, or when the partition has another type', () => {
    expect(findIdentityPartition(disks(), null)).toBeNull();
    expect(findIdentityPartition(disks(), 'vda')).toBeNull(); // a whole-disk boot volume (esp.img attached as a disk)
    expect(findIdentityPartition(disks(PARTITION_TYPES.linux), 'vda1')).toBeNull();
  });
});
