import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { WaitResult } from '../../native';
import { createMemoryLogger } from '../log';
import { fakeSyscalls } from '../testing/fakes';
import {
  createReaper,
  orphanZombies,
  parseProcStat,
  PF_KTHREAD,
  reapDecision,
  remainingProcesses,
  scanProc,
  trackChild,
  type ProcReader,
  type ProcStat,
} from './index';

const stat = (pid: number, comm: string, state: string, ppid: number, flags = 4194304, start = 123) =>
  `${pid} (${comm}) ${state} ${ppid} ${pid} ${pid} 0 -1 ${flags} 100 0 0 0 1 2 0 0 20 0 1 0 ${start} 456 78`;

const p = (pid: number, comm: string, state: string, ppid: number, flags = 0, startTime = 1): ProcStat => ({ pid, comm, state, ppid, flags, startTime });

describe('parseProcStat', () => {
  it('reads pid, comm, state, ppid and flags', () => {
    expect(parseProcStat(stat(42, 'sleep', 'Z', 1))).toEqual({ pid: 42, comm: 'sleep', state: 'Z', ppid: 1, flags: 4194304, startTime: 123 });
  });

  it('copes with spaces and parentheses in comm', () => {
    expect(parseProcStat(stat(7, 'a) (b c)', 'S', 3))).toMatchObject({ pid: 7, comm: 'a) (b c)', state: 'S', ppid: 3 });
  });

  it('returns null for garbage', () => {
    expect(parseProcStat('')).toBeNull();
    expect(parseProcStat('12 no-parens S 1')).toBeNull();
    expect(parseProcStat('x (a) ')).toBeNull();
  });
});

describe('orphanZombies (the decision)', () => {
  const stats = [
    p(10, 'auraed', 'Z', 1), // Node's child: libuv reaps it
    p(11, 'orphan', 'Z', 1), // re-parented to us: ours to reap
    p(12, 'running', 'S', 1), // alive
    p(13, 'grandchild', 'Z', 10), // its parent's business
  ];

  it('picks zombies parented to us that Node does not track', () => {
    expect(orphanZombies(stats, 1, new Set([10]))).toEqual([11]);
  });

  it('never picks a tracked child, even a zombie one', () => {
    expect(orphanZombies(stats, 1, new Set([10, 11]))).toEqual([]);
  });

  it('uses our own pid (dev mode is a subreaper, not PID 1)', () => {
    expect(orphanZombies(stats, 10, new Set())).toEqual([13]);
  });
});

describe('reapDecision', () => {
  it('reaps only zombies an earlier scan already saw, with the same start time', () => {
    const first = reapDecision([p(11, 'orphan', 'Z', 1, 0, 500)], 1, new Set(), new Map());
    expect(first).toEqual({ reap: [], seen: new Map([[11, 500]]) });
    const second = reapDecision([p(11, 'orphan', 'Z', 1, 0, 500)], 1, new Set(), first.seen);
    expect(second).toEqual({ reap: [11], seen: new Map() });
  });

  it('does not reap a reused pid (different start time)', () => {
    const again = reapDecision([p(11, 'other', 'Z', 1, 0, 900)], 1, new Set(), new Map([[11, 500]]));
    expect(again).toEqual({ reap: [], seen: new Map([[11, 900]]) });
  });

  it('never reaps a tracked child, whatever was seen before', () => {
    expect(reapDecision([p(10, 'auraed', 'Z', 1)], 1, new Set([10]), new Map([[10, 1]])).reap).toEqual([]);
  });
});

describe('remainingProcesses', () => {
  it('excludes us, kernel threads and zombies', () => {
    const list = [
      p(1, 'init', 'S', 0),
      p(2, 'kthreadd', 'S', 0, PF_KTHREAD),
      p(3, 'rcu_gp', 'I', 2, PF_KTHREAD),
      p(50, 'sh', 'S', 1),
      p(51, 'dead', 'Z', 1),
    ];
    expect(remainingProcesses(list, 1).map((p) => p.pid)).toEqual([50]);
  });
});

function fakeProc(entries: Record<number, string | null>): ProcReader {
  return { listPids: () => Object.keys(entries).map(Number), readStat: (pid) => entries[pid] ?? null };
}

describe('createReaper', () => {
  it('waitpids exactly the orphaned zombies, one pid at a time, on the second sighting', () => {
    const reader = fakeProc({ 1: stat(1, 'init', 'S', 0), 10: stat(10, 'auraed', 'Z', 1), 11: stat(11, 'sh', 'Z', 1), 12: null });
    const exited: WaitResult = { pid: 11, status: 0, exited: true, code: 0, signaled: false, signal: null };
    const sys = fakeSyscalls({}, new Map([[11, exited]]));
    const reaper = createReaper({ reader, syscalls: sys, tracked: new Set([10]), selfPid: 1, log: createMemoryLogger() });
    expect(reaper.reapNow()).toEqual([]);
    expect(reaper.reapNow()).toEqual([exited]);
    reaper.stop();
    expect(sys.calls).toEqual([['waitpid', 11, true]]);
  });

  it('leaves a zombie that libuv reaps between two scans alone (an untracked Node child)', () => {
    const entries: Record<number, string | null> = { 30: stat(30, 'esbuild', 'Z', 1) };
    const sys = fakeSyscalls();
    const reaper = createReaper({ reader: fakeProc(entries), syscalls: sys, tracked: new Set(), selfPid: 1, log: createMemoryLogger() });
    reaper.reapNow();
    delete entries[30]; // libuv's waitpid(30) ran in the same signal dispatch
    reaper.reapNow();
    reaper.stop();
    expect(sys.calls).toEqual([]);
  });

  it('confirms a new sighting by itself shortly after', async () => {
    const reader = fakeProc({ 11: stat(11, 'sh', 'Z', 1) });
    const sys = fakeSyscalls({}, new Map([[11, { pid: 11, status: 0, exited: true, code: 0, signaled: false, signal: null }]]));
    const reaper = createReaper({ reader, syscalls: sys, tracked: new Set(), selfPid: 1, log: createMemoryLogger(), confirmMs: 5 });
    reaper.reapNow();
    await new Promise((r) => setTimeout(r, 30));
    reaper.stop();
    expect(sys.calls[0]).toEqual(['waitpid', 11, true]);
  });

  it('ignores ECHILD (collected between scan and wait) and warns on other errors', () => {
    const reader = fakeProc({ 11: stat(11, 'a', 'Z', 1), 12: stat(12, 'b', 'Z', 1) });
    const sys = fakeSyscalls({ waitpid: (pid: never) => (pid === 11 ? 'ECHILD' : 'EINVAL') });
    const log = createMemoryLogger();
    const reaper = createReaper({ reader, syscalls: sys, tracked: new Set(), selfPid: 1, log });
    reaper.reapNow();
    expect(reaper.reapNow()).toEqual([]);
    reaper.stop();
    expect(log.lines).toEqual([expect.stringMatching(/warning: reaper: waitpid\(12\) failed/)]);
  });

  it('survives an unreadable /proc', () => {
    const log = createMemoryLogger();
    const reader: ProcReader = { listPids: () => { throw new Error('ENOENT'); }, readStat: () => null };
    expect(createReaper({ reader, syscalls: fakeSyscalls(), tracked: new Set(), selfPid: 1, log }).reapNow()).toEqual([]);
    expect(log.lines[0]).toMatch(/reading \/proc failed/);
  });

  it('scanProc skips vanished processes', () => {
    expect(scanProc(fakeProc({ 5: null, 6: stat(6, 'x', 'R', 1) })).map((s) => s.pid)).toEqual([6]);
  });
});

describe('trackChild', () => {
  it('tracks from spawn until exit', () => {
    const tracked = new Set<number>();
    const child = Object.assign(new EventEmitter(), { pid: 99 });
    trackChild(tracked, child);
    expect(tracked.has(99)).toBe(true);
    child.emit('exit', 0, null);
    expect(tracked.has(99)).toBe(false);
    trackChild(tracked, Object.assign(new EventEmitter(), { pid: undefined }));
    expect(tracked.size).toBe(0);
  });
});
