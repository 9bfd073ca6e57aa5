// Pod networking as data (pure): the node-local pod CIDR and its addresses, the node bridge and each pod's veth
// pair as `ip` commands, the nftables ruleset (egress masquerade, published ports), and the per-pod /etc/hosts,
// /etc/resolv.conf and /etc/hostname. network.ts executes these plans; nothing here touches the node.
//
// Topology. One Linux bridge per node (default aurae0) holds the CIDR's first address (10.88.0.1/16) and is every
// pod's gateway. Each cell pod's pinned network namespace gets one end of a veth pair as eth0 with an address from
// the CIDR and a default route via the bridge; the other end (named from a hash of the pod's name: interface
// names are at most 15 bytes) is a port of the bridge. Pods reach each other over the bridge, the node's
// uplinks through IPv4 forwarding plus masquerade; containers of one pod share the namespace (localhost).
//
// nftables. One table, `ip aurae`, replaced atomically (`nft -f -` runs the whole text as one transaction):
//   prerouting  DNAT of published node ports arriving on any interface but the bridge (pods do not hairpin);
//   output      DNAT of the node's own connections to a published port (127.0.0.1 or its own addresses: both
//               leave through lo); 127.0.0.1 as a source needs route_localnet on the bridge and the masquerade
//               below, as kube-proxy does for node ports on localhost;
//   postrouting masquerade of pod traffic leaving the CIDR, and of loopback-sourced traffic into the bridge.
// No `fib daddr type local` (it would need NFT_FIB in the kernel): a node is not a router for anything but its
// pods, so whatever reaches it on a published port is for it.
import { createHash } from 'node:crypto';
import { AuraeError } from '../errors';

export type PortProtocol = 'tcp' | 'udp';

/** A node port published to a pod port. */
export interface PortMapping {
  nodePort: number;
  podPort: number;
  protocol: PortProtocol;
}

/** The node config's pods.network (see supervisor/config). */
export interface PodNetworkConfig {
  /** The node-local pod CIDR, e.g. 10.88.0.0/16; the bridge gets its first address. */
  cidr: string;
  /** The bridge's name. */
  bridge: string;
  /** Name servers for pods; null: the node's /etc/resolv.conf, else DEFAULT_NAMESERVERS. */
  nameservers: string[] | null;
}

export const DEFAULT_POD_NETWORK: PodNetworkConfig = { cidr: '10.88.0.0/16', bridge: 'aurae0', nameservers: null };

/**
 * Name servers written into a pod's /etc/resolv.conf when neither the config nor the node names a usable one
 * (the node's own loopback resolvers are unreachable from a pod's namespace): Google Public DNS, as Docker does.
 */
export const DEFAULT_NAMESERVERS: readonly string[] = ['8.8.8.8', '8.8.4.4'];

/** The nftables table this module owns. */
export const NFT_TABLE = 'aurae';
/** The pod end of every veth pair, inside the pod's namespace. */
export const POD_INTERFACE = 'eth0';

export interface Cidr {
  /** The network address as an unsigned 32-bit integer. */
  network: number;
  prefix: number;
  /** Count of addresses in the block. */
  size: number;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function ipv4ToInt(address: string): number | null {
  const m = IPV4.exec(address);
  if (!m) return null;
  const octets = m.slice(1).map(Number);
  if (octets.some((o) => o > 255)) return null;
  return ((octets[0]! << 24) >>> 0) + (octets[1]! << 16) + (octets[2]! << 8) + octets[3]!;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parse "a.b.c.d/p" for pods: prefix 8..30 (at least two pod addresses), the address being the network's own. */
export function parseCidr(cidr: string, field = 'pods.network.cidr'): Cidr {
  const [addr, prefixText, extra] = cidr.split('/');
  const network = ipv4ToInt(addr ?? '');
  const prefix = /^\d{1,2}$/.test(prefixText ?? '') ? Number(prefixText) : NaN;
  if (network === null || extra !== undefined || !(prefix >= 8 && prefix <= 30)) {
    throw new AuraeError('INVALID_ARGUMENT', `${field}: ${JSON.stringify(cidr)} is not a pod CIDR: an IPv4 network with a prefix of 8..30, e.g. 10.88.0.0/16`);
  }
  const size = 2 ** (32 - prefix);
  if (network % size !== 0) {
    throw new AuraeError('INVALID_ARGUMENT', `${field}: ${JSON.stringify(cidr)} has host bits set: the network is ${intToIpv4(network - (network % size))}/${prefix}`);
  }
  return { network, prefix, size };
}

/** The bridge's address: the CIDR's first. */
export function gatewayAddress(cidr: Cidr): string {
  return intToIpv4(cidr.network + 1);
}

/** Whether `address` may be a pod's: inside the CIDR, neither the network, the gateway nor the broadcast address. */
export function podAddressUsable(cidr: Cidr, address: string): boolean {
  const n = ipv4ToInt(address);
  return n !== null && n >= cidr.network + 2 && n <= cidr.network + cidr.size - 2;
}

/**
 * A pod's address: `preferred` when usable and free (the stored one, after a restart), else the lowest free one.
 * RESOURCE_EXHAUSTED when the CIDR is full.
 */
export function allocatePodAddress(cidr: Cidr, taken: Iterable<string>, preferred: string | null = null): string {
  const used = new Set(taken);
  if (preferred !== null && podAddressUsable(cidr, preferred) && !used.has(preferred)) return preferred;
  for (let n = cidr.network + 2; n <= cidr.network + cidr.size - 2; n++) {
    const a = intToIpv4(n);
    if (!used.has(a)) return a;
  }
  throw new AuraeError('RESOURCE_EXHAUSTED', `allocating a pod address failed: every address of ${intToIpv4(cidr.network)}/${cidr.prefix} is taken (${used.size} pods): remove pods or widen pods.network.cidr`);
}

/** The node end of the pod's veth pair: "av" + 12 hex digits of sha256(pod) (15 bytes at most, stable). */
export function hostVethName(pod: string): string {
  return `av${createHash('sha256').update(pod).digest('hex').slice(0, 12)}`;
}

/** One `ip` invocation: in the node's namespace (netns null) or inside the pod's pinned one. */
export interface IpCommand {
  netns: string | null;
  args: string[];
}

/** A file under /proc/sys and the value to write. */
export interface SysctlWrite {
  path: string;
  value: string;
}

/** What the adapter saw of the node before planning. */
export interface NodeNetworkObserved {
  bridgeExists: boolean;
}

export interface NodeNetworkPlan {
  ip: IpCommand[];
  sysctl: SysctlWrite[];
}

/** The bridge with the gateway address, up; IPv4 forwarding on; route_localnet on the bridge (see the header). */
export function nodeNetworkPlan(config: PodNetworkConfig, observed: NodeNetworkObserved): NodeNetworkPlan {
  const cidr = parseCidr(config.cidr);
  const ip: IpCommand[] = [];
  if (!observed.bridgeExists) ip.push({ netns: null, args: ['link', 'add', config.bridge, 'type', 'bridge'] });
  ip.push({ netns: null, args: ['addr', 'replace', `${gatewayAddress(cidr)}/${cidr.prefix}`, 'dev', config.bridge] });
  ip.push({ netns: null, args: ['link', 'set', config.bridge, 'up'] });
  return {
    ip,
    sysctl: [
      { path: '/proc/sys/net/ipv4/ip_forward', value: '1' },
      { path: `/proc/sys/net/ipv4/conf/${config.bridge}/route_localnet`, value: '1' },
    ],
  };
}

export interface PodLinkObserved {
  /** The node end of the pod's veth exists. */
  hostLinkExists: boolean;
  /** The address (a.b.c.d/prefix) on eth0 in the pod's namespace; null: no eth0 or no address. */
  podAddress: string | null;
}

export interface PodLinkInput {
  pod: string;
  /** The pod's address (allocatePodAddress). */
  address: string;
  /** The pod's pinned network namespace (a file: /run/aurae/pods/<pod>/ns/net). */
  netns: string;
}

/**
 * Connect the pod (idempotent): create the veth pair into the pod's namespace unless both ends are there, then
 * (again) the bridge port, the address, the links up and the default route. A half-left pair (the node end
 * without its pod end: the namespace was re-created) is deleted first.
 */
export function podLinkPlan(config: PodNetworkConfig, input: PodLinkInput, observed: PodLinkObserved): IpCommand[] {
  const cidr = parseCidr(config.cidr);
  const veth = hostVethName(input.pod);
  const want = `${input.address}/${cidr.prefix}`;
  const node = (...args: string[]): IpCommand => ({ netns: null, args });
  const pod = (...args: string[]): IpCommand => ({ netns: input.netns, args });
  const out: IpCommand[] = [];
  const paired = observed.hostLinkExists && observed.podAddress !== null;
  if (observed.hostLinkExists && !paired) out.push(node('link', 'del', veth));
  if (!paired) out.push(node('link', 'add', veth, 'type', 'veth', 'peer', 'name', POD_INTERFACE, 'netns', input.netns));
  out.push(node('link', 'set', veth, 'master', config.bridge, 'up'));
  if (paired && observed.podAddress !== want) out.push(pod('addr', 'flush', 'dev', POD_INTERFACE));
  out.push(pod('addr', 'replace', want, 'dev', POD_INTERFACE));
  out.push(pod('link', 'set', 'lo', 'up'));
  out.push(pod('link', 'set', POD_INTERFACE, 'up'));
  out.push(pod('route', 'replace', 'default', 'via', gatewayAddress(cidr), 'dev', POD_INTERFACE));
  return out;
}

/** Disconnect the pod: delete the node end (the kernel deletes its peer). "No such device" is fine. */
export function podUnlinkPlan(pod: string): IpCommand[] {
  return [{ netns: null, args: ['link', 'del', hostVethName(pod)] }];
}

/** A connected pod as the ruleset sees it. */
export interface NetworkedPod {
  name: string;
  address: string;
  publish: readonly PortMapping[];
}

/** The whole `ip aurae` table, replacing the previous one in one transaction (text for `nft -f -`). */
export function nftRuleset(config: PodNetworkConfig, pods: readonly NetworkedPod[]): string {
  const cidr = parseCidr(config.cidr);
  const net = `${intToIpv4(cidr.network)}/${cidr.prefix}`;
  const bridge = JSON.stringify(config.bridge);
  const sorted = [...pods].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const dnat = (match: string) =>
    sorted.flatMap((p) =>
      [...p.publish]
        .sort((a, b) => a.nodePort - b.nodePort || a.protocol.localeCompare(b.protocol))
        .map((m) => `    ${match} ${m.protocol} dport ${m.nodePort} dnat to ${p.address}:${m.podPort} comment ${JSON.stringify(`pod ${p.name}`)}`),
    );
  return [
    // Declaring the table first makes the delete succeed when it does not exist yet; all of it is one transaction.
    `table ip ${NFT_TABLE} {}`,
    `delete table ip ${NFT_TABLE}`,
    `table ip ${NFT_TABLE} {`,
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...dnat(`iifname != ${bridge}`),
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    ...dnat('oifname "lo"'),
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${net} ip daddr != ${net} masquerade`,
    `    ip saddr 127.0.0.0/8 oifname ${bridge} masquerade`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** The pod's /etc/hosts: localhost, and the pod's name on its address. */
export function hostsFile(pod: string, address: string | null): string {
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    ...(address !== null ? [`${address}\t${pod}`] : [`127.0.1.1\t${pod}`]),
    '',
  ].join('\n');
}

export function hostnameFile(pod: string): string {
  return `${pod}\n`;
}

export interface ResolvConf {
  text: string;
  /** Where the name servers came from. */
  source: 'config' | 'node' | 'default';
}

/**
 * The pod's /etc/resolv.conf: the config's name servers; else the node's (its search and options lines kept,
 * loopback name servers dropped: they are unreachable from the pod's namespace); else DEFAULT_NAMESERVERS.
 */
export function resolvConf(nodeResolvConf: string | null, configured: readonly string[] | null): ResolvConf {
  const lines = (nodeResolvConf ?? '').split('\n').map((l) => l.trim());
  const keep = lines.filter((l) => /^(search|domain|options)\s/.test(l));
  const fromNode = lines
    .map((l) => /^nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((s): s is string => s !== undefined && !s.startsWith('127.') && s !== '::1');
  let servers: readonly string[];
  let source: ResolvConf['source'];
  if (configured && configured.length) [servers, source] = [configured, 'config'];
  else if (fromNode.length) [servers, source] = [fromNode, 'node'];
  else [servers, source] = [DEFAULT_NAMESERVERS, 'default'];
  return { text: [...(source === 'node' ? keep : []), ...servers.map((s) => `nameserver ${s}`), ''].join('\n'), source };
}

/** The pod's effective published ports: its publish list, plus each exposed port on the same node port (tcp). */
export function effectivePublish(spec: { expose?: readonly number[]; publish?: readonly PortMapping[] }): PortMapping[] {
  const out = [...(spec.publish ?? [])];
  for (const port of spec.expose ?? []) {
    if (!out.some((m) => m.podPort === port && m.protocol === 'tcp')) out.push({ nodePort: port, podPort: port, protocol: 'tcp' });
  }
  return out;
}

/**
 * The first node port of `candidate` already published by another pod (or reserved by the node), as an error
 * message; null when none clashes.
 */
export function publishConflict(
  candidate: { name: string; publish: readonly PortMapping[] },
  others: readonly { name: string; publish: readonly PortMapping[] }[],
  reserved: readonly { port: number; protocol: PortProtocol; why: string }[] = [],
): string | null {
  for (const m of candidate.publish) {
    const r = reserved.find((x) => x.port === m.nodePort && x.protocol === m.protocol);
    if (r) return `node port ${m.nodePort}/${m.protocol} is the node's own (${r.why}): choose another node port`;
    for (const o of others) {
      if (o.name === candidate.name) continue;
      if (o.publish.some((x) => x.nodePort === m.nodePort && x.protocol === m.protocol)) {
        return `node port ${m.nodePort}/${m.protocol} is already published by pod "${o.name}": choose another node port, or remove pod "${o.name}" first`;
      }
    }
  }
  return null;
}

/**
 * The resolv.conf of a pod that names its DNS (PodSpec.dns, the CRI's DNSConfig): its search domains, its name
 * servers (else those of `fallback`, the node's as resolvConf chose them), its options.
 */
export function podResolvConf(dns: { servers: readonly string[]; searches: readonly string[]; options: readonly string[] }, fallback: ResolvConf): ResolvConf {
  const servers = dns.servers.length ? dns.servers.map((s) => `nameserver ${s}`) : fallback.text.split('\n').filter((l) => l.startsWith('nameserver '));
  const lines = [...(dns.searches.length ? [`search ${dns.searches.join(' ')}`] : []), ...servers, ...(dns.options.length ? [`options ${dns.options.join(' ')}`] : []), ''];
  return { text: lines.join('\n'), source: dns.servers.length ? 'config' : fallback.source };
}
