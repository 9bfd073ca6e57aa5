// AuthzService through the real wrappers (supervisor/server/rpc.ts) with fake grpc-js calls: validation,
// the policy decision, and the audit rows each call leaves.
import { type ServerUnaryCall, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthzServiceListAuditResponse, Effect, RuleSource } from '../gen/aurae/authz/v0/authz';
import { silentLogger } from '../log';
import type { RpcContext } from '../server';
import { type Db, openDatabase } from '../store';
import { createAuthz } from './authz';
import { createAuthzService } from './authz-service';
import { createAuthzStore } from './authz-store';
import { issuerByName, fakeUnaryCall } from '../server/testing';

const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});


type Handler = (call: ServerUnaryCall<never, unknown>, cb: (err: unknown, value?: unknown) => void) => void;

function setup() {
  const db = openDatabase(':memory:');
  dbs.push(db);
  const authz = createAuthz({
    admins: ['admin'],
    configRules: [{ identity: 'nova', allow: ['aurae.authz.v0.AuthzService/GetPolicy'], deny: [] }],
    store: createAuthzStore(db, { auditMaxRecords: 1000 }),
    knownMethods: () => new Set(['aurae.authz.v0.AuthzService/GetPolicy', 'aurae.authz.v0.AuthzService/ListAudit', 'aurae.node.v0.NodeService/Reboot']),
    log: silentLogger,
  });
  const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
  const service = createAuthzService(ctx, authz);
  const call = (method: keyof typeof service, request: object, cn = 'admin') =>
    new Promise<{ code: number; details?: string; value?: Record<string, unknown> }>((resolve) => {
      (service[method] as unknown as Handler)(fakeUnaryCall(request as never, cn), (err, value) => {
        const e = err as { code: number; details: string } | null;
        resolve(e ? { code: e.code, details: e.details } : { code: status.OK, value: value as Record<string, unknown> });
      });
    });
  const audit = () => authz.listAudit({ limit: 100 }).map((r) => `${r.identity} ${r.method.replace('aurae.authz.v0.AuthzService/', '')} ${r.code} ${r.detail}`);
  return { call, audit, authz };
}

describe('AuthzService', () => {
  it('admin edits the policy; each edit is audited with a summary, reads are not', async () => {
    const { call, audit } = setup();
    const allowed = await call('allow', { identity: 'viewer', method: 'aurae.node.v0.NodeService/Reboot' });
    expect(allowed).toEqual({
      code: status.OK,
      value: {
        changed: true,
        notes: [],
        rules: [{ identity: 'viewer', effect: Effect.EFFECT_ALLOW, method: 'aurae.node.v0.NodeService/Reboot', source: RuleSource.RULE_SOURCE_API, createdBy: 'admin', createdAt: expect.any(String), cells: [], vms: [], nodes: [], uids: [], gids: [], pods: [] }],
      },
    });
    expect((await call('deny', { identity: 'viewer', method: '*' })).code).toBe(status.OK);
    expect((await call('revoke', { identity: 'viewer', method: '' })).value).toMatchObject({ removed: 2, rules: [] });
    expect((await call('getPolicy', { identity: '' })).value).toMatchObject({
      admins: ['admin'],
      adminOnlyMethods: ['aurae.authz.v0.AuthzService/Allow', 'aurae.authz.v0.AuthzService/Deny', 'aurae.authz.v0.AuthzService/Revoke', 'aurae.upgrade.v0.UpgradeService/Upload', 'aurae.upgrade.v0.UpgradeService/Rollback'],
      rules: [{ identity: 'nova', effect: Effect.EFFECT_ALLOW, source: RuleSource.RULE_SOURCE_CONFIG, createdBy: '' }],
    });
    expect((await call('listAudit', { limit: 0, identity: '', method: '', code: '', beforeId: 0 })).code).toBe(status.OK);
    expect(audit()).toEqual([
      'admin Revoke OK revoke viewer (all API rules)',
      'admin Deny OK deny viewer *',
      'admin Allow OK allow viewer aurae.node.v0.NodeService/Reboot',
    ]);
  });

  it('ListAudit carries node (forwarded to) and via (relayed by the parent) on the wire when a record has them', async () => {
    const { call, authz } = setup();
    const stop = { identity: 'admin', method: 'aurae.vms.v0.VmService/Stop', code: 'OK', detail: 'web', peer: 'p' };
    authz.audit({ ...stop, node: 'aurae/web' });
    authz.audit({ ...stop, via: 'aurae' });
    authz.audit(stop);
    const r = await call('listAudit', { limit: 0, identity: '', method: '', code: '', beforeId: 0 });
    const wire = AuthzServiceListAuditResponse.decode(AuthzServiceListAuditResponse.encode(r.value as unknown as AuthzServiceListAuditResponse).finish());
    expect(wire.records.map((x) => [x.node, x.via])).toEqual([
      [undefined, undefined],
      [undefined, 'aurae'],
      ['aurae/web', undefined],
    ]);
  });

  it('ListAudit carries an aggregated refusal\'s count and first time on the wire', async () => {
    const { call, authz } = setup();
    // A stranger calling Reboot again and again, from new source ports each time.
    for (let n = 0; n < 40; n++) await call('listAudit', { limit: 0, identity: '', method: '', code: '', beforeId: 0 }, 'mallory');
    authz.audit({ identity: 'admin', method: 'aurae.vms.v0.VmService/Stop', code: 'OK', detail: 'web', peer: 'p' });
    const r = await call('listAudit', { limit: 0, identity: '', method: '', code: '', beforeId: 0 });
    const wire = AuthzServiceListAuditResponse.decode(AuthzServiceListAuditResponse.encode(r.value as unknown as AuthzServiceListAuditResponse).finish());
    expect(wire.records.map((x) => [x.identity, x.code, x.count, x.firstTime !== ''])).toEqual([
      ['admin', 'OK', 1, true],
      ['mallory', 'PERMISSION_DENIED', 40, true],
    ]);
  });

  it('non-admins: policy edits are admin-only even when a rule allows them; other calls need a rule; every denial is audited', async () => {
    const { call, audit } = setup();
    const edit = await call('allow', { identity: 'nova', method: '*' }, 'nova');
    expect(edit).toEqual({
      code: status.PERMISSION_DENIED,
      details: 'identity "nova" may not call aurae.authz.v0.AuthzService/Allow: only identities in authz.admins (node config) may change the policy',
    });
    expect((await call('getPolicy', { identity: 'nova' }, 'nova')).code).toBe(status.OK);
    const read = await call('listAudit', { limit: 0, identity: '', method: '', code: '', beforeId: 0 }, 'nova');
    expect(read.code).toBe(status.PERMISSION_DENIED);
    expect(read.details).toContain("aer authz allow nova aurae.authz.v0.AuthzService/ListAudit");
    expect(audit()).toEqual([
      'nova ListAudit PERMISSION_DENIED denied: no rule allows it (default deny)',
      'nova Allow PERMISSION_DENIED denied: policy edits are admin-only',
    ]);
    // Once allowed, the read succeeds and (not mutating) leaves no row.
    await call('allow', { identity: 'nova', method: 'aurae.authz.v0.AuthzService/ListAudit' });
    const after = await call('listAudit', { limit: 1, identity: 'nova', method: '', code: 'PERMISSION_DENIED', beforeId: 0 }, 'nova');
    expect(after.value).toMatchObject({ records: [{ identity: 'nova', method: 'aurae.authz.v0.AuthzService/ListAudit', code: 'PERMISSION_DENIED' }] });
    expect(audit()).toHaveLength(3);
  });

  it.each([
    ['allow', { identity: '', method: 'a.B/C' }, 'identity: must not be empty'],
    ['allow', { identity: 'x'.repeat(100_000), method: 'a.B/C' }, 'identity: at most 64 characters (got 100000)'],
    ['allow', { identity: 'nova\u0000', method: 'a.B/C' }, 'identity: character 5 (U+0000) is not printable ASCII'],
    ['allow', { identity: '..', method: '../../etc/passwd' }, 'method: ".." is not a full service name'],
    ['deny', { identity: 'nova', method: '' }, 'method: must not be empty'],
    ['deny', { identity: 'nova', method: 'a.B/' + 'C'.repeat(10_000) }, 'method: at most 256 characters (got 10004)'],
    ['deny', { identity: 'nova', method: 'a.B/Ｃ' }, 'method: character 5 (U+FF23) is not allowed'],
    ['deny', { identity: 'nova', method: 'a.B/C\u200b' }, 'method: character 6 (U+200B) is not allowed'],
    ['revoke', { identity: '👾', method: '' }, 'identity: character 1 (U+1F47E) is not printable ASCII'],
    ['revoke', { identity: 'nova', method: 'runtime.Run' }, 'method: "runtime.Run" has no "/"'],
    ['getPolicy', { identity: ' nova' }, 'identity: must not start or end with a space'],
    ['listAudit', { limit: 1001, identity: '', method: '', code: '', beforeId: 0 }, 'limit: between 1 and 1000, or 0 for 100 (got 1001)'],
    ['listAudit', { limit: -1, identity: '', method: '', code: '', beforeId: 0 }, 'limit: between 1 and 1000, or 0 for 100 (got -1)'],
    ['listAudit', { limit: 0, identity: '', method: '', code: 'denied', beforeId: 0 }, 'code: "denied" is not a gRPC status name'],
    ['listAudit', { limit: 0, identity: '', method: '', code: 'x'.repeat(5000), beforeId: 0 }, `code: "${'x'.repeat(40)}…" is not a gRPC status name`],
    ['listAudit', { limit: 0, identity: '', method: '*/*', code: '', beforeId: 0 }, 'method: "*" is not a full service name'],
    ['listAudit', { limit: 0, identity: 'a\nb', method: '', code: '', beforeId: 0 }, 'identity: character 2 (U+000A)'],
  ] as const)('%s %j → INVALID_ARGUMENT naming the field', async (method, request, message) => {
    const { call } = setup();
    const result = await call(method, request);
    expect(result.code).toBe(status.INVALID_ARGUMENT);
    expect(result.details).toContain(message);
  });

  it('listAudit: before_id is a uint64 (decoded as bigint), refused outside 0..2^53-1 with the field and range', async () => {
    const { call } = setup();
    for (const beforeId of [-5n, 2n ** 63n, 2n ** 64n - 1n]) {
      const result = await call('listAudit', { limit: 0, identity: '', method: '', code: '', beforeId });
      expect(result.code).toBe(status.INVALID_ARGUMENT);
      expect(result.details).toBe(`before_id: ${beforeId} is out of range: allowed 0..9007199254740991 (a record id from an earlier page, or 0 for the newest)`);
    }
  });

  it('a refused edit is audited with its status and reason', async () => {
    const { call, audit } = setup();
    await call('allow', { identity: '', method: 'a.B/C' });
    await call('revoke', { identity: 'ghost', method: '' });
    expect(audit()).toEqual([
      'admin Revoke NOT_FOUND identity "ghost" has no rules: see aer authz policy --identity ghost',
      `admin Allow INVALID_ARGUMENT identity: must not be empty: give the client certificate's common name, e.g. "nova"`,
    ]);
  });
});
