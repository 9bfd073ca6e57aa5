// Exec into a VM-sandboxed pod: PodService/Exec on the parent relays the call to the pod's child node (vm-agent.ts
// childExecRelay). The child is a fake pod agent: a real grpc-js server on loopback serving PodService/Exec (it
// echoes stdin, prints, and exits with a code). The parent's handler is driven by a fake duplex call as in
// exec.test.ts. The real child (a booted VM): qemu-tests/44-pod-vm.
import { EventEmitter } from 'node:events';
import { Client, Metadata, Server, type ServerDuplexStream, ServerCredentials, credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ExecStart, type PodServiceExecRequest, type PodServiceExecResponse, PodServiceService } from '../gen/aurae/pods/v0/pods';
import { silentLogger } from '../log';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from '../server/testing';
import { createPodService } from './pod-service';
import { childExecRelay } from './vm-agent';

const EMPTY = Buffer.alloc(0);
const start = (over: Partial<ExecStart> = {}): ExecStart => ({ podName: 'inside', containerName: '', command: ['sh'], env: {}, workingDir: '', user: '', stdin: true, ...over });
const req = (over: Partial<PodServiceExecRequest> = {}): PodServiceExecRequest => ({ start: undefined, stdin: EMPTY, closeStdin: false, ...over });

/** The fake pod agent's view: the first requests it got, and how many calls it saw cancelled. */
const agent = { firsts: [] as ExecStart[], cancelled: 0 };

function fakeAgentExec(call: ServerDuplexStream<PodServiceExecRequest, PodServiceExecResponse>): void {
  let first: ExecStart | undefined;
  let exited = false;
  const exit = () => {
    if (exited) return;
    exited = true;
    call.write({ stdout: EMPTY, stderr: EMPTY, exit: { code: 3 } });
    call.end();
  };
  call.on('cancelled', () => void agent.cancelled++);
  call.on('data', (r: PodServiceExecRequest) => {
    if (!first) {
      first = r.start!;
      agent.firsts.push(first);
      if (first.containerName === 'missing') {
        call.emit('error', { code: status.NOT_FOUND, details: `pod "${first.podName}" has no container "missing": it has app` });
        return;
      }
      if (first.command[0] === 'hang') return;
      call.write({ stdout: Buffer.from(`hello from ${first.podName}/${first.containerName || 'app'}\n`), stderr: EMPTY });
      call.write({ stdout: EMPTY, stderr: Buffer.from('to stderr\n') });
      return;
    }
    if (r.stdin.length) call.write({ stdout: Buffer.from(`echo: ${r.stdin.toString()}`), stderr: EMPTY });
    if (r.closeStdin) exit();
  });
  call.on('end', () => first?.command[0] !== 'hang' && exit());
}

/** A grpc-js duplex call as PodService's handler sees it, recording what it sends and the status it ends with. */
class FakeCall extends EventEmitter {
  cancelled = false;
  ended = false;
  sent: PodServiceExecResponse[] = [];
  errors: { code?: number; details?: string }[] = [];
  metadata = new Metadata();
  constructor() {
    super();
    this.on('error', (e: { code?: number; details?: string }) => void this.errors.push(e));
  }
  getPeer = () => '127.0.0.1:40000';
  getAuthContext = () => fakeAuthContext('admin');
  getDeadline = () => Infinity;
  write(m: PodServiceExecResponse): boolean {
    this.sent.push(m);
    return true;
  }
  end(): void {
    this.ended = true;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  cancel(): void {
    this.cancelled = true;
    this.emit('cancelled');
  }
  text(stream: 'stdout' | 'stderr'): string {
    return Buffer.concat(this.sent.map((m) => m[stream])).toString();
  }
  exit(): PodServiceExecResponse['exit'] {
    return this.sent.find((m) => m.exit)?.exit;
  }
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within the deadline');
    await new Promise((r) => setTimeout(r, 5));
  }
}
const tick = () => new Promise((r) => setImmediate(r));

describe('PodService/Exec into a VM-sandboxed pod', () => {
  let server: Server;
  let client: Client;
  const asked: string[] = [];
  let podState = 'running';

  beforeAll(async () => {
    server = new Server();
    server.addService(PodServiceService, { exec: fakeAgentExec } as never);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  afterAll(async () => {
    client?.close();
    server?.forceShutdown();
  });

  function service(withRelay = true) {
    const authz = fakeAuthorizer();
    const ctx = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity: null, issuerOf: issuerByName() };
    const spec = { name: 'inside', sandbox: 'vm', containers: [{ name: 'app', user: null }] };
    const runtime = {
      run: async () => ({}) as never,
      list: () => [],
      get: (pod: string) => (pod === 'inside' ? ({ name: 'inside', sandbox: 'vm', state: podState, containers: [{ name: 'app', state: 'running' }], spec } as never) : undefined),
      stop: async () => ({}) as never,
      remove: async () => {},
      execTarget: () => {
        throw new Error('a VM pod has no exec target here');
      },
    };
    const vmExec = childExecRelay(async (vm) => {
      asked.push(vm);
      return client;
    });
    return { svc: createPodService(ctx, { runtime, ...(withRelay ? { vmExec } : {}) }), authz };
  }
  const run = async (svc: ReturnType<typeof service>['svc'], first: ExecStart) => {
    const call = new FakeCall();
    svc.exec(call as never);
    await tick();
    call.emit('data', req({ start: first }));
    return call;
  };
  const settled = (call: FakeCall) => waitFor(() => call.ended || call.errors.length > 0);

  it("relays to the child pod-NAME's Exec for the same pod and container: stdout, stderr, stdin both ways, the exit code", async () => {
    const { svc, authz } = service();
    asked.length = 0;
    const call = await run(svc, start({ containerName: 'app', command: ['sh', '-c', 'secret-stays-out'] }));
    await waitFor(() => call.text('stderr') === 'to stderr\n');
    call.emit('data', req({ stdin: Buffer.from('one\n') }));
    await waitFor(() => call.text('stdout').includes('echo: one'));
    call.emit('data', req({ stdin: Buffer.from('two\n'), closeStdin: true }));
    await settled(call);
    expect(call.errors).toEqual([]);
    expect(call.text('stdout')).toBe('hello from inside/app\necho: one\necho: two\n');
    expect(call.exit()).toEqual({ code: 3 });
    expect(call.sent.at(-1)!.exit).toBeDefined();
    expect(asked).toEqual(['pod-inside']);
    expect(agent.firsts.at(-1)).toMatchObject({ podName: 'inside', containerName: 'app', command: ['sh', '-c', 'secret-stays-out'], stdin: true });
    expect(authz.audits).toEqual([expect.objectContaining({ method: 'aurae.pods.v0.PodService/Exec', code: 'OK', detail: 'inside/app: sh' })]);
  });

  it("the caller's half-close closes stdin in the child; the only container is the child's choice", async () => {
    const { svc } = service();
    const seen = agent.firsts.length;
    const call = await run(svc, start());
    await waitFor(() => agent.firsts.length === seen + 1 && call.text('stdout') !== '');
    call.emit('end');
    await settled(call);
    expect(call.exit()).toEqual({ code: 3 });
    expect(agent.firsts.at(-1)).toMatchObject({ podName: 'inside', containerName: '' });
  });

  it("the child's refusal comes back with its code, naming the VM", async () => {
    const { svc, authz } = service();
    const call = await run(svc, start({ containerName: 'missing' }));
    await settled(call);
    expect(call.errors[0]).toMatchObject({ code: status.NOT_FOUND, details: expect.stringMatching(/^VM pod agent "pod-inside": Exec failed: pod "inside" has no container "missing"/) });
    expect(authz.audits.at(-1)).toMatchObject({ code: 'NOT_FOUND' });
  });

  it("cancelling the call cancels the child's", async () => {
    const { svc } = service();
    const before = agent.cancelled;
    const call = await run(svc, start({ command: ['hang'] }));
    await waitFor(() => agent.firsts.at(-1)?.command[0] === 'hang');
    call.cancel();
    await waitFor(() => agent.cancelled === before + 1);
    expect(call.exit()).toBeUndefined();
  });

  it('a stopped VM pod is refused here without asking the child; a node without the relay says UNIMPLEMENTED', async () => {
    asked.length = 0;
    podState = 'stopped';
    try {
      const stopped = await run(service().svc, start());
      await settled(stopped);
      expect(stopped.errors[0]).toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(/^pod "inside" is stopped: its VM is not running/) });
    } finally {
      podState = 'running';
    }
    const bare = await run(service(false).svc, start());
    await settled(bare);
    expect(bare.errors[0]).toMatchObject({ code: status.UNIMPLEMENTED });
    expect(asked).toEqual([]);
  });
});
