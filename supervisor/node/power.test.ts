import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import type { AuraedToInitMessage, InitChannel } from '../ipc';
import { silentLogger } from '../log';
import { MAX_REASON_CHARS, NOT_UNDER_INIT, createPowerControl, validateReason } from './power';

const admin = { identity: 'admin', peer: '127.0.0.1:5000', admin: true };

describe('validateReason', () => {
  it('accepts empty (as "no reason"), plain text and non-ASCII letters up to 256 characters', () => {
    expect(validateReason('')).toBeNull();
    expect(validateReason('kernel upgrade')).toBe('kernel upgrade');
    expect(validateReason('mise à jour du noyau 🚀')).toBe('mise à jour du noyau 🚀');
    expect(validateReason('x'.repeat(MAX_REASON_CHARS))).toHaveLength(256);
    // Characters, not UTF-16 units: 256 emoji are 512 units and still fine.
    expect(() => validateReason('🚀'.repeat(256))).not.toThrow();
  });

  it('rejects more than 256 characters, naming the field and the count', () => {
    expect(() => validateReason('x'.repeat(257))).toThrow(new AuraeError('INVALID_ARGUMENT', 'reason: at most 256 characters (got 257)'));
  });

  it.each([
    ['newline', 'a\nb', 2, '000A'],
    ['escape', 'ok\u001b[2J', 3, '001B'],
    ['NUL', '\u0000', 1, '0000'],
    ['DEL', 'a\u007f', 2, '007F'],
    ['bidi override', 'abc\u202e', 4, '202E'],
    ['line separator', 'a\u2028', 2, '2028'],
  ])('rejects a %s with its position', (_name, reason, position, code) => {
    try {
      validateReason(reason);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(AuraeError);
      expect((err as AuraeError).code).toBe('INVALID_ARGUMENT');
      expect((err as AuraeError).message).toBe(`reason: character ${position} (U+${code}) is not printable: use plain text on one line`);
    }
  });
});

describe('createPowerControl', () => {
  const recorder = () => {
    const sent: AuraedToInitMessage[] = [];
    const init: InitChannel = { send: async (m) => void sent.push(m) };
    return { sent, init };
  };

  it('sends {type: power, action, by} to init, with the reason only when there is one', async () => {
    const { sent, init } = recorder();
    const power = createPowerControl({ init, log: silentLogger });
    await power.request('poweroff', null, admin);
    await power.request('reboot', 'maintenance', admin);
    expect(sent).toEqual([
      { type: 'power', action: 'poweroff', by: 'admin' },
      { type: 'power', action: 'reboot', by: 'admin', reason: 'maintenance' },
    ]);
  });

  it('is FAILED_PRECONDITION when auraed does not run under init', async () => {
    const power = createPowerControl({ init: null, log: silentLogger });
    await expect(power.request('poweroff', null, admin)).rejects.toEqual(new AuraeError('FAILED_PRECONDITION', NOT_UNDER_INIT));
  });

  it('is UNAVAILABLE when the channel to init fails', async () => {
    const init: InitChannel = { send: async () => Promise.reject(new Error('channel closed')) };
    const power = createPowerControl({ init, log: silentLogger });
    await expect(power.request('reboot', null, admin)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: 'cannot reach aurae init to reboot (channel closed): retry, or check the console',
    });
  });
});
