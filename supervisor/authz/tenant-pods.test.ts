// A tenant given exactly her own pods, attacked as another tenant would try it, through the real wrappers and the
// real policy (fake grpc-js calls and a fake pod runtime, as tenant-reads.test.ts and pod-service.test.ts): nova,
// allowed PodService on pods "nova-*" (an admin's `aer authz allow nova 'aurae.pods.v0.PodService/*' --pod
// 'nova-*'`), runs, lists, inspects, stops, execs into and removes her pods and gets PERMISSION_DENIED on bob's;
// List shows each tenant only hers; her pods' logs and events come with them; images are shared (Pull, List,
// Inspect) but Remove stays with unscoped rules.
import { EventEmitter } from 'node:events';
import { Metadata, type ServerUnaryCall, type ServerWritableStream, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { formatScope, scopeFromOptions } from '../../aer/cli/authz';
import { parseNodeConfig } from '../config';
import { AuthzServiceService } from '../gen/aurae/authz/v0/authz';
import { ImageServiceService } from '../gen/aurae/images/v0/images';
import { ObserveServiceService } from '../gen/aurae/observe/v0/observe';
import type { Pod } from '../gen/aurae/pods/v0/pods';
import { PodServiceService } from '../gen/aurae/pods/v0/pods';
import { createImageService } from '../images';
import { createLogRing, silentLogger } from '../log';
import { createEventBus } from '../observe/event-bus';
import { createObserveService, eventResource } from '../observe/observe-service';
import { StreamRegistry } from '../observe/streams';
import type { LogStore } from '../observe/types';
import { createPodService } from '../pods';
import type { PodRuntime, PodStatus } from '../pods/runtime';
import type { RpcContext } from '../server';
import { fakeAuthContext, issuerByName } from '../server/testing';
import { type Db, openDatabase } from '../store';
import { createAuthz, methodNames } from './authz';
import { createAuthzService } from './authz-service';
import { createAuthzStore } from './authz-store';
import { decide } from './policy';

const PODS = 'aurae.pods.v0.PodService';
const IMAGES = 'aurae.images.v0.ImageService';
const OBSERVE = 'aurae.observe.v0.ObserveService';
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});

type Reply = { code: number; details?: string; value?: Record<string, unknown> };

function unary(handler: unknown, request: object, cn: string): Promise<Reply> {
  const call = Object.assign(new EventEmitter(), { request, getPeer: () => '127.0.0.1:40000', getAuthContext: () => fakeAuthContext(cn) });
  return new Promise((resolve) =>
    (handler as (c: ServerUnaryCall<never, unknown>, cb: (e: unknown, v?: unknown) => void) => void)(call as never, (err, value) => {
      const e = err as { code: number; details: string } | null;
      resolve(e ? { code: e.code, details: e.details } : { code: status.OK, value: value as Record<string, unknown> });
    }),
  );
}

/** A server stream from `cn`: what it wrote, and OK or the error it ended with. */
function stream(handler: unknown, request: object, cn: string): Promise<Reply & { writes: unknown[] }> {
  const writes: unknown[] = [];
  const call = Object.assign(new EventEmitter(), {
    request,
    cancelled: false,
    getPeer: () => '127.0.0.1:40000',
    getAuthContext: () => fakeAuthContext(cn),
    write: (m: unknown) => (writes.push(m), true),
    end: () => void call.emit('test-end'),
  });
  const done = new Promise<Reply & { writes: unknown[] }>((resolve) => {
    call.on('test-end', () => resolve({ code: status.OK, writes }));
    call.on('error', (e: { code: number; details: string }) => resolve({ code: e.code, details: e.details, writes }));
  });
  (handler as (c: ServerWritableStream<never, unknown>) => void)(call as never);
  return done;
}

/** Exec's first request from `cn` on a duplex call; resolves with the status the call ends with. */
function exec(handler: unknown, pod: string, cn: string): Promise<{ code: number; details: string }> {
  const call = Object.assign(new EventEmitter(), {
    cancelled: false,
    metadata: new Metadata(),
    getPeer: () => '127.0.0.1:40000',
    getAuthContext: () => fakeAuthContext(cn),
    pause: () => {},
    resume: () => {},
    write: () => true,
    end: () => {},
  });
  const done = new Promise<{ code: number; details: string }>((resolve) => call.on('error', (e: { code: number; details: string }) => resolve(e)));
  (handler as (c: unknown) => void)(call);
  setImmediate(() => call.emit('data', { start: { podName: pod, containerName: '', command: ['sh'], env: {}, workingDir: '', user: '', stdin: false } }));
  return done;
}

const pod = (name: string, user = '1000'): Pod => ({
  name,
  sandbox: '',
  containers: [{ name: 'app', image: 'busybox', command: [], args: [], env: {}, workingDir: '', user, readOnlyRootfs: false }],
  env: {},
  restart: '',
  limits: undefined,
  expose: [],
  publish: [],
});

function fakeRuntime() {
  const pods = new Map<string, PodStatus>();
  const calls: string[] = [];
  const status = (spec: PodStatus['spec'], state: PodStatus['state']): PodStatus =>
    ({ name: spec.name, sandbox: 'cell', state, containers: [], createdAt: 1, spec, ip: null }) as PodStatus;
  const runtime: Pick<PodRuntime, 'run' | 'list' | 'get' | 'stop' | 'remove'> = {
    run: async (spec) => {
      calls.push(`run ${spec.name}`);
      pods.set(spec.name, status(spec, 'running'));
      return pods.get(spec.name)!;
    },
    list: () => [...pods.values()],
    get: (name) => pods.get(name),
    stop: async (name) => {
      calls.push(`stop ${name}`);
      return { ...pods.get(name)!, state: 'stopped' };
    },
    remove: async (name) => {
      calls.push(`remove ${name}`);
      pods.delete(name);
    },
  };
  return { runtime, calls };
}

function world() {
  const db = openDatabase(':memory:');
  dbs.push(db);
  const authz = createAuthz({
    admins: ['admin'],
    configRules: [],
    store: createAuthzStore(db, { auditMaxRecords: 1000 }),
    knownMethods: () => methodNames([AuthzServiceService, PodServiceService, ImageServiceService, ObserveServiceService]),
    log: silentLogger,
    nodePath: 'aurae',
  });
  const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
  const admin = createAuthzService(ctx, authz);
  const { runtime, calls } = fakeRuntime();
  const pods = createPodService(ctx, { runtime });
  const stored = { name: 'docker.io/library/busybox', tags: ['1.36'], digest: 'sha256:aa', configDigest: 'sha256:bb', config: {}, layers: [], size: 10, pulledAt: 1 };
  const removed: string[] = [];
  const images = createImageService(ctx, {
    pull: async () => stored as never,
    list: () => [stored as never],
    get: () => stored as never,
    remove: async (ref: string) => (removed.push(ref), { removed: [ref] }) as never,
  });
  const events = createEventBus();
  const logs: Pick<LogStore, 'read' | 'follow'> = { read: async (cell) => [{ time: 't', stream: 'stdout', line: `hello from ${cell}` } as never], follow: () => () => {} };
  const observe = createObserveService(ctx, {
    daemonLog: createLogRing(),
    logs: logs as LogStore,
    events,
    metrics: async () => ({ timestamp: 1, cells: [] }),
    streams: new StreamRegistry(),
    podOf: (cell) => (runtime.get(cell) ? cell : undefined),
  });
  /** What `aer authz allow IDENTITY METHOD --pod …` sends. */
  const allow = (identity: string, method: string, scope: object) => unary(admin.allow, { identity, method, ...scope }, 'admin');
  return { authz, admin, pods, images, observe, events, calls, removed, allow };
}

/** nova on "nova-*" and bob on "bob-*", each with pods, images (scoped like her pods) and her pods' logs and events. */
async function tenants() {
  const w = world();
  for (const [who, prefix, uids] of [['nova', 'nova-*', '1000-1999'], ['bob', 'bob-*', '2000']] as const) {
    expect((await w.allow(who, `${PODS}/*`, { pods: [prefix], uids: [uids] })).code).toBe(status.OK);
    expect((await w.allow(who, `${IMAGES}/*`, { pods: [prefix] })).code).toBe(status.OK);
    expect((await w.allow(who, `${OBSERVE}/*`, { pods: [prefix] })).code).toBe(status.OK);
  }
  return w;
}

describe('a tenant given her own pods ("nova-*")', () => {
  it("runs, inspects, stops and removes her pod; bob's pod is PERMISSION_DENIED at every step, naming the pod and what she may", async () => {
    const w = await tenants();
    expect((await stream(w.pods.run, { pod: pod('nova-web') }, 'nova')).code).toBe(status.OK);
    expect((await stream(w.pods.run, { pod: pod('bob-db', '2000') }, 'bob')).code).toBe(status.OK);

    const theirs = await stream(w.pods.run, { pod: pod('bob-api') }, 'nova');
    expect(theirs).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: `identity "nova" may not call ${PODS}/Run on pod "bob-api": its rules for this method cover only --pod 'nova-*' --uid 1000-1999: an admin can grant it with: aer authz allow nova ${PODS}/Run --pod bob-api`,
    });
    for (const [method, request] of [['inspect', { podName: 'bob-db' }], ['stop', { podName: 'bob-db' }], ['remove', { podName: 'bob-db', force: true }]] as const) {
      const refused = await unary(w.pods[method], request, 'nova');
      expect(refused, method).toMatchObject({ code: status.PERMISSION_DENIED, details: expect.stringContaining(`on pod "bob-db": its rules for this method cover only --pod 'nova-*'`) });
    }
    // Her own: every call goes through; bob's pod was never touched by hers.
    expect((await unary(w.pods.inspect, { podName: 'nova-web' }, 'nova')).value).toMatchObject({ pod: { name: 'nova-web', state: 'running' } });
    expect((await unary(w.pods.stop, { podName: 'nova-web' }, 'nova')).value).toMatchObject({ pod: { name: 'nova-web', state: 'stopped' } });
    expect((await unary(w.pods.remove, { podName: 'nova-web', force: true }, 'nova')).code).toBe(status.OK);
    expect(w.calls).toEqual(['run nova-web', 'run bob-db', 'stop nova-web', 'remove nova-web']);
    // Refusals are audited with the pod they were about.
    expect(w.authz.listAudit({ limit: 100, identity: 'nova', code: 'PERMISSION_DENIED' }).map((r) => r.detail)).toContain('denied: no rule allows it on pod "bob-db" (default deny)');
  });

  it('runs her pods as her uids only: root or another uid is refused even on her own pod names', async () => {
    const w = await tenants();
    const asRoot = await stream(w.pods.run, { pod: pod('nova-web', '') }, 'nova');
    expect(asRoot).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: expect.stringContaining('may not run executables as uid 0 (root) in pod "nova-web": its rules allow only --uid 1000-1999: give the user to run as (a numeric user: aer pod run … --user 1000[:1000])'),
    });
    expect((await stream(w.pods.run, { pod: pod('nova-web', '2000') }, 'nova')).code).toBe(status.PERMISSION_DENIED);
    expect(w.calls).toEqual([]);
  });

  it('List shows each tenant only her pods; the admin sees all', async () => {
    const w = await tenants();
    for (const [name, who, user] of [['nova-web', 'nova', '1000'], ['nova-db', 'nova', '1001'], ['bob-db', 'bob', '2000'], ['novak', 'admin', '']] as const) {
      expect((await stream(w.pods.run, { pod: pod(name, user) }, who)).code).toBe(status.OK);
    }
    const names = async (cn: string) => ((await unary(w.pods.list, {}, cn)).value!.pods as Array<{ name: string }>).map((p) => p.name);
    expect(await names('nova')).toEqual(['nova-db', 'nova-web']); // not "novak": the prefix is "nova-"
    expect(await names('bob')).toEqual(['bob-db']);
    expect(await names('admin')).toEqual(['bob-db', 'nova-db', 'nova-web', 'novak']);
    // A stranger with no pod rule is refused List itself, naming the grant.
    expect(await unary(w.pods.list, {}, 'eve')).toMatchObject({ code: status.PERMISSION_DENIED, details: expect.stringContaining(`aer authz allow eve ${PODS}/List`) });
  });

  it("Exec into bob's pod is PERMISSION_DENIED before anything runs; into hers it passes the policy", async () => {
    const w = await tenants();
    await stream(w.pods.run, { pod: pod('nova-web') }, 'nova');
    await stream(w.pods.run, { pod: pod('bob-db', '2000') }, 'bob');
    expect(await exec(w.pods.exec, 'bob-db', 'nova')).toMatchObject({ code: status.PERMISSION_DENIED, details: expect.stringContaining(`${PODS}/Exec on pod "bob-db"`) });
    // The fake runtime has no exec target: reaching it (UNIMPLEMENTED) means the policy let her through.
    expect(await exec(w.pods.exec, 'nova-web', 'nova')).toMatchObject({ code: status.UNIMPLEMENTED });
  });

  it('a deny naming her pods wins over the allow; a rule on a pod\'s cell still covers that pod', async () => {
    const w = await tenants();
    await stream(w.pods.run, { pod: pod('nova-web') }, 'nova');
    expect((await unary(w.admin.deny, { identity: 'nova', method: `${PODS}/Remove`, pods: ['nova-web'] }, 'admin')).code).toBe(status.OK);
    expect(await unary(w.pods.remove, { podName: 'nova-web', force: true }, 'nova')).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: expect.stringContaining(`denied by the rule deny "${PODS}/Remove" --pod nova-web`),
    });
    expect((await w.allow('carol', `${PODS}/Stop`, { cells: ['nova-web'] })).code).toBe(status.OK);
    expect((await unary(w.pods.stop, { podName: 'nova-web' }, 'carol')).code).toBe(status.OK);
  });
});

describe("her pods' logs and events come with them", () => {
  it("GetLogs of her pod's cell is hers; of bob's pod PERMISSION_DENIED; a plain cell of her prefix is not a pod", async () => {
    const w = await tenants();
    await stream(w.pods.run, { pod: pod('nova-web') }, 'nova');
    await stream(w.pods.run, { pod: pod('bob-db', '2000') }, 'bob');
    const logs = (cell: string) => stream(w.observe.getLogs, { cell, executable: 'app', tail: 10, follow: false }, 'nova');
    expect(await logs('nova-web')).toMatchObject({ code: status.OK, writes: [{ item: { line: 'hello from nova-web' } }] });
    expect(await logs('bob-db')).toMatchObject({ code: status.PERMISSION_DENIED, details: expect.stringContaining('on pod "bob-db"') });
    // No pod "nova-plain" exists: its cell is not covered by a pod rule.
    expect(await logs('nova-plain')).toMatchObject({ code: status.PERMISSION_DENIED, details: expect.stringContaining('on cell "nova-plain"') });
  });

  it("GetEvents shows her only her pods' events (pod events by their pod, the pod cell's other events through the runtime)", async () => {
    const w = await tenants();
    await stream(w.pods.run, { pod: pod('nova-web') }, 'nova');
    await stream(w.pods.run, { pod: pod('bob-db', '2000') }, 'bob');
    w.events.publish({ kind: 'container_started', cell: 'nova-web', pod: 'nova-web', container: 'app', pid: 1 });
    w.events.publish({ kind: 'container_started', cell: 'bob-db', pod: 'bob-db', container: 'app', pid: 2 });
    w.events.publish({ kind: 'executable_started', cell: 'nova-web', executable: 'app', pid: 1 } as never);
    w.events.publish({ kind: 'executable_started', cell: 'bob-db', executable: 'app', pid: 2 } as never);
    const got = await stream(w.observe.getEvents, { sinceSeq: 0n, follow: false, cell: '', vm: '' }, 'nova');
    expect(got.code).toBe(status.OK);
    const text = JSON.stringify(got.writes, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    expect(text).toContain('nova-web');
    expect(text).not.toContain('bob-db');
    expect(got.writes).toHaveLength(2);
    expect(eventResource({ kind: 'container_started', cell: 'x', pod: 'x', container: 'c', pid: 1, seq: 1, time: '' })).toEqual({ cell: 'x', pod: 'x' });
  });
});

describe('images are shared by the node', () => {
  it('a pod-scoped tenant pulls, lists and inspects; Remove needs an unscoped rule and says so; no image rule, no images', async () => {
    const w = await tenants();
    expect((await stream(w.images.pull, { reference: 'busybox:1.36' }, 'nova')).code).toBe(status.OK);
    expect((await unary(w.images.list, {}, 'nova')).value).toMatchObject({ images: [{ name: 'docker.io/library/busybox' }] });
    expect((await unary(w.images.inspect, { reference: 'busybox:1.36' }, 'bob')).code).toBe(status.OK);
    expect(await unary(w.images.remove, { reference: 'busybox:1.36', force: false }, 'nova')).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: `identity "nova" may not call ${IMAGES}/Remove on the node itself: its rules for this method cover only --pod 'nova-*': an admin can grant it with: aer authz allow nova ${IMAGES}/Remove`,
    });
    expect(w.removed).toEqual([]);
    expect((await unary(w.images.list, {}, 'eve')).code).toBe(status.PERMISSION_DENIED);
    // An unscoped rule (the node's image operator) may remove.
    expect((await w.allow('ops', `${IMAGES}/Remove`, {})).code).toBe(status.OK);
    expect((await unary(w.images.remove, { reference: 'busybox:1.36', force: false }, 'ops')).code).toBe(status.OK);
  });

  it('an unscoped deny of a shared method still refuses it', async () => {
    const w = await tenants();
    expect((await unary(w.admin.deny, { identity: 'nova', method: `${IMAGES}/Pull` }, 'admin')).code).toBe(status.OK);
    expect((await stream(w.images.pull, { reference: 'busybox' }, 'nova')).code).toBe(status.PERMISSION_DENIED);
  });
});

describe('pod scopes in rules', () => {
  it('GetPolicy shows the pod scope; a bad pod pattern is INVALID_ARGUMENT naming the field and what is allowed', async () => {
    const w = await tenants();
    const mine = await unary(w.admin.getPolicy, { identity: 'nova' }, 'admin');
    expect(mine.value!.rules).toContainEqual(expect.objectContaining({ method: `${PODS}/*`, pods: ['nova-*'], uids: ['1000-1999'] }));
    for (const bad of ['Nova-*', 'nova/*', '*-web', '']) {
      expect(await w.allow('nova', `${PODS}/*`, { pods: ['ok', bad] }), bad).toEqual({
        code: status.INVALID_ARGUMENT,
        details: expect.stringMatching(/^pods\[1\]: .* is not a pod name pattern: use a pod name \(a DNS label, e\.g\. "web"\), a prefix ending in "\*" \(e\.g\. "nova-\*"\) or "\*"$/),
      });
    }
  });

  it('a rule scoped to pods does not reach cells, VMs or the node', () => {
    const policy = { admins: new Set<string>(), open: [], adminOnly: [], rules: [{ identity: 'nova', effect: 'allow' as const, pattern: '*', source: 'api' as const, scope: { pods: ['nova-*'] } }] };
    expect(decide(policy, 'nova', 'aurae.cells.v0.CellService/Stop', { resource: { cell: 'nova-web' } }).allowed).toBe(false);
    expect(decide(policy, 'nova', 'aurae.vms.v0.VmService/Stop', { resource: { vm: 'nova-web' } }).allowed).toBe(false);
    expect(decide(policy, 'nova', 'aurae.node.v0.NodeService/Reboot', { resource: {} }).allowed).toBe(false);
    expect(decide(policy, 'nova', `${PODS}/Stop`, { resource: { pod: 'nova-web', cell: 'nova-web' } }).allowed).toBe(true);
  });

  it('the node config and the CLI take pod scopes; bad ones name the field', () => {
    const base = { version: 1, node: { name: 'aurae' }, pki: { caCert: '/p/ca.crt', serverCert: '/p/n.crt', serverKey: '/p/n.key' } };
    const config = parseNodeConfig({ ...base, authz: { policy: [{ identity: 'nova', allow: [`${PODS}/*`], pods: ['nova-*'] }] } } as never, 'node.json');
    expect(config.authz.policy[0]).toMatchObject({ identity: 'nova', pods: ['nova-*'] });
    expect(() => parseNodeConfig({ ...base, authz: { policy: [{ identity: 'nova', allow: ['*'], pods: ['Nova'] }] } } as never, 'node.json')).toThrow(
      /authz\.policy\.0\.pods\.0: "Nova" is not a pod name pattern/,
    );
    const scope = scopeFromOptions({ cell: [], vm: [], pod: ['nova-*'], onNode: [], uid: ['1000'], gid: [] });
    expect(scope).toEqual({ pods: ['nova-*'], uids: ['1000'] });
    expect(formatScope(scope)).toBe("--pod 'nova-*' --uid 1000");
  });
});
