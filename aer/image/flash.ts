// `aer image flash IMAGE TARGET`: put a disk image on a whole disk (or into a file) without destroying the wrong
// disk, and prove afterwards that the disk holds exactly the image. Check, then act:
//   checkImage / checkTarget   pure over a HostProbe: refuse partitions, mounted or swapped or stacked devices,
//                              the host's root disk, too-small targets, IMAGE == TARGET
//   checkSidecar               IMAGE.sha256 (sha256sum format), when present, must match before anything is written
//   confirmationStep / isYes   --yes, or a TTY and the answer "yes"
//   openVerifiedTarget         open without following a planted symlink (a new file: O_CREAT|O_EXCL|O_NOFOLLOW),
//                              fstat must be what was checked (dev+ino, or rdev), a disk is re-identified (size,
//                              model, serial, loop backing) right before the first write, with or without --yes
//   writeImage / readBack      4 MiB chunks, throttled progress, fsync, read back and compare sha256
// runFlash strings them together over injected adapters (FlashDeps), so every refusal is unit-tested without root.
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { BlockDevice, HostProbe, MountEntry, PathStat } from './block-devices';

export type FlashErrorCode =
  | 'image'
  | 'sidecar'
  | 'target'
  | 'partition'
  | 'read-only'
  | 'root-disk'
  | 'mounted'
  | 'swap'
  | 'holders'
  | 'loop-backing'
  | 'too-small'
  | 'same-file'
  | 'no-tty'
  | 'not-confirmed'
  | 'busy'
  | 'permission'
  | 'io'
  | 'verify';

/** A refusal or failure; the message is the user's: what, on which path, what to do. */
export class FlashError extends Error {
  constructor(
    readonly code: FlashErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'FlashError';
  }
}

export const CHUNK_BYTES = 4 * 1024 * 1024;
/** At most ~4 progress lines a second. */
export const PROGRESS_INTERVAL_MS = 250;
/** The backup GPT's place at the end of a disk: 32 sectors of entries + the header (512-byte sectors). */
export const STALE_TAIL_BYTES = 33 * 512;

export interface ImageInfo {
  path: string;
  size: number;
  dev: bigint;
  ino: bigint;
}

export interface TargetInfo {
  /** As the user gave it. */
  path: string;
  kind: 'block' | 'file';
  /** False for a file target that will be created. */
  exists: boolean;
  /** The whole disk, for a block target. */
  device?: BlockDevice;
  /** The inode that was checked, for an existing file target: the open must reach this one and no other. */
  dev?: bigint;
  ino?: bigint;
}

/** 1536 → "1.5 KiB"; binary units because disks and images are sized in them here. */
export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

/** IMAGE must be a non-empty regular file. */
export function checkImage(image: string, probe: HostProbe): ImageInfo {
  const st = probe.stat(image);
  if (!st) throw new FlashError('image', `IMAGE ${image} does not exist: pass the path of a disk image such as out/image/disk.raw (npm run image builds it)`);
  if (st.kind !== 'file') throw new FlashError('image', `IMAGE ${image} is a ${kindName(st.kind)}, not a regular file: pass the disk image file itself, e.g. out/image/disk.raw`);
  if (st.size === 0) throw new FlashError('image', `IMAGE ${image} is empty (0 bytes): the build or download did not finish; build or download it again`);
  return { path: image, size: st.size, dev: st.dev, ino: st.ino };
}

function kindName(kind: string): string {
  return kind === 'block' ? 'block device' : kind === 'other' ? 'special file (not a regular file or block device)' : kind;
}

/** The whole disks beneath a device: a partition's disk, a dm/md device's slaves (recursively), the device itself. */
export function disksUnder(name: string, byName: ReadonlyMap<string, BlockDevice>, seen = new Set<string>()): Set<string> {
  const out = new Set<string>();
  if (seen.has(name)) return out;
  seen.add(name);
  const device = byName.get(name);
  if (!device) return out;
  out.add(device.disk);
  const next = [...device.slaves, ...(device.disk !== device.name ? [device.disk] : [])];
  for (const below of next) for (const disk of disksUnder(below, byName, seen)) out.add(disk);
  return out;
}

/** The block device behind a mount: by its devno, else (btrfs and other anonymous devnos) by its /dev source. */
function deviceOfMount(mount: MountEntry, byDevno: ReadonlyMap<string, BlockDevice>, probe: HostProbe): BlockDevice | undefined {
  const direct = byDevno.get(mount.devno);
  if (direct) return direct;
  if (!mount.source.startsWith('/dev/')) return undefined;
  try {
    const rdevno = probe.stat(mount.source)?.rdevno;
    return rdevno ? byDevno.get(rdevno) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * TARGET must be a whole disk nobody uses, or a regular file (written like `dd of=FILE`: truncated, then written).
 * Precondition: `image` came from checkImage. Reads the host through `probe` once; the exclusive open in
 * writeImage closes the window between this check and the write for block devices.
 */
export function checkTarget(target: string, probe: HostProbe, image: ImageInfo): TargetInfo {
  const st = probe.stat(target);
  const absolute = path.resolve(target);
  if (!st) {
    // stat follows links: a dangling one looks like nothing is there, and creating "the file" would create the
    // link's target instead, wherever it points.
    if (probe.isSymlink(target)) {
      throw new FlashError('target', `TARGET ${target} is a symbolic link to a path that does not exist: aer does not create files through links; remove the link or pass the real path`);
    }
    // A missing /dev node is a typo or an unplugged disk; creating a plain file there would hide that.
    if (absolute.startsWith('/dev/')) throw new FlashError('target', `TARGET ${target} does not exist: is the disk attached? \`lsblk -d\` lists the whole disks`);
    if (probe.stat(path.dirname(absolute))?.kind !== 'directory') {
      throw new FlashError('target', `TARGET ${target} does not exist and neither does its folder ${path.dirname(absolute)}: pass a whole disk (e.g. /dev/sdb) or a file in an existing folder`);
    }
    return { path: target, kind: 'file', exists: false };
  }
  if (st.kind === 'file') {
    // A file is written through its own name only (O_NOFOLLOW): a link could be re-pointed between check and open.
    if (probe.isSymlink(target)) {
      throw new FlashError('target', `TARGET ${target} is a symbolic link to the file ${probe.realpath(target)}: aer writes files only through their own name; pass ${probe.realpath(target)} itself`);
    }
    return checkFileTarget(target, st.dev, st.ino, probe, image);
  }
  if (st.kind !== 'block') throw new FlashError('target', `TARGET ${target} is a ${kindName(st.kind)}, not a disk or a regular file: pass a whole disk (e.g. /dev/sdb) or a file to write the image into`);

  const devices = probe.blockDevices();
  const byName = new Map(devices.map((d) => [d.name, d]));
  const byDevno = new Map(devices.map((d) => [d.devno, d]));
  const device = st.rdevno ? byDevno.get(st.rdevno) : undefined;
  if (!device) throw new FlashError('target', `TARGET ${target} is a block device (${st.rdevno ?? '?'}) that /sys/class/block does not list: is sysfs mounted, and is the device still there?`);
  if (device.partition) {
    throw new FlashError('partition', `TARGET ${target} is a partition of /dev/${device.disk}: flash the whole disk, e.g. /dev/${device.disk}, not /dev/${device.name}`);
  }
  if (device.readOnly) throw new FlashError('read-only', `TARGET ${target} is read-only (/sys/class/block/${device.name}/ro is 1): is it a CD or write-protected? pick a writable disk`);

  const partitions = devices.filter((d) => d.partition && d.disk === device.name);
  const onTarget = (d: BlockDevice | undefined) => d !== undefined && disksUnder(d.name, byName).has(device.name);
  const mounts = probe.mounts();

  // The root disk first: it is mounted too, but this is the message that matters.
  if (mounts.some((m) => m.mountPoint === '/' && onTarget(deviceOfMount(m, byDevno, probe)))) {
    const shown = target === `/dev/${device.name}` ? target : `${target} (/dev/${device.name})`;
    throw new FlashError('root-disk', `TARGET ${shown} holds this host's root filesystem: it is the disk this machine runs from; pick another disk (\`lsblk -d\` lists them)`);
  }
  const mounted = mounts.filter((m) => onTarget(deviceOfMount(m, byDevno, probe)));
  if (mounted.length > 0) {
    const shown = mounted.slice(0, 3).map((m) => `${m.source} on ${m.mountPoint}`).join(', ') + (mounted.length > 3 ? `, and ${mounted.length - 3} more` : '');
    throw new FlashError('mounted', `TARGET ${target} is mounted (${shown}): unmount it first (umount ${mounted[0]!.mountPoint}), then flash again`);
  }
  const swapped = probe.swaps().filter((file) => {
    try {
      const rdevno = probe.stat(file)?.rdevno;
      return onTarget(rdevno ? byDevno.get(rdevno) : undefined);
    } catch {
      return false;
    }
  });
  if (swapped.length > 0) throw new FlashError('swap', `TARGET ${target} is used as swap (${swapped.join(', ')}): run swapoff ${swapped[0]} first`);
  const held = [device, ...partitions].filter((d) => d.holders.length > 0);
  if (held.length > 0) {
    const shown = held.map((d) => `${d.name} → ${d.holders.join(', ')}`).join('; ');
    throw new FlashError(
      'holders',
      `TARGET ${target} is in use by stacked devices (${shown}: LVM, dm-crypt or md): deactivate them first (vgchange -an, cryptsetup close or mdadm --stop)`,
    );
  }
  if (device.sizeBytes < image.size) {
    const hint = device.sizeBytes === 0 && device.name.startsWith('loop') ? ' (an unattached loop device: attach a file with losetup first)' : '';
    throw new FlashError(
      'too-small',
      `TARGET ${target} is smaller than IMAGE ${image.path}: ${formatBytes(device.sizeBytes)} < ${formatBytes(image.size)}${hint}; pick a disk of at least ${formatBytes(image.size)}`,
    );
  }
  return { path: target, kind: 'block', exists: true, device };
}

function checkFileTarget(target: string, dev: bigint, ino: bigint, probe: HostProbe, image: ImageInfo): TargetInfo {
  if (dev === image.dev && ino === image.ino) {
    throw new FlashError('same-file', `IMAGE and TARGET are the same file (${image.path}, ${target}): pass a different TARGET`);
  }
  const real = probe.realpath(target);
  const loop = probe.blockDevices().find((d) => d.backingFile === real);
  if (loop) throw new FlashError('loop-backing', `TARGET ${target} is the backing file of /dev/${loop.name}: detach it first (losetup -d /dev/${loop.name})`);
  const swap = probe.swaps().find((file) => {
    const st = probe.stat(file);
    return st?.kind === 'file' && st.dev === dev && st.ino === ino;
  });
  if (swap) throw new FlashError('swap', `TARGET ${target} is used as swap (${swap}): run swapoff ${swap} first`);
  return { path: target, kind: 'file', exists: true, dev, ino };
}

/** "/dev/sdb (SanDisk Ultra, 28.7 GiB)" or "the file x". */
export function describeTarget(target: TargetInfo): string {
  if (target.kind === 'file') return `the file ${target.path}`;
  const d = target.device!;
  return `${target.path} (${[d.model, formatBytes(d.sizeBytes)].filter(Boolean).join(', ')})`;
}

/** sha256sum's format: "<64 hex>  <name>" ("*name" in binary mode); one line, or one per file. */
export function parseSidecar(text: string, imageName: string): string | undefined {
  const entries = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => /^([0-9a-fA-F]{64})(?:\s+\*?(.*))?$/.exec(line));
  if (entries.length === 0 || entries.some((m) => m === null)) return undefined;
  const valid = entries as RegExpExecArray[];
  // A lone line is the image's even when the file was renamed after sha256sum ran.
  if (valid.length === 1) return valid[0]![1]!.toLowerCase();
  const match = valid.find((m) => m[2] !== undefined && path.basename(m[2]) === imageName);
  return match?.[1]!.toLowerCase();
}

/** Whether to ask: --yes never asks; without a TTY there is nobody to ask, so refuse. A new file destroys nothing. */
export function confirmationStep(options: { yes: boolean; stdinIsTTY: boolean; target: TargetInfo }): 'proceed' | 'ask' {
  if (options.yes || !options.target.exists) return 'proceed';
  if (!options.stdinIsTTY) {
    throw new FlashError('no-tty', `not flashing ${options.target.path}: stdin is not a terminal, so nobody can confirm; pass --yes to flash without a prompt`);
  }
  return 'ask';
}

export function confirmationQuestion(image: ImageInfo, target: TargetInfo): string {
  const what =
    target.kind === 'block'
      ? `This destroys everything on ${describeTarget(target)}: every partition and file on it is replaced by`
      : `This overwrites ${describeTarget(target)} with`;
  return `${what} ${image.path} (${formatBytes(image.size)}).\nType yes to flash, anything else to stop: `;
}

/** Only the word "yes" proceeds ("y", "YES " with other words, an empty line or end of input do not). */
export function isYes(answer: string | null | undefined): boolean {
  return answer?.trim() === 'yes';
}

/** Lets a progress line through at most once per interval, the first one an interval after the start (a small image prints only its final line). */
export class ProgressThrottle {
  private last: number;
  constructor(
    startMs: number,
    private readonly intervalMs = PROGRESS_INTERVAL_MS,
  ) {
    this.last = startMs;
  }
  due(nowMs: number): boolean {
    if (nowMs - this.last < this.intervalMs) return false;
    this.last = nowMs;
    return true;
  }
}

function rate(bytes: number, elapsedMs: number): string {
  return elapsedMs > 0 ? (bytes / (1024 * 1024) / (elapsedMs / 1000)).toFixed(1) : '-';
}

/** "wrote 48.0 MiB of 64.0 MiB (75%), 120.5 MiB/s" */
export function formatProgress(verb: string, done: number, total: number, elapsedMs: number): string {
  const percent = total > 0 ? Math.floor((done * 100) / total) : 100;
  return `${verb} ${formatBytes(done)} of ${formatBytes(total)} (${percent}%), ${rate(done, elapsedMs)} MiB/s`;
}

/** "wrote 64.0 MiB in 0.8 s (80.1 MiB/s)" */
export function formatProgressDone(verb: string, total: number, elapsedMs: number): string {
  return `${verb} ${formatBytes(total)} in ${(elapsedMs / 1000).toFixed(1)} s (${rate(total, elapsedMs)} MiB/s)`;
}

/** An open file or device; positions are absolute. */
export interface OpenFile {
  /** Bytes read into buf[0..], 0 at end of file. */
  read(buf: Buffer, position: number): Promise<number>;
  /** Bytes written from buf (may be fewer than buf.length). */
  write(buf: Buffer, position: number): Promise<number>;
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  /** fstat(2) of what was opened: which inode or device the open reached, whatever the path says now. */
  stat(): Promise<PathStat>;
  close(): Promise<void>;
}

export type OpenMode =
  /** O_RDONLY */
  | 'read'
  /** O_WRONLY|O_EXCL: the kernel refuses (EBUSY) a device mounted or opened exclusively meanwhile. */
  | 'write-device'
  /** O_WRONLY|O_NOFOLLOW: an existing file, emptied by flash only once fstat showed it is the one checked. */
  | 'write-file'
  /** O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW, 0644: a new file; fails when anything (a symlink too) appeared there. */
  | 'create-file';

export interface FlashFiles {
  open(file: string, mode: OpenMode): Promise<OpenFile>;
  /** Drop a block device's page cache (BLKFLSBUF), so the read-back comes from the disk. */
  dropCache?(device: string): Promise<void>;
  /** undefined when the file does not exist. */
  readText(file: string): string | undefined;
}

export interface FlashDeps {
  probe: HostProbe;
  files: FlashFiles;
  /** Monotonic milliseconds. */
  now(): number;
  stdinIsTTY: boolean;
  /** Show the question, read one line; null at end of input. */
  ask(question: string): Promise<string | null>;
  /** A status line for the user (stderr). */
  log(line: string): void;
  /** A progress line; `final` on the last of a phase (a terminal sink may redraw one line until then). */
  progress(line: string, final: boolean): void;
  chunkBytes?: number;
  /** Code to run at fixed points (tests: an attacker acting between the checks and the write). */
  hooks?: FlashHooks;
}

export interface FlashHooks {
  /** After every check and the confirmation, right before TARGET is opened for writing. */
  beforeOpenTarget?(target: TargetInfo): void | Promise<void>;
  /** After the write and fsync, right before TARGET is opened again to be read back. */
  beforeReadBack?(target: TargetInfo): void | Promise<void>;
}

export interface FlashRequest {
  image: string;
  target: string;
  /** Skip the confirmation. */
  yes: boolean;
}

export interface FlashResult {
  image: string;
  target: string;
  targetKind: 'block' | 'file';
  bytes: number;
  imageSha256: string;
  /** sha256 of the first `bytes` bytes read back from TARGET after fsync. */
  targetSha256: string;
  /** The digest IMAGE.sha256 named, when there was one (it matched, or nothing was written). */
  sidecarSha256?: string;
  /** Writing and reading back (not the checks, not the confirmation). */
  seconds: number;
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function modeFor(target: TargetInfo): OpenMode {
  return target.kind === 'block' ? 'write-device' : target.exists ? 'write-file' : 'create-file';
}

async function openTarget(files: FlashFiles, target: TargetInfo): Promise<OpenFile> {
  try {
    return await files.open(target.path, modeFor(target));
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EBUSY') {
      throw new FlashError('busy', `TARGET ${target.path} is busy (EBUSY): it was mounted or opened exclusively after the checks; unmount or close it, then flash again`);
    }
    if (code === 'EEXIST' && !target.exists) {
      throw new FlashError(
        'target',
        `not flashed: TARGET ${target.path} appeared after the checks (something created it there, perhaps a symbolic link to another file); nothing was written: see what it is (ls -l ${target.path}), remove it if it is not yours, and run again`,
      );
    }
    if (code === 'ELOOP' && target.kind === 'file') {
      throw new FlashError(
        'target',
        `not flashed: TARGET ${target.path} became a symbolic link after the checks; nothing was written and the link was not followed: see where it points (ls -l ${target.path}), remove it if it is not yours, and run again`,
      );
    }
    if (code === 'EACCES' || code === 'EPERM') throw new FlashError('permission', `cannot open TARGET ${target.path} for writing (${code}): writing a disk needs root; run aer with sudo`);
    if (code === 'EROFS') throw new FlashError('read-only', `TARGET ${target.path} is on a read-only filesystem (EROFS): pick a writable place`);
    throw new FlashError('io', `cannot open TARGET ${target.path} for writing (${code ?? (err as Error).message})`);
  }
}

/** How the identity of what an open reached differs from what was checked; empty when it is the same. */
function openedMismatch(target: TargetInfo, opened: PathStat): string | undefined {
  if (target.kind === 'block') {
    const want = target.device!.devno;
    if (opened.kind !== 'block') return `it is now a ${kindName(opened.kind)}, not the block device ${want}`;
    return opened.rdevno === want ? undefined : `it is now the block device ${opened.rdevno}, not ${want}`;
  }
  if (opened.kind !== 'file') return `it is now a ${kindName(opened.kind)}, not a regular file`;
  if (!target.exists) return undefined; // O_CREAT|O_EXCL: the open made it, so it is ours
  return opened.dev === target.dev && opened.ino === target.ino ? undefined : `it is now inode ${opened.dev}:${opened.ino}, not the checked ${target.dev}:${target.ino}`;
}

/** What tells one disk from another; each differing field as "field a → b". */
export function diskChanges(before: BlockDevice, after: BlockDevice): string[] {
  const fields: Array<[string, (d: BlockDevice) => string | undefined]> = [
    ['name', (d) => d.name],
    ['device number', (d) => d.devno],
    ['size', (d) => formatBytes(d.sizeBytes)],
    ['model', (d) => d.model],
    ['serial', (d) => d.serial],
    ['wwid', (d) => d.wwid],
    ['loop backing file', (d) => d.backingFile],
    ['loop backing inode', (d) => d.backingIdentity],
  ];
  return fields.filter(([, get]) => get(before) !== get(after)).map(([name, get]) => `${name} ${get(before) ?? '(none)'} → ${get(after) ?? '(none)'}`);
}

/**
 * Open TARGET for writing and prove it is what the checks saw: fstat of the open must be the checked inode
 * (a file) or device number (a disk), and a disk is checked whole again (mounts, holders, size, model,
 * serial, loop backing) now that it is held open exclusively: after this, nothing can mount or re-attach it.
 * An existing file is emptied only then. Returns the open file and what it is.
 */
async function openVerifiedTarget(target: TargetInfo, seen: TargetInfo, request: FlashRequest, image: ImageInfo, deps: FlashDeps): Promise<{ sink: OpenFile; opened: PathStat }> {
  await deps.hooks?.beforeOpenTarget?.(target);
  const sink = await openTarget(deps.files, target);
  try {
    const opened = await sink.stat().catch((err) => {
      throw ioError(`fstat of TARGET ${target.path}`, err);
    });
    const mismatch = openedMismatch(target, opened);
    if (mismatch) {
      throw new FlashError(
        'target',
        `not flashed: TARGET ${target.path} is not what was checked (${mismatch}): something replaced it after the checks; nothing was written: see what it is now (ls -l ${target.path}) and run again`,
      );
    }
    if (target.kind === 'block') {
      const again = checkTarget(request.target, deps.probe, image);
      const changes = again.device && seen.device ? diskChanges(seen.device, again.device) : ['kind'];
      if (changes.length > 0) {
        throw new FlashError(
          'target',
          `not flashed: TARGET ${target.path} is not the disk that was checked (${changes.join('; ')}); nothing was written: see which disk it is now (lsblk -o NAME,SIZE,MODEL,SERIAL ${target.path}) and run again`,
        );
      }
    } else if (target.exists) {
      await sink.truncate(0).catch((err) => {
        throw ioError(`emptying TARGET ${target.path}`, err);
      });
    }
    return { sink, opened };
  } catch (err) {
    await sink.close().catch(() => {});
    throw err;
  }
}

/** Read up to buf.length bytes at position, retrying short reads; fewer only at end of file. */
async function readFull(file: OpenFile, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const n = await file.read(done === 0 ? buf : buf.subarray(done), position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

async function writeFull(file: OpenFile, buf: Buffer, position: number, target: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const n = await file.write(buf.subarray(done), position + done);
    if (n <= 0) throw new FlashError('io', `writing TARGET ${target} at byte ${position + done} made no progress: is the disk full or failing?`);
    done += n;
  }
}

function ioError(what: string, err: unknown): FlashError {
  if (err instanceof FlashError) return err;
  return new FlashError('io', `${what} failed (${errnoOf(err) ?? (err as Error).message}): check the disk (dmesg shows I/O errors) and flash again`);
}

/** sha256 of the first `size` bytes of an open file, with throttled progress under `verb`. */
async function hashFile(file: OpenFile, size: number, deps: FlashDeps, verb: string, what: string): Promise<string> {
  const chunk = Buffer.alloc(deps.chunkBytes ?? CHUNK_BYTES);
  const hash = createHash('sha256');
  const started = deps.now();
  const throttle = new ProgressThrottle(started);
  let position = 0;
  while (position < size) {
    const want = Math.min(chunk.length, size - position);
    const n = await readFull(file, chunk.subarray(0, want), position);
    if (n < want) throw new FlashError('verify', `${what} ended at byte ${position + n}, expected ${size} bytes: it is shorter than the image`);
    hash.update(chunk.subarray(0, n));
    position += n;
    if (position < size && throttle.due(deps.now())) deps.progress(formatProgress(verb, position, size, deps.now() - started), false);
  }
  deps.progress(formatProgressDone(verb, size, deps.now() - started), true);
  return hash.digest('hex');
}

/** IMAGE.sha256 next to the image must name IMAGE's digest; a corrupt download is refused before any write. */
async function checkSidecar(image: ImageInfo, deps: FlashDeps): Promise<string | undefined> {
  const sidecarPath = `${image.path}.sha256`;
  const text = deps.files.readText(sidecarPath);
  if (text === undefined) return undefined;
  const expected = parseSidecar(text, path.basename(image.path));
  if (!expected) {
    throw new FlashError(
      'sidecar',
      `${sidecarPath} does not give a sha256 for ${path.basename(image.path)} in sha256sum format ("<64 hex digits>  <name>"): regenerate it (sha256sum ${path.basename(image.path)} > ${path.basename(sidecarPath)}) or remove it`,
    );
  }
  deps.log(`checking ${image.path} against ${sidecarPath}`);
  const file = await deps.files.open(image.path, 'read').catch((err) => {
    throw ioError(`opening IMAGE ${image.path}`, err);
  });
  let actual: string;
  try {
    actual = await hashFile(file, image.size, deps, 'checked', `IMAGE ${image.path}`);
  } finally {
    await file.close();
  }
  if (actual !== expected) {
    throw new FlashError(
      'sidecar',
      `IMAGE ${image.path} does not match ${sidecarPath} (its sha256 is ${actual}, the sidecar says ${expected}): the file is corrupt or incomplete; download or build it again. Nothing was written`,
    );
  }
  deps.log(`${image.path} matches ${sidecarPath}`);
  return expected;
}

function allZero(buf: Buffer): boolean {
  // Compare 8 bytes at a time where possible: this runs on every chunk of a mostly-sparse image.
  const words = Math.floor(buf.length / 8);
  for (let i = 0; i < words; i++) if (buf.readBigUInt64LE(i * 8) !== 0n) return false;
  for (let i = words * 8; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * Stream IMAGE to TARGET, hashing what was read, then fsync. A file target was truncated by the open, so
 * all-zero chunks are left as holes (the file stays as sparse as the image); a disk gets every byte, because
 * its old contents must go.
 */
async function writeImage(image: ImageInfo, target: TargetInfo, seen: TargetInfo, request: FlashRequest, deps: FlashDeps): Promise<{ sha256: string; opened: PathStat }> {
  const source = await deps.files.open(image.path, 'read').catch((err) => {
    throw ioError(`opening IMAGE ${image.path}`, err);
  });
  try {
    const { sink, opened } = await openVerifiedTarget(target, seen, request, image, deps);
    let closed = false;
    try {
      const chunk = Buffer.alloc(deps.chunkBytes ?? CHUNK_BYTES);
      const hash = createHash('sha256');
      const started = deps.now();
      const throttle = new ProgressThrottle(started);
      let position = 0;
      while (position < image.size) {
        const want = Math.min(chunk.length, image.size - position);
        const n = await readFull(source, chunk.subarray(0, want), position).catch((err) => {
          throw ioError(`reading IMAGE ${image.path} at byte ${position}`, err);
        });
        if (n < want) throw new FlashError('image', `IMAGE ${image.path} shrank while flashing (ended at byte ${position + n} of ${image.size}): is something rewriting it? flash again once it is complete`);
        const data = chunk.subarray(0, n);
        hash.update(data);
        if (!(target.kind === 'file' && allZero(data))) {
          await writeFull(sink, data, position, target.path).catch((err) => {
            throw ioError(`writing TARGET ${target.path} at byte ${position}`, err);
          });
        }
        position += n;
        if (position < image.size && throttle.due(deps.now())) deps.progress(formatProgress('wrote', position, image.size, deps.now() - started), false);
      }
      // A larger disk keeps its old backup GPT in its last sectors; firmware could restore the old layout from
      // it if the new primary table were ever damaged, so it goes.
      const diskBytes = target.kind === 'block' ? (target.device?.sizeBytes ?? 0) : 0;
      if (diskBytes - image.size >= STALE_TAIL_BYTES) {
        await writeFull(sink, Buffer.alloc(STALE_TAIL_BYTES), diskBytes - STALE_TAIL_BYTES, target.path).catch((err) => {
          throw ioError(`clearing the old backup GPT at the end of TARGET ${target.path}`, err);
        });
      }
      try {
        if (target.kind === 'file') await sink.truncate(image.size);
        await sink.sync();
      } catch (err) {
        throw ioError(`fsync of TARGET ${target.path}`, err);
      }
      deps.progress(formatProgressDone('wrote', image.size, deps.now() - started), true);
      closed = true;
      await sink.close();
      return { sha256: hash.digest('hex'), opened };
    } finally {
      if (!closed) await sink.close().catch(() => {});
    }
  } finally {
    await source.close().catch(() => {});
  }
}

/**
 * Read back image-size bytes from TARGET, reopened after the writer closed and (a block device) with its page
 * cache dropped, so these reads come from the disk, not from memory.
 */
async function readBack(image: ImageInfo, target: TargetInfo, written: PathStat, deps: FlashDeps): Promise<string> {
  // udev or another opener may keep the device open, and then the cache survives our close: drop it explicitly.
  if (target.kind === 'block' && deps.files.dropCache) {
    await deps.files.dropCache(target.path).catch((err) => {
      throw ioError(`dropping the page cache of TARGET ${target.path} before reading it back`, err);
    });
  }
  await deps.hooks?.beforeReadBack?.(target);
  const file = await deps.files.open(target.path, 'read').catch((err) => {
    throw ioError(`opening TARGET ${target.path} to read it back`, err);
  });
  try {
    // The path is opened again: it must still lead to what was written, or the digest proves nothing.
    const now = await file.stat().catch((err) => {
      throw ioError(`fstat of TARGET ${target.path} before reading it back`, err);
    });
    const same = target.kind === 'block' ? now.kind === 'block' && now.rdevno === written.rdevno : now.kind === 'file' && now.dev === written.dev && now.ino === written.ino;
    if (!same) {
      throw new FlashError(
        'verify',
        `verification failed: TARGET ${target.path} no longer leads to what was written (something replaced it after the write): do not trust it; see what it is (ls -l ${target.path}) and flash again`,
      );
    }
    return await hashFile(file, image.size, deps, 'verified', `TARGET ${target.path}`).catch((err) => {
      throw ioError(`reading back TARGET ${target.path}`, err);
    });
  } finally {
    await file.close().catch(() => {});
  }
}

/** Whether two checks of a block target saw the same disk (see diskChanges). */
function sameDisk(a: TargetInfo, b: TargetInfo): boolean {
  const x = a.device;
  const y = b.device;
  if (!x || !y) return a.kind === b.kind;
  return diskChanges(x, y).length === 0;
}

/** The whole command: check, (sidecar), confirm, write, fsync, verify. Throws FlashError; nothing is written before the confirmation. */
export async function runFlash(request: FlashRequest, deps: FlashDeps): Promise<FlashResult> {
  const image = checkImage(request.image, deps.probe);
  const target = checkTarget(request.target, deps.probe, image);
  const seen: TargetInfo = { ...target, device: target.device && { ...target.device } }; // as it was before the question
  const sidecarSha256 = await checkSidecar(image, deps);
  if (confirmationStep({ yes: request.yes, stdinIsTTY: deps.stdinIsTTY, target }) === 'ask') {
    const answer = await deps.ask(confirmationQuestion(image, target));
    if (!isYes(answer)) throw new FlashError('not-confirmed', `not flashed: the answer was not "yes"; ${target.path} is unchanged`);
    // The human took a while: the device may have been swapped or mounted meanwhile. Check it all again.
    const again = checkTarget(request.target, deps.probe, image);
    if (!sameDisk(again, seen)) {
      throw new FlashError('target', `not flashed: TARGET ${target.path} changed while waiting for the answer (now ${describeTarget(again)}); run the command again`);
    }
  }
  // Timed from here: the result's seconds are the write and the read-back, not the checks or the human.
  const started = deps.now();
  deps.log(`flashing ${image.path} (${formatBytes(image.size)}) to ${describeTarget(target)}`);
  // Re-checked there whatever the confirmation did: --yes skips the question, not the re-identification.
  const { sha256: imageSha256, opened } = await writeImage(image, target, seen, request, deps);
  if (sidecarSha256 && imageSha256 !== sidecarSha256) {
    throw new FlashError('image', `IMAGE ${image.path} changed while flashing (sha256 ${imageSha256}, ${image.path}.sha256 says ${sidecarSha256}): TARGET ${target.path} holds a mix; flash again`);
  }
  const targetSha256 = await readBack(image, target, opened, deps);
  if (targetSha256 !== imageSha256) {
    throw new FlashError(
      'verify',
      `verification failed: TARGET ${target.path} read back sha256 ${targetSha256}, but IMAGE ${image.path} is ${imageSha256}: do not boot it; the disk may be failing or something wrote to it meanwhile; flash again or use another disk`,
    );
  }
  return {
    image: image.path,
    target: target.path,
    targetKind: target.kind,
    bytes: image.size,
    imageSha256,
    targetSha256,
    ...(sidecarSha256 ? { sidecarSha256 } : {}),
    seconds: Math.round(deps.now() - started) / 1000,
  };
}
