// Pod networking plans, unit tier: CIDR parsing and address allocation, the ip commands for the bridge and a pod's
// veth (idempotent against what is observed), the nftables ruleset, /etc files, published ports and conflicts.
import { describe, expect, it } from 'vitest';
import { ConfigError, parseNodeConfig } from '../config';
import {
  allocatePodAddress,
  DEFAULT_POD_NETWORK,
  effectivePublish,
  gatewayAddress,
  hostnameFile,
  hostsFile,
  hostVethName,
  intToIpv4,
  ipv4ToInt,
  nftRuleset,
  nodeNetworkPlan,
  parseCidr,
  podAddressUsable,
  podLinkPlan,
  podUnlinkPlan,
  publishConflict,
  resolvConf,
} from './network-plan';

const cfg = DEFAULT_POD_NETWORK;
const cidr = parseCidr(cfg.cidr);

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return `${(err as { code: string }).code} ${(err as Error).message}`;
  }
  return 'accepted';
}

describe('CIDR and addresses', () => {
  it('parses the pod CIDR; names the field and refuses host bits and unusable prefixes', () => {
    expect(parseCidr('10.88.0.0/16')).toEqual({ network: ipv4ToInt('10.88.0.0'), prefix: 16, size: 65_536 });
    expect(intToIpv4(ipv4ToInt('192.168.1.254')!)).toBe('192.168.1.254');
    expect(ipv4ToInt('1.2.3.256')).toBeNull();
    expect(code(() => parseCidr('10.88.0.1/16'))).toBe('INVALID_ARGUMENT pods.network.cidr: "10.88.0.1/16" has host bits set: the network is 10.88.0.0/16');
    expect(code(() => parseCidr('10.88.0.0/31'))).toMatch(/^INVALID_ARGUMENT pods\.network\.cidr: "10\.88\.0\.0\/31" is not a pod CIDR: an IPv4 network with a prefix of 8\.\.30/);
    expect(code(() => parseCidr('10.88.0.0'))).toMatch(/is not a pod CIDR/);
    expect(code(() => parseCidr('fd00::/64'))).toMatch(/is not a pod CIDR/);
  });

  it('gives the bridge the first address and pods the lowest free one; keeps a stored address when still valid', () => {
    expect(gatewayAddress(cidr)).toBe('10.88.0.1');
    expect(allocatePodAddress(cidr, [])).toBe('10.88.0.2');
    expect(allocatePodAddress(cidr, ['10.88.0.2', '10.88.0.4'])).toBe('10.88.0.3');
    expect(allocatePodAddress(cidr, ['10.88.0.2'], '10.88.7.9')).toBe('10.88.7.9');
    // The stored one is taken by another pod, or outside a changed CIDR, or the gateway: a fresh one.
    expect(allocatePodAddress(cidr, ['10.88.0.2', '10.88.7.9'], '10.88.7.9')).toBe('10.88.0.3');
    expect(allocatePodAddress(cidr, [], '10.89.0.5')).toBe('10.88.0.2');
    expect(allocatePodAddress(cidr, [], '10.88.0.1')).toBe('10.88.0.2');
    expect(podAddressUsable(cidr, '10.88.255.255')).toBe(false);
    expect(podAddressUsable(cidr, '10.88.255.254')).toBe(true);
  });

  it('is RESOURCE_EXHAUSTED when the CIDR is full, saying what to do', () => {
    const small = parseCidr('10.1.0.0/30'); // .0 network, .1 bridge, .2 the only pod address, .3 broadcast
    expect(allocatePodAddress(small, [])).toBe('10.1.0.2');
    expect(code(() => allocatePodAddress(small, ['10.1.0.2']))).toBe(
      'RESOURCE_EXHAUSTED allocating a pod address failed: every address of 10.1.0.0/30 is taken (1 pods): remove pods or widen pods.network.cidr',
    );
  });
});

describe('ip commands', () => {
  it('creates the bridge only when missing, then (re)sets its address and state; forwarding and route_localnet on', () => {
    const fresh = nodeNetworkPlan(cfg, { bridgeExists: false });
    expect(fresh.ip.map((c) => c.args.join(' '))).toEqual(['link add aurae0 type bridge', 'addr replace 10.88.0.1/16 dev aurae0', 'link set aurae0 up']);
    expect(fresh.ip.every((c) => c.netns === null)).toBe(true);
    expect(fresh.sysctl).toEqual([
      { path: '/proc/sys/net/ipv4/ip_forward', value: '1' },
      { path: '/proc/sys/net/ipv4/conf/aurae0/route_localnet', value: '1' },
    ]);
    expect(nodeNetworkPlan(cfg, { bridgeExists: true }).ip.map((c) => c.args[0] + ' ' + c.args[1])).toEqual(['addr replace', 'link set']);
  });

  it('names the node end of a veth from a hash of the pod: at most 15 bytes, stable, distinct', () => {
    expect(hostVethName('web')).toMatch(/^av[0-9a-f]{12}$/);
    expect(hostVethName('web')).toBe(hostVethName('web'));
    expect(hostVethName('web')).not.toBe(hostVethName('web2'));
    expect(hostVethName('a'.repeat(63)).length).toBeLessThanOrEqual(15);
  });

  it("connects a new pod: veth pair into its namespace, bridge port, address, links up, default route", () => {
    const veth = hostVethName('web');
    const plan = podLinkPlan(cfg, { pod: 'web', address: '10.88.0.2', netns: '/run/aurae/pods/web/ns/net' }, { hostLinkExists: false, podAddress: null });
    expect(plan.map((c) => `${c.netns ? 'pod' : 'node'}: ${c.args.join(' ')}`)).toEqual([
      `node: link add ${veth} type veth peer name eth0 netns /run/aurae/pods/web/ns/net`,
      `node: link set ${veth} master aurae0 up`,
      'pod: addr replace 10.88.0.2/16 dev eth0',
      'pod: link set lo up',
      'pod: link set eth0 up',
      'pod: route replace default via 10.88.0.1 dev eth0',
    ]);
    expect(plan.filter((c) => c.netns).every((c) => c.netns === '/run/aurae/pods/web/ns/net')).toBe(true);
  });

  it('leaves a connected pod paired; replaces a changed address; recreates a half-left pair', () => {
    const input = { pod: 'web', address: '10.88.0.2', netns: '/ns' };
    const veth = hostVethName('web');
    const same = podLinkPlan(cfg, input, { hostLinkExists: true, podAddress: '10.88.0.2/16' }).map((c) => c.args.join(' '));
    expect(same.some((a) => a.startsWith('link add') || a.startsWith('link del') || a.includes('flush'))).toBe(false);
    const moved = podLinkPlan(cfg, input, { hostLinkExists: true, podAddress: '10.88.0.9/16' }).map((c) => c.args.join(' '));
    expect(moved).toContain('addr flush dev eth0');
    const half = podLinkPlan(cfg, input, { hostLinkExists: true, podAddress: null }).map((c) => c.args.join(' '));
    expect(half.slice(0, 2)).toEqual([`link del ${veth}`, `link add ${veth} type veth peer name eth0 netns /ns`]);
    expect(podUnlinkPlan('web')).toEqual([{ netns: null, args: ['link', 'del', veth] }]);
  });
});

describe('nftables ruleset', () => {
  it('replaces one table atomically: masquerade for pod egress and loopback into the bridge; DNAT per published port', () => {
    const text = nftRuleset(cfg, [
      { name: 'web', address: '10.88.0.2', publish: [{ nodePort: 8080, podPort: 80, protocol: 'tcp' }, { nodePort: 53, podPort: 5353, protocol: 'udp' }] },
      { name: 'db', address: '10.88.0.3', publish: [] },
    ]);
    expect(text).toBe(
      [
        'table ip aurae {}',
        'delete table ip aurae',
        'table ip aurae {',
        '  chain prerouting {',
        '    type nat hook prerouting priority dstnat; policy accept;',
        '    iifname != "aurae0" udp dport 53 dnat to 10.88.0.2:5353 comment "pod web"',
        '    iifname != "aurae0" tcp dport 8080 dnat to 10.88.0.2:80 comment "pod web"',
        '  }',
        '  chain output {',
        '    type nat hook output priority -100; policy accept;',
        '    oifname "lo" udp dport 53 dnat to 10.88.0.2:5353 comment "pod web"',
        '    oifname "lo" tcp dport 8080 dnat to 10.88.0.2:80 comment "pod web"',
        '  }',
        '  chain postrouting {',
        '    type nat hook postrouting priority srcnat; policy accept;',
        '    ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 masquerade',
        '    ip saddr 127.0.0.0/8 oifname "aurae0" masquerade',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    // No pods: the table stays, with masquerade only.
    expect(nftRuleset(cfg, [])).not.toMatch(/dnat/);
  });
});

describe('/etc files', () => {
  it('hosts: localhost and the pod on its address; hostname: the pod', () => {
    expect(hostsFile('web', '10.88.0.2')).toBe('127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.88.0.2\tweb\n');
    expect(hostnameFile('web')).toBe('web\n');
  });

  it("resolv.conf: the config's servers, else the node's (without loopback ones, search kept), else 8.8.8.8 and 8.8.4.4", () => {
    const node = 'search example.com\nnameserver 127.0.0.53\nnameserver 10.0.2.3\noptions edns0\n';
    expect(resolvConf(node, ['1.1.1.1'])).toEqual({ text: 'nameserver 1.1.1.1\n', source: 'config' });
    expect(resolvConf(node, null)).toEqual({ text: 'search example.com\noptions edns0\nnameserver 10.0.2.3\n', source: 'node' });
    expect(resolvConf('nameserver 127.0.0.53\n', null)).toEqual({ text: 'nameserver 8.8.8.8\nnameserver 8.8.4.4\n', source: 'default' });
    expect(resolvConf(null, [])).toEqual({ text: 'nameserver 8.8.8.8\nnameserver 8.8.4.4\n', source: 'default' });
  });
});

describe('published ports', () => {
  it('publishes each exposed port on the same node port unless publish maps that pod port', () => {
    expect(effectivePublish({ expose: [80, 443], publish: [{ nodePort: 8080, podPort: 80, protocol: 'tcp' }] })).toEqual([
      { nodePort: 8080, podPort: 80, protocol: 'tcp' },
      { nodePort: 443, podPort: 443, protocol: 'tcp' },
    ]);
    expect(effectivePublish({})).toEqual([]);
  });

  it("refuses a node port another pod publishes (same protocol) or the node's own, naming both", () => {
    const web = { name: 'web', publish: [{ nodePort: 8080, podPort: 80, protocol: 'tcp' as const }] };
    expect(publishConflict({ name: 'api', publish: [{ nodePort: 8080, podPort: 9000, protocol: 'tcp' }] }, [web])).toBe(
      'node port 8080/tcp is already published by pod "web": choose another node port, or remove pod "web" first',
    );
    expect(publishConflict({ name: 'api', publish: [{ nodePort: 8080, podPort: 9000, protocol: 'udp' }] }, [web])).toBeNull();
    expect(publishConflict(web, [web])).toBeNull();
    expect(publishConflict({ name: 'api', publish: [{ nodePort: 8443, podPort: 443, protocol: 'tcp' }] }, [], [{ port: 8443, protocol: 'tcp', why: 'the aurae API' }])).toBe(
      "node port 8443/tcp is the node's own (the aurae API): choose another node port",
    );
  });
});

describe('node config pods.network', () => {
  const base = { version: 1, node: { name: 'n1' }, pki: { caCert: '/ca.pem', serverCert: '/s.pem', serverKey: '/s.key' } };
  const problems = (network: unknown): string[] => {
    try {
      parseNodeConfig({ ...base, pods: { network } }, 'test');
    } catch (err) {
      return (err as ConfigError).problems;
    }
    return [];
  };

  it('defaults to 10.88.0.0/16 on aurae0 with the node\'s name servers, and takes what is given', () => {
    expect(parseNodeConfig(base, 'test').pods).toEqual({ network: DEFAULT_POD_NETWORK });
    expect(parseNodeConfig({ ...base, pods: { network: { cidr: '172.20.0.0/24', bridge: 'pods0', nameservers: ['1.1.1.1'] } } }, 'test').pods.network).toEqual({
      cidr: '172.20.0.0/24',
      bridge: 'pods0',
      nameservers: ['1.1.1.1'],
    });
  });

  it('refuses host bits, bad prefixes, long bridge names, unknown fields, naming the field', () => {
    expect(problems({ cidr: '10.88.0.1/16' })).toEqual(['pods.network.cidr: expected a network with a prefix of 8..30 and no host bits set, e.g. 10.88.0.0/16']);
    expect(problems({ cidr: '10.0.0.0/31' })[0]).toMatch(/^pods\.network\.cidr: /);
    expect(problems({ bridge: 'a-very-long-bridge-name' })[0]).toMatch(/^pods\.network\.bridge: expected an interface name/);
    expect(problems({ nameservers: ['dns.example'] })[0]).toMatch(/^pods\.network\.nameservers\.0: expected an IPv4 address/);
    expect(problems({ mtu: 1500 })[0]).toMatch(/^pods\.network: /);
  });
});
