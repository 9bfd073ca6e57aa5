import { describe, expect, it } from 'vitest';
import { createMemoryLogger } from '../log';
import { extLabel, mountStateDisk, STATE_LABEL } from './index';

function extHead(label: string | null): Buffer {
  const head = Buffer.alloc(2048);
  if (label !== null) {
    head.writeUInt16LE(0xef53, 1024 + 56);
    head.write(label, 1024 + 120, 'utf8');
  }
  return head;
}

describe('state disk', () => {
  it('reads ext labels and ignores other filesystems', () => {
    expect(extLabel(extHead(STATE_LABEL))).toBe('AURAE_STATE');
    expect(extLabel(extHead(''))).toBe('');
    expect(extLabel(extHead(null))).toBeNull();
    expect(extLabel(Buffer.alloc(100))).toBeNull();
  });

  it('mounts the labelled disk, skipping others', () => {
    const mounts: unknown[][] = [];
    const log = createMemoryLogger();
    const heads: Record<string, Buffer | null> = { vda: extHead('boot'), vdb: extHead(STATE_LABEL), loop0: extHead(STATE_LABEL), vdc: null };
    const result = mountStateDisk({
      syscalls: { mount: (...args: unknown[]) => void mounts.push(args) } as never,
      listBlockDevices: () => Object.keys(heads),
      readHead: (n) => heads[n] ?? null,
      mkdir: () => {},
      log,
    });
    expect(result).toEqual({ mounted: true, device: 'vdb' });
    expect(mounts[0]?.slice(0, 3)).toEqual(['/dev/vdb', '/var/lib/aurae', 'ext4']);
  });

  it('falls back to RAM with a warning when there is no disk or the mount fails', () => {
    const log = createMemoryLogger();
    expect(mountStateDisk({ syscalls: { mount: () => {} } as never, listBlockDevices: () => ['vda'], readHead: () => extHead(null), mkdir: () => {}, log })).toMatchObject({ mounted: false });
    expect(log.lines.join('\n')).toMatch(/state is lost at reboot/);
    const failing = mountStateDisk({
      syscalls: { mount: () => { throw Object.assign(new Error('EUCLEAN'), { code: 'EUCLEAN' }); } } as never,
      listBlockDevices: () => ['vda'],
      readHead: () => extHead(STATE_LABEL),
      mkdir: () => {},
      log,
    });
    expect(failing).toMatchObject({ mounted: false, reason: expect.stringMatching(/mounting \/dev\/vda failed/) });
  });
});
