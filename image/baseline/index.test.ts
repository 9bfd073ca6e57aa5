import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BASELINE_READY_LINE, buildBaselineInitramfs, hasElfInterpreter } from './index';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('buildBaselineInitramfs', () => {
  it('writes a deterministic archive with /init, static busybox and /dev/console', async () => {
    dir = mkdtempSync(join(tmpdir(), 'baseline-'));
    const first = await buildBaselineInitramfs(join(dir, 'a'));
    const second = await buildBaselineInitramfs(join(dir, 'b'));
    const bytes = readFileSync(first);
    expect(readFileSync(second).equals(bytes)).toBe(true);

    const listing = execFileSync('cpio', ['-itv', '--quiet'], { input: bytes }).toString();
    expect(listing).toMatch(/^-rwxr-xr-x +1 root +root .* init$/m);
    expect(listing).toMatch(/^crw------- +1 root +root +5, +1 .* dev\/console$/m);
    expect(listing).toMatch(/^lrwxrwxrwx .* bin\/sh -> busybox$/m);
    expect(listing).toMatch(/ bin\/busybox$/m);

    const init = execFileSync('cpio', ['-i', '--quiet', '--to-stdout', 'init'], { input: bytes }).toString();
    expect(init.startsWith('#!/bin/sh\n')).toBe(true);
    expect(init).toContain(`echo '${BASELINE_READY_LINE}'`);
    expect(init).toContain('mount -t proc proc /proc');
    expect(init).toContain('poweroff -f');
  });
});

describe('hasElfInterpreter', () => {
  it('tells the static busybox from a dynamic binary', () => {
    expect(hasElfInterpreter(readFileSync('/bin/busybox'))).toBe(false);
    expect(hasElfInterpreter(readFileSync('/bin/ls'))).toBe(true);
    expect(() => hasElfInterpreter(Buffer.from('#!/bin/sh\n'.padEnd(80)))).toThrow(/not a 64-bit/);
  });
});
