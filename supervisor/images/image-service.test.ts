// ImageService handlers over a fake Images core: validation naming the field, credentials never echoed or
// audited, progress thinned and streamed before the image, errors mapped to statuses, node-wide authorization.
import { EventEmitter } from 'node:events';
import { type ServerUnaryCall, type ServerWritableStream, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import type { ImageServiceServer } from '../gen/aurae/images/v0/images';
import { silentLogger } from '../log';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from '../server/testing';
import type { CheckTarget } from '../server';
import { createImageService, imageToProto, progressThrottle, validateAuth, validatePullRequest, validateReference } from './image-service';
import type { ImageRecord, Images, PullOptions, PullProgress } from './types';

const IMAGE: ImageRecord = {
  name: '127.0.0.1:5000/busybox',
  tags: ['latest'],
  digest: `sha256:${'a'.repeat(64)}`,
  configDigest: `sha256:${'b'.repeat(64)}`,
  config: { entrypoint: [], cmd: ['sh'], env: ['PATH=/bin'], workingDir: '', user: '', exposedPorts: ['80/tcp'], labels: { a: 'b' }, stopSignal: '' },
  layers: [{ digest: `sha256:${'c'.repeat(64)}`, size: 1000, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: `sha256:${'d'.repeat(64)}` }],
  size: 1000,
  pulledAt: 1_700_000_000_000,
};

function fakeImages(behaviour: { pull?: (ref: string, opts?: PullOptions) => Promise<ImageRecord> } = {}) {
  const calls: { pull: { ref: string; opts?: PullOptions }[]; removed: { ref: string; force?: boolean }[] } = { pull: [], removed: [] };
  const images: Pick<Images, 'pull' | 'list' | 'get' | 'remove'> = {
    pull: async (ref, opts) => {
      calls.pull.push({ ref, opts });
      return behaviour.pull ? behaviour.pull(ref, opts) : IMAGE;
    },
    list: () => [IMAGE],
    get: (ref) => (ref === 'busybox' || ref === IMAGE.digest ? IMAGE : undefined),
    remove: async (ref, opts) => {
      calls.removed.push({ ref, force: opts?.force });
      if (ref === 'busy' && !opts?.force) throw new AuraeError('FAILED_PRECONDITION', 'image busy: in use by pod web: stop it first, or remove with force');
      return { removed: [`${ref}:latest`] };
    },
  };
  return { images, calls };
}

function setup(options: { allows?: (method: string, target?: CheckTarget) => boolean; pull?: (ref: string, opts?: PullOptions) => Promise<ImageRecord>; clock?: () => number } = {}) {
  const authz = fakeAuthorizer((_caller, method, target) => options.allows?.(method, target) ?? true);
  const ctx = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
  const { images, calls } = fakeImages({ pull: options.pull });
  const svc: ImageServiceServer = createImageService(ctx, images, options.clock);
  return { svc, calls, authz };
}

function unaryCall<Req, Res>(handler: (call: ServerUnaryCall<Req, Res>, cb: (e: unknown, v?: Res | null) => void) => void, request: Req, cn = 'admin') {
  const call = Object.assign(new EventEmitter(), { request, getPeer: () => 'p', getAuthContext: () => fakeAuthContext(cn) }) as unknown as ServerUnaryCall<Req, Res>;
  return new Promise<{ error: { code?: number; details?: string } | null; value?: Res | null }>((resolve) =>
    handler(call, (error, value) => resolve({ error: error as { code?: number; details?: string } | null, value })),
  );
}

/** A server stream recording writes; resolves when it ended or failed. */
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
  return { writes, done, cancel: () => ((call.cancelled = true), call.emit('cancelled')) };
}

describe('image request validation', () => {
  it.each([
    ['', 'reference: required: an image reference'],
    ['busy box', 'reference: spaces, control and non-ASCII characters are not allowed'],
    ['bus\u00e9', 'reference: spaces, control and non-ASCII characters are not allowed'],
    ['a'.repeat(513), 'reference: too long: at most 512 characters (got 513)'],
  ])('refuses reference %j', (ref, message) => {
    expect(() => validateReference('reference', ref)).toThrow(message);
  });

  it('keeps a good reference', () => {
    expect(validateReference('reference', '127.0.0.1:5000/busybox@sha256:' + 'a'.repeat(64))).toContain('busybox@sha256');
  });

  it('takes username + password, or a registry token, and drops empty auth', () => {
    expect(validateAuth('auth', undefined)).toBeUndefined();
    expect(validateAuth('auth', { username: '', password: '', registryToken: '' })).toBeUndefined();
    expect(validateAuth('auth', { username: 'u', password: 'p w', registryToken: '' })).toEqual({ username: 'u', password: 'p w' });
    expect(validateAuth('auth', { username: '', password: '', registryToken: 'tok.en' })).toEqual({ registryToken: 'tok.en' });
  });

  it.each([
    [{ username: 'u', password: '', registryToken: '' }, 'auth.password: required with the other'],
    [{ username: '', password: 'secret-pw', registryToken: '' }, 'auth.username: required with the other'],
    [{ username: 'a:b', password: 'p', registryToken: '' }, 'auth.username: must not contain ":"'],
    [{ username: 'u', password: 'sec\nret', registryToken: '' }, 'auth.password: NUL, CR and LF are not allowed'],
    [{ username: '', password: '', registryToken: 'has space' }, 'auth.registry_token: printable ASCII without spaces only'],
  ])('refuses auth %j naming the field, never the secret', (auth, message) => {
    let error: Error | undefined;
    try {
      validateAuth('auth', auth);
    } catch (err) {
      error = err as Error;
    }
    expect(error?.message).toContain(message);
    expect(error?.message).not.toContain('secret');
    expect((error as AuraeError).code).toBe('INVALID_ARGUMENT');
  });

  it('a pull request without auth has no auth field', () => {
    expect(validatePullRequest({ reference: 'busybox' })).toEqual({ reference: 'busybox' });
  });
});

describe('progressThrottle', () => {
  it('passes state changes and finished layers, thins byte counts to one per interval per layer', () => {
    let now = 0;
    const sent: PullProgress[] = [];
    const report = progressThrottle(() => now, (p: PullProgress) => sent.push(p));
    const p = (layer: string, done: number, state: PullProgress['state'] = 'downloading'): PullProgress => ({ layer, done, total: 100, state });
    report(p('a', 0));
    report(p('a', 10)); // same tick: dropped
    report(p('b', 5)); // another layer: passes
    now = 199;
    report(p('a', 20)); // too soon: dropped
    now = 200;
    report(p('a', 30));
    report(p('a', 100)); // the last bytes always pass
    report(p('a', 100, 'unpacking'));
    report(p('a', 100, 'done'));
    expect(sent.map((x) => `${x.layer}:${x.done}:${x.state}`)).toEqual(['a:0:downloading', 'b:5:downloading', 'a:30:downloading', 'a:100:downloading', 'a:100:unpacking', 'a:100:done']);
  });
});

describe('ImageService', () => {
  it('Pull streams progress, then the image, and hands the credentials to the core only', async () => {
    const { svc, calls, authz } = setup({
      pull: async (_ref, opts) => {
        opts?.onProgress?.({ layer: 'sha256:l1', done: 0, total: 10, state: 'downloading' });
        opts?.onProgress?.({ layer: 'sha256:l1', done: 10, total: 10, state: 'done' });
        return IMAGE;
      },
    });
    const { writes, done } = streamCall(svc.pull as never, { reference: 'busybox', auth: { username: 'alice', password: 'hunter2', registryToken: '' } });
    expect((await done).error).toBeNull();
    expect(writes).toEqual([
      { progress: { layer: 'sha256:l1', done: 0n, total: 10n, state: 'downloading' } },
      { progress: { layer: 'sha256:l1', done: 10n, total: 10n, state: 'done' } },
      { image: imageToProto(IMAGE) },
    ]);
    expect(calls.pull[0]!.opts?.auth).toEqual({ username: 'alice', password: 'hunter2' });
    expect(calls.pull[0]!.opts?.signal).toBeInstanceOf(AbortSignal);
    // The audit row is written once run() resolved, just after the stream ended.
    await expect.poll(() => authz.audits.length).toBe(1);
    expect(JSON.stringify(authz.audits)).not.toContain('hunter2');
    expect(authz.audits).toMatchObject([{ method: 'aurae.images.v0.ImageService/Pull', code: 'OK', detail: 'busybox' }]);
  });

  it('Pull maps a core error to its status and audits it without the credentials', async () => {
    const { svc, authz } = setup({
      pull: async () => {
        throw new AuraeError('UNAUTHENTICATED', 'pulling 127.0.0.1:5000/private: the registry refused the credentials: check the username and password');
      },
    });
    const { done } = streamCall(svc.pull as never, { reference: '127.0.0.1:5000/private', auth: { username: 'bob', password: 'topsecret', registryToken: '' } });
    const { error } = await done;
    expect(error?.code).toBe(status.UNAUTHENTICATED);
    expect(error?.details).toContain('refused the credentials');
    await expect.poll(() => authz.audits.length).toBe(1);
    expect(JSON.stringify(authz.audits)).not.toContain('topsecret');
  });

  it('Pull aborts the core pull when the client cancels', async () => {
    let signal: AbortSignal | undefined;
    let release = () => {};
    const { svc } = setup({
      pull: (_ref, opts) => {
        signal = opts?.signal;
        return new Promise<ImageRecord>((resolve) => (release = () => resolve(IMAGE)));
      },
    });
    const { writes, cancel } = streamCall(svc.pull as never, { reference: 'busybox' });
    await expect.poll(() => signal).toBeDefined();
    cancel();
    expect(signal!.aborted).toBe(true);
    release();
    await expect.poll(() => writes.length).toBe(0);
  });

  it('Pull refuses a bad reference before calling the core', async () => {
    const { svc, calls } = setup();
    const { done } = streamCall(svc.pull as never, { reference: '' });
    const { error } = await done;
    expect(error?.code).toBe(status.INVALID_ARGUMENT);
    expect(error?.details).toMatch(/^reference: required/);
    expect(calls.pull).toHaveLength(0);
  });

  it('List and Inspect return the stored images; Inspect of an unknown one is NOT_FOUND with what to do', async () => {
    const { svc } = setup();
    expect((await unaryCall(svc.list as never, {})).value).toEqual({ images: [imageToProto(IMAGE)] });
    expect((await unaryCall(svc.inspect as never, { reference: IMAGE.digest })).value).toEqual({ image: imageToProto(IMAGE) });
    const missing = await unaryCall(svc.inspect as never, { reference: 'nginx' });
    expect(missing.error?.code).toBe(status.NOT_FOUND);
    expect(missing.error?.details).toContain('aer image pull nginx');
  });

  it('Remove passes force and maps in-use to FAILED_PRECONDITION', async () => {
    const { svc, calls } = setup();
    expect((await unaryCall(svc.remove as never, { reference: 'busybox', force: false })).value).toEqual({ removed: ['busybox:latest'] });
    expect((await unaryCall(svc.remove as never, { reference: 'busy', force: false })).error?.code).toBe(status.FAILED_PRECONDITION);
    expect((await unaryCall(svc.remove as never, { reference: 'busy', force: true })).error).toBeNull();
    expect(calls.removed).toEqual([
      { ref: 'busybox', force: false },
      { ref: 'busy', force: false },
      { ref: 'busy', force: true },
    ]);
  });

  it('List, Inspect and Pull are shared (the method-level check only: images serve every pod); Remove is on the node itself', async () => {
    const targets: (CheckTarget | undefined)[] = [];
    const { svc } = setup({ allows: (_m, t) => (targets.push(t), true) });
    await unaryCall(svc.list as never, {}, 'viewer');
    expect(targets).toEqual([{ resource: null }]);
    targets.length = 0;
    await unaryCall(svc.remove as never, { reference: 'busybox', force: false }, 'viewer');
    expect(targets).toEqual([{ resource: null }, { resource: {} }]);
  });

  it('a caller the policy refuses gets PERMISSION_DENIED and the core is not called', async () => {
    const { svc, calls } = setup({ allows: (method) => !method.endsWith('/Pull') });
    const { done } = streamCall(svc.pull as never, { reference: 'busybox' }, 'tenant');
    expect((await done).error?.code).toBe(status.PERMISSION_DENIED);
    expect(calls.pull).toHaveLength(0);
  });
});
