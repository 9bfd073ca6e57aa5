// Authorization for real: auraed on the host (temp PKI, temp state dir), identities minted with `aer pki issue`,
// policy edits through aer, the audit log in SQLite, and the policy surviving an auraed restart.
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueIdentity } from '../../aer/cli/pki';
import { runAer } from '../../aer/cli/program';
import { type AuraeClient, AuraeApiError, connect } from '../../aer/sdk';
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
    expect(auraed.logs).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'rpc denied', caller: 'viewer', method: 'aurae.node.v0.NodeService/Shutdown' }));
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

  it('the audit log stays bounded (authz.audit.maxRecords)', async () => {
    const viewer = as('viewer');
    const before = (await as('admin').authz.audit({ limit: 1000 })).filter((r) => r.code !== 'PERMISSION_DENIED');
    for (let i = 0; i < 60; i++) await apiError(viewer.node.reboot());
    const records = await as('admin').authz.audit({ limit: 1000 });
    expect(records.length).toBeLessThanOrEqual(50);
    // A flood of denials gets at most half of the log and cannot push the other records out.
    const denied = records.filter((r) => r.code === 'PERMISSION_DENIED');
    expect(denied).toHaveLength(25);
    expect(denied[0]!.id - denied[24]!.id).toBe(24);
    expect(records.filter((r) => r.code !== 'PERMISSION_DENIED')).toEqual(before.slice(0, 25));
  });

  // Last: it restarts auraed.
  it('API rules and the audit log survive an auraed restart', async () => {
    const before = await as('admin').authz.audit({ limit: 1 });
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
    expect(after[1]).toEqual(before[0]);
    // Config rules come back from the config, not the database.
    expect((await as('admin').authz.policy({ identity: 'nova' })).rules.map((r) => r.source)).toEqual(['config', 'config']);
  });
});
