import { describe, expect, it } from 'vitest';
import { type LogFields, createJsonLogger } from '../log';
import { createEventBus } from './event-bus';
import type { StampedEvent } from './types';

const clock = () => new Date('2026-01-02T03:04:05.000Z');

describe('createEventBus', () => {
  it('stamps events with a monotonic seq from 1 and an ISO time', () => {
    const bus = createEventBus({ clock });
    const a = bus.publish({ kind: 'cell_allocated', cell: 'web' });
    const b = bus.publish({ kind: 'executable_started', cell: 'web', executable: 'api', pid: 42 });
    expect(a).toEqual({ kind: 'cell_allocated', cell: 'web', seq: 1, time: '2026-01-02T03:04:05.000Z' });
    expect(b).toMatchObject({ seq: 2, pid: 42 });
  });

  it('keeps a bounded history, oldest first', () => {
    const bus = createEventBus({ capacity: 3, clock });
    for (let i = 0; i < 5; i++) bus.publish({ kind: 'cell_allocated', cell: `c${i}` });
    expect(bus.recent().map((e) => e.seq)).toEqual([3, 4, 5]);
  });

  it('a throwing subscriber neither reaches the publisher nor stops the others, and is logged', () => {
    const records: LogFields[] = [];
    const log = createJsonLogger({ subsystem: 'observe', write: (l) => void records.push(JSON.parse(l)) });
    const bus = createEventBus({ clock, log });
    const seen: number[] = [];
    bus.subscribe(() => {
      throw new Error('boom');
    });
    bus.subscribe((e) => seen.push(e.seq));
    expect(() => bus.publish({ kind: 'cell_freed', cell: 'a' })).not.toThrow();
    expect(seen).toEqual([1]);
    expect(records).toEqual([expect.objectContaining({ level: 'error', seq: 1, kind: 'cell_freed', err: expect.objectContaining({ message: 'boom' }) })]);
  });

  it('an event published from a subscriber reaches every subscriber after the one being delivered', () => {
    const bus = createEventBus({ clock });
    const first: number[] = [];
    const second: number[] = [];
    bus.subscribe((e) => {
      first.push(e.seq);
      if (e.kind === 'executable_exited') bus.publish({ kind: 'executable_restarted', cell: e.cell, executable: e.executable, attempt: 1, delayMs: 100 });
    });
    bus.subscribe((e) => second.push(e.seq));
    bus.publish({ kind: 'executable_exited', cell: 'a', executable: 'x', pid: 1, code: 1, signal: null });
    expect(first).toEqual([1, 2]);
    expect(second).toEqual([1, 2]);
  });

  it('unsubscribe stops delivery', () => {
    const bus = createEventBus({ clock });
    const seen: StampedEvent[] = [];
    const off = bus.subscribe((e) => seen.push(e));
    bus.publish({ kind: 'cell_allocated', cell: 'a' });
    off();
    bus.publish({ kind: 'cell_allocated', cell: 'b' });
    expect(seen.map((e) => ('cell' in e ? e.cell : null))).toEqual(['a']);
  });
});
