// Nested spawn benchmark (not a test): inside a booted node (TCG here) with its boot volume, the node spawns a
// child with the QEMU from /boot; time from the Spawn call (host → node over the forwarded port) until the
// child answers Health through the node, and the child QEMU's memory beyond its guest RAM (read in the node).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../aer/sdk';
import { READY_LINE } from '../../supervisor/ipc';
import { detectAccel, freeLoopbackPort, launchVm } from '../../supervisor/vms';
import { DebugShell } from '../lib/debug-shell';
import { timelineFromReport, timelineSummary } from './boot-phases';
import { IDENTITY_FW_CFG } from '../../init/identity/document';
import { REPO_ROOT, type BuiltImage } from '../build';
import { CHILD_MEMORY_MIB } from './spawn';

export interface NestedBenchResult {
  spawnToApiMs: number[];
  memoryMiB: number;
  overheadMiB: number;
  /** The accelerator the child used inside the node (from the node's log). */
  accel: string;
}

export async function benchNested(image: BuiltImage, log: (l: string) => void, runs = 3, memoryMiB = CHILD_MEMORY_MIB): Promise<NestedBenchResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-bench-nested-'));
  const port = await freeLoopbackPort();
  const vm = await launchVm({
    kernel: image.kernel,
    initrd: image.initramfs,
    append: `${image.manifest.cmdline} aurae.debug_shell=/dev/hvc0`,
    memoryMiB: 2048,
    cpus: 1,
    accel: detectAccel(),
    machine: 'microvm',
    forwards: [{ hostPort: port, guestPort: image.manifest.apiPort }],
    qmpSocket: path.join(dir, 'qmp.sock'),
    debugConsoleSocket: path.join(dir, 'hvc0.sock'),
    noReboot: true,
    disks: [{ path: image.esp, readOnly: true, format: 'raw' }],
    fwCfg: [{ name: IDENTITY_FW_CFG, file: image.identity }],
  });
  const parent = connect({ config: image.clientConfig, address: `127.0.0.1:${port}`, timeoutMs: 300_000 });
  const child = connect({ config: image.clientConfig, address: `127.0.0.1:${port}`, targetNode: `${image.manifest.node}/web`, timeoutMs: 10_000 });
  try {
    await vm.waitForConsole(READY_LINE, 180_000);
    const sh = await DebugShell.connect(path.join(dir, 'hvc0.sock'));
    const times: number[] = [];
    let overheadMiB = 0;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const v = await parent.vms.spawn({ name: 'web', memoryMiB });
      for (;;) {
        try {
          if ((await child.health.check()).status === 'SERVING') break;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      times.push(performance.now() - t0);
      // Where the child's boot went, as the child reports it (its kernel's clock, from its QEMU's start).
      const report = (await child.discovery.discover()).boot;
      log(`  child: ${report ? timelineSummary(timelineFromReport(report)) : 'no boot report'}`);
      // Summed in the node (busybox awk): the whole smaps through the emulated console is too slow.
      const [rssKb, guestKb] = (await sh.ok(`awk '/^Size:/{s=$2} /^Rss:/{t+=$2; if (s==${memoryMiB * 1024}) g+=$2} END{print t, g+0}' /proc/${v.pid}/smaps`)).trim().split(/\s+/).map(Number);
      overheadMiB = Math.max(overheadMiB, ((rssKb ?? NaN) - (guestKb ?? NaN)) / 1024);
      log(`nested spawn ${i + 1}/${runs}: child API ${(times.at(-1)! / 1000).toFixed(2)} s`);
      await parent.vms.stop('web');
      await parent.vms.free('web');
    }
    sh.close();
    const accel = /"accel":"(kvm|tcg)"/.exec(vm.console)?.[1] ?? 'unknown';
    // The node's console (its auraed's log of each spawn) for a closer look: out/bench/nested-node-console.log.
    fs.mkdirSync(path.join(REPO_ROOT, 'out', 'bench'), { recursive: true });
    fs.writeFileSync(path.join(REPO_ROOT, 'out', 'bench', 'nested-node-console.log'), vm.console);
    await (await vm.qmp()).systemPowerdown();
    await vm.waitForExit(60_000).catch(() => vm.kill());
    return { spawnToApiMs: times, memoryMiB, overheadMiB, accel };
  } finally {
    parent.close();
    child.close();
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
