// The A/B boot slots on the ESP, as data (PURE: names in, plans out; no I/O). The one owner of these facts:
// image/disk writes the factory ESP with them, init blesses the booted entry with them, the upgrade service
// (supervisor/upgrade) writes, renames and removes entries with them. Nobody copies them.
//
// systemd-boot (Debian's systemd-boot-efi, 252) is \EFI\BOOT\BOOTX64.EFI. Each slot is a Type #2 boot entry: a
// signed UKI in \EFI\Linux named `aurae-<generation, 6 digits>-<version>[+LEFT[-DONE]].efi`, plus its files beside
// it under the same id (the kernel and initramfs children spawn from, the signed release manifest). What
// systemd-boot does with them (checked in its source, src/boot/efi/boot.c, and under OVMF by qemu-tests/48):
//  - it lists every *.efi in \EFI\Linux (other files are ignored) and sorts them: entries with 0 tries left last,
//    then by id, newest (highest, version-aware compare) first; with timeout 0 it boots the first one;
//  - `+LEFT-DONE` before .efi is the boot counter: before booting a counted entry it renames the file to
//    `+(LEFT-1)-(DONE+1)` and tells the OS the new path in LoaderBootCountPath; `+3` means `+3-0`;
//  - the OS blesses a good boot by renaming the file to the name without the counter (planBless);
//  - an entry with `+0` sorts after every other one, so the previous (blessed, uncounted) entry boots next.
// The generation (assigned by the node, one more than any it has seen) orders entries; the version is the
// release's and says nothing about order, so a "downgrade" to an older release is just a newer generation.

/** Tries a new entry gets (systemd-boot's boot counter `+3`). */
export const TRIES = 3;

/** Paths on the ESP, relative to its root, '/'-separated. */
export const ESP_PATHS = {
  /** systemd-boot, as the removable-media default loader the firmware starts. */
  bootLoader: 'EFI/BOOT/BOOTX64.EFI',
  /** Type #2 entries (UKIs) and, beside each, its slot files. */
  entries: 'EFI/Linux',
  loaderConf: 'loader/loader.conf',
} as const;

/**
 * loader.conf: boot the default entry at once (no menu), no command-line editor (the UKI's signed .cmdline is
 * the whole truth), no automatic entries (Windows, EFI shell, "reboot into firmware").
 */
export const LOADER_CONF = 'timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\n';

/** systemd's loader interface (docs/BOOT_LOADER_INTERFACE.md): vendor GUID of its EFI variables. */
export const LOADER_GUID = '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f';
/** Names of the EFI variables (efivarfs file names under /sys/firmware/efi/efivars). */
export const EFI_VARIABLES = {
  /** The booted entry's file with its counter already decremented (`\EFI\Linux\<id>+2-1.efi`); counted entries only. */
  bootCountPath: `LoaderBootCountPath-${LOADER_GUID}`,
  /** The id of the entry systemd-boot booted (its file name as listed at boot). */
  entrySelected: `LoaderEntrySelected-${LOADER_GUID}`,
  /** The partition GUID of the ESP the loader ran from. */
  devicePartUuid: `LoaderDevicePartUUID-${LOADER_GUID}`,
} as const;

/** Where init writes what it knows of this boot's slot (BootSlotStatus) for auraed's Status. */
export const BOOT_SLOT_STATUS_PATH = '/run/aurae/boot-slot.json';

/** A slot's files: the entry (UKI) and, under the same id, what children and upgrades need. */
export const SLOT_ROLES = ['uki', 'kernel', 'initramfs', 'manifest', 'signature'] as const;
export type SlotRole = (typeof SLOT_ROLES)[number];
/** The suffix of each role's file after the id (the UKI's counter goes between the id and `.efi`). */
export const SLOT_SUFFIXES: Record<SlotRole, string> = {
  uki: '.efi',
  kernel: '.vmlinuz',
  initramfs: '.initramfs',
  manifest: '.json',
  signature: '.json.sig',
};
/** A file being written (supervisor/upgrade/esp.ts writeFileDurably): ignored by systemd-boot, removed as leftover. */
export const TEMP_SUFFIX = '.tmp';

const ENTRY_PREFIX = 'aurae-';
/** A release version in an entry's name (supervisor/upgrade/release.ts RELEASE_VERSION: no "-", no "+"). */
const VERSION = '[A-Za-z0-9][A-Za-z0-9._]{0,63}';
const VERSION_RE = new RegExp(`^${VERSION}$`);
const ENTRY_RE = new RegExp(`^${ENTRY_PREFIX}(\\d{6})-(${VERSION})(?:\\+(\\d{1,9})(?:-(\\d{1,9}))?)?\\.efi$`, 'i');
const MAX_GENERATION = 999_999;

export interface EntryName {
  /** `aurae-000002-0.2.0`: the name without counter and `.efi` (what identifies the slot). */
  id: string;
  generation: number;
  version: string;
  /** null: not counted (blessed, or never counted). */
  triesLeft: number | null;
  triesDone: number | null;
}

export interface Entry extends EntryName {
  /** The UKI's current file name in ESP_PATHS.entries. */
  fileName: string;
  /** Its path on the ESP. */
  path: string;
  /** Every file of the slot in ESP_PATHS.entries (the UKI first), by name. */
  files: string[];
  /** Roles whose file is missing (children cannot spawn from a slot without kernel and initramfs). */
  missing: SlotRole[];
}

/** A slot's entry name → its parts; null for anything else (another OS's entry, a slot file, a temp file). */
export function parseEntryName(name: string): EntryName | null {
  const m = ENTRY_RE.exec(name);
  if (!m) return null;
  const generation = Number(m[1]);
  const version = m[2]!;
  const counted = m[3] !== undefined;
  return {
    id: `${ENTRY_PREFIX}${m[1]}-${version}`,
    generation,
    version,
    triesLeft: counted ? Number(m[3]) : null,
    triesDone: counted ? Number(m[4] ?? 0) : null,
  };
}

/** `aurae-000002-0.2.0`. Throws for a generation or version that does not fit a name. */
export function entryId(generation: number, version: string): string {
  if (!Number.isInteger(generation) || generation < 1 || generation > MAX_GENERATION) throw new SlotError('INVALID_ARGUMENT', `generation: ${generation}: expected 1..${MAX_GENERATION}`);
  if (!VERSION_RE.test(version)) throw new SlotError('INVALID_ARGUMENT', `version: ${JSON.stringify(version)}: expected 1..64 letters, digits, "." or "_", starting with a letter or digit (no "-" or "+")`);
  return `${ENTRY_PREFIX}${String(generation).padStart(6, '0')}-${version}`;
}

/** The UKI's file name: `<id>.efi`, `<id>+LEFT.efi` or `<id>+LEFT-DONE.efi` (DONE 0 is left out). */
export function entryFileName(e: { generation: number; version: string; triesLeft?: number | null; triesDone?: number | null }): string {
  const id = entryId(e.generation, e.version);
  if (e.triesLeft === null || e.triesLeft === undefined) return `${id}.efi`;
  return e.triesDone ? `${id}+${e.triesLeft}-${e.triesDone}.efi` : `${id}+${e.triesLeft}.efi`;
}

/** The file name of a slot's non-UKI file (`<id>.vmlinuz`, …). */
export function slotFileName(id: string, role: Exclude<SlotRole, 'uki'>): string {
  return `${id}${SLOT_SUFFIXES[role]}`;
}

/** A file of ESP_PATHS.entries that belongs to a slot (any role, maybe a temp file) → its id and role; null otherwise. */
export function parseSlotFileName(name: string): { id: string; generation: number; role: SlotRole; temp: boolean } | null {
  const temp = name.endsWith(TEMP_SUFFIX);
  const base = temp ? name.slice(0, -TEMP_SUFFIX.length) : name;
  const entry = parseEntryName(base);
  if (entry) return { id: entry.id, generation: entry.generation, role: 'uki', temp };
  // Longest suffix first: ".json.sig" before ".json".
  for (const role of ['signature', 'manifest', 'kernel', 'initramfs'] as const) {
    const suffix = SLOT_SUFFIXES[role];
    if (!base.toLowerCase().endsWith(suffix)) continue;
    const e = parseEntryName(`${base.slice(0, -suffix.length)}.efi`);
    if (e && e.triesLeft === null) return { id: e.id, generation: e.generation, role, temp };
  }
  return null;
}

const sameId = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * systemd-boot 252's order (config_entry_compare): entries with no tries left last, then by id newest first (our
 * ids differ first in the zero-padded generation), then more tries left first, then fewer tries done first.
 */
export function compareBootOrder(a: EntryName, b: EntryName): number {
  const aDead = a.triesLeft === 0 ? 1 : 0;
  const bDead = b.triesLeft === 0 ? 1 : 0;
  if (aDead !== bDead) return aDead - bDead;
  if (a.generation !== b.generation) return b.generation - a.generation;
  if (a.id !== b.id) return a.id < b.id ? 1 : -1;
  if (a.triesLeft === null || b.triesLeft === null) return 0;
  if (a.triesLeft !== b.triesLeft) return b.triesLeft - a.triesLeft;
  return (a.triesDone ?? 0) - (b.triesDone ?? 0);
}

/** What the loader said about this boot (EFI variables); both null on a boot without systemd-boot (direct kernel). */
export interface BootedBy {
  /** LoaderBootCountPath, e.g. `\EFI\Linux\aurae-000002-0.2.0+2-1.efi`. */
  bootCountPath: string | null;
  /** LoaderEntrySelected, e.g. `aurae-000001-0.1.0.efi`. */
  entrySelected: string | null;
}

export interface Slots {
  /** Our entries in systemd-boot's boot order (the first is what boots next). */
  entries: Entry[];
  /** The entry this node booted; null on a direct kernel boot or when its file is gone. */
  running: Entry | null;
  /** The id the loader named, even when no entry has it any more; null without systemd-boot. */
  bootedId: string | null;
  /** The first entry other than the running one in boot order (the A/B partner); null when there is none. */
  other: Entry | null;
  /** What systemd-boot boots next (entries[0]); null when the ESP has no entry of ours. */
  default: Entry | null;
  /** `.efi` files of ESP_PATHS.entries that are not ours: systemd-boot would list (and maybe boot) them too. */
  foreign: string[];
  /** Slot files without an entry and temp files: what a cut write or removal left behind. */
  orphans: string[];
}

/** The id the loader variables name (the count path's file first, it is exact), or null. */
export function bootedEntryId(by: BootedBy | null): string | null {
  if (!by) return null;
  for (const raw of [by.bootCountPath, by.entrySelected]) {
    if (!raw) continue;
    const name = raw.split(/[\\/]/).pop() ?? '';
    const parsed = parseEntryName(name.toLowerCase().endsWith('.efi') ? name : `${name}.efi`);
    if (parsed) return parsed.id;
  }
  return null;
}

/** The slots from the names in ESP_PATHS.entries and what the loader said about this boot. */
export function slotsOf(fileNames: readonly string[], booted: BootedBy | null): Slots {
  const byId = new Map<string, string[]>();
  const entries: Omit<Entry, 'files' | 'missing'>[] = [];
  const foreign: string[] = [];
  const orphans: string[] = [];
  for (const name of [...fileNames].sort()) {
    const slotFile = parseSlotFileName(name);
    if (slotFile && !slotFile.temp) {
      const key = slotFile.id.toLowerCase();
      byId.set(key, [...(byId.get(key) ?? []), name]);
      if (slotFile.role === 'uki') entries.push({ ...parseEntryName(name)!, fileName: name, path: `${ESP_PATHS.entries}/${name}` });
    } else if (slotFile?.temp) {
      orphans.push(name);
    } else if (name.toLowerCase().endsWith('.efi')) {
      foreign.push(name);
    }
  }
  const entryIds = new Set(entries.map((e) => e.id.toLowerCase()));
  for (const [key, names] of byId) if (!entryIds.has(key)) orphans.push(...names);
  const full: Entry[] = entries
    .map((e) => {
      const names = byId.get(e.id.toLowerCase()) ?? [];
      const files = [e.fileName, ...names.filter((n) => n !== e.fileName)];
      const have = new Set(names.map((n) => parseSlotFileName(n)!.role));
      return { ...e, files, missing: SLOT_ROLES.filter((r) => !have.has(r)) };
    })
    .sort(compareBootOrder);
  const bootedId = bootedEntryId(booted);
  const running = bootedId === null ? null : (full.find((e) => sameId(e.id, bootedId)) ?? null);
  return {
    entries: full,
    running,
    bootedId,
    other: full.find((e) => e !== running) ?? null,
    default: full[0] ?? null,
    foreign,
    orphans: orphans.sort(),
  };
}

/** Why a planner refused; `code` is the gRPC status the API answers with. */
export class SlotError extends Error {
  constructor(
    readonly code: 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION',
    message: string,
  ) {
    super(message);
    this.name = 'SlotError';
  }
}

const at = (name: string) => `${ESP_PATHS.entries}/${name}`;
const maxGeneration = (s: Slots) =>
  Math.max(0, ...[...s.entries.flatMap((e) => e.files), ...s.orphans].map((n) => parseSlotFileName(n)?.generation ?? 0));

/** The ESP paths of a new slot's files. Write every other role first and the UKI last: its rename makes the entry. */
export interface SlotWrite {
  id: string;
  generation: number;
  version: string;
  files: Record<SlotRole, string>;
}

export interface UpgradePlan {
  /** ESP paths to remove first (the partner slot, orphans); never a file of the running entry. */
  remove: string[];
  write: SlotWrite;
}

function requireRunning(slots: Slots, what: string): Entry {
  if (slots.running) return slots.running;
  const why = slots.bootedId
    ? `the entry it booted (${slots.bootedId}) is no longer on the ESP`
    : 'it did not boot through systemd-boot from its ESP (a direct kernel boot, as QEMU -kernel does, has no slots)';
  throw new SlotError('FAILED_PRECONDITION', `${what}: this node has no running boot slot: ${why}; boot the node from its disk (disk.raw flashed) to use slots`);
}

/**
 * Where a release of `version` goes: the slot other than the running one is emptied and the new entry gets the
 * next generation (so it boots first) with TRIES tries. Refused while the running entry is itself on trial (not
 * blessed): replacing the partner then could leave no known-good entry.
 */
export function planUpgrade(slots: Slots, version: string): UpgradePlan {
  const running = requireRunning(slots, 'upgrade');
  if (running.triesLeft !== null) {
    throw new SlotError(
      'FAILED_PRECONDITION',
      `upgrade: the running entry ${running.id} is still on trial (${running.fileName}: not blessed yet): wait until init blesses it (auraed serving for upgrade.blessAfterMs) or roll back first`,
    );
  }
  const generation = maxGeneration(slots) + 1;
  const id = entryId(generation, version);
  const keep = new Set(running.files);
  const remove = [...slots.entries.flatMap((e) => e.files), ...slots.orphans].filter((n) => !keep.has(n)).map(at);
  return {
    remove,
    write: {
      id,
      generation,
      version,
      files: {
        uki: at(entryFileName({ generation, version, triesLeft: TRIES })),
        kernel: at(slotFileName(id, 'kernel')),
        initramfs: at(slotFileName(id, 'initramfs')),
        manifest: at(slotFileName(id, 'manifest')),
        signature: at(slotFileName(id, 'signature')),
      },
    },
  };
}

export interface Rename {
  /** ESP paths. */
  from: string;
  to: string;
}

/**
 * Bless the booted entry: `LoaderBootCountPath` (`\EFI\Linux\<id>+2-1.efi`) → rename it to `<id>.efi`. null when
 * there is nothing to bless (no counter: a blessed or uncounted entry, a direct kernel boot, not our entry).
 */
export function planBless(bootCountPath: string | null): Rename | null {
  if (!bootCountPath) return null;
  const parts = bootCountPath.split(/[\\/]/).filter(Boolean);
  const name = parts.pop() ?? '';
  if (parts.join('/').toLowerCase() !== ESP_PATHS.entries.toLowerCase()) return null;
  const e = parseEntryName(name);
  if (!e || e.triesLeft === null) return null;
  return { from: at(name), to: at(`${e.id}.efi`) };
}

export interface RollbackPlan {
  /** The entry that boots next. */
  target: string;
  /** In order: the target's slot files to its new id, then its UKI (the last rename makes it the newest entry). */
  renames: Rename[];
}

/**
 * Boot the other slot next: it is renamed to a new generation (so it sorts first) with TRIES tries, and the
 * running entry stays as it is, so if the target does not come up (is not blessed in TRIES boots) the running one
 * boots again by itself. (Marking the running entry `+0` instead would leave nothing to fall back to.)
 */
export function planRollback(slots: Slots): RollbackPlan {
  requireRunning(slots, 'rollback');
  const target = slots.other;
  if (!target) throw new SlotError('FAILED_PRECONDITION', 'rollback: the ESP holds no other boot entry to go back to: upgrade to the release you want instead');
  if (target.missing.some((r) => r === 'kernel' || r === 'initramfs')) {
    throw new SlotError('FAILED_PRECONDITION', `rollback: the other entry ${target.id} lacks its ${target.missing.join(', ')} (a cut upgrade?): upgrade to a full release instead`);
  }
  const generation = maxGeneration(slots) + 1;
  const id = entryId(generation, target.version);
  const renames: Rename[] = [];
  for (const name of target.files.slice(1)) {
    const f = parseSlotFileName(name)!;
    if (f.role !== 'uki') renames.push({ from: at(name), to: at(slotFileName(id, f.role)) });
  }
  renames.push({ from: target.path, to: at(entryFileName({ generation, version: target.version, triesLeft: TRIES })) });
  return { target: id, renames };
}

/**
 * Why this boot is not on the newest entry: a newer entry used all its tries without being blessed (systemd-boot
 * then boots the next one). null when the node runs its newest entry or has no slots.
 */
export function fallbackReason(slots: Slots): string | null {
  const running = slots.running;
  if (!running) return null;
  const newer = slots.entries.filter((e) => e.generation > running.generation);
  const failed = newer.find((e) => e.triesLeft === 0);
  if (!failed) return null;
  return `${failed.id} was booted ${failed.triesDone ?? TRIES} time(s) without being blessed (refused by the firmware, failed to boot, or auraed did not serve and stay healthy for long enough), so systemd-boot went back to ${running.id}`;
}

/** What init knows of this boot's slot, written to BOOT_SLOT_STATUS_PATH (and rewritten once blessed). */
export interface BootSlotStatus {
  /** The running entry's id and version; null on a direct kernel boot (no slots). */
  entry: string | null;
  version: string | null;
  generation: number | null;
  /** The booted UKI's path on the ESP when init last looked (the counter changes on blessing). */
  path: string | null;
  /** true once init blessed this boot's entry, or when it was not counted at all. */
  blessed: boolean;
  /** When init blessed it (ms since the epoch); null otherwise. */
  blessedAtMs: number | null;
  /** Why it is not blessed (yet), or why blessing failed; null when blessed. */
  note: string | null;
  /** fallbackReason at boot. */
  fallback: string | null;
}

/** Parse BOOT_SLOT_STATUS_PATH's text; null when it is not a BootSlotStatus (old or missing file). */
export function parseBootSlotStatus(text: string): BootSlotStatus | null {
  try {
    const v = JSON.parse(text) as Partial<BootSlotStatus>;
    if (typeof v !== 'object' || v === null || typeof v.blessed !== 'boolean' || !('entry' in v)) return null;
    return v as BootSlotStatus;
  } catch {
    return null;
  }
}
