// PID-1 mode: the appliance's init. The boot is a table of named phases (BOOT_PHASES, run by supervisor/phases,
// each logged once with its duration), one function per duty (tini/u-root/Talos): signals and the fatal path are
// installed first, so anything that goes wrong later shuts down cleanly.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadSyscalls, type Syscalls } from '../../native';
import { need, PhaseError, processStartMs, runPhases, type Phase, type PhaseResult } from '../../supervisor/phases';
import { delegateRootControllers } from '../../supervisor/cgroup/delegation';
import { nodeCgroupFs } from '../../supervisor/cgroup/fs';
import { IMAGE_CONFIG_PATH, RUNTIME_CONFIG_PATH, type NodeConfig } from '../../supervisor/config';
import { AURAED_PID_FILE, RUN_DIR, STORAGE_STATUS_PATH } from '../../supervisor/config/node-paths';
import { childFilesConfig, createBlesser, inspectBootSlot, type Blesser } from '../bless';
import { realBlessDeps } from '../bless/real';
import { resolveNodeConfig } from '../cmdline';
import { createDebugShell, debugShellSpec } from '../debug-shell';
import { loadGuestConfig, realGuestModeDeps } from '../guest';
import { loadNodeIdentity, noIdentityReport } from '../identity';
import { realIdentityDeps } from '../identity/real';
import { bootClock, createConsoleLogger, errorMessage, type Logger } from '../log';
import { applyMounts, mountTable, unmountPlan } from '../mounts';
import { applyNetwork, networkPlan } from '../net';
import { watchPowerButton } from '../power-button';
import { createReaper, procReader, remainingProcesses, scanProc, type ProcReader, type Reaper } from '../reaper';
import { createAuraedService, locateAuraed, type AuraedService } from '../service';
import { createShutdown, hangForever, killAllProcesses, type PowerAction, type Shutdown } from '../shutdown';
import { installSignalHandlers, PID1_SIGNALS } from '../signals';
import { BOOT_MOUNTPOINT, mountStorage, STATE_MOUNTPOINT, type StorageDeps, type StorageStatus } from '../state-disk';
import { realStorageDeps } from '../state-disk/real';
import { installFatalHandlers, readOrNull, sleep, writeStdout } from './common';

const REAPER_BACKSTOP_MS = 5_000;

/**
 * What the boot phases share. Each optional field is set once, by the phase named beside it; the shutdown reads
 * config, respawners and service whenever it comes (it may come in the middle of the boot).
 */
interface BootContext {
  readonly syscalls: Syscalls;
  readonly log: Logger;
  /** Children Node spawned (the reaper leaves these to libuv). */
  readonly tracked: Set<number>;
  readonly reaper: Reaper;
  /** Start the one graceful shutdown path. */
  readonly power: (action: PowerAction, reason: string) => void;
  /** 'storage' */
  storageDeps?: StorageDeps;
  storage?: StorageStatus;
  /** 'config': the node config; unset when it could not be read (the node reboots). */
  config?: NodeConfig;
  /** 'config': a spawned child, configured (identity included) by its parent's payload. */
  guest: boolean;
  /** 'identity': false when the node has no identity: nothing privileged runs. */
  servable: boolean;
  /** 'power-button', 'debug-shell': stopped first at shutdown so nothing respawns. */
  readonly respawners: { stop(): void }[];
  /** 'auraed' */
  service?: AuraedService;
  /** 'boot-slot': blesses this boot's entry once auraed has served (init/bless). */
  blesser?: Blesser;
}

const configured = (ctx: BootContext) => ctx.config !== undefined;

/** The boot, in order. The signals and the fatal path are installed before it, so a failing phase shuts down cleanly. */
const BOOT_PHASES: readonly Phase<BootContext>[] = [
  { name: 'mounts', run: mountFilesystems },
  { name: 'storage', run: mountStorageVolumes },
  { name: 'ctrl-alt-del', run: disableCtrlAltDel },
  { name: 'config', run: loadConfig },
  { name: 'identity', when: (c) => configured(c) && !c.guest, run: loadIdentity },
  { name: 'hostname', when: configured, run: setHostname },
  { name: 'network', when: configured, run: (c) => void applyNetwork(networkPlan(need(c, 'config').network), c) },
  { name: 'boot-slot', when: configured, run: inspectSlot },
  { name: 'runtime-config', when: configured, run: writeRuntimeConfig },
  { name: 'reaper', when: configured, run: startReaper },
  { name: 'power-button', when: configured, run: startPowerButton },
  { name: 'debug-shell', when: (c) => Boolean(c.config?.debug.shell), run: startDebugShell },
  { name: 'auraed', when: (c) => configured(c) && c.servable, run: superviseAuraed },
];

export async function runPid1(): Promise<void> {
  const log = startConsole();
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
  const ctx: BootContext = {
    syscalls,
    log,
    tracked,
    reaper: createReaper({ reader, syscalls, tracked, selfPid: process.pid, log }),
    power: (action, reason) => void shutdown.request(action, reason),
    guest: false,
    servable: true,
    respawners: [],
  };
  const shutdown = createPid1Shutdown(ctx, reader);
  const fatal = (reason: string) => void shutdown.request(ctx.config?.node.onFatal ?? 'reboot', reason);
  installFatalHandlers(log, fatal);
  installSignalHandlers(PID1_SIGNALS, {
    poweroff: (signal) => ctx.power('poweroff', `signal ${signal}`),
    reboot: (signal) => ctx.power('reboot', `signal ${signal}`),
    reap: () => ctx.reaper.reapNow(),
  });

  // Taken first: when Node started as /init, on the clock the phases use (the kernel's time to /init).
  const startedMs = processStartMs();
  let phases: PhaseResult[];
  try {
    phases = await runPhases(BOOT_PHASES, ctx, log);
  } catch (err) {
    const cause = err instanceof PhaseError ? err.cause : err;
    log.error(`boot failed: ${(cause as Error)?.stack ?? errorMessage(cause)}`);
    fatal(`boot failed: ${errorMessage(err)}`);
    return;
  }
  // The boot report's first part: auraed serves it (Discover), this one and every restarted one.
  ctx.service?.reportBoot({ startedMs: Math.round(startedMs), phases });
  // Without an identity nothing privileged runs: no auraed (the debug shell, the power button and signals still
  // work). PID 1 must not exit with nothing left to keep it busy (the kernel would panic): it stays.
  if (configured(ctx) && !ctx.servable) return hangForever();
}

/** Process basics and the console logger; says init is starting. */
function startConsole(): Logger {
  process.title = 'init';
  process.umask(0o022);
  // The kernel starts init with almost no environment; auraed and the shell need a PATH.
  process.env.PATH ??= '/bin:/usr/bin:/sbin:/usr/sbin';
  const log = createConsoleLogger({ clock: bootClock(), write: writeStdout, debug: process.env.AURAE_INIT_DEBUG === '1' });
  log.info(`aurae init starting (Node ${process.version}, pid ${process.pid})`);
  return log;
}

/** The one shutdown path, reading what the boot has started so far. */
function createPid1Shutdown(ctx: BootContext, reader: ProcReader): Shutdown {
  return createShutdown({
    log: ctx.log,
    graceMs: () => ctx.config?.shutdown.graceMs ?? 5_000,
    stopAuraed: (graceMs) => ctx.service?.stop(graceMs) ?? Promise.resolve(),
    stopRespawners: () => {
      ctx.respawners.forEach((r) => r.stop());
      ctx.blesser?.stop(); // no blessing or deadline reboot while the node goes down
    },
    killAll: killAllProcesses,
    remaining: () => remainingProcesses(scanProc(reader), process.pid).map((p) => p.pid),
    reapOrphans: () => ctx.reaper.reapNow(),
    syscalls: ctx.syscalls,
    // The state disk (when mounted) goes first: its filesystem must be clean before power-off.
    unmountPlan: unmountPlan([
      ...mountTable(),
      { source: 'state', target: STATE_MOUNTPOINT, fstype: 'ext4', flags: 0, data: null, mode: 0o700, description: 'node state' },
      { source: 'boot', target: BOOT_MOUNTPOINT, fstype: 'vfat', flags: 0, data: null, mode: 0o755, description: 'boot volume' },
    ]),
    clock: { now: Date.now, sleep },
    hang: hangForever,
  });
}

function mountFilesystems({ syscalls, log }: BootContext): void {
  applyMounts(mountTable(), {
    syscalls,
    mkdir: (path, mode) => mkdirSync(path, { recursive: true, mode }),
    readMountinfo: () => readOrNull('/proc/self/mountinfo'),
    log,
  });
  delegateRootControllers({ fs: nodeCgroupFs, log });
}

/** The boot volume and the state volume (never throws for a missing disk); the outcome goes to STORAGE_STATUS_PATH for auraed. */
async function mountStorageVolumes(ctx: BootContext): Promise<void> {
  ctx.storageDeps = realStorageDeps(ctx.syscalls, ctx.log);
  ctx.storage = await mountStorage(ctx.storageDeps);
  mkdirSync(RUN_DIR, { recursive: true, mode: 0o755 });
  writeFileSync(STORAGE_STATUS_PATH, `${JSON.stringify(ctx.storage)}\n`);
}

/** Ctrl-Alt-Del becomes SIGINT to init (a graceful reboot) instead of an immediate one. */
function disableCtrlAltDel({ syscalls, log }: BootContext): void {
  try {
    syscalls.setCtrlAltDel(false);
  } catch (err) {
    log.warn(`ctrl-alt-del will reboot at once, not gracefully: ${errorMessage(err)}`);
  }
}

/** A spawned child (guest payload in fw_cfg) becomes the node its parent described; otherwise the image's. Unreadable: reboot. */
function loadConfig(ctx: BootContext): void {
  const guestConfig = loadGuestConfig(realGuestModeDeps(readOrNull('/proc/cmdline') ?? '', ctx.log));
  const config = guestConfig ?? readConfig(ctx.log);
  if (!config) return ctx.power('reboot', 'the node config could not be read');
  ctx.config = config;
  ctx.guest = guestConfig !== null;
}

/** A node booted from its image has no key in it: its identity comes from fw_cfg or its disk (init/identity). */
function loadIdentity(ctx: BootContext): void {
  const storage = need(ctx, 'storage');
  const identity = loadNodeIdentity(need(ctx, 'config'), realIdentityDeps(need(ctx, 'storageDeps'), storage.boot.device, ctx.log));
  if (identity.ok) {
    ctx.config = identity.config;
    return;
  }
  ctx.servable = false;
  const report = noIdentityReport(identity);
  ctx.log.error(report.message);
  ctx.log.raw(report.line);
}

/** A child's name is a path (aurae/web); its hostname is its own label. */
function setHostname(ctx: BootContext): void {
  const name = need(ctx, 'config').node.name;
  const hostname = name.slice(name.lastIndexOf('/') + 1);
  try {
    ctx.syscalls.sethostname(hostname);
    ctx.log.info(`hostname: ${hostname}`);
  } catch (err) {
    ctx.log.warn(`setting the hostname to ${hostname} failed: ${errorMessage(err)}`);
  }
}

/** The resolved config (identity paths included) where auraed reads it. */
function writeRuntimeConfig(ctx: BootContext): void {
  mkdirSync(RUN_DIR, { recursive: true, mode: 0o755 });
  writeFileSync(RUNTIME_CONFIG_PATH, `${JSON.stringify(need(ctx, 'config'), null, 2)}\n`, { mode: 0o600 });
}

function startReaper({ reaper }: BootContext): void {
  reaper.reapNow();
  reaper.startBackstop(REAPER_BACKSTOP_MS);
}

function startPowerButton(ctx: BootContext): void {
  ctx.respawners.push(watchPowerButton({ log: ctx.log, onPress: (device) => ctx.power('poweroff', `power button (${device})`) }));
}

function startDebugShell(ctx: BootContext): void {
  const shell = createDebugShell({ spec: debugShellSpec(need(ctx, 'config').debug.shell!), tracked: ctx.tracked, log: ctx.log });
  ctx.respawners.push(shell);
  shell.start();
}

/** The boot slot this node runs (init/bless): reported for auraed, children pointed at its files, blessing armed. */
function inspectSlot(ctx: BootContext): void {
  const config = need(ctx, 'config');
  const deps = realBlessDeps(ctx.syscalls, config.upgrade.esp, ctx.log, (reason) => ctx.power('reboot', reason));
  const slot = inspectBootSlot(deps);
  try {
    deps.writeStatus(slot.status);
  } catch (err) {
    ctx.log.warn(`boot slot: writing the status failed: ${errorMessage(err)}`);
  }
  ctx.config = childFilesConfig(config, slot, deps.exists);
  ctx.blesser = createBlesser(deps, slot, { afterMs: config.upgrade.blessAfterMs, deadlineMs: config.upgrade.blessDeadlineMs, startedMs: Date.now() });
}

function superviseAuraed(ctx: BootContext): void {
  const config = need(ctx, 'config');
  ctx.service = createAuraedService({
    argv: locateAuraed(process.env, RUNTIME_CONFIG_PATH),
    policy: config.supervise,
    pidFile: AURAED_PID_FILE,
    files: { write: (path, text) => writeFileSync(path, text), remove: (path) => rmSync(path, { force: true }) },
    tracked: ctx.tracked,
    log: ctx.log,
    onPower: (action, by, reason) => ctx.power(action, `requested by ${by} via auraed${reason ? `: ${reason}` : ''}`),
    onReady: (_message, pid) => ctx.blesser?.onServing(pid, (p) => ctx.service?.pid === p),
  });
  ctx.service.start();
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
