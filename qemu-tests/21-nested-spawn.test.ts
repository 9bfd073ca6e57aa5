// 21: the nested tier. A booted node (with its boot volume attached, as a flashed disk has it) spawns a child
// from its OWN kernel and initramfs with the QEMU on its boot volume — a VM inside the VM (KVM inside the TCG
// guest where the emulated CPU offers it, TCG inside TCG otherwise) — and clients reach the child through it.
// The child's QEMU runs confined in its aurae-vms cgroup inside the parent.
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../supervisor/validation';
import { QEMU_OVERHEAD_MIB } from '../supervisor/vms';
import { aer } from './fixture/aer';
import { useNode, NESTED_HOST_CPUS } from './fixture/node';
import { RUNTIME_CONFIG_PATH } from '../supervisor/config';

// Deadlines for a loaded 2-core machine (TCG inside TCG), ordered so the product answers before the test gives
// up: the parent's boot timeout (vms.bootTimeoutMs, 120 s) fires inside Spawn's deadline (the SDK's 180 s), and
// its error carries the child's console tail, which aer prints on stderr.
const PARENT_BOOT_MS = 300_000;
const SPAWN_MS = 200_000;
const CALL_MS = 60_000;
const STOP_MS = 120_000;

describe('21 nested spawn', () => {
  const node = useNode({ name: '21-nested-parent', bootVolume: true, cpus: NESTED_HOST_CPUS, memoryMiB: 2048, readyTimeoutMs: PARENT_BOOT_MS });
  /** What aer vm spawn printed: on a failed boot, the child's console tail (kept for the failure report). */
  let spawnOutput = '';
  afterEach(async (ctx) => {
    // useNode prints the parent's console tail (its auraed's log); the child's side comes from the parent.
    if (ctx.task.result?.state !== 'fail') return;
    if (spawnOutput) console.error(`--- aer vm spawn web (the child's console tail when it did not boot) ---\n${spawnOutput}`);
    // The child's state and last exit as the parent sees them.
    const list = await aer(node(), ['--output', 'json', 'vm', 'list'], CALL_MS);
    console.error(`--- aer vm list on the parent ---\n${list.stdout}${list.stderr}`);
  });

  it('has its own image on /boot and a runnable QEMU there', async () => {
    expect(node().vm.console).toMatch(/boot volume: \/dev\/vda \(AURAE_BOOT\) mounted read-only on \/boot/);
    const sh = await node().shell();
    expect((await sh.ok('ls -1 /boot')).split('\n')).toEqual(expect.arrayContaining(['EFI', 'aurae-boot.json', 'loader', 'qemu']));
    // Children spawn from a slot's kernel and initramfs (init/bless: the default entry's on this direct kernel boot).
    const slot = `EFI/Linux/${node().image.manifest.release!.entry}`;
    expect(await sh.ok(`test -f /boot/${slot}.vmlinuz && test -f /boot/${slot}.initramfs && echo both-present`)).toMatch(/both-present/);
    const runtimeConfig = await sh.ok(`cat ${RUNTIME_CONFIG_PATH}`);
    expect(runtimeConfig).toContain(`"kernel": "/boot/${slot}.vmlinuz"`);
    expect(runtimeConfig).toContain(`"initrd": "/boot/${slot}.initramfs"`);
    expect(await sh.ok('/boot/qemu/qemu-system-x86_64 --version')).toMatch(/QEMU emulator version/);
  });

  it('spawns aurae/web inside itself and routes calls to it; stop is graceful', async () => {
    const started = Date.now();
    const spawn = await aer(node(), ['vm', 'spawn', 'web', '--memory', '512'], SPAWN_MS);
    spawnOutput = `${spawn.stdout}${spawn.stderr}`;
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`nested spawn → child API ready: ${seconds} s`);
    expect(spawn.code, spawn.stderr).toBe(0);
    const health = await aer(node(), ['--node', 'aurae/web', 'health'], CALL_MS);
    expect(health.stdout.trim(), health.stderr).toBe('SERVING');
    const version = await aer(node(), ['--node', 'aurae/web', '--output', 'json', 'version'], CALL_MS);
    expect(JSON.parse(version.stdout).auraed.nodeName).toBe('aurae/web');
    const list = await aer(node(), ['vm', 'list'], CALL_MS);
    expect(list.stdout).toMatch(/web\s+running/);
    // The child's QEMU is confined in its own cgroup, as the parent's kernel sees it: /proc/<pid>/cgroup names
    // aurae-vms/web, whose limits are the guest's RAM plus QEMU's overhead and one CPU period per vCPU.
    const listed = JSON.parse((await aer(node(), ['--output', 'json', 'vm', 'list'], CALL_MS)).stdout) as Array<{ name: string; pid: number; confined: boolean }>;
    const web = listed.find((v) => v.name === 'web');
    expect(web).toMatchObject({ confined: true });
    const sh = await node().shell();
    expect((await sh.ok(`cat /proc/${web!.pid}/cgroup`)).trim()).toBe('0::/aurae-vms/web');
    // Its processes: QEMU, and with KVM the kernel's worker threads for that VM (kvm-nx-lpage-recovery), which
    // KVM attaches to the VM owner's cgroup.
    const members = (await sh.ok('for p in $(cat /sys/fs/cgroup/aurae-vms/web/cgroup.procs); do echo "$p $(cat /proc/$p/comm)"; done')).trim().split('\n');
    expect(members.map((m) => m.split(' ')[0])).toContain(String(web!.pid));
    for (const m of members.filter((m) => m.split(' ')[0] !== String(web!.pid))) expect(m).toMatch(/^\d+ kvm-/);
    expect((await sh.ok('cat /sys/fs/cgroup/aurae-vms/web/memory.max')).trim()).toBe(String((512 + QEMU_OVERHEAD_MIB) * 1024 * 1024));
    expect((await sh.ok('cat /sys/fs/cgroup/aurae-vms/web/cpu.max')).trim()).toBe(`${DEFAULTS.cpuPeriod} ${DEFAULTS.cpuPeriod}`);
    const stop = await aer(node(), ['vm', 'stop', 'web'], STOP_MS);
    expect(stop.code, stop.stderr).toBe(0);
    expect((await aer(node(), ['vm', 'list'], CALL_MS)).stdout).toMatch(/web\s+stopped/);
  }, SPAWN_MS + 4 * CALL_MS + STOP_MS + 60_000);
});
