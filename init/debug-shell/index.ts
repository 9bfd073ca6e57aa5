// Root shell on a device (config.debug.shell, e.g. /dev/hvc0) for tests and development:
// they use it to kill auraed, create orphans and inspect /proc. Respawned when it exits.
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { errorMessage, type Logger } from '../log';
import { trackChild } from '../reaper';

export interface DebugShellSpec {
  device: string;
  command: string;
  args: string[];
  env: Record<string, string>;
}

export function debugShellSpec(device: string): DebugShellSpec {
  return { device, command: '/bin/sh', args: [], env: { PATH: '/bin:/usr/bin', TERM: 'dumb', HOME: '/' } };
}

/** Respawn delay: short normally, doubling (to maxMs) while the shell keeps dying at once. */
export function respawnDelay(previousMs: number | undefined, ranMs: number, baseMs = 1_000, maxMs = 30_000): number {
  if (previousMs === undefined || ranMs >= 5_000) return baseMs;
  return Math.min(previousMs * 2, maxMs);
}

export interface DebugShellDeps {
  spec: DebugShellSpec;
  tracked: Set<number>;
  log: Logger;
  /** Open the device read-write; returns an fd. */
  open?(device: string): number;
  close?(fd: number): void;
  spawn?: (command: string, args: string[], options: SpawnOptions) => ChildProcess;
  now?(): number;
}

export interface DebugShell {
  start(): void;
  /**
   * Stop respawning and end the running shell (shutdown). An interactive shell ignores SIGTERM, so it gets
   * SIGHUP (a hang-up, which it honours) rather than holding the shutdown for the whole grace period.
   */
  stop(): void;
  readonly pid: number | undefined;
}

export function createDebugShell(deps: DebugShellDeps): DebugShell {
  // O_NOCTTY: PID 1 is a session leader without a terminal; opening a tty without it
  // would make the device init's controlling terminal, and ^C there would signal init.
  const open = deps.open ?? ((device: string) => openSync(device, constants.O_RDWR | constants.O_NOCTTY));
  const close = deps.close ?? closeSync;
  const spawn = deps.spawn ?? nodeSpawn;
  const now = deps.now ?? Date.now;
  const { spec, log } = deps;
  let stopped = false;
  let child: ChildProcess | undefined;
  let timer: NodeJS.Timeout | undefined;
  let delay: number | undefined;

  const start = () => {
    if (stopped || child) return;
    timer = undefined;
    let fd: number;
    try {
      fd = open(spec.device);
    } catch (err) {
      // A missing device will not appear later in a booted appliance: say so once, stop.
      log.error(`debug shell: opening ${spec.device} failed: ${errorMessage(err)}; no debug shell`);
      return;
    }
    const startedAt = now();
    let proc: ChildProcess;
    try {
      // detached: its own session and process group, so job control in the shell and
      // signals aimed at init's group stay apart.
      proc = spawn(spec.command, spec.args, { stdio: [fd, fd, fd], env: spec.env, cwd: '/', detached: true });
    } catch (err) {
      log.error(`debug shell: starting ${spec.command} failed: ${errorMessage(err)}`);
      close(fd);
      return;
    }
    // The child holds its own copies of the fd.
    try {
      close(fd);
    } catch {
      // Already closed.
    }
    child = proc;
    trackChild(deps.tracked, proc);
    log.info(`debug shell: ${spec.command} on ${spec.device} (pid ${proc.pid})`);
    let done = false;
    const onExit = (why: string) => {
      if (done) return;
      done = true;
      child = undefined;
      if (stopped) return;
      delay = respawnDelay(delay, now() - startedAt);
      log.info(`debug shell ${why}; respawning in ${delay} ms`);
      timer = setTimeout(start, delay);
      timer.unref();
    };
    proc.once('exit', (code, signal) => onExit(signal ? `killed by ${signal}` : `exited with code ${code}`));
    proc.on('error', (err) => {
      if (proc.pid === undefined) onExit(`could not be started: ${err.message}`);
    });
  };

  return {
    start() {
      log.warn(`debug shell ENABLED on ${spec.device}: an unauthenticated root shell (tests and development only)`);
      start();
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      child?.kill('SIGHUP');
    },
    get pid() {
      return child?.pid;
    },
  };
}
