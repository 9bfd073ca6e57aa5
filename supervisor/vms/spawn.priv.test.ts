// Host tier of spawn: the real auraed (daemon mode, on this machine) spawns a child microVM from the built
// image's kernel and initramfs, the child's API is reached through the parent (metadata aurae-node), the
// child stops gracefully (QEMU exits by itself after the ACPI powerdown), a parent SIGTERM stops its children
// first, and bad requests leave no QEMU process behind. `aer vm renew` renews a running child's certificate:
// the child serves the new one at once and the parent refuses the one it replaced. Depth 2: given the boot
// volume, the child spawns a grandchild with the QEMU from its /boot (KVM inside the TCG child, where the
// emulated CPU offers it).
// Needs the built image: AURAE_COMPRESSION=none npx tsx image/build.ts
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Metadata, credentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuraeClient, AuraeApiError, type VmInfo, connect } from '../../aer/sdk';
import { runAer } from '../../aer/cli/program';
import { readImage } from '../../image/build';
import { mintParentClientCert, parseGuestPayload, unpackGuestPayload } from '../../guest';
import { NodeServiceClient } from '../gen/aurae/node/v0/node';
import { type PreparedNode, REPO_ROOT, type RunningTestAuraed, launchAuraed, prepareTestNode } from '../daemon/testing';

const MANIFEST = join(REPO_ROOT, 'out/image/manifest.json');

function builtImage(): { kernel: string; initramfs: string } {
  if (!existsSync(MANIFEST)) {
    throw new Error(`${MANIFEST} is missing: build the image first with \`AURAE_COMPRESSION=none npx tsx image/build.ts\``);
  }
  const image = readImage(MANIFEST);
  for (const f of [image.kernel, image.initramfs]) if (!existsSync(f)) throw new Error(`${f} (from ${MANIFEST}) is missing: rebuild the image`);
  return { kernel: image.kernel, initramfs: image.initramfs };
}

/** Pids of QEMU processes whose command line mentions `marker` (the test node's temp dir). */
function qemuPids(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.startsWith('qemu-system') && cmdline.includes(marker)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

// Deadlines generous enough for a loaded 2-core machine booting children under TCG; every wait ends as soon as
// its condition holds, so an idle machine is not slowed down.
/** auraed up and serving (tsx compiles the daemon on start; reconcile may stop a leftover QEMU first). */
const AURAED_READY_MS = 120_000;
/** A child VM booted to its AURAE_READY line (the parent's vms.bootTimeoutMs; below the SDK's 180 s for Spawn). */
const CHILD_BOOT_MS = 170_000;
/** A child VM shut down by ACPI powerdown (the parent's vms.stopTimeoutMs). */
const CHILD_STOP_MS = 60_000;

async function startParent(vms: Record<string, unknown>): Promise<{ node: PreparedNode; auraed: RunningTestAuraed }> {
  const node = await prepareTestNode({ nodeName: 'aurae', vms });
  const auraed = launchAuraed(node.configPath);
  await auraed.waitReady(AURAED_READY_MS);
  return { node, auraed };
}

/**
 * List `name` on `client` until `done` holds or `timeoutMs` passes; returns the last status seen (undefined:
 * not listed), so the caller's assertion shows what it was when the deadline passed.
 */
async function waitForVm(client: AuraeClient, name: string, done: (vm: VmInfo) => boolean, timeoutMs: number): Promise<VmInfo | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const vm = (await client.vms.list()).find((v) => v.name === name);
    if ((vm && done(vm)) || Date.now() > deadline) return vm;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** SHA-256 (hex) of the certificate a child serves at `address` (host:port), seen by a direct TLS client (admin). */
function servedFingerprint(node: PreparedNode, address: string, tlsName: string): Promise<string> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host,
      port: Number(port),
      servername: tlsName,
      ca: readFileSync(node.pki.caCert),
      cert: readFileSync(node.pki.adminCert),
      key: readFileSync(node.pki.adminKey),
      ALPNProtocols: ['h2'],
    });
    socket.once('secureConnect', () => {
      resolve(createHash('sha256').update(socket.getPeerCertificate().raw).digest('hex'));
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/**
 * Deliver `identity` to the child at `address` as its parent would (NodeService/RenewIdentity from a client
 * certificate of the parent's spawn CA, read from the test node's files): the test's way to make a child serve
 * a certificate its parent did not confirm.
 */
async function deliverAsParent(node: PreparedNode, address: string, tlsName: string, identity: { serverCertChain: string; serverKey: string; spawnCaCert: string | null }): Promise<void> {
  const spawnCa = { certPem: readFileSync(node.pki.spawnCaCert, 'utf8'), keyPem: readFileSync(node.pki.spawnCaKey, 'utf8') };
  const asParent = await mintParentClientCert({ nodePath: node.nodeName, spawnCa });
  const creds = credentials.createSsl(readFileSync(node.pki.caCert), Buffer.from(asParent.keyPem), Buffer.from(asParent.certChainPem));
  const client = new NodeServiceClient(address, creds, { 'grpc.ssl_target_name_override': tlsName, 'grpc.default_authority': tlsName });
  try {
    await new Promise<void>((resolve, reject) =>
      client.renewIdentity({ serverCertChain: identity.serverCertChain, serverKey: identity.serverKey, spawnCaCert: identity.spawnCaCert ?? '' }, new Metadata(), { deadline: Date.now() + 60_000 }, (err) => (err ? reject(err) : resolve())),
    );
  } finally {
    client.close();
  }
}

describe('spawn on the host tier', () => {
  const image = builtImage();
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let parent: AuraeClient;
  let child: AuraeClient;

  beforeAll(async () => {
    ({ node, auraed } = await startParent({ kernel: image.kernel, initrd: image.initramfs, maxMemoryMiB: 1024, bootTimeoutMs: CHILD_BOOT_MS, stopTimeoutMs: CHILD_STOP_MS }));
    parent = connect({ config: node.clientConfigPath, timeoutMs: 60_000 });
    child = connect({ config: node.clientConfigPath, targetNode: 'aurae/web', timeoutMs: 60_000 });
  }, AURAED_READY_MS + 60_000);

  afterAll(async () => {
    parent?.close();
    child?.close();
    await auraed?.stop(CHILD_STOP_MS);
    const left = node ? qemuPids(node.dir) : [];
    for (const pid of left) process.kill(pid, 'SIGKILL');
    node?.cleanup();
    expect(left, 'QEMU processes left behind').toEqual([]);
  }, CHILD_STOP_MS + 30_000);

  it('bad requests get clear errors and start no QEMU', async () => {
    const refused = async (p: Promise<unknown>) => {
      const err = await p.then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(AuraeApiError);
      return err as AuraeApiError;
    };
    const tooBig = await refused(parent.vms.spawn({ name: 'big', memoryMiB: 4096 }));
    expect(tooBig.code).toBe('INVALID_ARGUMENT');
    expect(tooBig.message).toMatch(/memory_mib 4096 is out of range: expected 128\.\.1024 \(vms\.maxMemoryMiB/);
    const badName = await refused(parent.vms.spawn({ name: 'Web_1' }));
    expect(badName.code).toBe('INVALID_ARGUMENT');
    expect(badName.message).toMatch(/DNS label/);
    expect(qemuPids(node.dir)).toEqual([]);
    expect(await parent.vms.list()).toEqual([]);
  });

  it('spawns web from the image and reaches its API through the parent', async () => {
    const started = Date.now();
    const web = await parent.vms.spawn({ name: 'web', memoryMiB: 512 });
    const spawnMs = Date.now() - started;
    expect(web).toMatchObject({ name: 'web', nodePath: 'aurae/web', state: 'running', tlsName: 'web.aurae', memoryMiB: 512, cpus: 1 });
    expect(web.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(qemuPids(node.dir)).toEqual([web.pid]);
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${web.pid}/status`, 'utf8'))?.[1];
    console.log(`spawn → child API ready: ${spawnMs} ms; QEMU RSS ${Math.round(Number(rss) / 1024)} MiB (guest RAM 512 MiB); child: ${auraed.logs.find((l) => l.msg === 'vm running')?.ready}`);

    expect(await child.health.check()).toEqual({ status: 'SERVING' });
    const info = await child.discovery.discover();
    expect(info.nodeName).toBe('aurae/web');
    // Every service routes: the child's own VmService answers (it has no children), and aer --node works.
    expect(await child.vms.list()).toEqual([]);
    const out: string[] = [];
    const code = await runAer(['--config', node.clientConfigPath, '--node', 'aurae/web', '-o', 'json', 'version'], { out: (t) => void out.push(t), err: (t) => void out.push(t), env: {} });
    expect(code, out.join('\n')).toBe(0);
    expect(JSON.parse(out[0]!).auraed.nodeName).toBe('aurae/web');
    const listed = await parent.vms.list();
    expect(listed.map((v) => [v.name, v.state, v.pid])).toEqual([['web', 'running', web.pid]]);
  }, CHILD_BOOT_MS + 60_000);

  it('a routed admin call is authorized at both ends; the child cannot spawn on the host tier (no /boot in the image)', async () => {
    // Depth 2 needs QEMU inside the guest image, which it does not ship: the child refuses with a clear error.
    const err = await child.vms.spawn({ name: 'db' }).then(() => null, (e: unknown) => e as AuraeApiError);
    expect(err?.code).toBe('FAILED_PRECONDITION');
    expect(err?.message).toMatch(/cannot spawn "db": vms\.kernel \/boot\/vmlinuz does not exist/);
    // Audited at both ends: at the parent with the target node, at the child with the parent that relayed it.
    const [atParent] = await parent.authz.audit({ method: 'aurae.vms.v0.VmService/Spawn', limit: 1 });
    expect(atParent).toMatchObject({ identity: 'admin', code: 'FAILED_PRECONDITION', node: 'aurae/web' });
    expect(atParent!.via).toBeUndefined();
    const [atChild] = await child.authz.audit({ method: 'aurae.vms.v0.VmService/Spawn', limit: 1 });
    expect(atChild).toMatchObject({ identity: 'admin', code: 'FAILED_PRECONDITION', via: 'aurae' });
    expect(atChild!.node).toBeUndefined();
  });

  it('a workload in the child floods its serial console without a newline: the parent keeps answering, the child stays up', async () => {
    // 4 MiB of "A" on /dev/ttyS0 (the parent's console pipe), no newline until the end: 256 times the line cap.
    await child.cells.allocate({ name: 'flood' });
    await child.cells.start('flood', { name: 'tty', args: ['/bin/sh', '-c', "head -c 4194304 /dev/zero | tr '\\000' A > /dev/ttyS0; echo > /dev/ttyS0"] });
    let calls = 0;
    const deadline = Date.now() + 300_000;
    for (;;) {
      // Both ends answer while the flood goes through the parent's console reader (a stall would time out).
      expect((await parent.vms.list()).map((v) => [v.name, v.state])).toEqual([['web', 'running']]);
      const cell = await child.cells.get('flood');
      calls++;
      const tty = cell.executables.find((e) => e.name === 'tty');
      if (tty?.state === 'exited' || tty?.state === 'failed') {
        expect(tty.lastExit).toMatchObject({ code: 0 });
        break;
      }
      if (Date.now() > deadline) throw new Error(`the flood did not finish within 300 s (${calls} calls answered meanwhile)`);
    }
    expect(await child.health.check()).toEqual({ status: 'SERVING' });
    expect({ code: auraed.proc.exitCode, signal: auraed.proc.signalCode }).toEqual({ code: null, signal: null });
    await child.cells.free('flood', { force: true });
    console.log(`console flood from the child: the parent answered ${calls} rounds of calls meanwhile`);
  }, 330_000);

  it("aer vm renew web: the child serves the new certificate at once, and the parent refuses the one it replaced", async () => {
    const web = (await parent.vms.list()).find((v) => v.name === 'web')!;
    // What web booted with: the identity in its payload (on this host, under the parent's state dir).
    const parts: Buffer[] = [];
    for (let i = 0; existsSync(join(node.dir, `state/vms/web/payload.${i}`)); i++) parts.push(readFileSync(join(node.dir, `state/vms/web/payload.${i}`)));
    const boot = parseGuestPayload(unpackGuestPayload(parts)).pki;
    const bootFingerprint = createHash('sha256').update(new X509Certificate(boot.serverCertChain).raw).digest('hex');
    expect(await servedFingerprint(node, web.address, web.tlsName)).toBe(bootFingerprint);

    const out: string[] = [];
    const aerErr: string[] = [];
    const io = { out: (t: string) => void out.push(t), err: (t: string) => void aerErr.push(t), env: {} };
    expect(await runAer(['--config', node.clientConfigPath, '-o', 'json', 'vm', 'renew', 'web'], io), aerErr.join('\n')).toBe(0);
    const renewed = JSON.parse(out[0]!) as { name: string; fingerprint: string; notAfter: string };
    expect(renewed.name).toBe('web');
    expect(renewed.fingerprint).not.toBe(bootFingerprint);
    // Short-lived: CHILD_VALIDITY_DAYS (3) from now.
    expect(Date.parse(renewed.notAfter) - Date.now()).toBeGreaterThan(2.9 * 86_400_000);
    expect(Date.parse(renewed.notAfter) - Date.now()).toBeLessThan(3.1 * 86_400_000);
    // In use: the child's listener serves it (no restart), and the parent reaches web through it (its router
    // now pins only the new certificate, so this call made a new TLS connection).
    expect(await servedFingerprint(node, web.address, web.tlsName)).toBe(renewed.fingerprint);
    expect(await child.health.check()).toEqual({ status: 'SERVING' });
    expect((await child.discovery.discover()).nodeName).toBe('aurae/web');
    expect(auraed.logs.some((l) => l.msg === 'child identity renewed' && l.child === 'web')).toBe(true);
    expect((await parent.vms.list()).find((v) => v.name === 'web')).toMatchObject({ state: 'running', pid: web.pid, restarts: 0 });

    // The old certificate is refused: web is made to serve its boot certificate again (delivered as its parent
    // would; it is still within its validity and chains to the root), and the parent no longer accepts it.
    await deliverAsParent(node, web.address, web.tlsName, boot);
    expect(await servedFingerprint(node, web.address, web.tlsName)).toBe(bootFingerprint);
    out.length = 0;
    aerErr.length = 0;
    expect(await runAer(['--config', node.clientConfigPath, 'vm', 'renew', 'web'], io)).not.toBe(0);
    expect(aerErr.join('\n')).toMatch(/renewing its certificate failed: .*presented a certificate this node did not mint for its current run/);
    const refused = await child.health.check().then(() => null, (e: unknown) => e as AuraeApiError);
    expect(refused?.code).toBe('UNAVAILABLE');
    expect(refused?.message).toMatch(/presented a certificate this node did not mint for its current run/);
    // web itself runs on (only the parent's trust in it is gone); the next test stops it by ACPI, without its API.
    expect((await parent.vms.list()).find((v) => v.name === 'web')).toMatchObject({ state: 'running', pid: web.pid });
  }, 120_000);

  it('stops web gracefully: QEMU exits by itself after the ACPI powerdown', async () => {
    const before = auraed.logs.length;
    const stopped = await parent.vms.stop('web');
    expect(stopped).toMatchObject({ state: 'stopped', pid: 0, address: '', lastExit: 'QEMU exited with code 0 (QMP shutdown reason: guest-shutdown)' });
    expect(auraed.logs.slice(before).some((l) => l.msg === 'vm stopped gracefully (ACPI powerdown)')).toBe(true);
    expect(auraed.logs.slice(before).some((l) => l.msg === 'vm did not power down in time; quitting QEMU')).toBe(false);
    expect(qemuPids(node.dir)).toEqual([]);
    const err = await child.health.check().then(() => null, (e: unknown) => e as AuraeApiError);
    expect(err?.code).toBe('UNAVAILABLE');
    expect(err?.message).toMatch(/"aurae\/web" is stopped, not running/);
  }, CHILD_STOP_MS + 30_000);

  it('a crashed child is an event and follows its restart policy; routing follows the new address', async () => {
    const first = await parent.vms.spawn({ name: 'crashy', memoryMiB: 512, restart: 'on-failure' });
    const before = auraed.logs.length;
    process.kill(first.pid, 'SIGKILL');
    // The restart waits restartDelayMs(1), then boots QEMU again to its AURAE_READY line.
    const now = (await waitForVm(parent, 'crashy', (v) => v.state === 'running' && v.restarts === 1, CHILD_BOOT_MS + 30_000))!;
    expect(now).toMatchObject({ state: 'running', restarts: 1 });
    expect(now.pid).not.toBe(first.pid);
    const events = auraed.logs.slice(before).filter((l) => l.msg === 'vm event' && l.vm === 'crashy').map((l) => [l.kind, l.expected ?? null]);
    expect(events).toEqual([['vm_exited', false], ['vm_restarted', null], ['vm_started', null]]);
    // The same on the observe event stream: the crash is an event with QEMU's signal.
    const observed = [];
    for await (const e of parent.observe.events({ vm: 'crashy' })) observed.push(e);
    expect(observed.map((e) => e.kind)).toEqual(['vm_started', 'vm_exited', 'vm_restarted', 'vm_started']);
    expect(observed[1]).toMatchObject({ kind: 'vm_exited', vm: 'crashy', pid: first.pid, signal: 'SIGKILL', expected: false });
    const crashy = connect({ config: node.clientConfigPath, targetNode: 'aurae/crashy' });
    try {
      expect(await crashy.health.check()).toEqual({ status: 'SERVING' });
    } finally {
      crashy.close();
    }
    expect((await parent.vms.stop('crashy')).state).toBe('stopped');
    await parent.vms.free('crashy');
    expect((await parent.vms.list()).map((v) => v.name)).toEqual(['web']);
  }, 2 * CHILD_BOOT_MS + CHILD_STOP_MS + 60_000);

  it("an auraed crash: the next auraed stops the orphaned QEMU (QMP quit) and boots the child again", async () => {
    const before = await parent.vms.start('web');
    expect(before.state).toBe('running');
    auraed.proc.kill('SIGKILL');
    await auraed.exited;
    expect(qemuPids(node.dir)).toEqual([before.pid]); // orphaned, still running
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady(AURAED_READY_MS);
    expect(auraed.logs.some((l) => l.msg === "stopping the previous auraed's QEMU" && l.pid === before.pid)).toBe(true);
    expect(auraed.logs.some((l) => l.msg === 'QEMU did not quit through QMP; killing it')).toBe(false);
    // Reconcile starts web again in the background, once the leftover is gone.
    const now = (await waitForVm(parent, 'web', (v) => v.state === 'running', CHILD_BOOT_MS + 30_000))!;
    expect(now).toMatchObject({ state: 'running', nodePath: 'aurae/web' });
    expect(now.pid).not.toBe(before.pid);
    expect(qemuPids(node.dir)).toEqual([now.pid]);
    expect(await child.health.check()).toEqual({ status: 'SERVING' });
  }, 2 * CHILD_BOOT_MS + AURAED_READY_MS + 60_000);

  it('parent SIGTERM stops its children first', async () => {
    // web runs: started again by the auraed that replaced the crashed one (test above).
    const web = (await parent.vms.list()).find((v) => v.name === 'web')!;
    expect(web.state).toBe('running');
    expect(await child.health.check()).toEqual({ status: 'SERVING' });
    const exit = await auraed.stop(CHILD_STOP_MS);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(auraed.logs.some((l) => l.msg === 'vm stopped gracefully (ACPI powerdown)' && l.vm === 'web')).toBe(true);
    expect(qemuPids(node.dir)).toEqual([]);
  }, CHILD_STOP_MS + 90_000);
});

describe('depth 2 on the host tier: the child spawns from the boot volume its parent gave it', () => {
  it('aurae → aurae/web → aurae/web/db, each reached through its parents; depth 3 is refused', async () => {
    const image = readImage(MANIFEST);
    // The boot volume (esp.img) goes to the child read-only: /boot there has the kernel, initramfs and QEMU.
    const { node, auraed } = await startParent({ kernel: image.kernel, initrd: image.initramfs, bootDisk: image.esp, maxMemoryMiB: 2048, bootTimeoutMs: 180_000, stopTimeoutMs: 30_000 });
    const parent = connect({ config: node.clientConfigPath, timeoutMs: 300_000 });
    const web = connect({ config: node.clientConfigPath, targetNode: 'aurae/web', timeoutMs: 300_000 });
    const db = connect({ config: node.clientConfigPath, targetNode: 'aurae/web/db', timeoutMs: 60_000 });
    try {
      await parent.vms.spawn({ name: 'web', memoryMiB: 1536 });
      const started = Date.now();
      const grandchild = await web.vms.spawn({ name: 'db', memoryMiB: 384 });
      console.log(`depth 2: spawn aurae/web/db inside aurae/web → API ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      expect(grandchild).toMatchObject({ name: 'db', nodePath: 'aurae/web/db', state: 'running', tlsName: 'db.web.aurae' });
      expect(await db.health.check()).toEqual({ status: 'SERVING' });
      expect((await db.discovery.discover()).nodeName).toBe('aurae/web/db');
      const tooDeep = await db.vms.spawn({ name: 'x' }).then(() => null, (e: unknown) => e as AuraeApiError);
      expect(tooDeep?.code).toBe('FAILED_PRECONDITION');
      expect(tooDeep?.message).toMatch(/past vms\.maxDepth 2/);
      // A parent stops its children first: stopping web powers db off inside it, then web itself.
      expect(await parent.vms.stop('web')).toMatchObject({ state: 'stopped', lastExit: 'QEMU exited with code 0 (QMP shutdown reason: guest-shutdown)' });
    } finally {
      parent.close();
      web.close();
      db.close();
      await auraed.stop(60_000);
      const left = qemuPids(node.dir);
      for (const pid of left) process.kill(pid, 'SIGKILL');
      node.cleanup();
      expect(left, 'QEMU processes left behind').toEqual([]);
    }
  }, 600_000);
});

describe('spawn refusals that depend on the node', () => {
  it('a missing kernel is FAILED_PRECONDITION naming vms.kernel, and no QEMU starts', async () => {
    const { node, auraed } = await startParent({ kernel: '/nonexistent/vmlinuz', initrd: '/nonexistent/initramfs' });
    const client = connect({ config: node.clientConfigPath });
    try {
      const err = await client.vms.spawn({ name: 'web' }).then(() => null, (e: unknown) => e as AuraeApiError);
      expect(err?.code).toBe('FAILED_PRECONDITION');
      expect(err?.message).toMatch(/vms\.kernel \/nonexistent\/vmlinuz does not exist/);
      expect(qemuPids(node.dir)).toEqual([]);
    } finally {
      client.close();
      await auraed.stop();
      node.cleanup();
    }
  }, AURAED_READY_MS + 30_000);

  it('a depth of 0 refuses every spawn with FAILED_PRECONDITION', async () => {
    const image = builtImage();
    const { node, auraed } = await startParent({ kernel: image.kernel, initrd: image.initramfs, maxDepth: 0 });
    const client = connect({ config: node.clientConfigPath });
    try {
      const err = await client.vms.spawn({ name: 'web' }).then(() => null, (e: unknown) => e as AuraeApiError);
      expect(err?.code).toBe('FAILED_PRECONDITION');
      expect(err?.message).toMatch(/past vms\.maxDepth 0/);
      expect(qemuPids(node.dir)).toEqual([]);
    } finally {
      client.close();
      await auraed.stop();
      node.cleanup();
    }
  }, AURAED_READY_MS + 30_000);
});
