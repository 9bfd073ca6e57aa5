// 04: the state disk. An ext4 filesystem labelled AURAE_STATE is mounted at /var/lib/aurae, survives a reboot,
// and is unmounted cleanly at poweroff; without one the node runs with state in RAM and says so.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aer } from './fixture/aer';
import { bootNode, createStateDisk, type BootedNode } from './fixture/node';

describe('04 state disk', () => {
  let dir: string;
  let disk: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-state-'));
    disk = createStateDisk(dir, 64);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('mounts the labelled disk, keeps its data across a reboot and unmounts it cleanly', async () => {
    let node: BootedNode | null = await bootNode({ name: '04-state-disk', disks: [disk], noReboot: false });
    try {
      expect(node.vm.console).toMatch(/state disk: \/dev\/vda \(AURAE_STATE\) mounted on \/var\/lib\/aurae/);
      const sh = await node.shell();
      expect(await sh.ok('grep " /var/lib/aurae " /proc/mounts')).toMatch(/^\/dev\/vda \/var\/lib\/aurae ext4/);
      await sh.ok('echo kept > /var/lib/aurae/marker && sync');
      const from = node.vm.console.length;
      expect((await aer(node, ['reboot'])).code).toBe(0);
      await node.waitReady(180_000, from);
      // A fresh connection to the new boot's shell.
      sh.close();
      const { DebugShell } = await import('../image/lib/debug-shell');
      const again = await DebugShell.connect(node.vm.spec.debugConsoleSocket!);
      expect((await again.ok('cat /var/lib/aurae/marker')).trim()).toBe('kept');
      again.close();
      expect((await aer(node, ['shutdown'])).code).toBe(0);
      await node.vm.waitForExit(90_000);
      expect(node.vm.console.slice(from)).not.toMatch(/unmount: \/var\/lib\/aurae failed/);
    } finally {
      await node.vm.kill();
      node = null;
    }
    // e2fsck -n exits 0 only for a clean filesystem: the poweroff unmounted it properly.
    execFileSync('e2fsck', ['-n', '-f', disk], { stdio: 'pipe' });
  });

  it('without a state disk, warns that state lives in RAM', async () => {
    const node = await bootNode({ name: '04-no-state-disk' });
    try {
      expect(node.vm.console).toMatch(/state disk: no ext4 filesystem labelled AURAE_STATE; \/var\/lib\/aurae is in RAM/);
    } finally {
      await node.vm.kill();
    }
  });
});
