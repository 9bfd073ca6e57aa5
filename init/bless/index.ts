// The boot slot this node runs (supervisor/upgrade/slots.ts) and its blessing. At boot init reads what
// systemd-boot said (LoaderBootCountPath / LoaderEntrySelected) and the entries on the ESP (/boot), reports the
// running entry in BOOT_SLOT_STATUS_PATH for auraed's Status, and points children at the running slot's kernel and
// initramfs. A boot on trial (a counted entry) is blessed, its counter dropped by renaming the UKI, once auraed
// has been SERVING without a restart for upgrade.blessAfterMs; if that has not happened upgrade.blessDeadlineMs
// after init started, init reboots so systemd-boot counts the try (after TRIES of them it boots the previous
// entry by itself). Without systemd-boot (a direct kernel boot) there is no slot and nothing to bless.
import type { NodeConfig } from '../../supervisor/config';
import {
  ESP_PATHS,
  fallbackReason,
  planBless,
  slotFileName,
  slotsOf,
  type BootedBy,
  type BootSlotStatus,
  type Entry,
  type Slots,
} from '../../supervisor/upgrade/slots';
import { errorMessage, type Logger } from '../log';

export interface BlessDeps {
  /** Where the ESP is mounted (config.upgrade.esp). */
  espRoot: string;
  /** Names in ESP_PATHS.entries; [] when the folder is absent. */
  listEntries(): string[];
  /** The loader's EFI variables; null when the firmware is not UEFI. */
  bootedBy(): BootedBy | null;
  /** Rename on the ESP durably, with the volume writable for the time of it (ESP paths). */
  rename(from: string, to: string): Promise<void>;
  writeStatus(status: BootSlotStatus): void;
  exists(path: string): boolean;
  timers: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(handle: unknown): void };
  now(): number;
  reboot(reason: string): void;
  log: Logger;
}

export interface BootSlot {
  slots: Slots | null;
  status: BootSlotStatus;
}

/** What this boot runs, from the loader variables and the ESP's entries. Logs it; never throws. */
export function inspectBootSlot(deps: BlessDeps): BootSlot {
  let slots: Slots | null = null;
  try {
    const by = deps.bootedBy();
    if (by && (by.entrySelected || by.bootCountPath)) deps.log.info(`boot slot: systemd-boot says LoaderEntrySelected=${by.entrySelected ?? '(none)'} LoaderBootCountPath=${by.bootCountPath ?? '(none)'}`);
    slots = slotsOf(deps.listEntries(), by);
  } catch (err) {
    deps.log.warn(`boot slot: reading the entries on ${deps.espRoot}/${ESP_PATHS.entries} failed: ${errorMessage(err)}`);
  }
  const running = slots?.running ?? null;
  const status: BootSlotStatus = {
    entry: running?.id ?? null,
    version: running?.version ?? null,
    generation: running?.generation ?? null,
    path: running?.path ?? null,
    blessed: running !== null && running.triesLeft === null,
    blessedAtMs: null,
    note: null,
    fallback: slots ? fallbackReason(slots) : null,
  };
  if (!running) {
    status.note = slots?.bootedId ? `the booted entry ${slots.bootedId} is not on ${deps.espRoot}` : 'not booted through systemd-boot (direct kernel boot): no slots';
    deps.log.info(`boot slot: none (${status.note})`);
  } else if (running.triesLeft !== null) {
    status.note = `on trial: blessed once auraed has served for a while (${running.triesLeft} tries left after this one)`;
    deps.log.info(`boot slot: running ${running.id} (${running.fileName}), on trial with ${running.triesLeft} tries left`);
  } else {
    deps.log.info(`boot slot: running ${running.id} (blessed)`);
  }
  if (status.fallback) deps.log.warn(`boot slot: ${status.fallback}`);
  return { slots, status };
}

/** How soon the deadline looks again when it fires during a blessing. */
const BLESSING_RECHECK_MS = 5_000;

const DEFAULT_KERNEL = '/boot/vmlinuz';
const DEFAULT_INITRD = '/boot/initramfs';

/**
 * Children spawn from the running slot: when vms.kernel/initrd are the defaults and the ESP has slots, they become
 * the running entry's kernel and initramfs (on a direct kernel boot, the default entry's: what the ESP would boot).
 * Returns the config unchanged otherwise. Pure apart from `exists`.
 */
export function childFilesConfig(config: NodeConfig, slot: BootSlot, exists: (path: string) => boolean): NodeConfig {
  if (config.vms.kernel !== DEFAULT_KERNEL || config.vms.initrd !== DEFAULT_INITRD) return config;
  if (exists(DEFAULT_KERNEL) && exists(DEFAULT_INITRD)) return config; // an ESP of the old layout
  const entry: Entry | null = slot.slots?.running ?? slot.slots?.default ?? null;
  // A slot without its kernel or initramfs (a hand-made entry, a cut write) cannot host children: leave the config.
  if (!entry || entry.missing.includes('kernel') || entry.missing.includes('initramfs')) return config;
  const at = (name: string) => `${config.upgrade.esp}/${ESP_PATHS.entries}/${name}`;
  return { ...config, vms: { ...config.vms, kernel: at(slotFileName(entry.id, 'kernel')), initrd: at(slotFileName(entry.id, 'initramfs')) } };
}

export interface Blesser {
  /** auraed (this pid) reported SERVING: bless after afterMs if the same auraed still runs then. */
  onServing(pid: number, stillRunning: (pid: number) => boolean): void;
  stop(): void;
}

/**
 * Bless this boot's entry once auraed has served for `afterMs` (the same pid still running then), and reboot if
 * that has not happened `deadlineMs` after `startedMs`. A no-op for a boot that is not on trial.
 */
export function createBlesser(deps: BlessDeps, slot: BootSlot, o: { afterMs: number; deadlineMs: number; startedMs: number }): Blesser {
  const status = slot.status;
  const running = slot.slots?.running ?? null;
  const onTrial = running !== null && running.triesLeft !== null;
  let holdTimer: unknown = null;
  let deadlineTimer: unknown = null;
  let done = !onTrial;
  let blessing = false;

  if (onTrial) {
    const wait = Math.max(0, o.startedMs + o.deadlineMs - deps.now());
    const onDeadline = () => {
      deadlineTimer = null;
      if (done) return;
      if (blessing) {
        // A blessing is under way: its outcome decides; look again shortly.
        deadlineTimer = deps.timers.setTimeout(onDeadline, BLESSING_RECHECK_MS);
        return;
      }
      const others = (slot.slots?.entries.length ?? 1) > 1;
      const reason = `boot entry ${running!.id} was not blessed within ${Math.round(o.deadlineMs / 1000)} s (auraed did not serve for ${Math.round(o.afterMs / 1000)} s)`;
      if (!others) {
        deps.log.error(`boot slot: ${reason}; it is the only entry, so it stays up`);
        return;
      }
      deps.log.error(`boot slot: ${reason}: rebooting so systemd-boot counts the try`);
      deps.reboot(reason);
    };
    deadlineTimer = deps.timers.setTimeout(onDeadline, wait);
  }

  const bless = async (pid: number, stillRunning: (pid: number) => boolean) => {
    if (done || blessing) return;
    if (!stillRunning(pid)) {
      deps.log.info(`boot slot: auraed (pid ${pid}) did not stay up for ${o.afterMs} ms; waiting for it to serve again`);
      return;
    }
    const plan = planBless(running!.path);
    if (!plan) return;
    blessing = true;
    try {
      await deps.rename(plan.from, plan.to);
      done = true;
      if (deadlineTimer !== null) deps.timers.clearTimeout(deadlineTimer);
      Object.assign(status, { blessed: true, blessedAtMs: deps.now(), note: null, path: plan.to });
      deps.log.info(`boot slot: blessed ${running!.id} (${plan.from.split('/').pop()} → ${plan.to.split('/').pop()}): auraed served for ${o.afterMs} ms`);
    } catch (err) {
      status.note = `blessing failed: ${errorMessage(err)}`;
      deps.log.error(`boot slot: blessing ${running!.id} failed (${errorMessage(err)}): it stays on trial; trying again in ${o.afterMs} ms`);
    } finally {
      blessing = false;
    }
    // A failed rename (a busy ESP, a transient I/O error) is tried again while the same auraed runs.
    if (!done) arm(pid, stillRunning);
    try {
      deps.writeStatus(status);
    } catch (err) {
      deps.log.warn(`boot slot: writing the status failed: ${errorMessage(err)}`);
    }
  };

  function arm(pid: number, stillRunning: (pid: number) => boolean): void {
    if (holdTimer !== null) deps.timers.clearTimeout(holdTimer);
    holdTimer = deps.timers.setTimeout(() => {
      holdTimer = null;
      void bless(pid, stillRunning);
    }, o.afterMs);
  }

  return {
    onServing(pid, stillRunning) {
      if (done) return;
      arm(pid, stillRunning);
    },
    stop() {
      if (holdTimer !== null) deps.timers.clearTimeout(holdTimer);
      if (deadlineTimer !== null) deps.timers.clearTimeout(deadlineTimer);
      holdTimer = deadlineTimer = null;
    },
  };
}
