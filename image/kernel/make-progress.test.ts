import { describe, expect, it } from 'vitest';
import { lineSplitter, makeProgress } from './make-progress';
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
