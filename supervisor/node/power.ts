// Node power control. auraed never powers off by itself: it asks aurae init (PID 1) over IPC, which owns the
// shutdown sequence (stop auraed, TERM/KILL everything, sync, unmount, reboot(2)).
import { AuraeError } from '../errors';
import type { InitChannel, PowerAction, PowerMessage } from '../ipc';
import type { Logger } from '../log';
import type { Caller } from '../server';
import { RANGES } from '../validation';

export const MAX_REASON_CHARS = RANGES.reasonChars[1];

/**
 * Control, format, surrogate, private-use and unassigned code points, and line/paragraph separators: none
 * belong in a reason that init prints on the console and in logs (they could forge or garble log lines).
 */
const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u;

/** The reason as the core takes it: null when none was given. Throws INVALID_ARGUMENT naming the field. */
export function validateReason(reason: string, field = 'reason'): string | null {
  const chars = [...reason];
  if (chars.length > MAX_REASON_CHARS) {
    throw new AuraeError('INVALID_ARGUMENT', `${field}: at most ${MAX_REASON_CHARS} characters (got ${chars.length})`);
  }
  const bad = chars.findIndex((c) => NOT_PRINTABLE.test(c));
  if (bad !== -1) {
    const code = chars[bad]!.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new AuraeError('INVALID_ARGUMENT', `${field}: character ${bad + 1} (U+${code}) is not printable: use plain text on one line`);
  }
  return reason === '' ? null : reason;
}

export const NOT_UNDER_INIT = 'auraed is not running under aurae init; stop it with SIGTERM';

export interface PowerControl {
  /** Ask init to power off or reboot; resolves once init has the request (the node goes down after the reply). */
  request(action: PowerAction, reason: string | null, caller: Caller): Promise<void>;
}

export function createPowerControl(deps: { init: InitChannel | null; log: Logger }): PowerControl {
  return {
    async request(action, reason, caller) {
      if (!deps.init) throw new AuraeError('FAILED_PRECONDITION', NOT_UNDER_INIT);
      const message: PowerMessage = { type: 'power', action, by: caller.identity, ...(reason !== null ? { reason } : {}) };
      try {
        await deps.init.send(message);
      } catch (err) {
        throw new AuraeError('UNAVAILABLE', `cannot reach aurae init to ${action} (${(err as Error).message}): retry, or check the console`, { cause: err });
      }
      deps.log.info('power request sent to init', { action, by: caller.identity, reason });
    },
  };
}
