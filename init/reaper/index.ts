// Reap orphaned zombies without stealing exits Node waits for (DESIGN.md §3).
//
// libuv reaps only the children Node spawned, each with waitpid(<its pid>). A blind
// waitpid(-1) here would collect those too and Node's 'exit' events would never fire.
// So: walk /proc for zombies whose parent is us and that Node did NOT spawn (they were
// re-parented to us when their own parent died), and waitpid each by pid.
//
// Two guards decide "Node did not spawn it":
//  1. the tracked set: every child init spawns through child_process is in it until
//     its 'exit' event;
//  2. a zombie is reaped only when a LATER scan (a later event-loop turn) still finds it.
//     libuv reaps its own children in the same signal dispatch that runs our SIGCHLD
//     handler, so a child some library spawned behind our back (tsx's esbuild in dev
//     mode) is gone by the second look; a true orphan is still there.
import { readdirSync, readFileSync } from 'node:fs';
import { isErrno, type Syscalls, type WaitResult } from '../../native';
import { errorMessage, type Logger } from '../log';

export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, Z, T, … */
  state: string;
  ppid: number;
  /** Kernel task flags (PF_*). */
  flags: number;
  /** Start time in clock ticks since boot: with pid, identifies a process across pid reuse. */
  startTime: number;
}

/** PF_KTHREAD: the task is a kernel thread (never signalled, never exits on request). */
export const PF_KTHREAD = 0x00200000;

/**
 * Parse /proc/<pid>/stat. comm may contain spaces and parentheses, so split after the
 * LAST ')'. Null for anything unparsable (the process may have vanished mid-read).
 */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open === -1 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 2).split(' ');
  // Fields after comm: state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9) … starttime(22).
  const state = rest[0];
  const ppid = Number(rest[1]);
  const flags = Number(rest[6]);
  const startTime = Number(rest[19]);
  if (!Number.isInteger(pid) || !state || !Number.isInteger(ppid)) return null;
  return {
    pid,
    comm: text.slice(open + 1, close),
    state,
    ppid,
    flags: Number.isFinite(flags) ? flags : 0,
    startTime: Number.isFinite(startTime) ? startTime : 0,
  };
}

/**
 * The decision: zombies whose parent is `selfPid` and that Node is not tracking.
 * Precondition: every child Node spawns is in `tracked` from the moment spawn() returns
 * until its 'exit' event (so libuv, not us, collects it).
 */
export function orphanZombies(stats: ProcStat[], selfPid: number, tracked: ReadonlySet<number>): number[] {
  return stats.filter((s) => s.state === 'Z' && s.ppid === selfPid && !tracked.has(s.pid)).map((s) => s.pid);
}

/** Orphaned zombies seen by one scan: pid → start time. */
export type Sightings = ReadonlyMap<number, number>;

/**
 * The decision for one scan: reap the orphaned zombies the previous scan already saw
 * (same pid and start time); remember the new ones for the next scan.
 */
export function reapDecision(
  stats: ProcStat[],
  selfPid: number,
  tracked: ReadonlySet<number>,
  previous: Sightings,
): { reap: number[]; seen: Map<number, number> } {
  const reap: number[] = [];
  const seen = new Map<number, number>();
  const candidates = new Set(orphanZombies(stats, selfPid, tracked));
  for (const s of stats) {
    if (!candidates.has(s.pid)) continue;
    if (previous.get(s.pid) === s.startTime) reap.push(s.pid);
    else seen.set(s.pid, s.startTime);
  }
  return { reap, seen };
}

/** User processes still alive besides us: not kernel threads, not zombies (already dead). */
export function remainingProcesses(stats: ProcStat[], selfPid: number): ProcStat[] {
  return stats.filter((s) => s.pid !== selfPid && s.state !== 'Z' && s.state !== 'X' && (s.flags & PF_KTHREAD) === 0 && s.pid !== 2 && s.ppid !== 2);
}

export interface ProcReader {
  /** Numeric entries of /proc. */
  listPids(): number[];
  /** /proc/<pid>/stat text, or null if it vanished. */
  readStat(pid: number): string | null;
}

export function procReader(procRoot = '/proc'): ProcReader {
  return {
    listPids: () =>
      readdirSync(procRoot)
        .filter((name) => /^\d+$/.test(name))
        .map(Number),
    readStat: (pid) => {
      try {
        return readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
      } catch {
        return null;
      }
    },
  };
}

/** Every process's stat, skipping those that vanish while we look. */
export function scanProc(reader: ProcReader): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const pid of reader.listPids()) {
    const text = reader.readStat(pid);
    const stat = text === null ? null : parseProcStat(text);
    if (stat) stats.push(stat);
  }
  return stats;
}

export interface ReaperDeps {
  reader: ProcReader;
  syscalls: Pick<Syscalls, 'waitpid'>;
  /** Pids Node spawned and still waits for (shared with the spawners). */
  tracked: ReadonlySet<number>;
  selfPid: number;
  log: Logger;
  /** Delay of the confirming second scan; default 100 ms. */
  confirmMs?: number;
}

export interface Reaper {
  /**
   * One pass: reap the orphaned zombies an earlier pass already saw; returns what was
   * reaped. New sightings get a confirming pass confirmMs later.
   */
  reapNow(): WaitResult[];
  /** Backstop timer in case a SIGCHLD is coalesced or missed; unref'd. */
  startBackstop(intervalMs: number): void;
  stop(): void;
}

export function createReaper(deps: ReaperDeps): Reaper {
  let backstop: NodeJS.Timeout | undefined;
  let confirm: NodeJS.Timeout | undefined;
  let stopped = false;
  let previous: Sightings = new Map();
  const confirmMs = deps.confirmMs ?? 100;

  const reapNow = (): WaitResult[] => {
    const reaped: WaitResult[] = [];
    let stats: ProcStat[];
    try {
      stats = scanProc(deps.reader);
    } catch (err) {
      deps.log.warn(`reaper: reading /proc failed: ${errorMessage(err)}`);
      return reaped;
    }
    const decision = reapDecision(stats, deps.selfPid, deps.tracked, previous);
    previous = decision.seen;
    for (const pid of decision.reap) {
      try {
        const result = deps.syscalls.waitpid(pid, true);
        if (!result) continue;
        reaped.push(result);
        const how = result.exited ? `exit code ${result.code}` : `signal ${result.signal}`;
        deps.log.debug(`reaper: reaped orphan pid ${pid} (${how})`);
      } catch (err) {
        // ECHILD: collected elsewhere between the scan and now; nothing to do.
        if (!isErrno(err, 'ECHILD')) deps.log.warn(`reaper: waitpid(${pid}) failed: ${errorMessage(err)}`);
      }
    }
    if (decision.seen.size > 0 && !confirm && !stopped) {
      confirm = setTimeout(() => {
        confirm = undefined;
        reapNow();
      }, confirmMs);
      confirm.unref();
    }
    return reaped;
  };
  return {
    reapNow,
    startBackstop(intervalMs) {
      if (backstop) clearInterval(backstop);
      backstop = setInterval(reapNow, intervalMs);
      backstop.unref();
    },
    stop() {
      stopped = true;
      if (backstop) clearInterval(backstop);
      if (confirm) clearTimeout(confirm);
      backstop = confirm = undefined;
    },
  };
}

/**
 * Keep `tracked` in sync with a spawned child: in from spawn() until Node has reaped it.
 * Call right after spawn() returns, before yielding to the event loop.
 */
export function trackChild(tracked: Set<number>, child: { pid?: number | undefined; once(event: 'exit', fn: () => void): unknown }): void {
  const pid = child.pid;
  if (pid === undefined) return;
  tracked.add(pid);
  child.once('exit', () => tracked.delete(pid));
}
