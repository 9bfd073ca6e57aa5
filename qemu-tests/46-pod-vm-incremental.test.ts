// 46: a VM sandbox made piece by piece (what the CRI runtime handler "vm" maps onto): CreateSandbox with sandbox
// "vm" spawns the child VM pod-NAME with no image disk but with the node's image share (virtio-9p, read-only) and
// creates an empty sandbox in the child; CreateContainer mounts the image's root filesystem in the share and
// creates the container in the child (state "created"), StartContainer runs it (its output is read on the child),
// StopContainer stops it, RemoveContainer removes it (its image leaves the share); a second container is added to
// the same running VM afterwards. Removing the pod frees the VM and the share. Driven through the node's own API
// (PodService CreateSandbox … RemoveContainer, raw gRPC with the image's admin certificate: the SDK has no calls
// for them), as the CRI does in-process. Last, the pod's writable volumes share with the VM as the attacker: root in
// the child cannot leave a setuid file, a file chowned to root or a device node in a host path of the node.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AuraeClient, connect } from '../aer/sdk';
import { loadClientConfig } from '../aer/sdk/client-config';
import { GUEST_REGISTRY, GUEST_REGISTRY_HOST, withGuestRegistry } from '../image/lib/guest-registry';
import {
  type ContainerStatus,
  PodServiceClient,
  PodServiceCreateContainerRequest,
  PodServiceCreateSandboxRequest,
  PodServiceRemoveContainerRequest,
  PodServiceStartContainerRequest,
  PodServiceStopContainerRequest,
  type PodStatus,
} from '../supervisor/gen/aurae/pods/v0/pods';
import { buildTestImages, startTestRegistry, testImagesDir, type TestRegistry } from '../supervisor/images/test-registry';
import { bootNode, type BootedNode, createStateDisk, eventually, NESTED_HOST_CPUS } from './fixture/node';

const IMAGE = `${GUEST_REGISTRY_HOST}/busybox:latest`;
/**
 * Three layers (busybox, /etc/motd whited out, /data opaque with only c): shared as a read-only overlay. Its opaque
 * directory needs trusted xattrs in the image store: the node has a state disk (ext4; tmpfs has none here).
 */
const LAYERED = `${GUEST_REGISTRY_HOST}/layered:latest`;
// As 44: the child boots with KVM inside the TCG guest, else TCG in TCG, on a loaded 2-core host.
const PARENT_BOOT_MS = 300_000;
const VM_POD_MS = 240_000;
const CALL_MS = 60_000;

describe('46 VM sandbox piece by piece', () => {
  let registry: TestRegistry | null = null;
  let node: BootedNode | null = null;
  let sdk: AuraeClient | null = null;
  let raw: InstanceType<typeof PodServiceClient> | null = null;
  let dir = '';
  const booted = () => {
    if (!node) throw new Error('the node did not boot (see the beforeAll error)');
    return node;
  };
  const client = () => (sdk ??= booted().client());
  const routed = (path: string) => connect({ config: booted().image.clientConfig, address: `127.0.0.1:${booted().port}`, targetNode: path });
  const logsOf = async (c: AuraeClient, pod: string, container: string) => {
    const lines: string[] = [];
    for await (const entry of c.observe.logs(pod, container, { tail: 1000 })) lines.push(entry.line);
    return lines.join('\n');
  };
  /** The node's PodService, raw (the incremental methods). */
  const pods = () => {
    if (raw) return raw;
    const config = loadClientConfig({ config: booted().image.clientConfig });
    const read = (f: string) => fs.readFileSync(f);
    raw = new PodServiceClient(`127.0.0.1:${booted().port}`, grpc.credentials.createSsl(read(config.ca), read(config.key), read(config.cert)), {
      'grpc.ssl_target_name_override': config.node,
      'grpc.default_authority': config.node,
    });
    return raw;
  };
  type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown;
  const call = <Req, Res>(fn: Unary<Req, Res>, req: Req, timeoutMs = CALL_MS): Promise<Res> =>
    new Promise((resolve, reject) => fn.call(pods(), req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res))));
  const createSandbox = (name: string) =>
    call<PodServiceCreateSandboxRequest, { pod?: PodStatus }>(pods().createSandbox, PodServiceCreateSandboxRequest.fromPartial({ pod: { name, sandbox: 'vm' } }), VM_POD_MS);
  const createContainer = (pod: string, name: string, script: string, image = IMAGE) =>
    call<PodServiceCreateContainerRequest, { container?: ContainerStatus }>(
      pods().createContainer,
      PodServiceCreateContainerRequest.fromPartial({ podName: pod, container: { name, image, command: ['/bin/sh', '-c', script] } }),
      VM_POD_MS,
    );
  const startContainer = (pod: string, name: string) =>
    call<PodServiceStartContainerRequest, { container?: ContainerStatus }>(pods().startContainer, PodServiceStartContainerRequest.fromPartial({ podName: pod, containerName: name }), VM_POD_MS);
  const stopContainer = (pod: string, name: string, graceMs: number) =>
    call<PodServiceStopContainerRequest, { container?: ContainerStatus }>(pods().stopContainer, PodServiceStopContainerRequest.fromPartial({ podName: pod, containerName: name, gracePeriodMs: graceMs }));
  const removeContainer = (pod: string, name: string, force = false) =>
    call<PodServiceRemoveContainerRequest, object>(pods().removeContainer, PodServiceRemoveContainerRequest.fromPartial({ podName: pod, containerName: name, force }));

  beforeAll(async () => {
    const images = await buildTestImages(testImagesDir());
    registry = await startTestRegistry();
    await registry.push(images.layout, images.tags.base, 'busybox:latest');
    await registry.push(images.layout, images.tags.whiteout, 'layered:latest');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-46-'));
    node = await bootNode({
      name: '46-pod-vm-incremental',
      disks: [createStateDisk(dir, 512)],
      bootVolume: true, cpus: NESTED_HOST_CPUS,
      memoryMiB: 2048,
      readyTimeoutMs: PARENT_BOOT_MS,
      guestForwards: [{ guestAddress: GUEST_REGISTRY.address, guestPort: GUEST_REGISTRY.port, hostPort: registry.port }],
      nodeConfig: withGuestRegistry,
    });
  }, PARENT_BOOT_MS + 120_000);
  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== 'fail' || !node) return;
    console.error(`--- console of 46-pod-vm-incremental (full log: ${node.consoleLog}) ---\n${node.vm.tail(80)}`);
    const vms = await client().vms.list().catch((err: Error) => err.message);
    console.error(`--- VMs on the node ---\n${JSON.stringify(vms, null, 2)}`);
  });
  afterAll(async () => {
    raw?.close();
    sdk?.close();
    await node?.stop();
    await registry?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates a VM sandbox, then a container in it: created → started (its output seen in the child) → stopped → removed; a second one later; remove frees the VM', async () => {
    // No pull in CreateContainer: the image is pulled first (as the kubelet does through the ImageService).
    await client().images.pull(IMAGE);
    await client().images.pull(LAYERED);
    let t = Date.now();
    const sandbox = (await createSandbox('inc')).pod!;
    const sandboxMs = Date.now() - t;
    expect(sandbox).toMatchObject({ name: 'inc', sandbox: 'vm', state: 'running', containers: [] });
    const vm = (await client().vms.list()).find((v) => v.name === 'pod-inc');
    expect(vm).toMatchObject({ state: 'running', memoryMiB: 512 });
    const child = routed(vm!.nodePath);
    try {
      // The child has the sandbox (an empty cell pod).
      expect((await child.pods.inspect('inc')).containers).toEqual([]);

      t = Date.now();
      const created = (await createContainer('inc', 'app', 'echo "hello from $(uname -n) $(cat /proc/cmdline)"; echo ready; exec sleep 600')).container!;
      expect(created).toMatchObject({ name: 'app', image: IMAGE, state: 'created', pid: 0 });
      expect(created.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(created.createdAt).toBeGreaterThan(0n);
      expect((await client().pods.inspect('inc')).containers[0]).toMatchObject({ name: 'app', state: 'created' });
      // The image is mounted in the pod's share on the node (what the VM sees over virtio-9p).
      expect(Number((await (await booted().shell()).ok('grep -c " /run/aurae/vm-pod-shares/inc/" /proc/self/mountinfo || true')).trim())).toBeGreaterThan(0);

      const started = (await startContainer('inc', 'app')).container!;
      expect(['created', 'running']).toContain(started.state);
      const out = await eventually(async () => {
        const text = await logsOf(child, 'inc', 'app');
        return text.includes('ready') && text;
      }, VM_POD_MS, 'the container in the VM sandbox to print');
      console.log(`VM sandbox: CreateSandbox ${sandboxMs} ms; CreateContainer + StartContainer → first log line ${Date.now() - t} ms`);
      // It runs in the child: the child's host name is the pod's, its kernel command line the child's.
      expect(out).toMatch(/hello from inc console=ttyS0 .*panic=-1/);
      const running = await eventually(async () => {
        const p = await client().pods.inspect('inc');
        return p.containers[0]?.state === 'running' && p;
      }, CALL_MS, 'the node to see the container running');
      expect(running.state).toBe('running');
      await expect(startContainer('inc', 'app')).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
      await expect(removeContainer('inc', 'app')).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });

      const stopped = (await stopContainer('inc', 'app', 5_000)).container!;
      expect(stopped.state).toMatch(/^(exited|failed)$/);
      expect(stopped.exit).toBeDefined();
      await removeContainer('inc', 'app');
      expect((await client().pods.inspect('inc')).containers).toEqual([]);
      expect((await child.pods.inspect('inc')).containers).toEqual([]);
      await expect(removeContainer('inc', 'app')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });

      // A second container in the same running VM, of a three-layer image (shared as a read-only overlay of its
      // layers: whiteouts and opaque directories applied), one that exits by itself.
      await createContainer('inc', 'once', 'echo second; test -e /etc/motd || echo motd-gone; echo "data=$(ls /data | tr "\\n" " ")"; exit 3', LAYERED);
      await startContainer('inc', 'once');
      const exited = await eventually(async () => {
        const c = (await client().pods.inspect('inc')).containers.find((x) => x.name === 'once');
        return c?.state !== undefined && c.state !== 'created' && c.state !== 'running' && c;
      }, VM_POD_MS, 'the second container to exit');
      expect(exited.state).toMatch(/^(exited|failed)$/);
      expect(exited.exit).toMatchObject({ code: 3 });
      const second = await logsOf(child, 'inc', 'once');
      expect(second).toContain('second');
      expect(second).toContain('motd-gone');
      expect(second).toMatch(/data=c\s*$/m);
    } finally {
      child.close();
    }

    // Removing the sandbox: the VM goes down and is freed, the share's mounts with it.
    await client().pods.stop('inc', { graceMs: 10_000 });
    await client().pods.remove('inc');
    expect((await client().vms.list()).map((v) => v.name)).not.toContain('pod-inc');
    expect((await client().pods.list()).map((p) => p.name)).not.toContain('inc');
    const shell = await booted().shell();
    expect((await shell.ok('grep -c vm-pod-shares /proc/self/mountinfo || true')).trim()).toBe('0');
    expect((await shell.ok('ls /run/aurae/vm-pod-shares 2>/dev/null | wc -l')).trim()).toBe('0');
  }, 4 * VM_POD_MS + 4 * CALL_MS);

  it('after an auraed SIGKILL the sandbox comes back (VM booted again, image share mounted again): the lost container shows ended, a new one runs', async () => {
    await createSandbox('again');
    await createContainer('again', 'app', 'echo ready; exec sleep 600');
    await startContainer('again', 'app');
    const first = routed('aurae/pod-again');
    try {
      await eventually(async () => (await logsOf(first, 'again', 'app')).includes('ready'), VM_POD_MS, 'the container to print');
    } finally {
      first.close();
    }
    const before = await client().pods.inspect('again');
    const from = booted().vm.console.length;
    await (await booted().shell()).ok('kill -9 "$(cat /run/aurae/auraed.pid)"');
    await booted().waitReady(180_000, from);
    sdk?.close();
    sdk = null;
    raw?.close();
    raw = null;
    // The new auraed boots the VM again (a fresh child) and makes the sandbox and its container there anew.
    const after = await eventually(async () => {
      const p = await client().pods.inspect('again');
      return p.state === 'running' && p.containers[0]?.state === 'exited' && p;
    }, VM_POD_MS, 'the sandbox to be back with its container ended');
    expect(after.createdAt).toBe(before.createdAt);
    await createContainer('again', 'later', 'echo later');
    await startContainer('again', 'later');
    const child = routed('aurae/pod-again');
    try {
      await eventually(async () => (await logsOf(child, 'again', 'later')).includes('later'), VM_POD_MS, 'the new container to print');
    } finally {
      child.close();
    }
    // The sandbox stays for the volumes share's test below, which removes it.
  }, 180_000 + 4 * VM_POD_MS + 2 * CALL_MS);

  // The volumes share (virtio-9p, writable, QEMU running as root on the node) with the VM as the attacker: root in
  // the child VM of the sandbox above (a cell there, not a container: every capability, the share mounted by hand
  // when no container has mounted it) tries to leave a setuid-root file, a file chowned to root, a device node, a
  // fifo and a symbolic link in host paths bound in the pod's share. The node sees only plain files owned by root
  // with mode 0600 (security_model=mapped-file keeps what the guest set as metadata: the guest still sees it),
  // the file that was there keeps its mode, and ordinary writes (a termination log, a file in an emptyDir) are
  // there at once. The binds are made as nodePodVolumeShare.add makes them (kubelet's mounts reach it through the
  // CRI only: 47 covers that path); /tmp on the node is a tmpfs (no user xattrs on its Linux 6.1). The checks are on
  // the bits and file types themselves (/tmp there is nosuid, kubelet's /var/lib/kubelet would not be).
  describe('volumes share: a VM cannot leave setuid files or device nodes on the node', () => {
    const HOST = '/tmp/s12-volumes';
    const STAGE = '/run/aurae/vm-pod-volumes.stage/again/probe';
    const VIEW = '/run/aurae/vm-pod-volumes/again/probe';

    it('chmod u+s, chown 0:0, mknod, mkfifo, ln -s in a host path: metadata only on the node; writes go through', async () => {
      const shell = await booted().shell();
      if (!(await client().pods.list()).some((p) => p.name === 'again')) throw new Error('needs the sandbox "again" of the test above (run the whole file)');
      await shell.ok(
        [
          `mkdir -p ${HOST}/empty-dir ${STAGE}/0`,
          `echo from-the-node > ${HOST}/empty-dir/pre`,
          `chmod 644 ${HOST}/empty-dir/pre`,
          `: > ${HOST}/termination-log`,
          `chmod 666 ${HOST}/termination-log`,
          `: > ${STAGE}/1`,
          `mount --rbind ${HOST}/empty-dir ${VIEW}/0`,
          `mount --bind ${HOST}/termination-log ${VIEW}/1`,
        ].join(' && '),
      );
      const script = [
        'm=$(awk \'$1 == "aurae-volumes" { print $2; exit }\' /proc/mounts)',
        'if [ -z "$m" ]; then m=/run/s12-volumes; mkdir -p $m; mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=mmap aurae-volumes $m; fi',
        'v=$m/probe/0',
        'try() { if "$@" 2>/dev/null; then echo "$*: ok"; else echo "$*: refused"; fi; }',
        '{',
        'echo planted > $v/planted; chown 1000:1000 $v/planted',
        'try chown 0:0 $v/planted',
        'try chmod 4755 $v/planted',
        'try chmod u+s,g+s $v/pre',
        'try mknod $v/null c 1 3',
        'try mknod $v/disk b 254 0',
        'try mkfifo $v/fifo',
        'try ln -s /etc/shadow $v/link',
        'mkdir $v/dir; try chmod 2777 $v/dir',
        'try chown 1000:1000 $v',
        'stat -c "seen %n %u:%g %a %F" $v/planted $v/pre $v/null $v/disk $v/dir $v | sed "s#$v#V#g"',
        'echo bye > $m/probe/1',
        'echo written > $v/data',
        '} > $v/results 2>&1',
        'echo done > $v/done',
      ].join('\n');
      const child = routed('aurae/pod-again');
      try {
        await child.cells.allocate({ name: 'probe' });
        await child.cells.start('probe', { name: 'attack', command: script });
        await eventually(async () => (await shell.ok(`cat ${HOST}/empty-dir/done 2>/dev/null || true`)).trim() === 'done', CALL_MS, 'the VM to finish its tries');
      } finally {
        child.close();
      }
      const results = await shell.ok(`cat ${HOST}/empty-dir/results`);
      console.log(`volumes share, seen in the VM:\n${results}`);
      // The VM's calls succeed (its file system behaves as POSIX) and it sees what it set...
      expect(results).toMatch(/chown 0:0 \S+\/planted: ok/);
      expect(results).toMatch(/chmod 4755 \S+\/planted: ok/);
      expect(results).toMatch(/mknod \S+\/null c 1 3: ok/);
      expect(results).toMatch(/seen V\/planted 0:0 4755 regular file/);
      expect(results).toMatch(/seen V\/null 0:0 \d+ character special file/);
      expect(results).toMatch(/seen V 1000:1000 /);
      // ...but on the node: no setuid or setgid bit, nothing but plain files and directories, the pod's files
      // root's and 0600, the node's file as it was, and the ordinary writes there.
      expect((await shell.ok(`find ${HOST} -perm /6000`)).trim()).toBe('');
      expect((await shell.ok(`find ${HOST} ! -type f ! -type d`)).trim()).toBe('');
      expect((await shell.ok(`stat -c '%n %u:%g %a' ${HOST}/empty-dir/planted ${HOST}/empty-dir/null ${HOST}/empty-dir/pre ${HOST}/empty-dir`)).trim().split('\n')).toEqual([
        `${HOST}/empty-dir/planted 0:0 600`,
        `${HOST}/empty-dir/null 0:0 600`,
        `${HOST}/empty-dir/pre 0:0 644`,
        `${HOST}/empty-dir 0:0 755`,
      ]);
      expect(await shell.ok(`cat ${HOST}/termination-log ${HOST}/empty-dir/data ${HOST}/empty-dir/pre`)).toBe('bye\nwritten\nfrom-the-node\n');

      // Removing the sandbox unmounts the binds with the share; the node's files stay.
      await client().pods.remove('again', { force: true });
      expect(await client().vms.list()).toEqual([]);
      expect((await client().pods.list()).map((p) => p.name)).not.toContain('again');
      expect((await shell.ok('grep -c vm-pod-shares /proc/self/mountinfo || true')).trim()).toBe('0');
      expect((await shell.ok('grep -c vm-pod-volumes /proc/self/mountinfo || true')).trim()).toBe('0');
      expect((await shell.ok(`cat ${HOST}/empty-dir/data && rm -rf ${HOST}`)).trim()).toBe('written');
    }, 2 * VM_POD_MS + 4 * CALL_MS);
  });
});
