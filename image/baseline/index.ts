// The benchmark baseline: the same kernel with a busybox-static initramfs whose /init mounts
// /proc, prints the READY line and powers off. Boot-time comparisons against the Node image
// subtract this (kernel + firmware + QEMU) cost.

import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { READY_LINE_PREFIX } from '../../supervisor/ipc';
import { writeCpio, type CpioEntry } from '../initramfs/cpio';

export const BUSYBOX_PATH = '/bin/busybox';
/** What the bench waits for (READY_LINE): the readiness line's form, with no node behind it. */
export const BASELINE_READY_LINE = `${READY_LINE_PREFIX} {"baseline":"busybox"}`;
export const BASELINE_FILE_NAME = 'baseline-initramfs.cpio';

/** 2026-01-01T00:00:00Z unless SOURCE_DATE_EPOCH says otherwise (same rule as image/kernel). */
const DEFAULT_SOURCE_DATE_EPOCH = 1767225600;

const INIT_SCRIPT = `#!/bin/sh
# Aurae benchmark baseline: the least a userspace can do before reporting ready.
/bin/busybox mount -t proc proc /proc
echo '${BASELINE_READY_LINE}'
exec /bin/busybox poweroff -f
`;

/** The archive's entries; pure apart from naming the host's busybox binary. */
export function baselineEntries(busybox = BUSYBOX_PATH): CpioEntry[] {
  return [
    { path: 'init', type: 'file', mode: 0o755, data: Buffer.from(INIT_SCRIPT) },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: { file: busybox } },
    { path: 'bin/sh', type: 'symlink', mode: 0o777, target: 'busybox' },
    { path: 'dev', type: 'dir', mode: 0o755 },
    { path: 'dev/console', type: 'char', mode: 0o600, rdevMajor: 5, rdevMinor: 1 },
    { path: 'proc', type: 'dir', mode: 0o555 },
    { path: 'sys', type: 'dir', mode: 0o555 },
  ];
}

/**
 * Writes `<outDir>/baseline-initramfs.cpio` (uncompressed: for 2 MB, unpacking beats
 * decompressing) and returns its path. Needs busybox-static (a dynamic busybox would need
 * libraries the archive does not carry).
 */
export async function buildBaselineInitramfs(outDir: string): Promise<string> {
  if (!existsSync(BUSYBOX_PATH)) {
    throw new Error(`baseline: ${BUSYBOX_PATH} is missing; install it with: sudo apt-get install -y busybox-static`);
  }
  if (hasElfInterpreter(await readFile(BUSYBOX_PATH))) {
    throw new Error(
      `baseline: ${BUSYBOX_PATH} is dynamically linked; the baseline initramfs carries no libraries. ` +
        `Install the static build: sudo apt-get install -y busybox-static`,
    );
  }
  await mkdir(outDir, { recursive: true });
  const out = join(outDir, BASELINE_FILE_NAME);
  const raw = process.env.SOURCE_DATE_EPOCH;
  const mtime = raw && /^\d+$/.test(raw) ? Number(raw) : DEFAULT_SOURCE_DATE_EPOCH;
  await writeCpio(baselineEntries(), out, { mtime });
  return out;
}

/** True when an ELF64 little-endian binary has a PT_INTERP header, i.e. is dynamically linked. */
export function hasElfInterpreter(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) {
    throw new Error('baseline: busybox is not a 64-bit little-endian ELF binary');
  }
  const phoff = Number(elf.readBigUInt64LE(32));
  const phentsize = elf.readUInt16LE(54);
  const phnum = elf.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    const off = phoff + i * phentsize;
    if (off + 4 > elf.length) break;
    if (elf.readUInt32LE(off) === 3 /* PT_INTERP */) return true;
  }
  return false;
}
