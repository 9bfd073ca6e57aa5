// The contracts between the runtime cores (cells, executables, VMs) and observe. Implementations live beside
// this file; the cores depend only on these types.

/** A cell path such as "web" or "web/cache". */
export type CellPath = string;

export type AuraeEvent =
  | { kind: 'cell_allocated'; cell: CellPath }
  | { kind: 'cell_freed'; cell: CellPath }
  | { kind: 'executable_started'; cell: CellPath; executable: string; pid: number }
  | { kind: 'executable_exited'; cell: CellPath; executable: string; pid: number; code: number | null; signal: string | null }
  | { kind: 'executable_restarted'; cell: CellPath; executable: string; attempt: number; delayMs: number }
  | { kind: 'executable_oom_killed'; cell: CellPath; executable: string; count: number }
  | { kind: 'start_limit_hit'; cell: CellPath; executable: string; starts: number; intervalMs: number }
  | PodLifecycleEvent
  | VmLifecycleEvent;

/**
 * A pod's life (supervisor/pods). `cell` is the pod's cell (its name), so cell filters and the authz policy treat
 * a pod like its cell; `container` is the container (its executable in that cell has the same name).
 * - image_pulled: the container's image was pulled from its registry (not published when it was already stored);
 *   `bytes` is the sum of its compressed layers.
 * - container_created: its bundle and root filesystem are ready and crun was asked to run it.
 * - container_started: crun started it (its pid file appeared): `pid` is the container's init on this node.
 * - container_exited: crun ended with the container's status (`code`, 128+N when the container died of signal N)
 *   or was itself killed (`signal`); `oomKilled` when the kernel OOM-killed a process of it during this run;
 *   `pid` as in container_started, 0 when crun never started it.
 * - container_oom_killed: the kernel OOM-killed `count` processes of it since the last report.
 */
export type PodLifecycleEvent =
  | { kind: 'image_pulled'; cell: CellPath; pod: string; container: string; image: string; digest: string; bytes: number }
  | { kind: 'container_created'; cell: CellPath; pod: string; container: string; image: string; digest: string }
  | { kind: 'container_started'; cell: CellPath; pod: string; container: string; pid: number }
  | { kind: 'container_exited'; cell: CellPath; pod: string; container: string; pid: number; code: number | null; signal: string | null; oomKilled: boolean }
  | { kind: 'container_oom_killed'; cell: CellPath; pod: string; container: string; count: number };

/**
 * A child VM's lifecycle (supervisor/vms). `vm` is the VM's name on this node; `pid` is QEMU's. These carry no
 * cell: a child VM is not a cell of this node, so a cell filter never matches them.
 */
export type VmLifecycleEvent =
  | { kind: 'vm_started'; vm: string; pid: number; address: string }
  | { kind: 'vm_exited'; vm: string; pid: number; code: number | null; signal: string | null; expected: boolean }
  | { kind: 'vm_restarted'; vm: string; attempt: number; delayMs: number }
  | { kind: 'vm_failed'; vm: string; reason: string };

/** An event as delivered: with a sequence number (monotonic per auraed run) and a timestamp (ISO 8601). */
export type StampedEvent = AuraeEvent & { seq: number; time: string };

export interface EventBus {
  publish(event: AuraeEvent): StampedEvent;
  /** Call `listener` for every event published from now on; returns an unsubscribe function. */
  subscribe(listener: (event: StampedEvent) => void): () => void;
  /** The most recent events still held (bounded), oldest first. */
  recent(): StampedEvent[];
}

export type LogStream = 'stdout' | 'stderr';

export interface LogLine {
  stream: LogStream;
  /** ISO 8601 time the line was received. */
  time: string;
  line: string;
}

/** Where an executable's output goes: bounded, rotated, persistent. */
export interface LogSink {
  /** Append a line (without its newline). Never throws: a failing disk is reported once and lines are dropped. */
  write(stream: LogStream, line: string): void;
  close(): Promise<void>;
}

export interface LogStore {
  /** The sink for one executable (opened once per run, appending to its existing log). */
  sink(cell: CellPath, executable: string): LogSink;
  /**
   * The last `tail` lines (all when undefined), oldest first. The snapshot is taken when read() is called:
   * exactly the lines written before the call (it waits for them to reach the disk), so a follow() begun in
   * the same tick sees every later line and none of these.
   */
  read(cell: CellPath, executable: string, tail?: number): Promise<LogLine[]>;
  /** Lines written from now on, until the returned function is called. */
  follow(cell: CellPath, executable: string, listener: (line: LogLine) => void): () => void;
  /** Remove an executable's logs (when its cell is freed). */
  remove(cell: CellPath, executable?: string): Promise<void>;
}
