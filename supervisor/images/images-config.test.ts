// The node config's images section: strict, defaults empty, registry keys are host[:port].
import { describe, expect, it } from 'vitest';
import { ConfigError, parseNodeConfig } from '../config';

const base = { version: 1, node: { name: 'n1' }, pki: { caCert: '/ca.pem', serverCert: '/s.pem', serverKey: '/s.key' } };

describe('NodeConfig.images', () => {
  it('defaults to no registries; fills each registry entry', () => {
    expect(parseNodeConfig(base, 'test').images).toEqual({ registries: {} });
    const c = parseNodeConfig({ ...base, images: { registries: { '10.0.2.100:5000': { insecure: true }, 'ghcr.io': { caFile: '/etc/ca.pem', auth: { username: 'u', password: 'p' } } } } }, 'test');
    expect(c.images.registries).toEqual({
      '10.0.2.100:5000': { insecure: true, caFile: null, auth: null },
      'ghcr.io': { insecure: false, caFile: '/etc/ca.pem', auth: { username: 'u', password: 'p' } },
    });
  });

  it.each([
    [{ registries: { 'ghcr.io': { insecure: true, tls: false } } }, 'images.registries.ghcr.io'],
    [{ registries: { 'https://ghcr.io': {} } }, 'images.registries'],
    [{ registries: { 'ghcr.io': { caFile: 'relative.pem' } } }, 'images.registries.ghcr.io.caFile'],
    [{ registries: { 'ghcr.io': { auth: { username: '' , password: 'p' } } } }, 'images.registries.ghcr.io.auth.username'],
    [{ registries: {}, mirrors: [] }, 'images'],
  ])('refuses %j naming %s', (images, field) => {
    let err: unknown;
    try {
      parseNodeConfig({ ...base, images }, 'test');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.join('\n')).toContain(field);
  });
});
