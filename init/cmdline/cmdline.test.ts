import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../supervisor/config';
import { createMemoryLogger } from '../log';
import { mergeConfig, netmaskToPrefix, parseCmdline, parseIpParam, resolveNodeConfig, tokenizeCmdline } from './index';

const IMAGE = {
  version: 1,
  node: { name: 'node-a' },
  pki: { caCert: '/etc/aurae/pki/ca.crt', serverCert: '/etc/aurae/pki/node.crt', serverKey: '/etc/aurae/pki/node.key' },
};

describe('tokenizeCmdline', () => {
  it('splits on whitespace, honours quotes, stops at --', () => {
    expect(tokenizeCmdline('console=ttyS0 panic=-1  quiet\n')).toEqual(['console=ttyS0', 'panic=-1', 'quiet']);
    expect(tokenizeCmdline('a="b c" "d=e f" g')).toEqual(['a=b c', 'd=e f', 'g']);
    expect(tokenizeCmdline('x=1 -- aurae.name=ignored')).toEqual(['x=1']);
    expect(tokenizeCmdline('empty="" y')).toEqual(['empty=', 'y']);
    expect(tokenizeCmdline('')).toEqual([]);
  });
});

describe('parseCmdline', () => {
  it('turns known aurae.* keys into patches and ignores kernel parameters', () => {
    const { overrides, errors } = parseCmdline(
      'console=ttyS0 quiet aurae.name=web-1 aurae.on_fatal=poweroff aurae.debug_shell=/dev/hvc0 ' +
        'aurae.listen_tcp=0.0.0.0:9443 aurae.grace_ms=2000',
    );
    expect(errors).toEqual([]);
    expect(overrides).toEqual([
      { param: 'aurae.name=web-1', patch: { node: { name: 'web-1' } } },
      { param: 'aurae.on_fatal=poweroff', patch: { node: { onFatal: 'poweroff' } } },
      { param: 'aurae.debug_shell=/dev/hvc0', patch: { debug: { shell: '/dev/hvc0' } } },
      { param: 'aurae.listen_tcp=0.0.0.0:9443', patch: { listen: { tcp: '0.0.0.0:9443' } } },
      { param: 'aurae.grace_ms=2000', patch: { shutdown: { graceMs: 2000 } } },
    ]);
  });

  it('accepts off for the debug shell and the TCP listener', () => {
    expect(parseCmdline('aurae.debug_shell=off aurae.listen_tcp=none').overrides.map((o) => o.patch)).toEqual([
      { debug: { shell: null } },
      { listen: { tcp: null } },
    ]);
  });

  it('reports unknown aurae.* keys, missing values and bad values with what is allowed', () => {
    const { overrides, errors } = parseCmdline(
      'aurae.nmae=x aurae.on_fatal=explode aurae.grace_ms=soon aurae.debug_shell=hvc0 aurae.name aurae.grace_ms= ip=dhcp',
    );
    expect(overrides).toEqual([]);
    expect(errors).toEqual([
      { param: 'aurae.nmae=x', message: expect.stringContaining('unknown parameter "aurae.nmae"; known: aurae.name, aurae.on_fatal') },
      { param: 'aurae.on_fatal=explode', message: 'expected reboot or poweroff' },
      { param: 'aurae.grace_ms=soon', message: 'expected a whole number of milliseconds, e.g. 5000' },
      { param: 'aurae.debug_shell=hvc0', message: 'expected a device path such as /dev/hvc0, or off' },
      { param: 'aurae.name', message: 'aurae.name needs a value (aurae.name=...)' },
      { param: 'aurae.grace_ms=', message: 'aurae.grace_ms needs a value (aurae.grace_ms=...)' },
      { param: 'ip=dhcp', message: expect.stringContaining('expected ip=<client-ip>::<gw-ip>:<netmask>') },
    ]);
  });
});

describe('ip=', () => {
  it('parses the static form for eth0', () => {
    expect(parseIpParam('10.0.2.15::10.0.2.2:255.255.255.0:node-a:eth0:off')).toEqual({
      network: { eth0: { mode: 'static', address: '10.0.2.15/24', gateway: '10.0.2.2' } },
    });
    expect(parseIpParam('192.168.1.5:::255.255.0.0::eth0:none')).toEqual({
      network: { eth0: { mode: 'static', address: '192.168.1.5/16' } },
    });
    expect(parseIpParam('off')).toEqual({ network: { eth0: { mode: 'none' } } });
  });

  it('rejects other devices, autoconf and bad netmasks', () => {
    expect(parseIpParam('10.0.2.15::10.0.2.2:255.255.255.0::eth1:off')).toBe('only device eth0 is supported, got "eth1"');
    expect(parseIpParam('10.0.2.15::10.0.2.2:255.255.255.0::eth0:dhcp')).toMatch(/autoconf off/);
    expect(parseIpParam('10.0.2.15::10.0.2.2:255.0.255.0::eth0:off')).toMatch(/not a valid IPv4 netmask/);
    expect(parseIpParam('::10.0.2.2:255.255.255.0::eth0:off')).toMatch(/client-ip is empty/);
  });

  it('converts netmasks to prefix lengths', () => {
    expect(netmaskToPrefix('255.255.255.0')).toBe(24);
    expect(netmaskToPrefix('255.255.255.255')).toBe(32);
    expect(netmaskToPrefix('0.0.0.0')).toBe(0);
    expect(netmaskToPrefix('255.255.254.0')).toBe(23);
    expect(netmaskToPrefix('255.0.255.0')).toBeNull();
    expect(netmaskToPrefix('256.0.0.0')).toBeNull();
  });
});

describe('mergeConfig', () => {
  it('applies valid overrides over the image config with defaults filled in', () => {
    const { overrides } = parseCmdline('aurae.name=web-1 aurae.grace_ms=250 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off');
    const { config, applied, errors } = mergeConfig(IMAGE, '/etc/aurae/config.json', overrides);
    expect(errors).toEqual([]);
    expect(applied).toHaveLength(3);
    expect(config.node).toEqual({ name: 'web-1', onFatal: 'reboot' });
    expect(config.shutdown.graceMs).toBe(250);
    expect(config.network.eth0).toEqual({ mode: 'static', address: '10.0.2.15/24', gateway: '10.0.2.2' });
    expect(config.listen).toEqual({ socket: '/run/aurae/aurae.sock', tcp: '0.0.0.0:8443' });
  });

  it('drops an override the schema rejects, naming it, and keeps the rest', () => {
    const { overrides } = parseCmdline('aurae.name=Bad_Name aurae.grace_ms=999999999 aurae.listen_tcp=nope aurae.on_fatal=poweroff');
    const { config, applied, errors } = mergeConfig(IMAGE, 'image', overrides);
    expect(applied).toEqual(['aurae.on_fatal=poweroff']);
    expect(config.node).toEqual({ name: 'node-a', onFatal: 'poweroff' });
    expect(config.shutdown.graceMs).toBe(5000);
    expect(errors.map((e) => e.param)).toEqual(['aurae.name=Bad_Name', 'aurae.grace_ms=999999999', 'aurae.listen_tcp=nope']);
    expect(errors[0]!.message).toMatch(/^node\.name: expected a DNS label/);
    expect(errors[2]!.message).toMatch(/^listen\.tcp: expected host:port/);
  });

  it('replaces eth0 whole rather than merging a static address into mode none', () => {
    const image = { ...IMAGE, network: { eth0: { mode: 'static', address: '10.0.0.2/8', gateway: '10.0.0.1' } } };
    const { config } = mergeConfig(image, 'image', parseCmdline('ip=off').overrides);
    expect(config.network.eth0).toEqual({ mode: 'none' });
  });

  it('throws ConfigError for an invalid image config', () => {
    expect(() => mergeConfig({ version: 2 }, '/etc/aurae/config.json', [])).toThrow(ConfigError);
  });
});

describe('resolveNodeConfig', () => {
  it('logs applied and ignored parameters and never fails on a bad one', () => {
    const log = createMemoryLogger();
    const config = resolveNodeConfig(JSON.stringify(IMAGE), 'image', 'quiet aurae.name=n2 aurae.bogus=1', log);
    expect(config.node.name).toBe('n2');
    expect(log.lines).toEqual([
      '[   0.000] init: kernel command line: applied aurae.name=n2',
      expect.stringMatching(/^\[   0\.000\] init: warning: kernel command line: ignoring aurae\.bogus=1: unknown parameter/),
    ]);
  });

  it('reports invalid JSON as a ConfigError naming the file', () => {
    expect(() => resolveNodeConfig('{', '/etc/aurae/config.json', '', createMemoryLogger())).toThrow(
      /\/etc\/aurae\/config\.json: invalid node config:\n  not valid JSON/,
    );
  });
});
