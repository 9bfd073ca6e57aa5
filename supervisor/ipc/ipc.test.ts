import { describe, expect, it } from 'vitest';
import { type BootMessage, type InitToAuraedMessage, type IpcProcess, initChannelFromProcess, parseAuraedMessage, parseInitMessage, parseReadyLine, READY_LINE, readyLine } from './index';

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

const BOOT: BootMessage = {
  type: 'boot',
  init: {
    startedMs: 1200,
    phases: [
      { name: 'mounts', outcome: 'ok', startMs: 1300, ms: 12 },
      { name: 'debug-shell', outcome: 'skipped', startMs: 1400, ms: 0 },
    ],
    auraedStarts: 1,
    firstServingMs: null,
  },
};

describe('the boot message (init → auraed)', () => {
  it("takes init's part of the boot report and names the field of a malformed one", () => {
    expect(parseInitMessage(BOOT)).toEqual(BOOT);
    expect(parseInitMessage({ ...BOOT, init: { ...BOOT.init, firstServingMs: 4800, auraedStarts: 2 } })).toMatchObject({ init: { firstServingMs: 4800 } });
    expect(parseInitMessage({ ...BOOT, init: { ...BOOT.init, auraedStarts: 0 } })).toMatch(/^init\.auraedStarts: /);
    expect(parseInitMessage({ ...BOOT, init: { ...BOOT.init, phases: [{ name: 'x', outcome: 'done', startMs: 1, ms: 1 }] } })).toMatch(/^init\.phases\.0\.outcome: /);
    expect(parseInitMessage({ ...BOOT, init: { ...BOOT.init, startedMs: -1 } })).toMatch(/^init\.startedMs: /);
    expect(parseInitMessage({ type: 'ready' })).toEqual(expect.any(String));
  });

  it('ready may say when auraed was SERVING', () => {
    expect(parseAuraedMessage({ type: 'ready', node: 'n', version: '1', socket: null, tcp: null, servingMs: 4800 })).toMatchObject({ servingMs: 4800 });
  });
});

describe("the channel's receiving side", () => {
  function fakeProc() {
    const listeners: ((m: unknown) => void)[] = [];
    const proc: IpcProcess = { connected: true, send: () => true, on: (_event, listener) => listeners.push(listener) };
    return { proc, deliver: (m: unknown) => listeners.forEach((l) => l(m)) };
  }

  it('listens from the start and hands a late listener the latest boot message, then each new one', () => {
    const { proc, deliver } = fakeProc();
    const channel = initChannelFromProcess(proc)!;
    deliver(BOOT);
    deliver({ ...BOOT, init: { ...BOOT.init, auraedStarts: 2 } });
    const heard: InitToAuraedMessage[] = [];
    channel.onMessage!((m) => heard.push(m));
    expect(heard.map((m) => m.init.auraedStarts)).toEqual([2]);
    deliver({ ...BOOT, init: { ...BOOT.init, auraedStarts: 3 } });
    expect(heard.map((m) => m.init.auraedStarts)).toEqual([2, 3]);
  });

  it('reports a malformed message (kept until someone listens) and keeps the valid one', () => {
    const { proc, deliver } = fakeProc();
    const channel = initChannelFromProcess(proc)!;
    deliver({ type: 'boot', init: {} });
    const heard: InitToAuraedMessage[] = [];
    const malformed: string[] = [];
    channel.onMessage!((m) => heard.push(m), (why) => malformed.push(why));
    expect(malformed).toEqual([expect.stringMatching(/^init\.startedMs: .*: \{"type":"boot"/)]);
    deliver('nonsense');
    deliver(BOOT);
    expect(malformed).toHaveLength(2);
    expect(heard).toEqual([BOOT]);
  });
});
