// Which executables' output also goes to a CRI log file. A CRI container is the executable of its pod's cell that
// runs `crun run` (supervisor/pods/crun.ts); the executables' runner hands every output piece to `onLine`
// (RunnerDeps.outputTap, wired in supervisor/daemon/auraed.ts), and this table sends the pieces of the registered
// (cell, executable) pairs to their writer. The CRI mapping registers at CreateContainer, reopens at
// ReopenContainerLog and closes at RemoveContainer. Lines of anything not registered cost one Map lookup.
import type { Logger } from '../../log';
import type { LogStream } from '../../observe/types';
import { type ContainerLog, type ContainerLogOptions, openContainerLog } from './writer';

export interface ContainerLogHandle {
  readonly path: string;
  /** ReopenContainerLog: see ContainerLog.reopen (null when open again, else what failed). No-op once closed. */
  reopen(): string | null;
  /** RemoveContainer: stop writing and close the file (the file stays: kubelet removes it). Idempotent. */
  close(): void;
}

export interface ContainerLogTaps {
  /**
   * From now on, every output piece of `executable` in `cell` is also appended to `path` (absolute; the file and
   * its directories are created at once). Registering a pair again replaces its writer (the old one is closed).
   */
  register(cell: string, executable: string, path: string): ContainerLogHandle;
  /** The registration of a pair, if any (ReopenContainerLog by id after the mapping looked the pair up). */
  get(cell: string, executable: string): ContainerLogHandle | undefined;
  /** Close the pair's writer if registered (same as its handle's close()). */
  unregister(cell: string, executable: string): void;
  /**
   * Also hand every later output piece of the pair to `listener` (Attach to a container without a terminal);
   * returns the unsubscribe. Independent of register: a pair without a log file can be listened to.
   */
  subscribe(cell: string, executable: string, listener: (stream: LogStream, text: string, partial: boolean) => void): () => void;
  /** The runner's OutputTap: one piece of a line; `partial` when the next piece of `stream` continues it. Never throws. */
  onLine(cell: string, executable: string, stream: LogStream, text: string, partial: boolean): void;
  /** Write what is queued to every file (tests, shutdown). */
  flush(): void;
  /** auraed stops: close every writer; later pieces are ignored. */
  close(): void;
}

export interface ContainerLogTapsOptions extends Omit<ContainerLogOptions, 'log'> {
  log: Logger;
}

export function createContainerLogTaps(options: ContainerLogTapsOptions): ContainerLogTaps {
  const log = options.log.child({ subsystem: 'cri-logs' });
  const writers = new Map<string, ContainerLog>();
  const handles = new Map<string, ContainerLogHandle>();
  const listeners = new Map<string, Set<(stream: LogStream, text: string, partial: boolean) => void>>();
  let closed = false;
  // Cell paths and executable names never contain a NUL byte.
  const keyOf = (cell: string, executable: string) => `${cell}\0${executable}`;

  const drop = (key: string, writer: ContainerLog) => {
    if (writers.get(key) !== writer) return;
    writers.delete(key);
    handles.delete(key);
    writer.close();
  };

  return {
    register(cell, executable, path) {
      const key = keyOf(cell, executable);
      const old = writers.get(key);
      if (old) drop(key, old);
      const writer = openContainerLog(path, { ...options, log });
      const handle: ContainerLogHandle = {
        path,
        reopen: () => (writers.get(key) === writer ? writer.reopen() : `the container log ${path} is closed`),
        close: () => drop(key, writer),
      };
      if (closed) {
        writer.close();
        return handle;
      }
      writers.set(key, writer);
      handles.set(key, handle);
      return handle;
    },
    get: (cell, executable) => handles.get(keyOf(cell, executable)),
    unregister(cell, executable) {
      const key = keyOf(cell, executable);
      const writer = writers.get(key);
      if (writer) drop(key, writer);
    },
    subscribe(cell, executable, listener) {
      const key = keyOf(cell, executable);
      let set = listeners.get(key);
      if (!set) listeners.set(key, (set = new Set()));
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0 && listeners.get(key) === set) listeners.delete(key);
      };
    },
    onLine(cell, executable, stream, text, partial) {
      if (listeners.size > 0) {
        for (const listener of listeners.get(keyOf(cell, executable)) ?? []) {
          try {
            listener(stream, text, partial);
          } catch (err) {
            log.error('container output listener failed', { cell, executable, err });
          }
        }
      }
      const writer = writers.get(keyOf(cell, executable));
      if (!writer) return;
      try {
        writer.write(stream, text, partial);
      } catch (err) {
        // write() does not throw; this guards the executable's pipe against a bug here all the same.
        log.error('container log write failed', { cell, executable, err });
      }
    },
    flush() {
      for (const writer of writers.values()) writer.flush();
    },
    close() {
      closed = true;
      for (const [key, writer] of [...writers]) drop(key, writer);
    },
  };
}
