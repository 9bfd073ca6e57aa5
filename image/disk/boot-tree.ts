// The boot volume's contents as data (pure): what the ESP holds besides the UKI, so a running node can spawn
// children from its own kernel and initramfs and run QEMU without QEMU in the initramfs (it stays on disk and
// costs no RAM). Paths are relative to the volume's root, which init mounts read-only at /boot.
import path from 'node:path';

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

export interface BootTreeInputs {
  uki: string;
  kernel: string;
  initramfs: string;
  /** JSON describing the artifacts (aurae-boot.json), for people and for `aer` to inspect a flashed disk. */
  description: string;
  qemu: QemuInputs | null;
}

/** Names the node relies on (supervisor vms defaults: /boot/vmlinuz, /boot/initramfs). */
export const BOOT_FILES = { uki: 'EFI/BOOT/BOOTX64.EFI', kernel: 'vmlinuz', initramfs: 'initramfs', description: 'aurae-boot.json' } as const;

export function bootTree(i: BootTreeInputs): TreeFile[] {
  const files: TreeFile[] = [
    { path: BOOT_FILES.uki, src: i.uki, mode: 0o644 },
    { path: BOOT_FILES.kernel, src: i.kernel, mode: 0o644 },
    { path: BOOT_FILES.initramfs, src: i.initramfs, mode: 0o644 },
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
