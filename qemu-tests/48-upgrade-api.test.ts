// 48 (API): an in-place upgrade through aer alone, under OVMF on q35 like qemu-tests/48-upgrade.test.ts (boot side).
// A flashed factory disk boots and blesses its entry; `aer image upgrade` refuses a tampered and an unsigned release
// (nothing on the ESP changes); an upload cut by killing aer keeps its bytes on the node's state volume; the next
// upload continues from there into the inactive slot and reboots into it; init blesses it; `aer image rollback --reboot` makes the factory release boot again (under a new
// generation). The audit row of the upload survives the reboots (state volume).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../image/build';
import { IMAGE_SIGNING_FILES, writeRelease } from '../image/sign';
import { entryId } from '../supervisor/upgrade/slots';
import { aer } from './fixture/aer';
import { bootNode, testImage, type BootedNode, flashTestDisk } from './fixture/node';

const DISK_BYTES = 1024 * 1024 * 1024;
const UPLOAD_TIMEOUT_MS = 600_000;
/** OVMF + systemd-boot + the node under TCG, then blessAfterMs (30 s) of serving. */
const BOOT_AND_BLESS_MS = 400_000;

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('48 upgrade API: aer image upgrade / status / rollback on a flashed node', () => {
  let dir: string;
  let disk: string;
  let node: BootedNode | null = null;
  const image = () => testImage();
  const factoryVersion = () => image().manifest.release!.version;

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

  async function status(): Promise<{
    slotted: boolean;
    running: string;
    bootsNext: string;
    entries: { id: string; triesLeft: number | null }[];
    lastRollback: { from: string; to: string; by: string } | null;
    partial: unknown;
    uploading: boolean;
  }> {
    const r = await aer(node!, ['-o', 'json', 'image', 'status']);
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout);
  }

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-upgrade-api-'));
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

  it('the factory entry boots and is blessed; status says so; tampered and unsigned releases are refused with nothing written', async () => {
    const factory = entryId(1, factoryVersion());
    node = await bootNode({ name: '48-api', uefiDisk: disk, identity: false, noReboot: false, readyTimeoutMs: 240_000 });
    await node.vm.waitForConsole(new RegExp(`boot slot: blessed ${esc(factory)} `), 120_000);
    const before = await status();
    expect(before).toMatchObject({ slotted: true, running: factory, bootsNext: factory, partial: null });
    expect(before.entries).toEqual([expect.objectContaining({ id: factory, triesLeft: null })]);

    const good = makeRelease('v2', 'v2');
    // Tampered: the kernel changed after signing (same size): streamed, then refused on its sha256.
    const tampered = path.join(dir, 'tampered');
    fs.cpSync(good, tampered, { recursive: true });
    const kernel = path.join(tampered, path.basename(image().kernel));
    const bytes = fs.readFileSync(kernel);
    bytes[4096] = bytes[4096]! ^ 0xff;
    fs.writeFileSync(kernel, bytes);
    const t = await aer(node, ['image', 'upgrade', tampered], UPLOAD_TIMEOUT_MS);
    expect(t.code).toBe(1);
    expect(t.stderr).toMatch(/has sha256 [0-9a-f]{64}, the signed manifest says [0-9a-f]{64}: .*nothing was written to the ESP/);
    // Unsigned: refused before any byte is taken.
    const unsigned = path.join(dir, 'unsigned');
    fs.cpSync(good, unsigned, { recursive: true });
    fs.writeFileSync(path.join(unsigned, 'aurae-release.json.sig'), '');
    const u = await aer(node, ['image', 'upgrade', unsigned]);
    expect(u.code).toBe(1);
    expect(u.stderr).toMatch(/the manifest is unsigned/);
    expect(await status()).toEqual(before);
  }, 900_000);

  it('an upload cut by killing aer keeps its bytes on the node; the next one continues from there', async () => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'out/bundle/aer.cjs'), '--config', node!.image.clientConfig, '--address', `127.0.0.1:${node!.port}`, 'image', 'upgrade', path.join(dir, 'v2')], {
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
    const deadline = Date.now() + 60_000;
    let s = await status();
    while ((s.uploading || s.partial === null) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      s = await status();
    }
    expect(s).toMatchObject({ uploading: false, partial: { version: 'v2', kept: expect.any(Number) } });
    expect((s.partial as { kept: number }).kept).toBeGreaterThan(8 * 1024 * 1024);
  }, 300_000);

  it('aer image upgrade --reboot writes the new slot and reboots into it; init blesses it; the audit row survives', async () => {
    const next = entryId(2, 'v2');
    const from = node!.vm.console.length;
    const r = await aer(node!, ['image', 'upgrade', path.join(dir, 'v2'), '--reboot'], UPLOAD_TIMEOUT_MS);
    expect(r.stderr).toMatch(/release v2 signed by CN=Aurae image signing; continuing from \S+ kept on the node/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`${esc(next)} written to EFI/Linux/${esc(next)}\\+3\\.efi.*it boots next: rebooting`));
    await node!.vm.waitForConsole(new RegExp(`boot slot: blessed ${esc(next)} `), BOOT_AND_BLESS_MS, from);
    const s = await status();
    expect(s).toMatchObject({ slotted: true, running: next, bootsNext: next });
    expect(s.entries.map((e) => [e.id, e.triesLeft])).toEqual([[next, null], [entryId(1, factoryVersion()), null]]);
    const audit = await aer(node!, ['-o', 'json', 'authz', 'audit', '--method', 'aurae.upgrade.v0.UpgradeService/*']);
    expect(JSON.parse(audit.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ method: 'aurae.upgrade.v0.UpgradeService/Upload', code: 'OK', identity: 'admin' })]));
  }, 900_000);

  it('aer image rollback --reboot brings the factory release back under a new generation', async () => {
    const back = entryId(3, factoryVersion());
    const from = node!.vm.console.length;
    const r = await aer(node!, ['image', 'rollback', '--reboot']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`${esc(back)} boots next`));
    await node!.vm.waitForConsole(new RegExp(`boot slot: blessed ${esc(back)} `), BOOT_AND_BLESS_MS, from);
    const s = await status();
    expect(s).toMatchObject({ running: back, bootsNext: back, lastRollback: { from: entryId(2, 'v2'), to: back, by: 'admin' } });
    expect((await aer(node!, ['shutdown'])).code).toBe(0);
    await node!.vm.waitForExit(120_000);
    node = null;
  }, 900_000);
});
