// Attacks on what a tenant may read and on what a revoke removes, through the real wrappers (fake grpc-js
// calls, as authz-service.test.ts): nova, allowed to read the policy and the audit log, must not see bob's
// rules or bob's audit rows; a scoped revoke must not take away the identity's rules of other scopes.
import { type ServerUnaryCall, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log';
import type { RpcContext } from '../server';
import { issuerByName, fakeUnaryCall } from '../server/testing';
import { type Db, openDatabase } from '../store';
import { createAuthz } from './authz';
import { createAuthzService } from './authz-service';
import { createAuthzStore } from './authz-store';

const AUTHZ = 'aurae.authz.v0.AuthzService';
const CELLS = 'aurae.cells.v0.CellService';
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});


type Handler = (call: ServerUnaryCall<never, unknown>, cb: (err: unknown, value?: unknown) => void) => void;

function setup() {
  const db = openDatabase(':memory:');
  dbs.push(db);
  const reads = [`${AUTHZ}/GetPolicy`, `${AUTHZ}/ListAudit`];
  const authz = createAuthz({
    admins: ['admin'],
    configRules: [
      { identity: 'nova', allow: reads, deny: [] },
      { identity: 'bob', allow: [...reads, `${CELLS}/Stop`], deny: [], cells: ['bob/*'] },
    ],
    store: createAuthzStore(db, { auditMaxRecords: 1000 }),
    knownMethods: () => new Set([...reads, `${CELLS}/Stop`, `${CELLS}/Start`, `${AUTHZ}/Allow`]),
    log: silentLogger,
  });
  const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
  const service = createAuthzService(ctx, authz);
  const call = (method: keyof typeof service, request: object, cn: string) =>
    new Promise<{ code: number; details?: string; value?: Record<string, unknown> }>((resolve) => {
      (service[method] as unknown as Handler)(fakeUnaryCall(request as never, cn), (err, value) => {
        const e = err as { code: number; details: string } | null;
        resolve(e ? { code: e.code, details: e.details } : { code: status.OK, value: value as Record<string, unknown> });
      });
    });
  return { call, authz };
}

const audit = { limit: 0, identity: '', method: '', code: '', beforeId: 0n };

describe('a tenant reads only its own', () => {
  it("ListAudit: nova never sees bob's rows, neither unfiltered nor by asking for bob", async () => {
    const { call, authz } = setup();
    authz.audit({ identity: 'bob', method: `${CELLS}/Stop`, code: 'OK', detail: 'bob/secret-cell', peer: '10.0.0.7:1' });
    authz.audit({ identity: 'nova', method: `${CELLS}/Stop`, code: 'PERMISSION_DENIED', detail: 'nova tried', peer: '10.0.0.8:1' });
    authz.audit({ identity: '', method: `${CELLS}/Stop`, code: 'UNAUTHENTICATED', detail: 'a stranger', peer: '10.0.0.9:1' });

    const mine = await call('listAudit', audit, 'nova');
    expect(mine.code).toBe(status.OK);
    expect((mine.value!.records as Array<{ identity: string; detail: string }>).map((r) => `${r.identity}: ${r.detail}`)).toEqual(['nova: nova tried']);

    const theirs = await call('listAudit', { ...audit, identity: 'bob' }, 'nova');
    expect(theirs).toEqual({ code: status.PERMISSION_DENIED, details: expect.stringMatching(/^identity "nova" may not read the audit records of "bob": only admins/) });

    // The admin still sees every row.
    expect(((await call('listAudit', audit, 'admin')).value!.records as unknown[]).length).toBeGreaterThanOrEqual(3);
  });

  it("GetPolicy: nova sees her own rules only, never bob's scopes, whichever identity she asks for", async () => {
    const { call } = setup();
    const mine = await call('getPolicy', { identity: '' }, 'nova');
    expect(mine.code).toBe(status.OK);
    const rules = mine.value!.rules as Array<{ identity: string }>;
    expect(rules.length).toBeGreaterThan(0);
    expect(new Set(rules.map((r) => r.identity))).toEqual(new Set(['nova']));

    expect(await call('getPolicy', { identity: 'bob' }, 'nova')).toEqual({
      code: status.PERMISSION_DENIED,
      details: expect.stringMatching(/^identity "nova" may not read the rules of "bob"/),
    });
    const all = (await call('getPolicy', { identity: '' }, 'admin')).value!.rules as Array<{ identity: string }>;
    expect(new Set(all.map((r) => r.identity))).toEqual(new Set(['nova', 'bob']));
  });
});

describe('revoke honours the scope', () => {
  it("a revoke naming one scope removes that scope's rule and leaves the identity's other scopes", async () => {
    const { call, authz } = setup();
    expect((await call('allow', { identity: 'eve', method: `${CELLS}/Start`, cells: ['eve/*'] }, 'admin')).code).toBe(status.OK);
    expect((await call('allow', { identity: 'eve', method: `${CELLS}/Start`, cells: ['shared/*'] }, 'admin')).code).toBe(status.OK);

    const revoked = await call('revoke', { identity: 'eve', method: `${CELLS}/Start`, cells: ['shared/*'] }, 'admin');
    expect(revoked).toMatchObject({ code: status.OK, value: { removed: 1 } });
    expect(authz.policy('eve').rules.map((r) => r.scope)).toEqual([{ cells: ['eve/*'] }]);

    // A scope the identity has no rule for is NOT_FOUND, naming the scope, and removes nothing.
    expect(await call('revoke', { identity: 'eve', method: `${CELLS}/Start`, cells: ['other/*'] }, 'admin')).toEqual({
      code: status.NOT_FOUND,
      details: expect.stringContaining("no rule for \"aurae.cells.v0.CellService/Start\" with the scope --cell 'other/*'"),
    });
    expect(authz.policy('eve').rules).toHaveLength(1);

    // Without a scope: every scope of the pattern, as before.
    await call('allow', { identity: 'eve', method: `${CELLS}/Start`, vms: ['web'] }, 'admin');
    expect(await call('revoke', { identity: 'eve', method: `${CELLS}/Start` }, 'admin')).toMatchObject({ code: status.OK, value: { removed: 2 } });
    expect(authz.policy('eve').rules).toEqual([]);
  });
});
