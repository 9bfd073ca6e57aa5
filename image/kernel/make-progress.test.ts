import { describe, expect, it } from 'vitest';
import { expectedFiles, FIRST_BUILD_FILES_ESTIMATE, formatTimeLeft, lineSplitter, makeProgress, progressLine } from './make-progress';
import { missingPrerequisites, prerequisitesMessage } from './prerequisites';

describe('makeProgress', () => {
  it('condenses compile lines, passes warnings and errors, keeps a tail', () => {
    const logged: string[] = [];
    const p = makeProgress({ log: (l) => logged.push(l), every: 2, tailLines: 3 });
    for (const l of [
      '  CC      kernel/fork.o',
      '  AS      arch/x86/entry/entry_64.o',
      '  LD      vmlinux',
      'kernel/fork.c:12:3: warning: unused variable',
      '  CC      mm/slub.o',
      'make[2]: *** [scripts/Makefile.build:250: mm/slub.o] Error 1',
      'Kernel: arch/x86/boot/bzImage is ready  (#1)',
    ]) p.line(l);
    expect(p.compiled()).toBe(3);
    expect(logged).toEqual([
      'kernel: compiled 2 files…',
      'kernel: kernel/fork.c:12:3: warning: unused variable',
      'kernel: make[2]: *** [scripts/Makefile.build:250: mm/slub.o] Error 1',
      'kernel: Kernel: arch/x86/boot/bzImage is ready  (#1)',
    ]);
    expect(p.tail()).toEqual([
      '  CC      mm/slub.o',
      'make[2]: *** [scripts/Makefile.build:250: mm/slub.o] Error 1',
      'Kernel: arch/x86/boot/bzImage is ready  (#1)',
    ]);
  });
});

describe('makeProgress with a total', () => {
  it('says N of M files and the time left at the rate since the first compiled file', () => {
    const logged: string[] = [];
    let t = 0;
    const p = makeProgress({ log: (l) => logged.push(l), every: 100, expected: { files: 1000, basis: 'recorded' }, now: () => t });
    p.line('  HOSTCC  scripts/basic/fixdep'); // configuring: not compiled files, and not in the rate
    t = 50_000;
    for (let i = 0; i < 200; i++) {
      p.line(`  CC      f${i}.o`);
      t += 300; // a file every 0.3 s
    }
    // At file 100, 99 files in 29.7 s: 900 left take 270 s; at file 200, 800 left take 240 s.
    expect(logged).toEqual(['kernel: 100 of 1000 files, about 5 min left', 'kernel: 200 of 1000 files, about 4 min left']);
  });
});

describe('progressLine', () => {
  const elapsed = 59_800; // 300 files in 59.8 s: 5 per second after the first
  it('says how sure the total is: recorded, a first-build estimate, an incremental upper bound', () => {
    expect(progressLine(300, { files: 1650, basis: 'recorded' }, elapsed)).toBe('300 of 1650 files, about 5 min left');
    expect(progressLine(300, { files: 1700, basis: 'estimate' }, elapsed)).toBe('300 of about 1700 files (first build: an estimate), about 5 min left');
    expect(progressLine(300, { files: 1650, basis: 'upper-bound' }, elapsed)).toBe('300 of at most 1650 files (incremental build), at most 5 min left');
  });

  it('without a total, or past it, says no time', () => {
    expect(progressLine(300, undefined, elapsed)).toBe('compiled 300 files…');
    expect(progressLine(1800, { files: 1700, basis: 'estimate' }, elapsed)).toBe('1800 files (more than the estimated 1700), nearly done…');
    expect(progressLine(1700, { files: 1650, basis: 'upper-bound' }, elapsed)).toBe('1700 files (incremental build)…');
    expect(progressLine(1, { files: 1650, basis: 'recorded' }, 0)).toBe('1 of 1650 files…');
  });

  it('rounds the time left as far as it can be trusted', () => {
    expect([formatTimeLeft(0), formatTimeLeft(12_000), formatTimeLeft(59_000), formatTimeLeft(90_000), formatTimeLeft(3_900_000)]).toEqual(['10 s', '20 s', '60 s', '2 min', '1 h 05 min']);
  });
});

describe('expectedFiles', () => {
  it('takes the recorded count, else the estimate; an incremental build makes it an upper bound', () => {
    expect(expectedFiles(1650, false)).toEqual({ files: 1650, basis: 'recorded' });
    expect(expectedFiles(null, false)).toEqual({ files: FIRST_BUILD_FILES_ESTIMATE, basis: 'estimate' });
    expect(expectedFiles(0, false)).toEqual({ files: FIRST_BUILD_FILES_ESTIMATE, basis: 'estimate' });
    expect(expectedFiles(1650, true)).toEqual({ files: 1650, basis: 'upper-bound' });
    expect(expectedFiles(null, true)).toEqual({ files: FIRST_BUILD_FILES_ESTIMATE, basis: 'upper-bound' });
  });
});

describe('lineSplitter', () => {
  it('joins lines split across chunks', () => {
    const lines: string[] = [];
    const s = lineSplitter((l) => lines.push(l));
    s.push('a\nb');
    s.push('c\r\nd');
    s.flush();
    expect(lines).toEqual(['a', 'bc', 'd']);
  });
});

describe('prerequisites', () => {
  it('lists what is missing with one apt-get line, deduplicating packages', () => {
    const missing = missingPrerequisites({
      hasCommand: (c) => !['flex', 'make', 'gcc'].includes(c),
      hasHeader: (h) => h !== 'libelf.h',
    });
    expect(missing.map((m) => m.what)).toEqual(['make', 'gcc', 'flex', 'libelf headers (objtool)']);
    expect(prerequisitesMessage(missing)).toContain('sudo apt-get install -y build-essential flex libelf-dev');
  });

  it('finds nothing missing when everything is there', () => {
    expect(missingPrerequisites({ hasCommand: () => true, hasHeader: () => true })).toEqual([]);
  });
});
