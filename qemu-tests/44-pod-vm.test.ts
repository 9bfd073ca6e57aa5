// 44: a VM-sandboxed pod. A node with its boot volume (so it can spawn children from its own kernel and
// initramfs, as in 21) pulls busybox from the host registry (as in 41) and runs a pod with sandbox "vm": the
// image becomes a read-only ext4 rootfs disk (mke2fs -d), the child VM pod-NAME boots with it attached, and the
// child's auraed runs the pod in a cell there. The container's /proc shows the child's kernel command line and
// memory, not the node's; its logs come back through the node (routed to the child); stop ends the pod and
// the VM (QEMU exits); remove frees the VM; after an auraed SIGKILL the VM boots again and the pod runs in it.
// Exec into the VM pod's container works through the node (relayed to the child's PodService/Exec) and routed to
// the child node (the router relays the bidi stream): stdout, stderr, stdin and the exit code.
// Also prints cell vs VM pod start times (Run → first log line), cold and warm.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AuraeClient, connect } from '../aer/sdk';
import { buildTestImages, startTestRegistry, testImagesDir, type TestRegistry } from '../supervisor/images/test-registry';
import { GUEST_REGISTRY, GUEST_REGISTRY_HOST, withGuestRegistry } from '../image/lib/guest-registry';
import { aer } from './fixture/aer';
import { bootNode, type BootedNode, eventually, NESTED_HOST_CPUS } from './fixture/node';

const IMAGE = `${GUEST_REGISTRY_HOST}/busybox:latest`;
// Deadlines for a loaded 2-core host (the child boots with KVM inside the TCG guest, else TCG in TCG; see 21).
const PARENT_BOOT_MS = 300_000;
const VM_POD_MS = 240_000;
const CALL_MS = 60_000;

describe('44 VM-sandboxed pod', () => {
  let registry: TestRegistry | null = null;
  let node: BootedNode | null = null;
  let sdk: AuraeClient | null = null;
  const booted = () => {
    if (!node) throw new Error('the node did not boot (see the beforeAll error)');
    return node;
  };
  const client = () => (sdk ??= booted().client());
  /** A client whose calls the node routes to its child `path` (metadata aurae-node). */
  const routed = (path: string) => connect({ config: booted().image.clientConfig, address: `127.0.0.1:${booted().port}`, targetNode: path });
  const logsOf = async (c: AuraeClient, pod: string, container: string) => {
    const lines: string[] = [];
    for await (const entry of c.observe.logs(pod, container, { tail: 1000 })) lines.push(entry.line);
    return lines.join('\n');
  };

  beforeAll(async () => {
    const images = await buildTestImages(testImagesDir());
    registry = await startTestRegistry();
    await registry.push(images.layout, images.tags.base, 'busybox:latest');
    node = await bootNode({
      name: '44-pod-vm',
      bootVolume: true, cpus: NESTED_HOST_CPUS,
      memoryMiB: 2048,
      readyTimeoutMs: PARENT_BOOT_MS,
      guestForwards: [{ guestAddress: GUEST_REGISTRY.address, guestPort: GUEST_REGISTRY.port, hostPort: registry.port }],
      nodeConfig: withGuestRegistry,
    });
  }, PARENT_BOOT_MS + 120_000);
  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== 'fail' || !node) return;
    console.error(`--- console of 44-pod-vm (full log: ${node.consoleLog}) ---\n${node.vm.tail(80)}`);
    const vms = await client().vms.list().catch((err: Error) => err.message);
    console.error(`--- VMs on the node ---\n${JSON.stringify(vms, null, 2)}`);
  });
  afterAll(async () => {
    sdk?.close();
    await node?.stop();
    await registry?.stop();
  });

  it('runs a busybox pod inside a child VM: /proc is the child\'s, logs and exec go through the node, stop frees the VM', async () => {
    // A cell pod first (pulls the image): the start time to compare with.
    let t = Date.now();
    await client().pods.run({ name: 'beside', containers: [{ name: 'app', image: IMAGE, command: ['/bin/sh', '-c', 'echo ready'] }] });
    await eventually(async () => (await logsOf(client(), 'beside', 'app')).includes('ready'), CALL_MS, 'the cell pod to print');
    const cellMs = Date.now() - t;

    const script = 'echo "mem=$(grep MemTotal /proc/meminfo | tr -s " " | cut -d" " -f2) host=$(uname -n) cmdline=$(cat /proc/cmdline)"; echo ready; exec sleep 600';
    t = Date.now();
    const started = await client().pods.run({ name: 'inside', sandbox: 'vm', containers: [{ name: 'app', image: IMAGE, command: ['/bin/sh', '-c', script] }] });
    const runMs = Date.now() - t;
    expect(started).toMatchObject({ name: 'inside', sandbox: 'vm', containers: [{ name: 'app', image: IMAGE }] });
    expect(started.containers[0]!.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);

    // The pod agent is the child node pod-inside; the node routes calls to it.
    const vm = (await client().vms.list()).find((v) => v.name === 'pod-inside');
    expect(vm).toMatchObject({ state: 'running', memoryMiB: 512 });
    const child = routed(vm!.nodePath);
    try {
      const out = await eventually(async () => {
        const text = await logsOf(child, 'inside', 'app');
        return text.includes('ready') && text;
      }, VM_POD_MS, 'the VM pod to print');
      const vmMs = Date.now() - t;
      console.log(`pod start → first log line: cell ${cellMs} ms, vm ${vmMs} ms (Run returned after ${runMs} ms)`);
      // The container sees the child's kernel: the child's memory (512 MiB VM, not the node's 2 GiB) and its
      // command line (the node's own has the debug shell; a child's has none).
      const mem = Number(/mem=(\d+)/.exec(out)?.[1]);
      expect(mem).toBeGreaterThan(300_000);
      expect(mem).toBeLessThan(600_000);
      expect(out).toMatch(/host=inside /);
      expect(out).toMatch(/cmdline=console=ttyS0 .*panic=-1/);
      expect(out).not.toContain('aurae.debug_shell');
      // aer pod logs on the node reads them on the child, routed through the node.
      const cli = await aer(booted(), ['pod', 'logs', 'inside'], CALL_MS);
      expect(cli.code, cli.stderr).toBe(0);
      expect(cli.stdout).toContain('host=inside');
      // The node's status of the pod comes from the child.
      const inspected = await eventually(async () => {
        const p = await client().pods.inspect('inside');
        return p.state === 'running' && p;
      }, CALL_MS, 'the VM pod to be running');
      expect(inspected.containers[0]).toMatchObject({ name: 'app', state: 'running', image: IMAGE });
      expect((await client().pods.list()).map((p) => `${p.name}:${p.sandbox}`)).toEqual(['beside:cell', 'inside:vm']);

      // Exec into the VM pod's container through the node: the node relays it to the child's PodService/Exec.
      // The process runs in the child (its memory, not the node's); stdout, stderr, stdin and the exit code pass.
      const ran = await client().pods.exec('inside', ['/bin/sh', '-c', 'echo "out mem=$(grep MemTotal /proc/meminfo | tr -s " " | cut -d" " -f2)"; echo err >&2; exit 7']);
      expect(ran.code).toBe(7);
      expect(ran.stderr.toString()).toBe('err\n');
      const execMem = Number(/^out mem=(\d+)\n$/.exec(ran.stdout.toString())?.[1]);
      expect(execMem).toBeGreaterThan(300_000);
      expect(execMem).toBeLessThan(600_000);
      const echoed = await client().pods.exec('inside', ['/bin/cat'], { container: 'app', stdin: 'hello through the node\n' });
      expect({ code: echoed.code, stdout: echoed.stdout.toString() }).toEqual({ code: 0, stdout: 'hello through the node\n' });
      // aer pod exec on the node: its exit status is the process's.
      const cliExec = await aer(booted(), ['pod', 'exec', 'inside', '--', '/bin/sh', '-c', 'echo via-aer; exit 3'], CALL_MS);
      expect({ code: cliExec.code, stdout: cliExec.stdout }).toEqual({ code: 3, stdout: 'via-aer\n' });
      // Exec routed to the child node itself (aurae-node: the child): the node's router relays the bidi stream.
      const routedExec = await child.pods.exec('inside', ['/bin/sh', '-c', 'read line; echo "child got $line"; exit 5'], { stdin: 'hi\n' });
      expect({ code: routedExec.code, stdout: routedExec.stdout.toString() }).toEqual({ code: 5, stdout: 'child got hi\n' });
    } finally {
      child.close();
    }

    // Stop: the pod in the child, then the VM (its QEMU exits, its memory is the node's again).
    const stopped = await client().pods.stop('inside', { graceMs: 20_000 });
    expect(stopped.state).toBe('stopped');
    // "stopped" with no pid: the node saw its QEMU exit (VmRuntime settles the state on the exit).
    expect((await client().vms.list()).find((v) => v.name === 'pod-inside')).toMatchObject({ state: 'stopped', pid: 0 });

    await client().pods.remove('inside');
    expect((await client().vms.list()).map((v) => v.name)).not.toContain('pod-inside');
    expect((await client().pods.list()).map((p) => p.name)).toEqual(['beside']);
    await client().pods.remove('beside', { force: true });

    // Warm starts (image stored, rootfs disk built): a number for the report, not an assertion.
    t = Date.now();
    await client().pods.run({ name: 'beside2', containers: [{ name: 'app', image: IMAGE, command: ['/bin/sh', '-c', 'echo ready'] }] });
    await eventually(async () => (await logsOf(client(), 'beside2', 'app')).includes('ready'), CALL_MS, 'the warm cell pod to print');
    const cellWarmMs = Date.now() - t;
    t = Date.now();
    await client().pods.run({ name: 'inside2', sandbox: 'vm', containers: [{ name: 'app', image: IMAGE, command: ['/bin/sh', '-c', 'echo ready; exec sleep 600'] }] });
    const warmRunMs = Date.now() - t;
    const child2 = routed('aurae/pod-inside2');
    try {
      await eventually(async () => (await logsOf(child2, 'inside2', 'app')).includes('ready'), VM_POD_MS, 'the warm VM pod to print');
    } finally {
      child2.close();
    }
    console.log(`warm pod start → first log line: cell ${cellWarmMs} ms, vm ${Date.now() - t} ms (Run returned after ${warmRunMs} ms)`);
    await client().pods.remove('beside2', { force: true });
  }, 5 * CALL_MS + 3 * VM_POD_MS + 120_000);

  it('a VM pod survives an auraed SIGKILL: its VM boots again and the pod runs in it anew; remove frees it', async () => {
    const before = await client().pods.inspect('inside2');
    expect(before.state).toBe('running');
    const from = booted().vm.console.length;
    await (await booted().shell()).ok('kill -9 "$(cat /run/aurae/auraed.pid)"');
    await booted().waitReady(180_000, from);
    sdk?.close();
    sdk = null;
    // The new auraed stops the old QEMU, boots the VM again (a fresh child) and runs the pod there.
    const after = await eventually(async () => {
      const p = await client().pods.inspect('inside2');
      return p.state === 'running' && p;
    }, VM_POD_MS, 'the VM pod to run again');
    expect(after.createdAt).toBe(before.createdAt);
    const child = routed('aurae/pod-inside2');
    try {
      await eventually(async () => (await logsOf(child, 'inside2', 'app')).includes('ready'), CALL_MS, 'the VM pod to print again');
    } finally {
      child.close();
    }
    await expect(client().pods.remove('inside2')).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    await client().pods.remove('inside2', { force: true });
    expect(await client().vms.list()).toEqual([]);
    expect(await client().pods.list()).toEqual([]);
  }, 180_000 + 2 * VM_POD_MS + 2 * CALL_MS);
});
