// 49: Secure Boot under OVMF (the SMM build; q35,smm=on with a flash only SMM may write). The firmware's variable
// store is Debian's snakeoil one (PK and KEK: a public test key, Secure Boot enabled) with db replaced by the
// build's image-signing certificate, as an operator enrols it once per machine (image/lib/ovmf-vars.ts), so what
// the firmware checks is the flashed disk's own systemd-boot and UKI, signed by the build. The node sees Secure
// Boot on and serves. A newer boot entry signed by a key db does not hold is refused by the firmware's LoadImage;
// systemd-boot 252 then exits (it does not try its next entry) and the firmware goes on to its next boot option,
// but the refused entry's try was counted before the load: after TRIES resets, the signed entry boots by itself.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OVMF_VARS_SNAKEOIL } from '../image/lib/ovmf';
import { enrolledKeys, writeStoreWithDb } from '../image/lib/ovmf-vars';
import { IMAGE_SIGNING_FILES } from '../image/sign';
import { entryFileName, entryId, TRIES } from '../supervisor/upgrade/slots';
import { aer } from './fixture/aer';
import { espEntries, espPut } from './fixture/esp';
import { bootNode, testImage, type BootedNode, flashTestDisk } from './fixture/node';

const DISK_BYTES = 1024 * 1024 * 1024;
const EFIVARS = '/sys/firmware/efi/efivars';
const GLOBAL = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
/** Under TCG with SMM every firmware variable access is slow: a boot to AURAE_READY takes minutes on a busy host. */
const BOOT_MS = 300_000;

/** Does `file` verify against `cert` (sbverify)? */
function sbverifies(file: string, cert: string): boolean {
  try {
    execFileSync('sbverify', ['--cert', cert, file], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const count = (text: string, re: RegExp) => [...text.matchAll(new RegExp(re.source, 'g'))].length;

describe('49 Secure Boot under OVMF with the image-signing certificate in db', () => {
  let dir: string;
  let disk: string;
  let vars: string;
  let node: BootedNode | null = null;
  const signingCert = () => path.join(testImage().pkiDir, IMAGE_SIGNING_FILES.cert);
  const factory = () => entryId(1, testImage().manifest.release!.version);
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-secure-boot-'));
    disk = flashTestDisk(dir, DISK_BYTES);
    vars = path.join(dir, 'OVMF_VARS_image-signing.fd');
    writeStoreWithDb(OVMF_VARS_SNAKEOIL, vars, [signingCert()]);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console (full log: ${node.consoleLog}) ---\n${node.vm.tail(80)}`);
  });
  afterAll(async () => {
    await node?.vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("boots the build's signed systemd-boot and UKI with Secure Boot on; the node sees it and serves", async () => {
    // The store the firmware gets: a PK (Secure Boot enforced) and db = the image-signing certificate alone.
    const keys = enrolledKeys(fs.readFileSync(vars));
    expect(keys.secureBootEnable).toBe(true);
    expect(keys.pk).toHaveLength(1);
    expect(keys.db).toHaveLength(1);
    node = await bootNode({ name: '49-secure-boot', uefiDisk: disk, secureBootVars: vars, identity: false, noReboot: false, readyTimeoutMs: BOOT_MS });
    const out = node.vm.console;
    expect(out).toMatch(/BdsDxe: starting Boot\d+/);
    expect(out).toContain(`boot slot: systemd-boot says LoaderEntrySelected=${factory()}+3.efi`);
    // Inside the node: the firmware's SecureBoot variable is 1 and SetupMode 0 (4 attribute bytes, then the value),
    // and the kernel saw Secure Boot on (its EFI stub asked the firmware).
    expect((await aer(node, ['cell', 'allocate', 'probe'])).code).toBe(0);
    const probe = await aer(node, [
      'exec', 'probe', '--',
      '/bin/sh', '-c',
      `od -An -tu1 ${EFIVARS}/SecureBoot-${GLOBAL} | tr -s ' ' | sed 's/^/SecureBoot:/'; ` +
        `od -An -tu1 ${EFIVARS}/SetupMode-${GLOBAL} | tr -s ' ' | sed 's/^/SetupMode:/'; dmesg | grep -i 'secure boot'`,
    ]);
    expect(probe.code, probe.stderr).toBe(0);
    expect(probe.stdout).toMatch(/^SecureBoot: ?\d+ 0 0 0 1\s*$/m);
    expect(probe.stdout).toMatch(/^SetupMode: ?\d+ 0 0 0 0\s*$/m);
    expect(probe.stdout).toContain('secureboot: Secure boot enabled');
    expect((await aer(node, ['shutdown'])).code).toBe(0);
    await node.vm.waitForExit(120_000);
    node = null;
  }, BOOT_MS + 180_000);

  it('a newer entry signed by a key db does not hold is refused at every try; then the signed entry boots', async () => {
    // The factory UKI with its signature swapped for one by a key the firmware does not know: the same bytes
    // otherwise (without Secure Boot it boots, as qemu-tests/48 shows for an unsigned one).
    const key = path.join(dir, 'rogue.key');
    const cert = path.join(dir, 'rogue.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=Not enrolled', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const unsigned = path.join(dir, 'unsigned.efi');
    const rogue = path.join(dir, 'rogue.efi');
    fs.copyFileSync(testImage().uki, unsigned);
    execFileSync('sbattach', ['--remove', unsigned], { stdio: 'ignore' });
    execFileSync('sbsign', ['--key', key, '--cert', cert, '--output', rogue, unsigned], { stdio: 'ignore' });
    expect(sbverifies(rogue, cert)).toBe(true);
    expect(sbverifies(rogue, signingCert())).toBe(false);
    const rogueId = entryId(2, 'rogue');
    espPut(disk, rogue, entryFileName({ generation: 2, version: 'rogue', triesLeft: TRIES }));

    node = await bootNode({ name: '49-refused', uefiDisk: disk, secureBootVars: vars, identity: false, noReboot: false, waitFor: 'launch' });
    const vm = node.vm;
    let from = 0;
    for (let left = TRIES - 1; left >= 0; left--) {
      // systemd-boot counted the try (renamed the entry) and then asked the firmware to load it.
      const tried = entryFileName({ generation: 2, version: 'rogue', triesLeft: left, triesDone: TRIES - left }).replace(/[.+]/g, '\\$&');
      await vm.waitForConsole(new RegExp(`Error loading \\\\EFI\\\\Linux\\\\${tried}: Access Denied`), BOOT_MS, from);
      // systemd-boot 252 then exits with that error instead of booting its next entry, and the firmware goes on
      // to its next boot option (here iPXE and PXE on the NIC, then its menu): the node stays down.
      const exited = await vm.waitForConsole(/BdsDxe: failed to start Boot\d+ "UEFI Misc Device" .*: Access Denied/, 60_000, from);
      from = vm.console.indexOf(exited[0], from) + exited[0].length;
      // A power cycle (here QMP's reset) starts over at systemd-boot, which counts the next try.
      await (await vm.qmp()).systemReset();
    }
    await node.waitReady(BOOT_MS, from);
    const out = vm.console;
    // The rogue kernel never ran: one init, on the signed entry, which tells why the newer one was passed over.
    expect(count(out, /init: aurae init starting/)).toBe(1);
    expect(out).toMatch(new RegExp(`boot slot: systemd-boot says LoaderEntrySelected=${factory()}[^ ]*\\.efi`));
    expect(out).toContain(`boot slot: ${rogueId} was booted ${TRIES} time(s) without being blessed`);
    const client = node.client();
    try {
      expect((await client.health.check('aurae.storage')).status).toBe('SERVING');
    } finally {
      client.close();
    }
    expect((await aer(node, ['shutdown'])).code).toBe(0);
    await node.vm.waitForExit(120_000);
    node = null;
    expect(espEntries(disk)).toContain(entryFileName({ generation: 2, version: 'rogue', triesLeft: 0, triesDone: TRIES }));
  }, 4 * BOOT_MS);
});
