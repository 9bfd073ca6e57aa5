// Messages auraed sends to aurae init over the IPC channel init opens (stdio fd 3, 'ipc'); see the shared
// contract. init imports these types too, so both sides agree on the shape.

export interface ReadyMessage {
  type: 'ready';
  node: string;
  version: string;
  /** Unix socket path, or null when that listener is disabled. */
  socket: string | null;
  /** Bound TCP address host:port, or null when disabled. */
  tcp: string | null;
}

export type PowerAction = 'poweroff' | 'reboot';

export interface PowerMessage {
  type: 'power';
  action: PowerAction;
  /** Identity (client certificate CN) of the caller that asked. */
  by: string;
  /** The caller's reason, when one was given (validated: ≤ 256 printable characters). */
  reason?: string;
}

export type AuraedToInitMessage = ReadyMessage | PowerMessage;

/** The channel to init; absent when auraed was not started by aurae init. */
export interface InitChannel {
  send(message: AuraedToInitMessage): Promise<void>;
}

/** Minimal view of `process` for the IPC channel (injectable in tests). */
export interface IpcProcess {
  send?: (message: unknown, sendHandle?: undefined, options?: object, callback?: (error: Error | null) => void) => boolean;
  connected?: boolean;
}

/** The IPC channel of `proc` if it has one (auraed under init), else null. */
export function initChannelFromProcess(proc: IpcProcess = process as IpcProcess): InitChannel | null {
  const send = proc.send;
  if (typeof send !== 'function') return null;
  return {
    send: (message) =>
      new Promise((resolve, reject) => {
        if (proc.connected === false) {
          reject(new Error('the IPC channel to aurae init is closed'));
          return;
        }
        send.call(proc, message, undefined, {}, (error) => (error ? reject(error) : resolve()));
      }),
  };
}
