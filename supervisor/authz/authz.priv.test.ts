// Authorization for real: auraed on the host (temp PKI, temp state dir), identities minted with `aer pki issue`,
// policy edits through aer, the audit log in SQLite, and the policy surviving an auraed restart.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueIdentity } from '../../aer/cli/pki';
import { runAer } from '../../aer/cli/program';
import { type AuraeClient, AuraeApiError, connect } from '../../aer/sdk';
import { issueClientCert } from '../pki';
import { type PreparedNode, type RunningTestAuraed, launchAuraed, prepareTestNode } from '../daemon/testing';

async function apiError(promise: Promise<unknown>): Promise<AuraeApiError> {
  const err = await promise.then(
    () => new Error('expected the call to fail, but it succeeded'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuraeApiError);
  return err as AuraeApiError;
}

describe('authorization on a real auraed', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  const clients: AuraeClient[] = [];
  const configs: Record<string, string> = {};
  const as = (identity: 'admin' | 'viewer' | 'nova') => {
    const c = connect({ config: identity === 'admin' ? node.clientConfigPath : configs[identity], env: {}, timeoutMs: 10_000 });
    clients.push(c);
    return c;
  };
  /** aer in-process (the CLI code with the real SDK), as the admin. */
  const aer = async (...argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runAer(['--config', node.clientConfigPath, ...argv], { out: (t) => void out.push(t), err: (t) => void err.push(t), env: {} });
    return { code, out: out.join('\n'), err: err.join('\n') };
  };

  beforeAll(async () => {
    node = await prepareTestNode({
      nodeName: 'authz-1',
      config: {
        authz: {
          admins: ['admin'],
          // The seeds' nova.Allow(runtime.Run) / nova.Deny(schedule.Cron), in this node's method names.
          policy: [{ identity: 'nova', allow: ['aurae.node.v0.NodeService/*'], deny: ['aurae.node.v0.NodeService/Shutdown'] }],
          audit: { maxRecords: 50 },
        },
      },
    });
    for (const identity of ['viewer', 'nova'] as const) {
      const issued = await issueIdentity({ identity, pkiDir: dirname(node.pki.caCert), outDir: node.dir, node: 'authz-1', address: `unix://${node.socket}`, force: false });
      configs[identity] = issued.config;
    }
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await auraed?.stop();
    node?.cleanup();
  });

  it('a non-admin identity may probe (health, Discover) but is denied NodeService/Shutdown, with how to grant it', async () => {
    const viewer = as('viewer');
    expect(await viewer.health.check()).toEqual({ status: 'SERVING' });
    expect(await viewer.health.check('aurae.authz.v0.AuthzService')).toEqual({ status: 'SERVING' });
    expect((await viewer.discovery.discover()).nodeName).toBe('authz-1');
    const err = await apiError(viewer.node.shutdown({ reason: 'should not happen' }));
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.details).toBe(
      'identity "viewer" may not call aurae.node.v0.NodeService/Shutdown: no rule allows it and non-admin identities are denied by default: ' +
        'an admin can grant it with: aer authz allow viewer aurae.node.v0.NodeService/Shutdown',
    );
    await expect.poll(() => auraed.logs, { timeout: 10_000 }).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'rpc denied', caller: 'viewer', method: 'aurae.node.v0.NodeService/Shutdown' }));
    // Nor may it read the audit log or grant itself anything.
    expect((await apiError(viewer.authz.audit())).code).toBe('PERMISSION_DENIED');
    expect((await apiError(viewer.authz.allow('viewer', '*'))).details).toMatch(/only identities in authz.admins \(node config\) may change the policy/);
  });

  it('the admin reads the denials in the audit log (aer authz audit)', async () => {
    const records = await as('admin').authz.audit({ identity: 'viewer' });
    expect(records.map((r) => `${r.method} ${r.code}`)).toEqual([
      'aurae.authz.v0.AuthzService/Allow PERMISSION_DENIED',
      'aurae.authz.v0.AuthzService/ListAudit PERMISSION_DENIED',
      'aurae.node.v0.NodeService/Shutdown PERMISSION_DENIED',
    ]);
    const shutdown = records[2]!;
    expect(shutdown).toMatchObject({ identity: 'viewer', detail: 'denied: no rule allows it (default deny)', peer: expect.stringMatching(/.+/) });
    expect(Date.now() - Date.parse(shutdown.time)).toBeLessThan(60_000);

    const cli = await aer('authz', 'audit', '--identity', 'viewer', '--code', 'PERMISSION_DENIED', '--method', 'aurae.node.v0.NodeService/*');
    expect(cli.code).toBe(0);
    expect(cli.out.split('\n')).toHaveLength(2);
    expect(cli.out).toMatch(/viewer\s+aurae\.node\.v0\.NodeService\/Shutdown\s+PERMISSION_DENIED/);
  });

  it('config rules apply: nova may reboot (reaches the core) but its config deny on Shutdown wins', async () => {
    const nova = as('nova');
    // Authorized: the core answers (no init on the host), not the policy.
    expect((await apiError(nova.node.reboot())).code).toBe('FAILED_PRECONDITION');
    const denied = await apiError(nova.node.shutdown());
    expect(denied.code).toBe('PERMISSION_DENIED');
    expect(denied.details).toMatch(/denied by the rule deny "aurae.node.v0.NodeService\/Shutdown" in the node config/);
    // An API allow cannot lift a config deny, and says so.
    const cli = await aer('authz', 'allow', 'nova', 'aurae.node.v0.NodeService/Shutdown');
    expect(cli.out).toBe('nova: allowed aurae.node.v0.NodeService/Shutdown\nnote: still denied by the config rule deny "aurae.node.v0.NodeService/Shutdown" (deny wins over allow)');
    expect((await apiError(nova.node.shutdown())).code).toBe('PERMISSION_DENIED');
    expect((await aer('authz', 'revoke', 'nova', 'aurae.node.v0.NodeService/Shutdown')).out).toBe('nova: revoked 1 rule for aurae.node.v0.NodeService/Shutdown\nnote: 1 rule(s) come from the node config (authz.policy) and stay: edit the config to change them');
  });

  it('the admin allows a harmless method with aer authz allow, and the identity can then call it', async () => {
    const viewer = as('viewer');
    expect((await apiError(viewer.authz.policy())).code).toBe('PERMISSION_DENIED');
    const granted = await aer('authz', 'allow', 'viewer', 'aurae.authz.v0.AuthzService/GetPolicy');
    expect(granted).toMatchObject({ code: 0, out: 'viewer: allowed aurae.authz.v0.AuthzService/GetPolicy', err: '' });
    const policy = await viewer.authz.policy({ identity: 'viewer' });
    expect(policy.rules).toEqual([
      { identity: 'viewer', effect: 'allow', method: 'aurae.authz.v0.AuthzService/GetPolicy', source: 'api', createdBy: 'admin', createdAt: expect.any(String) },
    ]);
    // Still nothing else.
    expect((await apiError(viewer.node.shutdown())).code).toBe('PERMISSION_DENIED');
    const [latest] = await as('admin').authz.audit({ limit: 1, method: 'aurae.authz.v0.AuthzService/Allow', code: 'OK' });
    expect(latest).toMatchObject({ identity: 'admin', detail: 'allow viewer aurae.authz.v0.AuthzService/GetPolicy' });
  });

  it('bad inputs are INVALID_ARGUMENT naming the field, and auraed keeps serving', async () => {
    const admin = as('admin');
    // Thunks: each call starts only when awaited (a rejected promise nobody awaits yet is an unhandled rejection).
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [() => admin.authz.allow('', 'a.B/C'), /^identity: must not be empty/],
      [() => admin.authz.allow('x'.repeat(70_000), 'a.B/C'), /^identity: at most 64 characters \(got 70000\)/],
      [() => admin.authz.deny('nova\u202e', 'a.B/C'), /^identity: character 5 \(U\+202E\)/],
      [() => admin.authz.deny('nova', '../../etc/passwd'), /^method: "\.\." is not a full service name/],
      [() => admin.authz.deny('nova', 'aurae.node.v0.NodeService/Shut down'), /^method: character 31 \(U\+0020\)/],
      [() => admin.authz.allow('nova', 'aurae.nope.v0.Nothing/*'), /^method: no method served by this node matches/],
      [() => admin.authz.revoke('nova', 'x'.repeat(300)), /^method: at most 256 characters/],
      [() => admin.authz.audit({ limit: 5000 }), /^limit: between 1 and 1000/],
      [() => admin.authz.audit({ code: 'nope' }), /^code: "nope" is not a gRPC status name/],
    ];
    for (const [call, message] of cases) {
      const err = await apiError(call());
      expect(err.code, message.source).toBe('INVALID_ARGUMENT');
      expect(err.details).toMatch(message);
    }
    expect(await admin.health.check()).toEqual({ status: 'SERVING' });
  });

  it('the audit log stays bounded (authz.audit.maxRecords): a flood of refusals is aggregated and cannot push accepted calls out', async () => {
    const viewer = as('viewer');
    const nova = as('nova');
    const before = await as('admin').authz.audit({ limit: 1000 });
    const countOf = (records: typeof before, identity: string, method: string, code: string) =>
      records.find((r) => r.identity === identity && r.method === `aurae.node.v0.NodeService/${method}` && r.code === code)?.count ?? 0;
    // A stranger: a certificate for "admin" minted with the node's spawn CA (which every spawning node holds).
    const spawnCa = { certPem: readFileSync(node.pki.spawnCaCert, 'utf8'), keyPem: readFileSync(node.pki.spawnCaKey, 'utf8') };
    const forged = await issueClientCert(spawnCa, { identity: 'admin' });
    writeFileSync(join(node.dir, 'forged.crt'), forged.certPem + spawnCa.certPem);
    writeFileSync(join(node.dir, 'forged.key'), forged.keyPem, { mode: 0o600 });
    const forgedConfig = join(node.dir, 'forged.json');
    writeFileSync(forgedConfig, JSON.stringify({ version: 1, node: 'authz-1', address: `unix://${node.socket}`, ca: node.pki.caCert, cert: 'forged.crt', key: 'forged.key' }));
    const stranger = connect({ config: forgedConfig, env: {}, timeoutMs: 10_000 });
    clients.push(stranger);
    const unauthenticatedBefore = before.find((r) => r.code === 'UNAUTHENTICATED' && r.method === 'grpc.health.v1.Health/Check')?.count ?? 0;
    for (let i = 0; i < 150; i++) {
      await apiError(viewer.node.reboot()); // PERMISSION_DENIED
      await apiError(nova.node.reboot()); // allowed, refused by the core: FAILED_PRECONDITION, changed nothing
      expect((await apiError(stranger.health.check())).code).toBe('UNAUTHENTICATED'); // even on Health
    }
    const records = await as('admin').authz.audit({ limit: 1000 });
    expect(records.length).toBeLessThanOrEqual(50);
    expect(countOf(records, 'viewer', 'Reboot', 'PERMISSION_DENIED')).toBe(countOf(before, 'viewer', 'Reboot', 'PERMISSION_DENIED') + 150);
    expect(countOf(records, 'nova', 'Reboot', 'FAILED_PRECONDITION')).toBe(countOf(before, 'nova', 'Reboot', 'FAILED_PRECONDITION') + 150);
    expect(records.find((r) => r.code === 'UNAUTHENTICATED' && r.method === 'grpc.health.v1.Health/Check')?.count).toBe(unauthenticatedBefore + 150);
    // Refusals of every kind share at most half of the log; accepted calls keep theirs.
    expect(records.filter((r) => r.code !== 'OK').length).toBeLessThanOrEqual(25);
    expect(records.filter((r) => r.code === 'OK')).toEqual(before.filter((r) => r.code === 'OK'));
    // aer shows the count of an aggregated row.
    const cli = await aer('authz', 'audit', '--identity', 'viewer', '--method', 'aurae.node.v0.NodeService/Reboot');
    expect(cli.out.split('\n')[0]).toMatch(/^ID +TIME +COUNT +FIRST +IDENTITY/);
    expect(cli.out.split('\n')[1]).toMatch(new RegExp(` ${countOf(records, 'viewer', 'Reboot', 'PERMISSION_DENIED')} +\\d{4}-`));
  });

  it('attack: a tenant confined with --cell reaches no other tenant\'s cell, and may not run as root (real sockets, aer)', async () => {
    // A tenant of her own (not nova: the restart test below counts nova's rules).
    const issued = await issueIdentity({ identity: 'tenant-a', pkiDir: dirname(node.pki.caCert), outDir: node.dir, node: 'authz-1', address: `unix://${node.socket}`, force: false });
    const tenant = connect({ config: issued.config, env: {}, timeoutMs: 10_000 });
    clients.push(tenant);
    const grant = await aer('authz', 'allow', 'tenant-a', 'aurae.cells.v0.CellService/*', '--cell', 'tenant-a/*');
    expect(grant).toMatchObject({ code: 0, out: `tenant-a: allowed aurae.cells.v0.CellService/* --cell 'tenant-a/*'`, err: '' });
    const shown = await aer('authz', 'policy', '--identity', 'tenant-a');
    expect(shown.out).toMatch(/tenant-a +allow +aurae\.cells\.v0\.CellService\/\* +--cell 'tenant-a\/\*' +api \(admin, /);

    // Another tenant's cell: refused by the policy, before the cell runtime is asked (this host may have none).
    const stop = await apiError(tenant.cells.stop('other/db', 'postgres'));
    expect(stop.code).toBe('PERMISSION_DENIED');
    expect(stop.details).toBe(
      `identity "tenant-a" may not call aurae.cells.v0.CellService/Stop on cell "other/db": its rules for this method cover only --cell 'tenant-a/*': ` +
        'an admin can grant it with: aer authz allow tenant-a aurae.cells.v0.CellService/Stop --cell other/db',
    );
    expect((await apiError(tenant.cells.free('other', { force: true }))).code).toBe('PERMISSION_DENIED');
    expect((await apiError(tenant.cells.allocate({ name: 'other/mine' }))).code).toBe('PERMISSION_DENIED');
    expect((await apiError(tenant.node.reboot())).code).toBe('PERMISSION_DENIED');
    // Her own cells pass the policy (the runtime answers, whatever it says on this host).
    expect((await apiError(tenant.cells.stop('tenant-a/web', 'api'))).code).not.toBe('PERMISSION_DENIED');
    // Root is not hers: Start without uid is refused with how to pass one; with a uid it passes the policy.
    const root = await apiError(tenant.cells.start('tenant-a/web', { name: 'sh', args: ['/bin/sh'] }));
    expect(root.code).toBe('PERMISSION_DENIED');
    expect(root.details).toMatch(/may not run executables as uid 0 \(root\) in cell "tenant-a\/web": .*--uid 1000/);
    expect((await apiError(tenant.cells.start('tenant-a/web', { name: 'sh', args: ['/bin/sh'], uid: 1000 }))).code).not.toBe('PERMISSION_DENIED');
    // Bad scopes are INVALID_ARGUMENT naming the field, through aer as through the SDK.
    const bad = await aer('authz', 'allow', 'tenant-a', 'aurae.cells.v0.CellService/*', '--cell', '../etc');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/cells\[0\]: "\.\.\/etc" is not a cell path pattern/);
    expect((await apiError(as('admin').authz.allow('tenant-a', '*', { uids: ['0-x'] }))).details).toMatch(/^uids\[0\]: "0-x" is not an id range/);
    expect(await as('admin').health.check()).toEqual({ status: 'SERVING' });
  });

  // Last: it restarts auraed.
  it('API rules and the audit log survive an auraed restart; the last batch of refusals is written at shutdown', async () => {
    const [acceptedBefore] = await as('admin').authz.audit({ limit: 1, code: 'OK' });
    const [rebootsBefore] = await as('admin').authz.audit({ limit: 1, identity: 'viewer', method: 'aurae.node.v0.NodeService/Reboot' });
    // Buffered (refusals are written in batches), not read back before the stop: only the shutdown (or the
    // batch timer) writes it.
    expect((await apiError(as('viewer').node.reboot())).code).toBe('PERMISSION_DENIED');
    expect(await auraed.stop()).toEqual({ code: 0, signal: null });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
    const viewer = as('viewer');
    expect((await viewer.authz.policy({ identity: 'viewer' })).rules.map((r) => `${r.effect} ${r.method} ${r.source}`)).toEqual([
      'allow aurae.authz.v0.AuthzService/GetPolicy api',
    ]);
    expect((await apiError(viewer.node.shutdown())).code).toBe('PERMISSION_DENIED');
    const after = await as('admin').authz.audit({ limit: 2 });
    expect(after[0]).toMatchObject({ identity: 'viewer', method: 'aurae.node.v0.NodeService/Shutdown', code: 'PERMISSION_DENIED' });
    expect(after[1]).toMatchObject({ identity: 'viewer', method: 'aurae.node.v0.NodeService/Reboot', count: rebootsBefore!.count + 1, firstTime: rebootsBefore!.firstTime });
    expect(await as('admin').authz.audit({ limit: 1, code: 'OK' })).toEqual([acceptedBefore]);
    // Config rules come back from the config, not the database.
    expect((await as('admin').authz.policy({ identity: 'nova' })).rules.map((r) => r.source)).toEqual(['config', 'config']);
  });
});
