// The real adapter reconcile uses to find and stop QEMU processes a previous auraed left behind: /proc for the
// identity check, QMP for the quit, SIGKILL as the last resort. These processes are not auraed's children (they
// were re-parented when the previous auraed died), so there is no exit event to wait for: polling /proc is how.
import fs from 'node:fs';
import { QmpClient } from './qmp';

export interface LeftoverControl {
  /** argv of process `pid` from /proc/PID/cmdline; null when there is no such process or it is a zombie. */
  cmdline(pid: number): string[] | null;
  /** QMP quit through `socket`; resolves false (never rejects) when QEMU could not be reached in time. */
  qmpQuit(socket: string, timeoutMs: number): Promise<boolean>;
  /** SIGKILL `pid` (an already gone pid is not an error). */
  kill(pid: number): void;
  /** Wait between polls. */
  sleep(ms: number): Promise<void>;
}

export function procLeftovers(procRoot = '/proc'): LeftoverControl {
  return {
    cmdline(pid) {
      try {
        // A zombie keeps its pid but has an empty cmdline; the state field of stat tells for sure.
        const stat = fs.readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        if (state === 'Z' || state === 'X') return null;
        const raw = fs.readFileSync(`${procRoot}/${pid}/cmdline`, 'utf8');
        const argv = raw.split('\0');
        if (argv[argv.length - 1] === '') argv.pop();
        return argv;
      } catch {
        return null; // ENOENT: no such process (or it exited between the two reads)
      }
    },
    async qmpQuit(socket, timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
      // The connection closes when QEMU exits (or is killed after the timeout), so this settles either way.
      const quit = (async () => {
        const client = await QmpClient.connect(socket, timeoutMs);
        try {
          await client.quit();
          return true as const;
        } finally {
          client.close();
        }
      })().catch(() => false as const);
      try {
        return await Promise.race([quit, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    kill(pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    },
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
}
