// An attacker's requests against a real auraed (spawned process, mTLS on loopback): hand-encoded protobuf, every
// 64-bit request field set to values beyond a JavaScript number, enum values we do not know, huge strings. Each
// well-formed request gets a deliberate status (INVALID_ARGUMENT naming the field), never INTERNAL or UNKNOWN,
// and auraed keeps serving. Priv tier: it spawns a daemon and binds sockets (no root needed).
import { readFileSync } from 'node:fs';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PreparedNode, type RunningTestAuraed, launchAuraed, prepareTestNode } from './testing';

type Status = { code: number; details: string };

const U64_MAX = 2n ** 64n - 1n;
/** The wire values tried in every 64-bit field: 2^64-1, 2^63, -1 (the same varint as 2^64-1 in an int64), 2^53. */
const HOSTILE = [U64_MAX, 2n ** 63n, -1n, 2n ** 53n];

/** A varint field carrying the 64-bit pattern of `value` (negative values as two's complement, as int64 does). */
const varint = (w: BinaryWriter, field: number, value: bigint) => w.uint32(field << 3).uint64(BigInt.asUintN(64, value));
const bytes = (w: BinaryWriter, field: number, body: Uint8Array) => w.uint32((field << 3) | 2).bytes(body);
const str = (w: BinaryWriter, field: number, text: string) => w.uint32((field << 3) | 2).string(text);

describe('hostile but well-formed requests get a deliberate status (a real auraed, raw gRPC)', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let client: grpc.Client;

  beforeAll(async () => {
    node = await prepareTestNode({ nodeName: 'wire-1' });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
    const creds = grpc.credentials.createSsl(readFileSync(node.pki.caCert), readFileSync(node.pki.adminKey), readFileSync(node.pki.adminCert));
    client = new grpc.Client(`127.0.0.1:${node.port}`, creds, { 'grpc.ssl_target_name_override': 'wire-1', 'grpc.default_authority': 'wire-1' });
  }, 30_000);

  afterAll(async () => {
    client?.close();
    await auraed?.stop();
    node?.cleanup();
  });

  const pass = (b: Buffer) => b;
  const unary = (path: string, request: Uint8Array): Promise<Status> =>
    new Promise((resolve) => {
      client.makeUnaryRequest(path, pass, pass, Buffer.from(request), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) =>
        resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' }),
      );
    });
  /** A server stream's final status (messages are read and dropped). */
  const stream = (path: string, request: Uint8Array): Promise<Status> =>
    new Promise((resolve) => {
      const call = client.makeServerStreamRequest(path, pass, pass, Buffer.from(request), new grpc.Metadata(), { deadline: Date.now() + 10_000 });
      call.on('data', () => {});
      call.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
      call.on('status', (s: grpc.StatusObject) => s.code === grpc.status.OK && resolve({ code: s.code, details: s.details }));
    });
  const serving = async () => (await unary('/aurae.authz.v0.AuthzService/GetPolicy', new Uint8Array())).code === grpc.status.OK;

  const expectNamed = (result: Status, field: string) => {
    expect(result.code, `${field}: ${result.details}`).toBe(grpc.status.INVALID_ARGUMENT);
    expect(result.details).toMatch(new RegExp(`^${field.replace(/\./g, '\\.')}: -?\\d+ is out of range: allowed \\d+\\.\\.\\d+`));
  };

  it('ListAudit before_id', async () => {
    for (const value of HOSTILE) {
      const w = new BinaryWriter();
      varint(w, 5, value);
      expectNamed(await unary('/aurae.authz.v0.AuthzService/ListAudit', w.finish()), 'before_id');
    }
    // The largest legal id is served.
    const ok = new BinaryWriter();
    varint(ok, 5, 2n ** 53n - 1n);
    expect((await unary('/aurae.authz.v0.AuthzService/ListAudit', ok.finish())).code).toBe(grpc.status.OK);
  });

  it('GetEvents since_seq', async () => {
    for (const value of HOSTILE) {
      const w = new BinaryWriter();
      varint(w, 2, value);
      expectNamed(await stream('/aurae.observe.v0.ObserveService/GetEvents', w.finish()), 'since_seq');
    }
    const ok = new BinaryWriter();
    varint(ok, 2, 2n ** 53n - 1n);
    expect((await stream('/aurae.observe.v0.ObserveService/GetEvents', ok.finish())).code).toBe(grpc.status.OK);
  });

  it('Allocate: every 64-bit cgroup limit', async () => {
    // Cell fields: cpu = 2, memory = 4, pids = 5, io = 6; the controllers' numbered limits.
    const limits: Array<[number, number, string]> = [
      [2, 1, 'cell.cpu.weight'],
      [2, 2, 'cell.cpu.max'],
      [2, 3, 'cell.cpu.period'],
      [4, 1, 'cell.memory.min'],
      [4, 2, 'cell.memory.low'],
      [4, 3, 'cell.memory.high'],
      [4, 4, 'cell.memory.max'],
      [4, 5, 'cell.memory.swap_max'],
      [5, 1, 'cell.pids.max'],
      [6, 1, 'cell.io.weight'],
    ];
    for (const [controller, field, name] of limits) {
      for (const value of HOSTILE) {
        const inner = new BinaryWriter();
        varint(inner, field, value);
        const cell = new BinaryWriter();
        str(cell, 1, 'hostile');
        bytes(cell, controller, inner.finish());
        const request = new BinaryWriter();
        bytes(request, 1, cell.finish());
        expectNamed(await unary('/aurae.cells.v0.CellService/Allocate', request.finish()), name);
      }
    }
    expect(await serving()).toBe(true);
  });

  it('unknown enum values and huge strings: never INTERNAL or UNKNOWN', async () => {
    const cases: Array<[string, Uint8Array, 'unary' | 'stream']> = [];
    // Start { cell_name: "nope", executable { name: "x", args: ["/bin/true"], restart { mode: 999 } } }
    {
      const restart = new BinaryWriter();
      varint(restart, 1, 999n);
      const exe = new BinaryWriter();
      str(exe, 1, 'x');
      str(exe, 5, '/bin/true');
      bytes(exe, 10, restart.finish());
      const request = new BinaryWriter();
      str(request, 1, 'nope');
      bytes(request, 2, exe.finish());
      cases.push(['/aurae.cells.v0.CellService/Start', request.finish(), 'unary']);
    }
    // Every string field a megabyte long (under gRPC's 4 MiB message limit).
    const mega = 'x'.repeat(1 << 20);
    for (const [path, kind] of [
      ['/aurae.cells.v0.CellService/Allocate', 'unary'],
      ['/aurae.cells.v0.CellService/Get', 'unary'],
      ['/aurae.cells.v0.CellService/Free', 'unary'],
      ['/aurae.observe.v0.ObserveService/GetLogs', 'stream'],
      ['/aurae.observe.v0.ObserveService/GetMetrics', 'unary'],
      ['/aurae.authz.v0.AuthzService/GetPolicy', 'unary'],
      ['/aurae.vms.v0.VmService/Free', 'unary'],
    ] as const) {
      const w = new BinaryWriter();
      if (path.endsWith('/Allocate')) {
        const cell = new BinaryWriter();
        str(cell, 1, mega);
        bytes(w, 1, cell.finish());
      } else {
        str(w, 1, mega);
      }
      cases.push([path, w.finish(), kind]);
    }
    // A VM name of a megabyte: the refusal must arrive (a status echoing the whole name would not fit a header).
    {
      const w = new BinaryWriter();
      str(w, 1, mega);
      const result = await unary('/aurae.vms.v0.VmService/Start', w.finish());
      expect(result.code, result.details.slice(0, 200)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(result.details.length).toBeLessThanOrEqual(1000);
    }
    for (const [path, request, kind] of cases) {
      const result = kind === 'unary' ? await unary(path, request) : await stream(path, request);
      expect([grpc.status.INTERNAL, grpc.status.UNKNOWN], `${path}: ${grpc.status[result.code]} ${result.details.slice(0, 200)}`).not.toContain(result.code);
    }
    expect(await serving()).toBe(true);
  });

  it('bytes that are no message (a length running past the end): INVALID_ARGUMENT naming the method, for every service', async () => {
    const torn = Uint8Array.from([10, 50, 10]);
    for (const [path, kind] of [
      ['/aurae.cells.v0.CellService/Allocate', 'unary'],
      ['/aurae.authz.v0.AuthzService/ListAudit', 'unary'],
      ['/aurae.observe.v0.ObserveService/GetEvents', 'stream'],
      ['/aurae.vms.v0.VmService/Spawn', 'unary'],
      ['/aurae.node.v0.NodeService/Shutdown', 'unary'],
      ['/grpc.health.v1.Health/Check', 'unary'],
    ] as const) {
      const result = kind === 'unary' ? await unary(path, torn) : await stream(path, torn);
      expect(result.code, `${path}: ${result.details}`).toBe(grpc.status.INVALID_ARGUMENT);
      expect(result.details).toContain(`request: could not be decoded as the message of ${path}`);
    }
    expect(await serving()).toBe(true);
  });
});
