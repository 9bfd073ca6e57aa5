import { type ServerUnaryCall, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { type LogFields, type Logger, createJsonLogger } from '../log';
import { callerFromCall } from './caller';
import { type AuditEvent, type Authorizer, serverStream, unary } from './rpc';
import { toGrpcError } from './status';
import { fakeAuthorizer, issuerByName, fakeUnaryCall } from './testing';

/** The identity parts of an RpcContext on a node that was not spawned. */
const identity = { parentIdentity: null, issuerOf: issuerByName() };

function memoryLogger(): { log: Logger; records: Array<LogFields> } {
  const records: LogFields[] = [];
  return { log: createJsonLogger({ subsystem: 'test', write: (line) => void records.push(JSON.parse(line)) }), records };
}

/** A grpc-js unary call as the handler sees it, with a peer certificate CN (or none). */

function invoke<Req, Res>(handler: ReturnType<typeof unary<Req, unknown, Res>>, call: ServerUnaryCall<Req, Res>) {
  return new Promise<{ error: { code?: number; details?: string } | null; value?: Res }>((resolve) => {
    handler(call, (error, value) => resolve({ error: error as { code?: number; details?: string } | null, value: value ?? undefined }));
  });
}

describe('toGrpcError', () => {
  it('maps each AuraeError code to the gRPC status of the same name and keeps the message', () => {
    const { log, records } = memoryLogger();
    for (const code of ['INVALID_ARGUMENT', 'NOT_FOUND', 'FAILED_PRECONDITION', 'PERMISSION_DENIED', 'UNAVAILABLE'] as const) {
      expect(toGrpcError(new AuraeError(code, `why ${code}`), log, { method: 'm' })).toEqual({ code: status[code], details: `why ${code}` });
    }
    expect(records).toEqual([]);
  });

  it('turns anything else into INTERNAL without leaking it, and logs it', () => {
    const { log, records } = memoryLogger();
    const mapped = toGrpcError(new TypeError('x is undefined'), log, { method: 'a.B/C', caller: 'admin' });
    expect(mapped).toEqual({ code: status.INTERNAL, details: 'internal error in auraed while handling a.B/C: see the auraed log on the node' });
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: 'error', method: 'a.B/C', caller: 'admin', err: { name: 'TypeError', message: 'x is undefined' } });
  });
});

describe('callerFromCall', () => {
  it('takes the identity from the verified certificate CN and checks it against the admins', () => {
    expect(callerFromCall(fakeUnaryCall({}, 'admin'), new Set(['admin']), null, issuerByName())).toEqual({ identity: 'admin', peer: '127.0.0.1:40000', admin: true });
    expect(callerFromCall(fakeUnaryCall({}, 'viewer'), new Set(['admin']), null, issuerByName()).admin).toBe(false);
  });

  it('refuses calls without a certificate or with several CNs', () => {
    expect(() => callerFromCall(fakeUnaryCall({}), new Set(), null, issuerByName())).toThrow(/no verified client certificate/);
    expect(() => callerFromCall(fakeUnaryCall({}, ['a', 'b']), new Set(), null, issuerByName())).toThrow(/2 common names/);
  });
});

describe('unary', () => {
  const spec = (run: () => unknown) => ({
    method: 'test.Svc/Do',
    access: 'admin' as const,
    validate: (req: { n: number }) => {
      if (req.n < 0) throw new AuraeError('INVALID_ARGUMENT', 'n: must be >= 0');
      return req.n;
    },
    run: async (n: number) => ({ doubled: n * 2, extra: run() }),
  });

  it('runs validate → core and logs the mutating call with the caller', async () => {
    const { log, records } = memoryLogger();
    const handler = unary({ log, admins: new Set(['admin']), authz: fakeAuthorizer(), ...identity }, spec(() => 'ok'));
    const result = await invoke(handler, fakeUnaryCall({ n: 21 }, 'admin'));
    expect(result).toEqual({ error: null, value: { doubled: 42, extra: 'ok' } });
    expect(records).toEqual([expect.objectContaining({ msg: 'rpc', method: 'test.Svc/Do', caller: 'admin', peer: '127.0.0.1:40000' })]);
  });

  it('maps validation failures to INVALID_ARGUMENT and core bugs to INTERNAL', async () => {
    const { log } = memoryLogger();
    const bad = await invoke(unary({ log, admins: new Set(['admin']), authz: fakeAuthorizer(), ...identity }, spec(() => 1)), fakeUnaryCall({ n: -1 }, 'admin'));
    expect(bad.error).toEqual({ code: status.INVALID_ARGUMENT, details: 'n: must be >= 0' });
    const boom = await invoke(
      unary({ log, admins: new Set(['admin']), authz: fakeAuthorizer(), ...identity }, spec(() => { throw new Error('boom'); })),
      fakeUnaryCall({ n: 1 }, 'admin'),
    );
    expect(boom.error?.code).toBe(status.INTERNAL);
  });
});

describe('wrappers with an Authorizer (the policy)', () => {
  /** A fake policy: `allowed` lists "identity method" pairs; every audit event is recorded. */
  function fakeAuthz(allowed: string[]): Authorizer & { events: AuditEvent[]; checks: string[] } {
    const events: AuditEvent[] = [];
    const checks: string[] = [];
    return {
      events,
      checks,
      check: (caller, method, target) => {
        // The method-level check (resource null) first, then the handler's resource after validation.
        checks.push(`${caller.identity} ${method}${target?.resource ? ` ${JSON.stringify(target.resource)}` : ''}`);
        return allowed.includes(`${caller.identity} ${method}`) ? null : { message: `no: ${caller.identity} ${method}`, detail: 'denied by fake' };
      },
      audit: (event) => void events.push(event),
    };
  }
  const spec = (over: Record<string, unknown> = {}) => ({
    method: 'test.Svc/Do',
    access: 'admin' as const,
    validate: (req: { n: number }) => {
      if (req.n < 0) throw new AuraeError('INVALID_ARGUMENT', 'n: must be >= 0');
      return req.n;
    },
    run: async (n: number) => {
      if (n === 13) throw new AuraeError('FAILED_PRECONDITION', 'unlucky\nnumber');
      if (n === 666) throw new Error('secret internals');
      return { doubled: n * 2 };
    },
    ...over,
  });

  it('asks the policy for every call, even admins and read methods (the policy decides, not the access level)', async () => {
    const { log } = memoryLogger();
    const authz = fakeAuthz(['admin test.Svc/Do']);
    const ctx = { log, admins: new Set(['admin']), authz, ...identity };
    expect((await invoke(unary(ctx, spec()), fakeUnaryCall({ n: 1 }, 'admin'))).error).toBeNull();
    const read = await invoke(unary(ctx, spec({ access: 'read' })), fakeUnaryCall({ n: 1 }, 'viewer'));
    expect(read.error).toEqual({ code: status.PERMISSION_DENIED, details: 'no: viewer test.Svc/Do' });
    expect(authz.checks).toEqual(['admin test.Svc/Do', 'admin test.Svc/Do {}', 'viewer test.Svc/Do']);
  });

  it('audits mutating calls with their outcome, and every denial; reads that pass leave no row', async () => {
    const { log, records } = memoryLogger();
    const authz = fakeAuthz(['admin test.Svc/Do', 'viewer test.Svc/Read']);
    const ctx = { log, admins: new Set(['admin']), authz, ...identity };
    const mutating = unary(ctx, spec({ summary: (n: number) => `n=${n}` }));
    await invoke(mutating, fakeUnaryCall({ n: 2 }, 'admin'));
    await invoke(mutating, fakeUnaryCall({ n: -1 }, 'admin'));
    await invoke(mutating, fakeUnaryCall({ n: 13 }, 'admin'));
    await invoke(mutating, fakeUnaryCall({ n: 666 }, 'admin'));
    await invoke(mutating, fakeUnaryCall({ n: 2 }, 'viewer'));
    await invoke(unary(ctx, spec({ method: 'test.Svc/Read', access: 'read' })), fakeUnaryCall({ n: 2 }, 'viewer'));
    const peer = '127.0.0.1:40000';
    expect(authz.events).toEqual([
      { identity: 'admin', method: 'test.Svc/Do', code: 'OK', detail: 'n=2', peer },
      { identity: 'admin', method: 'test.Svc/Do', code: 'INVALID_ARGUMENT', detail: 'n: must be >= 0', peer },
      { identity: 'admin', method: 'test.Svc/Do', code: 'FAILED_PRECONDITION', detail: 'unlucky number', peer },
      { identity: 'admin', method: 'test.Svc/Do', code: 'INTERNAL', detail: 'internal error (see the auraed log)', peer },
      { identity: 'viewer', method: 'test.Svc/Do', code: 'PERMISSION_DENIED', detail: 'denied by fake', peer },
    ]);
    expect(records.filter((r) => r.msg === 'rpc denied')).toEqual([expect.objectContaining({ level: 'warn', caller: 'viewer', why: 'denied by fake' })]);
  });

  it('mutates: false keeps an admin-access call out of the audit; mutates: true audits a read-access call', async () => {
    const { log } = memoryLogger();
    const authz = fakeAuthz(['admin test.Svc/Do']);
    const ctx = { log, admins: new Set(['admin']), authz, ...identity };
    await invoke(unary(ctx, spec({ mutates: false })), fakeUnaryCall({ n: 1 }, 'admin'));
    expect(authz.events).toEqual([]);
    await invoke(unary(ctx, spec({ access: 'read', mutates: true })), fakeUnaryCall({ n: 1 }, 'admin'));
    expect(authz.events.map((e) => e.code)).toEqual(['OK']);
  });

  it('a call without a usable certificate identity is refused UNAUTHENTICATED and audited with an empty identity', async () => {
    const { log } = memoryLogger();
    const authz = fakeAuthz([]);
    const result = await invoke(unary({ log, admins: new Set(), authz, ...identity }, spec()), fakeUnaryCall({ n: 1 }, ['a', 'b']));
    expect(result.error?.code).toBe(status.UNAUTHENTICATED);
    expect(authz.events).toEqual([{ identity: '', method: 'test.Svc/Do', code: 'UNAUTHENTICATED', detail: expect.stringContaining('2 common names'), peer: '127.0.0.1:40000' }]);
    expect(authz.checks).toEqual([]);
  });

  it('server streams: denied before run, audited when a mutating stream ends (OK, CANCELLED or its error)', async () => {
    const { log } = memoryLogger();
    const authz = fakeAuthz(['admin test.Svc/Stream']);
    const ctx = { log, admins: new Set(['admin']), authz, ...identity };
    const streamCall = (cn: string, cancelled = false) => {
      const call = Object.assign(fakeUnaryCall({ n: 1 }, cn), { cancelled, write: () => true, end: () => {} });
      const done = new Promise<unknown>((resolve) => {
        call.on('error', resolve);
        call.on('finished', () => resolve(null));
      });
      return { call, done };
    };
    let ran = 0;
    const handler = (run: () => Promise<void>) =>
      serverStream(ctx, { method: 'test.Svc/Stream', access: 'admin', validate: () => undefined, run: async (_input: undefined, call: { emit(e: string): void }) => {
        ran++;
        await run();
        call.emit('finished');
      } });

    const denied = streamCall('viewer');
    handler(async () => {})(denied.call as never);
    expect(await denied.done).toMatchObject({ code: status.PERMISSION_DENIED });
    expect(ran).toBe(0);

    const ok = streamCall('admin');
    handler(async () => {})(ok.call as never);
    await ok.done;
    const cancelled = streamCall('admin', true);
    handler(async () => {})(cancelled.call as never);
    await cancelled.done;
    const failing = streamCall('admin');
    handler(async () => { throw new AuraeError('NOT_FOUND', 'no such thing'); })(failing.call as never);
    expect(await failing.done).toMatchObject({ code: status.NOT_FOUND });
    await new Promise((r) => setImmediate(r));
    expect(authz.events.map((e) => `${e.identity} ${e.code}`)).toEqual(['viewer PERMISSION_DENIED', 'admin OK', 'admin CANCELLED', 'admin NOT_FOUND']);
  });
});
