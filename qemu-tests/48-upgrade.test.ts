// 48: signed A/B upgrades on the ESP under real firmware (OVMF on q35), systemd-boot's boot counting deciding, driven
// through aer alone. ONE flashed factory disk goes through one chain of boots; each `it` starts from the state the
// previous one left (the `node` below, the generations in GEN):
//   1. the factory entry (generation 1, counted `+3`) boots through systemd-boot; init blesses it once auraed has
//      served for upgrade.blessAfterMs; Status says so;
//   2. `aer image upgrade` refuses a tampered and an unsigned release, and nothing on the ESP changes;
//   3. an upload cut by killing aer keeps its bytes on the node's state volume;
//   4. `aer image upgrade --reboot` continues from them, writes the inactive slot (generation 2) and reboots into it;
//      init blesses it; the audit row of the upload survives the reboot;
//   5. `aer image rollback --reboot` makes the factory release boot again (generation 3) and Status names who did;
//   6. a power cut (QEMU SIGKILLed) while auraed writes the next slot (generation 4) to the ESP: the guest's writes
//      are throttled (QMP) once auraed says it starts, and the kill comes once that slot's first files are on the
//      disk, so the host sees the write cut: the slot's manifest and signature there and whole, its UKI (the entry)
//      not;
//   7. with the disk off, the host adds a newer entry (generation 5) whose auraed exits at start: systemd-boot tries
//      it 3 times (init reboots each unblessed try at its deadline), then boots the blessed generation 3 by itself,
//      never the half-written slot;
//   8. that node serves with a sane Status after the cut (the half slot is no entry; the whole upload is still kept),
//      the cell step 1 made is back with its executable running (as after steps 4 and 5),
//      a new upload continues from the kept bytes, removes the leftovers and the failed entry and writes the slot
//      (generation 6), and /boot keeps the fmask/dmask init mounted it with across auraed's remounts.
// Two QEMU runs (steps 1-6, steps 7-8), seven boots.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CMDLINE, REPO_ROOT } from '../image/build';
import { ukiCmdline } from '../image/disk';
import { buildUki } from '../image/disk/uki';
import { initramfsWithConfig } from '../image/lib/guest-registry';
import { IMAGE_SIGNING_FILES, writeRelease } from '../image/sign';
import { entryFileName, entryId, ESP_PATHS, slotFileName, slotsOf, TRIES } from '../supervisor/upgrade/slots';
import { aer } from './fixture/aer';
import { espEntries, espFile, espPut } from './fixture/esp';
import { bootNode, eventually, flashTestDisk, testImage, type BootedNode } from './fixture/node';

const DISK_BYTES = 1024 * 1024 * 1024;
const UPLOAD_TIMEOUT_MS = 600_000;
/** OVMF + systemd-boot + the node under TCG, then blessAfterMs (30 s) of serving. */
const BOOT_AND_BLESS_MS = 400_000;
/**
 * The guest's write rate to its disk during the cut write of step 6: the new slot (~110 MB) then takes about a
 * minute to reach the disk, so the kill lands inside it however busy the host is.
 */
const CUT_WRITE_BYTES_PER_SECOND = 2 * 1024 * 1024;

/** The generation of each entry the chain makes (the node assigns one more than any on the ESP). */
const GEN = { factory: 1, v2: 2, rolledBack: 3, cut: 4, bad: 5, v2Again: 6 } as const;

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** How many times `re` matches the console text. */
const count = (text: string, re: RegExp) => [...text.matchAll(new RegExp(re.source, 'g'))].length;

/** Limit the guest's writes to the drive backed by `file` to `bytesPerSecond` from now on (QMP; 0 lifts it). */
async function throttleWrites(node: BootedNode, file: string, bytesPerSecond: number): Promise<void> {
  const qmp = await node.vm.qmp();
  const blocks = await qmp.execute<{ qdev?: string; inserted?: { file?: string } }[]>('query-block');
  const drive = blocks.find((b) => b.inserted?.file === file);
  if (!drive?.qdev) throw new Error(`qmp query-block: no guest drive is backed by ${file}: ${JSON.stringify(blocks)}`);
  await qmp.execute('block_set_io_throttle', { id: drive.qdev, bps: 0, bps_rd: 0, bps_wr: bytesPerSecond, iops: 0, iops_rd: 0, iops_wr: 0 });
}

interface Status {
  slotted: boolean;
  running: string;
  bootsNext: string;
  entries: { id: string; triesLeft: number | null; triesDone: number | null; running: boolean; bootsNext: boolean }[];
  lastRollback: { from: string; to: string; reason: string; by: string } | null;
  partial: { version: string; kept: number; total: number } | null;
  bootNote: string;
  uploading: boolean;
}

describe('48 upgrade: signed A/B slots with boot counting under OVMF, one disk through one chain of boots', () => {
  let dir: string;
  let disk: string;
  /** The running QEMU (null between runs). */
  let node: BootedNode | null = null;
  const image = () => testImage();
  const factoryVersion = () => image().manifest.release!.version;
  const factory = () => entryId(GEN.factory, factoryVersion());
  const rolledBack = () => entryId(GEN.rolledBack, factoryVersion());
  const v2 = entryId(GEN.v2, 'v2');
  const cut = entryId(GEN.cut, 'v2');
  const bad = entryId(GEN.bad, 'bad');
  const v2Again = entryId(GEN.v2Again, 'v2');
  /** The signed release v2 (the build's files under another version), made in step 2. */
  const v2Release = () => path.join(dir, 'v2');

  const booted = (): BootedNode => {
    if (!node) throw new Error('no node is running: an earlier step failed');
    return node;
  };

  /** A release folder of version `version` from the build's files, signed with the build's image-signing key. */
  function makeRelease(name: string, version: string): string {
    const rel = path.join(dir, name);
    fs.mkdirSync(rel, { recursive: true });
    const copy = (src: string) => {
      const to = path.join(rel, path.basename(src));
      fs.copyFileSync(src, to);
      return to;
    };
    writeRelease({
      dir: rel,
      version,
      files: [
        { role: 'uki', file: copy(image().uki) },
        { role: 'kernel', file: copy(image().kernel) },
        { role: 'initramfs', file: copy(image().initramfs) },
      ],
      signing: { key: path.join(image().pkiDir, IMAGE_SIGNING_FILES.key), cert: path.join(image().pkiDir, IMAGE_SIGNING_FILES.cert) },
    });
    return rel;
  }

  async function status(): Promise<Status> {
    const r = await aer(booted(), ['-o', 'json', 'image', 'status']);
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as Status;
  }

  /** /boot's line of /proc/mounts on the node, read by a program in a cell (cells share the node's mounts). */
  async function bootMount(): Promise<string> {
    const r = await aer(booted(), ['exec', 'esp-probe', '--shell', 'grep " /boot " /proc/mounts']);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  }

  /**
   * The node's state survives every upgrade, rollback and power cut: the cell step 1 allocated (its row on STATE)
   * is there and its sleeper, desired running, was started again by auraed's reconcile on this boot.
   */
  async function expectKeptCell(): Promise<void> {
    await eventually(
      async () => {
        const client = booted().client();
        try {
          const kept = (await client.cells.list()).find((c) => c.name === 'kept');
          return kept?.executables.find((x) => x.name === 'sleeper' && x.state === 'running') ?? null;
        } finally {
          client.close();
        }
      },
      120_000,
      "the cell 'kept' with its sleeper running again after the reboot",
    );
  }

  async function shutdown(): Promise<void> {
    expect((await aer(booted(), ['shutdown'])).code).toBe(0);
    await booted().vm.waitForExit(120_000);
    node = null;
  }

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

  it('1. the factory disk boots its counted entry through systemd-boot, reports it and blesses it once auraed has served; Status says so', async () => {
    const id = factory();
    expect(espEntries(disk)).toContain(entryFileName({ generation: GEN.factory, version: factoryVersion(), triesLeft: TRIES }));
    node = await bootNode({ name: '48-upgrade', uefiDisk: disk, identity: false, noReboot: false, readyTimeoutMs: 240_000 });
    const out = node.vm.console;
    // systemd-boot renamed +3 to +2-1 before booting it and said so (LoaderBootCountPath); the entry id it reports
    // is the name it listed.
    expect(out).toContain(`boot slot: systemd-boot says LoaderEntrySelected=${id}+3.efi LoaderBootCountPath=\\EFI\\Linux\\${id}+2-1.efi`);
    expect(out).toContain(`boot slot: running ${id} (${id}+2-1.efi), on trial with 2 tries left`);
    // Default blessAfterMs: 30 s of serving.
    await node.vm.waitForConsole(new RegExp(`boot slot: blessed ${esc(id)} \\(${esc(id)}\\+2-1\\.efi → ${esc(id)}\\.efi\\)`), 120_000);
    // The rename is on the disk (the host reads the ESP while the node runs).
    const names = espEntries(disk);
    expect(names).toContain(`${id}.efi`);
    expect(slotsOf(names, null).default).toMatchObject({ id, triesLeft: null, missing: [] });
    const s = await status();
    expect(s).toMatchObject({ slotted: true, running: id, bootsNext: id, partial: null });
    expect(s.entries).toEqual([expect.objectContaining({ id, triesLeft: null })]);
    // State the later boots must keep (expectKeptCell).
    const client = node.client();
    try {
      await client.cells.allocate({ name: 'kept', memory: { max: 64 * 1024 * 1024 } });
      await client.cells.start('kept', { name: 'sleeper', args: ['/bin/sleep', '3600'], restart: { mode: 'always' } });
    } finally {
      client.close();
    }
  }, 400_000);

  it('2. tampered and unsigned releases are refused with nothing written to the ESP', async () => {
    const before = await status();
    const espBefore = espEntries(disk);
    const good = makeRelease('v2', 'v2');
    // Tampered: the kernel changed after signing (same size): streamed, then refused on its sha256.
    const tampered = path.join(dir, 'tampered');
    fs.cpSync(good, tampered, { recursive: true });
    const kernel = path.join(tampered, path.basename(image().kernel));
    const bytes = fs.readFileSync(kernel);
    bytes[4096] = bytes[4096]! ^ 0xff;
    fs.writeFileSync(kernel, bytes);
    const t = await aer(booted(), ['image', 'upgrade', tampered], UPLOAD_TIMEOUT_MS);
    expect(t.code).toBe(1);
    expect(t.stderr).toMatch(/has sha256 [0-9a-f]{64}, the signed manifest says [0-9a-f]{64}: .*nothing was written to the ESP/);
    // Unsigned: refused before any byte is taken.
    const unsigned = path.join(dir, 'unsigned');
    fs.cpSync(good, unsigned, { recursive: true });
    fs.writeFileSync(path.join(unsigned, 'aurae-release.json.sig'), '');
    const u = await aer(booted(), ['image', 'upgrade', unsigned]);
    expect(u.code).toBe(1);
    expect(u.stderr).toMatch(/the manifest is unsigned/);
    expect(await status()).toEqual(before);
    expect(espEntries(disk)).toEqual(espBefore);
  }, 900_000);

  it('3. an upload cut by killing aer keeps its bytes on the node', async () => {
    const n = booted();
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'out/bundle/aer.cjs'), '--config', n.image.clientConfig, '--address', `127.0.0.1:${n.port}`, 'image', 'upgrade', v2Release()], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        // Killed once the node has confirmed at least 10 % (progress lines come every 8 MiB it stored).
        if (/upload v2: .* ([1-9]\d)%/.test(err)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`aer ended before 10 % was uploaded: ${err}`)));
    });
    const s = await eventually(
      async () => {
        const st = await status();
        return !st.uploading && st.partial !== null ? st : null;
      },
      60_000,
      'the node to see the upload cut and keep its bytes',
    );
    expect(s).toMatchObject({ uploading: false, partial: { version: 'v2', kept: expect.any(Number) } });
    expect(s.partial!.kept).toBeGreaterThan(8 * 1024 * 1024);
  }, 300_000);

  it('4. aer image upgrade --reboot continues the kept upload, writes the new slot and reboots into it; init blesses it; the audit row survives', async () => {
    const n = booted();
    const from = n.vm.console.length;
    const r = await aer(n, ['image', 'upgrade', v2Release(), '--reboot'], UPLOAD_TIMEOUT_MS);
    expect(r.stderr).toMatch(/release v2 signed by CN=Aurae image signing; continuing from \S+ kept on the node/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`${esc(v2)} written to EFI/Linux/${esc(v2)}\\+3\\.efi.*it boots next: rebooting`));
    await n.vm.waitForConsole(new RegExp(`boot slot: blessed ${esc(v2)} `), BOOT_AND_BLESS_MS, from);
    const s = await status();
    expect(s).toMatchObject({ slotted: true, running: v2, bootsNext: v2 });
    expect(s.entries.map((e) => [e.id, e.triesLeft])).toEqual([[v2, null], [factory(), null]]);
    const audit = await aer(n, ['-o', 'json', 'authz', 'audit', '--method', 'aurae.upgrade.v0.UpgradeService/*']);
    expect(JSON.parse(audit.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ method: 'aurae.upgrade.v0.UpgradeService/Upload', code: 'OK', identity: 'admin' })]));
    await expectKeptCell();
  }, 900_000);

  it('5. aer image rollback --reboot brings the factory release back under a new generation', async () => {
    const n = booted();
    const from = n.vm.console.length;
    const r = await aer(n, ['image', 'rollback', '--reboot']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`${esc(rolledBack())} boots next`));
    await n.vm.waitForConsole(new RegExp(`boot slot: blessed ${esc(rolledBack())} `), BOOT_AND_BLESS_MS, from);
    const s = await status();
    expect(s).toMatchObject({ running: rolledBack(), bootsNext: rolledBack(), lastRollback: { from: v2, to: rolledBack(), by: 'admin' } });
    await expectKeptCell();
  }, 900_000);

  it('6. a power cut while auraed writes the new slot to the ESP leaves that slot without its entry (the host sees the cut write)', async () => {
    const n = booted();
    expect((await status()).partial).toBeNull(); // step 4's upload was used up: this one streams every byte
    const from = n.vm.console.length;
    const upload = aer(n, ['image', 'upgrade', v2Release(), '--attempts', '1'], UPLOAD_TIMEOUT_MS);
    // auraed says so after every sha256 matched, before its first change to the ESP (removing the other slot).
    await Promise.race([
      n.vm.waitForConsole(new RegExp(`"msg":"upgrade: writing the ESP".*"entry":"${esc(cut)}"`), UPLOAD_TIMEOUT_MS, from),
      upload.then((r) => {
        throw new Error(`aer image upgrade ended (${r.code}) before the node began writing the ESP: ${r.stderr}`);
      }),
    ]);
    await throttleWrites(n, disk, CUT_WRITE_BYTES_PER_SECOND);
    // The manifest and signature go first (each fsynced, renamed, its folder fsynced), then kernel, initramfs and
    // the UKI last: once the first two are on the disk, the big files are on their way.
    const json = slotFileName(cut, 'manifest');
    const sig = slotFileName(cut, 'signature');
    await eventually(
      async () => {
        const names = espEntries(disk);
        return names.includes(json) && names.includes(sig);
      },
      120_000,
      `${json} and ${sig} on the ESP`,
      100,
    );
    n.vm.process.kill('SIGKILL');
    await n.vm.exited;
    node = null;
    const r = await upload;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/release v2 signed by CN=Aurae image signing/);
    expect(r.stdout).not.toMatch(/written to/);
    expect(n.vm.console.slice(from)).not.toContain('upgrade: release written');

    // The write was cut: the slot's first files are whole on the disk, its entry (the UKI) is not there at all.
    const names = espEntries(disk);
    const release = v2Release();
    // (Both are text: a difference shows. An empty file here means the rename was not made durable: vfat writes a
    // renamed file's size and first cluster only with its inode, see supervisor/upgrade/esp.ts fsyncRenamed.)
    expect(espFile(disk, json, dir).toString('utf8')).toBe(fs.readFileSync(path.join(release, 'aurae-release.json'), 'utf8'));
    expect(espFile(disk, sig, dir).toString('utf8')).toBe(fs.readFileSync(path.join(release, 'aurae-release.json.sig'), 'utf8'));
    expect(names.filter((name) => name.startsWith(`${cut}+`) || name === `${cut}.efi`), names.join(' ')).toEqual([]);
    // The other slot (v2) was removed first; the running one is whole and is what boots next.
    expect(names.filter((name) => name.startsWith(v2)), names.join(' ')).toEqual([]);
    const slots = slotsOf(names, null);
    expect(slots.entries.map((e) => [e.id, e.triesLeft, e.missing])).toEqual([[rolledBack(), null, []]]);
    expect(slots.orphans).toEqual(expect.arrayContaining([json, sig]));
  }, 900_000);

  it('7. a newer entry whose auraed never serves is tried 3 times, then the blessed entry boots by itself and says why (never the half-written slot)', async () => {
    const id = rolledBack();
    // The bad build: the image's kernel and initramfs with a node config whose auraed exits at start (it cannot
    // listen on an address the node does not have) and a short bless deadline, as its own unsigned UKI, put on the
    // ESP by the host with the node off.
    const initrd = await initramfsWithConfig(image(), (c) => ({ ...c, listen: { ...c.listen, tcp: '10.9.9.9:8443' }, upgrade: { blessDeadlineMs: 8_000 } }), dir);
    const uki = path.join(dir, 'bad.efi');
    await buildUki({ kernel: image().kernel, initramfs: initrd, cmdline: ukiCmdline(DEFAULT_CMDLINE), osRelease: 'NAME="Aurae"\nID=aurae\n', out: uki, workDir: path.join(dir, 'uki') });
    const badName = entryFileName({ generation: GEN.bad, version: 'bad', triesLeft: TRIES });
    espPut(disk, uki, badName);
    expect(slotsOf(espEntries(disk), null).default?.id).toBe(bad);

    node = await bootNode({ name: '48-upgrade-after-cut', uefiDisk: disk, identity: false, noReboot: false, readyTimeoutMs: 400_000 });
    const out = node.vm.console;
    for (const left of [2, 1, 0]) expect(out).toContain(`boot slot: running ${bad} (${bad}+${left}-${TRIES - left}.efi), on trial with ${left} tries left`);
    // Each try's auraed really exited at start (it is not just init declining to bless).
    expect(count(out, /auraed failed to start.*EADDRNOTAVAIL/)).toBeGreaterThanOrEqual(3);
    expect(count(out, /was not blessed within 8 s \(auraed did not serve for 30 s\): rebooting so systemd-boot counts the try/)).toBe(3);
    // The fourth boot: the bad entry has no tries left and sorts last; the half-written slot is no entry; the
    // blessed one boots, uncounted.
    expect(out).toContain(`boot slot: systemd-boot says LoaderEntrySelected=${id}.efi LoaderBootCountPath=(none)`);
    expect(out).toContain(`boot slot: running ${id} (blessed)`);
    expect(out).toContain(`boot slot: ${bad} was booted 3 time(s) without being blessed`);
    expect(out).not.toContain(`running ${cut}`);
    expect(count(out, /AURAE_READY /)).toBe(1);
  }, 600_000);

  it('8. after the cut the node serves with a sane Status; a new upload continues from the kept bytes, removes the leftovers and writes the slot; /boot keeps fmask/dmask', async () => {
    const id = rolledBack();
    // Status after the power cut (and the bad entry's tries): the half slot is no entry and nothing points at it;
    // the whole upload is still kept (it was synced before the ESP write began).
    const s = await status();
    expect(s).toMatchObject({ slotted: true, running: id, bootsNext: id, uploading: false, partial: { version: 'v2', kept: s.partial?.total } });
    expect(s.entries.map((e) => [e.id, e.triesLeft, e.running, e.bootsNext])).toEqual([
      [id, null, true, true],
      [bad, 0, false, false],
    ]);
    expect(s.lastRollback).toMatchObject({ from: bad, to: id, reason: expect.stringContaining(`${bad} was booted 3 time(s) without being blessed`) });
    await expectKeptCell();

    expect((await aer(booted(), ['cell', 'allocate', 'esp-probe', '--memory-max', '64M', '--pids-max', '32'])).code).toBe(0);
    const mountedBefore = await bootMount();
    expect(mountedBefore).toMatch(/^\S+ \/boot vfat ro,/);
    expect(mountedBefore).toContain('fmask=0022');
    expect(mountedBefore).toContain('dmask=0022');

    const r = await aer(booted(), ['-o', 'json', 'image', 'upgrade', v2Release()], UPLOAD_TIMEOUT_MS);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/release v2 signed by CN=Aurae image signing; continuing from \S+ kept on the node/);
    const done = JSON.parse(r.stdout) as { entry: { id: string; file: string; triesLeft: number | null; bootsNext: boolean }; removed: string[]; sent: number; rebooting: boolean };
    expect(done).toMatchObject({ entry: { id: v2Again, file: `${ESP_PATHS.entries}/${v2Again}+3.efi`, triesLeft: TRIES, bootsNext: true }, sent: 0, rebooting: false });
    // The cut write's files and the failed entry were the "other slot": removed before the new one was written.
    const at = (name: string) => `${ESP_PATHS.entries}/${name}`;
    expect(done.removed).toEqual(expect.arrayContaining([at(slotFileName(cut, 'manifest')), at(slotFileName(cut, 'signature')), at(`${bad}+0-3.efi`)]));

    // auraed remounted /boot read-write for the write and read-only after it: init's options are still there.
    const mountedAfter = await bootMount();
    expect(mountedAfter).toBe(mountedBefore);

    const after = await status();
    expect(after).toMatchObject({ running: id, bootsNext: v2Again, partial: null });
    expect(after.entries.map((e) => [e.id, e.triesLeft])).toEqual([
      [v2Again, TRIES],
      [id, null],
    ]);
    await shutdown();
    // Nothing else is left on the ESP: the two slots' files, no temp file, no orphan.
    const names = espEntries(disk);
    const slots = slotsOf(names, null);
    expect({ orphans: slots.orphans, foreign: slots.foreign }).toEqual({ orphans: [], foreign: [] });
    expect(slots.entries.map((e) => [e.id, e.missing])).toEqual([
      [v2Again, []],
      [id, []],
    ]);
    expect(names).toHaveLength(2 * 5);
  }, 900_000);
});
