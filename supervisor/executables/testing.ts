// Test doubles for the executable runner and the cell runtime (unit tests only; not used by auraed).
import type { AuraeEvent, EventBus, LogLine, LogSink, LogStore, LogStream, StampedEvent } from '../observe/types';
import type { LaunchPlan } from './launch-plan';
import type { ExecOutcome, LaunchedProcess, ProcessExit, ProcessLauncher } from './launcher';
import type { Clock, LeafCgroup } from './runner';

/** Let pending promise callbacks run (a few macrotask turns). */
export async function flush(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

export class FakeClock implements Clock {
  private t = 1_000_000;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private seq = 0;

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const id = ++this.seq;
    this.timers.push({ at: this.t + ms, fn, id });
    return () => {
      this.timers = this.timers.filter((x) => x.id !== id);
    };
  }

  pending(): number[] {
    return this.timers.map((x) => x.at - this.t).sort((a, b) => a - b);
  }

  /** Move time forward, firing due timers in order, letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const next = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!next) break;
      this.timers = this.timers.filter((x) => x !== next);
      this.t = next.at;
      next.fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

export class MemoryEventBus implements EventBus {
  readonly events: StampedEvent[] = [];
  private readonly listeners = new Set<(e: StampedEvent) => void>();
  publish(event: AuraeEvent): StampedEvent {
    const stamped = { ...event, seq: this.events.length + 1, time: new Date(0).toISOString() } as StampedEvent;
    this.events.push(stamped);
    for (const l of this.listeners) l(stamped);
    return stamped;
  }
  subscribe(listener: (event: StampedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  recent(): StampedEvent[] {
    return [...this.events];
  }
  kinds(): string[] {
    return this.events.map((e) => e.kind);
  }
}

export class MemoryLogStore implements LogStore {
  readonly lines = new Map<string, LogLine[]>();
  readonly removed: string[] = [];
  openSinks = 0;
  sink(cell: string, executable: string): LogSink {
    const key = `${cell}/${executable}`;
    if (!this.lines.has(key)) this.lines.set(key, []);
    this.openSinks++;
    let open = true;
    return {
      write: (stream: LogStream, line: string) => void this.lines.get(key)!.push({ stream, line, time: new Date(0).toISOString() }),
      close: async () => {
        if (open) this.openSinks--;
        open = false;
      },
    };
  }
  async read(cell: string, executable: string, tail?: number): Promise<LogLine[]> {
    const all = this.lines.get(`${cell}/${executable}`) ?? [];
    return tail === undefined ? all : all.slice(-tail);
  }
  follow(): () => void {
    return () => {};
  }
  async remove(cell: string, executable?: string): Promise<void> {
    this.removed.push(executable ? `${cell}/${executable}` : cell);
  }
}

/** A process of the fake launcher: the test decides when and how it ends. */
export class FakeProcess implements LaunchedProcess {
  readonly outcome: Promise<ExecOutcome>;
  readonly exited: Promise<ProcessExit>;
  exitedWith: ProcessExit | null = null;
  readonly signals: string[] = [];
  private resolveOutcome!: (o: ExecOutcome) => void;
  private resolveExit!: (e: ProcessExit) => void;
  constructor(
    readonly pid: number,
    readonly plan: LaunchPlan,
    readonly emit: (stream: LogStream, line: string) => void,
    /** What a SIGTERM does: 'exit' (default) or 'ignore'. */
    public onTerm: 'exit' | 'ignore' = 'exit',
  ) {
    this.outcome = new Promise((r) => (this.resolveOutcome = r));
    this.exited = new Promise((r) => (this.resolveExit = r));
  }
  /** The program runs; `childPid`: aurae-exec named its child in the cell (the clone3 path). */
  executed(childPid?: number): void {
    this.resolveOutcome(childPid === undefined ? { executed: true } : { executed: true, pid: childPid });
  }
  setupFailed(message: string, code = 127): void {
    this.resolveOutcome({ executed: false, message });
    this.exit(code, null);
  }
  exit(code: number | null, signal: string | null): void {
    if (this.exitedWith) return;
    this.exitedWith = { code, signal };
    // The status pipe closes with the process at the latest.
    this.resolveOutcome({ executed: true });
    this.resolveExit(this.exitedWith);
  }
  signal(sig: string): void {
    this.signals.push(sig);
    if (sig === 'SIGKILL') this.exit(null, 'SIGKILL');
    else if (sig === 'SIGTERM' && this.onTerm === 'exit') this.exit(null, 'SIGTERM');
  }
  get alive(): boolean {
    return this.exitedWith === null;
  }
}

export class FakeLauncher implements ProcessLauncher {
  readonly processes: FakeProcess[] = [];
  private nextPid = 1000;
  /** Called for each launch (e.g. to put the pid into a fake cgroup); may throw to fail the spawn. */
  onLaunch: (p: FakeProcess) => void = () => {};
  /** Report exec success at once (default), or leave it to the test. */
  autoExecute = true;
  onTerm: 'exit' | 'ignore' = 'exit';

  async launch(plan: LaunchPlan, onLine: (stream: LogStream, line: string) => void): Promise<LaunchedProcess> {
    const p = new FakeProcess(this.nextPid++, plan, onLine, this.onTerm);
    this.onLaunch(p);
    this.processes.push(p);
    if (this.autoExecute) p.executed();
    return p;
  }

  get last(): FakeProcess {
    const p = this.processes[this.processes.length - 1];
    if (!p) throw new Error('nothing was launched');
    return p;
  }

  byPid(pid: number): FakeProcess | undefined {
    return this.processes.find((p) => p.pid === pid);
  }

  /** The signal adapter for the runner: delivers to fake processes. */
  readonly signal = (pid: number, sig: NodeJS.Signals): void => {
    const p = this.byPid(pid);
    if (!p || !p.alive) throw Object.assign(new Error('kill ESRCH'), { code: 'ESRCH' });
    p.signal(sig);
  };
}

/** A leaf cgroup whose processes are the fake launcher's live processes launched into it. */
export class FakeLeaf implements LeafCgroup {
  readonly dir: string;
  prepared = 0;
  kills = 0;
  oom = 0;
  /** Extra pids (grandchildren) in the leaf, killed by kill(). */
  extra: number[] = [];
  private listeners = new Set<() => void>();
  constructor(
    private readonly launcher: FakeLauncher,
    dir = '/fake/cgroup/aurae/cell/exe.x',
  ) {
    this.dir = dir;
  }
  prepare(): 'created' | 'existing' {
    this.prepared++;
    // As the kernel's: a cgroup made now holds no process and has counted no OOM kill.
    const empty = this.extra.length === 0 && !this.launcher.processes.some((p) => p.alive && p.plan.args[1] === this.dir);
    return this.prepared === 1 && empty && this.oom === 0 ? 'created' : 'existing';
  }
  procs(): number[] {
    return [...this.launcher.processes.filter((p) => p.alive && p.plan.args[1] === this.dir).map((p) => p.pid), ...this.extra];
  }
  kill(): void {
    this.kills++;
    this.extra = [];
    for (const p of this.launcher.processes) if (p.alive && p.plan.args[1] === this.dir) p.signal('SIGKILL');
  }
  async waitEmpty(): Promise<boolean> {
    return this.procs().length === 0;
  }
  oomKills(): number {
    return this.oom;
  }
  watchEvents(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  /** Simulate the kernel OOM-killing a process: bump memory.events and notify watchers. */
  oomKill(): void {
    this.oom++;
    for (const l of this.listeners) l();
  }
}
