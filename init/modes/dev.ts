// Dev daemon mode: init on an ordinary host (not PID 1). Supervises auraed exactly as in
// the appliance, but never mounts, sets the hostname, configures the network, signals
// every process or reboots. It registers as a child subreaper so orphans of auraed's
// descendants come to it (and get reaped) instead of going to the host's init.
//
//   npx tsx init/main.ts --config node.json [--run-dir DIR]
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadSyscalls } from '../../native';
import { parseNodeConfigText, type NodeConfig } from '../../supervisor/config';
import { createConsoleLogger, errorMessage } from '../log';
import { createReaper, procReader } from '../reaper';
import { createAuraedService, locateAuraed, type AuraedService } from '../service';
import { DEV_SIGNALS, installSignalHandlers } from '../signals';
import { installFatalHandlers, writeStdout } from './common';

const USAGE = 'usage: init/main.ts --config NODE_CONFIG.json [--run-dir DIR]   (dev daemon mode, when not PID 1)';
const REAPER_BACKSTOP_MS = 5_000;

export async function runDevDaemon(argv: string[]): Promise<void> {
  process.title = 'aurae-init';
  const log = createConsoleLogger({ clock: () => process.uptime(), write: writeStdout, debug: process.env.AURAE_INIT_DEBUG === '1' });

  let args: { config?: string; 'run-dir'?: string; help?: boolean };
  try {
    args = parseArgs({
      args: argv,
      options: { config: { type: 'string' }, 'run-dir': { type: 'string' }, help: { type: 'boolean' } },
      strict: true,
    }).values;
  } catch (err) {
    log.error(`${errorMessage(err)}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (args.help) {
    writeStdout(`${USAGE}\n`);
    return;
  }
  if (!args.config) {
    log.error(`dev daemon mode needs --config PATH (a node config JSON file)\n${USAGE}`);
    process.exitCode = 2;
    return;
  }

  let config: NodeConfig;
  try {
    config = parseNodeConfigText(readFileSync(args.config, 'utf8'), args.config);
  } catch (err) {
    log.error(errorMessage(err));
    process.exitCode = 1;
    return;
  }

  const syscalls = loadSyscalls();
  syscalls.prctlSetChildSubreaper();

  // A run dir we made up is ours to remove on exit; one the caller named is left alone.
  const ownRunDir = args['run-dir'] === undefined;
  const runDir = path.resolve(args['run-dir'] ?? mkdtempSync(path.join(tmpdir(), 'aurae-init-')));
  mkdirSync(runDir, { recursive: true });
  const configPath = path.join(runDir, 'config.json');
  writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  log.info(`dev daemon mode (pid ${process.pid}, subreaper): run dir ${runDir}; no mounts, hostname, network or reboot`);
  if (config.debug.shell) log.info(`dev daemon mode: ignoring debug.shell (${config.debug.shell})`);

  const tracked = new Set<number>();
  const reaper = createReaper({ reader: procReader(), syscalls, tracked, selfPid: process.pid, log });
  reaper.startBackstop(REAPER_BACKSTOP_MS);

  let service: AuraedService | undefined;
  let stopping = false;
  const stopAndExit = async (code: number, why: string) => {
    if (stopping) {
      log.info(`already stopping; ignoring ${why}`);
      return;
    }
    stopping = true;
    log.info(`stopping (${why})`);
    try {
      await service?.stop(config.shutdown.graceMs);
    } catch (err) {
      log.error(`stopping auraed failed: ${errorMessage(err)}`);
    }
    reaper.reapNow();
    if (ownRunDir) rmSync(runDir, { recursive: true, force: true });
    log.info(`exiting with code ${code}`);
    process.exit(code);
  };

  installFatalHandlers(log, (reason) => void stopAndExit(1, reason));
  installSignalHandlers(DEV_SIGNALS, {
    stop: (signal) => void stopAndExit(0, `signal ${signal}`),
    reap: () => reaper.reapNow(),
  });

  service = createAuraedService({
    argv: locateAuraed(process.env, configPath),
    policy: config.supervise,
    pidFile: path.join(runDir, 'auraed.pid'),
    files: { write: (file, text) => writeFileSync(file, text), remove: (file) => rmSync(file, { force: true }) },
    tracked,
    log,
    onPower: (action, by) => {
      // No machine to power off here: poweroff ends the daemon, reboot restarts auraed.
      if (action === 'poweroff') void stopAndExit(0, `poweroff requested by ${by}`);
      else {
        log.info(`dev daemon mode: reboot requested by ${by}; restarting auraed`);
        service?.restartNow();
      }
    },
  });
  service.start();
}
