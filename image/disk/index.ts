// The boot volume and the bare-metal disk: a UKI for UEFI firmware, the ESP (FAT32, label AURAE_BOOT) holding
// it plus the node's own kernel, initramfs and a relocated QEMU (mounted read-only at /boot on the running node,
// so it can spawn children from its own image), and disk.raw (GPT with that ESP and an empty AURAE_IDENTITY
// partition the flasher fills; init adds STATE at first boot).
import fs from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import { parseLdd } from '../runtime';
import { sha256File } from '../lib/cache';
import { BOOT_FILES, bootTree, type QemuInputs } from './boot-tree';
import { writeDiskImage } from './disk';
import { writeFatImage } from './fat';
import { buildUki } from './uki';

export { BOOT_FILES, QEMU_WRAPPER } from './boot-tree';
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
  mtime: number;
  outDir: string;
  workDir: string;
  log: (line: string) => void;
}

export interface BootArtifacts {
  uki: string;
  esp: string;
  disk: string;
}

export async function buildBootArtifacts(i: BootArtifactsInputs): Promise<BootArtifacts> {
  const uki = path.join(i.outDir, 'BOOTX64.EFI');
  const esp = path.join(i.outDir, 'esp.img');
  const disk = path.join(i.outDir, 'disk.raw');
  i.log('uki: kernel + initramfs + command line into the EFI stub');
  await buildUki({
    kernel: i.kernel,
    initramfs: i.initramfs,
    cmdline: ukiCmdline(i.cmdline),
    osRelease: `NAME="Aurae"\nID=aurae\nPRETTY_NAME="Aurae node ${i.node}"\n`,
    out: uki,
    workDir: path.join(i.workDir, 'uki'),
  });
  const qemu = await hostQemu();
  const description = JSON.stringify(
    {
      version: 1,
      node: i.node,
      cmdline: ukiCmdline(i.cmdline),
      files: {
        [BOOT_FILES.kernel]: await sha256File(i.kernel),
        [BOOT_FILES.initramfs]: await sha256File(i.initramfs),
        [BOOT_FILES.uki]: await sha256File(uki),
      },
      qemu: (await $({ quiet: true })`${qemu.binary} --version`).stdout.split('\n')[0],
    },
    null,
    2,
  ) + '\n';
  const files = bootTree({ uki, kernel: i.kernel, initramfs: i.initramfs, description, qemu });
  i.log(`esp: FAT32 ${BOOT_LABEL} with ${files.length} files (UKI, kernel, initramfs, QEMU)`);
  const { sizeBytes } = await writeFatImage(files, esp, { label: BOOT_LABEL, serial: BOOT_SERIAL, mtime: i.mtime, stagingDir: path.join(i.workDir, 'esp') });
  fs.rmSync(path.join(i.workDir, 'esp'), { recursive: true, force: true });
  i.log(`disk: disk.raw = GPT + ESP (${(sizeBytes / 2 ** 20).toFixed(0)} MiB) + AURAE_IDENTITY (empty); STATE is created at first boot`);
  writeDiskImage(esp, disk, await sha256File(esp));
  return { uki, esp, disk };
}
