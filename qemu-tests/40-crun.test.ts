// 40: the node image runs OCI containers with crun. Inside a booted node, executables of a cell build bundles (a
// rootfs holding the node's own /bin/busybox, and a config.json made on the host by ociSpec()) and run
// `crun --cgroup-manager=cgroupfs run` as executables of that cell: output lands in the executable's logs, the
// exit code propagates, the container is pid 1 of its own pid namespace, its cgroup sits at cgroupsPath with the
// memory limit applied, the default seccomp profile and no_new_privileges are in force, and a read-only rootfs
// refuses writes. The guest's debug shell reads cgroup files from outside the container.
import { afterAll, describe, expect, it } from 'vitest';
import type { AuraeClient, ExecutableInfo } from '../aer/sdk';
import { ociSpec, type OciSpecInput } from '../supervisor/pods/oci-spec';
import { eventually, useNode } from './fixture/node';

const CELL = 'ctr';
/** Bundles live on the guest's /run (tmpfs), crun's state beside them, as pods will keep it (/run/aurae/crun). */
const BUNDLES = '/run/aurae-test/bundles';
const CRUN_ROOT = '/run/aurae/crun';
const CG = '/sys/fs/cgroup';

/** The config of a container named `name` whose pid 1 runs `script` with /bin/sh. */
function spec(name: string, script: string, over: Partial<OciSpecInput> = {}): OciSpecInput {
  return {
    args: ['/bin/sh', '-c', script],
    env: ['PATH=/bin'],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    hostname: name,
    rootfs: 'rootfs',
    readOnlyRootfs: false,
    terminal: false,
    namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }, { type: 'cgroup' }],
    cgroupsPath: `/aurae/${CELL}/ctr.${name}`,
    noNewPrivileges: true,
    ...over,
  };
}

describe('40 crun runs OCI bundles in a cell', () => {
  const node = useNode({ name: '40-crun' });
  let sdk: AuraeClient | null = null;
  const client = () => (sdk ??= node().client());
  afterAll(() => sdk?.close());
  const sh = async (command: string) => (await node().shell()).ok(command);

  const executable = async (name: string): Promise<ExecutableInfo> => {
    const x = (await client().cells.get(CELL)).executables.find((e) => e.name === name);
    if (!x) throw new Error(`no executable ${name} in cell ${CELL}`);
    return x;
  };
  const logs = async (name: string): Promise<string> => {
    const lines: string[] = [];
    for await (const entry of client().observe.logs(CELL, name, { tail: 1000 })) lines.push(entry.line);
    return lines.join('\n');
  };
  /** Start an executable of the cell and wait for it to end; its exit and its logs. */
  const run = async (name: string, exe: { command?: string; args?: string[] }, timeoutMs = 60_000) => {
    await client().cells.start(CELL, { name, ...exe });
    const done = await eventually(async () => {
      const x = await executable(name);
      return (x.state === 'exited' || x.state === 'failed') && x;
    }, timeoutMs, `executable ${name} to end`);
    return { exit: done.lastExit, logs: await logs(name) };
  };
  const crunRun = (name: string) => ['/usr/bin/crun', '--cgroup-manager=cgroupfs', '--root', CRUN_ROOT, 'run', '--bundle', `${BUNDLES}/${name}`, name];

  /** Build bundle `name` in the guest: rootfs with busybox and its applet links, and config.json from ociSpec(). */
  const bundle = async (name: string, input: OciSpecInput) => {
    const config = Buffer.from(JSON.stringify(ociSpec(input), null, 2)).toString('base64');
    const dir = `${BUNDLES}/${name}`;
    const made = await run(`make-${name}`, {
      command: [
        `mkdir -p ${dir}/rootfs/bin ${dir}/rootfs/proc ${dir}/rootfs/sys ${dir}/rootfs/dev ${dir}/rootfs/tmp ${dir}/rootfs/etc`,
        `cp /bin/busybox ${dir}/rootfs/bin/busybox`,
        // Relative links: the node's busybox lives in /usr/bin (merged /usr), the rootfs has only bin/busybox.
        `for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox ${dir}/rootfs/bin/$a; done`,
        `echo 'root:x:0:0:root:/:/bin/sh' > ${dir}/rootfs/etc/passwd`,
        `echo '${config}' | base64 -d > ${dir}/config.json`,
      ].join(' && '),
    });
    expect(made.exit?.code, made.logs).toBe(0);
  };

  it('a cell for the containers, and crun in the image', async () => {
    await client().cells.allocate({ name: CELL, memory: { max: 256 * 1024 * 1024 } });
    expect(await sh('/usr/bin/crun --version')).toMatch(/crun version 1\.8\.1[\s\S]*\+SECCOMP/);
    // /init moved the root into a tmpfs (image/initramfs/layout.ts): pivot_root(2) refuses the initramfs itself.
    expect(await sh('grep " / / " /proc/self/mountinfo')).toMatch(/ - tmpfs aurae-root /);
  });

  it('runs a container: its output is the executable\'s logs and its exit code the executable\'s', async () => {
    await bundle('hello', spec('hello', 'echo hello-from-crun; echo to-stderr >&2; exit 7'));
    const r = await run('hello', { args: crunRun('hello') });
    expect(r.logs).toContain('hello-from-crun');
    expect(r.logs).toContain('to-stderr');
    expect(r.exit).toMatchObject({ code: 7, signal: null });
  });

  it('the container is pid 1 of its own pid namespace, with its own hostname and cgroup namespace', async () => {
    await bundle('ns', spec('ns', 'echo "pid=$$"; echo "host=$(hostname)"; echo "cg=$(cat /proc/self/cgroup)"; echo "init=$(cat /proc/1/comm)"'));
    const r = await run('ns', { args: crunRun('ns') });
    expect(r.exit?.code, r.logs).toBe(0);
    expect(r.logs).toMatch(/^pid=1$/m);
    expect(r.logs).toMatch(/^host=ns$/m);
    expect(r.logs).toMatch(/^cg=0::\/$/m); // cgroup namespace rooted at its own cgroup
    expect(r.logs).toMatch(/^init=sh$/m); // its own /proc: pid 1 is its shell, not the node's init
  });

  it('its cgroup is at cgroupsPath with memory.max and pids.max applied, beside the executables\' leaves', async () => {
    const mem = 32 * 1024 * 1024;
    await bundle('limited', spec('limited', 'cat /sys/fs/cgroup/memory.max; echo ready; exec sleep 600', { resources: { memoryMax: mem, pidsMax: 16, cpuWeight: 50 } }));
    await client().cells.start(CELL, { name: 'limited', args: crunRun('limited') });
    const leaf = `${CG}/aurae/${CELL}/ctr.limited`;
    await eventually(async () => (await logs('limited')).includes('ready'), 60_000, 'the limited container to start');
    expect(await logs('limited')).toContain(String(mem)); // seen from inside through its read-only /sys/fs/cgroup
    expect((await sh(`cat ${leaf}/memory.max`)).trim()).toBe(String(mem));
    expect((await sh(`cat ${leaf}/pids.max`)).trim()).toBe('16');
    expect((await sh(`cat ${leaf}/cpu.weight`)).trim()).toBe('50');
    // The container's process (sleep, pid 1 inside) is in that cgroup, not in the executable's leaf with crun.
    const pid = (await sh(`cat ${leaf}/cgroup.procs`)).trim();
    expect(pid).toMatch(/^\d+$/);
    expect(await sh(`grep NSpid /proc/${pid}/status`)).toMatch(new RegExp(`NSpid:\\s+${pid}\\s+1\\s*$`));
    expect(await sh(`cat ${CG}/aurae/${CELL}/exe.limited/cgroup.procs`)).not.toContain(pid);
    // crun kill ends the container; crun run returns its status (128 + 9) and the executable exits.
    const killed = await run('kill-limited', { args: ['/usr/bin/crun', '--root', CRUN_ROOT, 'kill', 'limited', 'KILL'] });
    expect(killed.exit?.code, killed.logs).toBe(0);
    const ended = await eventually(async () => {
      const x = await executable('limited');
      return (x.state === 'exited' || x.state === 'failed') && x;
    }, 30_000, 'crun run to return after the kill');
    expect(ended.lastExit?.code).toBe(137);
    // crun run removes the container and its cgroup when it ends.
    await eventually(async () => !(await sh(`ls ${CG}/aurae/${CELL}`)).split('\n').includes('ctr.limited'), 30_000, 'the container cgroup to go');
  });

  it('stopping the executable stops the container: crun run forwards SIGTERM and returns the container\'s exit code', async () => {
    // pid 1 of a pid namespace gets only the signals it handles: the trap makes SIGTERM a clean exit 3.
    await bundle('stoppable', spec('stoppable', 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 1; done'));
    await client().cells.start(CELL, { name: 'stoppable', args: crunRun('stoppable') });
    await eventually(async () => (await logs('stoppable')).includes('ready'), 60_000, 'the stoppable container to start');
    const stopped = await client().cells.stop(CELL, 'stoppable', { graceMs: 10_000 });
    expect(stopped.exit).toMatchObject({ code: 3, signal: null });
    expect(await logs('stoppable')).toContain('got-term');
    await eventually(async () => !(await sh(`ls ${CG}/aurae/${CELL}`)).split('\n').includes('ctr.stoppable'), 30_000, 'the container cgroup to go');
  });

  it('no_new_privileges and the default seccomp profile are in force; unconfined lets the same call through', async () => {
    const probe = 'grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status; if unshare -U true 2>/dev/null; then echo unshare=allowed; else echo unshare=denied; fi';
    await bundle('confined', spec('confined', probe));
    const confined = await run('confined', { args: crunRun('confined') });
    expect(confined.exit?.code, confined.logs).toBe(0);
    expect(confined.logs).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(confined.logs).toMatch(/^Seccomp:\s+2$/m); // 2 = filter mode
    expect(confined.logs).toMatch(/^unshare=denied$/m); // unshare(CLONE_NEWUSER) needs no capability: seccomp stops it
    await bundle('unconfined', spec('unconfined', probe, { seccomp: 'unconfined', noNewPrivileges: false }));
    const unconfined = await run('unconfined', { args: crunRun('unconfined') });
    expect(unconfined.exit?.code, unconfined.logs).toBe(0);
    expect(unconfined.logs).toMatch(/^NoNewPrivs:\s+0$/m);
    expect(unconfined.logs).toMatch(/^Seccomp:\s+0$/m);
    expect(unconfined.logs).toMatch(/^unshare=allowed$/m);
  });

  it('a read-only rootfs refuses writes; /dev/shm stays writable; masked and read-only paths hold', async () => {
    const script = [
      'if echo x > /written 2>/dev/null; then echo root=writable; else echo root=readonly; fi',
      'if echo x > /dev/shm/ok; then echo shm=writable; fi',
      // /proc/keys lists the container's session keyring unless masked (bind-mounted /dev/null: empty).
      'echo "keys=$(wc -c < /proc/keys)"',
      // kernel.domainname is the container's own (new UTS namespace), but /proc/sys is read-only.
      'if echo x > /proc/sys/kernel/domainname; then echo procsys=writable; else echo procsys=readonly; fi',
      'echo "caps=$(grep CapEff /proc/self/status)"',
    ].join('; ');
    await bundle('readonly', spec('readonly', script, { readOnlyRootfs: true }));
    const r = await run('readonly', { args: crunRun('readonly') });
    expect(r.exit?.code, r.logs).toBe(0);
    expect(r.logs).toMatch(/^root=readonly$/m);
    expect(r.logs).toMatch(/^shm=writable$/m);
    expect(r.logs).toMatch(/^keys=0$/m);
    expect(r.logs).toMatch(/domainname: Read-only file system/);
    expect(r.logs).toMatch(/^procsys=readonly$/m);
    // containerd's 14 default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
    // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP = bits 0-8,10,13,18,27,29,31.
    expect(r.logs).toMatch(/^caps=CapEff:\s+00000000a80425fb$/m);
  });
});
