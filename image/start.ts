// `npm start`: build (or reuse) the image, boot it in QEMU, wait until the API answers over mTLS, show how to
// use aer against it, and on Ctrl-C shut the node down gracefully (ACPI power button, then wait).
//   npm start                 run until Ctrl-C
//   npm start -- --check      boot, check health, shut down cleanly, exit (a quick end-to-end demo)
//   npm start -- --uefi       boot disk.raw the way a flashed machine does: OVMF (UEFI) on q35, from a 4 GiB
//                             copy kept in out/uefi-disk.raw (its STATE partition persists across runs)
// The direct boot attaches the boot volume (esp.img, read-only) as a flashed disk has it, so the node can
// spawn children from its own image (`aer vm spawn web`). The image holds no key: the node's identity
// (out/pki/identity.json) goes over fw_cfg (opt/aurae/identity); with --uefi it is written into the disk's
// AURAE_IDENTITY partition, as `aer image flash --identity` does on hardware.
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { prepareIdentity, writeIdentity } from '../aer/image/identity';
import { connect } from '../aer/sdk';
import { IDENTITY_FW_CFG } from '../init/identity/document';
import { detectAccel, launchVm } from '../supervisor/vms';
import { buildImage, GUEST_API_PORT, REPO_ROOT } from './build';
import { OVMF_CODE, OVMF_VARS } from './lib/ovmf';

const check = process.argv.includes('--check');
const uefi = process.argv.includes('--uefi');
const UEFI_DISK_BYTES = 4 * 1024 ** 3;
const started = Date.now();
const say = (line: string) => console.error(`[start ${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${line}`);

async function pickPort(preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | null>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(null));
      s.listen(port, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
  return (await tryListen(preferred)) ?? (await tryListen(0))!;
}

async function main(): Promise<number> {
  const image = await buildImage({ log: say });
  const port = await pickPort(Number(process.env.AURAE_HOST_PORT ?? GUEST_API_PORT));
  const accel = detectAccel();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-start-'));
  let firmware: { code: string; vars: string } | null = null;
  let disks = [{ path: image.esp, readOnly: true, format: 'raw' as const }];
  if (uefi) {
    const disk = path.join(REPO_ROOT, 'out', 'uefi-disk.raw');
    const stamp = `${disk}.sha256`;
    if (!fs.existsSync(disk) || !fs.existsSync(stamp) || fs.readFileSync(stamp, 'utf8') !== image.manifest.outputs.disk.sha256) {
      // A new image is "flashed" afresh (STATE starts empty), as aer image flash would do on hardware.
      say(`flashing ${path.relative(REPO_ROOT, image.disk)} onto ${path.relative(REPO_ROOT, disk)} (4 GiB, sparse)`);
      fs.copyFileSync(image.disk, disk);
      writeIdentity(disk, prepareIdentity(image.identity, image.disk));
      fs.truncateSync(disk, UEFI_DISK_BYTES);
      fs.writeFileSync(stamp, image.manifest.outputs.disk.sha256);
    }
    for (const f of [OVMF_CODE, OVMF_VARS]) if (!fs.existsSync(f)) throw new Error(`${f} is missing: install the ovmf package (image/setup.sh does)`);
    firmware = { code: OVMF_CODE, vars: path.join(dir, 'OVMF_VARS.fd') };
    fs.copyFileSync(OVMF_VARS, firmware.vars);
    disks = [{ path: disk, readOnly: false, format: 'raw' }];
    say(`booting out/uefi-disk.raw with UEFI firmware (OVMF, q35, ${accel}); API on 127.0.0.1:${port}`);
  } else {
    say(`booting ${path.relative(REPO_ROOT, image.kernel)} + ${path.relative(REPO_ROOT, image.initramfs)} in QEMU (microvm, ${accel}) with the boot volume; API on 127.0.0.1:${port}`);
  }
  const vm = await launchVm(
    {
      kernel: image.kernel,
      initrd: image.initramfs,
      append: image.manifest.cmdline,
      firmware,
      // Room for a child or two (aer vm spawn): each takes 512 MiB by default.
      memoryMiB: 2048,
      cpus: Math.min(2, os.cpus().length),
      accel,
      machine: uefi ? 'q35' : 'microvm',
      forwards: [{ hostPort: port, guestPort: image.manifest.apiPort }],
      qmpSocket: path.join(dir, 'qmp.sock'),
      debugConsoleSocket: null,
      noReboot: false,
      disks,
      fwCfg: uefi ? [] : [{ name: IDENTITY_FW_CFG, file: image.identity }],
    },
    { onConsoleLine: (line) => console.log(`  │ ${line}`) },
  );

  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) {
      say('second interrupt: stopping QEMU now');
      await vm.kill();
      return;
    }
    stopping = true;
    say(`${why}: asking the node to power off (ACPI power button)…`);
    try {
      await (await vm.qmp()).systemPowerdown();
      await vm.waitForExit(60_000);
    } catch (err) {
      say(`graceful poweroff did not finish (${(err as Error).message.split('\n')[0]}); stopping QEMU`);
      await vm.kill();
    }
  };
  process.on('SIGINT', () => void stop('Ctrl-C'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  const bootStart = Date.now();
  const up = await vm.waitForConsole(/AURAE_(READY|NO_IDENTITY) \{.*\}\n/, 180_000);
  if (up[1] === 'NO_IDENTITY') {
    say(`the node has no identity (see the console above): ${uefi ? 'delete out/uefi-disk.raw to flash it afresh with the identity' : 'out/pki/identity.json was not handed over'}`);
    await stop('no identity');
    await vm.exited;
    return 1;
  }
  const client = connect({ config: image.clientConfig, address: `127.0.0.1:${port}` });
  try {
    const health = await client.health.check('');
    const info = await client.discovery.discover();
    say(`node "${info.nodeName}" is ${health.status} (auraed ${info.version}, kernel ${info.kernelRelease}) — ready ${((Date.now() - bootStart) / 1000).toFixed(1)} s after QEMU started`);
  } finally {
    client.close();
  }
  const cfg = path.relative(process.cwd(), image.clientConfig);
  console.error(
    [
      '',
      'Talk to the node with aer (mTLS with the admin certificate from out/pki):',
      `  export AURAE_CONFIG=${cfg} AURAE_ADDRESS=127.0.0.1:${port}`,
      '  npm run -s aer -- health            # grpc.health.v1 over mTLS',
      '  npm run -s aer -- version -o json   # node name, version, uptime, kernel',
      '  npm run -s aer -- vm spawn web      # a child microVM from this node\'s own image (nested)',
      '  npm run -s aer -- --node aurae/web health   # reach the child through its parent',
      '  npm run -s aer -- reboot            # graceful reboot; the node comes back',
      '  npm run -s aer -- shutdown          # graceful poweroff; QEMU exits',
      'Press Ctrl-C to power the node off.',
      '',
    ].join('\n'),
  );
  if (check) await stop('--check');
  const exit = await vm.exited;
  fs.rmSync(dir, { recursive: true, force: true });
  say(`QEMU exited (${exit.code ?? exit.signal})`);
  return exit.code === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    say(`failed: ${err.message}`);
    process.exit(1);
  },
);
