// The pod network adapter's process plumbing with a fake runner (no root): consecutive `ip` commands of one
// namespace go to one `ip -batch -`, a failing line is reported as that command alone would be, the node's bridge
// is not asserted again while it is the one this adapter set up, and an unchanged ruleset is not loaded again.
import { describe, expect, it } from 'vitest';
import { batchFailure, batchGroups, nodePodNetwork, type ProcessRunner } from './network';
import { DEFAULT_POD_NETWORK, hostVethName } from './network-plan';

const cfg = DEFAULT_POD_NETWORK;

function fakeNode(fail: (file: string, args: string[], input: string | undefined) => string | null = () => null) {
  const runs: { file: string; args: string[]; input?: string }[] = [];
  const sys = new Map<string, string>();
  const run: ProcessRunner = async (file, args, opts) => {
    runs.push({ file, args, ...(opts.input !== undefined ? { input: opts.input } : {}) });
    const stderr = fail(file, args, opts.input);
    if (stderr !== null) throw Object.assign(new Error('Command failed'), { stderr });
    // The bridge appears (up) once a batch made it.
    if (opts.input?.includes('link set aurae0 up')) sys.set('/sys/class/net/aurae0/ifindex', '7').set('/sys/class/net/aurae0/flags', '0x1003');
    return { stdout: '', stderr: '' };
  };
  const network = nodePodNetwork({
    run,
    ip: 'ip',
    nft: 'nft',
    nsenter: 'nsenter',
    exists: (p) => sys.has(`${p}/ifindex`),
    readFile: (p) => {
      const v = sys.get(p);
      if (v === undefined) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
      return v;
    },
    writeFile: (p, v) => void sys.set(p, v),
  });
  return { network, runs, sys };
}

describe('nodePodNetwork (fake processes)', () => {
  it('runs the node plan as one batch, then skips it while the bridge it made is there and up', async () => {
    const { network, runs, sys } = fakeNode();
    await network.ensureNode(cfg);
    expect(runs).toEqual([{ file: 'ip', args: ['-batch', '-'], input: 'link add aurae0 type bridge\naddr replace 10.88.0.1/16 dev aurae0\nlink set aurae0 up\n' }]);
    expect(sys.get('/proc/sys/net/ipv4/ip_forward')).toBe('1');
    sys.delete('/proc/sys/net/ipv4/ip_forward');
    await network.ensureNode(cfg);
    expect(runs).toHaveLength(1);
    expect(sys.get('/proc/sys/net/ipv4/ip_forward')).toBe('1'); // the sysctls are written every time
    // Down (or another bridge of that name): asserted again.
    sys.set('/sys/class/net/aurae0/flags', '0x1002');
    await network.ensureNode(cfg);
    expect(runs).toHaveLength(2);
    expect(runs[1]!.input).toBe('addr replace 10.88.0.1/16 dev aurae0\nlink set aurae0 up\n');
    sys.set('/sys/class/net/aurae0/ifindex', '9');
    await network.ensureNode(cfg);
    expect(runs).toHaveLength(3);
  });

  it('connects a pod with one batch on the node and one in its namespace', async () => {
    const { network, runs } = fakeNode();
    await network.connectPod(cfg, { pod: 'web', address: '10.88.0.2', netns: '/run/aurae/pods/web/ns/net' });
    const veth = hostVethName('web');
    expect(runs).toEqual([
      { file: 'ip', args: ['-batch', '-'], input: `link add ${veth} type veth peer name eth0 netns /run/aurae/pods/web/ns/net\nlink set ${veth} master aurae0 up\n` },
      {
        file: 'nsenter',
        args: ['--net=/run/aurae/pods/web/ns/net', 'ip', '-batch', '-'],
        input: 'addr replace 10.88.0.2/16 dev eth0\nlink set lo up\nlink set eth0 up\nroute replace default via 10.88.0.1 dev eth0\n',
      },
    ]);
  });

  it('names the failing line of a batch as the command alone would be named', async () => {
    const { network } = fakeNode((_file, args) => (args.includes('--net=/run/p/ns/net') ? 'RTNETLINK answers: Network is unreachable\nCommand failed -:4\n' : null));
    await expect(network.connectPod(cfg, { pod: 'p', address: '10.88.0.5', netns: '/run/p/ns/net' })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      message:
        "pod networking: `ip route replace default via 10.88.0.1 dev eth0` in /run/p/ns/net failed: RTNETLINK answers: Network is unreachable: does the node have iproute2's ip, nsenter and the BRIDGE/VETH kernel options?",
    });
    const missing = fakeNode(() => 'spawn ip ENOENT');
    await expect(missing.network.ensureNode(cfg)).rejects.toMatchObject({ message: expect.stringContaining('pod networking: `ip link add aurae0 type bridge` failed: spawn ip ENOENT') });
  });

  it('loads a ruleset once while it does not change; a failed load is tried again', async () => {
    let broken = true;
    const { network, runs } = fakeNode((file) => (file === 'nft' && broken ? 'Error: Could not process rule: No such file or directory' : null));
    const pods = [{ name: 'web', address: '10.88.0.2', publish: [{ nodePort: 8080, podPort: 80, protocol: 'tcp' as const }] }];
    await expect(network.applyRuleset(cfg, pods)).rejects.toMatchObject({ message: expect.stringContaining('loading the nftables ruleset failed: Error: Could not process rule') });
    broken = false;
    await network.applyRuleset(cfg, pods);
    await network.applyRuleset(cfg, pods);
    expect(runs.filter((r) => r.file === 'nft')).toHaveLength(2);
    await network.applyRuleset(cfg, []);
    expect(runs.filter((r) => r.file === 'nft')).toHaveLength(3);
  });
});

describe('batchGroups / batchFailure', () => {
  it('groups consecutive plain commands of one namespace; anything needing quotes runs alone', () => {
    const n = (...args: string[]) => ({ netns: null, args });
    const p = (...args: string[]) => ({ netns: '/ns', args });
    expect(batchGroups([n('a'), n('b'), p('c'), p('d'), n('e')]).map((g) => g.map((c) => c.args[0]))).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    expect(batchGroups([n('a'), n('has space'), n('b'), n('#x')]).map((g) => g.map((c) => c.args[0]))).toEqual([['a'], ['has space'], ['b'], ['#x']]);
  });

  it('finds the failed line and keeps the message without it', () => {
    expect(batchFailure('RTNETLINK answers: File exists\nCommand failed -:2\n')).toEqual({ line: 2, reason: 'RTNETLINK answers: File exists' });
    expect(batchFailure('Killed')).toEqual({ line: null, reason: 'Killed' });
  });
});
