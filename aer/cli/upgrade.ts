// `aer image upgrade SOURCE [--reboot]`, `aer image status`, `aer image rollback`: the node's boot image
// (aurae.upgrade.v0.UpgradeService). They join the `aer image` group (flash, pull, list, …); with --node PARENT/CHILD
// they go to that node through its parent like every other call. Upload progress goes to stderr.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { type BootEntryInfo, type ReleaseSource, releaseFromDir, releaseFromUrl, type UpgradeStatusInfo } from '../sdk';
import { RELEASE_MANIFEST_FILE } from '../../supervisor/upgrade/release';
import { formatBytes } from './observe-format';
import type { Print, WithClient } from './types';

/** What the upgrade commands need from the process (CliIo provides it). */
export interface UpgradeCliIo {
  err(text: string): void;
  /** stderr without a trailing newline (progress redraws on a terminal). */
  errPartial?: (text: string) => void;
  stderrIsTTY?: boolean;
  /** Replaced in tests: how a SOURCE becomes a release. */
  openRelease?: (source: string) => Promise<ReleaseSource>;
}

/** Subfolder of a build's image folder holding the release (out/image/release). */
export const RELEASE_SUBDIR = 'release';

/**
 * SOURCE → a release: an http(s) URL of a release folder, a release folder, or a build's image folder holding one
 * in release/ (out/image).
 */
export async function openRelease(source: string): Promise<ReleaseSource> {
  if (/^https?:\/\//i.test(source)) return releaseFromUrl(source);
  if (!existsSync(join(source, RELEASE_MANIFEST_FILE)) && existsSync(join(source, RELEASE_SUBDIR, RELEASE_MANIFEST_FILE))) {
    return releaseFromDir(join(source, RELEASE_SUBDIR));
  }
  return releaseFromDir(source);
}

function tries(e: BootEntryInfo): string {
  if (e.triesLeft === null) return 'blessed';
  if (e.triesLeft === 0) return `out of tries (${e.triesDone ?? 0} done)`;
  return `${e.triesLeft} left, ${e.triesDone ?? 0} done`;
}

export function formatUpgradeStatus(s: UpgradeStatusInfo): string {
  const lines: string[] = [];
  if (!s.slotted) lines.push(`not upgradable in place: ${s.reason}`);
  if (s.entries.length > 0) {
    const rows = [
      ['ENTRY', 'VERSION', 'TRIES', 'STATE'],
      ...s.entries.map((e) => [e.id, e.version, tries(e), [e.running ? 'running' : '', e.bootsNext ? 'boots next' : ''].filter(Boolean).join(', ') || '-']),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    lines.push(...rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')));
  } else if (s.slotted) {
    lines.push('no boot entries');
  }
  if (s.lastRollback) {
    const rb = s.lastRollback;
    const when = rb.at > 0 ? ` at ${new Date(rb.at).toISOString()}${rb.by ? ` by ${rb.by}` : ''}` : '';
    lines.push(`last rollback: ${rb.from} → ${rb.to}${when}: ${rb.reason}`);
  }
  if (s.partial) {
    lines.push(
      s.uploading
        ? `uploading: ${s.partial.version}, ${formatBytes(s.partial.kept)} of ${formatBytes(s.partial.total)} received`
        : `unfinished upload: ${s.partial.version}, ${formatBytes(s.partial.kept)} of ${formatBytes(s.partial.total)} kept (aer image upgrade with the same release continues it)`,
    );
  }
  if (s.bootNote) lines.push(`this boot: ${s.bootNote}`);
  if (s.signingProblem) lines.push(`image-signing certificates unusable: ${s.signingProblem}`);
  else if (s.signingCerts.length === 0) lines.push('image-signing certificates: none pinned (upgrade.signingCerts in the node config): uploads are refused');
  for (const c of s.signingCerts) lines.push(`image-signing certificate: ${c.subject} sha256 ${c.fingerprint.slice(0, 16)}… (${c.file})`);
  return lines.join('\n');
}

export function formatUploadProgress(version: string, received: number, total: number): string {
  const pct = total > 0 ? Math.floor((received / total) * 100) : 100;
  return `upload ${version}: ${formatBytes(received)} / ${formatBytes(total)}  ${pct}%`;
}

export function registerUpgradeCommands(program: Command, withClient: WithClient, print: Print, io: UpgradeCliIo): void {
  const image = program.commands.find((c) => c.name() === 'image') ?? program.command('image');
  image.description("container images on the node (pull, list, inspect, rm), the node's boot image (upgrade, status, rollback), disk images on this machine (flash)");
  const open = io.openRelease ?? openRelease;

  image
    .command('upgrade')
    .description(
      "upload a signed release into the node's inactive boot slot (resumes a cut upload; the node checks the signature against its pinned " +
        'image-signing certificates and every sha256 before writing); the new entry boots next, on trial (boot counting) until it is blessed',
    )
    .argument('<source>', "a release folder or a build's image folder (out/image, holding release/), or an http(s) URL of a release folder")
    .option('--reboot', 'reboot the node into the new entry once it is written')
    .option('-q, --quiet', 'no progress')
    .option('--attempts <n>', 'uploads to try when the connection breaks (each resumes where the node\'s kept bytes end)', '3')
    .action(
      withClient(async (c, output, source: string, options: { reboot?: boolean; quiet?: boolean; attempts: string }) => {
        const release = await open(source);
        const version = release.manifest.version;
        const tty = io.stderrIsTTY === true && io.errPartial !== undefined;
        let lastLine = -1;
        const progress = (received: number, total: number, final = false) => {
          if (options.quiet) return;
          const line = formatUploadProgress(version, received, total);
          if (tty) return io.errPartial!(`\r\x1b[K${line}${final ? '\n' : ''}`);
          // In a log: one line per 10 %.
          const tenth = Math.floor((received / Math.max(total, 1)) * 10);
          if (tenth !== lastLine || final) io.err(line);
          lastLine = tenth;
        };
        const attempts = Number(options.attempts);
        if (!Number.isInteger(attempts) || attempts < 1 || attempts > 100) throw new Error(`--attempts ${options.attempts}: a whole number from 1 to 100 is allowed`);
        const result = await c.upgrade.upload(release, {
          attempts,
          onAccepted: (a) => {
            if (options.quiet) return;
            io.err(`aer: ${release.origin}: release ${a.version} signed by ${a.signer}${a.resumeOffset > 0 ? `; continuing from ${formatBytes(a.resumeOffset)} kept on the node` : ''}`);
          },
          onProgress: (p) => progress(p.received, p.total, p.received === p.total),
        });
        const removed = result.removed.length ? ` (removed ${result.removed.join(', ')})` : '';
        const text = `${c.config.node}: ${result.entry.id} written to ${result.entry.file}${removed}; it boots next${options.reboot ? ': rebooting' : ' (aer reboot to start it)'}`;
        if (options.reboot) await c.node.reboot({ reason: `upgrade to ${result.entry.version}` });
        print(output, { ...result, rebooting: options.reboot === true }, text);
      }),
    );

  image
    .command('status')
    .description("the node's boot entries (A/B slots): versions, tries left, which runs and which boots next, the last rollback and why")
    .action(
      withClient(async (c, output) => {
        const s = await c.upgrade.status();
        print(output, s, formatUpgradeStatus(s));
      }),
    );

  image
    .command('rollback')
    .description('make the other boot entry boot next (under a new generation with 3 tries; the running one stays, to fall back to); takes effect at the next reboot')
    .option('--reboot', 'reboot the node into it now')
    .action(
      withClient(async (c, output, options: { reboot?: boolean }) => {
        const r = await c.upgrade.rollback();
        if (options.reboot) await c.node.reboot({ reason: `rollback to ${r.bootsNext.version}` });
        print(output, { ...r, rebooting: options.reboot === true }, `${c.config.node}: ${r.bootsNext.id} boots next, on trial (${r.from} stays, to fall back to)${options.reboot ? ': rebooting' : ''}`);
      }),
    );
}
