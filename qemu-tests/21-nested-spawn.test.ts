// 21: the nested tier. A booted node (with its boot volume attached, as a flashed disk has it) spawns a child
// from its OWN kernel and initramfs with the QEMU on its boot volume — a VM inside the VM (KVM inside the TCG
// guest where the emulated CPU offers it, TCG inside TCG otherwise) — and clients reach the child through it.
import { afterEach, describe, expect, it } from 'vitest';
import { aer } from './fixture/aer';
import { useNode } from './fixture/node';

describe('21 nested spawn', () => {
  const node = useNode({ name: '21-nested-parent', bootVolume: true, memoryMiB: 2048 });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') console.error(`--- parent console (${node().consoleLog}) ---\n${node().vm.tail(60)}`);
  });

  it('has its own image on /boot and a runnable QEMU there', async () => {
    expect(node().vm.console).toMatch(/boot volume: \/dev\/vda \(AURAE_BOOT\) mounted read-only on \/boot/);
    const sh = await node().shell();
    expect((await sh.ok('ls -1 /boot')).split('\n')).toEqual(expect.arrayContaining(['EFI', 'aurae-boot.json', 'initramfs', 'qemu', 'vmlinuz']));
    expect(await sh.ok('/boot/qemu/qemu-system-x86_64 --version')).toMatch(/QEMU emulator version/);
  });

  it('spawns aurae/web inside itself and routes calls to it; stop is graceful', async () => {
    const started = Date.now();
    const spawn = await aer(node(), ['vm', 'spawn', 'web', '--memory', '512'], 400_000);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`nested spawn → child API ready: ${seconds} s`);
    expect(spawn.code, spawn.stderr).toBe(0);
    const health = await aer(node(), ['--node', 'aurae/web', 'health'], 60_000);
    expect(health.stdout.trim(), health.stderr).toBe('SERVING');
    const version = await aer(node(), ['--node', 'aurae/web', '--output', 'json', 'version'], 60_000);
    expect(JSON.parse(version.stdout).auraed.nodeName).toBe('aurae/web');
    const list = await aer(node(), ['vm', 'list'], 60_000);
    expect(list.stdout).toMatch(/web\s+running/);
    const stop = await aer(node(), ['vm', 'stop', 'web'], 120_000);
    expect(stop.code, stop.stderr).toBe(0);
    expect((await aer(node(), ['vm', 'list'], 60_000)).stdout).toMatch(/web\s+stopped/);
  });
});
