import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { flashDepsFor, formatFlashResult, readOneLine } from './image';

describe('aer image: terminal wiring', () => {
  it('readOneLine returns the first line, or null at end of input', async () => {
    const input = new PassThrough();
    const line = readOneLine(input);
    input.write('yes\nmore\n');
    expect(await line).toBe('yes');
    const empty = new PassThrough();
    const none = readOneLine(empty);
    empty.end();
    expect(await none).toBeNull();
  });

  it('progress redraws one line on a terminal and prints plain lines otherwise; the question goes to stderr', async () => {
    const partial: string[] = [];
    const err: string[] = [];
    const tty = flashDepsFor({ out: () => {}, err: (t) => void err.push(t), errPartial: (t) => void partial.push(t), stderrIsTTY: true, readLine: async () => 'yes' });
    tty.progress('wrote 1 of 2', false);
    tty.progress('wrote 2 in 1 s', true);
    expect(partial).toEqual(['\r\x1b[Kwrote 1 of 2', '\r\x1b[Kwrote 2 in 1 s\n']);
    expect(await tty.ask('Type yes: ')).toBe('yes');
    expect(partial.at(-1)).toBe('Type yes: ');

    const lines: string[] = [];
    const piped = flashDepsFor({ out: () => {}, err: (t) => void lines.push(t) });
    piped.progress('wrote 1 of 2', false);
    piped.log('flashing');
    expect(lines).toEqual(['wrote 1 of 2', 'aer: flashing']);
    expect(piped.stdinIsTTY).toBe(false);
    expect(await piped.ask('Type yes: ')).toBeNull();
  });

  it('formatFlashResult shows both digests', () => {
    const text = formatFlashResult({ image: 'd.raw', target: '/dev/sdb', targetKind: 'block', bytes: 10, imageSha256: 'aa', targetSha256: 'aa', seconds: 1.25 });
    expect(text).toBe('image  sha256 aa  d.raw\ntarget sha256 aa  /dev/sdb (first 10 bytes read back)\nflashed and verified /dev/sdb in 1.3 s');
  });
});
