// `aer image flash IMAGE TARGET [--yes]`: write a disk image to a whole disk (or a file) and verify it. Local:
// it never connects to a node. All the checking lives in aer/image; this file wires it to the terminal.
import type { Readable } from 'node:stream';
import readline from 'node:readline';
import type { Command } from 'commander';
import { type FlashDeps, type FlashResult, hostProbe, nodeFlashFiles, runFlash } from '../image';
import { formatIdentityWritten, prepareIdentity, writeIdentity } from '../image/identity';
import type { Print, OutputFormat } from './types';

/** What the image commands need from the process (CliIo provides it; tests pass fakes). */
export interface ImageCliIo {
  out(text: string): void;
  err(text: string): void;
  /** stderr without a trailing newline, to redraw a progress line on a terminal. */
  errPartial?: (text: string) => void;
  stdinIsTTY?: boolean;
  stderrIsTTY?: boolean;
  /** One line from stdin; null at end of input. */
  readLine?: () => Promise<string | null>;
  /** Replaced in tests; the real host and filesystem otherwise. */
  flashDeps?: Partial<FlashDeps>;
}

/** Read one line from `input` and let go of it (so the process can exit). */
export function readOneLine(input: Readable): Promise<string | null> {
  const rl = readline.createInterface({ input, terminal: false });
  return new Promise<string | null>((resolve) => {
    rl.once('line', (line) => resolve(line));
    rl.once('close', () => resolve(null));
  }).finally(() => rl.close());
}

export function formatFlashResult(r: FlashResult): string {
  return [
    `image  sha256 ${r.imageSha256}  ${r.image}`,
    `target sha256 ${r.targetSha256}  ${r.target} (first ${r.bytes} bytes read back)`,
    `flashed and verified ${r.target} in ${r.seconds.toFixed(1)} s`,
  ].join('\n');
}

/** FlashDeps over the real host, the terminal and `io`. */
export function flashDepsFor(io: ImageCliIo): FlashDeps {
  const redraw = io.stderrIsTTY && io.errPartial;
  return {
    probe: hostProbe(),
    files: nodeFlashFiles(),
    now: () => performance.now(),
    stdinIsTTY: io.stdinIsTTY ?? false,
    ask: async (question) => {
      (io.errPartial ?? io.err)(question);
      return io.readLine ? io.readLine() : null;
    },
    log: (line) => io.err(`aer: ${line}`),
    // On a terminal the line redraws in place; in a log (a pipe, a file) each update is its own line.
    progress: (line, final) => (redraw ? redraw(`\r\x1b[K${line}${final ? '\n' : ''}`) : io.err(line)),
    ...io.flashDeps,
  };
}

export function registerImageCommands(program: Command, io: ImageCliIo, print: Print): void {
  const image = program.command('image').description('disk images on this machine (no node involved)');
  image
    .command('flash')
    .description(
      'write IMAGE (e.g. out/image/disk.raw) to the whole disk TARGET, or into a file; refuses partitions, mounted or swap devices and the ' +
        "host's root disk; checks IMAGE.sha256 when present; asks first unless --yes; fsyncs and verifies by reading back the sha256",
    )
    .argument('<image>', 'the disk image file')
    .argument('<target>', 'a whole disk such as /dev/sdb or /dev/nvme0n1, or a file path')
    .option('--yes', 'do not ask for confirmation (needed when stdin is not a terminal)', false)
    .option('--identity <file-or-dir>', "after verifying, write the node's identity (out/pki/identity.json, or a folder holding it) into the AURAE_IDENTITY partition of TARGET (aer/image/identity.ts)")
    .action(async (imagePath: string, target: string, options: { yes: boolean; identity?: string }, command: Command) => {
      const output = command.optsWithGlobals<{ output: OutputFormat }>().output;
      // Checked before the flash writes anything: a bad identity must not leave a flashed disk without one.
      const identity = options.identity === undefined ? null : prepareIdentity(options.identity, imagePath);
      const result = await runFlash({ image: imagePath, target, yes: options.yes }, flashDepsFor(io));
      if (identity === null) return print(output, result, formatFlashResult(result));
      const written = writeIdentity(result.target, identity);
      print(output, { ...result, identity: written }, `${formatFlashResult(result)}\n${formatIdentityWritten(written)}`);
    });
}
