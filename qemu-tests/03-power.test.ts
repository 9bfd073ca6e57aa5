// 03: every way to stop the node takes the one graceful path: ordered shutdown, QEMU exits by itself, no panic.
import { describe, expect, it } from 'vitest';
import { aer } from './fixture/aer';
import { bootNode, type BootedNode } from './fixture/node';

const MARKERS = [
  'init: shutdown: begin (ACTION',
  'init: shutdown: stopping auraed',
  'init: shutdown: auraed stopped',
  'init: shutdown: SIGTERM to all processes',
  'init: shutdown: SIGKILL to remaining processes',
  'init: shutdown: sync',
  'init: shutdown: unmounting',
  'init: shutdown: ACTION now',
];

function expectOrderedShutdown(log: string, action: 'poweroff' | 'reboot', from = 0): void {
  let at = from;
  for (const marker of MARKERS.map((m) => m.replace('ACTION', action))) {
    const i = log.indexOf(marker, at);
    expect(i, `console should show "${marker}" after offset ${at}`).toBeGreaterThanOrEqual(0);
    at = i;
  }
  expect(log).not.toMatch(/Kernel panic|Attempted to kill init/);
}

async function withNode(name: string, noReboot: boolean, fn: (node: BootedNode) => Promise<void>): Promise<void> {
  const node = await bootNode({ name, noReboot });
  try {
    await fn(node);
  } catch (err) {
    console.error(`--- console of ${name} (full log: ${node.consoleLog}) ---\n${node.vm.tail(60)}`);
    throw err;
  } finally {
    await node.vm.kill();
  }
}

describe('03 power', () => {
  it('`aer shutdown` powers the node off cleanly', async () => {
    await withNode('03-aer-shutdown', true, async (node) => {
      const res = await aer(node, ['shutdown', '--reason', 'qemu test']);
      expect(res.code, res.stderr).toBe(0);
      const exit = await node.vm.waitForExit(90_000);
      expect(exit.code).toBe(0);
      expectOrderedShutdown(node.vm.console, 'poweroff');
      expect(node.vm.console).toMatch(/reason: requested by admin via auraed: qemu test\)/);
    });
  });

  it('the ACPI power button (QMP system_powerdown) powers the node off cleanly', async () => {
    await withNode('03-acpi-powerdown', true, async (node) => {
      await (await node.vm.qmp()).systemPowerdown();
      const exit = await node.vm.waitForExit(90_000);
      expect(exit.code).toBe(0);
      expectOrderedShutdown(node.vm.console, 'poweroff');
    });
  });

  it('`aer reboot` reboots and the node comes back up', async () => {
    await withNode('03-aer-reboot', false, async (node) => {
      const from = node.vm.console.length;
      const res = await aer(node, ['-o', 'json', 'reboot']);
      expect(res.code, res.stderr).toBe(0);
      const ready = await node.waitReady(180_000, from);
      expect(ready.node).toBe('aurae');
      expectOrderedShutdown(node.vm.console, 'reboot', from);
      expect(node.readyCount()).toBe(2);
      const health = await aer(node, ['-o', 'json', 'health']);
      expect(health.code, health.stderr).toBe(0);
      expect(JSON.parse(health.stdout)).toMatchObject({ status: 'SERVING' });
    });
  });
});
