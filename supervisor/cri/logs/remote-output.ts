// Output of containers that run elsewhere (a VM sandbox's run in its child node) into the same taps as this
// node's executables' output: when such a container's log file is registered, its output is followed where it
// runs (the pods runtime's followOutput: the child's ObserveService/GetLogs) and each line is handed to onLine as
// the runner would hand it, so the log file, its rotation (ReopenContainerLog) and Attach's listeners work alike.
// The follow ends with the registration (unregister, the handle's close, close).
//
// What differs from a container of this node: the child's log has lines, not the lossless pieces, so each line
// is one full ("F") record, a line over the child's 16 KiB limit is cut there (with its marker) rather than split
// into partial ("P") records, and a last line without its newline is written once the container ends.
import type { Logger } from '../../log';
import type { LogStream } from '../../observe/types';
import type { ContainerLogHandle, ContainerLogTaps } from './taps';

/**
 * Follow the output of `executable` in `cell` if it runs elsewhere, handing each line to `sink` until the stop
 * returned is called; null when it runs on this node (its output reaches the taps already).
 */
export type FollowRemoteOutput = (cell: string, executable: string, sink: (stream: LogStream, text: string) => void) => (() => void) | null;

export function withRemoteOutput(taps: ContainerLogTaps, follow: FollowRemoteOutput, log: Logger): ContainerLogTaps {
  const following = new Map<string, () => void>();
  const handles = new Map<string, ContainerLogHandle>();
  const keyOf = (cell: string, executable: string) => `${cell}\0${executable}`;
  const stop = (key: string) => {
    following.get(key)?.();
    following.delete(key);
    handles.delete(key);
  };
  return {
    subscribe: (cell, executable, listener) => taps.subscribe(cell, executable, listener),
    onLine: (cell, executable, stream, text, partial) => taps.onLine(cell, executable, stream, text, partial),
    flush: () => taps.flush(),
    get: (cell, executable) => handles.get(keyOf(cell, executable)) ?? taps.get(cell, executable),
    register(cell, executable, path): ContainerLogHandle {
      const key = keyOf(cell, executable);
      stop(key);
      const handle = taps.register(cell, executable, path);
      try {
        const stopFollowing = follow(cell, executable, (stream, text) => taps.onLine(cell, executable, stream, text, false));
        if (stopFollowing) following.set(key, stopFollowing);
      } catch (err) {
        log.warn("a container's output cannot be followed where it runs: its log file stays empty", { cell, executable, err });
      }
      const wrapped: ContainerLogHandle = {
        path: handle.path,
        reopen: () => handle.reopen(),
        close: () => {
          if (handles.get(key) === wrapped) stop(key);
          handle.close();
        },
      };
      if (following.has(key)) handles.set(key, wrapped);
      return wrapped;
    },
    unregister(cell, executable) {
      stop(keyOf(cell, executable));
      taps.unregister(cell, executable);
    },
    close() {
      for (const key of [...following.keys()]) stop(key);
      taps.close();
    },
  };
}
