// Which signal means what, as data, plus the small installer.
//
// As PID 1 the kernel delivers only signals init handles, so each must be listed:
//   SIGTERM, SIGUSR2  → poweroff   (what `poweroff`/busybox and hypervisors send)
//   SIGINT, SIGUSR1   → reboot     (ctrl-alt-del arrives as SIGINT once CAD is off)
//   SIGCHLD           → reap orphans
//   SIGHUP            → ignored
// In dev daemon mode SIGTERM/SIGINT mean "stop auraed and exit".

export type SignalAction = 'poweroff' | 'reboot' | 'reap' | 'ignore' | 'stop';

export type SignalTable = Partial<Record<NodeJS.Signals, SignalAction>>;

export const PID1_SIGNALS: SignalTable = {
  SIGTERM: 'poweroff',
  SIGUSR2: 'poweroff',
  SIGINT: 'reboot',
  SIGUSR1: 'reboot',
  SIGCHLD: 'reap',
  SIGHUP: 'ignore',
};

export const DEV_SIGNALS: SignalTable = {
  SIGTERM: 'stop',
  SIGINT: 'stop',
  SIGCHLD: 'reap',
  SIGHUP: 'ignore',
};

export type SignalHandlers = Partial<Record<SignalAction, (signal: NodeJS.Signals) => void>>;

export interface SignalTarget {
  on(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
  off(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
}

/**
 * Install a listener per signal in `table`; the action's handler runs (a missing
 * handler means ignore). Installing a listener also replaces Node's default of exiting.
 * Returns an uninstaller.
 */
export function installSignalHandlers(table: SignalTable, handlers: SignalHandlers, target: SignalTarget = process): () => void {
  const installed: Array<[NodeJS.Signals, (signal: NodeJS.Signals) => void]> = [];
  for (const [signal, action] of Object.entries(table) as Array<[NodeJS.Signals, SignalAction]>) {
    const listener = (received: NodeJS.Signals) => handlers[action]?.(received ?? signal);
    target.on(signal, listener);
    installed.push([signal, listener]);
  }
  return () => {
    for (const [signal, listener] of installed) target.off(signal, listener);
  };
}
