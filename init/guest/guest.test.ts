import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGuestPayload, guestPayloadText, mintChildIdentity } from '../../guest';
import { parseNodeConfig } from '../../supervisor/config';
import { ensurePki } from '../../supervisor/pki';
import { createMemoryLogger } from '../log';
import { loadGuestConfig, type GuestModeDeps } from './index';

const scratch = mkdtempSync(join(tmpdir(), 'aurae-init-guest-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let payloadText: string;
let parentKeys: string[];
beforeAll(async () => {
  const { files } = await ensurePki(join(scratch, 'pki'), { nodeName: 'aurae' });
  const read = (p: string) => readFileSync(p, 'utf8');
  const child = await mintChildIdentity({ nodePath: 'aurae', spawnCa: { certPem: read(files.spawnCaCert), keyPem: read(files.spawnCaKey) } }, 'web', 2);
  const parent = parseNodeConfig(
    { version: 1, node: { name: 'aurae' }, pki: { caCert: '/etc/aurae/pki/ca.crt', serverCert: '/etc/aurae/pki/node.crt', serverKey: '/etc/aurae/pki/node.key' } },
    'test',
  );
  payloadText = guestPayloadText(buildGuestPayload(parent, read(files.caCert), child));
  parentKeys = [files.caKey, files.nodeKey, files.spawnCaKey].map(read);
});

function fakes(payload: string | null | Error, cmdline = 'console=ttyS0 panic=-1') {
  const log = createMemoryLogger();
  const written = new Map<string, { content: string; mode: number }>();
  const dirs: [string, number][] = [];
  const deps: GuestModeDeps = {
    readPayload: () => {
      if (payload instanceof Error) throw payload;
      return payload === null ? null : Buffer.from(payload);
    },
    mkdir: (path, mode) => dirs.push([path, mode]),
    writeFile: (path, content, mode) => written.set(path, { content, mode }),
    cmdline,
    log,
  };
  return { deps, log, written, dirs };
}

describe('loadGuestConfig', () => {
  it('no payload: not a guest, nothing written or logged', () => {
    const f = fakes(null);
    expect(loadGuestConfig(f.deps)).toBeNull();
    expect(f.written.size).toBe(0);
    expect(f.log.lines).toEqual([]);
  });

  it('a payload: writes the PEMs (keys 0600), returns the child config and logs guest mode', () => {
    const f = fakes(payloadText);
    const config = loadGuestConfig(f.deps);
    expect(config?.node.name).toBe('aurae/web');
    expect(config?.pki.serverCert).toBe('/run/aurae/pki/node.crt');
    expect(f.dirs).toEqual([['/run/aurae/pki', 0o700]]);
    expect([...f.written].map(([path, { mode }]) => [path, mode.toString(8)])).toEqual([
      ['/run/aurae/pki/ca.crt', '644'],
      ['/run/aurae/pki/node.crt', '644'],
      ['/run/aurae/pki/node.key', '600'],
      ['/run/aurae/pki/spawn-ca.crt', '644'],
      ['/run/aurae/pki/spawn-ca.key', '600'],
    ]);
    const everything = [...f.written.values()].map((w) => w.content).join('');
    for (const key of parentKeys) expect(everything).not.toContain(key);
    expect(f.log.lines).toContain('[   0.000] init: guest mode: node aurae/web (parent aurae, depth 1)');
  });

  it('applies the kernel command line on top of the payload', () => {
    const f = fakes(payloadText, 'aurae.grace_ms=777 aurae.listen_tcp=0.0.0.0:9000');
    const config = loadGuestConfig(f.deps);
    expect(config?.shutdown.graceMs).toBe(777);
    expect(config?.listen.tcp).toBe('0.0.0.0:9000');
  });

  it('ignores a command line that would rename the child (the config it makes is invalid)', () => {
    const f = fakes(payloadText, 'aurae.name=other');
    expect(loadGuestConfig(f.deps)?.node.name).toBe('aurae/web');
    expect(f.log.lines.join('\n')).toMatch(/kernel command line: ignoring aurae.name=other/);
  });

  it('a bad payload is logged with the field and init falls back (nothing written)', () => {
    const bad = JSON.parse(payloadText) as { config: { node: { name: string } } };
    bad.config.node.name = 'aurae/Web';
    const f = fakes(JSON.stringify(bad));
    expect(loadGuestConfig(f.deps)).toBeNull();
    const text = f.log.lines.join('\n');
    expect(text).toMatch(/init: error: guest mode: \/sys\/firmware\/qemu_fw_cfg\/by_name\/opt\/aurae\/payload: invalid guest payload:/);
    expect(text).toMatch(/config\.node\.name: expected a DNS label/);
    expect(text).toMatch(/booting from the image config \/etc\/aurae\/config.json \(without an identity/);
    expect(f.written.size).toBe(0);
  });

  it('garbage and read errors fall back too', () => {
    const garbage = fakes('\0\0\0');
    expect(loadGuestConfig(garbage.deps)).toBeNull();
    expect(garbage.log.lines.join('\n')).toMatch(/\(root\): not valid JSON/);
    const unreadable = fakes(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' }));
    expect(loadGuestConfig(unreadable.deps)).toBeNull();
    expect(unreadable.log.lines.join('\n')).toMatch(/guest mode: reading \/sys\/firmware\/qemu_fw_cfg\/by_name\/opt\/aurae\/payload failed: EIO/);
  });
});
