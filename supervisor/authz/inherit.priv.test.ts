// Children inherit the parent's whole effective policy and its updates, with a real child microVM: the real
// auraed (daemon mode, on this machine) spawns "web" from the built image; rules added at the root with
// `aer authz allow/deny` reach the child while it runs (routed calls work), and a deny at the root holds for a
// caller that connects to the child directly (its forwarded port), not through the parent.
// Needs the built image (see spawn.priv.test.ts); run under the image lock.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type ServiceError, credentials, Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueIdentity } from '../../aer/cli/pki';
import { runAer } from '../../aer/cli/program';
import { type AuraeClient, AuraeApiError, connect } from '../../aer/sdk';
import { readImage } from '../../image/build';
import { AuthzServiceClient } from '../gen/aurae/authz/v0/authz';
import { type PreparedNode, REPO_ROOT, type RunningTestAuraed, launchAuraed, prepareTestNode } from '../daemon/testing';

const MANIFEST = join(REPO_ROOT, 'out/image/manifest.json');
const GET_POLICY = 'aurae.authz.v0.AuthzService/GetPolicy';

function qemuPids(marker: string): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        const cmdline = readFileSync(`/proc/${e}/cmdline`, 'utf8');
        return cmdline.startsWith('qemu-system') && cmdline.includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Retry `probe` until it returns true (the push to the child is asynchronous); fail after `ms`. */
async function eventually(what: string, probe: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'OK',
    (e: unknown) => (e instanceof AuraeApiError ? `${e.code}: ${e.details}` : String(e)),
  );

describe('inherited policy with a real child VM', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let admin: AuraeClient;
  let novaConfig: string;
  const clients: AuraeClient[] = [];
  const aer = async (...argv: string[]) => {
    const out: string[] = [];
    const code = await runAer(['--config', node.clientConfigPath, ...argv], { out: (t) => void out.push(t), err: (t) => void out.push(t), env: {} });
    return { code, out: out.join('\n') };
  };
  /**
   * nova straight at the child's forwarded port with plain grpc-js (the SDK connects to a configured node or
   * routes through it): what a caller who can reach the child's port does, bypassing the parent.
   */
  const directGetPolicy = (address: string, tlsName: string) =>
    new Promise<string>((resolve) => {
      const cfg = JSON.parse(readFileSync(novaConfig, 'utf8')) as { ca: string; cert: string; key: string };
      const file = (p: string) => readFileSync(p.startsWith('/') ? p : join(dirname(novaConfig), p));
      const client = new AuthzServiceClient(address, credentials.createSsl(file(cfg.ca), file(cfg.key), file(cfg.cert)), {
        'grpc.ssl_target_name_override': tlsName,
        'grpc.default_authority': tlsName,
      });
      client.getPolicy({ identity: 'nova' }, new Metadata(), { deadline: Date.now() + 20_000 }, (err: ServiceError | null) => {
        client.close();
        resolve(err ? `${status[err.code] ?? err.code}: ${err.details}` : 'OK');
      });
    });
  const nova = (options: { targetNode?: string }) => {
    const c = connect({ config: novaConfig, env: {}, timeoutMs: 20_000, ...options });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    if (!existsSync(MANIFEST)) throw new Error(`${MANIFEST} is missing: build the image first (npx tsx image/build.ts)`);
    const image = readImage(MANIFEST);
    node = await prepareTestNode({ nodeName: 'aurae', vms: { kernel: image.kernel, initrd: image.initramfs, maxMemoryMiB: 1024, bootTimeoutMs: 90_000, stopTimeoutMs: 20_000 } });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
    admin = connect({ config: node.clientConfigPath, env: {}, timeoutMs: 20_000 });
    clients.push(admin);
    const issued = await issueIdentity({ identity: 'nova', pkiDir: dirname(node.pki.caCert), outDir: node.dir, node: 'aurae', address: `unix://${node.socket}`, force: false });
    novaConfig = issued.config;
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await auraed?.stop(30_000);
    const left = node ? qemuPids(node.dir) : [];
    for (const pid of left) process.kill(pid, 'SIGKILL');
    node?.cleanup();
    expect(left, 'QEMU processes left behind').toEqual([]);
  }, 60_000);

  it('the child boots with the parent\'s rules, gets later allows and denies while it runs, and enforces them on direct calls', async () => {
    // A rule made before the spawn travels in the payload.
    expect((await aer('authz', 'allow', 'nova', 'aurae.observe.v0.ObserveService/GetEvents', '--cell', 'nova/*')).code).toBe(0);
    const web = await admin.vms.spawn({ name: 'web', memoryMiB: 512 });
    expect(web).toMatchObject({ state: 'running', tlsName: 'web.aurae' });
    const child = connect({ config: node.clientConfigPath, env: {}, targetNode: 'aurae/web', timeoutMs: 20_000 });
    clients.push(child);
    expect((await child.authz.policy({ identity: 'nova' })).rules).toEqual([
      { identity: 'nova', effect: 'allow', method: 'aurae.observe.v0.ObserveService/GetEvents', source: 'parent', scope: { cells: ['nova/*'] } },
    ]);

    // Attack before the fix: an allow at the root did not reach the child, so routed calls failed there.
    const routed = nova({ targetNode: 'aurae/web' });
    expect(await outcome(routed.authz.policy())).toMatch(/^PERMISSION_DENIED/);
    expect((await aer('authz', 'allow', 'nova', GET_POLICY)).code).toBe(0);
    await eventually('the allow reaches aurae/web', async () => (await outcome(routed.authz.policy({ identity: 'nova' }))) === 'OK');

    // Attack before the fix: a deny at the root held only for calls through the root. Now the child has it.
    expect(await directGetPolicy(web.address, web.tlsName)).toBe('OK');
    expect((await aer('authz', 'deny', 'nova', GET_POLICY, '--on-node', 'aurae/web')).code).toBe(0);
    await eventually('the deny reaches aurae/web', async () => (await directGetPolicy(web.address, web.tlsName)) !== 'OK');
    expect(await directGetPolicy(web.address, web.tlsName)).toMatch(/^PERMISSION_DENIED: .*inherited from this node's parent/);
    // Scoped to aurae/web: at the root itself nova still may.
    expect(await outcome(nova({}).authz.policy({ identity: 'nova' }))).toBe('OK');
    expect(auraed.logs.some((l) => l.msg === 'pushing inherited rules to a child failed')).toBe(false);

    expect(await admin.vms.stop('web')).toMatchObject({ state: 'stopped' });
  }, 240_000);
});
