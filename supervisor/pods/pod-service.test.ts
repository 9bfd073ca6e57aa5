// PodService handlers over a fake PodRuntime (the real validatePodSpec): validation naming the field, Run's
// stream (pull progress, then the status), credentials used for pre-pulls only, the pod's cell as the
// authorization resource (tenants scoped to a pod see and touch only it), errors mapped to statuses.
import { EventEmitter } from 'node:events';
import { type ServerUnaryCall, type ServerWritableStream, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import type { Pod, PodServiceServer } from '../gen/aurae/pods/v0/pods';
import type { PullOptions } from '../images';
import { silentLogger } from '../log';
import type { CheckTarget } from '../server';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from '../server/testing';
import { type ConfigRule, createAuthz, createAuthzStore } from '../authz';
import { openDatabase } from '../store';
import { createPodService, podRunAs, podStatusToProto, validateExpose, validateRunRequest } from './pod-service';
import type { PodRuntime, PodStatus } from './runtime';
import type { PodSpec } from './spec';

const container = (over: Partial<Pod['containers'][number]> = {}): Pod['containers'][number] => ({
  name: 'app',
  image: 'busybox',
  command: [],
  args: [],
  env: {},
  workingDir: '',
  user: '',
  readOnlyRootfs: false,
  ...over,
});
const podMsg = (over: Partial<Pod> = {}): Pod => ({ name: 'web', sandbox: '', containers: [container()], env: {}, restart: '', limits: undefined, expose: [], publish: [], ...over });

function statusOf(spec: PodSpec, state: PodStatus['state'] = 'running'): PodStatus {
  return {
    name: spec.name,
    sandbox: 'cell',
    state,
    containers: spec.containers.map((c) => ({ name: c.name, image: c.image, imageDigest: 'sha256:abc', state: 'running', pid: 42, exit: null, restarts: 0 })),
    createdAt: 1_700_000_000_000,
    spec,
  };
}

function fakeRuntime() {
  const pods = new Map<string, PodStatus>();
  const calls: string[] = [];
  const runtime: Pick<PodRuntime, 'run' | 'list' | 'get' | 'stop' | 'remove'> = {
    run: async (spec, opts) => {
      calls.push(`run ${spec.name}`);
      if (pods.has(spec.name)) throw new AuraeError('ALREADY_EXISTS', `pod "${spec.name}" already exists: remove it first`);
      opts?.onProgress?.({ image: spec.containers[0]!.image, layer: 'sha256:l1', done: 5, total: 5, state: 'done' });
      const s = statusOf(spec);
      pods.set(spec.name, s);
      return s;
    },
    list: () => [...pods.values()],
    get: (name) => pods.get(name),
    stop: async (name, graceMs) => {
      calls.push(`stop ${name} ${graceMs}`);
      const s = pods.get(name);
      if (!s) throw new AuraeError('NOT_FOUND', `pod "${name}" does not exist`);
      return { ...s, state: 'stopped' };
    },
    remove: async (name, { force }) => {
      calls.push(`remove ${name} ${force}`);
      if (!pods.delete(name)) throw new AuraeError('NOT_FOUND', `pod "${name}" does not exist`);
    },
  };
  return { runtime, pods, calls };
}

function setup(options: { allows?: (identity: string, method: string, target?: CheckTarget) => boolean; withImages?: boolean } = {}) {
  const authz = fakeAuthorizer((caller, method, target) => options.allows?.(caller.identity, method, target) ?? true);
  const ctx = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
  const { runtime, pods, calls } = fakeRuntime();
  const pulls: { ref: string; opts?: PullOptions }[] = [];
  const images = {
    pull: async (ref: string, opts?: PullOptions) => {
      pulls.push({ ref, opts });
      opts?.onProgress?.({ layer: 'sha256:l0', done: 1, total: 1, state: 'done' });
      return {} as never;
    },
  };
  const svc: PodServiceServer = createPodService(ctx, { runtime, ...(options.withImages ? { images } : {}) });
  return { svc, pods, calls, pulls, authz };
}

function unaryCall<Req, Res>(handler: (call: ServerUnaryCall<Req, Res>, cb: (e: unknown, v?: Res | null) => void) => void, request: Req, cn = 'admin') {
  const call = Object.assign(new EventEmitter(), { request, getPeer: () => 'p', getAuthContext: () => fakeAuthContext(cn) }) as unknown as ServerUnaryCall<Req, Res>;
  return new Promise<{ error: { code?: number; details?: string } | null; value?: Res | null }>((resolve) =>
    handler(call, (error, value) => resolve({ error: error as { code?: number; details?: string } | null, value })),
  );
}

function streamCall<Req>(handler: (call: ServerWritableStream<Req, unknown>) => void, request: Req, cn = 'admin') {
  const writes: unknown[] = [];
  const call = Object.assign(new EventEmitter(), {
    request,
    cancelled: false,
    getPeer: () => 'p',
    getAuthContext: () => fakeAuthContext(cn),
    write: (m: unknown) => (writes.push(m), true),
    end: () => void call.emit('test-end'),
  });
  const done = new Promise<{ error: { code: number; details: string } | null }>((resolve) => {
    call.on('test-end', () => resolve({ error: null }));
    call.on('error', (e: { code: number; details: string }) => resolve({ error: e }));
  });
  handler(call as unknown as ServerWritableStream<Req, unknown>);
  return { writes, done };
}

describe('Run request validation', () => {
  it.each([
    [{}, 'pod: required'],
    [{ pod: podMsg({ name: 'Web' }) }, 'pod.name: "Web" is not a DNS label'],
    [{ pod: podMsg({ containers: [] }) }, 'pod.containers: required: at least one container'],
    [{ pod: podMsg({ containers: [container({ image: '' })] }) }, 'pod.containers[0].image: required'],
    [{ pod: podMsg({ restart: 'sometimes' }) }, 'pod.restart: "sometimes" is not a restart policy'],
    [{ pod: podMsg({ expose: [80, 0] }) }, 'pod.expose[1]: 0 is out of range: allowed 1..65535'],
    [{ pod: podMsg({ expose: [80, 80] }) }, 'pod.expose[1]: port 80 is listed twice'],
    [{ pod: podMsg({ publish: [{ nodePort: 0, podPort: 80, protocol: '' }] }) }, 'pod.publish[0].node_port: 0 is out of range: allowed 1..65535'],
    [{ pod: podMsg({ publish: [{ nodePort: 80, podPort: 70000, protocol: '' }] }) }, 'pod.publish[0].pod_port: 70000 is out of range: allowed 1..65535'],
    [{ pod: podMsg({ publish: [{ nodePort: 80, podPort: 80, protocol: 'sctp' }] }) }, 'pod.publish[0].protocol: "sctp" is not a protocol: "tcp" (the default) or "udp"'],
    [
      { pod: podMsg({ publish: [{ nodePort: 80, podPort: 80, protocol: 'tcp' }, { nodePort: 80, podPort: 81, protocol: '' }] }) },
      'pod.publish[1].node_port: node port 80/tcp is published twice',
    ],
    [{ pod: podMsg(), auth: { username: 'u', password: '', registryToken: '' } }, 'auth.password: required with the other'],
  ])('%j → %s', (request, message) => {
    expect(() => validateRunRequest(request)).toThrow(message);
  });

  it('a vm sandbox is valid (the runtime runs it in a child VM)', () => {
    expect(validateRunRequest({ pod: podMsg({ sandbox: 'vm' }) }).spec.sandbox).toBe('vm');
    expect(() => validateRunRequest({ pod: podMsg({ sandbox: 'vm', publish: [{ nodePort: 80, podPort: 80, protocol: '' }] }) })).toThrow('publish: publishing ports of a "vm" sandbox pod is not implemented yet');
  });

  it('records exposed ports sorted, and keeps the spec otherwise as the runtime validated it', () => {
    const { spec, auth } = validateRunRequest({ pod: podMsg({ expose: [8080, 80], env: { key: 'value' } }) });
    expect(spec.expose).toEqual([80, 8080]);
    expect(spec.env).toEqual({ key: 'value' });
    expect(spec.containers[0]).toMatchObject({ name: 'app', image: 'busybox', command: null, args: null });
    expect(auth).toBeUndefined();
    expect(validateExpose('expose', undefined)).toEqual([]);
  });

  it('runs as root unless every container names the same numeric user', () => {
    const spec = (users: (string | null)[]) => ({ containers: users.map((user) => ({ user })) }) as unknown as PodSpec;
    expect(podRunAs(spec([null]))).toEqual({ uid: 0, gid: 0 });
    expect(podRunAs(spec(['1000']))).toEqual({ uid: 1000, gid: 1000 });
    expect(podRunAs(spec(['1000:50', '1000:50']))).toEqual({ uid: 1000, gid: 50 });
    expect(podRunAs(spec(['1000', '1001']))).toEqual({ uid: 0, gid: 0 });
    expect(podRunAs(spec(['www-data']))).toEqual({ uid: 0, gid: 0 });
  });
});

describe('PodService', () => {
  it('Run streams pull progress then the status, and audits a summary without credentials', async () => {
    const { svc, authz } = setup();
    const { writes, done } = streamCall(svc.run as never, { pod: podMsg({ expose: [80] }) });
    expect((await done).error).toBeNull();
    expect(writes[0]).toEqual({ pull: { image: 'busybox', progress: { layer: 'sha256:l1', done: 5n, total: 5n, state: 'done' } } });
    const last = writes[1] as { status: ReturnType<typeof podStatusToProto> };
    expect(last.status).toMatchObject({ name: 'web', sandbox: 'cell', state: 'running', createdAt: 1_700_000_000_000n });
    expect(last.status.containers[0]).toMatchObject({ name: 'app', state: 'running', pid: 42, imageDigest: 'sha256:abc' });
    expect(last.status.spec).toMatchObject({ name: 'web', restart: 'never', expose: [80], containers: [{ name: 'app', image: 'busybox', command: [], workingDir: '' }] });
    await expect.poll(() => authz.audits.length).toBe(1);
    expect(authz.audits[0]).toMatchObject({ method: 'aurae.pods.v0.PodService/Run', code: 'OK', detail: 'web: app=busybox' });
  });

  it('Run with credentials pulls each image once with them first, never audits them', async () => {
    const { svc, pulls, authz } = setup({ withImages: true });
    const pod = podMsg({ containers: [container(), container({ name: 'two' })] });
    const { writes, done } = streamCall(svc.run as never, { pod, auth: { username: 'alice', password: 's3cret', registryToken: '' } });
    expect((await done).error).toBeNull();
    expect(pulls.map((p) => [p.ref, p.opts?.auth])).toEqual([['busybox', { username: 'alice', password: 's3cret' }]]);
    expect(writes[0]).toMatchObject({ pull: { image: 'busybox', progress: { layer: 'sha256:l0' } } });
    await expect.poll(() => authz.audits.length).toBe(1);
    expect(JSON.stringify(authz.audits)).not.toContain('s3cret');
  });

  it('Run of a taken name is ALREADY_EXISTS; a bad spec is INVALID_ARGUMENT before the runtime is called', async () => {
    const { svc, calls } = setup();
    expect((await streamCall(svc.run as never, { pod: podMsg() }).done).error).toBeNull();
    const again = await streamCall(svc.run as never, { pod: podMsg() }).done;
    expect(again.error?.code).toBe(status.ALREADY_EXISTS);
    const bad = await streamCall(svc.run as never, { pod: podMsg({ name: '' }) }).done;
    expect(bad.error?.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.error?.details).toMatch(/^pod\.name: /);
    expect(calls).toEqual(['run web', 'run web']);
  });

  it('Inspect, Stop and Remove name the pod; unknown pods are NOT_FOUND', async () => {
    const { svc, calls } = setup();
    await streamCall(svc.run as never, { pod: podMsg() }).done;
    expect((await unaryCall(svc.inspect as never, { podName: 'web' })).value).toMatchObject({ pod: { name: 'web', state: 'running' } });
    const missing = await unaryCall(svc.inspect as never, { podName: 'nope' });
    expect(missing.error?.code).toBe(status.NOT_FOUND);
    expect(missing.error?.details).toContain('aer pod run nope');
    expect((await unaryCall(svc.inspect as never, { podName: '' })).error?.details).toMatch(/^pod_name: /);
    expect((await unaryCall(svc.stop as never, { podName: 'web' })).value).toMatchObject({ pod: { state: 'stopped' } });
    expect((await unaryCall(svc.stop as never, { podName: 'web', gracePeriodMs: 2000 })).error).toBeNull();
    expect((await unaryCall(svc.stop as never, { podName: 'web', gracePeriodMs: 300_001 })).error?.details).toMatch(/^grace_period_ms: 300001 is out of range/);
    expect((await unaryCall(svc.remove as never, { podName: 'web', force: true })).value).toEqual({});
    expect(calls).toEqual(['run web', 'stop web 10000', 'stop web 2000', 'remove web true']);
  });

  it('a tenant scoped to one pod (its cell) sees only that pod and cannot stop another', async () => {
    // The policy under test: "tenant" may use PodService on cell "web" only (admin: everything).
    const allows = (identity: string, _method: string, target?: CheckTarget) =>
      identity === 'admin' || target?.resource === null || target?.resource?.cell === 'web';
    const { svc } = setup({ allows });
    await streamCall(svc.run as never, { pod: podMsg() }).done;
    await streamCall(svc.run as never, { pod: podMsg({ name: 'db' }) }).done;
    const listed = await unaryCall(svc.list as never, {}, 'tenant');
    expect((listed.value as { pods: { name: string }[] }).pods.map((p) => p.name)).toEqual(['web']);
    expect((await unaryCall(svc.stop as never, { podName: 'db' }, 'tenant')).error?.code).toBe(status.PERMISSION_DENIED);
    expect((await unaryCall(svc.stop as never, { podName: 'web' }, 'tenant')).error).toBeNull();
    const admin = await unaryCall(svc.list as never, {}, 'admin');
    expect((admin.value as { pods: { name: string }[] }).pods.map((p) => p.name)).toEqual(['db', 'web']);
  });

  it('Run declares the pod cell and who its containers run as', async () => {
    const targets: (CheckTarget | undefined)[] = [];
    const { svc } = setup({ allows: (_i, _m, t) => (targets.push(t), true) });
    await streamCall(svc.run as never, { pod: podMsg({ containers: [container({ user: '1000' })] }) }, 'tenant').done;
    expect(targets).toContainEqual({ resource: { pod: 'web', cell: 'web', runAs: { uid: 1000, gid: 1000 } } });
  });
});

describe('PodService under the real policy', () => {
  function world(rules: ConfigRule[]) {
    const db = openDatabase(':memory:');
    const authz = createAuthz({ admins: ['admin'], configRules: rules, store: createAuthzStore(db, { auditMaxRecords: 100 }), log: silentLogger, nodePath: 'aurae' });
    const ctx = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
    const { runtime } = fakeRuntime();
    return { svc: createPodService(ctx, { runtime }), close: () => db.close() };
  }

  it('a tenant allowed cell "web" with uids 1000-1999 runs pod web as 1000, not as root, and not pod db; sees only web', async () => {
    const { svc, close } = world([{ identity: 'nova', allow: ['aurae.pods.v0.PodService/*'], deny: [], cells: ['web'], uids: ['1000-1999'] }]);
    try {
      const asRoot = await streamCall(svc.run as never, { pod: podMsg() }, 'nova').done;
      expect(asRoot.error?.code).toBe(status.PERMISSION_DENIED);
      const other = await streamCall(svc.run as never, { pod: podMsg({ name: 'db', containers: [container({ user: '1000' })] }) }, 'nova').done;
      expect(other.error?.code).toBe(status.PERMISSION_DENIED);
      expect((await streamCall(svc.run as never, { pod: podMsg({ containers: [container({ user: '1000' })] }) }, 'nova').done).error).toBeNull();
      expect((await streamCall(svc.run as never, { pod: podMsg({ name: 'db' }) }, 'admin').done).error).toBeNull();
      const listed = await unaryCall(svc.list as never, {}, 'nova');
      expect((listed.value as { pods: { name: string }[] }).pods.map((p) => p.name)).toEqual(['web']);
      expect((await unaryCall(svc.remove as never, { podName: 'db', force: true }, 'nova')).error?.code).toBe(status.PERMISSION_DENIED);
      expect((await unaryCall(svc.remove as never, { podName: 'web', force: true }, 'nova')).error).toBeNull();
    } finally {
      close();
    }
  });
});
