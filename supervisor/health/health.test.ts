import { EventEmitter } from 'node:events';
import { type ServerUnaryCall, type ServerWritableStream, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { HealthCheckResponse_ServingStatus as S } from '../gen/grpc/health/v1/health';
import { silentLogger } from '../log';
import { storageHealth } from './storage';
import { HealthRegistry } from './health-registry';
import { HEALTH_LIST_LIMIT, createHealthService } from './health-service';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from '../server/testing';

const ctx = { log: silentLogger, admins: new Set<string>(), authz: fakeAuthorizer(), parentIdentity: null, issuerOf: issuerByName() };
const auth = () => fakeAuthContext('viewer');

function unaryCall<Req>(request: Req) {
  return Object.assign(new EventEmitter(), { request, getPeer: () => 'p', getAuthContext: auth }) as unknown as ServerUnaryCall<Req, never>;
}

function check<Req, Res>(handler: (call: ServerUnaryCall<Req, Res>, cb: (e: unknown, v?: Res | null) => void) => void, request: Req) {
  return new Promise<{ error: unknown; value?: Res | null }>((resolve) => handler(unaryCall(request) as ServerUnaryCall<Req, Res>, (error, value) => resolve({ error, value })));
}

/** A server stream that records writes, end and error, and can be cancelled like a client going away. */
function watchCall(service: string) {
  const writes: number[] = [];
  const events: string[] = [];
  const call = Object.assign(new EventEmitter(), {
    request: { service },
    cancelled: false,
    getPeer: () => 'p',
    getAuthContext: auth,
    write: (m: { status: number }) => (writes.push(m.status), true),
    end: () => void events.push('end'),
  });
  call.on('error', (e: { code: number }) => events.push(`error ${e.code}`));
  const cancel = () => {
    call.cancelled = true;
    call.emit('cancelled');
  };
  return { call: call as unknown as ServerWritableStream<{ service: string }, { status: number }>, writes, events, cancel };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('HealthRegistry', () => {
  it('announces changes only, to the watchers of that service', () => {
    const registry = new HealthRegistry();
    const seen: string[] = [];
    registry.watch('a', { onStatus: (s) => seen.push(`a ${s}`), onClose: () => seen.push('a closed') });
    registry.watch('b', { onStatus: (s) => seen.push(`b ${s}`), onClose: () => seen.push('b closed') });
    registry.set('a', 'NOT_SERVING');
    registry.set('a', 'NOT_SERVING');
    registry.set('a', 'SERVING');
    expect(seen).toEqual(['a NOT_SERVING', 'a SERVING']);
    expect(registry.list()).toEqual([['a', 'SERVING']]);
  });

  it('on shutdown turns everything NOT_SERVING, then closes every watcher and ignores later sets', () => {
    const registry = new HealthRegistry();
    registry.set('', 'SERVING');
    const seen: string[] = [];
    registry.watch('', { onStatus: (s) => seen.push(s), onClose: () => seen.push('closed') });
    registry.shutdown();
    registry.set('', 'SERVING');
    expect(seen).toEqual(['NOT_SERVING', 'closed']);
    expect(registry.get('')).toBe('NOT_SERVING');
    expect(registry.watcherCount()).toBe(0);
  });
});

describe('grpc.health.v1 service', () => {
  it('Check: the status of a known service, NOT_FOUND for an unknown one', async () => {
    const registry = new HealthRegistry();
    registry.set('', 'SERVING');
    registry.set('x.Svc', 'NOT_SERVING');
    const svc = createHealthService(ctx, registry);
    expect(await check(svc.check, { service: '' })).toEqual({ error: null, value: { status: S.SERVING } });
    expect(await check(svc.check, { service: 'x.Svc' })).toEqual({ error: null, value: { status: S.NOT_SERVING } });
    expect((await check(svc.check, { service: 'nope' })).error).toEqual({
      code: status.NOT_FOUND,
      details: 'unknown service "nope": use "" for the whole server',
    });
  });

  it(`List: every service, RESOURCE_EXHAUSTED beyond ${HEALTH_LIST_LIMIT}`, async () => {
    const registry = new HealthRegistry();
    registry.set('', 'SERVING');
    registry.set('x.Svc', 'NOT_SERVING');
    const svc = createHealthService(ctx, registry);
    expect(await check(svc.list, {})).toEqual({ error: null, value: { statuses: { '': { status: S.SERVING }, 'x.Svc': { status: S.NOT_SERVING } } } });
    for (let i = 0; i < HEALTH_LIST_LIMIT; i++) registry.set(`svc${i}`, 'SERVING');
    expect((await check(svc.list, {})).error).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
  });

  it('Watch: current status first, then each change; SERVICE_UNKNOWN until a service appears', async () => {
    const registry = new HealthRegistry();
    registry.set('', 'SERVING');
    const svc = createHealthService(ctx, registry);
    const overall = watchCall('');
    const later = watchCall('late.Svc');
    svc.watch(overall.call);
    svc.watch(later.call);
    await tick();
    registry.set('', 'NOT_SERVING');
    registry.set('', 'SERVING');
    registry.set('late.Svc', 'SERVING');
    expect(overall.writes).toEqual([S.SERVING, S.NOT_SERVING, S.SERVING]);
    expect(later.writes).toEqual([S.SERVICE_UNKNOWN, S.SERVING]);
    expect(overall.events).toEqual([]);
  });

  it('Watch: a cancelled stream unsubscribes; shutdown ends the others with OK after NOT_SERVING', async () => {
    const registry = new HealthRegistry();
    registry.set('', 'SERVING');
    const svc = createHealthService(ctx, registry);
    const a = watchCall('');
    const b = watchCall('');
    svc.watch(a.call);
    svc.watch(b.call);
    await tick();
    expect(registry.watcherCount()).toBe(2);
    a.cancel();
    expect(registry.watcherCount()).toBe(1);
    registry.shutdown();
    expect(a.writes).toEqual([S.SERVING]);
    expect(b.writes).toEqual([S.SERVING, S.NOT_SERVING]);
    expect(b.events).toEqual(['end']);
    expect(registry.watcherCount()).toBe(0);
  });

  it('Watch: rejects absurd service names with INVALID_ARGUMENT', async () => {
    const svc = createHealthService(ctx, new HealthRegistry());
    const w = watchCall('x'.repeat(300));
    svc.watch(w.call);
    await tick();
    expect(w.events).toEqual([`error ${status.INVALID_ARGUMENT}`]);
  });
});

describe('storageHealth', () => {
  it('serves when the state volume is mounted (or RAM by choice) and the database is intact', () => {
    const mounted = JSON.stringify({ state: { device: 'vda2', mounted: true, degraded: null, actions: ['created'] } });
    expect(storageHealth(mounted, ['ok'])).toEqual({ status: 'SERVING', summary: 'state: /dev/vda2 mounted (created this boot); database integrity_check ok' });
    expect(storageHealth(JSON.stringify({ state: { mounted: false, degraded: null } }), ['ok']).status).toBe('SERVING');
    expect(storageHealth(null, ['ok']).status).toBe('SERVING');
  });

  it('is NOT_SERVING when degraded or when the integrity check finds problems', () => {
    const degraded = JSON.stringify({ state: { device: 'vda2', mounted: false, degraded: 'e2fsck could not repair /dev/vda2 (exit 8)' } });
    expect(storageHealth(degraded, ['ok'])).toEqual({ status: 'NOT_SERVING', summary: 'state volume unusable, state is in RAM: e2fsck could not repair /dev/vda2 (exit 8)' });
    expect(storageHealth(null, ['row 3 missing from index x']).summary).toBe('state database integrity_check: row 3 missing from index x');
    expect(storageHealth('{', ['ok']).status).toBe('NOT_SERVING');
  });
});
