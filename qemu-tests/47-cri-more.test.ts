// 47: more of the Kubernetes CRI on one booted node (fixture/cri.ts: the relay to /run/aurae/cri.sock, clients from
// the generated runtime.v1 definitions): UpdateContainerResources on a running container (its cgroup and oom score
// change at once, seen from inside it) and on a created one (kept, applied at its start); the CRI metrics
// (ListMetricDescriptors, ListPodSandboxMetrics: cAdvisor's names, values from the cgroup files and the pod's
// network namespace); and kubelet's host-path mounts in a "vm" runtime handler sandbox (/etc/hosts read-only, the
// termination log and an emptyDir read-write, through the pod's volumes share: what the container writes is on
// the node at once). Then the same "vm" sandbox served like a cell one (issue 12): ExecSync, Exec over SPDY and
// WebSocket, PortForward, the container's CRI log file on the node (and its rotation) and the stats, each through
// the child's PodService and ObserveService.
import { status } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ContainerState, PodSandboxState } from '../supervisor/gen/runtime/v1/api';
import { call, type CriNode, refusal, startCriNode } from './fixture/cri';
import { eventually, NESTED_HOST_CPUS } from './fixture/node';
import { spdyExec, spdyPortForward, wsExec } from '../supervisor/cri/streaming/testing';
import { freeLoopbackPort } from '../supervisor/vms';
import { StreamingRelay } from '../image/lib/guest-relay';

const MiB = 1n << 20n;
/** Stands in for kubelet's /var/lib/kubelet/pods/<uid> (made by the test, as kubelet makes its own; /tmp as in 45). */
const KUBELET = '/tmp/e2e-kubelet/pods/uid-vols';
/** Guest port of the relay to the streaming server (the CRI's is fixture/cri.ts CRI_RELAY_PORT). */
const STREAM_RELAY_PORT = 10011;

describe('47 cri: resources, metrics, vm sandbox mounts', () => {
  let n: CriNode | null = null;
  const node = () => {
    if (!n) throw new Error('the node did not boot (see the beforeAll error)');
    return n;
  };
  const rt = () => node().rt;
  const exec = async (id: string, script: string) => {
    const r = await call(rt(), rt().execSync, { containerId: id, cmd: ['/bin/sh', '-c', script], timeout: 20n }, 30_000);
    if (r.exitCode !== 0) throw new Error(`exec ${script}: exit ${r.exitCode}: ${r.stderr.toString()}`);
    return r.stdout.toString();
  };
  const limits = (id: string) => exec(id, 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpu.max /proc/1/oom_score_adj');
  const linux = (over: Record<string, bigint>) => ({ cpuPeriod: 0n, cpuQuota: 0n, cpuShares: 0n, memoryLimitInBytes: 0n, oomScoreAdj: 0n, cpusetCpus: '', cpusetMems: '', hugepageLimits: [], unified: {}, memorySwapLimitInBytes: 0n, ...over });

  let streamPort = 0;
  let streamRelay: StreamingRelay | null = null;
  /** A streaming URL of the guest (http://127.0.0.1:PORT/…) as the host reaches it through a relay. */
  const hostUrl = (url: string) => (streamRelay ??= new StreamingRelay(() => node().node.shell(), STREAM_RELAY_PORT, streamPort)).hostUrl(url);

  beforeAll(async () => {
    streamPort = await freeLoopbackPort();
    // The "vm" runtime handler spawns a child microVM from the node's own boot artifacts.
    n = await startCriNode({ name: '47-cri-more', suite: '47', bootVolume: true, cpus: NESTED_HOST_CPUS, memoryMiB: 2048, readyTimeoutMs: 300_000, hostForwards: [{ hostPort: streamPort, guestPort: STREAM_RELAY_PORT }] });
    await n.pull();
  }, 600_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && n) console.error(`--- console of 47-cri-more (full log: ${n.node.consoleLog}) ---\n${n.node.vm.tail(60)}`);
  });
  afterAll(async () => {
    await n?.stop();
  });

  let sandbox = '';
  let running = '';
  /** The "vm" sandbox of the mounts test, kept for the describe after it (one child VM for both). */
  const vols = { sandbox: '', app: '', pod: '', mounts: false };

  it('UpdateContainerResources: a running container\'s cgroup and oom score change at once; a created one starts with its new values', async () => {
    sandbox = await node().runSandbox('resize');
    running = await node().createContainer(sandbox, 'app', { command: ['/bin/sleep', '600'], linux: { resources: linux({ memoryLimitInBytes: 64n * MiB, cpuShares: 512n }) } });
    await call(rt(), rt().startContainer, { containerId: running });
    await node().untilState(running, ContainerState.CONTAINER_RUNNING);
    expect((await limits(running)).split('\n').slice(0, 3)).toEqual([String(64n * MiB), '20', 'max 100000']);

    await call(rt(), rt().updateContainerResources, { containerId: running, linux: linux({ memoryLimitInBytes: 32n * MiB, cpuShares: 1024n, cpuQuota: 50_000n, cpuPeriod: 100_000n, oomScoreAdj: 300n }), annotations: {} });
    expect(await limits(running)).toBe(`${32n * MiB}\n39\n50000 100000\n300\n`);
    expect((await node().status(running)).resources?.linux).toMatchObject({ memoryLimitInBytes: 32n * MiB, cpuShares: 1024n, cpuQuota: 50_000n, cpuPeriod: 100_000n, oomScoreAdj: 300n });
    const bad = await refusal(call(rt(), rt().updateContainerResources, { containerId: running, linux: linux({ cpuPeriod: 10n }), annotations: {} }));
    expect([bad.code, bad.details]).toEqual([status.INVALID_ARGUMENT, expect.stringMatching(/^linux\.cpu_period: /)]);

    // Created, not started: kept in its spec; its start applies it.
    const later = await node().createContainer(sandbox, 'later', { command: ['/bin/sleep', '600'], linux: { resources: linux({ memoryLimitInBytes: 64n * MiB }) } });
    await call(rt(), rt().updateContainerResources, { containerId: later, linux: linux({ memoryLimitInBytes: 16n * MiB, cpuShares: 2n }), annotations: {} });
    await call(rt(), rt().startContainer, { containerId: later });
    await node().untilState(later, ContainerState.CONTAINER_RUNNING);
    expect((await limits(later)).split('\n').slice(0, 2)).toEqual([String(16n * MiB), '1']);
  }, 300_000);

  it('CRI metrics: cAdvisor-named descriptors; the sandbox and its running containers with values from their cgroups and network', async () => {
    const { descriptors } = await call(rt(), rt().listMetricDescriptors, {});
    const names = descriptors.map((d) => d.name);
    expect(names).toEqual(expect.arrayContaining(['container_cpu_usage_seconds_total', 'container_memory_working_set_bytes', 'container_network_receive_bytes_total', 'container_processes']));
    const described = new Map(descriptors.map((d) => [d.name, d.labelKeys.length]));
    const { podMetrics } = await call(rt(), rt().listPodSandboxMetrics, {});
    const mine = podMetrics.find((p) => p.podSandboxId === sandbox)!;
    expect(mine).toBeDefined();
    const one = (ms: typeof mine.metrics, name: string) => ms.filter((m) => m.name === name);
    const app = mine.containerMetrics.find((c) => c.containerId === running)!.metrics;
    expect(one(app, 'container_memory_working_set_bytes')[0]!.value!.value).toBeGreaterThan(0n);
    expect(one(app, 'container_spec_memory_limit_bytes')[0]!.value!.value).toBe(32n * MiB);
    expect(one(app, 'container_cpu_usage_seconds_total')[0]!.labelValues).toEqual([running, 'app', expect.stringContaining('busybox'), 'total']);
    expect(one(mine.metrics, 'container_processes')[0]!.value!.value).toBeGreaterThanOrEqual(2n);
    const rx = one(mine.metrics, 'container_network_receive_bytes_total');
    expect(rx.map((m) => m.labelValues)).toContainEqual([sandbox, 'POD', '', 'eth0']);
    for (const m of [...mine.metrics, ...mine.containerMetrics.flatMap((c) => c.metrics)]) expect([m.name, m.labelValues.length]).toEqual([m.name, described.get(m.name)]);
    await call(rt(), rt().stopPodSandbox, { podSandboxId: sandbox }, 60_000);
    await call(rt(), rt().removePodSandbox, { podSandboxId: sandbox }, 60_000);
  }, 120_000);

  it('runtime handler vm: kubelet\'s host-path mounts reach the container through the volumes share, both ways', async () => {
    await node().sh(
      [
        `mkdir -p ${KUBELET}/volumes/data ${KUBELET}/containers/app`,
        `printf '127.0.0.1 localhost\\n10.96.0.9 kube-e2e\\n' > ${KUBELET}/etc-hosts`,
        `: > ${KUBELET}/containers/app/tl && chmod 666 ${KUBELET}/containers/app/tl`,
        `echo from-the-node > ${KUBELET}/volumes/data/in`,
      ].join(' && '),
    );
    const vm = await node().runSandbox('vols', {}, 'vm');
    expect((await call(rt(), rt().podSandboxStatus, { podSandboxId: vm, verbose: false })).status?.state).toBe(PodSandboxState.SANDBOX_READY);
    const script = [
      'grep kube-e2e /etc/hosts > /data/hosts-seen',
      'cat /data/in > /data/in-seen',
      'echo bye > /dev/termination-log',
      'if (echo x >> /etc/hosts) 2>/dev/null; then echo RW; else echo RO; fi > /data/ro-check',
      'echo done > /data/done',
      'exec sleep 600',
    ].join('; ');
    const id = await node().createContainer(vm, 'app', {
      command: ['/bin/sh', '-c', script],
      mounts: [
        { containerPath: '/etc/hosts', hostPath: `${KUBELET}/etc-hosts`, readonly: true },
        { containerPath: '/dev/termination-log', hostPath: `${KUBELET}/containers/app/tl`, readonly: false },
        { containerPath: '/data', hostPath: `${KUBELET}/volumes/data`, readonly: false },
      ],
    });
    // The CRI reports the node's own host paths.
    expect((await node().status(id)).mounts.map((m) => m.hostPath)).toEqual([`${KUBELET}/etc-hosts`, `${KUBELET}/containers/app/tl`, `${KUBELET}/volumes/data`]);
    await call(rt(), rt().startContainer, { containerId: id }, 180_000);
    await eventually(async () => (await node().sh(`cat ${KUBELET}/volumes/data/done 2>/dev/null || true`)).trim() === 'done', 180_000, 'the container in the VM wrote /data/done');
    expect(await node().sh(`cat ${KUBELET}/volumes/data/hosts-seen ${KUBELET}/volumes/data/in-seen ${KUBELET}/containers/app/tl ${KUBELET}/volumes/data/ro-check`)).toBe('10.96.0.9 kube-e2e\nfrom-the-node\nbye\nRO\n');
    const pod = `k8s-${vm.slice(0, 12)}`;
    expect(Number((await node().sh(`grep -c " /run/aurae/vm-pod-volumes/${pod}/" /proc/self/mountinfo || true`)).trim())).toBe(3);
    // Kept running for the next describe; its last test removes it (and checks the binds are gone).
    Object.assign(vols, { sandbox: vm, app: id, pod, mounts: true });
  }, 600_000);

  describe('runtime handler vm served like cell: exec, port-forward, log file, stats through the child (the vols sandbox)', () => {
    const vm = () => {
      if (!vols.sandbox) throw new Error('the vm sandbox of the mounts test was not made (see its failure)');
      return vols;
    };
    let logger = '';
    beforeAll(async () => {
      if (vols.sandbox) return;
      // The mounts test failed before it made its sandbox: one of our own (no mounts) so that these still run.
      const sandbox = await node().runSandbox('vmio', {}, 'vm');
      const app = await node().createContainer(sandbox, 'app', { command: ['/bin/sh', '-c', 'exec sleep 600'] });
      await call(rt(), rt().startContainer, { containerId: app }, 180_000);
      Object.assign(vols, { sandbox, app, pod: `k8s-${sandbox.slice(0, 12)}` });
    }, 600_000);
    const loggerId = () => {
      if (!logger) throw new Error('the logger container was not made (see the log file test)');
      return logger;
    };

    it("ExecSync runs in the VM's container: stdout, stderr, exit code; a timeout is DEADLINE_EXCEEDED", async () => {
      const res = await call(rt(), rt().execSync, { containerId: vm().app, cmd: ['/bin/sh', '-c', 'echo out-of-$(uname -n); echo err >&2; exit 5'], timeout: 60n }, 90_000);
      // The container's hostname is its pod's (inside the VM), not the node's "aurae".
      expect([res.stdout.toString(), res.stderr.toString(), res.exitCode]).toEqual([expect.stringMatching(/^out-of-(?!aurae\n)\S+\n$/), 'err\n', 5]);
      const slow = await refusal(call(rt(), rt().execSync, { containerId: vm().app, cmd: ['/bin/sleep', '60'], timeout: 3n }, 90_000));
      expect([slow.code, slow.details]).toEqual([status.DEADLINE_EXCEEDED, expect.stringMatching(/timed out after 3 s/)]);
    }, 240_000);

    it('Exec over SPDY (v4) and WebSocket (v5), no tty: stdin in, stdout, stderr and the exit code back from the child', async () => {
      const spdy = await call(rt(), rt().exec, { containerId: vm().app, cmd: ['/bin/sh', '-c', 'cat; echo e >&2; exit 2'], tty: false, stdin: true, stdout: true, stderr: true });
      const viaSpdy = await spdyExec(await hostUrl(spdy.url), { stdin: 'through spdy into the vm\n' });
      expect([viaSpdy.stdout.toString(), viaSpdy.stderr.toString(), viaSpdy.exitCode]).toEqual(['through spdy into the vm\n', 'e\n', 2]);
      const ws = await call(rt(), rt().exec, { containerId: vm().app, cmd: ['/bin/sh', '-c', 'cat'], tty: false, stdin: true, stdout: true, stderr: true });
      const viaWs = await wsExec(await hostUrl(ws.url), { stdin: 'through websocket into the vm\n' });
      expect([viaWs.stdout.toString(), viaWs.exitCode]).toEqual(['through websocket into the vm\n', 0]);
    }, 90_000);

    it("the container's output is in its CRI log file on the node, followed from the child; ReopenContainerLog after rotation", async () => {
      logger = await node().createContainer(vm().sandbox, 'logger', {
        command: ['/bin/sh', '-c', 'mkdir -p /www && echo hello-from-the-vm > /www/index.html && httpd -p 8080 -h /www; i=0; while true; do echo line-$i; i=$((i+1)); sleep 1; done'],
      });
      await call(rt(), rt().startContainer, { containerId: logger }, 180_000);
      await node().untilState(logger, ContainerState.CONTAINER_RUNNING, 180_000);
      const file = (await node().status(logger)).logPath;
      expect(file).toBe('/var/log/pods/e2e_vols/logger/0.log');
      await eventually(async () => Number((await node().sh(`grep -c line- ${file} 2>/dev/null || true`)).trim()) >= 3, 120_000, 'lines of the VM container in its log file');
      const first = await node().sh(`cat ${file}`);
      // CRI format (time stream tag text), each line once, in order.
      const lines = first.split('\n').filter(Boolean);
      expect(lines.every((l) => /^\S+ stdout F line-\d+$/.test(l))).toBe(true);
      const numbers = (text: string) => [...text.matchAll(/line-(\d+)/g)].map((m) => Number(m[1]));
      expect(numbers(first)).toEqual(numbers(first).map((_, i) => numbers(first)[0]! + i));
      await node().sh(`mv ${file} ${file}.1`);
      await call(rt(), rt().reopenContainerLog, { containerId: logger });
      const fresh = await eventually(async () => {
        const text = await node().sh(`cat ${file} 2>/dev/null || true`);
        return text.includes('line-') && text;
      }, 60_000, 'lines in the reopened log');
      const old = numbers(await node().sh(`cat ${file}.1`));
      expect(Math.min(...numbers(fresh))).toBeGreaterThan(Math.max(...old) - 1);
    }, 300_000);

    it('PortForward reaches a server inside the VM pod (through the child), over SPDY', async () => {
      const pf = await call(rt(), rt().portForward, { podSandboxId: vm().sandbox, port: [8080] });
      const res = await eventually(async () => {
        const r = await spdyPortForward(await hostUrl(pf.url), 8080, Buffer.from('GET / HTTP/1.0\r\n\r\n'));
        return r.data.toString().includes('hello-from-the-vm') && r;
      }, 60_000, 'the page through port-forward');
      expect(res.data.toString()).toMatch(/^HTTP\/1\.[01] 200/);
    }, 120_000);

    it("stats: ContainerStats, ListContainerStats and PodSandboxStats from the child's cgroups", async () => {
      const logger = loggerId();
      const cs = (await call(rt(), rt().containerStats, { containerId: logger }, 60_000)).stats!;
      expect(cs.attributes?.id).toBe(logger);
      expect(cs.cpu?.usageCoreNanoSeconds?.value).toBeGreaterThan(0n);
      expect(cs.memory?.workingSetBytes?.value).toBeGreaterThan(0n);
      const list = (await call(rt(), rt().listContainerStats, { filter: { id: '', podSandboxId: vm().sandbox, labelSelector: {} } }, 60_000)).stats;
      expect(list.map((s) => s.attributes!.id).sort()).toEqual([vm().app, logger].sort());
      const ps = (await call(rt(), rt().podSandboxStats, { podSandboxId: vm().sandbox }, 60_000)).stats!;
      expect(ps.linux?.memory?.workingSetBytes?.value).toBeGreaterThan(0n);
      expect(ps.linux?.process?.processCount?.value).toBeGreaterThanOrEqual(2n);
      expect(ps.linux?.containers.map((c) => c.attributes!.id)).toContain(logger);
    }, 120_000);

    it("removing the vm sandbox: the volume binds and the share's tmpfs are gone, the node's files stay", async () => {
      const { sandbox: id, pod } = vm();
      await call(rt(), rt().stopPodSandbox, { podSandboxId: id }, 120_000);
      await call(rt(), rt().removePodSandbox, { podSandboxId: id }, 120_000);
      expect((await node().sh(`grep -c " /run/aurae/vm-pod-volumes/${pod}" /proc/self/mountinfo || true`)).trim()).toBe('0');
      if (vols.mounts) expect((await node().sh(`cat ${KUBELET}/volumes/data/in`)).trim()).toBe('from-the-node');
    }, 300_000);
  });
});
