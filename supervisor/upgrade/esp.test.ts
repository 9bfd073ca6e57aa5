// The ESP adapter's pure parts and its remount bracket, and the booted-entry reader over a fake efivarfs folder.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fsEsp, lockFile, mountOptionsOf, parseEfiTextVariable, readBootedBy } from './esp';
import { fsPartialStore } from './partial-store';
import { EFI_VARIABLES } from './slots';

const efiText = (text: string) => Buffer.concat([Buffer.from([6, 0, 0, 0]), Buffer.from(`${text}\0`, 'utf16le')]);

describe('mountOptionsOf', () => {
  const info = [
    '22 1 0:21 / / rw,relatime - rootfs rootfs rw',
    '30 22 254:1 / /boot ro,nosuid,nodev - vfat /dev/vda1 ro,fmask=0022',
    '31 22 0:30 / /var/lib/aurae rw,nosuid - ext4 /dev/vda3 rw',
    '32 22 0:31 / /with\\040space rw - tmpfs tmpfs rw',
  ].join('\n');
  it('finds the mount point and whether it is read-only', () => {
    expect(mountOptionsOf(info, '/boot')).toEqual({ readOnly: true });
    expect(mountOptionsOf(info, '/var/lib/aurae')).toEqual({ readOnly: false });
    expect(mountOptionsOf(info, '/with space')).toEqual({ readOnly: false });
    expect(mountOptionsOf(info, '/tmp')).toBeNull();
  });
});

describe('fsEsp.writable', () => {
  it('a failed switch back to read-only does not fail the change; the next writer tries again', async () => {
    const calls: string[] = [];
    let refuse = true;
    const esp = fsEsp('/boot', (root, rw) => {
      if (!rw && refuse) throw Object.assign(new Error('busy'), { code: 'EBUSY' });
      calls.push(rw ? 'rw' : 'ro');
    }, { readMountinfo: () => '30 22 254:1 / /boot ro,nosuid - vfat /dev/vda1 ro' });
    await expect(esp.writable(async () => 'written')).resolves.toBe('written');
    refuse = false;
    await esp.writable(async () => {});
    expect(calls).toEqual(['rw', 'ro']);
  });
  it('holds the lock file for the time of the change; a second process waits for it, a dead owner\'s lock is taken over', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aurae-esp-lock-'));
    try {
      const lock = join(dir, 'esp.lock');
      const esp = fsEsp(dir, null, { readMountinfo: () => '', lock });
      await esp.writable(async () => expect(existsSync(lock)).toBe(true));
      expect(existsSync(lock)).toBe(false);
      const release = await lockFile(lock);
      let got = false;
      const waiting = esp.writable(async () => void (got = true));
      await new Promise((r) => setTimeout(r, 150));
      expect(got).toBe(false);
      release();
      await waiting;
      expect(got).toBe(true);
      writeFileSync(lock, '999999999\n'); // no such process
      await esp.writable(async () => {});
      expect(existsSync(lock)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('writeFile with a sha256 renames into place only bytes that match it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aurae-esp-sha-'));
    try {
      const esp = fsEsp(dir, null, { readMountinfo: () => '' });
      const good = '8bf145c969630f0de0dec8819308b0cce5a5e22a1eb597d0803ffa010b9367d1'; // sha256("uki bytes")
      await expect(esp.writeFile('EFI/Linux/x.efi', [Buffer.from('uki bytez')], good)).rejects.toThrow(/sha256 .* the release says/);
      expect(readdirSync(join(dir, 'EFI/Linux'))).toEqual([]);
      await esp.writeFile('EFI/Linux/x.efi', [Buffer.from('uki bytes')], good);
      expect(readdirSync(join(dir, 'EFI/Linux'))).toEqual(['x.efi']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('remounts a read-only ESP read-write once for overlapping writers, and back read-only after the last', async () => {
    const calls: string[] = [];
    const esp = fsEsp('/boot', (root, rw) => void calls.push(`${root} ${rw ? 'rw' : 'ro'}`), { readMountinfo: () => '30 22 254:1 / /boot ro,nosuid - vfat /dev/vda1 ro' });
    let release!: () => void;
    const first = esp.writable(() => new Promise<void>((r) => (release = r)));
    await esp.writable(async () => void calls.push('second'));
    expect(calls).toEqual(['/boot rw', 'second']);
    release();
    await first;
    expect(calls).toEqual(['/boot rw', 'second', '/boot ro']);
  });
  it('leaves a folder that is no mount point (or is read-write) alone, and says when it cannot remount', async () => {
    const calls: string[] = [];
    await fsEsp('/x', (r) => void calls.push(r), { readMountinfo: () => '' }).writable(async () => {});
    expect(calls).toEqual([]);
    await expect(fsEsp('/boot', null, { readMountinfo: () => '30 22 254:1 / /boot ro - vfat /dev/vda1 ro' }).writable(async () => {})).rejects.toThrow(/mounted read-only and this auraed cannot remount it/);
  });
});

describe('readBootedBy', () => {
  it("reads systemd-boot's variables; both null without them (a direct-kernel boot)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'efivars-'));
    try {
      expect(readBootedBy(dir)).toEqual({ entrySelected: null, bootCountPath: null });
      writeFileSync(join(dir, EFI_VARIABLES.entrySelected), efiText('aurae-000002-0.2.0.efi'));
      writeFileSync(join(dir, EFI_VARIABLES.bootCountPath), efiText('\\EFI\\Linux\\aurae-000002-0.2.0+2-1.efi'));
      expect(readBootedBy(dir)).toEqual({ entrySelected: 'aurae-000002-0.2.0.efi', bootCountPath: '\\EFI\\Linux\\aurae-000002-0.2.0+2-1.efi' });
      expect(parseEfiTextVariable(Buffer.from([6, 0]))).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('fsPartialStore', () => {
  it('keeps an upload across instances (an auraed restart) and drops a record that does not parse', () => {
    const dir = mkdtempSync(join(tmpdir(), 'partial-'));
    try {
      const a = fsPartialStore(dir);
      expect(a.kept()).toBeNull();
      a.start({ manifestSha256: 'f'.repeat(64), version: '0.2.0', total: 10 });
      a.append(0, Buffer.from('hello'));
      a.sync();
      const b = fsPartialStore(dir);
      expect(b.kept()).toEqual({ manifestSha256: 'f'.repeat(64), version: '0.2.0', total: 10, kept: 5 });
      expect(b.read(1, 3).toString()).toBe('ell');
      writeFileSync(join(dir, 'upgrade', 'partial.json'), '{');
      expect(b.kept()).toBeNull();
      b.recordRollback({ from: 'x', to: 'y', at: 1, by: 'admin' });
      expect(fsPartialStore(dir).lastRollback()).toEqual({ from: 'x', to: 'y', at: 1, by: 'admin' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
