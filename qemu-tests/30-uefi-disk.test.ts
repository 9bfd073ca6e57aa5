// 30: the bare-metal disk image under real firmware. disk.raw (GPT + ESP with the UKI + the empty identity
// partition) is flashed with `aer image flash --identity` onto a file, grown to a larger "disk" and booted by OVMF
// (UEFI) on q35, as a flashed machine would be: the node takes its identity from the AURAE_IDENTITY partition (no
// fw_cfg); first boot creates the STATE partition after it, filling the disk; cells and executables survive a
// reboot; a power cut in the middle of writes leaves a database that passes integrity_check with every
// acknowledged change present; a torn primary GPT is restored.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuraeClient } from '../aer/sdk';
import { parseGpt } from '../init/disk';
import { readRange } from '../init/state-disk/real';
import { aer } from './fixture/aer';
import { bootNode, testImage, type BootedNode, flashTestDisk } from './fixture/node';

const DISK_BYTES = 1024 * 1024 * 1024;

/** The GPT of the disk file as init/disk reads it (source: which copy was valid). */
function hostGpt(file: string, sectors = DISK_BYTES / 512) {
  return parseGpt((offset, length) => readRange(file, offset, length), sectors);
}

describe('30 UEFI disk image', () => {
  let dir: string;
  let disk: string;
  let node: BootedNode | null = null;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-uefi-'));
    // What flashing onto a disk gives: the image with the identity in its partition, then unused space.
    disk = flashTestDisk(dir, DISK_BYTES);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console (full log: ${node.consoleLog}) ---\n${node.vm.tail(80)}`);
  });
  afterAll(async () => {
    await node?.vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const storageHealth = async (client: AuraeClient) => (await client.health.check('aurae.storage')).status;

  it('boots with OVMF from the ESP, creates STATE filling the disk and mounts both volumes', async () => {
    node = await bootNode({ name: '30-uefi-first-boot', uefiDisk: disk, identity: false, noReboot: false, readyTimeoutMs: 240_000 });
    const out = node.vm.console;
    expect(out).toMatch(/BdsDxe: starting Boot\d+/); // OVMF found and started \EFI\BOOT\BOOTX64.EFI on the disk
    expect(out).toMatch(/init: identity: node aurae from partition AURAE_IDENTITY \(\/dev\/vda2\), with its spawn CA/);
    expect(out).toMatch(/state disk: creating \/dev\/vda3 \(AURAE_STATE, \d+ MiB\) on \/dev\/vda/);
    expect(out).toMatch(/state disk: \/dev\/vda3 \(AURAE_STATE\) mounted on \/var\/lib\/aurae/);
    expect(out).toMatch(/boot volume: \/dev\/vda1 \(AURAE_BOOT\) mounted read-only on \/boot/);
    const client = node.client();
    try {
      expect(await storageHealth(client)).toBe('SERVING');
    } finally {
      client.close();
    }
  });

  it('keeps cells and executables across a reboot', async () => {
    const n = node!;
    const client = n.client();
    try {
      await client.cells.allocate({ name: 'kept', memory: { max: 64 * 1024 * 1024 } });
      await client.cells.start('kept', { name: 'sleeper', args: ['/bin/sleep', '3600'], restart: { mode: 'always' } });
    } finally {
      client.close();
    }
    const from = n.vm.console.length;
    expect((await aer(n, ['reboot'])).code).toBe(0);
    await n.waitReady(240_000, from);
    const second = n.vm.console.slice(from);
    expect(second).not.toMatch(/state disk: creating/);
    expect(second).toMatch(/state disk: \/dev\/vda3 \(AURAE_STATE\) mounted on \/var\/lib\/aurae/);
    expect(second).toMatch(/init: identity: node aurae from partition AURAE_IDENTITY \(\/dev\/vda2\)/);
    // The first boot gave the ESP a GUID of its own; the firmware (systemd-stub) reports that one now.
    expect(second).toMatch(/boot volume: \/dev\/vda1 \(AURAE_BOOT\) mounted read-only on \/boot \(the ESP the firmware booted\)/);
    const again = n.client();
    try {
      const cells = await again.cells.list();
      const kept = cells.find((c) => c.name === 'kept');
      expect(kept?.executables.map((x) => x.name)).toEqual(['sleeper']);
    } finally {
      again.close();
    }
  });

  it('a power cut in the middle of writes loses no acknowledged change and leaves an intact database', async () => {
    const n = node!;
    const client = n.client();
    const acknowledged: string[] = [];
    /** Cells whose Start was acknowledged (one commit per Start: the executable's row with its audit row). */
    const started: string[] = [];
    let cut = false;
    // Writes in flight, one after another, until QEMU is killed (SIGKILL: no shutdown, no sync, no unmount).
    const writer = (async () => {
      for (let i = 0; i < 500 && !cut; i++) {
        try {
          await client.cells.allocate({ name: `w${i}` });
          acknowledged.push(`w${i}`);
          await client.cells.start(`w${i}`, { name: 'sleep', args: ['/bin/sleep', '3600'] });
          started.push(`w${i}`);
        } catch {
          return;
        }
      }
    })();
    const deadline = Date.now() + 60_000;
    while (acknowledged.length < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    cut = true;
    n.vm.process.kill('SIGKILL');
    await n.vm.exited;
    await writer;
    client.close();
    expect(acknowledged.length).toBeGreaterThanOrEqual(10);

    node = await bootNode({ name: '30-uefi-after-power-cut', uefiDisk: disk, identity: false, noReboot: false, readyTimeoutMs: 240_000 });
    expect(node.vm.console).toMatch(/state disk: \/dev\/vda3 \(AURAE_STATE\) mounted on \/var\/lib\/aurae/);
    expect(node.vm.console).toMatch(/storage: state: \/dev\/vda3 mounted[^;]*; database integrity_check ok/);
    const after = node.client();
    try {
      expect(await storageHealth(after)).toBe('SERVING');
      const cells = await after.cells.list();
      const names = new Set(cells.map((c) => c.name));
      expect(acknowledged.filter((name) => !names.has(name))).toEqual([]);
      // Every acknowledged Start is there after the cut (and, desired running, started again by reconcile).
      const withExecutable = new Set(cells.filter((c) => c.executables.some((x) => x.name === 'sleep')).map((c) => c.name));
      expect(started.filter((name) => !withExecutable.has(name))).toEqual([]);
      expect(names.has('kept')).toBe(true);
    } finally {
      after.close();
    }
    expect((await aer(node, ['shutdown'])).code).toBe(0);
    await node.vm.waitForExit(120_000);
    // The host agrees: a valid GPT whose STATE partition comes after the identity partition and ends at the disk's
    // last usable sector.
    const image = hostGpt(testImage().disk, testImage().manifest.outputs.disk.size / 512);
    expect(hostGpt(disk)?.diskGuid).not.toBe(image?.diskGuid);
    expect(hostGpt(disk)?.partitions.map((p) => [p.name, p.lastLba])).toEqual([
      ['AURAE_BOOT', expect.any(Number)],
      ['AURAE_IDENTITY', expect.any(Number)],
      ['AURAE_STATE', DISK_BYTES / 512 - 34],
    ]);
    expect(execFileSync('sfdisk', ['--verify', disk], { encoding: 'utf8' })).toMatch(/No errors detected/);
  });

  it('a torn primary GPT is restored from the backup by init (direct kernel boot: no firmware repairs it first)', async () => {
    // Break the primary header's CRC, as a power cut in the middle of a table rewrite would.
    const fd = fs.openSync(disk, 'r+');
    try {
      fs.writeSync(fd, Buffer.alloc(4), 0, 4, 512 + 16);
    } finally {
      fs.closeSync(fd);
    }
    expect(hostGpt(disk)?.source).toBe('backup');
    // No fw_cfg identity: the node reads it from the partition of the table init just restored.
    node = await bootNode({ name: '30-torn-gpt', disks: [disk], identity: false });
    expect(node.vm.console).toMatch(/storage: \/dev\/vda: primary GPT unusable: .*restoring the primary GPT from the backup/);
    expect(node.vm.console).toMatch(/state disk: \/dev\/vda3 \(AURAE_STATE\) mounted on \/var\/lib\/aurae/);
    expect(node.vm.console).toMatch(/init: identity: node aurae from partition AURAE_IDENTITY \(\/dev\/vda2\)/);
    const client = node.client();
    try {
      expect((await client.cells.list()).some((c) => c.name === 'kept')).toBe(true);
    } finally {
      client.close();
    }
    await node.stop();
    node = null;
    expect(hostGpt(disk)?.source).toBe('primary');
    expect(execFileSync('sfdisk', ['--verify', disk], { encoding: 'utf8' })).toMatch(/No errors detected/);
  });
});
