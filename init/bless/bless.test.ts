import { describe, expect, it } from 'vitest';
import { parseNodeConfig } from '../../supervisor/config';
import type { BootedBy, BootSlotStatus } from '../../supervisor/upgrade/slots';
import { createMemoryLogger } from '../log';
import { childFilesConfig, createBlesser, inspectBootSlot, type BlessDeps } from './index';

const A = 'aurae-000001-0.1.0';
const B = 'aurae-000002-0.2.0';
const slot = (id: string, uki: string) => [uki, `${id}.vmlinuz`, `${id}.initramfs`, `${id}.json`, `${id}.json.sig`];

/** Deps over an in-memory entries folder and manual timers. */
/** `renameFails`: every rename fails (true) or the first N do. */
function fakeDeps(names: string[], by: BootedBy | null, o: { renameFails?: boolean | number } = {}) {
  let failuresLeft = o.renameFails === true ? Infinity : (o.renameFails || 0);
  let now = 0;
  const timers: { at: number; fn: () => void; id: number }[] = [];
  let nextId = 1;
  const log = createMemoryLogger();
  const state = { names: [...names], statuses: [] as BootSlotStatus[], reboots: [] as string[] };
  const deps: BlessDeps = {
    espRoot: '/boot',
    listEntries: () => state.names,
    bootedBy: () => by,
    rename: async (from, to) => {
      if (failuresLeft > 0) {
        failuresLeft--;
        throw new Error('EROFS');
      }
      const f = from.split('/').pop()!;
      state.names = state.names.map((n) => (n === f ? to.split('/').pop()! : n));
    },
    writeStatus: (s) => state.statuses.push(structuredClone(s)),
    exists: () => false,
    timers: {
      setTimeout: (fn, ms) => {
        const id = nextId++;
        timers.push({ at: now + ms, fn, id });
        return id;
      },
      clearTimeout: (h) => {
        const i = timers.findIndex((t) => t.id === h);
        if (i !== -1) timers.splice(i, 1);
      },
    },
    now: () => now,
    reboot: (reason) => state.reboots.push(reason),
    log,
  };
  const advance = async (ms: number) => {
    now += ms;
    for (;;) {
      const due = timers.filter((t) => t.at <= now).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      timers.splice(timers.indexOf(due), 1);
      due.fn();
      await Promise.resolve();
      await Promise.resolve();
    }
  };
  return { deps, state, advance, log };
}

const onTrial = () => fakeDeps([...slot(A, `${A}.efi`), ...slot(B, `${B}+2-1.efi`)], { bootCountPath: `\\EFI\\Linux\\${B}+2-1.efi`, entrySelected: `${B}+3.efi` });

describe('boot slot', () => {
  it('reports the running entry, on trial or blessed, and none on a direct kernel boot', () => {
    const { deps } = onTrial();
    expect(inspectBootSlot(deps).status).toMatchObject({ entry: B, version: '0.2.0', generation: 2, blessed: false, note: expect.stringMatching(/^on trial/) });
    const blessed = fakeDeps(slot(A, `${A}.efi`), { bootCountPath: null, entrySelected: `${A}.efi` });
    expect(inspectBootSlot(blessed.deps).status).toMatchObject({ entry: A, blessed: true, note: null, fallback: null });
    const direct = fakeDeps(slot(A, `${A}.efi`), null);
    expect(inspectBootSlot(direct.deps).status).toMatchObject({ entry: null, blessed: false, note: expect.stringMatching(/direct kernel boot/) });
    const fellBack = fakeDeps([...slot(A, `${A}.efi`), ...slot(B, `${B}+0-3.efi`)], { bootCountPath: null, entrySelected: `${A}.efi` });
    expect(inspectBootSlot(fellBack.deps).status.fallback).toMatch(/^aurae-000002-0.2.0 was booted 3 time\(s\) without being blessed/);
  });

  it('points children at the running slot\'s kernel and initramfs (the default entry\'s on a direct boot), only when the config has the defaults', () => {
    const config = parseNodeConfig({ version: 1, node: { name: 'n' }, pki: { caCert: '/p/ca.crt', serverCert: '/p/s.crt', serverKey: '/p/s.key' } }, 'test');
    const { deps } = onTrial();
    const c = childFilesConfig(config, inspectBootSlot(deps), () => false);
    expect([c.vms.kernel, c.vms.initrd]).toEqual([`/boot/EFI/Linux/${B}.vmlinuz`, `/boot/EFI/Linux/${B}.initramfs`]);
    const direct = fakeDeps([...slot(A, `${A}.efi`), ...slot(B, `${B}+0-3.efi`)], null);
    expect(childFilesConfig(config, inspectBootSlot(direct.deps), () => false).vms.kernel).toBe(`/boot/EFI/Linux/${A}.vmlinuz`);
    const custom = { ...config, vms: { ...config.vms, kernel: '/x/vmlinuz' } };
    expect(childFilesConfig(custom, inspectBootSlot(deps), () => false)).toBe(custom);
    expect(childFilesConfig(config, inspectBootSlot(fakeDeps([], null).deps), () => false)).toBe(config);
    const bare = fakeDeps([...slot(A, `${A}.efi`), `${B}+2-1.efi`], { bootCountPath: `\\EFI\\Linux\\${B}+2-1.efi`, entrySelected: null });
    expect(childFilesConfig(config, inspectBootSlot(bare.deps), () => false)).toBe(config);
  });
});

describe('blessing', () => {
  it('renames the entry without its counter once the same auraed has served for afterMs', async () => {
    const { deps, state, advance } = onTrial();
    const blesser = createBlesser(deps, inspectBootSlot(deps), { afterMs: 1000, deadlineMs: 60_000, startedMs: 0 });
    blesser.onServing(42, (pid) => pid === 42);
    await advance(999);
    expect(state.names).toContain(`${B}+2-1.efi`);
    await advance(1);
    expect(state.names).toContain(`${B}.efi`);
    expect(state.statuses.at(-1)).toMatchObject({ entry: B, blessed: true, blessedAtMs: 1000, path: `EFI/Linux/${B}.efi`, note: null });
    await advance(120_000);
    expect(state.reboots).toEqual([]);
  });

  it('does not bless when auraed was restarted within afterMs; blesses after it serves again', async () => {
    const { deps, state, advance } = onTrial();
    const blesser = createBlesser(deps, inspectBootSlot(deps), { afterMs: 1000, deadlineMs: 60_000, startedMs: 0 });
    let current = 42;
    blesser.onServing(42, (pid) => pid === current);
    current = 43;
    await advance(1000);
    expect(state.names).toContain(`${B}+2-1.efi`);
    blesser.onServing(43, (pid) => pid === current);
    await advance(1000);
    expect(state.names).toContain(`${B}.efi`);
  });

  it('reboots a boot on trial that was not blessed by the deadline, unless it is the only entry', async () => {
    const { deps, state, advance } = onTrial();
    createBlesser(deps, inspectBootSlot(deps), { afterMs: 1000, deadlineMs: 5000, startedMs: 0 });
    await advance(5000);
    expect(state.reboots).toEqual([`boot entry ${B} was not blessed within 5 s (auraed did not serve for 1 s)`]);
    const only = fakeDeps(slot(B, `${B}+2-1.efi`), { bootCountPath: `\\EFI\\Linux\\${B}+2-1.efi`, entrySelected: null });
    createBlesser(only.deps, inspectBootSlot(only.deps), { afterMs: 1000, deadlineMs: 5000, startedMs: 0 });
    await only.advance(5000);
    expect(only.state.reboots).toEqual([]);
  });

  it('a failed rename leaves the entry on trial and says why', async () => {
    const { deps, state, advance, log } = fakeDeps([...slot(A, `${A}.efi`), ...slot(B, `${B}+2-1.efi`)], { bootCountPath: `\\EFI\\Linux\\${B}+2-1.efi`, entrySelected: null }, { renameFails: true });
    const blesser = createBlesser(deps, inspectBootSlot(deps), { afterMs: 10, deadlineMs: 60_000, startedMs: 0 });
    blesser.onServing(1, () => true);
    await advance(10);
    expect(state.statuses.at(-1)).toMatchObject({ blessed: false, note: 'blessing failed: EROFS' });
    expect(log.lines.join('\n')).toMatch(/blessing aurae-000002-0.2.0 failed \(EROFS\)/);
  });

  it('a failed rename is tried again while the same auraed runs, without a new SERVING', async () => {
    const { deps, state, advance } = fakeDeps([...slot(A, `${A}.efi`), ...slot(B, `${B}+2-1.efi`)], { bootCountPath: `\\EFI\\Linux\\${B}+2-1.efi`, entrySelected: null }, { renameFails: 1 });
    const blesser = createBlesser(deps, inspectBootSlot(deps), { afterMs: 10, deadlineMs: 60_000, startedMs: 0 });
    blesser.onServing(1, () => true);
    await advance(10);
    expect(state.names).toContain(`${B}+2-1.efi`);
    await advance(10);
    expect(state.names).toContain(`${B}.efi`);
    expect(state.statuses.at(-1)).toMatchObject({ blessed: true });
    await advance(60_000);
    expect(state.reboots).toEqual([]);
  });

  it('does nothing for a blessed boot', async () => {
    const { deps, state, advance } = fakeDeps(slot(A, `${A}.efi`), { bootCountPath: null, entrySelected: `${A}.efi` });
    const blesser = createBlesser(deps, inspectBootSlot(deps), { afterMs: 10, deadlineMs: 100, startedMs: 0 });
    blesser.onServing(1, () => true);
    await advance(1000);
    expect(state.names).toEqual(slot(A, `${A}.efi`));
    expect(state.reboots).toEqual([]);
  });
});
