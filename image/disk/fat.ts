// A FAT32 volume image from a file list, without mounting anything (mtools), byte for byte reproducible:
// mkfs.fat --invariant with a fixed serial, directories made and files copied in sorted order, every timestamp
// set to the build's SOURCE_DATE_EPOCH (FAT has no dates before 1980; the epoch is clamped to that).
import fs from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import type { TreeFile } from './boot-tree';

export interface FatOptions {
  /** Volume label, at most 11 characters (A-Z 0-9 _ -). */
  label: string;
  /** Volume serial, 8 hex digits. */
  serial: string;
  /** Seconds since 1970 for every file and directory. */
  mtime: number;
  /** Staging folder (emptied) where files get their fixed timestamps before mcopy reads them. */
  stagingDir: string;
  /** Free space to leave beyond the content's own margin (a second boot slot). */
  reserveBytes?: number;
}

const MIB = 1024 * 1024;
const FAT_EPOCH = 315532800; // 1980-01-01

/**
 * Size of the volume for `contentBytes`: the content plus a quarter for FAT overhead and growth, at least
 * 64 MiB, rounded to 16 MiB. Pure.
 */
export function fatSizeBytes(contentBytes: number): number {
  return Math.max(64 * MIB, Math.ceil((contentBytes * 1.25 + 8 * MIB) / (16 * MIB)) * 16 * MIB);
}

/**
 * Sectors per cluster so that FAT32 has enough clusters (it needs at least 65525): 4 KiB clusters when the
 * volume is large enough, smaller ones otherwise. Pure.
 */
export function clusterSectors(sizeBytes: number): number {
  for (const s of [8, 4, 2, 1]) if (sizeBytes / (s * 512) >= 70_000) return s;
  throw new Error(`fat: ${sizeBytes} bytes is too small for FAT32`);
}

export function validateLabel(label: string): void {
  if (!/^[A-Z0-9_-]{1,11}$/.test(label)) throw new Error(`fat: label ${JSON.stringify(label)} is invalid: expected 1-11 of A-Z 0-9 _ -`);
}

export async function writeFatImage(files: TreeFile[], out: string, o: FatOptions): Promise<{ sizeBytes: number }> {
  validateLabel(o.label);
  const mtime = Math.max(o.mtime, FAT_EPOCH);
  fs.rmSync(o.stagingDir, { recursive: true, force: true });
  fs.mkdirSync(o.stagingDir, { recursive: true });
  let content = 0;
  for (const f of files) {
    const staged = path.join(o.stagingDir, f.path);
    fs.mkdirSync(path.dirname(staged), { recursive: true });
    if (Buffer.isBuffer(f.src)) fs.writeFileSync(staged, f.src);
    else fs.copyFileSync(f.src, staged);
    fs.chmodSync(staged, f.mode);
    fs.utimesSync(staged, mtime, mtime);
    content += fs.statSync(staged).size;
  }
  const sizeBytes = fatSizeBytes(content + (o.reserveBytes ?? 0));
  const tmp = `${out}.tmp`;
  fs.rmSync(tmp, { force: true });
  await $({ quiet: true })`mkfs.fat --invariant -i ${o.serial} -n ${o.label} -F 32 -S 512 -s ${clusterSectors(sizeBytes)} -C ${tmp} ${sizeBytes / 1024}`;
  const dirs = [...new Set(files.flatMap((f) => ancestors(f.path)))].sort();
  // mmd would stamp directories with the clock; mtools honours SOURCE_DATE_EPOCH instead.
  const env = { ...process.env, MTOOLS_SKIP_CHECK: '1', SOURCE_DATE_EPOCH: String(mtime), TZ: 'UTC' };
  if (dirs.length) await $({ quiet: true, env })`mmd -i ${tmp} ${dirs.map((d) => `::/${d}`)}`;
  const byDir = new Map<string, TreeFile[]>();
  for (const f of files) {
    const dir = path.posix.dirname(f.path);
    byDir.set(dir, [...(byDir.get(dir) ?? []), f]);
  }
  for (const [dir, inDir] of [...byDir].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const srcs = inDir.map((f) => path.join(o.stagingDir, f.path));
    await $({ quiet: true, env })`mcopy -i ${tmp} -m -Q ${srcs} ${dir === '.' ? '::/' : `::/${dir}/`}`;
  }
  fs.renameSync(tmp, out);
  return { sizeBytes };
}

function ancestors(p: string): string[] {
  const parts = p.split('/').slice(0, -1);
  return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
}
