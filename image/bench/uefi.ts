// UEFI benchmark (not a test): disk.raw booted by OVMF (q35) → API ready, on a fresh copy (first boot creates
// the STATE partition) and then again on the same disk; compared by the caller with the direct kernel boot.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../aer/sdk';
import { detectAccel, freeLoopbackPort, launchVm } from '../../supervisor/vms';
import { OVMF_CODE, OVMF_VARS } from '../lib/ovmf';
import { prepareIdentity, writeIdentity } from '../../aer/image/identity';
import type { BuiltImage } from '../build';

export interface UefiBenchResult {
  /** Seconds from QEMU start to a SERVING Health answer: [first boot (creates STATE), later boots...]. */
  apiReadyS: number[];
}

/** QEMU start → SERVING over the API, for `spec` booted on a forwarded port. Powers the VM off afterwards. */
async function bootToApi(image: BuiltImage, disk: string, dir: string): Promise<number> {
  const port = await freeLoopbackPort();
  const vars = path.join(dir, 'OVMF_VARS.fd');
  if (!fs.existsSync(vars)) fs.copyFileSync(OVMF_VARS, vars);
  const t0 = performance.now();
  const vm = await launchVm({
    kernel: image.kernel,
    initrd: image.initramfs,
    append: '',
    firmware: { code: OVMF_CODE, vars },
    memoryMiB: 1024,
    cpus: 1,
    accel: detectAccel(),
    machine: 'q35',
    forwards: [{ hostPort: port, guestPort: image.manifest.apiPort }],
    qmpSocket: path.join(dir, 'qmp.sock'),
    debugConsoleSocket: null,
    noReboot: true,
    disks: [{ path: disk, readOnly: false, format: 'raw' }],
  });
  const client = connect({ config: image.clientConfig, address: `127.0.0.1:${port}` });
  try {
    const deadline = Date.now() + 240_000;
    for (;;) {
      if (Date.now() > deadline) throw new Error(`UEFI boot: no API within 240 s; console tail:\n${vm.tail(20)}`);
      try {
        if ((await client.health.check('')).status === 'SERVING') break;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    await (await vm.qmp()).systemPowerdown();
    await vm.waitForExit(60_000).catch(() => vm.kill());
    return seconds;
  } finally {
    client.close();
    await vm.kill();
  }
}

export async function benchUefi(image: BuiltImage, log: (l: string) => void, runs = 3): Promise<UefiBenchResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-bench-uefi-'));
  try {
    const disk = path.join(dir, 'disk.raw');
    fs.copyFileSync(image.disk, disk);
    // As `aer image flash --identity` does: the node finds its identity in the AURAE_IDENTITY partition.
    writeIdentity(disk, prepareIdentity(image.identity, image.disk));
    fs.truncateSync(disk, 1024 ** 3);
    const apiReadyS: number[] = [];
    for (let i = 0; i < runs; i++) {
      const s = await bootToApi(image, disk, dir);
      log(`UEFI disk boot ${i + 1}/${runs}${i === 0 ? ' (first boot: creates STATE)' : ''}: API ${s.toFixed(2)} s`);
      apiReadyS.push(s);
    }
    return { apiReadyS };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
