// 48: A/B boot slots under real firmware (OVMF on q35), systemd-boot's boot counting deciding. The flashed
// factory disk boots its counted entry, the node says which entry it runs and blesses it (drops the counter) once
// auraed has served for upgrade.blessAfterMs; then a newer entry (a higher generation) whose auraed exits at start
// is tried TRIES times — init reboots each unblessed try at its deadline — and the old entry boots by itself.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CMDLINE } from '../image/build';
import { ukiCmdline } from '../image/disk';
import { buildUki } from '../image/disk/uki';
import { initramfsWithConfig } from '../image/lib/guest-registry';
import { entryFileName, entryId, ESP_PATHS, slotsOf, TRIES } from '../supervisor/upgrade/slots';
import { aer } from './fixture/aer';
import { bootNode, testImage, type BootedNode, flashTestDisk } from './fixture/node';

const DISK_BYTES = 1024 * 1024 * 1024;
/** The ESP starts at LBA 2048 (image/disk/disk.ts). */
const ESP_OFFSET = 2048 * 512;
const MTOOLS_ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

/** Names in \EFI\Linux of the ESP inside `disk` (host side, mtools). */
function espEntries(disk: string): string[] {
  const out = execFileSync('mdir', ['-b', '-i', `${disk}@@${ESP_OFFSET}`, `::/${ESP_PATHS.entries}`], { env: MTOOLS_ENV, encoding: 'utf8' });
  return out.split('\n').filter(Boolean).map((l) => l.split('/').pop()!).sort();
}

/** How many times `re` matches the console text. */
const count = (text: string, re: RegExp) => [...text.matchAll(new RegExp(re.source, 'g'))].length;

describe('48 upgrade: A/B slots with boot counting under OVMF', () => {
  let dir: string;
  let disk: string;
  let node: BootedNode | null = null;
  const image = () => testImage();
  const factory = () => entryId(1, image().manifest.release!.version);
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-upgrade-'));
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

  it('the factory disk boots its counted entry through systemd-boot, reports it and blesses it once auraed has served', async () => {
    const id = factory();
    expect(espEntries(disk)).toContain(entryFileName({ generation: 1, version: image().manifest.release!.version, triesLeft: TRIES }));
    node = await bootNode({ name: '48-factory', uefiDisk: disk, identity: false, noReboot: false, readyTimeoutMs: 240_000 });
    const out = node.vm.console;
    // systemd-boot renamed +3 to +2-1 before booting it and said so (LoaderBootCountPath); the entry id it reports
    // is the name it listed.
    expect(out).toContain(`boot slot: systemd-boot says LoaderEntrySelected=${id}+3.efi LoaderBootCountPath=\\EFI\\Linux\\${id}+2-1.efi`);
    expect(out).toContain(`boot slot: running ${id} (${id}+2-1.efi), on trial with 2 tries left`);
    // Default blessAfterMs: 30 s of serving.
    await node.vm.waitForConsole(new RegExp(`boot slot: blessed ${id} \\(${id.replace(/\./g, '\\.')}\\+2-1\\.efi → ${id.replace(/\./g, '\\.')}\\.efi\\)`), 60_000);
    expect((await aer(node, ['shutdown'])).code).toBe(0);
    await node.vm.waitForExit(120_000);
    node = null;
    const names = espEntries(disk);
    expect(names).toContain(`${id}.efi`);
    expect(slotsOf(names, null).default).toMatchObject({ id, triesLeft: null, missing: [] });
  }, 400_000);

  it('a newer entry whose auraed never serves is tried 3 times, then the blessed entry boots by itself and says why', async () => {
    const id = factory();
    const bad = entryId(2, 'bad');
    // The bad build: the image's kernel and initramfs with a node config whose auraed exits at start (it cannot
    // listen on an address the node does not have) and a short bless deadline, as its own signed-or-not UKI.
    const initrd = await initramfsWithConfig(image(), (c) => ({ ...c, listen: { ...c.listen, tcp: '10.9.9.9:8443' }, upgrade: { blessDeadlineMs: 8_000 } }), dir);
    const uki = path.join(dir, 'bad.efi');
    await buildUki({ kernel: image().kernel, initramfs: initrd, cmdline: ukiCmdline(DEFAULT_CMDLINE), osRelease: 'NAME="Aurae"\nID=aurae\n', out: uki, workDir: path.join(dir, 'uki') });
    const badName = entryFileName({ generation: 2, version: 'bad', triesLeft: TRIES });
    execFileSync('mcopy', ['-i', `${disk}@@${ESP_OFFSET}`, uki, `::/${ESP_PATHS.entries}/${badName}`], { env: MTOOLS_ENV });
    expect(slotsOf(espEntries(disk), null).default?.id).toBe(bad);

    node = await bootNode({ name: '48-fallback', uefiDisk: disk, identity: false, noReboot: false, readyTimeoutMs: 400_000 });
    const out = node.vm.console;
    for (const left of [2, 1, 0]) expect(out).toContain(`boot slot: running ${bad} (${bad}+${left}-${TRIES - left}.efi), on trial with ${left} tries left`);
    // Each try's auraed really exited at start (it is not just init declining to bless).
    expect(count(out, /auraed failed to start.*EADDRNOTAVAIL/)).toBeGreaterThanOrEqual(3);
    expect(count(out, /was not blessed within 8 s \(auraed did not serve for 30 s\): rebooting so systemd-boot counts the try/)).toBe(3);
    // The fourth boot: the bad entry has no tries left and sorts last; the blessed one boots, uncounted.
    expect(out).toContain(`boot slot: systemd-boot says LoaderEntrySelected=${id}.efi LoaderBootCountPath=(none)`);
    expect(out).toContain(`boot slot: running ${id} (blessed)`);
    expect(out).toContain(`boot slot: ${bad} was booted 3 time(s) without being blessed`);
    expect(count(out, /AURAE_READY /)).toBe(1);
    expect((await aer(node, ['shutdown'])).code).toBe(0);
    await node.vm.waitForExit(120_000);
    node = null;
    expect(espEntries(disk)).toEqual(expect.arrayContaining([`${id}.efi`, `${bad}+0-3.efi`]));
  }, 600_000);
});
