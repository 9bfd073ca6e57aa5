import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Logger } from '../../log';
import { parseCriLog } from './format';
import { type ContainerLogFs, containerLogPath, MAX_PENDING_BYTES, nodeContainerLogFs, openContainerLog, RETRY_AFTER_MS } from './writer';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'aurae-cri-logs-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A logger that keeps what was logged. */
function recordingLog(): Logger & { records: { level: string; msg: string; fields?: Record<string, unknown> }[] } {
  const records: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const log = {
    records,
    debug: (msg: string, fields?: Record<string, unknown>) => void records.push({ level: 'debug', msg, fields }),
    info: (msg: string, fields?: Record<string, unknown>) => void records.push({ level: 'info', msg, fields }),
    warn: (msg: string, fields?: Record<string, unknown>) => void records.push({ level: 'warn', msg, fields }),
    error: (msg: string, fields?: Record<string, unknown>) => void records.push({ level: 'error', msg, fields }),
    child: () => log,
  };
  return log;
}

let tick = 0n;
/** A clock that steps one microsecond per record, from 2025-12-03T06:39:14Z. */
const clock = () => 1_764_743_954_000_000_000n + (tick += 1000n);

/** The texts of the records in `file`, with their stream and tag. */
function records(file: string): [string, 'P' | 'F', string][] {
  return parseCriLog(readFileSync(file, 'utf8')).map((r) => [r.stream, r.partial ? 'P' : 'F', r.text]);
}

/** Manual scheduling: queued records are written only by flush(), or when the queue is full. */
const manual = { schedule: () => {} };

describe('openContainerLog', () => {
  it('creates the directories (0755) and the file (0640) at once, appends records in the CRI format', () => {
    const file = path.join(dir, 'pods', 'ns_pod_uid', 'app', '0.log');
    const log = recordingLog();
    const w = openContainerLog(file, { log, clock, ...manual });
    expect(existsSync(file)).toBe(true);
    expect(statSync(path.dirname(file)).mode & 0o777 & ~0o755).toBe(0);
    expect(statSync(file).mode & 0o777 & ~0o640).toBe(0);
    expect(statSync(file).mode & 0o600).toBe(0o600);
    w.write('stdout', 'hello', false);
    w.write('stderr', 'oops', false);
    w.flush();
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^2025-12-03T06:39:14\.\d+Z stdout F hello\n2025-12-03T06:39:14\.\d+Z stderr F oops\n$/);
    w.close();
    expect(log.records).toEqual([]);
  });

  it('appends to an existing file (an auraed restart keeps what kubelet has not rotated)', () => {
    const file = path.join(dir, '0.log');
    writeFileSync(file, '2025-12-03T06:39:14Z stdout F before\n');
    const w = openContainerLog(file, { log: recordingLog(), clock, ...manual });
    w.write('stdout', 'after', false);
    w.close();
    expect(records(file)).toEqual([
      ['stdout', 'F', 'before'],
      ['stdout', 'F', 'after'],
    ]);
  });

  it('writes partial lines as P records up to the F one', () => {
    const file = path.join(dir, '0.log');
    const w = openContainerLog(file, { log: recordingLog(), clock, ...manual });
    w.write('stdout', 'abc', true);
    w.write('stderr', 'between', false);
    w.write('stdout', 'def', false);
    w.close();
    expect(records(file)).toEqual([
      ['stdout', 'P', 'abc'],
      ['stderr', 'F', 'between'],
      ['stdout', 'F', 'def'],
    ]);
  });

  it('by default writes the records of one event-loop turn after it (one write for many)', async () => {
    const file = path.join(dir, '0.log');
    const writes: string[] = [];
    const fs: ContainerLogFs = { ...nodeContainerLogFs, write: (fd, data) => (writes.push(data), nodeContainerLogFs.write(fd, data)) };
    const w = openContainerLog(file, { log: recordingLog(), clock, fs });
    for (let i = 0; i < 100; i++) w.write('stdout', `line ${i}`, false);
    expect(readFileSync(file, 'utf8')).toBe('');
    await new Promise((r) => setImmediate(r));
    expect(records(file)).toHaveLength(100);
    expect(writes).toHaveLength(1);
    w.close();
  });

  it('bounded memory: a full queue is written at once, without waiting for the turn to end', () => {
    const file = path.join(dir, '0.log');
    const w = openContainerLog(file, { log: recordingLog(), clock, ...manual });
    const piece = 'x'.repeat(1024);
    for (let i = 0; i < 200; i++) w.write('stdout', piece, false);
    // Nothing was flushed by hand: everything but the last (partly filled) queue is on disk already.
    const onDisk = records(file).length;
    expect(onDisk).toBeGreaterThan(200 - MAX_PENDING_BYTES / 1024);
    w.flush();
    expect(records(file)).toHaveLength(200);
    w.close();
  });

  it('rotation: kubelet renames the file, reopen() starts a new one at the path; queued records go to the old one', () => {
    const file = path.join(dir, 'app', '0.log');
    const w = openContainerLog(file, { log: recordingLog(), clock, ...manual });
    w.write('stdout', 'one', false);
    w.flush();
    renameSync(file, `${file}.20251203-063914`);
    w.write('stdout', 'two', false); // written before ReopenContainerLog: belongs to the rotated file
    expect(w.reopen()).toBeNull();
    w.write('stdout', 'three', false);
    w.close();
    expect(records(`${file}.20251203-063914`).map((r) => r[2])).toEqual(['one', 'two']);
    expect(records(file).map((r) => r[2])).toEqual(['three']);
  });

  it('a directory that vanishes: writing never throws; reopen() creates it again', () => {
    const podDir = path.join(dir, 'ns_pod_uid');
    const file = path.join(podDir, 'app', '0.log');
    const log = recordingLog();
    const w = openContainerLog(file, { log, clock, ...manual });
    rmSync(podDir, { recursive: true });
    // The open descriptor still takes the record (an unlinked file), as containerd's would.
    expect(() => {
      w.write('stdout', 'lost with the directory', false);
      w.flush();
    }).not.toThrow();
    expect(w.reopen()).toBeNull();
    w.write('stdout', 'after', false);
    w.close();
    expect(records(file).map((r) => r[2])).toEqual(['after']);
    expect(log.records).toEqual([]);
  });

  it('an open that fails is logged once; records are dropped; reopen() reports it, then succeeds once fixed', () => {
    const blocker = path.join(dir, 'pod');
    writeFileSync(blocker, 'a file where the log directory should be');
    const file = path.join(blocker, 'app', '0.log');
    const log = recordingLog();
    let ms = 0;
    const w = openContainerLog(file, { log, clock, now: () => ms, ...manual });
    expect(log.records).toHaveLength(1);
    expect(log.records[0]).toMatchObject({ level: 'warn', msg: expect.stringMatching(/container log .*0\.log: opening failed \((ENOTDIR|EEXIST)/) });
    w.write('stdout', 'dropped', false);
    w.flush();
    ms += RETRY_AFTER_MS; // the retry fails again: still one report
    w.write('stdout', 'dropped too', false);
    w.flush();
    expect(log.records).toHaveLength(1);
    expect(w.reopen()).toMatch(/^opening .*0\.log failed \((ENOTDIR|EEXIST)/);
    expect(log.records).toHaveLength(2); // an explicit reopen reports its own failure
    rmSync(blocker);
    expect(w.reopen()).toBeNull();
    w.write('stdout', 'kept', false);
    w.close();
    expect(records(file).map((r) => r[2])).toEqual(['kept']);
    expect(log.records[2]).toMatchObject({ level: 'info', msg: expect.stringMatching(/writing works again/) });
  });

  it('a failing disk: reported once, records dropped, retried after a pause, recovery logged with the count', () => {
    const file = path.join(dir, '0.log');
    const log = recordingLog();
    let full = false;
    let ms = 0;
    const fs: ContainerLogFs = {
      ...nodeContainerLogFs,
      write(fd, data) {
        if (full) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        nodeContainerLogFs.write(fd, data);
      },
    };
    const w = openContainerLog(file, { log, clock, fs, now: () => ms, ...manual });
    w.write('stdout', 'a', false);
    w.flush();
    full = true;
    w.write('stdout', 'b', false);
    w.flush(); // fails: reported, descriptor closed
    w.write('stdout', 'c', false);
    w.flush(); // within the pause: dropped without trying
    full = false;
    w.write('stdout', 'd', false);
    w.flush(); // still within the pause
    ms += RETRY_AFTER_MS;
    w.write('stdout', 'e', false);
    w.flush(); // reopens and writes
    w.close();
    expect(records(file).map((r) => r[2])).toEqual(['a', 'e']);
    expect(log.records.map((r) => [r.level, r.fields?.dropped])).toEqual([
      ['warn', undefined],
      ['info', 3],
    ]);
    expect(log.records[0]!.msg).toMatch(/writing failed \(ENOSPC/);
  });

  it('close() writes what is queued; later writes and reopens are ignored; close is idempotent', () => {
    const file = path.join(dir, '0.log');
    const w = openContainerLog(file, { log: recordingLog(), clock, ...manual });
    w.write('stdout', 'last', false);
    w.close();
    w.close();
    w.write('stdout', 'ignored', false);
    w.flush();
    expect(w.reopen()).toMatch(/closed/);
    expect(records(file).map((r) => r[2])).toEqual(['last']);
  });

  it('refuses a relative path (a bug in the caller)', () => {
    expect(() => openContainerLog('relative/0.log', { log: recordingLog() })).toThrow(/not absolute/);
  });
});

describe('containerLogPath (kubelet log_directory + log_path)', () => {
  it('joins them; no log_path means no log file', () => {
    expect(containerLogPath('/var/log/pods/ns_pod_uid', 'app/0.log')).toBe('/var/log/pods/ns_pod_uid/app/0.log');
    expect(containerLogPath('/var/log/pods/ns_pod_uid/', 'app_0.log')).toBe('/var/log/pods/ns_pod_uid/app_0.log');
    expect(containerLogPath('/var/log/pods/x', '')).toBeNull();
    expect(containerLogPath('', '')).toBeNull();
  });

  it('refuses a relative log_directory and a log_path leaving it, naming the field', () => {
    expect(() => containerLogPath('', 'app/0.log')).toThrow(/^log_directory: "" must be an absolute path/);
    expect(() => containerLogPath('var/log', 'app/0.log')).toThrow(/^log_directory:/);
    expect(() => containerLogPath('/var/log/pods/x', '../../etc/passwd')).toThrow(/^log_path: "..\/..\/etc\/passwd" must name a file inside log_directory/);
    expect(() => containerLogPath('/var/log/pods/x', 'app/')).toThrow(/^log_path:/);
    expect(() => containerLogPath('/var/log/pods/x', 'a\0b')).toThrow(/^log_path: must not contain a NUL byte/);
  });
});
