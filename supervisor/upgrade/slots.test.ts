import { describe, expect, it } from 'vitest';
import {
  bootedEntryId,
  compareBootOrder,
  entryFileName,
  fallbackReason,
  parseEntryName,
  parseSlotFileName,
  planBless,
  planRollback,
  planUpgrade,
  SlotError,
  slotsOf,
  TRIES,
  type BootedBy,
} from './slots';

const slot = (id: string, uki: string) => [uki, `${id}.vmlinuz`, `${id}.initramfs`, `${id}.json`, `${id}.json.sig`];
const A = 'aurae-000001-0.1.0';
const B = 'aurae-000002-0.2.0';
const byPath = (p: string): BootedBy => ({ bootCountPath: p, entrySelected: null });
const bySelected = (s: string): BootedBy => ({ bootCountPath: null, entrySelected: s });

describe('entry names', () => {
  it('parse ids, versions and systemd-boot counters (+LEFT, +LEFT-DONE, none)', () => {
    expect(parseEntryName(`${A}.efi`)).toEqual({ id: A, generation: 1, version: '0.1.0', triesLeft: null, triesDone: null });
    expect(parseEntryName(`${B}+3.efi`)).toEqual({ id: B, generation: 2, version: '0.2.0', triesLeft: 3, triesDone: 0 });
    expect(parseEntryName(`${B}+0-3.efi`)).toMatchObject({ triesLeft: 0, triesDone: 3 });
    expect(parseEntryName(`${B}+2-1.EFI`)).toMatchObject({ id: B, triesLeft: 2, triesDone: 1 });
    for (const bad of ['linux.efi', `${A}.vmlinuz`, 'aurae-1-0.1.0.efi', 'aurae-000001-.efi', 'aurae-000001-0.1-rc1.efi', `${A}+x.efi`, `${A}.efi.tmp`]) {
      expect(parseEntryName(bad), bad).toBeNull();
    }
  });

  it('format the names systemd-boot renames between', () => {
    expect(entryFileName({ generation: 2, version: '0.2.0', triesLeft: TRIES })).toBe(`${B}+3.efi`);
    expect(entryFileName({ generation: 2, version: '0.2.0', triesLeft: 2, triesDone: 1 })).toBe(`${B}+2-1.efi`);
    expect(entryFileName({ generation: 1, version: '0.1.0' })).toBe(`${A}.efi`);
    expect(() => entryFileName({ generation: 1, version: '0.1-rc1' })).toThrow(/version: "0.1-rc1": expected/);
    expect(() => entryFileName({ generation: 1_000_000, version: '1' })).toThrow(/generation: 1000000: expected 1..999999/);
  });

  it('know every slot file by its role, and temp files as such', () => {
    expect(parseSlotFileName(`${A}.json.sig`)).toEqual({ id: A, generation: 1, role: 'signature', temp: false });
    expect(parseSlotFileName(`${A}.json`)).toMatchObject({ role: 'manifest' });
    expect(parseSlotFileName(`${A}.vmlinuz`)).toMatchObject({ role: 'kernel' });
    expect(parseSlotFileName(`${A}.initramfs.tmp`)).toMatchObject({ role: 'initramfs', temp: true });
    expect(parseSlotFileName(`${B}+3.efi.tmp`)).toMatchObject({ id: B, role: 'uki', temp: true });
    expect(parseSlotFileName('other.json')).toBeNull();
  });
});

describe('slotsOf', () => {
  it('orders like systemd-boot: newest generation first, entries without tries left last', () => {
    const s = slotsOf([...slot(A, `${A}.efi`), ...slot(B, `${B}+3.efi`)], null);
    expect(s.entries.map((e) => e.id)).toEqual([B, A]);
    expect(s.default?.id).toBe(B);
    const failed = slotsOf([...slot(A, `${A}.efi`), ...slot(B, `${B}+0-3.efi`)], null);
    expect(failed.default?.id).toBe(A);
    expect([parseEntryName(`${A}+1-2.efi`)!, parseEntryName(`${A}+2-1.efi`)!].sort(compareBootOrder)[0]!.triesLeft).toBe(2);
  });

  it('finds the running entry from LoaderBootCountPath or LoaderEntrySelected (any case), and its partner', () => {
    const names = [...slot(A, `${A}.efi`), ...slot(B, `${B}+2-1.efi`)];
    const trial = slotsOf(names, byPath(`\\EFI\\Linux\\${B}+2-1.efi`));
    expect(trial.running?.id).toBe(B);
    expect(trial.running?.fileName).toBe(`${B}+2-1.efi`);
    expect(trial.other?.id).toBe(A);
    expect(trial.running?.missing).toEqual([]);
    // systemd-boot names the entry as it listed it at boot (before its own rename), maybe in lower case.
    expect(slotsOf(names, bySelected(`${B}+3.efi`.toLowerCase())).running?.id).toBe(B);
    expect(slotsOf(names, bySelected(`${A}.efi`)).running?.id).toBe(A);
    expect(slotsOf(names, null).running).toBeNull();
    const gone = slotsOf(slot(A, `${A}.efi`), bySelected(`${B}+3.efi`));
    expect(gone.running).toBeNull();
    expect(gone.bootedId).toBe(B);
  });

  it('reports foreign entries, orphans, temp files and missing slot files', () => {
    const s = slotsOf([`${A}.efi`, `${A}.vmlinuz`, 'aurae-000003-9.vmlinuz', `${B}+3.efi.tmp`, 'windows.efi', 'notes.txt'], null);
    expect(s.foreign).toEqual(['windows.efi']);
    expect(s.orphans).toEqual([`${B}+3.efi.tmp`, 'aurae-000003-9.vmlinuz']);
    expect(s.entries[0]!.missing).toEqual(['initramfs', 'manifest', 'signature']);
  });

  it('bootedEntryId reads either variable', () => {
    expect(bootedEntryId(byPath(`\\EFI\\Linux\\${B}+0-3.efi`))).toBe(B);
    expect(bootedEntryId(bySelected(A))).toBe(A);
    expect(bootedEntryId({ bootCountPath: null, entrySelected: 'auto-efi-shell' })).toBeNull();
  });
});

describe('planUpgrade', () => {
  it('replaces the partner slot with the next generation, counted, and never touches the running entry', () => {
    const names = [...slot(A, `${A}.efi`), ...slot(B, `${B}+0-3.efi`), `aurae-000003-0.3.0.vmlinuz.tmp`];
    const plan = planUpgrade(slotsOf(names, bySelected(`${A}.efi`)), '0.4.0');
    expect(plan.remove.sort()).toEqual([...slot(B, `${B}+0-3.efi`), 'aurae-000003-0.3.0.vmlinuz.tmp'].map((n) => `EFI/Linux/${n}`).sort());
    expect(plan.write).toEqual({
      id: 'aurae-000004-0.4.0',
      generation: 4,
      version: '0.4.0',
      files: {
        uki: 'EFI/Linux/aurae-000004-0.4.0+3.efi',
        kernel: 'EFI/Linux/aurae-000004-0.4.0.vmlinuz',
        initramfs: 'EFI/Linux/aurae-000004-0.4.0.initramfs',
        manifest: 'EFI/Linux/aurae-000004-0.4.0.json',
        signature: 'EFI/Linux/aurae-000004-0.4.0.json.sig',
      },
    });
    // The new entry sorts first.
    const after = slotsOf([...slot(A, `${A}.efi`), ...Object.values(plan.write.files).map((p) => p.split('/').pop()!)], null);
    expect(after.default?.id).toBe('aurae-000004-0.4.0');
  });

  it('refuses without a running entry, while it is on trial, and for a bad version', () => {
    const names = [...slot(A, `${A}.efi`), ...slot(B, `${B}+2-1.efi`)];
    expect(() => planUpgrade(slotsOf(names, null), '1')).toThrow(/no running boot slot: it did not boot through systemd-boot/);
    expect(() => planUpgrade(slotsOf(names, byPath(`\\EFI\\Linux\\${B}+2-1.efi`)), '1')).toThrow(/still on trial/);
    expect(() => planUpgrade(slotsOf(names, bySelected(A)), '1+x')).toThrow(SlotError);
  });
});

describe('planBless', () => {
  it('drops the counter of the booted entry', () => {
    expect(planBless(`\\EFI\\Linux\\${B}+2-1.efi`)).toEqual({ from: `EFI/Linux/${B}+2-1.efi`, to: `EFI/Linux/${B}.efi` });
    expect(planBless(`\\EFI\\Linux\\${B}+0-3.efi`)).toEqual({ from: `EFI/Linux/${B}+0-3.efi`, to: `EFI/Linux/${B}.efi` });
  });
  it('has nothing to do for an uncounted entry, no variable, or a file that is not ours', () => {
    expect(planBless(null)).toBeNull();
    expect(planBless(`\\EFI\\Linux\\${A}.efi`)).toBeNull();
    expect(planBless('\\EFI\\Linux\\other+2-1.efi')).toBeNull();
    expect(planBless(`\\loader\\entries\\${B}+2-1.efi`)).toBeNull();
  });
});

describe('planRollback', () => {
  it('gives the partner a new generation with fresh tries (files first, the UKI last); the running entry stays the fallback', () => {
    const names = [...slot(A, `${A}.efi`), ...slot(B, `${B}.efi`)];
    const plan = planRollback(slotsOf(names, bySelected(B)));
    expect(plan.target).toBe('aurae-000003-0.1.0');
    expect(plan.renames.at(-1)).toEqual({ from: `EFI/Linux/${A}.efi`, to: 'EFI/Linux/aurae-000003-0.1.0+3.efi' });
    expect(plan.renames.slice(0, -1).map((r) => r.to).sort()).toEqual(['aurae-000003-0.1.0.initramfs', 'aurae-000003-0.1.0.json', 'aurae-000003-0.1.0.json.sig', 'aurae-000003-0.1.0.vmlinuz'].map((n) => `EFI/Linux/${n}`));
    const after = slotsOf([...slot(B, `${B}.efi`), ...plan.renames.map((r) => r.to.split('/').pop()!)], bySelected(B));
    expect(after.default?.id).toBe('aurae-000003-0.1.0');
    // If it then fails its tries, the running entry boots again.
    const failed = slotsOf([...slot(B, `${B}.efi`), ...slot('aurae-000003-0.1.0', 'aurae-000003-0.1.0+0-3.efi')], null);
    expect(failed.default?.id).toBe(B);
  });
  it('refuses with nothing to go back to', () => {
    expect(() => planRollback(slotsOf(slot(A, `${A}.efi`), bySelected(A)))).toThrow(/no other boot entry/);
    expect(() => planRollback(slotsOf([...slot(A, `${A}.efi`), `${B}.efi`], bySelected(A)))).toThrow(/lacks its kernel, initramfs/);
  });
});

describe('fallbackReason', () => {
  it('says which newer entry ran out of tries', () => {
    const names = [...slot(A, `${A}.efi`), ...slot(B, `${B}+0-3.efi`)];
    expect(fallbackReason(slotsOf(names, bySelected(A)))).toMatch(/^aurae-000002-0.2.0 was booted 3 time\(s\) without being blessed .* went back to aurae-000001-0.1.0$/);
    expect(fallbackReason(slotsOf(slot(A, `${A}.efi`), bySelected(A)))).toBeNull();
  });
});
