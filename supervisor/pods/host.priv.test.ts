// The pods' node adapter for real (root on the host): pinning a pod's namespaces with busybox unshare (hostname set,
// lo up, kept by bind mounts without any process), mounting an overlay root filesystem through the syscall addon,
// reading both back from /proc/self/mountinfo, and unmounting them.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSyscalls } from '../../native';
import { overlayMountPlan } from '../images';
import { nodePodHost } from './host';

const dirs: string[] = [];
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('nodePodHost', () => {
  const host = nodePodHost(loadSyscalls());

  it('pins new net, ipc and uts namespaces at files: hostname set, lo up, no process needed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-pods-ns-'));
    dirs.push(dir);
    const ns = { net: path.join(dir, 'ns/net'), ipc: path.join(dir, 'ns/ipc'), uts: path.join(dir, 'ns/uts') };
    await host.pinNamespaces(ns, 'podx');
    cleanups.push(() => Object.values(ns).forEach((f) => host.unmount(f)));
    const mounts = host.mounts();
    for (const f of Object.values(ns)) expect(mounts.get(f)).toBe('nsfs');
    const inside = execFileSync('nsenter', [`--net=${ns.net}`, `--uts=${ns.uts}`, '/bin/sh', '-c', 'hostname; cat /sys/class/net/lo/operstate; readlink /proc/self/ns/net'], { encoding: 'utf8' }).split('\n');
    expect(inside[0]).toBe('podx');
    expect(inside[1]).toMatch(/^(unknown|up)$/); // lo reports "unknown" when up
    expect(inside[2]).not.toBe(fs.readlinkSync('/proc/self/ns/net'));
    expect(fs.readlinkSync('/proc/self/ns/uts')).not.toBe(execFileSync('nsenter', [`--uts=${ns.uts}`, 'readlink', '/proc/self/ns/uts'], { encoding: 'utf8' }).trim());
    for (const f of Object.values(ns)) host.unmount(f);
    cleanups.pop();
    for (const f of Object.values(ns)) expect(host.mounts().has(f)).toBe(false);
    host.unmount(ns.net); // not mounted: fine
  });

  it('mounts an overlay root filesystem over image layers with an upper of its own, and unmounts it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-pods-ovl-'));
    dirs.push(dir);
    const [lower, upper, work, rootfs] = ['lower', 'upper', 'work', 'rootfs'].map((d) => path.join(dir, d)) as [string, string, string, string];
    for (const d of [lower, upper, work, rootfs]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(lower, 'from-image'), 'layer\n');
    host.mountOverlay(overlayMountPlan([lower], upper, work, rootfs));
    cleanups.push(() => host.unmount(rootfs));
    expect(host.mounts().get(rootfs)).toBe('overlay');
    expect(fs.readFileSync(path.join(rootfs, 'from-image'), 'utf8')).toBe('layer\n');
    fs.writeFileSync(path.join(rootfs, 'written'), 'by the container\n');
    expect(fs.existsSync(path.join(upper, 'written'))).toBe(true);
    expect(fs.existsSync(path.join(lower, 'written'))).toBe(false);
    host.unmount(rootfs);
    cleanups.pop();
    expect(host.mounts().has(rootfs)).toBe(false);
  });

  it('crunDelete of a container crun does not know is fine', async () => {
    await host.crunDelete('/nonexistent/crun', '/run/aurae-test-crun', 'none.none');
  });
});
