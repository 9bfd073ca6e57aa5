// VmService/Renew through the real wrappers (fake grpc-js calls, as authz/tenant-reads.test.ts) and the real
// policy: admin by default, a rule scoped to VMs opens it for those VMs only, a bad vm_id is named, and the
// renewal's own failures keep their status.
import { type ServerUnaryCall, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuthz, createAuthzStore } from '../authz';
import { AuraeError } from '../errors';
import { silentLogger } from '../log';
import type { RpcContext } from '../server';
import { fakeUnaryCall, issuerByName } from '../server/testing';
import { type Db, openDatabase } from '../store';
import { createVmService, type RenewChild } from './vm-service';
import type { VmRuntime } from './vm-runtime';

const RENEW = 'aurae.vms.v0.VmService/Renew';
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});

type Handler = (call: ServerUnaryCall<never, unknown>, cb: (err: unknown, value?: unknown) => void) => void;

function setup(renewChild: RenewChild) {
  const db = openDatabase(':memory:');
  dbs.push(db);
  const authz = createAuthz({
    admins: ['admin'],
    configRules: [{ identity: 'nova', allow: [RENEW], deny: [], vms: ['nova-*'] }],
    store: createAuthzStore(db, { auditMaxRecords: 100 }),
    knownMethods: () => new Set([RENEW]),
    log: silentLogger,
  });
  const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
  const service = createVmService(ctx, {} as VmRuntime, { maxMemoryMiB: 1024, maxCpus: 4 } as never, renewChild);
  const renew = (vmId: string, cn: string) =>
    new Promise<{ code: number; details?: string; value?: unknown }>((resolve) => {
      (service.renew as unknown as Handler)(fakeUnaryCall({ vmId } as never, cn), (err, value) => {
        const e = err as { code: number; details: string } | null;
        resolve(e ? { code: e.code, details: e.details } : { code: status.OK, value });
      });
    });
  return { renew, authz };
}

describe('VmService/Renew', () => {
  it('renews for an admin and answers with the certificate the child serves now; audited', async () => {
    const renewed: string[] = [];
    const { renew, authz } = setup(async (name) => {
      renewed.push(name);
      return { fingerprint: 'ab'.repeat(32), notAfter: '2026-12-06T03:00:00.000Z' };
    });
    expect(await renew('web', 'admin')).toEqual({ code: status.OK, value: { fingerprint: 'ab'.repeat(32), notAfter: '2026-12-06T03:00:00.000Z' } });
    expect(renewed).toEqual(['web']);
    expect(authz.listAudit({ limit: 10, method: RENEW }).map((e) => [e.identity, e.code, e.detail])).toEqual([['admin', 'OK', 'web']]);
  });

  it("is the admins' by default; a rule scoped to VMs allows those VMs only", async () => {
    const renewed: string[] = [];
    const { renew } = setup(async (name) => {
      renewed.push(name);
      return { fingerprint: 'f', notAfter: '' };
    });
    expect((await renew('web', 'bob')).code).toBe(status.PERMISSION_DENIED);
    expect((await renew('web', 'nova')).code).toBe(status.PERMISSION_DENIED);
    expect((await renew('nova-a', 'nova')).code).toBe(status.OK);
    expect(renewed).toEqual(['nova-a']);
  });

  it('a bad vm_id is INVALID_ARGUMENT naming the field; nothing is renewed', async () => {
    const renewed: string[] = [];
    const { renew } = setup(async (name) => {
      renewed.push(name);
      return { fingerprint: 'f', notAfter: '' };
    });
    const bad = await renew('Web_1', 'admin');
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/vm_id/);
    expect(renewed).toEqual([]);
  });

  it("the renewal's failure keeps its status and message (a child that did not take it)", async () => {
    const { renew } = setup(async (name) => {
      throw new AuraeError('UNAVAILABLE', `vm "${name}": renewing its certificate failed: connection refused: it keeps its current certificate`);
    });
    const failed = await renew('web', 'admin');
    expect(failed).toEqual({ code: status.UNAVAILABLE, details: 'vm "web": renewing its certificate failed: connection refused: it keeps its current certificate' });
  });
});
