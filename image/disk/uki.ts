// Unified Kernel Image: systemd's EFI stub (Debian systemd-boot-efi) with the kernel, initramfs, command line
// and os-release as PE sections, so any UEFI firmware boots the node from a single file at \EFI\BOOT\BOOTX64.EFI.
// objcopy adds the sections (placed after the stub's own, page aligned, as ukify does); the result is then made
// reproducible: objcopy stamps the build time into the PE header, which we zero, and the checksum is recomputed.
import fs from 'node:fs';
import { $ } from 'zx';

export const EFI_STUB = '/usr/lib/systemd/boot/efi/linuxx64.efi.stub';

export interface UkiInputs {
  stub?: string;
  kernel: string;
  initramfs: string;
  cmdline: string;
  osRelease: string;
  out: string;
  /** Scratch folder for the small section files. */
  workDir: string;
}

/**
 * The UKI's .osrel section: the name systemd-boot shows, and no version field. systemd-boot 252 takes an entry's
 * version from IMAGE_VERSION, VERSION, VERSION_ID or BUILD_ID and orders entries of the same sort key (IMAGE_ID, else
 * ID) by that version before their ids; the A/B slots rely on the id alone (its generation: supervisor/upgrade/
 * slots.ts), so a rollback to an older release still boots first. The version is shown in PRETTY_NAME only. Pure.
 */
export function ukiOsRelease(node: string, version: string): string {
  return `NAME="Aurae"\nID=aurae\nPRETTY_NAME="Aurae node ${node} ${version}"\n`;
}

const PAGE = 0x1000;
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** The end (VMA) of the stub's last section, from `objdump -h`. Pure. */
export function lastSectionEnd(objdumpHeaders: string): number {
  let end = 0;
  for (const m of objdumpHeaders.matchAll(/^\s*\d+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s/gim)) {
    end = Math.max(end, parseInt(m[2] ?? '0', 16) + parseInt(m[1] ?? '0', 16));
  }
  if (end === 0) throw new Error('uki: no sections in the EFI stub (objdump -h printed none): is systemd-boot-efi installed?');
  return end;
}

/** Section placement: each new section page-aligned after the previous one. Pure. */
export function placeSections(start: number, sections: { name: string; size: number }[]): { name: string; vma: number }[] {
  let at = alignUp(start, PAGE);
  return sections.map((s) => {
    const vma = at;
    at = alignUp(at + s.size, PAGE);
    return { name: s.name, vma };
  });
}

/**
 * Zero the COFF TimeDateStamp and recompute the optional header's CheckSum (the PE algorithm: 16-bit one's
 * complement-style sum of the file with the checksum field taken as 0, plus the file length). In place. Pure.
 */
export function normalizePe(image: Buffer): void {
  if (image.readUInt16LE(0) !== 0x5a4d) throw new Error('uki: not a PE image (no MZ header)');
  const pe = image.readUInt32LE(0x3c);
  if (image.readUInt32LE(pe) !== 0x00004550) throw new Error('uki: not a PE image (no PE signature)');
  image.writeUInt32LE(0, pe + 8); // TimeDateStamp
  image.writeUInt32LE(peChecksum(image), pe + 24 + 64);
}

/** The PE CheckSum of `image` (the field itself counted as 0). Pure. */
export function peChecksum(image: Buffer): number {
  const checksumAt = image.readUInt32LE(0x3c) + 24 + 64;
  let sum = 0;
  const words = Math.floor(image.length / 2);
  for (let i = 0; i < words; i++) {
    sum += image.readUInt16LE(i * 2);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (image.length % 2) {
    sum += image[image.length - 1] ?? 0;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  // The loop above counted the stored checksum's two words; take them back out.
  for (const at of [checksumAt, checksumAt + 2]) {
    sum -= image.readUInt16LE(at);
    if (sum < 0) sum += 0xffff;
  }
  return (sum + image.length) >>> 0;
}

export async function buildUki(i: UkiInputs): Promise<void> {
  const stub = i.stub ?? EFI_STUB;
  if (!fs.existsSync(stub)) throw new Error(`uki: ${stub} is missing: install Debian's systemd-boot-efi (image/setup.sh does)`);
  fs.mkdirSync(i.workDir, { recursive: true });
  const osrel = `${i.workDir}/os-release`;
  const cmdline = `${i.workDir}/cmdline`;
  fs.writeFileSync(osrel, i.osRelease);
  fs.writeFileSync(cmdline, i.cmdline);
  const headers = (await $({ quiet: true })`objdump -h ${stub}`).stdout;
  const sections = [
    { name: '.osrel', file: osrel },
    { name: '.cmdline', file: cmdline },
    { name: '.linux', file: i.kernel },
    { name: '.initrd', file: i.initramfs },
  ];
  const placed = placeSections(lastSectionEnd(headers), sections.map((s) => ({ name: s.name, size: fs.statSync(s.file).size })));
  const args = sections.flatMap((s, n) => ['--add-section', `${s.name}=${s.file}`, '--change-section-vma', `${s.name}=0x${placed[n]!.vma.toString(16)}`]);
  const tmp = `${i.out}.tmp`;
  await $({ quiet: true })`objcopy ${args} ${stub} ${tmp}`;
  const image = fs.readFileSync(tmp);
  normalizePe(image);
  fs.writeFileSync(tmp, image);
  fs.renameSync(tmp, i.out);
}
