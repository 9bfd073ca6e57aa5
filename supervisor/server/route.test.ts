// Routing: the pure decision, the child's on-behalf-of rule, and real forwarding between two in-process mTLS
// servers on loopback (a "parent" that routes and a "child"), for unary, server-, client- and bidi-streaming calls.
import { EventEmitter } from 'node:events';
import { Client, type ClientDuplexStream, Metadata, type ServerDuplexStream, type ServerReadableStream, type ServiceError, credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthClient, type HealthCheckResponse } from '../gen/grpc/health/v1/health';
import { HealthRegistry, HealthService, createHealthService } from '../health';
import { silentLogger } from '../log';
import { type CertificateAuthority, createCa, issueClientCert, issueServerCert } from '../pki';
import { callerFromCall } from './caller';
import { mtlsServerCredentials } from './credentials';
import { AuraeError } from '../errors';
import { type ChildRouter, routeDecision, withRouting } from './route';
import { type AuditEvent, type Authorizer, type RpcContext, bidiStream, unary } from './rpc';
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
  it('run the original handler without aurae-node (or naming this node), and never connect to a child then', () => {
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
    (routed.upload as (c: unknown, cb: (e: unknown) => void) => void)(call('aurae'), (e) => results.push(e));
    (routed.upload as (c: unknown, cb: (e: unknown) => void) => void)(call('elsewhere/x'), (e) => results.push(e));
    expect(ran).toEqual(['local', 'local']);
    expect(results).toEqual([{ code: status.NOT_FOUND, details: expect.stringMatching(/not node "aurae" or one of its descendants/) }]);
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

/** Wait for `condition`, up to 10 s. */
async function eventually(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met within 10 s');
    await new Promise((r) => setTimeout(r, 5));
  }
}

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

// Request-streaming methods with JSON on the wire: Chat (bidi, audited through rpc.ts bidiStream) and Upload
// (client streaming, written by hand). The child's side records what it saw, for the tests to look at directly.
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/test.v0.ChatService/${name}`,
  requestStream,
  responseStream,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
});
const ChatService = { chat: method('Chat', true, true), upload: method('Upload', true, false) } as const;
// Many small messages: grpc-js's buffers count messages, HTTP/2's windows bytes; a flood that does not stall in
// either without back-pressure in the relay (checked by removing it: the child then writes them all).
const FLOOD_MESSAGES = 4096;
const FLOOD_BYTES = 1024;

interface ChatFirst {
  /** echo: answer each {say}; fail: one answer, then FAILED_PRECONDITION; hang: never answer; flood: FLOOD_MESSAGES
   *  large answers at the pace the reader takes them; sink: read nothing until released, then count. */
  mode?: 'echo' | 'fail' | 'hang' | 'flood' | 'sink';
  room?: string;
}
/** What the child's Chat handler saw (the tests read it in-process). */
const chatSide = { cancelled: 0, written: 0, stalled: false, received: 0, release: null as (() => void) | null, deadlines: [] as number[] };
const chatService = (ctx: RpcContext, where: string) => ({
  chat: bidiStream(ctx, {
    method: 'test.v0.ChatService/Chat',
    access: 'admin',
    validate: (r: ChatFirst) => {
      if (!r.mode) throw new AuraeError('INVALID_ARGUMENT', 'mode: required');
      return { mode: r.mode, room: r.room ?? 'lobby' };
    },
    summary: ({ mode, room }) => `${mode} in ${room}`,
    resource: ({ room }) => ({ cell: room }),
    run: ({ mode }, _first, call: ServerDuplexStream<unknown, unknown>) =>
      new Promise<void>((resolve, reject) => {
        const d = call.getDeadline();
        chatSide.deadlines.push(d instanceof Date ? d.getTime() : Number(d));
        call.on('cancelled', () => {
          chatSide.cancelled++;
          resolve();
        });
        if (mode === 'echo') {
          let n = 0;
          call.on('data', (m: { say: string }) => {
            n++;
            call.write({ echo: m.say, on: where });
          });
          call.on('end', () => {
            call.write({ done: n });
            call.end();
            resolve();
          });
          call.resume();
        } else if (mode === 'fail') {
          call.write({ echo: 'partial', on: where });
          reject(new AuraeError('FAILED_PRECONDITION', `chat failed on ${where}`));
        } else if (mode === 'flood') {
          chatSide.written = 0;
          const payload = 'x'.repeat(FLOOD_BYTES);
          const more = () => {
            chatSide.stalled = false;
            while (chatSide.written < FLOOD_MESSAGES) {
              chatSide.written++;
              if (!call.write({ n: chatSide.written, payload })) {
                chatSide.stalled = true;
                call.once('drain', more);
                return;
              }
            }
            call.end();
            resolve();
          };
          more();
        } else if (mode === 'sink') {
          chatSide.received = 0;
          call.on('data', () => void chatSide.received++);
          call.on('end', () => {
            call.write({ received: chatSide.received });
            call.end();
            resolve();
          });
          chatSide.release = () => call.resume();
        }
      }),
  }),
  upload: (call: ServerReadableStream<{ part: string }, unknown>, callback: (err: unknown, res?: unknown) => void) => {
    const parts: string[] = [];
    call.on('data', (m: { part: string }) => parts.push(m.part));
    call.on('end', () => (parts[0] === 'fail' ? callback({ code: status.OUT_OF_RANGE, details: `upload refused on ${where}` }) : callback(null, { parts, on: where })));
  },
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
        { definition: ChatService, implementation: chatService(childCtx, 'child') as never },
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
        { definition: ChatService, implementation: withRouting(parentCtx, router, ChatService, chatService(parentCtx, 'parent') as never) },
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
  // ---- request streams: Chat (bidi) and Upload (client streaming) through the parent ----------------------------

  const rawClient = async (identity: string) => {
    const c = await issueClientCert(ca, { identity });
    const client = new Client(parent.tcp!, credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(c.keyPem), Buffer.from(c.certPem)), {
      'grpc.ssl_target_name_override': 'aurae',
      'grpc.default_authority': 'aurae',
    });
    clients.push(client);
    return client;
  };
  const routedTo = (node?: string) => {
    const md = new Metadata();
    if (node) md.set('aurae-node', node);
    return md;
  };
  const chat = async (identity: string, node: string | undefined, first: ChatFirst, deadline?: number) =>
    (await rawClient(identity)).makeBidiStreamRequest(ChatService.chat.path, json.serialize, json.deserialize, routedTo(node), deadline ? { deadline } : {}) as ClientDuplexStream<unknown, Record<string, unknown>>;
  /** Everything the call answered, and its error (null when it ended OK). */
  const outcome = (stream: ClientDuplexStream<unknown, Record<string, unknown>>) =>
    new Promise<{ messages: Record<string, unknown>[]; err: ServiceError | null }>((resolve) => {
      const messages: Record<string, unknown>[] = [];
      stream.on('data', (m: Record<string, unknown>) => messages.push(m));
      stream.on('error', (err: ServiceError) => resolve({ messages, err }));
      stream.on('status', (s: { code: number }) => s.code === status.OK && resolve({ messages, err: null }));
    });
  /** A few routed round trips to the child: every side's event loop and the connections had their turn. */
  const roundTrips = async () => {
    const admin = await connectAs('admin', parent.tcp!, 'aurae');
    for (let i = 0; i < 3; i++) expect((await check(admin, 'only-on-child', 'aurae/web')).err).toBeNull();
  };
  /** Wait until a writer is stalled and stays so, its progress unchanged across round trips (up to 10 s). */
  const settledStall = async (stalled: () => boolean, progress: () => number) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      await eventually(stalled);
      const at = progress();
      await roundTrips();
      if (stalled() && progress() === at) return;
      if (Date.now() > deadline) throw new Error(`the writer never stalled for good (progress ${progress()})`);
    }
  };

  it('a bidi stream is forwarded: requests flow to the child, answers back, the half-close ends it; both sides authorize and audit', async () => {
    parentAuthz.audits.length = 0;
    childAuthz.audits.length = 0;
    parentAuthz.seen.length = 0;
    childAuthz.seen.length = 0;
    const stream = await chat('admin', 'aurae/web', { mode: 'echo', room: 'web' });
    const done = outcome(stream);
    stream.write({ mode: 'echo', room: 'web' });
    stream.write({ say: 'one' });
    stream.write({ say: 'two' });
    stream.end();
    const { messages, err } = await done;
    expect(err).toBeNull();
    expect(messages).toEqual([{ echo: 'one', on: 'child' }, { echo: 'two', on: 'child' }, { done: 2 }]);
    const chatMethod = 'test.v0.ChatService/Chat';
    // The parent checks the method, then the resource of the first request; the child does the same for the caller.
    expect(parentAuthz.seen).toEqual([`admin ${chatMethod} on aurae/web`, `admin ${chatMethod} on aurae/web {"cell":"web"}`]);
    expect(childAuthz.seen).toEqual([`admin via aurae ${chatMethod}`, `admin via aurae ${chatMethod} {"cell":"web"}`]);
    const peer = expect.stringMatching(/127\.0\.0\.1/);
    expect(parentAuthz.audits).toEqual([{ identity: 'admin', method: chatMethod, code: 'OK', detail: 'echo in web', peer, node: 'aurae/web' }]);
    expect(childAuthz.audits).toEqual([{ identity: 'admin', method: chatMethod, code: 'OK', detail: 'echo in web', peer, via: 'aurae' }]);
  });

  it('a bidi call the parent refuses never reaches the child; the child\'s error comes back after the answers before it', async () => {
    parentAuthz.audits.length = 0;
    childAuthz.seen.length = 0;
    const denied = await chat('viewer', 'aurae/web', {});
    const deniedDone = outcome(denied);
    denied.write({ mode: 'echo' });
    expect((await deniedDone).err?.code).toBe(status.PERMISSION_DENIED);
    expect(childAuthz.seen).toEqual([]);

    const failing = await chat('admin', 'aurae/web', {});
    const failed = outcome(failing);
    failing.write({ mode: 'fail' });
    const { messages, err } = await failed;
    expect(messages).toEqual([{ echo: 'partial', on: 'child' }]);
    expect(err).toMatchObject({ code: status.FAILED_PRECONDITION, details: 'chat failed on child' });
    // A bad first request is the child's to refuse (it does not validate here either: no resource to check).
    const bad = await chat('admin', 'aurae/web', {});
    const badDone = outcome(bad);
    bad.write({});
    expect((await badDone).err).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'mode: required' });
    const method = 'test.v0.ChatService/Chat';
    expect(parentAuthz.audits.map((a) => `${a.identity} ${a.code} ${a.detail} ${a.node}`)).toEqual([
      'viewer PERMISSION_DENIED denied aurae/web',
      'admin FAILED_PRECONDITION chat failed on child aurae/web',
      'admin INVALID_ARGUMENT mode: required aurae/web',
    ]);
    expect(parentAuthz.audits.every((a) => a.method === method)).toBe(true);
  });

  it("cancelling a forwarded bidi call cancels the child's; the caller's deadline goes with the call", async () => {
    parentAuthz.audits.length = 0;
    chatSide.deadlines.length = 0;
    const before = chatSide.cancelled;
    const hanging = await chat('admin', 'aurae/web', {});
    const cancelled = outcome(hanging);
    hanging.write({ mode: 'hang' });
    await eventually(() => chatSide.deadlines.length > 0 && chatSide.cancelled === before);
    hanging.cancel();
    expect((await cancelled).err?.code).toBe(status.CANCELLED);
    await eventually(() => chatSide.cancelled === before + 1);
    await eventually(() => parentAuthz.audits.length === 1);
    expect(parentAuthz.audits[0]).toMatchObject({ code: 'CANCELLED', detail: '', node: 'aurae/web' });

    chatSide.deadlines.length = 0;
    const deadline = Date.now() + 1500;
    const timed = await chat('admin', 'aurae/web', {}, deadline);
    const timedOut = outcome(timed);
    timed.write({ mode: 'hang' });
    expect((await timedOut).err?.code).toBe(status.DEADLINE_EXCEEDED);
    // The child got the same deadline (within clock rounding) and saw its call end.
    expect(Math.abs(chatSide.deadlines[0]! - deadline)).toBeLessThan(100);
    await eventually(() => chatSide.cancelled === before + 2);
  });

  it('back-pressure holds through the parent: a caller that stops reading stalls the child, and it goes on when it reads', async () => {
    const stream = await chat('admin', 'aurae/web', {});
    let received = 0;
    stream.on('data', () => {
      received++;
      if (received === 1) stream.pause();
    });
    const ended = new Promise<ServiceError | null>((resolve) => {
      stream.on('error', (err: ServiceError) => resolve(err));
      stream.on('status', (s: { code: number }) => s.code === status.OK && resolve(null));
    });
    stream.write({ mode: 'flood' });
    stream.end();
    // The child stalls for good (no progress across round trips) with most of the flood unsent: nobody buffered
    // it on the caller's behalf.
    await settledStall(() => chatSide.stalled, () => chatSide.written);
    expect(received).toBe(1);
    expect(chatSide.written).toBeLessThan(FLOOD_MESSAGES / 2);
    stream.resume();
    expect(await ended).toBeNull();
    expect(received).toBe(FLOOD_MESSAGES);
  });

  it('back-pressure holds the other way: a child that does not read stalls the caller', async () => {
    chatSide.release = null;
    const stream = await chat('admin', 'aurae/web', {});
    const done = outcome(stream);
    stream.write({ mode: 'sink' });
    let sent = 0;
    let stalled = false;
    const payload = 'y'.repeat(FLOOD_BYTES);
    const more = () => {
      stalled = false;
      while (sent < FLOOD_MESSAGES) {
        sent++;
        if (!stream.write({ payload })) {
          stalled = true;
          stream.once('drain', more);
          return;
        }
      }
      stream.end();
    };
    await eventually(() => chatSide.release !== null);
    more();
    await settledStall(() => stalled, () => sent);
    expect(sent).toBeLessThan(FLOOD_MESSAGES / 2);
    expect(chatSide.received).toBe(0);
    chatSide.release!();
    const { messages, err } = await done;
    expect(err).toBeNull();
    expect(messages).toEqual([{ received: FLOOD_MESSAGES }]);
  });

  it('client streaming is forwarded too: the parts go to the child, its answer or status comes back', async () => {
    const upload = async (parts: string[], node?: string) => {
      const client = await rawClient('admin');
      return new Promise<{ err: ServiceError | null; res?: unknown }>((resolve) => {
        const stream = client.makeClientStreamRequest(ChatService.upload.path, json.serialize, json.deserialize, routedTo(node), { deadline: Date.now() + 5000 }, (err, res) => resolve({ err, res }));
        for (const part of parts) stream.write({ part });
        stream.end();
      });
    };
    expect((await upload(['a', 'b', 'c'], 'aurae/web')).res).toEqual({ parts: ['a', 'b', 'c'], on: 'child' });
    expect((await upload([], 'aurae/web')).res).toEqual({ parts: [], on: 'child' });
    expect((await upload(['a'])).res).toEqual({ parts: ['a'], on: 'parent' });
    expect((await upload(['fail'], 'aurae/web')).err).toMatchObject({ code: status.OUT_OF_RANGE, details: 'upload refused on child' });
  });

  it('a forwarded bidi call whose child is down fails with why, audited at the parent', async () => {
    const authz = recordingAuthz('nobody');
    const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
    const down: ChildRouter = { nodePath: 'aurae', clientFor: async (label) => { throw new AuraeError('UNAVAILABLE', `child "aurae/${label}" is crashed, not running`); } };
    const routed = withRouting(ctx, down, ChatService, chatService(ctx, 'parent') as never);
    const metadata = new Metadata();
    metadata.set('aurae-node', 'aurae/db');
    const errors: unknown[] = [];
    const call = Object.assign(new EventEmitter(), {
      metadata,
      cancelled: false,
      getPeer: () => '127.0.0.1:9',
      getAuthContext: () => fakeAuthContext('admin'),
      getDeadline: () => Infinity,
      pause: () => call,
      resume: () => call,
    });
    call.on('error', (e) => errors.push(e));
    (routed.chat as (c: unknown) => void)(call);
    call.emit('data', { mode: 'echo', room: 'db' });
    await eventually(() => errors.length > 0);
    expect(errors).toEqual([{ code: status.UNAVAILABLE, details: 'child "aurae/db" is crashed, not running' }]);
    expect(authz.audits).toEqual([
      { identity: 'admin', method: 'test.v0.ChatService/Chat', code: 'UNAVAILABLE', detail: 'child "aurae/db" is crashed, not running', peer: '127.0.0.1:9', node: 'aurae/db' },
    ]);
  });
});

