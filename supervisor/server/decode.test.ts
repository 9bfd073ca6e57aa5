// Bytes that are not the method's message, sent to a real grpc-js server on loopback: INVALID_ARGUMENT naming the
// method, for unary and server-streaming methods alike; good requests still reach the handler.
import { Client, credentials, Metadata, ServerCredentials, type ServiceError, status, type StatusObject } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../log';
import { type RunningServer, startServer } from './server';

/** A strict decoder: JSON or an exception, like a protobuf decoder meeting a length past the end. */
const strict = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
};
const pass = (b: Buffer) => b;

const TestService = {
  echo: { path: '/x.v0.Test/Echo', requestStream: false, responseStream: false, requestSerialize: strict.serialize, requestDeserialize: strict.deserialize, responseSerialize: strict.serialize, responseDeserialize: strict.deserialize },
  tail: { path: '/x.v0.Test/Tail', requestStream: false, responseStream: true, requestSerialize: strict.serialize, requestDeserialize: strict.deserialize, responseSerialize: strict.serialize, responseDeserialize: strict.deserialize },
};

describe('requests that do not decode (every service, server.ts → decode.ts)', () => {
  let server: RunningServer;
  let client: Client;
  const handled: unknown[] = [];

  beforeAll(async () => {
    server = await startServer({
      credentials: ServerCredentials.createInsecure(),
      targets: [{ kind: 'tcp', address: '127.0.0.1:0' }],
      log: silentLogger,
      services: [
        {
          definition: TestService,
          implementation: {
            echo: (call: { request: unknown }, cb: (err: null, res: unknown) => void) => {
              handled.push(call.request);
              cb(null, call.request);
            },
            tail: (call: { request: unknown; write(m: unknown): void; end(): void }) => {
              handled.push(call.request);
              call.write(call.request);
              call.end();
            },
          },
        },
      ],
    });
    client = new Client(server.tcp!, credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await server?.shutdown(1000);
  });

  const unary = (bytes: string) =>
    new Promise<{ code: number; details: string; value?: string }>((resolve) => {
      client.makeUnaryRequest(TestService.echo.path, pass, pass, Buffer.from(bytes), new Metadata(), {}, (err: ServiceError | null, value?: Buffer) =>
        resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: '', value: value?.toString() }),
      );
    });
  const stream = (bytes: string) =>
    new Promise<{ code: number; details: string; messages: string[] }>((resolve) => {
      const messages: string[] = [];
      const call = client.makeServerStreamRequest(TestService.tail.path, pass, pass, Buffer.from(bytes), new Metadata(), {});
      call.on('data', (m: Buffer) => messages.push(m.toString()));
      call.on('error', (err: ServiceError) => resolve({ code: err.code, details: err.details, messages }));
      call.on('status', (s: StatusObject) => s.code === status.OK && resolve({ code: s.code, details: s.details, messages }));
    });

  it('unary: INVALID_ARGUMENT naming the method, and the handler never runs; a good request is served', async () => {
    const before = handled.length;
    const bad = await unary('{"torn');
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/^request: could not be decoded as the message of \/x\.v0\.Test\/Echo \(.+\): send a well-formed protobuf message$/);
    expect(handled.length).toBe(before);
    expect(await unary('{"a":1}')).toEqual({ code: status.OK, details: '', value: '{"a":1}' });
  });

  it('server stream: the same status ends the stream', async () => {
    const bad = await stream('not json');
    expect(bad).toMatchObject({ code: status.INVALID_ARGUMENT, messages: [] });
    expect(bad.details).toMatch(/^request: could not be decoded as the message of \/x\.v0\.Test\/Tail/);
    expect(await stream('[1]')).toMatchObject({ code: status.OK, messages: ['[1]'] });
  });
});
