import { describe, expect, it } from 'vitest';
import { createWallClockNs, criLogLine, formatRfc3339Nano, joinCriLogRecords, parseCriLog, parseCriLogLine, parseRfc3339Nano } from './format';

const S = 1_000_000_000n;
/** 2025-12-03T06:39:14Z in nanoseconds. */
const T0 = 1_764_743_954n * S;

describe('formatRfc3339Nano (as Go formats time.RFC3339Nano in UTC)', () => {
  it.each([
    [0n, '1970-01-01T00:00:00Z'],
    [T0, '2025-12-03T06:39:14Z'],
    [T0 + 1n, '2025-12-03T06:39:14.000000001Z'],
    [T0 + 100_000_000n, '2025-12-03T06:39:14.1Z'],
    [T0 + 120_000_000n, '2025-12-03T06:39:14.12Z'],
    [T0 + 123_456_789n, '2025-12-03T06:39:14.123456789Z'],
    [T0 + 10n, '2025-12-03T06:39:14.00000001Z'],
    [T0 + S - 1n, '2025-12-03T06:39:14.999999999Z'],
    [-1n, '1969-12-31T23:59:59.999999999Z'],
    [-S, '1969-12-31T23:59:59Z'],
  ])('%s ns → %s', (ns, text) => {
    expect(formatRfc3339Nano(ns)).toBe(text);
  });

  it('takes a Date (milliseconds): whole seconds have no fraction, trailing zeros are trimmed', () => {
    expect(formatRfc3339Nano(new Date('2026-12-03T06:39:14.000Z'))).toBe('2026-12-03T06:39:14Z');
    expect(formatRfc3339Nano(new Date('2026-12-03T06:39:14.120Z'))).toBe('2026-12-03T06:39:14.12Z');
    expect(formatRfc3339Nano(new Date('2026-02-28T23:59:59.007Z'))).toBe('2026-02-28T23:59:59.007Z');
  });

  it('refuses a time outside the years 0000-9999', () => {
    expect(() => formatRfc3339Nano(253_402_300_800n * S)).toThrow(RangeError);
  });
});

describe('parseRfc3339Nano', () => {
  it('reads what formatRfc3339Nano writes, back to the nanosecond', () => {
    for (const ns of [0n, T0, T0 + 1n, T0 + 123_456_789n, T0 + S - 1n, -1n]) expect(parseRfc3339Nano(formatRfc3339Nano(ns))).toBe(ns);
  });

  it('takes offsets and short fractions, as kubelet (Go time.Parse) does', () => {
    expect(parseRfc3339Nano('2025-12-03T08:39:14.5+02:00')).toBe(T0 + 500_000_000n);
    expect(parseRfc3339Nano('2025-12-03T01:09:14-05:30')).toBe(T0);
  });

  it.each(['2025-12-03 06:39:14Z', '2025-12-03T06:39:14', '2025-12-03T06:39:14.Z', '2025-12-03T06:39:14.1234567891Z', '2025-02-30T00:00:00Z', '2025-12-03T24:00:00Z', '2025-12-03T06:39:14+24:00'])(
    'refuses %s',
    (text) => {
      expect(() => parseRfc3339Nano(text)).toThrow(/CRI log time/);
    },
  );
});

describe('criLogLine / parseCriLogLine', () => {
  it('formats full and partial records with the newline', () => {
    expect(criLogLine(T0 + 500_000_000n, 'stdout', false, 'hello world')).toBe('2025-12-03T06:39:14.5Z stdout F hello world\n');
    expect(criLogLine(T0, 'stderr', true, 'part')).toBe('2025-12-03T06:39:14Z stderr P part\n');
    // An empty line is still a record: the text after the tag's space is empty.
    expect(criLogLine(T0, 'stdout', false, '')).toBe('2025-12-03T06:39:14Z stdout F \n');
  });

  it('round-trips, spaces in the text included', () => {
    for (const [stream, partial, text] of [
      ['stdout', false, '  two leading spaces and a trailing one '],
      ['stderr', true, ''],
      ['stdout', true, 'ünïcødé €'],
    ] as const) {
      expect(parseCriLogLine(criLogLine(T0 + 7n, stream, partial, text))).toEqual({ timeNs: T0 + 7n, stream, partial, text });
    }
  });

  it('reads a tag list (kubelet keeps the first tag, P or F)', () => {
    expect(parseCriLogLine('2025-12-03T06:39:14Z stdout F:extra x')).toMatchObject({ partial: false, text: 'x' });
  });

  it.each([
    ['no space', '2025-12-03T06:39:14Z', /no space after the time/],
    ['bad stream', '2025-12-03T06:39:14Z stdin F x', /stream "stdin"/],
    ['no tag', '2025-12-03T06:39:14Z stdout', /no space after the stream/],
    ['bad tag', '2025-12-03T06:39:14Z stdout X x', /tag "X"/],
    ['bad time', 'yesterday stdout F x', /not an RFC 3339 time/],
  ])('refuses a record with %s', (_what, line, message) => {
    expect(() => parseCriLogLine(line)).toThrow(message);
  });

  it('parseCriLog reads a file; joinCriLogRecords joins partial lines per stream as kubelet shows them', () => {
    const file =
      criLogLine(T0, 'stdout', true, 'abc') +
      criLogLine(T0 + 1n, 'stderr', false, 'an error') +
      criLogLine(T0 + 2n, 'stdout', true, 'def') +
      criLogLine(T0 + 3n, 'stdout', false, 'ghi') +
      criLogLine(T0 + 4n, 'stdout', true, 'cut short at the end');
    const records = parseCriLog(file);
    expect(records.map((r) => [r.stream, r.partial, r.text])).toEqual([
      ['stdout', true, 'abc'],
      ['stderr', false, 'an error'],
      ['stdout', true, 'def'],
      ['stdout', false, 'ghi'],
      ['stdout', true, 'cut short at the end'],
    ]);
    expect(joinCriLogRecords(records)).toEqual([
      { timeNs: T0, stream: 'stdout', text: 'abcdefghi', complete: true },
      { timeNs: T0 + 1n, stream: 'stderr', text: 'an error', complete: true },
      { timeNs: T0 + 4n, stream: 'stdout', text: 'cut short at the end', complete: false },
    ]);
    expect(parseCriLog('')).toEqual([]);
  });
});

describe('createWallClockNs', () => {
  it('adds nanoseconds from the monotonic clock to the wall clock and never goes back between anchors', () => {
    let wall = 1_000;
    let mono = 5_000_000_000n;
    const now = createWallClockNs({ wallMs: () => wall, monoNs: () => mono });
    expect(now()).toBe(1_000_000_000n);
    mono += 1_234n;
    expect(now()).toBe(1_000_001_234n);
    // Date.now() ticks a millisecond while the monotonic clock says less has passed: still forwards.
    wall += 1;
    mono += 10n;
    expect(now()).toBe(1_000_001_244n);
  });

  it('re-anchors when the wall clock is set (drift beyond the limit)', () => {
    let wall = 1_000;
    let mono = 0n;
    const now = createWallClockNs({ wallMs: () => wall, monoNs: () => mono, maxDriftNs: 1_000_000_000n });
    wall = 3_600_000; // set forwards an hour
    mono += 5n;
    expect(now()).toBe(3_600_000_000_000n);
    mono += 7n;
    expect(now()).toBe(3_600_000_000_007n);
  });
});
