import { describe, expect, it } from 'vitest';
import { createJsonLogger } from './index';
import { createLogRing, truncateLine } from './log-ring';
import { RingBuffer } from './ring-buffer';

describe('RingBuffer', () => {
  it('keeps the newest items by count, oldest first', () => {
    const ring = new RingBuffer<number>(3);
    for (let i = 1; i <= 5; i++) ring.push(i);
    expect(ring.last()).toEqual([3, 4, 5]);
    expect(ring.last(2)).toEqual([4, 5]);
    expect(ring.last(0)).toEqual([]);
    expect(ring.last(10)).toEqual([3, 4, 5]);
    expect(ring.size).toBe(3);
  });

  it('also bounds the total weight, but always keeps the newest item', () => {
    const ring = new RingBuffer<string>(100, 10, (s) => s.length);
    ring.push('aaaa');
    ring.push('bbbb');
    ring.push('cccc'); // 12 > 10: 'aaaa' goes
    expect(ring.last()).toEqual(['bbbb', 'cccc']);
    ring.push('x'.repeat(50));
    expect(ring.last()).toEqual(['x'.repeat(50)]);
  });

  it('refuses a capacity below 1', () => {
    expect(() => new RingBuffer(0)).toThrow(/capacity must be an integer >= 1/);
  });
});

describe('truncateLine', () => {
  it('leaves short lines alone and cuts long ones with a marker saying how much went', () => {
    expect(truncateLine('abc', 3)).toBe('abc');
    expect(truncateLine('abcdef', 4)).toBe('abcd [truncated 2 characters]');
  });

  it('never splits a surrogate pair', () => {
    const line = `ab${'😀'}cd`; // 😀 is 2 UTF-16 units at index 2..3
    expect(truncateLine(line, 3)).toBe('ab [truncated 4 characters]');
  });
});

describe('createLogRing', () => {
  it('tees a logger: every line still reaches the original writer, and the ring keeps it without the newline', () => {
    let now = 1000;
    const ring = createLogRing({ maxLines: 2, clock: () => now++ });
    const written: string[] = [];
    const log = createJsonLogger({ subsystem: 'auraed', write: ring.tee((l) => void written.push(l)), clock: () => new Date(0) });
    log.info('one');
    log.info('two');
    log.info('three');
    expect(written).toHaveLength(3);
    expect(ring.recent().map((e) => JSON.parse(e.line).msg)).toEqual(['two', 'three']);
    expect(ring.recent(1)).toEqual([{ time: 1002, line: written[2]!.slice(0, -1) }]);
  });

  it('delivers to subscribers in order, survives a throwing subscriber, and queues lines logged from a subscriber', () => {
    const ring = createLogRing();
    const seen: string[] = [];
    ring.subscribe(() => {
      throw new Error('broken follower');
    });
    const unsubscribe = ring.subscribe((e) => {
      seen.push(e.line);
      if (e.line === 'a') ring.push('from-listener'); // re-entrant: must come after 'a' for everyone
    });
    ring.push('a');
    ring.push('b\n');
    unsubscribe();
    ring.push('c');
    expect(seen).toEqual(['a', 'from-listener', 'b']);
    expect(ring.recent().map((e) => e.line)).toEqual(['a', 'from-listener', 'b', 'c']);
  });

  it('cuts long lines', () => {
    const ring = createLogRing({ lineMaxChars: 5 });
    ring.push('0123456789');
    expect(ring.recent()[0]!.line).toBe('01234 [truncated 5 characters]');
  });
});
