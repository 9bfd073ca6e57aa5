import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type LeafCgroup, ExecutableRunner, spawnLauncher, systemClock } from '../../executables';
import { validateExecutable } from '../../executables/spec';
import { MemoryEventBus, MemoryLogStore } from '../../executables/testing';
import { cutMarker, LINE_LIMITS, silentLogger } from '../../log';
import { joinCriLogRecords, parseCriLog } from './format';
import { createContainerLogTaps } from './taps';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'aurae-cri-taps-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const manual = { schedule: () => {} };

function texts(file: string): [string, 'P' | 'F', string][] {
  return parseCriLog(readFileSync(file, 'utf8')).map((r) => [r.stream, r.partial ? 'P' : 'F', r.text]);
}

describe('createContainerLogTaps', () => {
  it('subscribe: listeners of a pair get its pieces (Attach), with or without a log file; unsubscribe stops them', () => {
    const taps = createContainerLogTaps({ log: silentLogger, ...manual });
    const got: string[] = [];
    const off = taps.subscribe('k8s-pod', 'c-app', (stream, text, partial) => got.push(`${stream} ${partial ? 'P' : 'F'} ${text}`));
    taps.subscribe('k8s-pod', 'c-app', () => {
      throw new Error('a listener that throws does not stop the others or the file');
    });
    taps.onLine('k8s-pod', 'c-app', 'stdout', 'one', false);
    taps.onLine('k8s-pod', 'c-other', 'stdout', 'not mine', false);
    taps.onLine('k8s-pod', 'c-app', 'stderr', 'two', true);
    off();
    taps.onLine('k8s-pod', 'c-app', 'stdout', 'after', false);
    expect(got).toEqual(['stdout F one', 'stderr P two']);
    taps.close();
  });

  it('sends the pieces of registered (cell, executable) pairs to their file, ignores the others', () => {
    const taps = createContainerLogTaps({ log: silentLogger, ...manual });
    const file = path.join(dir, 'ns_pod_uid', 'app', '0.log');
    const handle = taps.register('k8s-0123456789ab', 'c-0123456789ab', file);
    expect(handle.path).toBe(file);
    expect(taps.get('k8s-0123456789ab', 'c-0123456789ab')).toBe(handle);
    taps.onLine('k8s-0123456789ab', 'c-0123456789ab', 'stdout', 'abc', true);
    taps.onLine('k8s-0123456789ab', 'c-0123456789ab', 'stdout', 'def', false);
    taps.onLine('k8s-0123456789ab', 'c-other', 'stdout', 'not mine', false);
    taps.onLine('web', 'c-0123456789ab', 'stderr', 'not mine either', false);
    taps.onLine('k8s-0123456789ab', 'c-0123456789ab', 'stderr', 'err', false);
    taps.flush();
    expect(texts(file)).toEqual([
      ['stdout', 'P', 'abc'],
      ['stdout', 'F', 'def'],
      ['stderr', 'F', 'err'],
    ]);
    taps.close();
  });

  it('ReopenContainerLog through the handle; RemoveContainer closes it (later pieces are dropped, the file stays)', () => {
    const taps = createContainerLogTaps({ log: silentLogger, ...manual });
    const file = path.join(dir, 'app', '0.log');
    const handle = taps.register('pod', 'c', file);
    taps.onLine('pod', 'c', 'stdout', 'before rotation', false);
    taps.flush();
    renameSync(file, `${file}.1`);
    expect(handle.reopen()).toBeNull();
    taps.onLine('pod', 'c', 'stdout', 'after rotation', false);
    handle.close();
    taps.onLine('pod', 'c', 'stdout', 'after removal', false);
    taps.flush();
    expect(texts(`${file}.1`).map((r) => r[2])).toEqual(['before rotation']);
    expect(texts(file).map((r) => r[2])).toEqual(['after rotation']);
    expect(taps.get('pod', 'c')).toBeUndefined();
    expect(handle.reopen()).toMatch(/closed/);
    handle.close(); // idempotent
    taps.unregister('pod', 'c'); // nothing registered: no-op
    taps.close();
  });

  it('registering a pair again (a new attempt) closes the old writer; unregister closes the current one', () => {
    const taps = createContainerLogTaps({ log: silentLogger, ...manual });
    const first = path.join(dir, 'app', '0.log');
    const second = path.join(dir, 'app', '1.log');
    const old = taps.register('pod', 'c', first);
    taps.onLine('pod', 'c', 'stdout', 'attempt 0', false);
    taps.register('pod', 'c', second);
    taps.onLine('pod', 'c', 'stdout', 'attempt 1', false);
    expect(old.reopen()).toMatch(/closed/);
    old.close(); // must not close the new registration
    taps.onLine('pod', 'c', 'stdout', 'still attempt 1', false);
    taps.unregister('pod', 'c');
    taps.onLine('pod', 'c', 'stdout', 'dropped', false);
    taps.close();
    expect(texts(first).map((r) => r[2])).toEqual(['attempt 0']);
    expect(texts(second).map((r) => r[2])).toEqual(['attempt 1', 'still attempt 1']);
  });

  it('after close() (auraed stops) registrations are closed at once and pieces ignored', () => {
    const taps = createContainerLogTaps({ log: silentLogger, ...manual });
    const file = path.join(dir, '0.log');
    taps.register('pod', 'a', file);
    taps.onLine('pod', 'a', 'stdout', 'kept', false);
    taps.close();
    const late = taps.register('pod', 'b', path.join(dir, 'late.log'));
    taps.onLine('pod', 'b', 'stdout', 'ignored', false);
    taps.flush();
    expect(texts(file).map((r) => r[2])).toEqual(['kept']);
    expect(late.reopen()).toMatch(/closed/);
    expect(readFileSync(path.join(dir, 'late.log'), 'utf8')).toBe('');
  });
});

/** A leaf cgroup stand-in: no cgroup on a unit-test host; the process is watched through the runner's exit. */
const noLeaf: LeafCgroup = {
  dir: '/nonexistent/aurae/pod/exe.c',
  prepare: () => 'existing' as const,
  procs: () => [],
  kill: () => {},
  waitEmpty: async () => true,
  oomKills: () => 0,
  watchEvents: () => () => {},
};

/** Deadline for a condition: generous for a loaded machine; the wait ends as soon as the condition holds. */
async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a real process through the runner and spawnLauncher (aurae-exec replaced by a shell stand-in)', () => {
  it('every output line reaches the CRI log file: over-long lines in P pieces, the last line without newline P; observe still gets cut lines', async () => {
    // The stand-in for aurae-exec: skip its options up to "--", close the status descriptor (= executed), exec.
    const helper = path.join(dir, 'fake-aurae-exec');
    writeFileSync(helper, '#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\nshift\nexec 3>&-\nexec "$@"\n');
    chmodSync(helper, 0o755);
    const cap = LINE_LIMITS.outputLineBytes;
    const long = 2 * cap + 1000;
    const script = `echo out1; echo err1 >&2; head -c ${long} /dev/zero | tr '\\0' a; echo; echo; printf tail`;

    const taps = createContainerLogTaps({ log: silentLogger });
    const file = path.join(dir, 'pods', 'ns_pod_uid', 'app', '0.log');
    taps.register('k8s-pod', 'c-app', file);
    const logs = new MemoryLogStore();
    const runner = new ExecutableRunner({
      cell: 'k8s-pod',
      spec: validateExecutable({ name: 'c-app', command: '', description: '', args: ['/bin/sh', '-c', script], env: {}, cwd: '' }),
      isolation: { pid: false, mount: false, uts: false, ipc: false, network: false },
      hostname: 'k8s-pod',
      leaf: noLeaf,
      launcher: spawnLauncher,
      helper: () => helper,
      events: new MemoryEventBus(),
      logs,
      outputTap: taps,
      clock: systemClock,
      log: silentLogger,
      signal: (pid, sig) => process.kill(pid, sig),
      onChange: () => {},
    });
    await runner.start();
    // The pipes may close after the exit is handled: wait for the last record, not for the exit alone.
    const done = () => existsSync(file) && readFileSync(file, 'utf8').includes(' stdout P tail\n');
    await until(() => runner.snapshot().state === 'exited' && done(), 'the exit and the last record');
    taps.close();

    const records = parseCriLog(readFileSync(file, 'utf8'));
    const stdout = records.filter((r) => r.stream === 'stdout').map((r) => [r.partial ? 'P' : 'F', r.text.length > 20 ? `${r.text[0]}×${r.text.length}` : r.text]);
    expect(stdout).toEqual([
      ['F', 'out1'],
      ['P', `a×${cap}`],
      ['P', `a×${cap}`],
      ['F', 'a×1000'],
      ['F', ''],
      ['P', 'tail'],
    ]);
    expect(records.filter((r) => r.stream === 'stderr').map((r) => [r.partial, r.text])).toEqual([[false, 'err1']]);
    // Times are non-decreasing and the joined view is what kubelet shows.
    for (let i = 1; i < records.length; i++) if (records[i]!.stream === records[i - 1]!.stream) expect(records[i]!.timeNs >= records[i - 1]!.timeNs).toBe(true);
    expect(joinCriLogRecords(records).find((l) => l.text.startsWith('a'))).toMatchObject({ text: 'a'.repeat(long), complete: true });

    // The observe log store is unchanged: the long line is cut and marked (the tail may race the exit).
    const observed = (logs.lines.get('k8s-pod/c-app') ?? []).filter((l) => l.stream === 'stdout').map((l) => l.line);
    expect(observed.slice(0, 3)).toEqual(['out1', `${'a'.repeat(cap)}${cutMarker(long - cap)}`, '']);
  });
});
