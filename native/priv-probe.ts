// Fixture for syscalls.priv.test.ts: runs ONE scenario against the real addon and prints
// one JSON line with what it observed. The test starts it inside fresh namespaces
// (`unshare --mount --uts --net [--pid] --fork`) so the host is never touched.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { loadSyscalls, type SyscallError } from './index';

const sys = loadSyscalls();

function describeError(fn: () => unknown): { code: string; syscall: string | undefined; message: string } | null {
  try {
    fn();
    return null;
  } catch (err) {
    const e = err as SyscallError;
    return { code: e.code, syscall: e.syscall, message: e.message };
  }
}

function mountedAt(target: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === target);
}

const scenarios: Record<string, () => Promise<unknown> | unknown> = {
  mount() {
    const dir = mkdtempSync(path.join(tmpdir(), 'aurae-probe-'));
    sys.mount('aurae-probe', dir, 'tmpfs', sys.MS_NOSUID | sys.MS_NODEV, 'mode=0700,size=1m');
    const mounted = mountedAt(dir);
    writeFileSync(path.join(dir, 'f'), 'x');
    // Nothing holds it open, so the plain unmount succeeds; the file goes with the tmpfs.
    const umountError = describeError(() => sys.umount2(dir, 0));
    const afterUmount = mountedAt(dir);
    const fileSurvived = existsSync(path.join(dir, 'f'));
    rmSync(dir, { recursive: true, force: true });
    return { mounted, umountError, afterUmount, fileSurvived };
  },
  hostname() {
    sys.sethostname('aurae-probe');
    return { hostname: hostname() };
  },
  net() {
    sys.setInterfaceUp('lo');
    execFileSync('ip', ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1']);
    execFileSync('ip', ['link', 'set', 'v1', 'up']);
    sys.setInterfaceAddress('v0', '10.99.0.2', 24);
    sys.setInterfaceUp('v0');
    sys.addDefaultRoute('10.99.0.1');
    const duplicate = describeError(() => sys.addDefaultRoute('10.99.0.1'));
    const missing = describeError(() => sys.setInterfaceUp('eth9'));
    const unreachable = describeError(() => sys.addDefaultRoute('192.0.2.1'));
    return {
      lo: JSON.parse(execFileSync('ip', ['-j', 'addr', 'show', 'lo'], { encoding: 'utf8' })),
      v0: JSON.parse(execFileSync('ip', ['-j', 'addr', 'show', 'v0'], { encoding: 'utf8' })),
      routes: JSON.parse(execFileSync('ip', ['-j', 'route', 'show'], { encoding: 'utf8' })),
      duplicate,
      missing,
      unreachable,
    };
  },
  async waitpid() {
    // Children libuv does not know about: orphans re-parented to us as a subreaper.
    sys.prctlSetChildSubreaper();
    const pids = await new Promise<number[]>((resolve, reject) => {
      const sh = spawn('sh', ['-c', '(sleep 0.5; exit 7) & echo $!; sleep 30 & echo $!'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      sh.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      sh.on('error', reject);
      sh.on('exit', () => resolve(out.trim().split('\n').map(Number)));
    });
    const [exiter, sleeper] = pids as [number, number];
    const stillRunning = sys.waitpid(exiter, true);
    const exited = sys.waitpid(exiter, false);
    process.kill(sleeper, 'SIGKILL');
    const killed = sys.waitpid(sleeper, false);
    const notAChild = describeError(() => sys.waitpid(exiter, true));
    return { stillRunning, exited, killed, notAChild };
  },
  errors() {
    return {
      mountMissingTarget: describeError(() => sys.mount('none', '/nonexistent/aurae-probe', 'tmpfs', 0, null)),
      mountBadFs: describeError(() => sys.mount('none', '/tmp', 'no-such-fs', 0, null)),
      umountNotMounted: describeError(() => sys.umount2('/proc/self', 0)),
      badArgument: describeError(() => (sys.mount as unknown as (a: number) => void)(1)),
      badReboot: describeError(() => sys.reboot('sideways' as never)),
    };
  },
  // Only ever run as PID 1 of a fresh PID namespace: there reboot(2) kills just that namespace.
  reboot() {
    if (process.pid !== 1) throw new Error('refusing to call reboot(2) outside a PID namespace');
    const cad = describeError(() => sys.setCtrlAltDel(false));
    process.stdout.write(`${JSON.stringify({ cad })}\n`);
    sys.reboot((process.argv[3] ?? 'poweroff') as 'poweroff');
    return { returned: true };
  },
};

const name = process.argv[2] ?? '';
const scenario = scenarios[name];
if (!scenario) {
  process.stderr.write(`priv-probe: unknown scenario "${name}"; one of ${Object.keys(scenarios).join(', ')}\n`);
  process.exit(2);
}
Promise.resolve(scenario())
  .then((result) => process.stdout.write(`${JSON.stringify(result)}\n`))
  .catch((err: unknown) => {
    process.stderr.write(`priv-probe ${name}: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
