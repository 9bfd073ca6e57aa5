import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { type LogFields, type Logger, createJsonLogger, silentLogger } from '../log';
import { type LogFs, nodeLogFs } from './log-fs';
import { encodeLogLine, logFilePaths, parseLogLines } from './log-files';
import { createFileLogStore } from './log-store';
import type { LogLine } from './types';

const scratch = mkdtempSync(join(tmpdir(), 'aurae-logstore-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(scratch, `t${++n}`);

function memoryLog(): { log: Logger; records: LogFields[] } {
  const records: LogFields[] = [];
  return { log: createJsonLogger({ subsystem: 'observe', level: 'debug', write: (l) => void records.push(JSON.parse(l)) }), records };
}

const fixedClock = () => new Date('2026-01-02T03:04:05.000Z');
const lines = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}`);
const texts = (got: LogLine[]) => got.map((l) => l.line);

describe('log files (pure)', () => {
  it('places files under the cell path, newest first', () => {
    expect(logFilePaths('/s/logs', 'web/cache', 'redis', 3)).toEqual(['/s/logs/web/cache/redis.log', '/s/logs/web/cache/redis.log.1', '/s/logs/web/cache/redis.log.2']);
  });

  it('round-trips lines as JSON and skips a torn last line', () => {
    const a: LogLine = { time: '2026-01-01T00:00:00.000Z', stream: 'stderr', line: 'say "hi"\ttab' };
    const text = encodeLogLine(a) + encodeLogLine({ ...a, stream: 'stdout' }) + '{"time":"2026-01-01T00:00:00.000Z","str';
    expect(encodeLogLine(a)).toBe('{"time":"2026-01-01T00:00:00.000Z","stream":"stderr","line":"say \\"hi\\"\\ttab"}\n');
    expect(parseLogLines(text)).toEqual([a, { ...a, stream: 'stdout' }]);
    expect(parseLogLines('{"time":"t","stream":"bogus","line":"x"}\nnot json\n')).toEqual([]);
  });
});

describe('createFileLogStore', () => {
  it('appends JSON lines {time, stream, line} in order and reads them back, with tail', async () => {
    const dir = freshDir();
    const store = createFileLogStore({ dir, log: silentLogger, clock: fixedClock });
    const sink = store.sink('web/cache', 'redis');
    sink.write('stdout', 'hello');
    sink.write('stderr', 'oops');
    for (const l of lines(1, 50)) sink.write('stdout', l);
    await sink.close();
    const file = join(dir, 'web', 'cache', 'redis.log');
    expect(readFileSync(file, 'utf8').split('\n')[0]).toBe('{"time":"2026-01-02T03:04:05.000Z","stream":"stdout","line":"hello"}');
    const all = await store.read('web/cache', 'redis');
    expect(all.slice(0, 2)).toEqual([
      { time: '2026-01-02T03:04:05.000Z', stream: 'stdout', line: 'hello' },
      { time: '2026-01-02T03:04:05.000Z', stream: 'stderr', line: 'oops' },
    ]);
    expect(all).toHaveLength(52);
    expect(texts(await store.read('web/cache', 'redis', 3))).toEqual(lines(48, 50));
    expect(await store.read('web/cache', 'redis', 0)).toEqual([]);
    expect(await store.read('web/cache', 'nothing')).toEqual([]);
    // A closed sink ignores further writes (the run is over).
    sink.write('stdout', 'after close');
    expect(texts(await store.read('web/cache', 'redis', 1))).toEqual(['line 50']);
  });

  it('rotates at maxBytes, keeps `files` files, and tails across them', async () => {
    const dir = freshDir();
    const store = createFileLogStore({ dir, maxBytes: 4096, files: 3, log: silentLogger, clock: fixedClock });
    const sink = store.sink('a', 'x');
    const total = 500; // ~72 bytes a line: ~36 KiB, far more than 3 files hold
    for (const l of lines(1, total)) sink.write('stdout', l);
    await sink.close();
    const files = readdirSync(join(dir, 'a')).sort();
    expect(files).toEqual(['x.log', 'x.log.1', 'x.log.2']);
    for (const f of files) expect(statSync(join(dir, 'a', f)).size).toBeLessThanOrEqual(4096);
    // What is kept is the newest, contiguous, ending with the last line.
    const kept = texts(await store.read('a', 'x'));
    const first = Number(kept[0]!.split(' ')[1]);
    expect(kept).toEqual(lines(first, total));
    expect(kept.length).toBeGreaterThan(100); // more than one file's worth
    // A tail longer than the current file reaches into the rotated ones.
    const inCurrent = parseLogLines(readFileSync(join(dir, 'a', 'x.log'), 'utf8')).length;
    expect(texts(await store.read('a', 'x', inCurrent + 10))).toEqual(lines(total - inCurrent - 9, total));
  });

  it('with one file, rotation starts the file over', async () => {
    const dir = freshDir();
    const store = createFileLogStore({ dir, maxBytes: 4096, files: 1, log: silentLogger });
    const sink = store.sink('a', 'x');
    for (const l of lines(1, 200)) sink.write('stdout', l);
    await sink.close();
    expect(readdirSync(join(dir, 'a'))).toEqual(['x.log']);
    const kept = texts(await store.read('a', 'x'));
    expect(kept[kept.length - 1]).toBe('line 200');
    expect(kept.length).toBeLessThan(200);
  });

  it('continues the existing log after a restart (new store, same files), rotation included', async () => {
    const dir = freshDir();
    const first = createFileLogStore({ dir, maxBytes: 4096, files: 2, log: silentLogger });
    const s1 = first.sink('a', 'x');
    for (const l of lines(1, 40)) s1.write('stdout', l);
    await s1.close();
    const second = createFileLogStore({ dir, maxBytes: 4096, files: 2, log: silentLogger });
    const s2 = second.sink('a', 'x');
    for (const l of lines(41, 120)) s2.write('stdout', l);
    await s2.close();
    expect(statSync(join(dir, 'a', 'x.log')).size).toBeLessThanOrEqual(4096);
    const kept = texts(await second.read('a', 'x'));
    expect(kept[kept.length - 1]).toBe('line 120');
    expect(kept).toEqual(lines(Number(kept[0]!.split(' ')[1]), 120));
  });

  it('cuts long lines at the bound with a marker', async () => {
    const store = createFileLogStore({ dir: freshDir(), lineMaxChars: 10, log: silentLogger });
    const sink = store.sink('a', 'x');
    sink.write('stdout', 'x'.repeat(25));
    await sink.close();
    expect(texts(await store.read('a', 'x'))).toEqual(['xxxxxxxxxx [truncated 15 characters]']);
  });

  it('follow sees new lines live (both runs of a restarted executable), until unsubscribed', async () => {
    const { log, records } = memoryLog();
    const store = createFileLogStore({ dir: freshDir(), log });
    const seen: string[] = [];
    const stop = store.follow('a', 'x', (l) => seen.push(`${l.stream}:${l.line}`));
    store.follow('a', 'x', () => {
      throw new Error('broken follower');
    });
    const run1 = store.sink('a', 'x');
    run1.write('stdout', 'one');
    await run1.close();
    const run2 = store.sink('a', 'x');
    run2.write('stderr', 'two');
    stop();
    run2.write('stdout', 'three');
    await run2.close();
    expect(seen).toEqual(['stdout:one', 'stderr:two']);
    expect(texts(await store.read('a', 'x'))).toEqual(['one', 'two', 'three']);
    expect(records.filter((r) => r.msg === 'log follower failed')).toHaveLength(3);
  });

  it('read() is a snapshot at call time: with follow() in the same tick, every line is seen exactly once', async () => {
    const store = createFileLogStore({ dir: freshDir(), maxBytes: 4096, log: silentLogger });
    const sink = store.sink('a', 'x');
    for (const l of lines(1, 100)) sink.write('stdout', l);
    const live: string[] = [];
    store.follow('a', 'x', (l) => live.push(l.line));
    const reading = store.read('a', 'x');
    for (const l of lines(101, 200)) sink.write('stdout', l);
    const backlog = texts(await reading);
    await sink.close();
    expect(backlog).toEqual(lines(1, 100));
    expect(live).toEqual(lines(101, 200));
  });

  it('refuses names that are not cell paths or DNS labels (no traversal)', async () => {
    const store = createFileLogStore({ dir: freshDir(), log: silentLogger });
    expect(() => store.sink('..', 'x')).toThrow(/refusing cell "\.\." executable "x"/);
    expect(() => store.sink('a', '../../etc/passwd')).toThrow(/refusing/);
    expect(() => store.follow('/abs', 'x', () => {})).toThrow(/refusing/);
    await expect(store.remove('a/../..')).rejects.toThrow(/refusing cell/);
  });

  it('remove() drops one executable, or a cell with its children, even while a sink is open', async () => {
    const dir = freshDir();
    const store = createFileLogStore({ dir, log: silentLogger });
    const open = store.sink('web', 'api');
    open.write('stdout', 'a');
    for (const [cell, exe] of [['web', 'db'], ['web/cache', 'redis'], ['other', 'x']] as const) {
      const s = store.sink(cell, exe);
      s.write('stdout', 'line');
      await s.close();
    }
    await store.remove('web', 'db');
    expect(existsSync(join(dir, 'web', 'db.log'))).toBe(false);
    expect(existsSync(join(dir, 'web', 'api.log'))).toBe(true);
    await store.remove('web');
    expect(existsSync(join(dir, 'web'))).toBe(false);
    expect(existsSync(join(dir, 'other', 'x.log'))).toBe(true);
    // The still-open sink starts a fresh file rather than failing.
    open.write('stdout', 'b');
    await open.close();
    expect(texts(await store.read('web', 'api'))).toEqual(['b']);
  });

  it('a read that fails on the disk is UNAVAILABLE and says what to check', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'a', 'x.log'), { recursive: true }); // a directory where the file should be: EISDIR
    const store = createFileLogStore({ dir, log: silentLogger });
    const err = await store.read('a', 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuraeError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/^reading the logs of a\/x \(.*x\.log\) failed \(EISDIR\): check the state disk/) });
  });
});

/** nodeLogFs with switchable failures. */
function flakyFs(): { fs: LogFs; failAppend: (code: string | null) => void; failMkdir: (code: string | null) => void; opens: () => number } {
  let appendCode: string | null = null;
  let mkdirCode: string | null = null;
  let opens = 0;
  const errno = (code: string) => Object.assign(new Error(`${code}: injected`), { code });
  return {
    fs: {
      ...nodeLogFs,
      mkdirp: async (d) => {
        if (mkdirCode) throw errno(mkdirCode);
        return nodeLogFs.mkdirp(d);
      },
      openAppend: async (p) => {
        opens++;
        const h = await nodeLogFs.openAppend(p);
        return {
          ...h,
          append: async (data) => {
            if (appendCode) throw errno(appendCode);
            return h.append(data);
          },
        };
      },
    },
    failAppend: (code) => void (appendCode = code),
    failMkdir: (code) => void (mkdirCode = code),
    opens: () => opens,
  };
}

describe('createFileLogStore on a failing disk', () => {
  it('ENOSPC: reports once, drops lines, never throws; resumes (and says how many were lost) when writing works again', async () => {
    const { log, records } = memoryLog();
    const flaky = flakyFs();
    const store = createFileLogStore({ dir: freshDir(), log, fs: flaky.fs });
    const sink = store.sink('a', 'x');
    sink.write('stdout', 'before');
    await store.flush();
    flaky.failAppend('ENOSPC');
    for (let i = 0; i < 3; i++) {
      expect(() => sink.write('stdout', `lost ${i}`)).not.toThrow();
      await store.flush(); // three separate failing writes
    }
    const warnings = records.filter((r) => r.level === 'warn');
    expect(warnings).toEqual([
      expect.objectContaining({
        msg: expect.stringMatching(/^logs of a\/x: writing .*x\.log failed \(ENOSPC\): is the state disk full or failing\?; dropping lines until writing works again$/),
        cell: 'a',
        executable: 'x',
        code: 'ENOSPC',
      }),
    ]);
    flaky.failAppend(null);
    sink.write('stdout', 'after');
    await sink.close();
    expect(records).toContainEqual(expect.objectContaining({ level: 'info', msg: 'log writing resumed', dropped: 3 }));
    expect(texts(await store.read('a', 'x'))).toEqual(['before', 'after']);
  });

  it('a directory that cannot be created is reported once too', async () => {
    const { log, records } = memoryLog();
    const flaky = flakyFs();
    flaky.failMkdir('EROFS');
    const store = createFileLogStore({ dir: freshDir(), log, fs: flaky.fs });
    const sink = store.sink('a', 'x');
    for (let i = 0; i < 5; i++) {
      sink.write('stdout', `${i}`);
      await store.flush();
    }
    await sink.close();
    expect(records.filter((r) => r.level === 'warn')).toEqual([expect.objectContaining({ code: 'EROFS' })]);
  });

  it('a disk that stops answering: queued bytes stay bounded, the excess is dropped and reported once', async () => {
    const { log, records } = memoryLog();
    let release = () => {};
    const stuck = new Promise<void>((r) => (release = r));
    const fs: LogFs = {
      ...nodeLogFs,
      openAppend: async (p) => {
        const h = await nodeLogFs.openAppend(p);
        return { ...h, append: async (data) => (await stuck, h.append(data)) };
      },
    };
    const store = createFileLogStore({ dir: freshDir(), log, fs, maxPendingBytes: 1000, clock: fixedClock });
    const sink = store.sink('a', 'x');
    sink.write('stdout', 'first'); // taken by the (stuck) writer at once
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 50; i++) sink.write('stdout', `queued ${i}`); // ~70 bytes each: ~14 fit in 1000
    expect(records.filter((r) => r.level === 'warn')).toEqual([expect.objectContaining({ code: 'LOG_BACKLOG' })]);
    release();
    await sink.close();
    const kept = texts(await store.read('a', 'x'));
    expect(kept[0]).toBe('first');
    expect(kept.length).toBeGreaterThan(5);
    expect(kept.length).toBeLessThan(30);
    expect(kept.slice(1)).toEqual(kept.slice(1).map((_, i) => `queued ${i}`)); // the oldest were kept, in order
  });

  it('closes the file once no sink or reader holds it, and reopens on the next write', async () => {
    const flaky = flakyFs();
    const store = createFileLogStore({ dir: freshDir(), log: silentLogger, fs: flaky.fs });
    const s1 = store.sink('a', 'x');
    s1.write('stdout', '1');
    s1.write('stdout', '2');
    await s1.close();
    const s2 = store.sink('a', 'x');
    s2.write('stdout', '3');
    await s2.close();
    expect(flaky.opens()).toBe(2);
  });
});

describe('log files written by hand (an older auraed or an operator)', () => {
  it('reads what is there, skipping garbage lines', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'a'), { recursive: true });
    writeFileSync(join(dir, 'a', 'x.log.1'), encodeLogLine({ time: 't1', stream: 'stdout', line: 'old' }));
    writeFileSync(join(dir, 'a', 'x.log'), `garbage\n${encodeLogLine({ time: 't2', stream: 'stderr', line: 'new' })}`);
    const store = createFileLogStore({ dir, log: silentLogger });
    expect(await store.read('a', 'x')).toEqual([
      { time: 't1', stream: 'stdout', line: 'old' },
      { time: 't2', stream: 'stderr', line: 'new' },
    ]);
  });
});
