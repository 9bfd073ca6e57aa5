// Root image benchmark (not a test): the same node (same kernel, same bundles) with /usr unpacked from the
// initramfs into RAM (the layout before issue 13.2) versus /usr as a read-only erofs or squashfs image mounted
// from the initramfs, side by side in one run:
//   time to /init (the kernel's clock, from the node's boot report) and to SERVING (host clock, QEMU start → the
//   first Health answer), guest RAM in use after boot (MemTotal − MemAvailable, and Shmem: tmpfs + the initramfs
//   file), init + auraed PSS, QEMU's memory outside the guest-RAM mapping, and the smallest guest RAM (of
//   RAM_STEPS) each boots and serves in.
//   npx tsx image/bench/root-image.ts [--runs N] [--only NAME,NAME]   (prints a Markdown section)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../aer/sdk';
import { IDENTITY_FW_CFG } from '../../init/identity/document';
import { READY_LINE } from '../../supervisor/ipc';
import { detectAccel, freeLoopbackPort, launchVm } from '../../supervisor/vms';
import { assembleInitramfs, buildImage, REPO_ROOT, type BuiltImage } from '../build';
import type { Compression } from '../initramfs/cpio';
import { rootImageLayout } from '../initramfs/layout';
import { DebugShell } from '../lib/debug-shell';
import { buildRootImage, type RootImageChoice } from '../rootimg';
import { qemuMemory } from './spawn';

const say = (line: string) => console.error(`[bench root] ${line}`);
const argValue = (name: string) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const RUNS = Number(argValue('--runs') ?? 3);
/** Guest RAM sizes tried, largest first, until one does not serve within BOOT_TIMEOUT_MS. */
const RAM_STEPS = [512, 384, 256, 192, 160, 128];
const BOOT_TIMEOUT_MS = 90_000;

interface Variant {
  name: string;
  root: RootImageChoice;
  compression: Compression;
  initrd?: string;
}

const VARIANTS: Variant[] = [
  { name: 'unpacked (before): /usr in the initramfs, zstd', root: 'none', compression: 'zstd' },
  { name: 'erofs lz4hc, initramfs uncompressed', root: 'erofs', compression: 'none' },
  { name: 'erofs lz4hc, initramfs zstd', root: 'erofs', compression: 'zstd' },
  { name: 'squashfs zstd, initramfs uncompressed', root: 'squashfs', compression: 'none' },
];

interface Sample {
  ok: boolean;
  why?: string;
  toInitS?: number;
  servingS?: number;
  /** Host clock: QEMU start → first SERVING. */
  apiS?: number;
  usedMiB?: number;
  shmemMiB?: number;
  pssMiB?: number;
  qemuOverheadMiB?: number;
  /** Kernel start → the kernel running /init ("Run /init as init process", printed with loglevel=7 only). */
  runInitS?: number;
}

async function boot(image: BuiltImage, initrd: string, memoryMiB: number, measure: boolean, extraAppend = ''): Promise<Sample> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-bench-root-'));
  const port = await freeLoopbackPort();
  const t0 = performance.now();
  const vm = await launchVm({
    kernel: image.kernel,
    initrd,
    append: `${image.manifest.cmdline}${measure ? ' aurae.debug_shell=/dev/hvc0' : ''}${extraAppend}`,
    memoryMiB,
    cpus: 1,
    accel: detectAccel(),
    machine: 'microvm',
    forwards: [{ hostPort: port, guestPort: 8443 }],
    qmpSocket: path.join(dir, 'qmp.sock'),
    debugConsoleSocket: measure ? path.join(dir, 'hvc0.sock') : null,
    noReboot: true,
    disks: [],
    fwCfg: [{ name: IDENTITY_FW_CFG, file: image.identity }],
  });
  const client = connect({ config: image.clientConfig, address: `127.0.0.1:${port}`, timeoutMs: 20_000 });
  try {
    await vm.waitForConsole(READY_LINE, BOOT_TIMEOUT_MS);
    let apiS: number | null = null;
    const deadline = Date.now() + 30_000;
    while (apiS === null && Date.now() < deadline) {
      try {
        if ((await client.health.check('')).status === 'SERVING') apiS = (performance.now() - t0) / 1000;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    if (apiS === null) return { ok: false, why: 'READY but no SERVING within 30 s' };
    const report = (await client.discovery.discover()).boot;
    const sample: Sample = { ok: true, apiS, toInitS: report ? report.kernelToInitMs / 1000 : undefined, servingS: report ? report.firstServingMs / 1000 : undefined };
    const runInit = /^\[\s*(\d+\.\d+)\] Run \/init as init process/m.exec(vm.console);
    if (runInit) sample.runInitS = Number(runInit[1]);
    if (measure) {
      await new Promise((r) => setTimeout(r, 3000)); // let start-up garbage settle, as bench.ts does
      const sh = await DebugShell.connect(path.join(dir, 'hvc0.sock'));
      const meminfo = await sh.ok('cat /proc/meminfo');
      const kb = (text: string, field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
      sample.usedMiB = (kb(meminfo, 'MemTotal') - kb(meminfo, 'MemAvailable')) / 1024;
      sample.shmemMiB = kb(meminfo, 'Shmem') / 1024;
      let pss = 0;
      for (const pid of ['1', '$(cat /run/aurae/auraed.pid)']) pss += kb(await sh.ok(`cat /proc/${pid}/smaps_rollup`), 'Pss') / 1024;
      sample.pssMiB = pss;
      sh.close();
      sample.qemuOverheadMiB = qemuMemory(fs.readFileSync(`/proc/${vm.process.pid}/smaps`, 'utf8'), memoryMiB).overheadMiB;
    }
    await (await vm.qmp()).systemPowerdown().catch(() => {});
    await vm.waitForExit(60_000).catch(() => vm.kill());
    return sample;
  } catch (err) {
    const tail = vm.console.split('\n').filter((l) => /init:|Out of memory|Kernel panic|oom|error/i.test(l)).slice(-3).join(' / ');
    return { ok: false, why: `${(err as Error).message.split('\n')[0]}${tail ? ` (console: ${tail})` : ''}` };
  } finally {
    client.close();
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const mean = (xs: (number | undefined)[]) => {
  const v = xs.filter((x): x is number => x !== undefined && !Number.isNaN(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
};
const f = (x: number, d = 2) => (Number.isNaN(x) ? 'n/a' : x.toFixed(d));

async function main(): Promise<void> {
  const only = argValue('--only')?.split(',');
  const image = await buildImage({ log: say });
  const inputs = image.initramfsInputs;
  if (!inputs) throw new Error('bench root: buildImage did not report its inputs');
  const dir = path.join(REPO_ROOT, 'out', 'bench', 'root-image');
  fs.mkdirSync(dir, { recursive: true });
  const epoch = image.manifest.sourceDateEpoch;
  const variants = VARIANTS.filter((v) => !only || only.some((o) => v.name.startsWith(o)));
  const sizes = new Map<string, { initrdMB: number; imageMB: number | null }>();
  for (const v of variants) {
    const root = v.root === 'none' ? null : await buildRootImage(rootImageLayout(inputs), v.root, dir, epoch, say);
    v.initrd = await assembleInitramfs({ ...inputs, rootImage: root && { file: root.file, fstype: root.fstype } }, path.join(dir, `initramfs-${v.root}-${v.compression}.cpio`), v.compression, epoch, say);
    sizes.set(v.name, { initrdMB: fs.statSync(v.initrd).size / 1e6, imageMB: root ? fs.statSync(root.file).size / 1e6 : null });
  }
  const results: { v: Variant; samples: Sample[]; smallest: number | null; failures: string[]; scriptS: number; runInitS: number }[] = [];
  // Round robin (run 1 of each layout, then run 2, …), so a change in the machine's load hits every layout alike.
  const samplesOf = new Map<Variant, Sample[]>(variants.map((v) => [v, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const v of variants) {
      const s = await boot(image, v.initrd!, 1024, true);
      say(`${v.name}: run ${i + 1}/${RUNS}: ${s.ok ? `/init ${f(s.toInitS!)} s, SERVING ${f(s.servingS!)} s (host ${f(s.apiS!)} s), used ${f(s.usedMiB!, 0)} MiB, shmem ${f(s.shmemMiB!, 0)} MiB, PSS ${f(s.pssMiB!, 0)} MiB, QEMU +${f(s.qemuOverheadMiB!, 0)} MiB` : `FAILED: ${s.why}`}`);
      samplesOf.get(v)!.push(s);
    }
  }
  for (const v of variants) {
    const samples = samplesOf.get(v)!;
    // /init's own cost (the busybox script: tmpfs, copy, loop mount, switch_root, exec Node): one boot with the
    // kernel's "Run /init" line on the console (loglevel=7), against the report's Node start on the same clock.
    const timed = await boot(image, v.initrd!, 1024, false, ' loglevel=7');
    const scriptS = timed.ok && timed.runInitS !== undefined && timed.toInitS !== undefined ? timed.toInitS - timed.runInitS : NaN;
    say(`${v.name}: kernel runs /init at ${f(timed.runInitS ?? NaN)} s, Node init starts at ${f(timed.toInitS ?? NaN)} s: /init script ${f(scriptS * 1000, 0)} ms`);
    let smallest: number | null = null;
    const failures: string[] = [];
    for (const mib of RAM_STEPS) {
      const s = await boot(image, v.initrd!, mib, false);
      say(`${v.name}: ${mib} MiB: ${s.ok ? `serves (SERVING ${f(s.servingS!)} s)` : `does not serve: ${s.why}`}`);
      if (!s.ok) {
        failures.push(`${mib} MiB: ${s.why}`);
        break;
      }
      smallest = mib;
    }
    results.push({ v, samples, smallest, failures, scriptS, runInitS: timed.runInitS ?? NaN });
  }
  const lines = [
    `## Root image: /usr unpacked into RAM versus read lazily from a compressed image (same kernel, same run)`,
    '',
    `\`npx tsx image/bench/root-image.ts\` on ${new Date().toISOString().slice(0, 10)} (${os.cpus().length} CPUs, QEMU ${detectAccel().toUpperCase()}, microvm, 1 vCPU; means of ${RUNS} boots at 1 GiB). ` +
      "/init and SERVING are on the guest kernel's clock (the node's boot report); used = MemTotal − MemAvailable after boot; Shmem counts tmpfs and the initramfs's files (rootfs).",
    '',
    '| layout | initramfs (MB) | of which root image (MB) | kernel → Node init started (s) | kernel → SERVING (s) | QEMU start → API (s, host) | guest RAM used (MiB) | Shmem (MiB) | init + auraed PSS (MiB) | QEMU beyond guest RAM (MiB) | smallest guest RAM that serves (of ' + RAM_STEPS.join('/') + ' MiB) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(({ v, samples, smallest }) => {
      const ok = samples.filter((s) => s.ok);
      const size = sizes.get(v.name)!;
      return `| ${v.name} | ${f(size.initrdMB, 1)} | ${size.imageMB === null ? '—' : f(size.imageMB, 1)} | ${f(mean(ok.map((s) => s.toInitS)))} | ${f(mean(ok.map((s) => s.servingS)))} | ${f(mean(ok.map((s) => s.apiS)))} | ${f(mean(ok.map((s) => s.usedMiB)), 0)} | ${f(mean(ok.map((s) => s.shmemMiB)), 0)} | ${f(mean(ok.map((s) => s.pssMiB)), 1)} | ${f(mean(ok.map((s) => s.qemuOverheadMiB)), 0)} | ${smallest === null ? `none` : `${smallest} MiB`} |`;
    }),
    '',
    ...results.flatMap(({ v, failures }) => (failures.length ? [`- ${v.name}, below the smallest: ${failures.join('; ')}`] : [])),
    '',
    '/init itself (one boot each with loglevel=7: the kernel\'s "Run /init" stamp → Node init started; the kernel part is slower with the extra console output):',
    '',
    ...results.map(({ v, scriptS, runInitS }) => `- ${v.name}: kernel runs /init at ${f(runInitS)} s; /init (busybox sh: tmpfs, copy, ${v.root === 'none' ? '' : 'loop mount, '}switch_root, exec) takes ${f(scriptS * 1000, 0)} ms`),
  ];
  fs.writeFileSync(path.join(dir, 'section.md'), lines.join('\n') + '\n');
  console.log(lines.join('\n'));
}

main().catch((err: Error) => {
  say(`failed: ${err.stack ?? err.message}`);
  process.exit(1);
});
