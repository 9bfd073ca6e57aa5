// Routing: the pure decision, the child's on-behalf-of rule, and real forwarding between two in-process mTLS
// servers on loopback (a "parent" that routes and a "child"), for unary and server-streaming calls.
import { Client, Metadata, type ServiceError, credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthClient, type HealthCheckResponse } from '../gen/grpc/health/v1/health';
import { HealthRegistry, HealthService, createHealthService } from '../health';
import { silentLogger } from '../log';
import { type CertificateAuthority, createCa, issueClientCert, issueServerCert } from '../pki';
import { callerFromCall } from './caller';
import { mtlsServerCredentials } from './credentials';
import { AuraeError } from '../errors';
import { type ChildRouter, routeDecision, withRouting } from './route';
import { type AuditEvent, type Authorizer, type RpcContext, unary } from './rpc';
import { type RunningServer, startServer } from './server';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from './testing';

describe('routeDecision', () => {
  it('handles calls for this node (or without aurae-node) locally', () => {
    expect(routeDecision('aurae', undefined)).toEqual({ kind: 'local' });
    expect(routeDecision('aurae', '')).toEqual({ kind: 'local' });
    expect(routeDecision('aurae/web', 'aurae/web')).toEqual({ kind: 'local' });
  });
  it('forwards to the child on the way', () => {
    expect(routeDecision('aurae', 'aurae/web')).toEqual({ kind: 'forward', child: 'web', target: 'aurae/web' });
    expect(routeDecision('aurae', 'aurae/web/db')).toEqual({ kind: 'forward', child: 'web', target: 'aurae/web/db' });
    expect(routeDecision('aurae/web', 'aurae/web/db')).toEqual({ kind: 'forward', child: 'db', target: 'aurae/web/db' });
  });
  it('refuses paths that are not descendants, and malformed ones', () => {
    expect(() => routeDecision('aurae', 'other/web')).toThrow(expect.objectContaining({ code: 'NOT_FOUND', message: expect.stringMatching(/not node "aurae" or one of its descendants/) }));
    expect(() => routeDecision('aurae/web', 'aurae')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    expect(() => routeDecision('aurae', 'aurae-x/web')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    for (const bad of ['aurae/Web', 'aurae//web', '/aurae', 'aurae/../x', 'aurae/web/']) {
      expect(() => routeDecision('aurae', bad), bad).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});

describe('methods that stream requests', () => {
  it('run locally without aurae-node and are refused with UNIMPLEMENTED when routed', () => {
    const definition = {
      upload: { path: '/x.v0.S/Upload', requestStream: true, responseStream: false, requestSerialize: Buffer.from, requestDeserialize: (b: Buffer) => b, responseSerialize: Buffer.from, responseDeserialize: (b: Buffer) => b },
    };
    const ran: string[] = [];
    const routed = withRouting({ log: silentLogger, admins: new Set(), authz: fakeAuthorizer(), parentIdentity: null, issuerOf: issuerByName() }, { nodePath: 'aurae', clientFor: async () => { throw new Error('must not connect'); } }, definition as never, {
      upload: (() => void ran.push('local')) as never,
    });
    const call = (node?: string) => {
      const metadata = new Metadata();
      if (node) metadata.set('aurae-node', node);
      return { metadata, emit: () => true };
    };
    const results: unknown[] = [];
    (routed.upload as (c: unknown, cb: (e: unknown) => void) => void)(call(), (e) => results.push(e));
    (routed.upload as (c: unknown, cb: (e: unknown) => void) => void)(call('aurae/web'), (e) => results.push(e));
    expect(ran).toEqual(['local']);
    expect(results).toEqual([{ code: status.UNIMPLEMENTED, details: expect.stringMatching(/x\.v0\.S\/Upload streams requests, which are not forwarded/) }]);
  });
});

describe('callerFromCall with aurae-on-behalf-of', () => {
  const call = (cn: string, onBehalfOf?: string[]) => {
    const metadata = new Metadata();
    for (const v of onBehalfOf ?? []) metadata.add('aurae-on-behalf-of', v);
    return { getPeer: () => '127.0.0.1:1', getAuthContext: () => fakeAuthContext(cn), metadata } as never;
  };
  it('takes the original caller only from the parent', () => {
    expect(callerFromCall(call('aurae', ['admin']), new Set(['admin']), 'aurae', issuerByName('aurae'))).toEqual({ identity: 'admin', peer: '127.0.0.1:1', admin: true, via: 'aurae' });
    expect(callerFromCall(call('admin'), new Set(['admin']), 'aurae', issuerByName('aurae'))).toEqual({ identity: 'admin', peer: '127.0.0.1:1', admin: true });
  });
  it('refuses it from anyone else, and on a node without a parent', () => {
    expect(() => callerFromCall(call('admin', ['root']), new Set(['admin']), 'aurae', issuerByName('aurae'))).toThrow(expect.objectContaining({ code: 'PERMISSION_DENIED', message: expect.stringMatching(/only this node's parent "aurae" may/) }));
    expect(() => callerFromCall(call('aurae', ['admin']), new Set(['admin']), null, issuerByName())).toThrow(/this node was not spawned/);
    expect(() => callerFromCall(call('aurae', ['a', 'b']), new Set(), 'aurae', issuerByName('aurae'))).toThrow(expect.objectContaining({ code: 'UNAUTHENTICATED' }));
  });
});

/** Denies `denied` everything; records who asked for what, and the audit rows. */
function recordingAuthz(denied: string): Authorizer & { seen: string[]; audits: AuditEvent[] } {
  const seen: string[] = [];
  const audits: AuditEvent[] = [];
  return {
    seen,
    audits,
    check: (caller, method, target) => {
      // Method level (resource null), then the resource: {} for Health (the node itself), with the node when routed.
      const on = [target?.node ? `on ${target.node}` : '', target?.resource ? JSON.stringify(target.resource) : ''].filter(Boolean).join(' ');
      seen.push(`${caller.identity}${caller.via ? ` via ${caller.via}` : ''} ${method}${on ? ` ${on}` : ''}`);
      return caller.identity === denied ? { message: `identity "${denied}" may not call ${method}`, detail: 'denied' } : null;
    },
    audit: (event) => void audits.push(event),
  };
}

// A mutating method (audited) beside Health's reads, with JSON on the wire: enough to see the audit rows.
const json = { serialize: (v: unknown) => Buffer.from(JSON.stringify(v)), deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown };
const PokeService = {
  poke: {
    path: '/test.v0.PokeService/Poke',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
} as const;
const pokeService = (ctx: RpcContext, where: string) => ({
  poke: unary(ctx, {
    method: 'test.v0.PokeService/Poke',
    access: 'admin',
    validate: (r: { what?: string }) => {
      if (!r.what) throw new AuraeError('INVALID_ARGUMENT', 'what: must not be empty');
      return r.what;
    },
    summary: (what) => `poked ${what}`,
    run: (what) => {
      if (what === 'fail') throw new AuraeError('FAILED_PRECONDITION', `cannot poke "fail" on ${where}`);
      return { poked: what, on: where };
    },
  }),
});

describe('forwarding between a parent and a child (loopback mTLS)', () => {
  let ca: CertificateAuthority;
  let parent: RunningServer;
  let child: RunningServer;
  let parentAuthz: ReturnType<typeof recordingAuthz>;
  let childAuthz: ReturnType<typeof recordingAuthz>;
  const clients: Client[] = [];
  const childHealth = new HealthRegistry();
  let connectAs: (identity: string, address: string, serverName: string) => Promise<HealthClient>;

  beforeAll(async () => {
    ca = await createCa('route-test-root');
    const parentCert = await issueServerCert(ca, { nodeName: 'aurae' });
    const childCert = await issueServerCert(ca, { nodeName: 'web.aurae', commonName: 'aurae/web' });
    connectAs = async (identity, address, serverName) => {
      const c = await issueClientCert(ca, { identity });
      const client = new HealthClient(address, credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(c.keyPem), Buffer.from(c.certPem)), {
        'grpc.ssl_target_name_override': serverName,
        'grpc.default_authority': serverName,
      });
      clients.push(client);
      return client;
    };
    childAuthz = recordingAuthz('nobody');
    childHealth.set('', 'SERVING');
    childHealth.set('only-on-child', 'SERVING');
    const childCtx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz: childAuthz, parentIdentity: 'aurae', issuerOf: issuerByName('aurae') };
    child = await startServer({
      credentials: mtlsServerCredentials({ ca: Buffer.from(ca.certPem), cert: Buffer.from(childCert.certPem), key: Buffer.from(childCert.keyPem) }),
      targets: [{ kind: 'tcp', address: '127.0.0.1:0' }],
      services: [
        { definition: HealthService, implementation: createHealthService(childCtx, childHealth) },
        { definition: PokeService, implementation: pokeService(childCtx, 'child') },
      ],
      log: silentLogger,
    });
    const parentClientCert = await issueClientCert(ca, { identity: 'aurae' });
    const router: ChildRouter = {
      nodePath: 'aurae',
      clientFor: async (label) => {
        expect(label).toBe('web');
        const client = new Client(child.tcp!, credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(parentClientCert.keyPem), Buffer.from(parentClientCert.certPem)), {
          'grpc.ssl_target_name_override': 'web.aurae',
          'grpc.default_authority': 'web.aurae',
        });
        clients.push(client);
        return client;
      },
    };
    parentAuthz = recordingAuthz('viewer');
    const parentCtx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz: parentAuthz, parentIdentity: null, issuerOf: issuerByName() };
    const parentHealth = new HealthRegistry();
    parentHealth.set('', 'NOT_SERVING');
    parent = await startServer({
      credentials: mtlsServerCredentials({ ca: Buffer.from(ca.certPem), cert: Buffer.from(parentCert.certPem), key: Buffer.from(parentCert.keyPem) }),
      targets: [{ kind: 'tcp', address: '127.0.0.1:0' }],
      services: [
        { definition: HealthService, implementation: withRouting(parentCtx, router, HealthService, createHealthService(parentCtx, parentHealth)) },
        { definition: PokeService, implementation: withRouting(parentCtx, router, PokeService, pokeService(parentCtx, 'parent')) },
      ],
      log: silentLogger,
    });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await parent?.shutdown(1000);
    await child?.shutdown(1000);
  });

  const check = (client: HealthClient, service: string, node?: string) =>
    new Promise<{ err: ServiceError | null; res?: HealthCheckResponse }>((resolve) => {
      const md = new Metadata();
      if (node !== undefined) md.set('aurae-node', node);
      client.check({ service }, md, { deadline: Date.now() + 5000 }, (err, res) => resolve({ err, res }));
    });

  it('without aurae-node the parent answers itself', async () => {
    const admin = await connectAs('admin', parent.tcp!, 'aurae');
    const { err, res } = await check(admin, '');
    expect(err).toBeNull();
    expect(res?.status).toBe(2); // NOT_SERVING: the parent's own registry
  });

  it('a unary call for aurae/web is authorized at the parent, forwarded, and authorized at the child for the original caller', async () => {
    const admin = await connectAs('admin', parent.tcp!, 'aurae');
    parentAuthz.seen.length = 0;
    childAuthz.seen.length = 0;
    const { err, res } = await check(admin, 'only-on-child', 'aurae/web');
    expect(err).toBeNull();
    expect(res?.status).toBe(1); // SERVING, from the child's registry
    expect(parentAuthz.seen).toEqual(['admin grpc.health.v1.Health/Check on aurae/web', 'admin grpc.health.v1.Health/Check on aurae/web {}']);
    expect(childAuthz.seen).toEqual(['admin via aurae grpc.health.v1.Health/Check', 'admin via aurae grpc.health.v1.Health/Check {}']);
  });

  it('a caller the parent denies never reaches the child', async () => {
    const viewer = await connectAs('viewer', parent.tcp!, 'aurae');
    childAuthz.seen.length = 0;
    const { err } = await check(viewer, '', 'aurae/web');
    expect(err?.code).toBe(status.PERMISSION_DENIED);
    expect(childAuthz.seen).toEqual([]);
  });

  it('the child refuses aurae-on-behalf-of from anyone but its parent', async () => {
    const admin = await connectAs('admin', child.tcp!, 'web.aurae');
    const md = new Metadata();
    md.set('aurae-on-behalf-of', 'someone-else');
    const err = await new Promise<ServiceError | null>((resolve) => admin.check({ service: '' }, md, (e) => resolve(e)));
    expect(err?.code).toBe(status.PERMISSION_DENIED);
    expect(err?.details).toMatch(/only this node's parent "aurae" may/);
  });

  it('errors from the child and bad paths come back with their status', async () => {
    const admin = await connectAs('admin', parent.tcp!, 'aurae');
    expect((await check(admin, 'no-such-service', 'aurae/web')).err?.code).toBe(status.NOT_FOUND);
    expect((await check(admin, '', 'elsewhere/web')).err?.code).toBe(status.NOT_FOUND);
    expect((await check(admin, '', 'aurae/Web')).err?.code).toBe(status.INVALID_ARGUMENT);
  });

  it('the parent audits forwarded mutating calls with the target node; the child audits them with via', async () => {
    const pokeAs = async (identity: string, what: string, node?: string) => {
      const c = await issueClientCert(ca, { identity });
      const client = new Client(parent.tcp!, credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(c.keyPem), Buffer.from(c.certPem)), {
        'grpc.ssl_target_name_override': 'aurae',
        'grpc.default_authority': 'aurae',
      });
      clients.push(client);
      const md = new Metadata();
      if (node) md.set('aurae-node', node);
      return new Promise<{ err: ServiceError | null; res?: unknown }>((resolve) =>
        client.makeUnaryRequest(PokeService.poke.path, json.serialize, json.deserialize, { what }, md, { deadline: Date.now() + 5000 }, (err, res) => resolve({ err, res })),
      );
    };
    parentAuthz.audits.length = 0;
    childAuthz.audits.length = 0;
    expect((await pokeAs('admin', 'web', 'aurae/web')).res).toEqual({ poked: 'web', on: 'child' });
    expect((await pokeAs('admin', 'fail', 'aurae/web')).err?.code).toBe(status.FAILED_PRECONDITION);
    expect((await pokeAs('viewer', 'web', 'aurae/web')).err?.code).toBe(status.PERMISSION_DENIED);
    expect((await pokeAs('admin', 'here')).res).toEqual({ poked: 'here', on: 'parent' });
    // Reads are not audited, forwarded or not.
    await check(await connectAs('admin', parent.tcp!, 'aurae'), 'only-on-child', 'aurae/web');
    const peer = expect.stringMatching(/127\.0\.0\.1/);
    const method = 'test.v0.PokeService/Poke';
    expect(parentAuthz.audits).toEqual([
      { identity: 'admin', method, code: 'OK', detail: 'poked web', peer, node: 'aurae/web' },
      { identity: 'admin', method, code: 'FAILED_PRECONDITION', detail: 'cannot poke "fail" on child', peer, node: 'aurae/web' },
      { identity: 'viewer', method, code: 'PERMISSION_DENIED', detail: 'denied', peer, node: 'aurae/web' },
      { identity: 'admin', method, code: 'OK', detail: 'poked here', peer },
    ]);
    expect(childAuthz.audits).toEqual([
      { identity: 'admin', method, code: 'OK', detail: 'poked web', peer, via: 'aurae' },
      { identity: 'admin', method, code: 'FAILED_PRECONDITION', detail: 'cannot poke "fail" on child', peer, via: 'aurae' },
    ]);
  });

  it('a forwarded mutating call that cannot reach its child is audited at the parent with why', async () => {
    const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz: recordingAuthz('nobody'), parentIdentity: null, issuerOf: issuerByName() };
    const down: ChildRouter = { nodePath: 'aurae', clientFor: async (label) => { throw new AuraeError('UNAVAILABLE', `child "aurae/${label}" is crashed, not running`); } };
    const routed = withRouting(ctx, down, PokeService, pokeService(ctx, 'parent'));
    const metadata = new Metadata();
    metadata.set('aurae-node', 'aurae/db');
    const call = { request: { what: 'db' }, metadata, getPeer: () => '127.0.0.1:9', getAuthContext: () => fakeAuthContext('admin'), getDeadline: () => Infinity };
    const err = await new Promise((resolve) => (routed.poke as (c: unknown, cb: (e: unknown) => void) => void)(call, resolve));
    expect(err).toMatchObject({ code: status.UNAVAILABLE });
    expect((ctx.authz as ReturnType<typeof recordingAuthz>).audits).toEqual([
      { identity: 'admin', method: 'test.v0.PokeService/Poke', code: 'UNAVAILABLE', detail: 'child "aurae/db" is crashed, not running', peer: '127.0.0.1:9', node: 'aurae/db' },
    ]);
  });

  it('server streaming is forwarded too (Watch through the parent sees the child change)', async () => {
    const admin = await connectAs('admin', parent.tcp!, 'aurae');
    const md = new Metadata();
    md.set('aurae-node', 'aurae/web');
    childHealth.set('watched', 'SERVING');
    const stream = admin.watch({ service: 'watched' }, md);
    const seen: number[] = [];
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (m: { status: number }) => {
        seen.push(m.status);
        if (seen.length === 1) childHealth.set('watched', 'NOT_SERVING');
        if (seen.length === 2) resolve();
      });
      stream.on('error', (e: ServiceError) => (e.code === status.CANCELLED ? undefined : reject(e)));
    });
    stream.cancel();
    expect(seen).toEqual([1, 2]);
  });
});
