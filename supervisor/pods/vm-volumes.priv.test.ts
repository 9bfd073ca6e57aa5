// Host tier of a VM sandbox's volumes share: the guest as the attacker. This machine's QEMU, run as root with the
// argv of the real qemuArgs, serves the share a real nodePodVolumeShare builds (a tmpfs, binds of "host paths"
// made in a temporary directory), to a guest of the built image's kernel whose /init is a few lines of busybox sh
// running as root: it tries to leave a setuid-root file, a file chowned to root, device nodes, a fifo and a
// symbolic link in the bound host paths, chowns the top of a volume, and writes a termination log and a file.
// With the writable share's options (security_model=mapped-file) the guest sees what it set, and the host gets
// only plain root-owned files 0600 and directories 0700; the files that were there keep their modes. The same
// tries against security_model=none (the options before) leave a setuid-root file on the host: why the share is
// not served that way. No network, no auraed: one TCG boot of a few seconds per case.
// Needs the built image's kernel (npx tsx image/build.ts), qemu-system-x86_64 and busybox-static (image/setup.sh).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readImage } from '../../image/build';
import { writeCpio } from '../../image/initramfs/cpio';
import { loadSyscalls } from '../../native';
import { REPO_ROOT } from '../daemon/testing';
import { hostTscKhz, qemuArgs, type VmSpec } from '../vms';
import { VM_POD_VOLUMES_TAG } from './disk-images';
import { nodePodVolumeShare } from './vm-agent';

const MANIFEST = path.join(REPO_ROOT, 'out/image/manifest.json');
const BUSYBOX = '/bin/busybox';
const BOOT_MS = 120_000;

function builtKernel(): string {
  if (!fs.existsSync(MANIFEST)) throw new Error(`${MANIFEST} is missing: build the image first with \`npx tsx image/build.ts\``);
  const { kernel } = readImage(MANIFEST);
  if (!fs.existsSync(kernel)) throw new Error(`${kernel} (from ${MANIFEST}) is missing: rebuild the image`);
  return kernel;
}

/** The guest's tries, as root; results into the emptyDir itself (what the host then reads), `done` last. */
const ATTACK = [
  'm=/mnt/volumes; mkdir -p $m',
  `mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=mmap,nosuid,nodev ${VM_POD_VOLUMES_TAG} $m`,
  'v=$m/app/0',
  'try() { if "$@" 2>/dev/null; then echo "$*: ok"; else echo "$*: refused"; fi; }',
  '{',
  'echo planted > $v/planted; chown 1000:1000 $v/planted',
  'try chown 0:0 $v/planted',
  'try chmod 4755 $v/planted',
  'try chmod u+s,g+s $v/pre',
  'try mknod $v/null c 1 3',
  'try mknod $v/disk b 254 0',
  'try mkfifo $v/fifo',
  'try ln -s /etc/shadow $v/link',
  'mkdir $v/dir; try chmod 2777 $v/dir',
  'try chown 1000:1000 $v',
  'stat -c "seen %n %u:%g %a %F" $v/planted $v/pre $v/null $v/dir $v 2>&1 | sed "s#$v#V#g"',
  'echo bye > $m/app/1',
  'echo written > $v/data',
  '} > $v/results 2>&1',
  'echo done > $v/done',
].join('\n');

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
${ATTACK}
sync
poweroff -f
`;

/** Boot the guest with `args` (qemuArgs' argv) and wait for QEMU to exit (the guest powers off). */
function boot(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    qemu.stdout.on('data', (d: Buffer) => (out += d.toString()));
    qemu.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => qemu.kill('SIGKILL'), BOOT_MS);
    qemu.on('error', reject);
    qemu.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`qemu exited ${code ?? signal}:\n${out.slice(-3000)}`));
    });
  });
}

/** Every entry below `dir` (lstat: links not followed), as "relative-path mode-in-octal uid:gid type". */
function walk(dir: string): { rel: string; mode: number; uid: number; gid: number; type: string }[] {
  const out: { rel: string; mode: number; uid: number; gid: number; type: string }[] = [];
  const visit = (d: string) => {
    for (const name of fs.readdirSync(d)) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other';
      out.push({ rel: path.relative(dir, p), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, type });
      if (type === 'dir') visit(p);
    }
  };
  visit(dir);
  return out;
}

const dirs: string[] = [];
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('VM sandbox volumes share (QEMU as root, the guest as the attacker)', () => {
  /** A pod's volumes share with an emptyDir (a file of the node's in it) and a termination log, booted with `options`. */
  const attack = async (fsdevOptions?: (o: string) => string) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-vm-volumes-'));
    dirs.push(dir);
    const host = path.join(dir, 'host');
    fs.mkdirSync(path.join(host, 'empty-dir'), { recursive: true, mode: 0o755 });
    fs.chmodSync(path.join(host, 'empty-dir'), 0o755);
    fs.writeFileSync(path.join(host, 'empty-dir/pre'), 'from-the-node\n', { mode: 0o644 });
    fs.chmodSync(path.join(host, 'empty-dir/pre'), 0o644);
    fs.writeFileSync(path.join(host, 'termination-log'), '', { mode: 0o666 });
    const sys = loadSyscalls();
    const share = nodePodVolumeShare({ sys, dir: path.join(dir, 'volumes'), stage: path.join(dir, 'volumes.stage') });
    const shared = share.dir('probe');
    cleanups.push(() => share.removeAll('probe'));
    share.add('probe', 'app', [
      { hostPath: path.join(host, 'empty-dir'), containerPath: '/data', readonly: false, propagation: 'private' },
      { hostPath: path.join(host, 'termination-log'), containerPath: '/dev/termination-log', readonly: false, propagation: 'private' },
    ]);
    const initrd = path.join(dir, 'initrd.cpio');
    await writeCpio(
      [
        { path: 'bin/busybox', type: 'file', mode: 0o755, data: { file: BUSYBOX } },
        { path: 'init', type: 'file', mode: 0o755, data: Buffer.from(INIT) },
        { path: 'dev', type: 'dir', mode: 0o755 },
        { path: 'dev/console', type: 'char', mode: 0o600, rdevMajor: 5, rdevMinor: 1 },
        { path: 'proc', type: 'dir', mode: 0o755 },
        { path: 'mnt', type: 'dir', mode: 0o755 },
      ],
      initrd,
      { mtime: 0 },
    );
    const spec: VmSpec = {
      machine: 'microvm',
      accel: 'tcg',
      kernel: builtKernel(),
      initrd,
      append: 'quiet panic=-1',
      memoryMiB: 256,
      cpus: 1,
      noReboot: true,
      forwards: [],
      qmpSocket: null,
      debugConsoleSocket: null,
      disks: [],
      tscKhz: hostTscKhz(),
      shares: [{ tag: VM_POD_VOLUMES_TAG, path: shared, writable: true }],
    };
    const args = qemuArgs(spec).map((a) => (a.startsWith('local,') && fsdevOptions ? fsdevOptions(a) : a));
    const console = await boot(args);
    const done = path.join(host, 'empty-dir/done');
    if (!fs.existsSync(done)) throw new Error(`the guest did not finish its tries:\n${console.slice(-3000)}`);
    return { host, results: fs.readFileSync(path.join(host, 'empty-dir/results'), 'utf8'), args };
  };

  it('writable share (mapped-file): the guest sees what it set; the host only plain root files 0600 and directories 0700; writes go through', async () => {
    const { host, results, args } = await attack();
    expect(args.find((a) => a.startsWith('local,'))).toMatch(/,security_model=mapped-file,fmode=0600,dmode=0700,/);
    // The guest's calls all succeed and it sees its own owners, modes and special files.
    for (const tried of ['chown 0:0 \\S+/planted', 'chmod 4755 \\S+/planted', 'chmod u\\+s,g\\+s \\S+/pre', 'mknod \\S+/null c 1 3', 'mknod \\S+/disk b 254 0', 'mkfifo \\S+/fifo', 'ln -s /etc/shadow \\S+/link', 'chown 1000:1000 \\S+/0']) {
      expect(results).toMatch(new RegExp(`^${tried}: ok$`, 'm'));
    }
    expect(results).toContain('seen V/planted 0:0 4755 regular file');
    expect(results).toContain('seen V/pre 0:0 6644 regular file');
    expect(results).toContain('seen V/null 0:0 644 character special file');
    expect(results).toContain('seen V/dir 0:0 2777 directory');
    expect(results).toMatch(/^seen V 1000:1000 755 directory$/m);
    // The host: nothing but files and directories, no setuid/setgid bit anywhere, the guest's entries root's and
    // 0600/0700, the node's file and the volume's top as they were.
    const entries = walk(host);
    expect(entries.filter((e) => e.type !== 'file' && e.type !== 'dir')).toEqual([]);
    expect(entries.filter((e) => (e.mode & 0o6000) !== 0)).toEqual([]);
    const made = entries.filter((e) => e.rel.startsWith('empty-dir/') && e.rel !== 'empty-dir/pre');
    for (const e of made) expect([e.rel, e.uid, e.gid, e.mode]).toEqual([e.rel, 0, 0, e.type === 'dir' ? 0o700 : 0o600]);
    expect(made.map((e) => e.rel)).toEqual(expect.arrayContaining(['empty-dir/planted', 'empty-dir/null', 'empty-dir/disk', 'empty-dir/fifo', 'empty-dir/link', 'empty-dir/dir']));
    const stat = (rel: string) => fs.statSync(path.join(host, rel));
    expect([stat('empty-dir/pre').mode & 0o7777, stat('empty-dir').mode & 0o7777, stat('empty-dir').uid]).toEqual([0o644, 0o755, 0]);
    expect(fs.readFileSync(path.join(host, 'empty-dir/link'), 'utf8')).toBe('/etc/shadow'); // a plain file naming it
    expect(fs.readFileSync(path.join(host, 'termination-log'), 'utf8')).toBe('bye\n');
    expect(fs.readFileSync(path.join(host, 'empty-dir/data'), 'utf8')).toBe('written\n');
    expect(fs.readFileSync(path.join(host, 'empty-dir/pre'), 'utf8')).toBe('from-the-node\n');
  }, BOOT_MS + 30_000);

  it('the same tries against security_model=none (the options before) leave a setuid-root file on the host', async () => {
    const { host, results } = await attack((a) => a.replace(/security_model=[^,]+(,fmode=\d+,dmode=\d+)?/, 'security_model=none'));
    expect(results).toMatch(/^chmod 4755 \S+\/planted: ok$/m);
    const planted = fs.statSync(path.join(host, 'empty-dir/planted'));
    expect([planted.uid, planted.mode & 0o7777]).toEqual([0, 0o4755]);
    expect(fs.lstatSync(path.join(host, 'empty-dir/link')).isSymbolicLink()).toBe(true);
  }, BOOT_MS + 30_000);
});
