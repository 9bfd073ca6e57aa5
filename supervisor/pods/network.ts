// Pod networking's side effects (root, real kernel): runs network-plan.ts's plans with `ip` from iproute2 (busybox
// `ip` cannot create bridges or veth pairs), `nsenter --net=FILE ip …` inside a pod's pinned namespace, and
// `nft -f -`. An adapter, so the runtime is unit-tested with a fake; nodePodNetwork is the real one.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { AuraeError } from '../errors';
import { DEFAULT_PATH } from '../executables';
import {
  type IpCommand,
  type NetworkedPod,
  nftRuleset,
  nodeNetworkPlan,
  type PodLinkInput,
  podLinkPlan,
  podUnlinkPlan,
  type PodNetworkConfig,
  POD_INTERFACE,
  hostVethName,
} from './network-plan';

export interface PodNetwork {
  /** The bridge, forwarding and route_localnet (idempotent). */
  ensureNode(config: PodNetworkConfig): Promise<void>;
  /** Connect one pod (idempotent: a connected pod is left as it is). */
  connectPod(config: PodNetworkConfig, input: PodLinkInput): Promise<void>;
  /** Disconnect one pod; a pod that is not connected is fine. */
  disconnectPod(pod: string): Promise<void>;
  /** Replace the nftables table with the one for these pods. */
  applyRuleset(config: PodNetworkConfig, pods: readonly NetworkedPod[]): Promise<void>;
  /** The node's /etc/resolv.conf (null when it has none). */
  nodeResolvConf(): string | null;
}

export interface ProcessRunner {
  (file: string, args: string[], opts: { input?: string }): Promise<{ stdout: string; stderr: string }>;
}

/** execFile with a PATH, a timeout and optional stdin. Rejects with { stderr, message } on a non-zero exit. */
export function execRunner(env: NodeJS.ProcessEnv = process.env): ProcessRunner {
  const execEnv = { PATH: env.PATH ?? DEFAULT_PATH };
  return (file, args, opts) =>
    new Promise((resolve, reject) => {
      const child = execFile(file, args, { env: execEnv, timeout: 30_000 }, (err, stdout, stderr) => {
        if (err) reject(Object.assign(err, { stderr: String(stderr) }));
        else resolve({ stdout: String(stdout), stderr: String(stderr) });
      });
      if (opts.input !== undefined) child.stdin?.end(opts.input);
    });
}

function why(err: unknown): string {
  const e = err as { stderr?: string; message?: string; code?: string };
  if (e.code === 'ENOENT') return 'the program is missing';
  return (e.stderr || e.message || String(err)).trim();
}

export interface NodePodNetworkOptions {
  run?: ProcessRunner;
  /** Where `ip` (iproute2) is; default /sbin/ip, else `ip` from PATH. */
  ip?: string;
  nft?: string;
  nsenter?: string;
  exists?: (p: string) => boolean;
  readFile?: (p: string) => string;
  writeFile?: (p: string, value: string) => void;
}

export function nodePodNetwork(opts: NodePodNetworkOptions = {}): PodNetwork {
  const run = opts.run ?? execRunner();
  const exists = opts.exists ?? fs.existsSync;
  const ip = opts.ip ?? (exists('/sbin/ip') ? '/sbin/ip' : 'ip');
  const nft = opts.nft ?? (exists('/usr/sbin/nft') ? '/usr/sbin/nft' : 'nft');
  const nsenter = opts.nsenter ?? 'nsenter';
  const readFile = opts.readFile ?? ((p: string) => fs.readFileSync(p, 'utf8'));
  const writeFile = opts.writeFile ?? ((p: string, v: string) => fs.writeFileSync(p, v));

  const ipRun = async (c: IpCommand, ok: RegExp | null = null): Promise<string> => {
    const [file, args] = c.netns === null ? [ip, c.args] : [nsenter, [`--net=${c.netns}`, ip, ...c.args]];
    try {
      return (await run(file, args, {})).stdout;
    } catch (err) {
      if (ok && ok.test(why(err))) return '';
      throw new AuraeError(
        'FAILED_PRECONDITION',
        `pod networking: \`ip ${c.args.join(' ')}\`${c.netns ? ` in ${c.netns}` : ''} failed: ${why(err)}: does the node have iproute2's ip, nsenter and the BRIDGE/VETH kernel options?`,
      );
    }
  };

  return {
    async ensureNode(config) {
      const plan = nodeNetworkPlan(config, { bridgeExists: exists(`/sys/class/net/${config.bridge}`) });
      for (const c of plan.ip) await ipRun(c);
      for (const w of plan.sysctl) {
        try {
          writeFile(w.path, w.value);
        } catch (err) {
          throw new AuraeError('FAILED_PRECONDITION', `pod networking: writing ${w.value} to ${w.path} failed: ${(err as Error).message}: is /proc mounted read-write?`);
        }
      }
    },
    async connectPod(config, input) {
      const hostLinkExists = exists(`/sys/class/net/${hostVethName(input.pod)}`);
      let podAddress: string | null = null;
      if (hostLinkExists) {
        const out = await ipRun({ netns: input.netns, args: ['-o', '-4', 'addr', 'show', 'dev', POD_INTERFACE] }, /does not exist|Cannot find device/);
        podAddress = /\binet (\S+)/.exec(out)?.[1] ?? null;
      }
      for (const c of podLinkPlan(config, input, { hostLinkExists, podAddress })) await ipRun(c);
    },
    async disconnectPod(pod) {
      for (const c of podUnlinkPlan(pod)) await ipRun(c, /Cannot find device|does not exist/);
    },
    async applyRuleset(config, pods) {
      const text = nftRuleset(config, pods);
      try {
        await run(nft, ['-f', '-'], { input: text });
      } catch (err) {
        throw new AuraeError('FAILED_PRECONDITION', `pod networking: loading the nftables ruleset failed: ${why(err)}: does the node have nft and the NF_TABLES/NFT_NAT/NFT_MASQ kernel options?`);
      }
    },
    nodeResolvConf() {
      try {
        return readFile('/etc/resolv.conf');
      } catch {
        return null;
      }
    },
  };
}
