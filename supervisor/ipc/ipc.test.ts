import { describe, expect, it } from 'vitest';
import { type IpcProcess, initChannelFromProcess } from './index';

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
