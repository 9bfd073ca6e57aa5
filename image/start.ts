// `npm start`: build (or reuse) the image, boot it in QEMU, wait until the API answers over mTLS, show how to
// use aer against it, and on Ctrl-C shut the node down gracefully (ACPI power button, then wait).
//   npm start                 run until Ctrl-C
//   npm start -- --check      boot, check health, shut down cleanly, exit (a quick end-to-end demo)
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { connect } from '../aer/sdk';
import { detectAccel, launchVm } from '../supervisor/vms';
import { buildImage, GUEST_API_PORT, REPO_ROOT } from './build';

const check = process.argv.includes('--check');
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
  say(`booting ${path.relative(REPO_ROOT, image.kernel)} + ${path.relative(REPO_ROOT, image.initramfs)} in QEMU (microvm, ${accel}); API on 127.0.0.1:${port}`);
  const vm = await launchVm(
    {
      kernel: image.kernel,
      initrd: image.initramfs,
      append: image.manifest.cmdline,
      memoryMiB: 1024,
      cpus: Math.min(2, os.cpus().length),
      accel,
      machine: 'microvm',
      forwards: [{ hostPort: port, guestPort: image.manifest.apiPort }],
      qmpSocket: path.join(dir, 'qmp.sock'),
      debugConsoleSocket: null,
      noReboot: false,
      disks: [],
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
  await vm.waitForConsole(/AURAE_READY \{.*\}\n/, 180_000);
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
