// ACPI power button → graceful poweroff. The kernel reports the button as a key press on
// an evdev device (/dev/input/eventN); nothing else listens for it in this appliance.
import { closeSync, constants, openSync, read, readdirSync } from 'node:fs';
import path from 'node:path';
import { errorMessage, type Logger } from '../log';

/** struct input_event on x86_64: struct timeval (16) + type u16 + code u16 + value s32. */
export const INPUT_EVENT_SIZE = 24;
export const EV_KEY = 1;
export const KEY_POWER = 116;

export interface InputEvent {
  sec: number;
  usec: number;
  type: number;
  code: number;
  value: number;
}

/** Whole events in `buf`, plus the bytes of a trailing partial event. */
export function parseInputEvents(buf: Buffer): { events: InputEvent[]; rest: Buffer } {
  const events: InputEvent[] = [];
  let offset = 0;
  for (; offset + INPUT_EVENT_SIZE <= buf.length; offset += INPUT_EVENT_SIZE) {
    events.push({
      sec: Number(buf.readBigInt64LE(offset)),
      usec: Number(buf.readBigInt64LE(offset + 8)),
      type: buf.readUInt16LE(offset + 16),
      code: buf.readUInt16LE(offset + 18),
      value: buf.readInt32LE(offset + 20),
    });
  }
  return { events, rest: buf.subarray(offset) };
}

/** Key down (value 1) of KEY_POWER; auto-repeat (2) and release (0) do not count. */
export function isPowerPress(event: InputEvent): boolean {
  return event.type === EV_KEY && event.code === KEY_POWER && event.value === 1;
}

export interface PowerButtonWatcher {
  stop(): void;
  readonly devices: string[];
}

export interface PowerButtonDeps {
  log: Logger;
  onPress(device: string): void;
  dir?: string;
  /** How often to poll each device. */
  pollMs?: number;
}

/**
 * Watch every /dev/input/event* for a power key press. Devices are opened O_NONBLOCK and
 * polled: a blocking read would pin one of libuv's four threadpool threads per device
 * for the node's whole life. A missing /dev/input is normal (no ACPI, microvm) and only
 * logged at debug level.
 */
export function watchPowerButton(deps: PowerButtonDeps): PowerButtonWatcher {
  const dir = deps.dir ?? '/dev/input';
  const pollMs = deps.pollMs ?? 250;
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /^event\d+$/.test(n)).sort();
  } catch (err) {
    deps.log.debug(`power button: ${dir} not readable (${errorMessage(err)}); not watching`);
    return { stop: () => {}, devices: [] };
  }
  let stopped = false;
  const fds: number[] = [];
  const devices: string[] = [];
  for (const name of names) {
    const device = path.join(dir, name);
    let fd: number;
    try {
      fd = openSync(device, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      deps.log.debug(`power button: cannot open ${device}: ${errorMessage(err)}`);
      continue;
    }
    fds.push(fd);
    devices.push(device);
    const buf = Buffer.alloc(INPUT_EVENT_SIZE * 16);
    let pending = Buffer.alloc(0);
    const poll = () => {
      if (stopped) return;
      read(fd, buf, 0, buf.length, null, (err, n) => {
        if (stopped) return;
        if (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
            deps.log.warn(`power button: reading ${device} failed: ${err.message}; no longer watching it`);
            return;
          }
          setTimeout(poll, pollMs).unref();
          return;
        }
        if (n === 0) {
          // evdev never returns 0; anything that does (EOF) must not become a busy loop.
          setTimeout(poll, pollMs).unref();
          return;
        }
        const parsed = parseInputEvents(Buffer.concat([pending, buf.subarray(0, n)]));
        pending = Buffer.from(parsed.rest);
        if (parsed.events.some(isPowerPress)) deps.onPress(device);
        // More may be queued; read again at once.
        setImmediate(poll);
      });
    };
    poll();
  }
  if (devices.length) deps.log.debug(`power button: watching ${devices.join(', ')}`);
  return {
    devices,
    stop() {
      stopped = true;
      for (const fd of fds) {
        try {
          closeSync(fd);
        } catch {
          // Already closed.
        }
      }
    },
  };
}
