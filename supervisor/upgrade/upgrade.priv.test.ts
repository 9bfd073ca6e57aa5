// UpgradeService in a real auraed on the host (supervisor/daemon/testing.ts: mTLS, the real policy, the node config's
// `upgrade` section) driven by the aer CLI as a process and by the SDK. The host did not boot through systemd-boot
// (no efivarfs), so this is the direct-kernel case: Status lists the ESP's entries and says why the node cannot be
// upgraded in place, Upload and Rollback answer FAILED_PRECONDITION — after the signature check, which comes first —
// and nothing on the ESP changes; a non-admin is refused Upload even with an allow-everything rule. The slotted path
// (write, resume, rollback) is upgrade.test.ts with a fake booted entry, and qemu-tests/48 under OVMF.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuraeClient, connect, releaseFromDir } from '../../aer/sdk';
import { type PreparedNode, type RunningTestAuraed, launchAuraed, prepareTestNode, runAer } from '../daemon/testing';
import { makeSigningIdentity, treeSnapshot, writeTestRelease, writeTestSlot } from './testing';

const EFI = existsSync('/sys/firmware/efi/efivars');

describe.skipIf(EFI)('UpgradeService in auraed on the host (no systemd-boot: skipped on a host booted through EFI)', () => {
  let work: string;
  let esp: string;
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let env: Record<string, string>;
  let client: AuraeClient;
  let viewer: AuraeClient;
  let release: string;
  let foreign: string;

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'upgrade-priv-'));
    esp = path.join(work, 'esp');
    writeTestSlot(esp, { generation: 1, version: '0.1.0' });
    const [trusted, stranger] = await Promise.all([makeSigningIdentity('Aurae image signing (priv)'), makeSigningIdentity('Someone else')]);
    writeFileSync(path.join(work, 'signing.crt'), trusted.certPem);
    release = writeTestRelease(path.join(work, 'release'), '0.2.0', trusted, { uki: 4096, kernel: 100, initramfs: 100 }).dir;
    foreign = writeTestRelease(path.join(work, 'foreign'), '0.2.0', stranger, { uki: 4096, kernel: 100, initramfs: 100 }).dir;
    node = await prepareTestNode({
      nodeName: 'upgrade-1',
      config: {
        upgrade: { esp, signingCerts: [path.join(work, 'signing.crt')] },
        authz: { policy: [{ identity: 'viewer', allow: ['*'] }] },
      },
    });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
    env = { AURAE_CONFIG: node.clientConfigPath };
    client = connect({ config: node.clientConfigPath, env: {} });
    const v = await node.issueClient('viewer');
    const viewerConfig = path.join(node.dir, 'viewer.json');
    writeFileSync(viewerConfig, JSON.stringify({ version: 1, node: 'upgrade-1', address: `unix://${node.socket}`, ca: node.pki.caCert, ...v }));
    viewer = connect({ config: viewerConfig, env: {} });
  }, 120_000);

  afterAll(async () => {
    client?.close();
    viewer?.close();
    await auraed?.stop();
    node?.cleanup();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('serves UpgradeService; aer image status lists the entry, the pinned certificate, and why the node cannot upgrade in place', async () => {
    expect(await client.health.check('aurae.upgrade.v0.UpgradeService')).toEqual({ status: 'SERVING' });
    const r = await runAer(['image', 'status'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^not upgradable in place: this node did not boot through systemd-boot from a slotted ESP/);
    expect(r.stdout).toMatch(/\naurae-000001-0\.1\.0 +0\.1\.0 +blessed +boots next\n/);
    expect(r.stdout).toMatch(/image-signing certificate: CN=Aurae image signing \(priv\) sha256 [0-9a-f]{16}… \(.*signing\.crt\)/);
    const s = await client.upgrade.status();
    expect(s).toMatchObject({ slotted: false, running: '', bootsNext: 'aurae-000001-0.1.0', partial: null, lastRollback: null });
  });

  it('aer image upgrade: a trusted release is refused FAILED_PRECONDITION (no slots), a foreign one PERMISSION_DENIED first; the ESP is untouched', async () => {
    const before = treeSnapshot(esp);
    const r = await runAer(['image', 'upgrade', release], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^aer: upgrade: this node did not boot through systemd-boot .*under UEFI to upgrade in place\n$/);
    const f = await runAer(['image', 'upgrade', foreign], env);
    expect(f.code).toBe(1);
    expect(f.stderr).toMatch(/^aer: release: the manifest's signature does not verify with any pinned image-signing certificate/);
    const rb = await runAer(['image', 'rollback'], env);
    expect(rb.code).toBe(1);
    expect(rb.stderr).toMatch(/^aer: rollback: this node did not boot through systemd-boot/);
    expect(treeSnapshot(esp)).toEqual(before);
    expect(existsSync(path.join(node.dir, 'state', 'upgrade', 'partial.data'))).toBe(false);
  });

  it('Upload and Rollback are admin-only: an allow-everything rule does not grant them; Status it does', async () => {
    await expect(viewer.upgrade.upload(releaseFromDir(release))).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
      details: expect.stringMatching(/identity "viewer" may not call aurae\.upgrade\.v0\.UpgradeService\/Upload: only identities in authz\.admins .* may change the node's boot image/),
    });
    await expect(viewer.upgrade.rollback()).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    expect((await viewer.upgrade.status()).entries).toHaveLength(1);
    // Refusals reach the audit log in batches (about a second): wait for the row, with a deadline.
    const row = 'aurae.upgrade.v0.UpgradeService/Upload PERMISSION_DENIED denied: image changes are admin-only';
    const deadline = Date.now() + 10_000;
    let rows: string[] = [];
    while (!rows.includes(row) && Date.now() < deadline) {
      rows = (await client.authz.audit({ identity: 'viewer' })).map((a) => `${a.method} ${a.code} ${a.detail}`);
      if (!rows.includes(row)) await new Promise((r) => setTimeout(r, 100));
    }
    expect(rows).toContain(row);
    expect(auraed.logs.filter((l) => l.level === 'error')).toEqual([]);
  });
});
