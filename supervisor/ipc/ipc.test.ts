import { describe, expect, it } from 'vitest';
import { type IpcProcess, initChannelFromProcess, parseAuraedMessage, parseReadyLine, READY_LINE, readyLine } from './index';

describe('initChannelFromProcess', () => {
  it('is null when the process has no IPC channel (auraed not under init)', () => {
    expect(initChannelFromProcess({})).toBeNull();
  });

  it('resolves once the message was handed to the channel, rejects on error or when disconnected', async () => {
    const sent: unknown[] = [];
    const proc: IpcProcess = {
      connected: true,
      send: (message, _handle, _options, callback) => {
        sent.push(message);
        callback?.((message as { type: string }).type === 'ready' ? null : new Error('EPIPE'));
        return true;
      },
    };
    const channel = initChannelFromProcess(proc)!;
    await channel.send({ type: 'ready', node: 'n', version: '1', socket: null, tcp: '127.0.0.1:1' });
    await expect(channel.send({ type: 'power', action: 'reboot', by: 'admin' })).rejects.toThrow('EPIPE');
    proc.connected = false;
    await expect(channel.send({ type: 'power', action: 'reboot', by: 'admin' })).rejects.toThrow('the IPC channel to aurae init is closed');
    expect(sent).toHaveLength(2);
  });
});

describe('the readiness line', () => {
  it('is what init prints and what every waiter parses back, wherever it sits in the console', () => {
    const line = readyLine({ type: 'ready', node: 'aurae/web', version: '0.1.0', socket: '/run/aurae/aurae.sock', tcp: null }, 7);
    expect(READY_LINE.test(`${line}\n`)).toBe(true);
    expect(parseReadyLine(`[    1.0] init: booting\n${line}\n[    2.0] init: more\n`)).toEqual({ node: 'aurae/web', version: '0.1.0', socket: '/run/aurae/aurae.sock', tcp: null, pid: 7 });
  });

  it('refuses a console without one, or one whose JSON is not the line init prints', () => {
    expect(() => parseReadyLine('nothing here')).toThrow(/no AURAE_READY line/);
    expect(() => parseReadyLine('AURAE_READY {"node":')).toThrow(/no AURAE_READY line/);
    expect(() => parseReadyLine('AURAE_READY {"node":"n"}')).toThrow(/AURAE_READY line is malformed: version/);
  });
});

describe('parseAuraedMessage', () => {
  it('takes what auraed sends (the same schema types it) and names the field of a malformed one', () => {
    expect(parseAuraedMessage({ type: 'ready', node: 'n', version: '1', socket: null, tcp: '127.0.0.1:1' })).toMatchObject({ type: 'ready' });
    expect(parseAuraedMessage({ type: 'power', action: 'halt', by: 'admin' })).toMatch(/^action: /);
  });
});
