// `npm start`: build (or reuse) the image, boot it in QEMU, wait until the API answers over mTLS, show how to
// use aer against it, and on Ctrl-C shut the node down gracefully (ACPI power button, then wait).
//   npm start                 run until Ctrl-C
//   npm start -- --check      boot, check health, shut down cleanly, exit (a quick end-to-end demo)
//   npm start -- --uefi       boot disk.raw the way a flashed machine does: OVMF (UEFI) on q35, from a 4 GiB
//                             copy kept in out/uefi-disk.raw (its STATE partition persists across runs)
//   npm start -- --registry   a local OCI registry for the node: Debian's docker-registry on 127.0.0.1 serving
//                             busybox built offline (umoci, from busybox-static), reached by the node as
//                             10.0.2.100:5000, for `aer image pull` and `aer pod run` (direct boot only)
//   npm start -- --registry PORT   the same with your own registry on 127.0.0.1:PORT (plain HTTP)
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
import { buildTestImages, startTestRegistry, TEST_IMAGE_NAMES, type TestRegistry, testImagesDir } from '../supervisor/images/test-registry';
import { GUEST_REGISTRY, GUEST_REGISTRY_HOST, initramfsWithConfig, relayForward, withGuestRegistry } from './lib/guest-registry';
import { OVMF_CODE, OVMF_VARS } from './lib/ovmf';

const check = process.argv.includes('--check');
const uefi = process.argv.includes('--uefi');
const UEFI_DISK_BYTES = 4 * 1024 ** 3;
const started = Date.now();
const say = (line: string) => console.error(`[start ${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${line}`);

/** `--registry [PORT]`: a port of 127.0.0.1 (the only host address tools here talk to), 'local', or null. */
function registryOption(argv: string[]): number | 'local' | null {
  const at = argv.indexOf('--registry');
  if (at < 0) return null;
  if (argv[at + 1] === undefined || argv[at + 1]!.startsWith('--')) return 'local';
  const port = Number(argv[at + 1]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`--registry: expected the port of a registry on 127.0.0.1 (1..65535), got "${argv[at + 1] ?? ''}"; e.g. npm start -- --registry 5000`);
  }
  return port;
}

/** `--registry` alone: Debian's docker-registry on 127.0.0.1 with the offline-built busybox pushed as busybox:latest. */
async function startLocalRegistry(): Promise<TestRegistry> {
  say('local registry: building busybox images offline (umoci, busybox-static; cached) and starting docker-registry on 127.0.0.1');
  const images = await buildTestImages(testImagesDir());
  const registry = await startTestRegistry();
  try {
    await registry.push(images.layout, images.tags.base, TEST_IMAGE_NAMES.base);
  } catch (err) {
    await registry.stop();
    throw err;
  }
  say(`local registry on ${registry.host} serves busybox:latest (stopped with the node)`);
  return registry;
}

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
  const registryChoice = registryOption(process.argv);
  if (uefi && registryChoice !== null) throw new Error('--registry works with the direct boot only (the UEFI disk carries its own config): drop --uefi or --registry');
  const image = await buildImage({ log: say });
  const registry = registryChoice === 'local' ? await startLocalRegistry() : null;
  const registryPort = registry ? registry.port : (registryChoice as number | null);
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
    if (registryPort !== null) say(`the node reaches the registry on 127.0.0.1:${registryPort} as ${GUEST_REGISTRY_HOST} (plain HTTP)`);
    say(`booting ${path.relative(REPO_ROOT, image.kernel)} + ${path.relative(REPO_ROOT, image.initramfs)} in QEMU (microvm, ${accel}) with the boot volume; API on 127.0.0.1:${port}`);
  }
  const vm = await launchVm(
    {
      kernel: image.kernel,
      initrd: registryPort === null ? image.initramfs : await initramfsWithConfig(image, withGuestRegistry, dir),
      append: image.manifest.cmdline,
      firmware,
      // Room for a child or two (aer vm spawn): each takes 512 MiB by default.
      memoryMiB: 2048,
      cpus: Math.min(2, os.cpus().length),
      accel,
      machine: uefi ? 'q35' : 'microvm',
      forwards: [{ hostPort: port, guestPort: image.manifest.apiPort }],
      guestForwards: registryPort === null ? [] : [relayForward(GUEST_REGISTRY.address, GUEST_REGISTRY.port, registryPort)],
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
      ...(registryPort === null
        ? ['  (npm start -- --registry gives the node a local registry with busybox to pull and run pods from)']
        : [
            `  npm run -s aer -- image pull ${GUEST_REGISTRY_HOST}/busybox:latest`,
            `  npm run -s aer -- pod run hello --image ${GUEST_REGISTRY_HOST}/busybox:latest -- sh -c 'echo hello from $(hostname)'`,
            '  npm run -s aer -- pod logs hello',
          ]),
      '  npm run -s aer -- reboot            # graceful reboot; the node comes back',
      '  npm run -s aer -- shutdown          # graceful poweroff; QEMU exits',
      'Press Ctrl-C to power the node off.',
      '',
    ].join('\n'),
  );
  if (check) await stop('--check');
  const exit = await vm.exited;
  await registry?.stop();
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
