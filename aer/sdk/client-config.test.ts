import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ClientConfigError, clientConfigPath, loadClientConfig, parseClientConfigText } from './client-config';

const valid = { version: 1, node: 'node-1', address: 'unix:///run/aurae/aurae.sock', ca: 'pki/ca.crt', cert: '/abs/admin.crt', key: 'admin.key' };
const text = (over: Record<string, unknown> = {}) => JSON.stringify({ ...valid, ...over });
const scratch = mkdtempSync(join(tmpdir(), 'aurae-client-config-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('client config', () => {
  it('resolves relative PEM paths against the config file folder', () => {
    expect(parseClientConfigText(text(), '/home/u/.config/aurae/client.json', {}, {})).toEqual({
      ...valid,
      ca: '/home/u/.config/aurae/pki/ca.crt',
      cert: '/abs/admin.crt',
      key: '/home/u/.config/aurae/admin.key',
      path: '/home/u/.config/aurae/client.json',
    });
  });

  it('takes the address from --address, then AURAE_ADDRESS, then the file; --node replaces node', () => {
    const env = { AURAE_ADDRESS: '10.0.0.5:8443' };
    expect(parseClientConfigText(text(), '/c.json', {}, env).address).toBe('10.0.0.5:8443');
    expect(parseClientConfigText(text(), '/c.json', { address: '[::1]:9000' }, env).address).toBe('[::1]:9000');
    expect(parseClientConfigText(text(), '/c.json', { node: 'other' }, {}).node).toBe('other');
    // Empty variables count as unset.
    expect(parseClientConfigText(text(), '/c.json', {}, { AURAE_ADDRESS: '' }).address).toBe(valid.address);
    expect(clientConfigPath(undefined, { AURAE_CONFIG: '' }, '/h')).toBe('/h/.config/aurae/client.json');
  });

  it('accepts unix:///path and host:port addresses only', () => {
    for (const address of ['unix:///a.sock', 'localhost:1', '127.0.0.1:65535', '[::1]:8443']) {
      expect(parseClientConfigText(text({ address }), '/c.json', {}, {}).address).toBe(address);
    }
    for (const address of ['unix:relative.sock', 'localhost', '127.0.0.1:0', '127.0.0.1:70000', 'http://x:1']) {
      expect(() => parseClientConfigText(text({ address }), '/c.json', {}, {})).toThrow(ClientConfigError);
    }
    expect(() => parseClientConfigText(text(), '/c.json', { address: 'nope' }, {})).toThrow(
      '--address "nope": expected unix:///path/to/aurae.sock or host:port, e.g. 127.0.0.1:8443',
    );
    expect(() => parseClientConfigText(text(), '/c.json', {}, { AURAE_ADDRESS: 'nope' })).toThrow(/^AURAE_ADDRESS "nope"/);
  });

  it('names every bad field, and rejects unknown ones', () => {
    expect(() => parseClientConfigText(text({ version: 2, node: 'Bad_Name', extra: true }), '/c.json', {}, {})).toThrow(
      /client config \/c.json is invalid: version: .*; node: expected the node name \(a DNS label\), e.g. node-1; \(root\): Unrecognized key: "extra"/,
    );
    expect(() => parseClientConfigText('{', '/c.json', {}, {})).toThrow(/client config \/c.json is not valid JSON/);
  });

  it('finds the file via the option, AURAE_CONFIG, then ~/.config/aurae/client.json', () => {
    expect(clientConfigPath('/x.json', { AURAE_CONFIG: '/y.json' }, '/home/u')).toBe('/x.json');
    expect(clientConfigPath(undefined, { AURAE_CONFIG: '/y.json' }, '/home/u')).toBe('/y.json');
    expect(clientConfigPath(undefined, {}, '/home/u')).toBe('/home/u/.config/aurae/client.json');
  });

  it('loads from disk, and says how to fix a missing file', () => {
    const path = join(scratch, 'client.json');
    writeFileSync(path, text());
    expect(loadClientConfig({}, { AURAE_CONFIG: path }).ca).toBe(join(scratch, 'pki/ca.crt'));
    const missing = join(scratch, 'missing.json');
    expect(() => loadClientConfig({ config: missing }, {})).toThrow(
      `cannot read client config ${missing} (ENOENT): pass --config PATH, set AURAE_CONFIG, or create that file`,
    );
  });
});
