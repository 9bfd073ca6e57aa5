// Pod networking's side effects (root, real kernel): runs network-plan.ts's plans with `ip` from iproute2 (busybox
// `ip` cannot create bridges or veth pairs), `nsenter --net=FILE ip …` inside a pod's pinned namespace, and
// `nft -f -`. An adapter, so the runtime is unit-tested with a fake; nodePodNetwork is the real one.
//
// Start-up cost. Every process costs tens of ms on a slow CPU (iproute2's ip ~40 ms, nft ~60 ms under TCG, plus
// auraed's fork), and a pod's start waits for all of them. So the consecutive commands of a plan that run in the
// same namespace go to one `ip -batch -` (a failing line is reported as that command alone would be: iproute2
// stops at it and names its line); the node's bridge is asserted again only when it is not the one this process
// set up (another ifindex, or down); and a ruleset identical to the one this process last loaded is not loaded
// again (the `ip aurae` table is auraed's: nothing else is meant to change it).
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

  const ipFailed = (c: IpCommand, reason: string) =>
    new AuraeError(
      'FAILED_PRECONDITION',
      `pod networking: \`ip ${c.args.join(' ')}\`${c.netns ? ` in ${c.netns}` : ''} failed: ${reason}: does the node have iproute2's ip, nsenter and the BRIDGE/VETH kernel options?`,
    );
  const inNamespace = (netns: string | null, args: string[]): [string, string[]] => (netns === null ? [ip, args] : [nsenter, [`--net=${netns}`, ip, ...args]]);

  const ipRun = async (c: IpCommand, ok: RegExp | null = null): Promise<string> => {
    const [file, args] = inNamespace(c.netns, c.args);
    try {
      return (await run(file, args, {})).stdout;
    } catch (err) {
      if (ok && ok.test(why(err))) return '';
      throw ipFailed(c, why(err));
    }
  };

  /** Run commands in order, stopping at the first failure: one `ip -batch -` per run of commands in one namespace. */
  const ipAll = async (commands: readonly IpCommand[]): Promise<void> => {
    for (const group of batchGroups(commands)) {
      if (group.length === 1) {
        await ipRun(group[0]!);
        continue;
      }
      const [file, args] = inNamespace(group[0]!.netns, ['-batch', '-']);
      try {
        await run(file, args, { input: group.map((c) => `${c.args.join(' ')}\n`).join('') });
      } catch (err) {
        const { line, reason } = batchFailure(why(err));
        throw ipFailed(group[line !== null && line >= 1 && line <= group.length ? line - 1 : 0]!, reason);
      }
    }
  };
  let ensured: { key: string; ifindex: string } | null = null;
  let loaded: string | null = null;

  return {
    async ensureNode(config) {
      const key = JSON.stringify([config.bridge, config.cidr]);
      const bridgeExists = exists(`/sys/class/net/${config.bridge}`);
      const plan = nodeNetworkPlan(config, { bridgeExists });
      // The bridge this process made or fixed, still there and up: its address and state are as they were set.
      const bridge = bridgeExists && ensured !== null ? bridgeState(readFile, config.bridge) : null;
      const same = ensured !== null && bridge !== null && bridge.up && ensured.key === key && ensured.ifindex === bridge.ifindex;
      if (!same) {
        ensured = null;
        await ipAll(plan.ip);
        const now = bridgeState(readFile, config.bridge);
        if (now?.up) ensured = { key, ifindex: now.ifindex };
      }
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
      await ipAll(podLinkPlan(config, input, { hostLinkExists, podAddress }));
    },
    async disconnectPod(pod) {
      for (const c of podUnlinkPlan(pod)) await ipRun(c, /Cannot find device|does not exist/);
    },
    async applyRuleset(config, pods) {
      const text = nftRuleset(config, pods);
      if (text === loaded) return;
      loaded = null; // unknown until this load succeeds
      try {
        await run(nft, ['-f', '-'], { input: text });
        loaded = text;
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

/** Words `ip -batch` reads back as they are (no quotes, comments or escapes to mind). */
const BATCH_WORD = /^[A-Za-z0-9._:/@%+=,-]+$/;

/**
 * The commands cut into runs for one process each: consecutive commands in the same namespace whose words are
 * all plain (anything else runs alone, as an argument vector).
 */
export function batchGroups(commands: readonly IpCommand[]): IpCommand[][] {
  const out: IpCommand[][] = [];
  for (const c of commands) {
    const plain = c.args.every((a) => BATCH_WORD.test(a));
    const last = out.at(-1);
    if (plain && last && last[0]!.netns === c.netns && last.every((x) => x.args.every((a) => BATCH_WORD.test(a)))) last.push(c);
    else out.push([c]);
  }
  return out;
}

/**
 * Which line of an `ip -batch -` failed (iproute2 ends its message with "Command failed -:N" and stops there), and
 * the message without that line: what the command alone would have printed. line null: not said.
 */
export function batchFailure(stderr: string): { line: number | null; reason: string } {
  const m = /^Command failed -:(\d+)\s*$/m.exec(stderr);
  if (!m) return { line: null, reason: stderr.trim() };
  const reason = stderr.replace(m[0], '').trim();
  return { line: Number(m[1]), reason: reason || stderr.trim() };
}

/** The bridge's ifindex and whether it is up (IFF_UP in its flags), from /sys/class/net; null: it is not there. */
function bridgeState(readFile: (p: string) => string, bridge: string): { ifindex: string; up: boolean } | null {
  try {
    const ifindex = readFile(`/sys/class/net/${bridge}/ifindex`).trim();
    const flags = Number(readFile(`/sys/class/net/${bridge}/flags`).trim());
    return { ifindex, up: Number.isInteger(flags) && (flags & 1) === 1 };
  } catch {
    return null;
  }
}
