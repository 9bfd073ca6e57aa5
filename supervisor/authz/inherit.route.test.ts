// Children get the parent's rules and their updates, over real mTLS on loopback: a "parent" (real authz, its
// AuthzService and a tenant service, routed) and a "child" (real authz, parent identity "aurae") that inherits
// the parent's effective rules at "boot" and from every push (supervisor/authz/push.ts, as auraed wires it).
// Attacks: an `aer authz allow` at the root must reach the child (routed calls work), and a deny at the root
// must hold at the child for a caller that connects to the child directly, not through the parent.
import { Client, Metadata, type ServiceError, credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { AuthzServiceService } from '../gen/aurae/authz/v0/authz';
import { silentLogger } from '../log';
import { type CertificateAuthority, createCa, issueClientCert, issueServerCert } from '../pki';
import { type ChildRouter, type RpcContext, type RunningServer, mtlsServerCredentials, startServer, unary, withRouting } from '../server';
import { type Db, openDatabase } from '../store';
import { type Authz, createAuthz } from './authz';
import { createAuthzService } from './authz-service';
import { createAuthzStore } from './authz-store';
import { type ParentRulePusher, createParentRulePusher } from './push';
import { issuerByName } from '../server/testing';

const json = { serialize: (v: unknown) => Buffer.from(JSON.stringify(v)), deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown };
/** A tenant's service: Stop touches one cell. */
const CellsLike = {
  stop: { path: '/test.v0.Cells/Stop', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
} as const;
const cellsLike = (ctx: RpcContext, where: string) => ({
  stop: unary(ctx, {
    method: 'test.v0.Cells/Stop',
    access: 'admin',
    validate: (r: { cell?: string }) => {
      if (!r.cell) throw new AuraeError('INVALID_ARGUMENT', 'cell: required');
      return r.cell;
    },
    resource: (cell) => ({ cell }),
    run: (cell) => ({ stopped: cell, on: where }),
  }),
});

describe('children inherit the parent\'s rules and their updates (loopback mTLS)', () => {
  let ca: CertificateAuthority;
  let parent: RunningServer;
  let child: RunningServer;
  let parentAuthz: Authz;
  let childAuthz: Authz;
  let pusher: ParentRulePusher;
  const dbs: Db[] = [];
  const clients: Client[] = [];
  const connect = async (identity: string, address: string, serverName: string) => {
    const c = await issueClientCert(ca, { identity });
    const client = new Client(address, credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(c.keyPem), Buffer.from(c.certPem)), {
      'grpc.ssl_target_name_override': serverName,
      'grpc.default_authority': serverName,
    });
    clients.push(client);
    return client;
  };
  const db = () => {
    const d = openDatabase(':memory:');
    dbs.push(d);
    return d;
  };
  const stop = (client: Client, cell: string, node?: string) =>
    new Promise<{ err: ServiceError | null; res?: unknown }>((resolve) => {
      const md = new Metadata();
      if (node) md.set('aurae-node', node);
      client.makeUnaryRequest(CellsLike.stop.path, json.serialize, json.deserialize, { cell }, md, { deadline: Date.now() + 10_000 }, (err, res) => resolve({ err, res }));
    });
  const setParentRules = (client: Client) =>
    new Promise<ServiceError | null>((resolve) => {
      const def = AuthzServiceService.setParentRules;
      client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, { rules: [] }, new Metadata(), { deadline: Date.now() + 10_000 }, (err) => resolve(err));
    });

  beforeAll(async () => {
    ca = await createCa('inherit-test-root');
    const parentCert = await issueServerCert(ca, { nodeName: 'aurae' });
    const childCert = await issueServerCert(ca, { nodeName: 'web.aurae', commonName: 'aurae/web' });
    parentAuthz = createAuthz({ admins: ['admin'], configRules: [], store: createAuthzStore(db(), { auditMaxRecords: 100 }), log: silentLogger, nodePath: 'aurae' });
    // The child boots with what the parent had then (guest payload: authz.inherited = parent.inheritable()).
    childAuthz = createAuthz({ admins: ['admin'], configRules: [], store: createAuthzStore(db(), { auditMaxRecords: 100 }), log: silentLogger, nodePath: 'aurae/web', inherited: parentAuthz.inheritable() });
    const childCtx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz: childAuthz, parentIdentity: 'aurae', issuerOf: issuerByName('aurae') };
    child = await startServer({
      credentials: mtlsServerCredentials({ ca: Buffer.from(ca.certPem), cert: Buffer.from(childCert.certPem), key: Buffer.from(childCert.keyPem) }),
      targets: [{ kind: 'tcp', address: '127.0.0.1:0' }],
      services: [
        { definition: AuthzServiceService, implementation: createAuthzService(childCtx, childAuthz) },
        { definition: CellsLike, implementation: cellsLike(childCtx, 'child') },
      ],
      log: silentLogger,
    });
    const parentClientCert = await issueClientCert(ca, { identity: 'aurae' });
    let childClient: Client | null = null;
    const router: ChildRouter = {
      nodePath: 'aurae',
      clientFor: async () => {
        childClient ??= new Client(child.tcp!, credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(parentClientCert.keyPem), Buffer.from(parentClientCert.certPem)), {
          'grpc.ssl_target_name_override': 'web.aurae',
          'grpc.default_authority': 'web.aurae',
        });
        if (!clients.includes(childClient)) clients.push(childClient);
        return childClient;
      },
    };
    const parentCtx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz: parentAuthz, parentIdentity: null, issuerOf: issuerByName() };
    parent = await startServer({
      credentials: mtlsServerCredentials({ ca: Buffer.from(ca.certPem), cert: Buffer.from(parentCert.certPem), key: Buffer.from(parentCert.keyPem) }),
      targets: [{ kind: 'tcp', address: '127.0.0.1:0' }],
      services: [
        { definition: AuthzServiceService, implementation: withRouting(parentCtx, router, AuthzServiceService, createAuthzService(parentCtx, parentAuthz)) },
        { definition: CellsLike, implementation: withRouting(parentCtx, router, CellsLike, cellsLike(parentCtx, 'parent')) },
      ],
      log: silentLogger,
    });
    // As auraed wires it: every change of the parent's effective rules goes to its running children.
    pusher = createParentRulePusher({ rules: () => parentAuthz.inheritable(), runningChildren: () => ['web'], clientFor: router.clientFor, log: silentLogger });
    parentAuthz.onChange(() => pusher.pushAll());
  });

  afterAll(async () => {
    pusher?.close();
    for (const c of clients) c.close();
    await parent?.shutdown(1000);
    await child?.shutdown(1000);
    for (const d of dbs) d.close();
  });

  const admin = { identity: 'admin', peer: 'test', admin: true };

  it('attack fixed: an allow at the root reaches the child, so routed calls for her cells work; others stay refused', async () => {
    const nova = await connect('nova', parent.tcp!, 'aurae');
    expect((await stop(nova, 'nova/a', 'aurae/web')).err?.code).toBe(status.PERMISSION_DENIED);
    parentAuthz.allow(admin, 'nova', 'test.v0.Cells/Stop', { cells: ['nova/*'] });
    await pusher.idle();
    expect(childAuthz.policy('nova').rules).toEqual([{ identity: 'nova', effect: 'allow', pattern: 'test.v0.Cells/Stop', source: 'parent', scope: { cells: ['nova/*'] } }]);
    const routed = await stop(nova, 'nova/a', 'aurae/web');
    expect(routed).toEqual({ err: null, res: { stopped: 'nova/a', on: 'child' } });
    // Another tenant's cell on the child: refused already at the parent (the request validates there).
    const other = await stop(nova, 'other/db', 'aurae/web');
    expect(other.err?.code).toBe(status.PERMISSION_DENIED);
    expect(other.err?.details).toMatch(/on cell "other\/db": its rules for this method cover only --cell 'nova\/\*'/);
  });

  it('attack fixed: a deny at the root holds at the child for a caller that connects to the child directly', async () => {
    const direct = await connect('nova', child.tcp!, 'web.aurae');
    expect((await stop(direct, 'nova/secret')).err).toBeNull();
    parentAuthz.deny(admin, 'nova', 'test.v0.Cells/Stop', { cells: ['nova/secret'] });
    await pusher.idle();
    const refused = await stop(direct, 'nova/secret');
    expect(refused.err?.code).toBe(status.PERMISSION_DENIED);
    expect(refused.err?.details).toMatch(/inherited from this node's parent/);
    expect((await stop(direct, 'nova/a')).err).toBeNull();
    // Revoking at the root lifts it at the child too.
    parentAuthz.revoke(admin, 'nova', 'test.v0.Cells/Stop');
    await pusher.idle();
    expect((await stop(direct, 'nova/a')).err?.code).toBe(status.PERMISSION_DENIED);
  });

  it('attack: nobody but the parent may replace what the child inherits — not a tenant, not an admin, not through the parent', async () => {
    for (const identity of ['nova', 'admin']) {
      const direct = await connect(identity, child.tcp!, 'web.aurae');
      expect((await setParentRules(direct))?.code, identity).toBe(status.PERMISSION_DENIED);
    }
    // Routed through the parent, the child sees the admin on behalf of, not the parent itself.
    const viaParent = await connect('admin', parent.tcp!, 'aurae');
    const routed = await new Promise<ServiceError | null>((resolve) => {
      const md = new Metadata();
      md.set('aurae-node', 'aurae/web');
      const def = AuthzServiceService.setParentRules;
      viaParent.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, { rules: [] }, md, { deadline: Date.now() + 10_000 }, (err) => resolve(err));
    });
    expect(routed?.code).toBe(status.PERMISSION_DENIED);
  });
});
