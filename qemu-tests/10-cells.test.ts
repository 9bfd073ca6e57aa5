// 10: cells and executables in the booted node, through the generated CellService client with the admin
// certificate: real cgroup v2 limits (memory.max → OOM kill, pids.max against a fork bomb, cpu.max throttling),
// namespaces, restart policy with its start limit, Stop leaving no grandchild, Free --force leaving no cgroup,
// and bad input refused while auraed keeps serving. The guest's debug shell reads the cgroup files directly.
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type Cell,
  type CellGraphNode,
  CellServiceClient,
  type Executable,
  ExecutableState,
  type ExecutableStatus,
  RestartMode,
} from '../supervisor/gen/aurae/cells/v0/cells';
import { ObserveServiceClient, type Event, EventKind } from '../supervisor/gen/aurae/observe/v0/observe';
import { HealthClient } from '../supervisor/gen/grpc/health/v1/health';
import { eventually, useNode } from './fixture/node';
import { readCreds } from './fixture/raw-grpc';

type Callback<Res> = (err: grpc.ServiceError | null, res?: Res) => void;

/** A unary call as a promise. */
function rpc<Res>(start: (cb: Callback<Res>) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => start((err, res) => (err ? reject(err) : resolve(res as Res))));
}

/** The gRPC status of a call that must fail. */
async function failure(start: (cb: Callback<unknown>) => unknown): Promise<grpc.ServiceError> {
  try {
    await rpc(start);
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded');
}

describe('10 cells', () => {
  const node = useNode({ name: '10-cells' });
  const clients: grpc.Client[] = [];
  afterAll(() => clients.forEach((c) => c.close()));

  function connectAs<C extends grpc.Client>(Ctor: new (address: string, creds: grpc.ChannelCredentials, options: object) => C): C {
    const creds = readCreds(node().image.pkiDir);
    const name = node().image.manifest.node;
    const client = new Ctor(`127.0.0.1:${node().port}`, grpc.credentials.createSsl(creds.ca, creds.key ?? null, creds.cert ?? null), {
      'grpc.ssl_target_name_override': name,
      'grpc.default_authority': name,
    });
    clients.push(client);
    return client;
  }
  let cellsClient: CellServiceClient | null = null;
  const cells = () => (cellsClient ??= connectAs(CellServiceClient));

  const allocate = (name: string, extra: Partial<Cell> = {}) => rpc((cb) => cells().allocate({ cell: { name, isolateProcess: false, isolateNetwork: false, ...extra } }, cb));
  const start = (cellName: string, executable: Partial<Executable> & { name: string }) =>
    rpc<{ pid: number }>((cb) => cells().start({ cellName, executable: { command: '', description: '', args: [], env: {}, cwd: '', ...executable } }, cb));
  const stop = (cellName: string, executableName: string, gracePeriodMs?: number) => rpc<{ exit?: { code?: number; signal?: string; oomKilled: boolean } }>((cb) => cells().stop({ cellName, executableName, gracePeriodMs }, cb));
  const free = (cellName: string, force = true) => rpc((cb) => cells().free({ cellName, force }, cb));
  const get = async (cellName: string): Promise<CellGraphNode> => (await rpc<{ cell?: CellGraphNode }>((cb) => cells().get({ cellName }, cb))).cell!;
  const exeStatus = async (cellName: string, name: string): Promise<ExecutableStatus> => {
    const status = (await get(cellName)).executables.find((e) => e.executable?.name === name);
    if (!status) throw new Error(`no executable ${name} in ${cellName}`);
    return status;
  };
  const serving = async () => {
    const health = connectAs(HealthClient);
    return (await rpc<{ status: number }>((cb) => health.check({ service: '' }, cb))).status === 1;
  };
  const sh = async (command: string, timeoutMs?: number) => (await node().shell()).ok(command, timeoutMs);
  const CG = '/sys/fs/cgroup/aurae';

  it('a memory hog is OOM-killed inside its cell; auraed and another cell keep running', async () => {
    await allocate('quiet');
    const sleeper = await start('quiet', { name: 'sleeper', args: ['/bin/sleep', '1000'] });
    await allocate('hog', { memory: { max: 32n * 1024n * 1024n, swapMax: 0n } });
    expect(await sh(`cat ${CG}/hog/memory.max`)).toBe('33554432\n');
    // busybox dd touches its whole 64 MiB block: twice the cell's limit.
    await start('hog', { name: 'eat', args: ['/bin/dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'] });
    const eat = await eventually(async () => {
      const s = await exeStatus('hog', 'eat');
      return s.state === ExecutableState.EXECUTABLE_STATE_FAILED && s;
    }, 60_000, 'the hog to be OOM-killed');
    expect(eat.lastExit).toMatchObject({ signal: 'SIGKILL', oomKilled: true });
    expect(await sh(`grep oom_kill ${CG}/hog/exe.eat/memory.events`)).toMatch(/^oom_kill [1-9]/m);
    expect(await serving()).toBe(true);
    const other = await exeStatus('quiet', 'sleeper');
    expect(other).toMatchObject({ state: ExecutableState.EXECUTABLE_STATE_RUNNING, pid: sleeper.pid });
    expect(await sh(`cat ${CG}/quiet/exe.sleeper/cgroup.procs`)).toBe(`${sleeper.pid}\n`);
    // The OOM kill is also a lifecycle event.
    const events = await readEvents();
    expect(events.some((e) => e.kind === EventKind.EVENT_KIND_EXECUTABLE_OOM_KILLED && e.cell === 'hog' && e.executable === 'eat')).toBe(true);
    await free('hog', false);
  });

  it('a fork bomb stops at pids.max (cpu.max keeps the node responsive); free --force leaves no process and no cgroup', async () => {
    await allocate('bomb', { pids: { max: 24n }, cpu: { max: 20_000n, period: 100_000n } });
    await start('bomb', { name: 'bomb', command: 'f() { f | f & }; f; sleep 1000' });
    // Linux 6.1 counts a refused fork in the forking task's cgroup (the leaf); later kernels in the limiting one.
    const refused = async () => (await sh(`cat ${CG}/bomb/pids.events ${CG}/bomb/exe.bomb/pids.events`)).split('\n').reduce((n, l) => n + (Number(/^max (\d+)/.exec(l)?.[1]) || 0), 0);
    await eventually(async () => (await refused()) > 0, 60_000, 'pids.max to refuse forks');
    expect(Number(await sh(`cat ${CG}/bomb/pids.current`))).toBeLessThanOrEqual(24);
    expect(await serving()).toBe(true);
    const err = await failure((cb) => cells().free({ cellName: 'bomb', force: false }, cb));
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/running executables: bomb\/bomb/);
    await free('bomb');
    expect((await sh(`ls ${CG}`)).split('\n')).not.toContain('bomb');
    // Only the sleeper of cell "quiet" (its aurae-exec, which supervises it from outside the cell, is not counted).
    expect(await sh('ps | grep -v aurae-exec | grep -c "[s]leep 1000" || true')).toBe('1\n');
  });

  it('cpu.max throttles a busy loop (cpu.stat nr_throttled > 0)', async () => {
    await allocate('cpu', { cpu: { max: 10_000n, period: 100_000n } });
    expect(await sh(`cat ${CG}/cpu/cpu.max`)).toBe('10000 100000\n');
    await start('cpu', { name: 'spin', command: 'while :; do :; done' });
    await eventually(async () => Number(/nr_throttled (\d+)/.exec(await sh(`cat ${CG}/cpu/cpu.stat`))?.[1]) > 0, 30_000, 'throttling');
    const exit = await stop('cpu', 'spin', 2000);
    expect(exit.exit).toMatchObject({ signal: 'SIGTERM' });
    await free('cpu', false);
  });

  it('namespaces: pid (a private /proc), uts (hostname = cell name), network (only lo, up)', async () => {
    const orphan = await failure((cb) => cells().allocate({ cell: { name: 'iso/web', isolateProcess: true, isolateNetwork: true } }, cb));
    expect(orphan.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(orphan.details).toMatch(/parent cell "iso" does not exist/);
    await allocate('iso');
    await allocate('iso/web', { isolateProcess: true, isolateNetwork: true });
    const script = 'echo "$$ $(hostname) $(ls -d /proc/[0-9]* | wc -l) $(cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " ")" > /tmp/ns.out';
    await start('iso/web', { name: 'probe', command: script });
    await eventually(async () => (await exeStatus('iso/web', 'probe')).state === ExecutableState.EXECUTABLE_STATE_EXITED, 30_000, 'the probe to finish');
    const [pid, hostname, procs, links] = (await sh('cat /tmp/ns.out')).trim().split(' ');
    expect(pid).toBe('2'); // aurae-exec is PID 1 of the namespace
    expect(hostname).toBe('web');
    expect(Number(procs)).toBeLessThan(8);
    expect(links).toBe('lo');
    expect((await sh('hostname')).trim()).toBe(node().image.manifest.node);
    await free('iso');
  });

  it('restart on-failure with backoff until the start limit (start_limit_hit)', async () => {
    await allocate('rp');
    await start('rp', {
      name: 'crash',
      command: 'echo crashing; exit 3',
      restart: { mode: RestartMode.RESTART_MODE_ON_FAILURE, initialDelayMs: 50, maxDelayMs: 400, startLimitBurst: 4, startLimitIntervalMs: 60_000 },
    });
    const s = await eventually(async () => {
      const st = await exeStatus('rp', 'crash');
      return st.state === ExecutableState.EXECUTABLE_STATE_FAILED && st;
    }, 60_000, 'the start limit');
    expect(s).toMatchObject({ restarts: 3, lastExit: { code: 3 } });
    const events = (await readEvents()).filter((e) => e.cell === 'rp');
    expect(events.filter((e) => e.kind === EventKind.EVENT_KIND_EXECUTABLE_RESTARTED).map((e) => e.delayMs)).toEqual([50, 100, 200]);
    expect(events.at(-1)).toMatchObject({ kind: EventKind.EVENT_KIND_START_LIMIT_HIT, starts: 4 });
    // Nothing restarts it any more; a clean exit with "always" restarts.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await exeStatus('rp', 'crash')).restarts).toBe(3);
    await start('rp', { name: 'tick', command: 'exit 0', restart: { mode: RestartMode.RESTART_MODE_ALWAYS, initialDelayMs: 100, startLimitBurst: 100 } });
    await eventually(async () => (await exeStatus('rp', 'tick')).restarts >= 2, 30_000, 'restarts after clean exits');
    await stop('rp', 'tick', 1000);
    expect((await exeStatus('rp', 'tick')).state).toBe(ExecutableState.EXECUTABLE_STATE_STOPPED);
    await free('rp', false);
  });

  it('stop: SIGTERM to every process, then cgroup.kill after the grace period; no grandchild survives', async () => {
    await allocate('tree');
    // The shell ignores SIGTERM, and so does a grandchild (ignored signals stay ignored across exec).
    await start('tree', { name: 'parent', command: 'trap "" TERM; (trap "" TERM; exec sleep 1003) & sleep 1002 & while :; do sleep 1; done' });
    await eventually(async () => Number(await sh(`cat ${CG}/tree/exe.parent/cgroup.procs | wc -l`)) >= 3, 20_000, 'the process tree');
    const t0 = Date.now();
    const exit = await stop('tree', 'parent', 1500);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    expect(exit.exit).toMatchObject({ signal: 'SIGKILL' });
    expect(await sh(`cat ${CG}/tree/exe.parent/cgroup.procs | wc -l`)).toBe('0\n');
    expect(await sh('ps | grep -c "[s]leep 100[23]" || true')).toBe('0\n');
    await free('tree', false);
  });

  it('bad input is INVALID_ARGUMENT naming the field; auraed keeps serving', async () => {
    const cases: [(cb: Callback<unknown>) => unknown, RegExp][] = [
      [(cb) => cells().allocate({ cell: { name: '../../etc', isolateProcess: false, isolateNetwork: false } }, cb), /^cell\.name: /],
      [(cb) => cells().allocate({ cell: { name: 'x'.repeat(100_000), isolateProcess: false, isolateNetwork: false } }, cb), /^cell\.name: too long/],
      [(cb) => cells().allocate({ cell: { name: 'caf\u00e9', isolateProcess: false, isolateNetwork: false } }, cb), /^cell\.name: /],
      [(cb) => cells().allocate({ cell: { name: 'neg', memory: { max: -1n }, isolateProcess: false, isolateNetwork: false } }, cb), /^cell\.memory\.max: -1 is out of range/],
      [(cb) => cells().free({ cellName: '', force: true }, cb), /^cell_name: required/],
      [(cb) => cells().start({ cellName: 'quiet', executable: { name: 'x', command: '', description: '', args: [], env: {}, cwd: '' } }, cb), /^executable\.args: required/],
      [(cb) => cells().start({ cellName: 'quiet', executable: { name: 'x', command: 'true', description: '', args: [], env: {}, cwd: '/tmp/../etc' } }, cb), /^executable\.cwd: /],
      // CellServiceAllocateRequest { cell { name: "a", memory { max: 2^60 } } }: beyond a JavaScript number, decoded as bigint.
      [(cb) => cells().makeUnaryRequest('/aurae.cells.v0.CellService/Allocate', (b: Buffer) => b, (b: Buffer) => b, Buffer.from('0a0f0a0161220a20808080808080808010', 'hex'), cb), /^cell\.memory\.max: 1152921504606846976 is out of range: allowed 0\.\.9007199254740991$/],
      // A length prefix running past the end: bytes that are no message.
      [(cb) => cells().makeUnaryRequest('/aurae.cells.v0.CellService/Allocate', (b: Buffer) => b, (b: Buffer) => b, Buffer.from('0a320a', 'hex'), cb), /^request: could not be decoded/],
      [(cb) => cells().stop({ cellName: 'quiet', executableName: 'sleeper', gracePeriodMs: 4_000_000 }, cb), /^grace_period_ms: /],
    ];
    for (const [call, pattern] of cases) {
      const err = await failure(call);
      expect(err.code, err.details).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toMatch(pattern);
    }
    expect(await serving()).toBe(true);
  });

  it('auraed SIGKILLed → restarted by init → reconciled: cells and limits kept, executables restarted, strays removed', async () => {
    await allocate('keep', { pids: { max: 50n } });
    await allocate('empty', { memory: { max: 64n * 1024n * 1024n } });
    const svc = await start('keep', { name: 'svc', args: ['/bin/sleep', '2001'] });
    await start('keep', { name: 'once', command: 'exit 0' });
    await eventually(async () => (await exeStatus('keep', 'once')).state === ExecutableState.EXECUTABLE_STATE_EXITED, 20_000, 'once to exit');
    // Left for reconcile: a cell cgroup that vanished, and a stray cgroup with a process in it.
    await sh(`rmdir ${CG}/empty && mkdir ${CG}/stray && (sleep 3001 & echo $! > ${CG}/stray/cgroup.procs)`);
    const before = Number(await sh('cat /run/aurae/auraed.pid'));
    const from = node().vm.console.length;
    await sh(`kill -9 ${before}`);
    await node().waitReady(120_000, from);

    const after = await eventually(async () => {
      const s = await exeStatus('keep', 'svc');
      return s.state === ExecutableState.EXECUTABLE_STATE_RUNNING && s.pid !== svc.pid && s;
    }, 30_000, 'svc to run again');
    expect(await sh(`cat ${CG}/keep/exe.svc/cgroup.procs`)).toBe(`${after.pid}\n`);
    expect(await sh(`[ -d /proc/${svc.pid} ] && echo alive || echo gone`)).toBe('gone\n');
    expect((await exeStatus('keep', 'once')).state).toBe(ExecutableState.EXECUTABLE_STATE_EXITED);
    expect(await sh(`cat ${CG}/keep/pids.max ${CG}/empty/memory.max`)).toBe('50\n67108864\n');
    expect(await sh(`[ -d ${CG}/stray ] && echo present || echo removed`)).toBe('removed\n');
    expect(await sh('ps | grep -c "[s]leep 3001" || true')).toBe('0\n');
    expect(await sh('ps | grep -v aurae-exec | grep -c "[s]leep 2001" || true')).toBe('1\n');
  });

  it('free --force of everything leaves no cgroup under /sys/fs/cgroup/aurae and no executable process', async () => {
    const list = await rpc<{ cells: CellGraphNode[] }>((cb) => cells().list({}, cb));
    expect(list.cells.map((c) => c.cell?.name)).toEqual(['empty', 'keep', 'quiet']);
    await free('empty');
    await free('keep');
    await free('quiet');
    expect(await sh(`find ${CG} -mindepth 1 -type d | wc -l`)).toBe('0\n');
    expect(await sh('ps | grep -c "[s]leep [0-9]" || true')).toBe('0\n');
    expect(await serving()).toBe(true);
  });

  /** Every event auraed still holds (ObserveService.GetEvents without follow). */
  function readEvents(): Promise<Event[]> {
    const observe = connectAs(ObserveServiceClient);
    return new Promise((resolve, reject) => {
      const out: Event[] = [];
      const stream = observe.getEvents({ follow: false, sinceSeq: 0n, cell: '', vm: '' });
      stream.on('data', (r: { event?: Event }) => r.event && out.push(r.event));
      stream.on('error', reject);
      stream.on('end', () => resolve(out));
    });
  }
});
