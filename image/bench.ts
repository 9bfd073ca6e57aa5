// `npm run bench` (not a test): boot → API ready for the Node image versus a busybox /init baseline on the SAME
// kernel in the same run, where that boot time goes (the phase durations init and auraed print on the console),
// image sizes, and memory (PSS and RSS) of init + auraed after boot. Writes BENCHMARKS.md.
// `npm run bench -- --only pods` runs only the pods part (image/bench/pods.ts) and rewrites its section in place;
// `--only cri` the same for the CRI part (image/bench/cri.ts; `--churn-seconds N` shortens its churn loops from 60 s).
// `--only exec` boots one node and prints the executable-start rows and the memory rows (BENCHMARKS.md untouched;
// `--no-snapshot`: auraed started without its V8 startup snapshot).
// `--only nested [--memory MiB]` boots one node and times child spawns inside it, printing each child's boot report.
// `--only boot` boots the busybox baseline and the node with and without auraed's V8 startup snapshot
// (AURAE_SNAPSHOT=off on the kernel command line), AURAE_BENCH_RUNS times each, and prints the boot rows and
// where the time went (BENCHMARKS.md untouched).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type BootReport, connect } from '../aer/sdk';
import { DebugShell } from './lib/debug-shell';
import { READY_LINE } from '../supervisor/ipc';
import { detectAccel, freeLoopbackPort, launchVm, type VmSpec } from '../supervisor/vms';
import { buildBaselineInitramfs } from './baseline';
import { benchApi, type ApiBenchResult } from './bench/api';
import { benchCri, criSection, replaceCriSection } from './bench/cri';
import { benchTimeline, phaseRows, timelineSummary, type BootTimeline } from './bench/boot-phases';
import { benchExecStart, type ExecBenchResult } from './bench/exec';
import { benchNested } from './bench/nested';
import { benchPods, podsSection, replacePodsSection } from './bench/pods';
import { benchSpawn } from './bench/spawn';
import { benchUefi } from './bench/uefi';
import { IDENTITY_FW_CFG } from '../init/identity/document';
import { assembleInitramfs, buildImage, REPO_ROOT, type BuiltImage } from './build';
import { $ } from 'zx';

const RUNS = Number(process.env.AURAE_BENCH_RUNS ?? 3);
/** Parts that run alone with `--only NAME`. */
const ALONE = ['pods', 'cri', 'exec', 'boot', 'nested'] as const;
/** The kernel command line's addition that starts auraed without its startup snapshot (init/service/command.ts). */
const NO_SNAPSHOT = 'AURAE_SNAPSHOT=off';
const say = (line: string) => console.error(`[bench] ${line}`);

/** `identity`: the node's identity document, handed over fw_cfg (the image holds no key; init/identity). */
function spec(kernel: string, initrd: string, append: string, dir: string, port: number, debug: boolean, identity?: string): VmSpec {
  return {
    kernel,
    initrd,
    append,
    memoryMiB: 1024,
    cpus: 1,
    accel: detectAccel(),
    machine: 'microvm',
    forwards: [{ hostPort: port, guestPort: 8443 }],
    qmpSocket: path.join(dir, 'qmp.sock'),
    debugConsoleSocket: debug ? path.join(dir, 'hvc0.sock') : null,
    noReboot: true,
    disks: [],
    fwCfg: identity ? [{ name: IDENTITY_FW_CFG, file: identity }] : [],
  };
}

interface BootSample {
  readyLine: number;
  apiReady: number | null;
  /** Where the boot's time went: the node's boot report (Discover), else its console (empty for the busybox baseline). */
  timeline: BootTimeline;
}

/** One boot: seconds from QEMU start to the READY line, and (for the node) to the first Health answer. */
async function bootOnce(kernel: string, initrd: string, image: BuiltImage | null, extraCmdline = ''): Promise<BootSample> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-bench-'));
  const port = await freeLoopbackPort();
  const t0 = performance.now();
  const vm = await launchVm(spec(kernel, initrd, `${image ? image.manifest.cmdline : 'panic=-1 quiet'}${extraCmdline ? ` ${extraCmdline}` : ''}`, dir, port, false, image?.identity));
  try {
    await vm.waitForConsole(READY_LINE, 180_000);
    const readyLine = (performance.now() - t0) / 1000;
    let apiReady: number | null = null;
    let report: BootReport | undefined;
    if (image) {
      const client = connect({ config: image.clientConfig, address: `127.0.0.1:${port}` });
      try {
        const deadline = Date.now() + 60_000;
        while (apiReady === null && Date.now() < deadline) {
          try {
            if ((await client.health.check('')).status === 'SERVING') apiReady = (performance.now() - t0) / 1000;
          } catch {
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        // The node's own account of its boot (every phase on the kernel's clock), cross-checked with the console below.
        if (apiReady !== null) report = (await client.discovery.discover()).boot;
      } finally {
        client.close();
      }
      await (await vm.qmp()).systemPowerdown();
    }
    await vm.waitForExit(60_000).catch(() => vm.kill());
    const { timeline, disagreements } = benchTimeline(report, vm.console);
    for (const d of disagreements) say(`  boot report and console disagree: ${d}`);
    return { readyLine, apiReady, timeline };
  } finally {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface BootVariant {
  name: string;
  initrd: string;
  image: BuiltImage | null;
  /** Added to the image's kernel command line. */
  extraCmdline?: string;
}

type BootResult = { name: string; samples: BootSample[] };

/** Each variant booted RUNS times, in order, on the image's kernel. */
async function bootVariants(image: BuiltImage, variants: BootVariant[]): Promise<BootResult[]> {
  const results: BootResult[] = [];
  for (const v of variants) {
    const samples: BootSample[] = [];
    for (let i = 0; i < RUNS; i++) {
      const s = await bootOnce(image.kernel, v.initrd, v.image, v.extraCmdline);
      say(`${v.name}: run ${i + 1}/${RUNS}: READY ${fmt(s.readyLine)} s, API ${fmt(s.apiReady)} s`);
      if (v.image) say(`  ${timelineSummary(s.timeline)}`);
      samples.push(s);
    }
    results.push({ name: v.name, samples });
  }
  return results;
}

/** The boot table, the ratio to the baseline (results[0]) of the shipped node (results[1]), and where the time went. */
function bootSection(results: BootResult[], variants: BootVariant[]): string[] {
  const base = mean(results[0]!.samples.map((s) => s.readyLine));
  const nodeApi = mean(results[1]!.samples.map((s) => s.apiReady ?? NaN));
  const nodeVariants = results.filter((r) => variants.find((v) => v.name === r.name)?.image);
  return [
    '## Boot → ready (same kernel, same run)',
    '',
    '| /init | READY line (s) | API answers Health over mTLS (s) | runs (READY / API) |',
    '|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.name} | ${fmt(mean(r.samples.map((s) => s.readyLine)))} | ${r.samples[0]!.apiReady === null ? '—' : fmt(mean(r.samples.map((s) => s.apiReady ?? NaN)))} | ${r.samples
          .map((s) => `${fmt(s.readyLine)}/${s.apiReady === null ? '—' : fmt(s.apiReady)}`)
          .join(', ')} |`,
    ),
    '',
    `API ready ÷ busybox baseline: **${(nodeApi / base).toFixed(2)}×** (target ≤ 2.0×).`,
    '',
    '## Where boot time goes (the node\'s boot report, means of the runs above)',
    '',
    "init and auraed time every phase of their start on the kernel's clock (supervisor/phases) and the node returns them in Discover's boot report (`aer version -o json`); the bench reads that and checks it against the phase lines on the console (image/bench/boot-phases.ts). Node start → init's first line comes from the console only.",
    '',
    `| phase | ${nodeVariants.map((r) => r.name).join(' | ')} |`,
    `|---|${nodeVariants.map(() => '---|').join('')}`,
    ...phaseRows(nodeVariants.map((r) => ({ timelines: r.samples.map((s) => s.timeline) }))),
    '',
  ];
}

interface MemorySample {
  process: string;
  pssMiB: number;
  rssMiB: number;
}

/** In one booted node: memory of init and auraed after boot, then executable start latency. */
async function inGuest(image: BuiltImage, extraCmdline = ''): Promise<{ mem: MemorySample[]; exec: ExecBenchResult }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-bench-'));
  const port = await freeLoopbackPort();
  const vm = await launchVm(spec(image.kernel, image.initramfs, `${image.manifest.cmdline} aurae.debug_shell=/dev/hvc0${extraCmdline ? ` ${extraCmdline}` : ''}`, dir, port, true, image.identity));
  try {
    await vm.waitForConsole(READY_LINE, 180_000);
    await new Promise((r) => setTimeout(r, 3000)); // let start-up garbage settle
    const sh = await DebugShell.connect(path.join(dir, 'hvc0.sock'));
    const out: MemorySample[] = [];
    for (const [name, pidExpr] of [['init (PID 1)', '1'], ['auraed', '$(cat /run/aurae/auraed.pid)']] as const) {
      const text = await sh.ok(`cat /proc/${pidExpr}/smaps_rollup`);
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
      out.push({ process: name, pssMiB: kb('Pss') / 1024, rssMiB: kb('Rss') / 1024 });
    }
    const client = connect({ config: image.clientConfig, address: `127.0.0.1:${port}`, timeoutMs: 60_000 });
    let exec: ExecBenchResult;
    try {
      exec = await benchExecStart(client, sh, say);
    } finally {
      client.close();
    }
    sh.close();
    await (await vm.qmp()).systemPowerdown();
    await vm.waitForExit(60_000).catch(() => vm.kill());
    return { mem: out, exec };
  } finally {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Bytes the (sparse) file really occupies. */
function diskAllocated(file: string): number {
  return fs.statSync(file).blocks * 512;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (x: number | null) => (x === null || Number.isNaN(x) ? 'n/a' : x.toFixed(2));

async function main(): Promise<void> {
  const onlyAt = process.argv.indexOf('--only');
  const only = onlyAt >= 0 ? (process.argv[onlyAt + 1] ?? '') : null;
  if (only !== null && !(ALONE as readonly string[]).includes(only)) throw new Error(`--only: "${only}" is not a part that runs alone: ${ALONE.join(', ')}`);
  const memAt = process.argv.indexOf('--memory');
  const nestedMemoryMiB = memAt >= 0 ? Number(process.argv[memAt + 1]) : undefined;
  if (nestedMemoryMiB !== undefined && !(Number.isInteger(nestedMemoryMiB) && nestedMemoryMiB >= 128)) throw new Error(`--memory: "${process.argv[memAt + 1] ?? ''}" is not a whole number of MiB ≥ 128`);
  const image = await buildImage({ log: say });
  // The pods part pulls and unpacks layers on this host with the syscall addon, which `npm test` builds first too.
  say('host syscall addon and aurae-exec (native/build/)');
  await $({ stdio: 'inherit' })`npx tsx native/build.ts`;
  const benchDir = path.join(REPO_ROOT, 'out', 'bench');
  fs.mkdirSync(benchDir, { recursive: true });
  const today = new Date().toISOString().slice(0, 10);
  const churnAt = process.argv.indexOf('--churn-seconds');
  const churnSeconds = churnAt >= 0 ? Number(process.argv[churnAt + 1]) : 60;
  if (!(churnSeconds > 0)) throw new Error(`--churn-seconds: "${process.argv[churnAt + 1] ?? ''}" is not a positive number of seconds`);
  if (only === 'cri') {
    const cri = await benchCri(image, say, { churnSeconds });
    const file = path.join(REPO_ROOT, 'BENCHMARKS.md');
    const section = criSection(cri, `by \`npm run bench -- --only cri\` on ${today} (${os.cpus().length} CPUs, QEMU ${detectAccel().toUpperCase()})`);
    fs.writeFileSync(file, replaceCriSection(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n', section));
    console.log(section.join('\n'));
    return;
  }
  if (only === 'exec') {
    // `--only exec --no-snapshot`: the same with auraed started without its startup snapshot (memory comparison).
    const { mem, exec } = await inGuest(image, process.argv.includes('--no-snapshot') ? NO_SNAPSHOT : '');
    for (const m of mem) console.log(`| ${m.process} | PSS ${m.pssMiB.toFixed(1)} MiB | RSS ${m.rssMiB.toFixed(1)} MiB |`);
    console.log(`| CellService.Start from the host | ${exec.startMedianMs.toFixed(1)} ms |`);
    console.log(`| Health.Check over the same path | ${exec.rpcMedianMs.toFixed(1)} ms |`);
    console.log(`| raw child_process.spawn in the guest | ${exec.rawSpawnMedianMs.toFixed(1)} ms |`);
    console.log(`Start samples (ms): ${exec.startSamplesMs.map((x) => x.toFixed(1)).join(', ')}`);
    console.log(`Start ÷ raw spawn: ${(exec.startMedianMs / exec.rawSpawnMedianMs).toFixed(2)}×; without the RPC round trip: ${((exec.startMedianMs - exec.rpcMedianMs) / exec.rawSpawnMedianMs).toFixed(2)}× (medians of ${exec.runs})`);
    return;
  }
  if (only === 'nested') {
    // `--only nested [--memory MiB]`: the nested spawns alone, with each child's own boot report (BENCHMARKS.md untouched).
    const nested = await benchNested(image, say, RUNS, nestedMemoryMiB);
    console.log(`nested spawn → child API (s): ${nested.spawnToApiMs.map((t) => (t / 1000).toFixed(2)).join(', ')}; ${nested.memoryMiB} MiB child, ${nested.accel}, ${nested.overheadMiB.toFixed(0)} MiB beyond guest RAM`);
    return;
  }
  if (only === 'pods') {
    const pods = await benchPods(image, benchDir, say);
    const file = path.join(REPO_ROOT, 'BENCHMARKS.md');
    const section = podsSection(pods, `by \`npm run bench -- --only pods\` on ${today} (${os.cpus().length} CPUs, QEMU ${detectAccel().toUpperCase()})`);
    fs.writeFileSync(file, replacePodsSection(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n', section));
    console.log(section.join('\n'));
    return;
  }
  const baseline = await buildBaselineInitramfs(benchDir);
  const compression = image.manifest.inputs.compression as string;
  const variants: BootVariant[] = [
    { name: 'busybox /init (baseline)', initrd: baseline, image: null },
    { name: `Node PID 1 + auraed, initramfs ${compression}`, initrd: image.initramfs, image },
  ];
  // What auraed's V8 startup snapshot buys: the same image, auraed started from auraed.cjs (image/bundle/snapshot.ts).
  const withoutSnapshot: BootVariant = { name: `Node PID 1 + auraed without its snapshot (${NO_SNAPSHOT}), initramfs ${compression}`, initrd: image.initramfs, image, extraCmdline: NO_SNAPSHOT };
  if (only === 'boot') {
    const results = await bootVariants(image, [...variants, withoutSnapshot]);
    console.log(bootSection(results, [...variants, withoutSnapshot]).join('\n'));
    return;
  }
  // Variant: the same initramfs uncompressed (boots faster, ships bigger).
  const uncompressed = path.join(benchDir, 'initramfs-uncompressed.cpio');
  if (image.manifest.inputs.compression !== 'none' && image.initramfsInputs) {
    say('writing an uncompressed copy of the initramfs for comparison');
    await assembleInitramfs(image.initramfsInputs, uncompressed, 'none', image.manifest.sourceDateEpoch, say);
    variants.push({ name: 'Node PID 1 + auraed, initramfs uncompressed', initrd: uncompressed, image });
  }
  variants.push(withoutSnapshot);
  const results = await bootVariants(image, variants);
  const { mem, exec } = await inGuest(image);
  const runtime = image.initramfsInputs;
  if (!runtime) throw new Error('bench: buildImage did not report its inputs');
  const spawnResult = await benchSpawn(image, say);
  const nested = await benchNested(image, say);
  const uefi = await benchUefi(image, say, RUNS);
  const pods = await benchPods(image, benchDir, say);
  const cri = await benchCri(image, say, { churnSeconds });
  const api: ApiBenchResult = await benchApi({ node: runtime.node, bundleDir: path.dirname(runtime.bundles['auraed.cjs']), sqliteAddon: runtime.sqliteAddon, log: say });

  const base = mean(results[0]!.samples.map((s) => s.readyLine));
  const nodeVariants = results.filter((r) => variants.find((v) => v.name === r.name)?.image);
  const nodeApi = mean(results[1]!.samples.map((s) => s.apiReady ?? NaN));
  const kernelMB = image.manifest.outputs.kernel.size / 1e6;
  const initrdMB = image.manifest.outputs.initramfs.size / 1e6;
  const pss = mem.reduce((a, m) => a + m.pssMiB, 0);
  const rss = mem.reduce((a, m) => a + m.rssMiB, 0);
  const accel = detectAccel();
  const lines = [
    '# Benchmarks',
    '',
    `Written by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)} (${os.cpus().length} CPUs, QEMU ${accel.toUpperCase()}, microvm, 1 vCPU, 1 GiB). ` +
      `Each boot is timed from QEMU's start; means of ${RUNS} runs. These are measurements, not tests.`,
    '',
    ...bootSection(results, variants),
    '## Size',
    '',
    '| artifact | MB |',
    '|---|---|',
    `| kernel (bzImage) | ${kernelMB.toFixed(1)} |`,
    `| initramfs (${image.manifest.inputs.compression as string}) | ${initrdMB.toFixed(1)} |`,
    ...(image.manifest.outputs.rootImage
      ? [`| of which the root image (/usr, ${(image.manifest.inputs.rootImage as { format: string }).format}, read lazily) | ${(image.manifest.outputs.rootImage.size / 1e6).toFixed(1)} |`]
      : []),
    `| **total** | **${(kernelMB + initrdMB).toFixed(1)}** (target ≤ 40) |`,
    `| UKI (\\EFI\\BOOT\\BOOTX64.EFI: stub + kernel + initramfs + command line) | ${(image.manifest.outputs.uki.size / 1e6).toFixed(1)} |`,
    `| esp.img: the boot volume (UKI, kernel, initramfs, QEMU with its libraries) | ${(image.manifest.outputs.esp.size / 1e6).toFixed(1)} |`,
    `| disk.raw (GPT + ESP; STATE is made at first boot on the target disk) | ${(image.manifest.outputs.disk.size / 1e6).toFixed(1)} (${(diskAllocated(image.disk) / 1e6).toFixed(1)} allocated) |`,
    '',
    '## UEFI disk boot (OVMF on q35, disk.raw on a 1 GiB disk) versus direct kernel boot (microvm), same run',
    '',
    '| boot | API ready (s) |',
    '|---|---|',
    `| direct kernel boot (above) | ${fmt(nodeApi)} |`,
    `| UEFI, first boot (creates and formats STATE) | ${fmt(uefi.apiReadyS[0] ?? null)} |`,
    `| UEFI, later boots (mean of ${uefi.apiReadyS.length - 1}) | ${uefi.apiReadyS.length > 1 ? fmt(mean(uefi.apiReadyS.slice(1))) : 'n/a'} |`,
    '',
    `The difference is firmware (OVMF initialises PCI, finds the ESP, loads the ${(image.manifest.outputs.uki.size / 1e6).toFixed(0)} MB UKI through the EFI stub) and the q35 machine, all emulated under TCG here.`,
    '',
    '## Memory after boot (from /proc/PID/smaps_rollup)',
    '',
    '| process | PSS (MiB) | RSS (MiB) |',
    '|---|---|---|',
    ...mem.map((m) => `| ${m.process} | ${m.pssMiB.toFixed(1)} | ${m.rssMiB.toFixed(1)} |`),
    `| **init + auraed** | **${pss.toFixed(1)}** (target ≤ 64) | **${rss.toFixed(1)}** |`,
    '',
    'PSS splits the pages the two Node processes share (the runtime\'s text) between them; RSS counts them twice.',
    '',
    '## API (auraed bundle on the image runtime (Node 22), on this host; Unix socket, mTLS, TLS 1.3)',
    '',
    '| measure | value | target |',
    '|---|---|---|',
    `| unary Health.Check latency, ${api.sequentialCalls} sequential calls | p50 ${api.p50Ms.toFixed(3)} ms, p99 ${api.p99Ms.toFixed(3)} ms | p50 ≤ 1 ms |`,
    `| throughput, ${api.throughputConcurrency} calls in flight on one connection | ${api.throughputPerSec.toFixed(0)} calls/s | ≥ 5,000 |`,
    `| ${api.clients} concurrent clients (own connection each) × ${api.callsPerClient} calls | ${api.clientErrors} errors, ${api.clientsWallMs.toFixed(0)} ms | no error |`,
    '',
    'Measured on the host because the guest\'s emulated CPU (TCG) would time the emulator, not auraed.',
    '',
    '## Spawn: child microVM from the node\'s own image (host tier, TCG)',
    '',
    '| measure | value |',
    '|---|---|',
    `| Spawn call → the child answers Health through its parent (runs) | ${spawnResult.spawnToApiMs.map((t) => (t / 1000).toFixed(2)).join(', ')} s |`,
    `| the parent's own cold boot by \`npm start\`'s path (API ready, above) | ${fmt(nodeApi)} s |`,
    `| ratio (mean) | **${(mean(spawnResult.spawnToApiMs) / 1000 / nodeApi).toFixed(2)}×** (target ≤ 1.5×) |`,
    `| QEMU process for a ${spawnResult.memoryMiB} MiB guest (max over runs) | RSS ${spawnResult.qemuRssMiB.toFixed(0)} MiB, of which **${spawnResult.overheadMiB.toFixed(0)} MiB** outside the guest-RAM mapping (target ≤ ${accel === 'kvm' ? 64 : 100} under ${accel.toUpperCase()}) |`,
    '',
    '## Spawn, nested tier: inside a booted node (itself TCG on this host), with the QEMU from its boot volume',
    '',
    '| measure | value |',
    '|---|---|',
    `| Spawn call (host → node) → the child answers Health through the node (runs) | ${nested.spawnToApiMs.map((t) => (t / 1000).toFixed(2)).join(', ')} s (child accelerator: ${nested.accel}) |`,
    `| ratio to the node's own cold boot (mean) | **${(mean(nested.spawnToApiMs) / 1000 / nodeApi).toFixed(2)}×** (target ≤ 3×) |`,
    `| child QEMU for a ${nested.memoryMiB} MiB guest, outside the guest-RAM mapping (max) | ${nested.overheadMiB.toFixed(0)} MiB (target ≤ ${nested.accel === 'kvm' ? 64 : 100} under ${nested.accel.toUpperCase()}) |`,
    '',
    '## Executable start (in the booted node, TCG)',
    '',
    '| measure | median of ' + exec.runs + ' (ms) |',
    '|---|---|',
    `| CellService.Start from the host (RPC through the forwarded port; returns once the program runs in its cell) | ${exec.startMedianMs.toFixed(1)} |`,
    `| Health.Check over the same path (the RPC's share) | ${exec.rpcMedianMs.toFixed(1)} |`,
    `| raw child_process.spawn of the same program inside the guest, to its 'spawn' event | ${exec.rawSpawnMedianMs.toFixed(1)} |`,
    '',
    `Start ÷ raw spawn: **${(exec.startMedianMs / exec.rawSpawnMedianMs).toFixed(2)}×**; without the RPC round trip: **${((exec.startMedianMs - exec.rpcMedianMs) / exec.rawSpawnMedianMs).toFixed(2)}×** (target ≤ 2×).`,
    '',
    ...podsSection(pods, `in the same run (${today})`),
    '',
    ...criSection(cri, `in the same run (${today})`),
    '',
  ];
  const notesFile = path.join(REPO_ROOT, 'image', 'bench-notes.md');
  if (fs.existsSync(notesFile)) lines.push(fs.readFileSync(notesFile, 'utf8'));
  fs.writeFileSync(path.join(REPO_ROOT, 'BENCHMARKS.md'), lines.join('\n'));
  console.log(lines.join('\n'));
}

main().catch((err: Error) => {
  say(`failed: ${err.message}`);
  process.exit(1);
});
