// `aer image flash` through the real CLI against real block devices (loop devices; root on this host).
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, runAer } from '../../supervisor/daemon/testing';
import { hostProbe } from './block-devices';
import { nodeFlashFiles } from './files';
import { FlashError, type FlashDeps, runFlash } from './flash';

const MiB = 1024 * 1024;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' }).trim();
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** sha256 of the first `bytes` bytes of a file or device. */
function headSha256(file: string, bytes: number): string {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    let done = 0;
    while (done < bytes) {
      const n = fs.readSync(fd, buf, done, bytes - done, done);
      if (n === 0) throw new Error(`${file} ended at byte ${done}`);
      done += n;
    }
    return sha256(buf);
  } finally {
    fs.closeSync(fd);
  }
}

/** Run aer on a real terminal (util-linux `script` gives it a pty), typing `answer` at it. Bounded by 30 s. */
function aerOnTerminal(args: string[], answer: string): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'aer', 'cli.ts'), ...args].join(' ');
  return new Promise((resolve, reject) => {
    const proc = spawn('script', ['-qec', command, '/dev/null'], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // The pty buffers the line until aer reads it; stdin stays open so script does not send EOF early.
    proc.stdin.write(`${answer}\n`);
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`aer on a terminal did not finish in 30 s; output so far:\n${output}`));
    }, 30_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      proc.stdin.destroy();
      resolve({ code, output: output.replace(/\r/g, '') });
    });
  });
}

/** The whole disk holding "/" on this host, from mountinfo and sysfs (what checkTarget must refuse). */
function rootDisk(): string {
  const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === '/').at(-1);
  const devno = line?.split(' ')[2];
  const sys = `/sys/dev/block/${devno}`;
  if (!devno || !fs.existsSync(sys)) throw new Error(`this test needs / on a block device; mountinfo says ${line}`);
  const real = fs.realpathSync(sys);
  const name = fs.existsSync(path.join(real, 'partition')) ? path.basename(path.dirname(real)) : path.basename(real);
  return `/dev/${name}`;
}

describe('aer image flash on loop devices', () => {
  let dir: string;
  let image: string;
  let imageSha: string;
  const loops: string[] = [];
  let mountDir: string | undefined;
  let diskLoop: string;
  let mountedLoop: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aer-flash-'));
    // 64 MiB, sparse: random head, a random block in the middle, zeros elsewhere.
    image = path.join(dir, 'disk.raw');
    fs.writeFileSync(image, randomBytes(MiB));
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, randomBytes(64 * 1024), 0, 64 * 1024, 40 * MiB);
    fs.ftruncateSync(fd, 64 * MiB);
    fs.closeSync(fd);
    imageSha = sha256(fs.readFileSync(image));

    // The disk to flash: 80 MiB filled with a pattern so that leftovers would show; a marker beyond 64 MiB.
    const backing = path.join(dir, 'disk-a.img');
    fs.writeFileSync(backing, Buffer.alloc(80 * MiB, 0x5a));
    diskLoop = sh('losetup', ['--find', '--show', backing]);
    loops.push(diskLoop);

    // A disk with a mounted ext4 filesystem (no lazy init, noatime: nothing writes to it unless we do).
    const backingB = path.join(dir, 'disk-b.img');
    fs.writeFileSync(backingB, Buffer.alloc(0));
    fs.truncateSync(backingB, 80 * MiB);
    mountedLoop = sh('losetup', ['--find', '--show', backingB]);
    loops.push(mountedLoop);
    sh('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', mountedLoop]);
    mountDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aer-flash-mnt-'));
    sh('mount', ['-o', 'noatime', mountedLoop, mountDir]);
    fs.writeFileSync(path.join(mountDir, 'keep.txt'), 'precious\n');
    sh('sync', []);
  }, 60_000);

  afterAll(() => {
    const problems: string[] = [];
    if (mountDir) {
      try {
        sh('umount', [mountDir]);
        fs.rmdirSync(mountDir);
      } catch (err) {
        problems.push(`umount ${mountDir}: ${(err as Error).message}`);
      }
    }
    for (const loop of loops) {
      try {
        sh('losetup', ['-d', loop]);
      } catch (err) {
        problems.push(`losetup -d ${loop}: ${(err as Error).message}`);
      }
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(`cleanup failed: ${problems.join('; ')}`);
  });

  it('flashes a loop device with --yes, prints matching digests, and the device holds the image', async () => {
    const result = await runAer(['image', 'flash', image, diskLoop, '--yes'], {});
    expect(result.stderr).toContain(`aer: flashing ${image} (64.0 MiB) to ${diskLoop}`);
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines.slice(0, 2)).toEqual([`image  sha256 ${imageSha}  ${image}`, `target sha256 ${imageSha}  ${diskLoop} (first ${64 * MiB} bytes read back)`]);
    expect(lines[2]).toMatch(new RegExp(`^flashed and verified ${diskLoop} in \\d+\\.\\d s$`));
  });

  it('… and reading the device independently gives the image bytes; the rest of the disk is untouched but its old backup GPT', () => {
    expect(headSha256(diskLoop, 64 * MiB)).toBe(imageSha);
    const tail = Buffer.alloc(16 * MiB);
    const fd = fs.openSync(diskLoop, 'r');
    try {
      expect(fs.readSync(fd, tail, 0, tail.length, 64 * MiB)).toBe(16 * MiB);
    } finally {
      fs.closeSync(fd);
    }
    // The last 33 sectors (where an old backup GPT would be) are cleared; everything else beyond the image stays.
    const keep = tail.length - 33 * 512;
    expect(tail.subarray(0, keep).every((b) => b === 0x5a)).toBe(true);
    expect(tail.subarray(keep).every((b) => b === 0)).toBe(true);
  });

  it('refuses a loop device whose ext4 filesystem is mounted, and leaves it untouched', async () => {
    const before = headSha256(mountedLoop, 64 * MiB);
    const result = await runAer(['image', 'flash', image, mountedLoop, '--yes'], {});
    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr: `aer: TARGET ${mountedLoop} is mounted (${mountedLoop} on ${mountDir}): unmount it first (umount ${mountDir}), then flash again\n`,
    });
    sh('sync', []);
    expect(headSha256(mountedLoop, 64 * MiB)).toBe(before);
    expect(fs.readFileSync(path.join(mountDir!, 'keep.txt'), 'utf8')).toBe('precious\n');
  });

  it('the exclusive open itself is refused by the kernel (EBUSY) for the mounted device: the guard after the checks', async () => {
    await expect(nodeFlashFiles().open(mountedLoop, 'write-device')).rejects.toMatchObject({ code: 'EBUSY' });
  });

  it("refuses the host's root disk (run without --yes: had the check failed, the missing TTY would still stop it)", async () => {
    const disk = rootDisk();
    const result = await runAer(['image', 'flash', image, disk], {});
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`aer: TARGET ${disk} holds this host's root filesystem: it is the disk this machine runs from; pick another disk (\`lsblk -d\` lists them)\n`);
  });

  it('without --yes and without a terminal it refuses and writes nothing', async () => {
    const before = headSha256(diskLoop, MiB);
    const other = path.join(dir, 'other.raw');
    fs.writeFileSync(other, randomBytes(MiB));
    const result = await runAer(['image', 'flash', other, diskLoop], {});
    expect(result).toMatchObject({ code: 1, stderr: `aer: not flashing ${diskLoop}: stdin is not a terminal, so nobody can confirm; pass --yes to flash without a prompt\n` });
    expect(headSha256(diskLoop, MiB)).toBe(before);
  });

  it('on a terminal it asks, naming the device and size; "no" leaves the disk alone, "yes" flashes it', async () => {
    const other = path.join(dir, 'other.raw');
    fs.writeFileSync(other, randomBytes(2 * MiB));
    const before = headSha256(diskLoop, 2 * MiB);
    const no = await aerOnTerminal(['image', 'flash', other, diskLoop], 'no');
    expect(no.output).toContain(`This destroys everything on ${diskLoop} (80.0 MiB): every partition and file on it is replaced by ${other} (2.0 MiB).\nType yes to flash, anything else to stop: `);
    expect(no.output).toContain(`aer: not flashed: the answer was not "yes"; ${diskLoop} is unchanged`);
    expect(no.code).toBe(1);
    expect(headSha256(diskLoop, 2 * MiB)).toBe(before);

    const yes = await aerOnTerminal(['image', 'flash', other, diskLoop], 'yes');
    expect(yes.code).toBe(0);
    expect(yes.output).toContain(`flashed and verified ${diskLoop}`);
    expect(headSha256(diskLoop, 2 * MiB)).toBe(sha256(fs.readFileSync(other)));
  });

  it('a file target works (created, sparse like the image) and a wrong IMAGE.sha256 stops it before writing', async () => {
    const copy = path.join(dir, 'copy.raw');
    fs.writeFileSync(`${image}.sha256`, `${imageSha}  disk.raw\n`);
    const ok = await runAer(['-o', 'json', 'image', 'flash', image, copy, '--yes'], {});
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ target: copy, targetKind: 'file', bytes: 64 * MiB, imageSha256: imageSha, targetSha256: imageSha, sidecarSha256: imageSha });
    expect(sha256(fs.readFileSync(copy))).toBe(imageSha);
    // Only the two 4 MiB chunks with data are allocated (not 64 MiB); a little slack for extent blocks.
    expect(fs.statSync(copy).blocks * 512).toBeLessThanOrEqual(9 * MiB);

    fs.writeFileSync(`${image}.sha256`, `${'0'.repeat(64)}  disk.raw\n`);
    fs.rmSync(copy);
    const bad = await runAer(['image', 'flash', image, copy, '--yes'], {});
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`aer: IMAGE ${image} does not match ${image}.sha256`);
    expect(fs.existsSync(copy)).toBe(false);
    fs.rmSync(`${image}.sha256`);
  });
});

// An attacker acting between the checks and the write, at exactly that moment (the module's hook), against
// the real kernel: O_EXCL/O_NOFOLLOW, fstat and the re-identification of a re-attached loop device.
describe('aer image flash: the window between the checks and the write', () => {
  let dir: string;
  let image: string;
  const loops: string[] = [];

  const deps = (hooks: FlashDeps['hooks']): FlashDeps => ({
    probe: hostProbe(),
    files: nodeFlashFiles(),
    now: () => performance.now(),
    stdinIsTTY: false,
    ask: async () => null,
    log: () => {},
    progress: () => {},
    hooks,
  });
  const refused = async (p: Promise<unknown>): Promise<FlashError> => {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof FlashError)) throw new Error(`expected a refusal, got ${String(err)}`);
    return err;
  };

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aer-flash-race-'));
    image = path.join(dir, 'disk.raw');
    fs.writeFileSync(image, randomBytes(2 * MiB));
  });

  afterAll(() => {
    const problems: string[] = [];
    for (const loop of loops) {
      try {
        sh('losetup', ['-d', loop]);
      } catch (err) {
        problems.push(`losetup -d ${loop}: ${(err as Error).message}`);
      }
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(`cleanup failed: ${problems.join('; ')}`);
  });

  it('a symlink planted at a new file target after the check is not followed: the file it points to is untouched', async () => {
    const victim = path.join(dir, 'victim.conf');
    fs.writeFileSync(victim, 'precious\n');
    const target = path.join(dir, 'new.raw');
    const e = await refused(runFlash({ image, target, yes: true }, deps({ beforeOpenTarget: () => fs.symlinkSync(victim, target) })));
    expect(e.message).toBe(
      `not flashed: TARGET ${target} appeared after the checks (something created it there, perhaps a symbolic link to another file); nothing was written: see what it is (ls -l ${target}), remove it if it is not yours, and run again`,
    );
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(fs.lstatSync(target).isSymbolicLink()).toBe(true);
  });

  it('… and a dangling symlink planted there does not create the file it names', async () => {
    const target = path.join(dir, 'new2.raw');
    const elsewhere = path.join(dir, 'created-through-link.raw');
    await refused(runFlash({ image, target, yes: true }, deps({ beforeOpenTarget: () => fs.symlinkSync(elsewhere, target) })));
    expect(fs.existsSync(elsewhere)).toBe(false);
  });

  it('an existing file target swapped for a symlink, or for another file, is neither followed nor emptied', async () => {
    const victim = path.join(dir, 'victim2.conf');
    fs.writeFileSync(victim, 'precious\n');
    const target = path.join(dir, 'old.raw');
    fs.writeFileSync(target, 'old contents\n');
    const swapLink = () => {
      fs.rmSync(target);
      fs.symlinkSync(victim, target);
    };
    const link = await refused(runFlash({ image, target, yes: true }, deps({ beforeOpenTarget: swapLink })));
    expect(link.message).toMatch(/became a symbolic link after the checks; nothing was written and the link was not followed/);
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious\n');

    fs.rmSync(target);
    fs.writeFileSync(target, 'old contents\n');
    const other = path.join(dir, 'other.txt');
    fs.writeFileSync(other, 'someone else\'s file\n');
    const replaced = await refused(runFlash({ image, target, yes: true }, deps({ beforeOpenTarget: () => fs.renameSync(other, target) })));
    expect(replaced.message).toMatch(new RegExp(`^not flashed: TARGET ${target} is not what was checked \\(it is now inode \\d+:\\d+, not the checked \\d+:\\d+\\)`));
    expect(fs.readFileSync(target, 'utf8')).toBe('someone else\'s file\n');
  });

  it('a loop device re-attached to another file between the check and the write is not written', async () => {
    const backingA = path.join(dir, 'a.img');
    const backingB = path.join(dir, 'b.img');
    fs.writeFileSync(backingA, Buffer.alloc(8 * MiB, 0x11));
    fs.writeFileSync(backingB, Buffer.alloc(8 * MiB, 0x22)); // same size: only the backing tells them apart
    const loop = sh('losetup', ['--find', '--show', backingA]);
    loops.push(loop);
    const reattach = () => {
      sh('losetup', ['-d', loop]);
      sh('losetup', [loop, backingB]);
    };
    const e = await refused(runFlash({ image, target: loop, yes: true }, deps({ beforeOpenTarget: reattach })));
    expect(e.message).toMatch(new RegExp(`^not flashed: TARGET ${loop} is not the disk that was checked \\(loop backing file ${backingA} → ${backingB}; loop backing inode \\d+:\\d+ → \\d+:\\d+\\); nothing was written`));
    expect(fs.readFileSync(backingB).every((b) => b === 0x22)).toBe(true);
    expect(fs.readFileSync(backingA).every((b) => b === 0x11)).toBe(true);
  });

  it('untouched, the same loop device is flashed and verified', async () => {
    const loop = loops[0]!;
    const result = await runFlash({ image, target: loop, yes: true }, deps({}));
    expect(result.targetSha256).toBe(sha256(fs.readFileSync(image)));
  });
});
