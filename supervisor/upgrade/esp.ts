// The ESP as the upgrade service touches it (adapters; the decisions are slots.ts's and upgrade-core.ts's):
// list the boot entries, write a file durably (temp name, fsync, rename, fsync the directory), rename and remove
// entries durably, and make the volume writable for the time of a change (init mounts it read-only on /boot).
// Also the booted-entry reader: systemd-boot's loader interface in efivarfs (names from slots.ts).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MOUNT_FLAGS, type Syscalls } from '../../native';
import { syncDir } from './partial-store';
import { type BootedBy, EFI_VARIABLES, TEMP_SUFFIX } from './slots';

export interface Esp {
  /** Where the ESP is mounted (/boot on a node; a temp dir in tests). */
  readonly root: string;
  /** Plain file names in `dir` (relative to the root, "/"-separated); [] when the folder does not exist. */
  list(dir: string): string[];
  exists(relPath: string): boolean;
  /** A file's size in bytes (0 when absent). */
  size(relPath: string): number;
  /** Bytes free on the volume. */
  freeBytes(): number;
  /** Run `fn` with the volume writable (remounted read-write when it is mounted read-only, and back after). */
  writable<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Write `relPath` from `chunks` durably: into "<relPath>.tmp" (slots.ts TEMP_SUFFIX), fsync, rename over
   * `relPath`, fsync the folder. A cut in the middle leaves at most the temp file (an orphan the next upgrade plan
   * removes), never a partial entry. With `expectSha256`, the bytes written are hashed as they go and the file is
   * renamed into place only when they match (what was checked earlier may have been read back differently).
   */
  writeFile(relPath: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, expectSha256?: string): Promise<void>;
  /** Rename `from` to `to` and fsync the folder(s). */
  rename(from: string, to: string): void;
  /** Remove `relPath` (absent is fine) and fsync its folder. */
  remove(relPath: string): void;
}

/** The durable steps as they happen (tests check the order: fsync before rename, the folder after). */
export type EspTrace = (op: 'write' | 'fsync' | 'rename' | 'fsync-renamed' | 'fsync-dir' | 'remove' | 'remount-rw' | 'remount-ro' | 'remount-ro-failed', path: string, to?: string) => void;

/** How the real Esp changes the mount: a remount (MS_REMOUNT) read-write or read-only. */
export type Remount = (root: string, readWrite: boolean) => void;

/**
 * The node's Remount of the boot volume (init's blessing and auraed's upgrades share it). No FAT data, though
 * init/state-disk mounted /boot with fmask/dmask/shortname: vfat in Linux 6.1 uses the legacy mount API, so a
 * remount calls fat_remount() (fs/fat/inode.c), which syncs and flips the read-only state but never parses the
 * data: the options parsed at mount stay (data given here would be ignored). nosuid/nodev are per-mount flags that
 * a remount replaces (fs/namespace.c path_mount), so they are passed again.
 */
export function espRemount(mount: Pick<Syscalls, 'mount'>['mount']): Remount {
  const { MS_REMOUNT, MS_NOSUID, MS_NODEV, MS_RDONLY } = MOUNT_FLAGS;
  return (root, readWrite) => mount(null, root, null, MS_REMOUNT | MS_NOSUID | MS_NODEV | (readWrite ? 0 : MS_RDONLY), null);
}

/** Whether `path` is a mount point, and then whether it is mounted read-only (from /proc/self/mountinfo). */
export function mountOptionsOf(mountinfo: string, path: string): { readOnly: boolean } | null {
  let found: { readOnly: boolean } | null = null;
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    // id parent major:minor root mountpoint options ...
    if (f.length < 6 || unescapeMountPath(f[4]!) !== path) continue;
    found = { readOnly: f[5]!.split(',').includes('ro') }; // the last one mounted there wins
  }
  return found;
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The lock both writers of a node's ESP take (init blessing, auraed writing a slot or rolling back), so neither
 * remounts /boot read-only under the other's writes.
 */
export const ESP_LOCK_FILE = '/run/aurae/esp.lock';
/** How long a writer waits for the other process's change (a slot write copies ~100 MB). */
export const ESP_LOCK_WAIT_MS = 120_000;

/**
 * Take `file` (O_EXCL; it holds the owner's pid). A lock whose owner is gone is taken over. Resolves with the
 * release function; rejects after `waitMs`.
 */
export async function lockFile(file: string, waitMs = ESP_LOCK_WAIT_MS): Promise<() => void> {
  const deadline = Date.now() + waitMs;
  mkdirSync(dirname(file), { recursive: true });
  for (;;) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number.parseInt(readFileSync(file, 'utf8').trim() || '0', 10);
    if (!ownerAlive(owner)) {
      rmSync(file, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`the ESP is being changed by process ${owner} (${file}): try again when it is done`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function ownerAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The ESP at `root`. `remount` (the node's mount syscall) is used only when `root` is a read-only mount point;
 * concurrent writers share one read-write period (counted), the last one remounts read-only. With `lock`, that
 * period holds the cross-process lock file (ESP_LOCK_FILE on a node).
 */
export function fsEsp(
  root: string,
  remount: Remount | null,
  options: { readMountinfo?: () => string; trace?: EspTrace; lock?: string } = {},
): Esp {
  const readMountinfo = options.readMountinfo ?? (() => readFileSync('/proc/self/mountinfo', 'utf8'));
  const trace: EspTrace = options.trace ?? (() => {});
  const fsyncDir = (dir: string) => {
    syncDir(dir);
    trace('fsync-dir', dir.slice(root.length + 1) || '.');
  };
  // vfat gives a renamed file a new directory entry with no cluster and size 0 and fills them in only when the
  // inode is written back (fs/fat/namei_vfat.c vfat_rename: mark_inode_dirty); fsyncing the folder does not write
  // it. Without this fsync of the file under its new name, a power cut in the next ~30 s leaves it empty (seen
  // under QEMU: qemu-tests/48 step 6).
  const fsyncRenamed = (path: string) => {
    syncDir(path);
    trace('fsync-renamed', path.slice(root.length + 1));
  };
  let writers = 0;
  let remounted = false;
  let unlock: (() => void) | null = null;
  return {
    root,
    list(dir) {
      try {
        return readdirSync(join(root, dir), { withFileTypes: true })
          .filter((e) => e.isFile())
          .map((e) => e.name)
          .sort();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw err;
      }
    },
    exists: (relPath) => existsSync(join(root, relPath)),
    size: (relPath) => {
      try {
        return statSync(join(root, relPath)).size;
      } catch {
        return 0;
      }
    },
    freeBytes() {
      const s = statfsSync(root);
      return s.bavail * s.bsize;
    },
    async writable(fn) {
      if (writers === 0 && options.lock && !unlock) {
        const release = await lockFile(options.lock);
        if (unlock) release(); // another writer of this process took it meanwhile; share its period
        else unlock = release;
      }
      if (writers === 0 && !remounted) {
        const mount = mountOptionsOf(readMountinfo(), root);
        if (mount?.readOnly) {
          if (!remount) throw new Error(`${root} is mounted read-only and this auraed cannot remount it`);
          remount(root, true);
          trace('remount-rw', '.');
          remounted = true;
        }
      }
      writers++;
      try {
        return await fn();
      } finally {
        writers--;
        if (writers === 0 && remounted) {
          // The data is on disk (fsync'd) either way: a failed switch back is no failure of `fn`. It stays marked
          // remounted, so the next writer's end tries again.
          try {
            remount!(root, false);
            remounted = false;
            trace('remount-ro', '.');
          } catch (err) {
            trace('remount-ro-failed', (err as NodeJS.ErrnoException).code ?? (err as Error).message);
          }
        }
        if (writers === 0 && unlock) {
          unlock();
          unlock = null;
        }
      }
    },
    async writeFile(relPath, chunks, expectSha256) {
      const target = join(root, relPath);
      const tmp = `${target}${TEMP_SUFFIX}`;
      mkdirSync(dirname(target), { recursive: true });
      const fd = openSync(tmp, 'w', 0o644);
      const hash = createHash('sha256');
      try {
        for await (const chunk of chunks) {
          hash.update(chunk);
          let done = 0;
          while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done);
        }
        trace('write', `${relPath}${TEMP_SUFFIX}`);
        fsyncSync(fd);
        trace('fsync', `${relPath}${TEMP_SUFFIX}`);
        const written = hash.digest('hex');
        if (expectSha256 !== undefined && written !== expectSha256) {
          throw new Error(`${relPath}: the bytes written have sha256 ${written}, the release says ${expectSha256} (the kept copy changed after it was checked)`);
        }
      } catch (err) {
        closeSync(fd);
        rmSync(tmp, { force: true });
        throw err;
      }
      closeSync(fd);
      renameSync(tmp, target);
      trace('rename', `${relPath}${TEMP_SUFFIX}`, relPath);
      fsyncRenamed(target);
      fsyncDir(dirname(target));
    },
    rename(from, to) {
      renameSync(join(root, from), join(root, to));
      trace('rename', from, to);
      fsyncRenamed(join(root, to));
      fsyncDir(dirname(join(root, to)));
      if (dirname(from) !== dirname(to)) fsyncDir(dirname(join(root, from)));
    },
    remove(relPath) {
      const path = join(root, relPath);
      if (!existsSync(path)) return;
      rmSync(path);
      trace('remove', relPath);
      fsyncDir(dirname(path));
    },
  };
}

export const EFIVARS_DIR = '/sys/firmware/efi/efivars';

/** An efivarfs file holding UTF-16LE text (4 attribute bytes first) → the text, or null. Pure. */
export function parseEfiTextVariable(raw: Buffer): string | null {
  if (raw.length < 4) return null;
  const text = raw.subarray(4).toString('utf16le').replace(/\0+$/, '').trim();
  return text === '' ? null : text;
}

/** What systemd-boot told the OS about this boot (efivarfs under `dir`); both null on a boot without it. */
export function readBootedBy(dir = EFIVARS_DIR): BootedBy {
  const read = (name: string): string | null => {
    try {
      return parseEfiTextVariable(readFileSync(join(dir, name)));
    } catch {
      return null;
    }
  };
  return { entrySelected: read(EFI_VARIABLES.entrySelected), bootCountPath: read(EFI_VARIABLES.bootCountPath) };
}
