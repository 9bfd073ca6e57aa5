// The boot volume's contents as data (pure): systemd-boot as \EFI\BOOT\BOOTX64.EFI with loader/loader.conf,
// one A/B slot (supervisor/upgrade/slots.ts: the signed UKI as a counted Type #2 entry in \EFI\Linux, beside it
// the kernel and initramfs a node running that slot spawns children from, and the signed release manifest), and
// QEMU, so the node runs QEMU without QEMU in the initramfs (it stays on disk and costs no RAM). Paths are
// relative to the volume's root, which init mounts read-only at /boot.
import path from 'node:path';
import { entryFileName, entryId, ESP_PATHS, LOADER_CONF, slotFileName } from '../../supervisor/upgrade/slots';

export interface TreeFile {
  /** Path inside the volume, '/'-separated, no leading slash. */
  path: string;
  src: string | Buffer;
  mode: number;
}

export interface QemuInputs {
  /** The host's qemu-system-x86_64. */
  binary: string;
  /** Its shared libraries (absolute host paths, from ldd), the dynamic loader included. */
  libs: string[];
  /** accel-tcg-x86_64.so: TCG is a loadable module in Debian's QEMU (KVM is built in). */
  tcgModule: string;
  /** The microvm machine's firmware (qboot). */
  microvmBios: string;
}

/** Where QEMU lands in the volume; the wrapper is what vms.qemu runs (see supervisor/vms). */
export const QEMU_DIR = 'qemu';
export const QEMU_WRAPPER = `${QEMU_DIR}/qemu-system-x86_64`;

/**
 * A shell wrapper (busybox sh in the image) that runs the relocated QEMU through its own loader, so its
 * libraries never mix with the initramfs's and no path is baked in at build time.
 */
export const QEMU_WRAPPER_SCRIPT = `#!/bin/sh
# QEMU relocated onto the boot volume by image/disk: its own loader and libraries, TCG module and firmware.
d=\${0%/*}
QEMU_MODULE_DIR="$d/modules" exec "$d/lib/ld-linux-x86-64.so.2" --library-path "$d/lib" "$d/bin/qemu-system-x86_64" -L "$d/share" "$@"
`;

export function qemuTree(q: QemuInputs): TreeFile[] {
  const loader = q.libs.find((l) => path.basename(l).startsWith('ld-linux'));
  if (!loader) throw new Error(`boot volume: no dynamic loader among QEMU's libraries (${q.libs.join(', ')}): is ${q.binary} dynamically linked?`);
  const files: TreeFile[] = [
    { path: QEMU_WRAPPER, src: Buffer.from(QEMU_WRAPPER_SCRIPT), mode: 0o755 },
    { path: `${QEMU_DIR}/bin/qemu-system-x86_64`, src: q.binary, mode: 0o755 },
    { path: `${QEMU_DIR}/modules/accel-tcg-x86_64.so`, src: q.tcgModule, mode: 0o644 },
    { path: `${QEMU_DIR}/share/bios-microvm.bin`, src: q.microvmBios, mode: 0o644 },
  ];
  for (const lib of q.libs) files.push({ path: `${QEMU_DIR}/lib/${path.basename(lib)}`, src: lib, mode: 0o755 });
  return files;
}

/** One A/B slot as the factory image writes it (supervisor/upgrade/slots.ts names the files). */
export interface SlotInputs {
  /** The entry's generation and release version (the id is aurae-<generation>-<version>). */
  generation: number;
  version: string;
  /** Tries the entry starts with (systemd-boot's counter); null: uncounted. */
  triesLeft: number | null;
  /** The signed UKI, the kernel and initramfs children spawn from, the release manifest and its signature. */
  uki: string;
  kernel: string;
  initramfs: string;
  manifest: string;
  signature: string;
}

export interface BootTreeInputs {
  /** systemd-boot (signed), the firmware's removable-media default loader. */
  bootLoader: string;
  slot: SlotInputs;
  /** JSON describing the artifacts (aurae-boot.json), for people and for `aer` to inspect a flashed disk. */
  description: string;
  qemu: QemuInputs | null;
}

/** Names on the volume besides the slots (whose names are slots.ts's). */
export const BOOT_FILES = { bootLoader: ESP_PATHS.bootLoader, loaderConf: ESP_PATHS.loaderConf, description: 'aurae-boot.json' } as const;

/** The files of one slot, by their path on the volume. Pure. */
export function slotTree(s: SlotInputs): TreeFile[] {
  const id = entryId(s.generation, s.version);
  const at = (name: string) => `${ESP_PATHS.entries}/${name}`;
  return [
    { path: at(entryFileName({ generation: s.generation, version: s.version, triesLeft: s.triesLeft })), src: s.uki, mode: 0o644 },
    { path: at(slotFileName(id, 'kernel')), src: s.kernel, mode: 0o644 },
    { path: at(slotFileName(id, 'initramfs')), src: s.initramfs, mode: 0o644 },
    { path: at(slotFileName(id, 'manifest')), src: s.manifest, mode: 0o644 },
    { path: at(slotFileName(id, 'signature')), src: s.signature, mode: 0o644 },
  ];
}

export function bootTree(i: BootTreeInputs): TreeFile[] {
  const files: TreeFile[] = [
    { path: BOOT_FILES.bootLoader, src: i.bootLoader, mode: 0o644 },
    { path: BOOT_FILES.loaderConf, src: Buffer.from(LOADER_CONF), mode: 0o644 },
    ...slotTree(i.slot),
    { path: BOOT_FILES.description, src: Buffer.from(i.description), mode: 0o644 },
    ...(i.qemu ? qemuTree(i.qemu) : []),
  ];
  const seen = new Set<string>();
  for (const f of files) {
    // FAT compares names case-insensitively.
    const key = f.path.toLowerCase();
    if (seen.has(key)) throw new Error(`boot volume: two files would share the FAT name ${f.path}`);
    seen.add(key);
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
