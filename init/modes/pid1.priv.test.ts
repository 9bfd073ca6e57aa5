// init in PID-1 mode, on the host, as PID 1 of fresh PID/mount/UTS/net namespaces
// (`unshare --pid --fork --mount-proc …`): the real boot path (mounts, config + kernel
// command line, hostname, network, reaper, signals) and the real shutdown path, where
// kill(-1) reaches only the namespace and reboot(2) ends only the namespace (its init
// dies with SIGINT for poweroff, SIGHUP for restart). The image's /etc/aurae comes from
// an overlay on /etc inside the mount namespace; the host's /etc is untouched.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { writeIdentityDocument } from '../../image/build';
import { buildSyscallsAddon, hostNodeIncludeDir } from '../../native/build';
import { ensurePki } from '../../supervisor/pki';
import { IDENTITY_SYSFS_PATH } from '../identity/document';
import { FAKE_AURAED, initArgv, startInit, testNodeConfig, type RunningInit } from '../testing/run-init';

let dir: string;
let addon: string;
let fakeAuraed: string;
let identity: string;
let running: RunningInit | undefined;

beforeAll(async () => {
  // Not under /tmp (or /run, /dev): init mounts fresh filesystems there, which would hide anything it
  // needs later (the fake auraed it spawns after mounting). /var/tmp is outside init's mount table.
  dir = mkdtempSync('/var/tmp/aurae-init-pid1-');
  addon = await buildSyscallsAddon({ nodeIncludeDir: hostNodeIncludeDir(), outFile: path.join(dir, 'syscalls.node') });
  fakeAuraed = path.join(dir, 'fake-auraed.cjs');
  copyFileSync(FAKE_AURAED, fakeAuraed);
  const pki = await ensurePki(path.join(dir, 'pki'), { nodeName: 'pid1-test' });
  identity = writeIdentityDocument(path.join(dir, 'pki'), 'pid1-test', pki.files);
});
afterEach(() => {
  if (running && running.child.exitCode === null && running.child.signalCode === null) running.child.kill('SIGKILL');
  running = undefined;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GOOD_CONFIG = JSON.stringify(
  testNodeConfig({
    node: { name: 'pid1-test', onFatal: 'poweroff' },
    network: { eth0: { mode: 'static', address: '10.0.2.15/24', gateway: '10.0.2.2' } },
    shutdown: { graceMs: 1_000 },
  }),
);

/**
 * `withIdentity`: the node's identity where QEMU's fw_cfg puts it (a tmpfs over /sys/firmware in the namespace
 * stands in for the device); without it the node has none.
 */
function startAsPid1(name: string, fakeEnv: Record<string, string>, configText = GOOD_CONFIG, withIdentity = true) {
  const upper = path.join(dir, `${name}-upper`);
  const work = path.join(dir, `${name}-work`);
  mkdirSync(path.join(upper, 'aurae'), { recursive: true });
  mkdirSync(work);
  writeFileSync(path.join(upper, 'aurae', 'config.json'), configText);
  const fwCfg = path.dirname(IDENTITY_SYSFS_PATH);
  const script =
    `mount -t overlay overlay -o lowerdir=/etc,upperdir=${upper},workdir=${work} /etc && mount -t tmpfs tmpfs /sys/firmware && ` +
    (withIdentity ? `mkdir -p ${fwCfg} && cp ${identity} ${IDENTITY_SYSFS_PATH} && ` : '') +
    'exec "$@"';
  running = startInit(
    ['unshare', '--pid', '--fork', '--kill-child', '--mount-proc', '--mount', '--uts', '--net', 'sh', '-c', script, 'sh', ...initArgv()],
    {
      ...process.env,
      AURAE_SYSCALLS_ADDON: addon,
      AURAE_AURAED_CMD: JSON.stringify([process.execPath, fakeAuraed]),
      AURAE_INIT_DEBUG: '1',
      ...fakeEnv,
    },
  );
  return running;
}

/** init's pid on the host: the only child of `unshare --fork`. */
function hostPidOfInit(unsharePid: number): number {
  const children = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim().split(/\s+/);
  expect(children).toHaveLength(1);
  return Number(children[0]);
}

const MARKERS = (action: string) => [
  new RegExp(`^\\[\\s*[\\d.]+\\] init: shutdown: begin \\(${action}, reason: .+\\)$`),
  /init: shutdown: stopping auraed$/,
  /init: shutdown: auraed stopped$/,
  /init: shutdown: SIGTERM to all processes$/,
  /init: shutdown: SIGKILL to remaining processes$/,
  /init: shutdown: sync$/,
  /init: shutdown: unmounting$/,
  new RegExp(`init: shutdown: ${action} now$`),
];

function expectMarkersInOrder(lines: string[], action: string) {
  let from = 0;
  for (const marker of MARKERS(action)) {
    const index = lines.findIndex((l, i) => i >= from && marker.test(l));
    expect(index, `marker ${marker} after line ${from} in:\n${lines.join('\n')}`).toBeGreaterThanOrEqual(from);
    from = index + 1;
  }
}

describe('init as PID 1 of a PID namespace', () => {
  it('boots, supervises auraed, reaps orphans, and powers off on SIGTERM', async () => {
    const init = startAsPid1('term', { FAKE_ORPHAN_SLEEP: '1' });
    const ready = await init.waitFor(/^AURAE_READY (\{.*\})$/, 20_000);
    const auraedPid = JSON.parse(ready.match[1]!).pid;
    const out = () => init.output();

    expect(out()).toMatch(/init: aurae init starting \(Node v[\d.]+, pid 1\)/);
    // /run and /tmp were not mounted in the namespace, so init mounted them.
    expect(out()).not.toMatch(/error: mounting/);
    expect(out()).toMatch(/init: hostname: pid1-test/);
    expect(out()).toMatch(/init: network: lo up/);
    expect(out()).toMatch(/warning: network: eth0 not present, skipping its configuration/);
    // auraed runs with the hostname set and reads the runtime config init wrote.
    expect(out()).toMatch(/auraed: .*"hostname":"pid1-test","config":"\/run\/aurae\/config.json"/);

    // The orphan is re-parented to PID 1 by the kernel and reaped by init.
    const orphan = Number((await init.waitFor(/auraed: .*"orphan":(\d+)/)).match[1]);
    await init.waitFor(new RegExp(`reaper: reaped orphan pid ${orphan} \\(exit code 0\\)`), 5_000);

    process.kill(hostPidOfInit(init.child.pid!), 'SIGTERM');
    const exit = await init.exited;
    expectMarkersInOrder(init.lines, 'poweroff');
    expect(out()).toMatch(/shutdown: begin \(poweroff, reason: signal SIGTERM\)/);
    expect(out()).toContain(`stopping auraed (pid ${auraedPid})`);
    expect(out()).toMatch(/auraed: .*"msg":"SIGTERM received, exiting"/);
    // reboot(2) from a PID namespace's init ends the namespace with SIGINT for poweroff.
    expect(exit).toEqual({ code: null, signal: 'SIGINT' });
    expect(out()).not.toMatch(/uncaught|unhandled|reboot\(2\) for .* failed/);
  });

  it("reboots when auraed asks for it over IPC, through the same shutdown path", async () => {
    const init = startAsPid1('ipc', { FAKE_POWER: 'reboot' });
    const exit = await init.exited;
    expect(init.output()).toMatch(/^AURAE_READY /m);
    expect(init.output()).toContain('auraed asks for reboot (requested by fake-admin)');
    expectMarkersInOrder(init.lines, 'reboot');
    expect(init.output()).toMatch(/shutdown: begin \(reboot, reason: requested by fake-admin via auraed\)/);
    expect(exit).toEqual({ code: null, signal: 'SIGHUP' });
  });

  it('without an identity: says so, prints AURAE_NO_IDENTITY, never starts auraed, and still powers off on SIGTERM', async () => {
    const init = startAsPid1('no-identity', {}, GOOD_CONFIG, false);
    await init.waitFor(/^AURAE_NO_IDENTITY (\{.*\})$/, 20_000);
    expect(init.output()).toMatch(/init: error: no identity for node pid1-test: auraed is not started/);
    process.kill(hostPidOfInit(init.child.pid!), 'SIGTERM');
    const exit = await init.exited;
    expect(init.output()).not.toMatch(/AURAE_READY|auraed: /);
    expect(exit).toEqual({ code: null, signal: 'SIGINT' });
  });

  it('reboots, saying what is wrong, when the image config is invalid', async () => {
    const init = startAsPid1('bad-config', {}, JSON.stringify({ version: 1, node: { name: 'Not A Label' } }));
    const exit = await init.exited;
    expect(init.output()).toMatch(/error: \/etc\/aurae\/config.json: invalid node config:/);
    expect(init.output()).toMatch(/init:   node.name: expected a DNS label/);
    expect(init.output()).toMatch(/init:   pki: /);
    expect(init.output()).toMatch(/must be a valid node config; rebuild the image/);
    expectMarkersInOrder(init.lines, 'reboot');
    expect(init.output()).toMatch(/shutdown: begin \(reboot, reason: the node config could not be read\)/);
    expect(init.output()).not.toMatch(/AURAE_READY/);
    expect(exit).toEqual({ code: null, signal: 'SIGHUP' });
  });
});
