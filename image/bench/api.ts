// API benchmark (not a test): auraed as the image ships it (the esbuild bundle on the image's Node runtime,
// run on this host) and a client over the Unix socket with mTLS: unary latency p50/p99, throughput, and 200
// concurrent clients. The guest's TCG CPU would measure the emulator, not auraed, so this runs on the host.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { connect, type AuraeClient } from '../../aer/sdk';
import { prepareHostNode } from '../../supervisor/daemon/host-node';

export interface ApiBenchResult {
  sequentialCalls: number;
  p50Ms: number;
  p99Ms: number;
  throughputPerSec: number;
  throughputConcurrency: number;
  clients: number;
  callsPerClient: number;
  clientErrors: number;
  clientsWallMs: number;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

export async function benchApi(opts: { node: string; bundleDir: string; sqliteAddon: string; log: (l: string) => void }): Promise<ApiBenchResult> {
  const prepared = await prepareHostNode({ nodeName: 'bench' });
  // The bundle finds its native addons beside itself, as in the image.
  const dir = path.join(prepared.dir, 'lib');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(opts.bundleDir, 'auraed.cjs'), path.join(dir, 'auraed.cjs'));
  fs.copyFileSync(opts.sqliteAddon, path.join(dir, 'better_sqlite3.node'));
  const auraed = spawn(opts.node, [path.join(dir, 'auraed.cjs'), '--config', prepared.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  auraed.stdout.on('data', (d: Buffer) => (output += d.toString()));
  auraed.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const clients: AuraeClient[] = [];
  try {
    const deadline = Date.now() + 30_000;
    while (!/"msg":"ready"/.test(output)) {
      if (Date.now() > deadline || auraed.exitCode !== null) throw new Error(`auraed did not get ready:\n${output.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const client = connect({ config: prepared.clientConfigPath });
    clients.push(client);
    for (let i = 0; i < 200; i++) await client.health.check(); // warm up: connection, JIT

    const N = 3000;
    const lat: number[] = [];
    for (let i = 0; i < N; i++) {
      const t = performance.now();
      await client.health.check();
      lat.push(performance.now() - t);
    }
    lat.sort((a, b) => a - b);
    opts.log(`api: ${N} sequential Health.Check: p50 ${percentile(lat, 50).toFixed(3)} ms, p99 ${percentile(lat, 99).toFixed(3)} ms`);

    // Throughput: 32 calls in flight on one connection for 5 s.
    const concurrency = 32;
    let done = 0;
    const until = performance.now() + 5000;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until) {
          await client.health.check();
          done++;
        }
      }),
    );
    const throughput = done / ((performance.now() - t0) / 1000);
    opts.log(`api: ${throughput.toFixed(0)} calls/s with ${concurrency} in flight`);

    // 200 clients, each its own mTLS connection, 10 calls each, all at once.
    const many = Array.from({ length: 200 }, () => connect({ config: prepared.clientConfigPath, timeoutMs: 30_000 }));
    clients.push(...many);
    let errors = 0;
    const c0 = performance.now();
    await Promise.all(
      many.map(async (c) => {
        for (let i = 0; i < 10; i++) {
          try {
            if ((await c.health.check()).status !== 'SERVING') errors++;
          } catch {
            errors++;
          }
        }
      }),
    );
    const clientsWallMs = performance.now() - c0;
    opts.log(`api: 200 clients × 10 calls: ${errors} errors in ${clientsWallMs.toFixed(0)} ms`);
    return {
      sequentialCalls: N,
      p50Ms: percentile(lat, 50),
      p99Ms: percentile(lat, 99),
      throughputPerSec: throughput,
      throughputConcurrency: concurrency,
      clients: many.length,
      callsPerClient: 10,
      clientErrors: errors,
      clientsWallMs,
    };
  } finally {
    for (const c of clients) c.close();
    auraed.kill('SIGTERM');
    await new Promise((r) => auraed.once('exit', r));
    prepared.cleanup();
  }
}
