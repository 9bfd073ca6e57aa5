import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMemoryLogger } from '../log';
import { EV_KEY, INPUT_EVENT_SIZE, isPowerPress, KEY_POWER, parseInputEvents, watchPowerButton } from './index';

function event(type: number, code: number, value: number, sec = 1, usec = 2): Buffer {
  const buf = Buffer.alloc(INPUT_EVENT_SIZE);
  buf.writeBigInt64LE(BigInt(sec), 0);
  buf.writeBigInt64LE(BigInt(usec), 8);
  buf.writeUInt16LE(type, 16);
  buf.writeUInt16LE(code, 18);
  buf.writeInt32LE(value, 20);
  return buf;
}

describe('parseInputEvents', () => {
  it('decodes 24-byte input_event records', () => {
    const { events, rest } = parseInputEvents(Buffer.concat([event(EV_KEY, KEY_POWER, 1, 1700000000, 123456), event(0, 0, 0)]));
    expect(events).toEqual([
      { sec: 1700000000, usec: 123456, type: EV_KEY, code: KEY_POWER, value: 1 },
      { sec: 1, usec: 2, type: 0, code: 0, value: 0 },
    ]);
    expect(rest.length).toBe(0);
  });

  it('keeps a trailing partial record for the next read', () => {
    const whole = event(EV_KEY, KEY_POWER, 1);
    const first = parseInputEvents(Buffer.concat([event(0, 0, 0), whole.subarray(0, 10)]));
    expect(first.events).toHaveLength(1);
    expect(first.rest.length).toBe(10);
    const second = parseInputEvents(Buffer.concat([first.rest, whole.subarray(10)]));
    expect(second.events.map(isPowerPress)).toEqual([true]);
  });

  it('reads negative values', () => {
    expect(parseInputEvents(event(3, 0, -5)).events[0]!.value).toBe(-5);
  });
});

describe('isPowerPress', () => {
  it('is a KEY_POWER key-down only', () => {
    const e = (type: number, code: number, value: number) => ({ sec: 0, usec: 0, type, code, value });
    expect(isPowerPress(e(EV_KEY, KEY_POWER, 1))).toBe(true);
    expect(isPowerPress(e(EV_KEY, KEY_POWER, 0))).toBe(false); // release
    expect(isPowerPress(e(EV_KEY, KEY_POWER, 2))).toBe(false); // auto-repeat
    expect(isPowerPress(e(EV_KEY, 28, 1))).toBe(false); // KEY_ENTER
    expect(isPowerPress(e(0, KEY_POWER, 1))).toBe(false); // EV_SYN
  });
});

describe('watchPowerButton', () => {
  it('is quiet (debug only) when /dev/input does not exist', () => {
    const log = createMemoryLogger();
    const watcher = watchPowerButton({ log, onPress: () => {}, dir: '/nonexistent/input' });
    expect(watcher.devices).toEqual([]);
    expect(log.lines).toEqual([expect.stringMatching(/debug: power button: \/nonexistent\/input not readable/)]);
  });

  it('reports a press read from an event device', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'aurae-input-'));
    try {
      // A regular file stands in for the evdev node: same bytes, read the same way.
      writeFileSync(path.join(dir, 'event0'), Buffer.concat([event(EV_KEY, KEY_POWER, 1), event(0, 0, 0)]));
      writeFileSync(path.join(dir, 'mouse0'), 'ignored');
      const pressed: string[] = [];
      const watcher = watchPowerButton({ log: createMemoryLogger(), onPress: (d) => pressed.push(d), dir, pollMs: 10 });
      expect(watcher.devices).toEqual([path.join(dir, 'event0')]);
      await new Promise((r) => setTimeout(r, 100));
      watcher.stop();
      expect(pressed).toEqual([path.join(dir, 'event0')]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
