// The boot volume and the bare-metal disk: a signed UKI for UEFI firmware, the ESP (FAT32, label AURAE_BOOT) with
// systemd-boot and the factory A/B slot (the UKI as a counted boot entry, the kernel and initramfs children spawn
// from, the signed release manifest; supervisor/upgrade/slots.ts), room for a second slot, and a relocated QEMU
// (mounted read-only at /boot on the running node, so it can spawn children from its own image), and disk.raw (GPT with that ESP and an empty AURAE_IDENTITY
// partition the flasher fills; init adds STATE at first boot).
import fs from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import { parseLdd } from '../runtime';
import { sha256File } from '../lib/cache';
import { entryId, TRIES } from '../../supervisor/upgrade/slots';
import { sbsignFile, writeRelease, type SigningKey } from '../sign';
import { bootTree, slotTree, type QemuInputs } from './boot-tree';
import { writeDiskImage } from './disk';
import { writeFatImage } from './fat';
import { buildUki, ukiOsRelease } from './uki';

export { BOOT_FILES, QEMU_WRAPPER, slotTree } from './boot-tree';
export { diskLayout, ESP_PARTITION_NAME } from './disk';

/** FAT label of the boot volume; init mounts the volume with this label at /boot. */
export const BOOT_LABEL = 'AURAE_BOOT';
const BOOT_SERIAL = 'AE0B0070';

/** The kernel command line baked into the UKI: console on the screen and on the first serial port (last = /dev/console). */
export function ukiCmdline(base: string): string {
  return `${base} console=tty0 console=ttyS0`.trim();
}

/** The host's QEMU, its libraries, TCG module and microvm firmware, to relocate onto the boot volume. */
export async function hostQemu(binary = '/usr/bin/qemu-system-x86_64'): Promise<QemuInputs> {
  const ldd = await $({ quiet: true, nothrow: true })`ldd ${binary}`;
  if (ldd.exitCode !== 0 || /not found/.test(ldd.stdout)) {
    throw new Error(`boot volume: ldd ${binary} failed or lacks libraries:\n${ldd.stdout}${ldd.stderr}\ninstall qemu-system-x86 (image/setup.sh does)`);
  }
  const tcgModule = '/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so';
  const microvmBios = fs.realpathSync('/usr/share/qemu/bios-microvm.bin');
  for (const f of [tcgModule, microvmBios]) if (!fs.existsSync(f)) throw new Error(`boot volume: ${f} is missing: reinstall qemu-system-x86 and qemu-system-data`);
  return { binary, libs: parseLdd(ldd.stdout), tcgModule, microvmBios };
}

export interface BootArtifactsInputs {
  kernel: string;
  initramfs: string;
  cmdline: string;
  node: string;
  /** The release version (image/sign imageVersion) and the key that signs the UKI, systemd-boot and the release. */
  version: string;
  signing: SigningKey;
  mtime: number;
  outDir: string;
  workDir: string;
  log: (line: string) => void;
}

export interface BootArtifacts {
  /** The signed UKI (out/image/BOOTX64.EFI: boots by itself from any ESP; on the node's ESP it is a slot's entry). */
  uki: string;
  esp: string;
  disk: string;
  /** aurae-release.json and its detached signature (image/sign), beside the files they name. */
  release: string;
  releaseSignature: string;
  /** The factory slot's entry id (aurae-000001-<version>). */
  entryId: string;
}

/** systemd-boot as Debian's systemd-boot-efi ships it. */
export const SYSTEMD_BOOT = '/usr/lib/systemd/boot/efi/systemd-bootx64.efi';
/** The factory image's slot: the first generation, counted (init blesses it once the node has served). */
export const FACTORY_GENERATION = 1;

/** Size of one slot's files (UKI + kernel + initramfs + manifest): the ESP keeps room for a second one. */
export function slotBytes(files: string[]): number {
  return files.reduce((sum, f) => sum + fs.statSync(f).size, 0);
}

export async function buildBootArtifacts(i: BootArtifactsInputs): Promise<BootArtifacts> {
  const uki = path.join(i.outDir, 'BOOTX64.EFI');
  const esp = path.join(i.outDir, 'esp.img');
  const disk = path.join(i.outDir, 'disk.raw');
  const work = path.join(i.workDir, 'uki');
  i.log('uki: kernel + initramfs + command line into the EFI stub');
  const unsigned = path.join(work, 'unsigned.efi');
  await buildUki({
    kernel: i.kernel,
    initramfs: i.initramfs,
    cmdline: ukiCmdline(i.cmdline),
    osRelease: ukiOsRelease(i.node, i.version),
    out: unsigned,
    workDir: work,
  });
  i.log(`sign: the UKI and systemd-boot with ${path.basename(i.signing.cert)} (sbsign), the release ${i.version} (aurae-release.json.sig)`);
  await sbsignFile(unsigned, uki, i.signing, i.mtime);
  const bootLoader = path.join(work, 'systemd-bootx64.efi');
  if (!fs.existsSync(SYSTEMD_BOOT)) throw new Error(`boot volume: ${SYSTEMD_BOOT} is missing: install Debian's systemd-boot-efi (image/setup.sh does)`);
  await sbsignFile(SYSTEMD_BOOT, bootLoader, i.signing, i.mtime);
  fs.rmSync(unsigned, { force: true });
  const release = writeRelease({
    dir: i.outDir,
    version: i.version,
    files: [
      { role: 'uki', file: uki },
      { role: 'kernel', file: i.kernel },
      { role: 'initramfs', file: i.initramfs },
    ],
    signing: i.signing,
  });
  const qemu = await hostQemu();
  const slot = { generation: FACTORY_GENERATION, version: i.version, triesLeft: TRIES, uki, kernel: i.kernel, initramfs: i.initramfs, manifest: release.manifest, signature: release.signature };
  const id = entryId(FACTORY_GENERATION, i.version);
  const description = JSON.stringify(
    {
      version: 1,
      node: i.node,
      release: i.version,
      entry: id,
      cmdline: ukiCmdline(i.cmdline),
      files: Object.fromEntries(await Promise.all(slotTree(slot).map(async (f) => [f.path, await sha256File(f.src as string)]))),
      qemu: (await $({ quiet: true })`${qemu.binary} --version`).stdout.split('\n')[0],
    },
    null,
    2,
  ) + '\n';
  const files = bootTree({ bootLoader, slot, description, qemu });
  // Room for a second slot of the same size (an upgrade), with a quarter more for a bigger release.
  const reserve = Math.ceil(slotBytes([uki, i.kernel, i.initramfs]) * 1.25);
  i.log(`esp: FAT32 ${BOOT_LABEL} with ${files.length} files (systemd-boot, slot ${id}, QEMU) and room for a second slot`);
  const { sizeBytes } = await writeFatImage(files, esp, { label: BOOT_LABEL, serial: BOOT_SERIAL, mtime: i.mtime, stagingDir: path.join(i.workDir, 'esp'), reserveBytes: reserve });
  fs.rmSync(path.join(i.workDir, 'esp'), { recursive: true, force: true });
  i.log(`disk: disk.raw = GPT + ESP (${(sizeBytes / 2 ** 20).toFixed(0)} MiB) + AURAE_IDENTITY (empty); STATE is created at first boot`);
  writeDiskImage(esp, disk, await sha256File(esp));
  return { uki, esp, disk, release: release.manifest, releaseSignature: release.signature, entryId: id };
}
