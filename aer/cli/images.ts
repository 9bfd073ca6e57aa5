// `aer image pull|list|inspect|rm`: container images on the node (aurae.images.v0.ImageService). They join the
// existing `aer image` group (whose `flash` writes disk images on this machine): no subcommand clashes, and
// `aer image` stays the one place for images. Pull progress goes to stderr: on a terminal one line per layer,
// redrawn in place; in a log one plain line per layer state change.
import type { Command } from 'commander';
import type { ImageInfo, PullProgress, RegistryAuth } from '../sdk';
import { formatDuration } from './format';
import { formatBytes } from './observe-format';
import type { Print, WithClient } from './types';

/** What the image commands need from the process (CliIo provides it). */
export interface ImagesCliIo {
  err(text: string): void;
  /** stderr without a trailing newline (progress redraws on a terminal). */
  errPartial?: (text: string) => void;
  stderrIsTTY?: boolean;
  /** One line from stdin; null at end of input (--password-stdin). */
  readLine?: () => Promise<string | null>;
  /** ms since the epoch (tests pin it). */
  now?: () => number;
}

/** "sha256:0123456789abcdef…" → "0123456789ab" (what docker shows). */
export function shortDigest(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

/** One layer's progress as text: "0123456789ab  downloading  1.2M / 3.4M  35%". */
export function formatLayerProgress(p: PullProgress & { image?: string }): string {
  const prefix = `${p.image ? `${p.image}  ` : ''}${shortDigest(p.layer)}  ${p.state.padEnd(11)}`;
  switch (p.state) {
    case 'exists':
      return `${prefix}  already stored`;
    case 'downloading': {
      const pct = p.total > 0 ? `  ${Math.floor((p.done / p.total) * 100)}%` : '';
      return `${prefix}  ${formatBytes(p.done)} / ${formatBytes(p.total)}${pct}`;
    }
    default:
      return `${prefix}  ${formatBytes(p.total)}`;
  }
}

/**
 * A progress display over `write` (stderr without newlines added). tty: a block of one line per layer, redrawn in
 * place (cursor up, clear line); otherwise one line per layer whenever its state changes (no byte-count spam in
 * logs). `finish` ends the block.
 */
export function pullProgressDisplay(tty: boolean, write: (text: string) => void): { update(p: PullProgress & { image?: string }): void; finish(): void } {
  const order: string[] = [];
  const lines = new Map<string, string>();
  const states = new Map<string, string>();
  let drawn = 0;
  return {
    update(p) {
      const key = `${p.image ?? ''} ${p.layer}`;
      if (!lines.has(key)) order.push(key);
      lines.set(key, formatLayerProgress(p));
      if (!tty) {
        if (states.get(key) !== p.state) write(`${lines.get(key)}\n`);
        states.set(key, p.state);
        return;
      }
      const up = drawn > 0 ? `\x1b[${drawn}A` : '';
      write(up + order.map((k) => `\r\x1b[K${lines.get(k)}\n`).join(''));
      drawn = order.length;
    },
    finish() {
      drawn = 0;
    },
  };
}

/** How a command reports a usage error (commander's command.error with exit code 2; tests throw). */
export type UsageFail = (message: string) => never;

/** commander's usage error for `command`: printed with the help hint, exit code 2. */
export function usageFail(command: Command): UsageFail {
  return (message) => command.error(`error: ${message}`, { exitCode: 2, code: 'aer.usage' });
}

/** Credentials from --username and --password-stdin (one line of stdin); none without --username. */
export async function readAuth(options: { username?: string; passwordStdin?: boolean }, io: Pick<ImagesCliIo, 'readLine'>, fail: UsageFail): Promise<RegistryAuth | undefined> {
  if (options.passwordStdin && options.username === undefined) fail('--password-stdin needs --username');
  if (options.username === undefined) return undefined;
  if (!options.passwordStdin) fail('--username needs --password-stdin (the password is read from stdin, never from the command line)');
  const password = io.readLine ? await io.readLine() : null;
  if (password === null || password === '') fail('--password-stdin: stdin gave no password (pipe it in: … | aer image pull --username U --password-stdin REF)');
  return { username: options.username, password: password! };
}

/** One row per tag (untagged images once, as "<none>"). */
export function formatImageTable(images: ImageInfo[], now: number): string {
  if (images.length === 0) return 'no images';
  const rows = [
    ['NAME', 'TAG', 'DIGEST', 'SIZE', 'PULLED'],
    ...images.flatMap((i) =>
      (i.tags.length ? i.tags : ['<none>']).map((tag) => [i.name, tag, shortDigest(i.digest), formatBytes(i.size), `${formatDuration((now - i.pulledAt) / 1000)} ago`]),
    ),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function formatImage(i: ImageInfo): string {
  const list = (values: string[]) => (values.length ? values.map((v) => JSON.stringify(v)).join(' ') : '-');
  const c = i.config;
  return [
    `name        ${i.name}`,
    `tags        ${i.tags.join(', ') || '-'}`,
    `digest      ${i.digest}`,
    `config      ${i.configDigest}`,
    `size        ${formatBytes(i.size)} in ${i.layers.length} layer${i.layers.length === 1 ? '' : 's'}`,
    `pulled      ${new Date(i.pulledAt).toISOString()}`,
    `entrypoint  ${list(c.entrypoint)}`,
    `cmd         ${list(c.cmd)}`,
    `env         ${c.env.join(' ') || '-'}`,
    `workdir     ${c.workingDir || '-'}`,
    `user        ${c.user || '-'}`,
    `ports       ${c.exposedPorts.join(' ') || '-'}`,
    `labels      ${Object.entries(c.labels).map(([k, v]) => `${k}=${v}`).join(' ') || '-'}`,
    `stop signal ${c.stopSignal || 'SIGTERM'}`,
    'layers',
    ...i.layers.map((l) => `  ${l.digest}  ${formatBytes(l.size)}  ${l.mediaType}`),
  ].join('\n');
}

/** The `image` group: the one `aer image flash` created, or a new one. */
function imageGroup(program: Command): Command {
  const existing = program.commands.find((c) => c.name() === 'image');
  const group = existing ?? program.command('image');
  return group.description('container images on the node (pull, list, inspect, rm) and disk images on this machine (flash)');
}

export function registerContainerImageCommands(program: Command, withClient: WithClient, print: Print, io: ImagesCliIo): void {
  const image = imageGroup(program);
  const now = io.now ?? Date.now;

  const pull: Command = image
    .command('pull')
    .description('pull an image from its registry onto the node (progress per layer on stderr)')
    .argument('<reference>', 'e.g. busybox, docker.io/library/busybox:1.36, 127.0.0.1:5000/app@sha256:…')
    .option('--username <name>', 'registry user for this pull (else the node config\'s credentials, else anonymous)')
    .option('--password-stdin', 'read the registry password from stdin (one line)')
    .option('-q, --quiet', 'no progress')
    .action(
      withClient(async (c, output, reference: string, options: { username?: string; passwordStdin?: boolean; quiet?: boolean }) => {
        const auth = await readAuth(options, io, usageFail(pull));
        const display = pullProgressDisplay(io.stderrIsTTY === true && io.errPartial !== undefined, (text) => (io.errPartial ? io.errPartial(text) : io.err(text.replace(/\n$/, ''))));
        const pulled = await c.images.pull(reference, { auth, onProgress: options.quiet ? undefined : (p) => display.update(p) });
        display.finish();
        print(output, pulled, `pulled ${pulled.name}${pulled.tags.length ? `:${pulled.tags[0]}` : ''} ${pulled.digest} (${formatBytes(pulled.size)})`);
      }),
    );

  image
    .command('list')
    .alias('ls')
    .description('the images stored on the node')
    .action(
      withClient(async (c, output) => {
        const images = await c.images.list();
        print(output, images, formatImageTable(images, now()));
      }),
    );

  image
    .command('inspect')
    .description("one stored image: digests, layers, and the config containers start from")
    .argument('<reference>', 'a reference, a manifest digest, or a unique digest prefix (12+ hex)')
    .action(
      withClient(async (c, output, reference: string) => {
        const info = await c.images.inspect(reference);
        print(output, info, formatImage(info));
      }),
    );

  image
    .command('rm')
    .alias('remove')
    .description('remove an image from the node (refused while a pod uses it, unless --force)')
    .argument('<reference>', 'a reference, a manifest digest, or a unique digest prefix (12+ hex)')
    .option('--force', 'remove it even while containers use it')
    .action(
      withClient(async (c, output, reference: string, options: { force?: boolean }) => {
        const r = await c.images.remove(reference, { force: options.force ?? false });
        print(output, r, r.removed.length ? r.removed.map((x) => `removed ${x}`).join('\n') : `nothing removed for ${reference}`);
      }),
    );
}
