import { EventEmitter } from 'node:events';
import { type ServerUnaryCall, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { type LogFields, type Logger, createJsonLogger } from '../log';
import { callerFromCall } from './caller';
import { unary } from './rpc';
import { toGrpcError } from './status';

function memoryLogger(): { log: Logger; records: Array<LogFields> } {
  const records: LogFields[] = [];
  return { log: createJsonLogger({ subsystem: 'test', write: (line) => void records.push(JSON.parse(line)) }), records };
}

/** A grpc-js unary call as the handler sees it, with a peer certificate CN (or none). */
function fakeCall<Req>(request: Req, cn?: string | string[]): ServerUnaryCall<Req, unknown> {
  const call = Object.assign(new EventEmitter(), {
    request,
    getPeer: () => '127.0.0.1:40000',
    getAuthContext: () =>
      cn === undefined ? { transportSecurityType: 'ssl' } : { transportSecurityType: 'ssl', sslPeerCertificate: { subject: { CN: cn } } },
  });
  return call as unknown as ServerUnaryCall<Req, unknown>;
}

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
    expect(callerFromCall(fakeCall({}, 'admin'), new Set(['admin']))).toEqual({ identity: 'admin', peer: '127.0.0.1:40000', admin: true });
    expect(callerFromCall(fakeCall({}, 'viewer'), new Set(['admin'])).admin).toBe(false);
  });

  it('refuses calls without a certificate or with several CNs', () => {
    expect(() => callerFromCall(fakeCall({}), new Set())).toThrow(/no verified client certificate/);
    expect(() => callerFromCall(fakeCall({}, ['a', 'b']), new Set())).toThrow(/2 common names/);
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
    const handler = unary({ log, admins: new Set(['admin']) }, spec(() => 'ok'));
    const result = await invoke(handler, fakeCall({ n: 21 }, 'admin'));
    expect(result).toEqual({ error: null, value: { doubled: 42, extra: 'ok' } });
    expect(records).toEqual([expect.objectContaining({ msg: 'rpc', method: 'test.Svc/Do', caller: 'admin', peer: '127.0.0.1:40000' })]);
  });

  it('denies admin methods to other identities with a message saying how to allow them', async () => {
    const { log } = memoryLogger();
    let ran = false;
    const handler = unary({ log, admins: new Set(['admin']) }, spec(() => (ran = true)));
    const result = await invoke(handler, fakeCall({ n: 1 }, 'viewer'));
    expect(result.error).toEqual({
      code: status.PERMISSION_DENIED,
      details: 'identity "viewer" may not call test.Svc/Do: add it to authz.admins in the node config',
    });
    expect(ran).toBe(false);
  });

  it('maps validation failures to INVALID_ARGUMENT and core bugs to INTERNAL', async () => {
    const { log } = memoryLogger();
    const bad = await invoke(unary({ log, admins: new Set(['admin']) }, spec(() => 1)), fakeCall({ n: -1 }, 'admin'));
    expect(bad.error).toEqual({ code: status.INVALID_ARGUMENT, details: 'n: must be >= 0' });
    const boom = await invoke(
      unary({ log, admins: new Set(['admin']) }, spec(() => { throw new Error('boom'); })),
      fakeCall({ n: 1 }, 'admin'),
    );
    expect(boom.error?.code).toBe(status.INTERNAL);
  });
});
