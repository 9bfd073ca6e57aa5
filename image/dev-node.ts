// `npm run dev-node`: run a node on THIS host (init in dev daemon mode + auraed) with the built image as the
// boot artifacts for child microVMs, so `aer vm spawn` works without booting the parent in QEMU. The node uses
// out/pki (its CA, node certificate and spawn CA) and keeps its state under out/dev-node/.
//   npm run dev-node          then, in another terminal:
//   export AURAE_CONFIG=out/dev-node/client.json
//   npm run -s aer -- vm spawn web --memory 512
//   npm run -s aer -- --node aurae/web health
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import { parseNodeConfig } from '../supervisor/config';
import { buildImage, REPO_ROOT } from './build';

const PORT = Number(process.env.AURAE_DEV_PORT ?? 9443);

async function main(): Promise<void> {
  const image = await buildImage({ log: (l) => console.error(`[dev-node] ${l}`) });
  await $({ cwd: REPO_ROOT, stdio: 'inherit' })`npx tsx native/build.ts`;
  const dir = path.join(REPO_ROOT, 'out', 'dev-node');
  fs.mkdirSync(dir, { recursive: true });
  const pki = (f: string) => path.join(image.pkiDir, f);
  const config = parseNodeConfig(
    {
      version: 1,
      node: { name: image.manifest.node },
      pki: { caCert: pki('ca.crt'), serverCert: pki('node.crt'), serverKey: pki('node.key'), spawnCaCert: pki('spawn-ca.crt'), spawnCaKey: pki('spawn-ca.key') },
      listen: { socket: path.join(dir, 'aurae.sock'), tcp: `127.0.0.1:${PORT}` },
      state: { dir: path.join(dir, 'state') },
      // Children get the boot volume too (read-only): they have /boot and can spawn in turn (depth 2).
      vms: { kernel: image.kernel, initrd: image.initramfs, bootDisk: image.esp },
    },
    'dev node config',
  );
  fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  fs.writeFileSync(
    path.join(dir, 'client.json'),
    `${JSON.stringify({ version: 1, node: image.manifest.node, address: `127.0.0.1:${PORT}`, ca: pki('ca.crt'), cert: pki('admin.crt'), key: pki('admin.key') }, null, 2)}\n`,
  );
  console.error(`[dev-node] node "${config.node.name}" on 127.0.0.1:${PORT}; client config: ${path.relative(process.cwd(), path.join(dir, 'client.json'))}; Ctrl-C stops it (children first)`);
  const init = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'init/main.ts'), '--config', path.join(dir, 'config.json'), '--run-dir', path.join(dir, 'run')], {
    stdio: 'inherit',
    cwd: REPO_ROOT,
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => init.kill('SIGTERM'));
  init.on('exit', (code) => process.exit(code ?? 1));
}

main().catch((err: Error) => {
  console.error(`[dev-node] failed: ${err.message}`);
  process.exit(1);
});
