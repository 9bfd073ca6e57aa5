// Strangers flooding refusals through the real RPC wrappers (supervisor/server/rpc.ts) into the real SQLite audit
// log: a certificate minted by a spawn CA (UNAUTHENTICATED, even on an open read), a non-admin calling
// admin-only methods (PERMISSION_DENIED), failed edits (NOT_FOUND), thousands of times each, from ever new
// source ports, against a 20-row log holding one accepted admin edit.
import { EventEmitter } from 'node:events';
import { type ServerUnaryCall, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log';
import type { RpcContext } from '../server';
import { type Db, openDatabase } from '../store';
import { createAuthz } from './authz';
import { createAuthzService } from './authz-service';
import { createAuthzStore } from './authz-store';

const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});

/** The issuer check sees this DER as "signed by a spawn CA, not the node CA" (what issuer.ts decides for real). */
const SPAWN_CA_LEAF = Buffer.from('leaf signed by a spawn CA');
const ROOT_LEAF = Buffer.from('leaf signed by the node CA');

function fakeCall(request: object, cn: string, raw: Buffer, port: number): ServerUnaryCall<never, unknown> {
  return Object.assign(new EventEmitter(), {
    request,
    getPeer: () => `192.0.2.66:${port}`,
    getAuthContext: () => ({ transportSecurityType: 'ssl', sslPeerCertificate: { subject: { CN: cn }, raw } }),
  }) as unknown as ServerUnaryCall<never, unknown>;
}

type Handler = (call: ServerUnaryCall<never, unknown>, cb: (err: unknown, value?: unknown) => void) => void;

function setup(maxRecords: number) {
  const db = openDatabase(':memory:');
  dbs.push(db);
  const armed: Array<() => void> = [];
  const store = createAuthzStore(db, { auditMaxRecords: maxRecords, audit: { schedule: (fn) => (armed.push(fn), () => {}) } });
  const authz = createAuthz({ admins: ['admin'], configRules: [], store, log: silentLogger });
  const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: (der) => (der.equals(SPAWN_CA_LEAF) ? 'other' : 'root') };
  const service = createAuthzService(ctx, authz);
  let port = 1024;
  const call = (method: keyof typeof service, request: object, cn: string, raw = ROOT_LEAF) =>
    new Promise<number>((resolve) => {
      (service[method] as unknown as Handler)(fakeCall(request, cn, raw, port++), (err) => resolve(err ? (err as { code: number }).code : status.OK));
    });
  return { db, store, call };
}

describe('a stranger flooding refusals cannot flush the audit log', () => {
  it("thousands of UNAUTHENTICATED, PERMISSION_DENIED and NOT_FOUND calls leave the admin's Allow in a 20-row log, aggregated with counts", async () => {
    const { db, store, call } = setup(20);
    expect(await call('allow', { identity: 'nova', method: 'aurae.authz.v0.AuthzService/GetPolicy' }, 'admin')).toBe(status.OK);
    const rows = () => (db.prepare('SELECT COUNT(*) AS n FROM authz_audit').get() as { n: number }).n;
    for (let n = 0; n < 2000; n++) {
      // A certificate from a spawn CA, even for the name "admin", even on a read every certificate may make.
      expect(await call('getPolicy', { identity: '' }, 'admin', SPAWN_CA_LEAF)).toBe(status.UNAUTHENTICATED);
      expect(await call('allow', { identity: 'mallory', method: '*' }, 'mallory')).toBe(status.PERMISSION_DENIED);
    }
    // An admin's own failed edits are refusals too: they changed nothing.
    for (let n = 0; n < 500; n++) expect(await call('revoke', { identity: `ghost${n % 7}`, method: '' }, 'admin')).toBe(status.NOT_FOUND);
    // Batched: 4500 refusals, not one transaction each; the accepted Allow was written at once.
    expect(rows()).toBe(1);

    const records = store.listAudit({ limit: 100 });
    expect(records.length).toBeLessThanOrEqual(20);
    expect(records.filter((r) => r.code === 'OK')).toEqual([expect.objectContaining({ identity: 'admin', method: 'aurae.authz.v0.AuthzService/Allow', detail: 'allow nova aurae.authz.v0.AuthzService/GetPolicy' })]);
    const counts = Object.fromEntries(records.filter((r) => r.code !== 'OK').map((r) => [`${r.identity || '(none)'} ${r.method.split('/')[1]} ${r.code}`, r.count]));
    expect(counts).toEqual({
      '(none) GetPolicy UNAUTHENTICATED': 2000,
      'mallory Allow PERMISSION_DENIED': 2000,
      // The NOT_FOUND rows differ only in their detail (the identity revoked): one row, the latest detail.
      'admin Revoke NOT_FOUND': 500,
    });
  });

  it('thousands of distinct refusals (no aggregation) still keep the admin row; the newest refusals fill their half', async () => {
    const { store, call } = setup(20);
    expect(await call('allow', { identity: 'nova', method: 'aurae.authz.v0.AuthzService/GetPolicy' }, 'admin')).toBe(status.OK);
    for (let n = 0; n < 1500; n++) expect(await call('allow', { identity: 'x', method: '*' }, `stranger-${n}`)).toBe(status.PERMISSION_DENIED);
    const records = store.listAudit({ limit: 100 });
    expect(records.filter((r) => r.code === 'PERMISSION_DENIED').map((r) => r.identity)).toEqual(Array.from({ length: 10 }, (_, i) => `stranger-${1499 - i}`));
    expect(records.filter((r) => r.code === 'OK')).toHaveLength(1);
  });
});
