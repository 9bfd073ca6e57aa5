// PID-1 mode: the appliance's init. One function per duty, in boot order (tini/u-root):
// signals and the fatal path first, so anything that goes wrong later shuts down cleanly.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadSyscalls, type Syscalls } from '../../native';
import { IMAGE_CONFIG_PATH, RUNTIME_CONFIG_PATH, type NodeConfig } from '../../supervisor/config';
import { resolveNodeConfig } from '../cmdline';
import { createDebugShell, debugShellSpec, type DebugShell } from '../debug-shell';
import { loadGuestConfig, realGuestModeDeps } from '../guest';
import { loadNodeIdentity, noIdentityReport } from '../identity';
import { realIdentityDeps } from '../identity/real';
import { bootClock, createConsoleLogger, errorMessage, type Logger } from '../log';
import { applyMounts, enableCgroupControllers, mountTable, unmountPlan } from '../mounts';
import { applyNetwork, networkPlan } from '../net';
import { watchPowerButton, type PowerButtonWatcher } from '../power-button';
import { createReaper, procReader, remainingProcesses, scanProc } from '../reaper';
import { createAuraedService, locateAuraed, type AuraedService } from '../service';
import { createShutdown, hangForever, killAllProcesses, type PowerAction } from '../shutdown';
import { installSignalHandlers, PID1_SIGNALS } from '../signals';
import { BOOT_MOUNTPOINT, mountStorage, STATE_MOUNTPOINT, STORAGE_STATUS_PATH } from '../state-disk';
import { realStorageDeps } from '../state-disk/real';
import { installFatalHandlers, readOrNull, sleep, writeStdout } from './common';

const AURAED_PID_FILE = '/run/aurae/auraed.pid';
const REAPER_BACKSTOP_MS = 5_000;

export async function runPid1(): Promise<void> {
  process.title = 'init';
  process.umask(0o022);
  // The kernel starts init with almost no environment; auraed and the shell need a PATH.
  process.env.PATH ??= '/bin:/usr/bin:/sbin:/usr/sbin';
  const log = createConsoleLogger({ clock: bootClock(), write: writeStdout, debug: process.env.AURAE_INIT_DEBUG === '1' });
  log.info(`aurae init starting (Node ${process.version}, pid ${process.pid})`);

  let syscalls: Syscalls;
  try {
    syscalls = loadSyscalls();
  } catch (err) {
    // Without the addon init can neither mount nor reboot; exiting would panic the
    // kernel, so park here with the reason on the console.
    log.error(`${errorMessage(err)}; cannot continue, halting (the image is missing syscalls.node)`);
    return hangForever();
  }

  const tracked = new Set<number>();
  const reader = procReader();
  const reaper = createReaper({ reader, syscalls, tracked, selfPid: process.pid, log });
  const state: { config?: NodeConfig; service?: AuraedService; shell?: DebugShell; button?: PowerButtonWatcher } = {};

  const shutdown = createShutdown({
    log,
    graceMs: () => state.config?.shutdown.graceMs ?? 5_000,
    stopAuraed: (graceMs) => state.service?.stop(graceMs) ?? Promise.resolve(),
    stopRespawners: () => {
      state.shell?.stop();
      state.button?.stop();
    },
    killAll: killAllProcesses,
    remaining: () => remainingProcesses(scanProc(reader), process.pid).map((p) => p.pid),
    reapOrphans: () => reaper.reapNow(),
    syscalls,
    // The state disk (when mounted) goes first: its filesystem must be clean before power-off.
    unmountPlan: unmountPlan([
      ...mountTable(),
      { source: 'state', target: STATE_MOUNTPOINT, fstype: 'ext4', flags: 0, data: null, mode: 0o700, description: 'node state' },
      { source: 'boot', target: BOOT_MOUNTPOINT, fstype: 'vfat', flags: 0, data: null, mode: 0o755, description: 'boot volume' },
    ]),
    clock: { now: Date.now, sleep },
    hang: hangForever,
  });
  const fatal = (reason: string) => void shutdown.request(state.config?.node.onFatal ?? 'reboot', reason);
  const power = (action: PowerAction, reason: string) => void shutdown.request(action, reason);

  installFatalHandlers(log, fatal);
  installSignalHandlers(PID1_SIGNALS, {
    poweroff: (signal) => power('poweroff', `signal ${signal}`),
    reboot: (signal) => power('reboot', `signal ${signal}`),
    reap: () => reaper.reapNow(),
  });

  try {
    mountFilesystems(syscalls, log);
    const storageDeps = realStorageDeps(syscalls, log);
    const storage = await mountStorage(storageDeps);
    mkdirSync('/run/aurae', { recursive: true, mode: 0o755 });
    writeFileSync(STORAGE_STATUS_PATH, `${JSON.stringify(storage)}\n`);
    try {
      syscalls.setCtrlAltDel(false);
    } catch (err) {
      log.warn(`ctrl-alt-del will reboot at once, not gracefully: ${errorMessage(err)}`);
    }

    // A spawned child (guest payload in fw_cfg) becomes the node its parent described; otherwise the image's.
    const guestConfig = loadGuestConfig(realGuestModeDeps(readOrNull('/proc/cmdline') ?? '', log));
    let config = guestConfig ?? readConfig(log);
    if (!config) return power('reboot', 'the node config could not be read');
    // A node booted from its image has no key in it: its identity comes from fw_cfg or its disk (init/identity).
    let servable = true;
    if (!guestConfig) {
      const identity = loadNodeIdentity(config, realIdentityDeps(storageDeps, storage.boot.device, log));
      if (identity.ok) config = identity.config;
      else {
        servable = false;
        const report = noIdentityReport(identity);
        log.error(report.message);
        log.raw(report.line);
      }
    }
    state.config = config;

    // A child's name is a path (aurae/web); its hostname is its own label.
    const hostname = config.node.name.slice(config.node.name.lastIndexOf('/') + 1);
    try {
      syscalls.sethostname(hostname);
      log.info(`hostname: ${hostname}`);
    } catch (err) {
      log.warn(`setting the hostname to ${hostname} failed: ${errorMessage(err)}`);
    }
    applyNetwork(networkPlan(config.network), { syscalls, log });
    mkdirSync('/run/aurae', { recursive: true, mode: 0o755 });
    writeFileSync(RUNTIME_CONFIG_PATH, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });

    reaper.reapNow();
    reaper.startBackstop(REAPER_BACKSTOP_MS);
    state.button = watchPowerButton({ log, onPress: (device) => power('poweroff', `power button (${device})`) });
    if (config.debug.shell) {
      state.shell = createDebugShell({ spec: debugShellSpec(config.debug.shell), tracked, log });
      state.shell.start();
    }

    // Without an identity nothing privileged runs: no auraed (the debug shell, the power button and signals still
    // work). PID 1 must not exit with nothing left to keep it busy (the kernel would panic): it stays.
    if (!servable) return hangForever();
    state.service = createAuraedService({
      argv: locateAuraed(process.env, RUNTIME_CONFIG_PATH),
      policy: config.supervise,
      pidFile: AURAED_PID_FILE,
      files: { write: (path, text) => writeFileSync(path, text), remove: (path) => rmSync(path, { force: true }) },
      tracked,
      log,
      onPower: (action, by, reason) => power(action, `requested by ${by} via auraed${reason ? `: ${reason}` : ''}`),
    });
    state.service.start();
  } catch (err) {
    log.error(`boot failed: ${(err as Error)?.stack ?? errorMessage(err)}`);
    fatal(`boot failed: ${errorMessage(err)}`);
  }
}

function mountFilesystems(syscalls: Syscalls, log: Logger): void {
  applyMounts(mountTable(), {
    syscalls,
    mkdir: (path, mode) => mkdirSync(path, { recursive: true, mode }),
    readMountinfo: () => readOrNull('/proc/self/mountinfo'),
    log,
  });
  enableCgroupControllers({
    readFile: (path) => readFileSync(path, 'utf8'),
    writeFile: (path, text) => writeFileSync(path, text),
    log,
  });
}

/** The image config with the kernel command line applied; null (logged) when unusable. */
function readConfig(log: Logger): NodeConfig | null {
  try {
    const text = readFileSync(IMAGE_CONFIG_PATH, 'utf8');
    return resolveNodeConfig(text, IMAGE_CONFIG_PATH, readOrNull('/proc/cmdline') ?? '', log);
  } catch (err) {
    log.error(`${errorMessage(err)}\nthe image's ${IMAGE_CONFIG_PATH} must be a valid node config; rebuild the image`);
    return null;
  }
}
