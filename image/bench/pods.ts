// Pods benchmarks (not tests; issue 11's targets). Two parts:
// 1. Host, as root: pull + unpack of the same image from a local registry (supervisor/images/test-registry.ts,
//    Debian's docker-registry on 127.0.0.1) by our images subsystem (createImages: digest-verified blobs, per-layer
//    snapshots) versus `skopeo copy docker://… oci:…` + `umoci unpack` (one merged rootfs). The image is the
//    fixture's busybox base plus data layers (half pseudo-random, half text) so that the transfer and unpacking
//    matter more than the process start-ups.
// 2. In a booted node (TCG here) reaching that registry through QEMU's guestfwd: container start to its first
//    output line (PodService.Run from the host → the line in the container's logs) versus `crun run` on the same
//    bundle inside the guest (spawned by Node in the guest, timed to its first stdout byte); per-pod memory in
//    auraed (its RSS and PSS before and after N long-running pods, delta / N) and per pod in total (the pods'
//    cgroups' memory.current), hence pods per node; cell pod start (Run → the container reported running); and
//    VM-sandbox pod start in the same node (it has its boot volume, so it spawns the pod's child VM from its own
//    image, as qemu-tests/44): Run → running and Run → first log line (read on the child, routed through the node),
//    a few runs only (a child VM boots under TCG inside TCG), the first one building the image's rootfs disk.
import { execFile } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type AuraeClient, connect, type ObservedEvent } from '../../aer/sdk';
import { IDENTITY_FW_CFG } from '../../init/identity/document';
import { createImages } from '../../supervisor/images';
import { addRawLayer, buildTestImages, startTestRegistry, testImagesDir, type TestRegistry } from '../../supervisor/images/test-registry';
import { READY_LINE } from '../../supervisor/ipc';
import { silentLogger } from '../../supervisor/log';
import { openDatabase } from '../../supervisor/store';
import { detectAccel, freeLoopbackPort, launchVm } from '../../supervisor/vms';
import type { BuiltImage } from '../build';
import { DebugShell } from '../lib/debug-shell';
import { GUEST_REGISTRY, GUEST_REGISTRY_HOST, initramfsWithConfig, relayForward, withGuestRegistry } from '../lib/guest-registry';

const exec = promisify(execFile);

export interface PullBenchResult {
  /** Compressed size of the image's layers, and how many. */
  imageBytes: number;
  layers: number;
  oursS: number[];
  skopeoUmociS: number[];
}

export interface GuestPodsBenchResult {
  /** Run RPC → the container's first line in its logs, seen from the host (ms). */
  podFirstLineMs: number[];
  /** Health.Check over the same path: the RPC's share (ms). */
  rpcMs: number[];
  /**
   * Where each of those starts went, from the pod's events (auraed's clock): cell_allocated → container_created
   * (namespaces, overlay, bundle, network), → executable_started (the cell launches the start script), →
   * container_started (the script and crun until crun wrote the pid).
   */
  phasesMs: { prepare: number; launch: number; crun: number }[];
  /** `crun run` of the same bundle in the guest → its first stdout byte (ms). */
  crunFirstLineMs: number[];
  /** Run RPC → the container reported running (crun started it), seen from the host (ms). */
  cellPodStartMs: number[];
  /** VM-sandboxed pods, one after the other (the first builds the image's rootfs disk; later ones reuse it). */
  vmPods: {
    /** Run RPC → the container reported running (inside the child VM; the node asks the child), ms. */
    startMs: number[];
    /** Run RPC → the container's first line in its logs (read on the child through the node), ms. */
    firstLineMs: number[];
    /** Run RPC → Run returned (the child VM spawned, booted and given the pod), ms. */
    runReturnedMs: number[];
  };
  memory: {
    pods: number;
    auraedBefore: { rssKiB: number; pssKiB: number };
    auraedAfter: { rssKiB: number; pssKiB: number };
    /** Sum of the pods' cgroups' memory.current (crun + the container's processes), KiB. */
    podCgroupsKiB: number;
    /** MemTotal and MemAvailable of the node before the pods, KiB. */
    memTotalKiB: number;
    memAvailableBeforeKiB: number;
    memAvailableAfterKiB: number;
  };
}

export interface PodsBenchResult {
  pull: PullBenchResult;
  guest: GuestPodsBenchResult;
}

/** The bench node's memory: room for a VM pod's 512 MiB child VM beside the node itself. */
const NODE_MEMORY_MIB = 2048;
/** A VM pod's deadline (its child VM boots under TCG inside the TCG node). */
const VM_POD_MS = 300_000;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Deterministic incompressible bytes (AES-128-CTR over zeros with a fixed key): same image every build. */
function noise(bytes: number, seed: number): Buffer {
  const key = Buffer.alloc(16, seed);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
}

/** Text that compresses like logs or sources do (about 4:1 with gzip). */
function text(bytes: number, seed: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `${seed}:${i} ${(i * 2654435761 + seed).toString(36)} lorem ipsum dolor sit amet ${i % 97} consectetur ${(i * 7919) % 10007}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

/**
 * The bench image: the fixture's busybox base plus `layers` data layers of `layerMiB` each (half noise, half text),
 * tagged "big" in a copy of the fixture's layout under `dir` (kept between runs).
 */
export async function buildBigImage(dir: string, layers = 3, layerMiB = 8): Promise<{ layout: string; tag: string }> {
  const marker = path.join(dir, `big-${layers}x${layerMiB}.done`);
  const layout = path.join(dir, 'oci');
  if (fs.existsSync(marker)) return { layout, tag: 'big' };
  const test = await buildTestImages(testImagesDir());
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.cpSync(test.layout, layout, { recursive: true });
  let from: string = test.tags.base;
  for (let i = 0; i < layers; i++) {
    const root = path.join(dir, `layer-${i}`);
    fs.mkdirSync(path.join(root, 'data', `big-${i}`), { recursive: true });
    const half = (layerMiB * 1024 * 1024) / 2;
    // Files of a few hundred KiB, as in real images (many files, not one blob).
    for (let f = 0; f < 16; f++) {
      fs.writeFileSync(path.join(root, 'data', `big-${i}`, `noise-${f}.bin`), noise(half / 16, i * 16 + f + 1));
      fs.writeFileSync(path.join(root, 'data', `big-${i}`, `text-${f}.txt`), text(half / 16, i * 16 + f + 1));
    }
    const tar = path.join(dir, `layer-${i}.tar`);
    await exec('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '--mtime=@0', '--sort=name', '-cf', tar, 'data']);
    await addRawLayer(layout, from, 'big', fs.readFileSync(tar), `bench data layer ${i}`);
    from = 'big';
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(tar, { force: true });
  }
  fs.writeFileSync(marker, '');
  return { layout, tag: 'big' };
}

/** Part 1, on the host (root): ours vs skopeo + umoci, alternating, `runs` each. */
export async function benchPull(benchDir: string, log: (l: string) => void, runs = 3): Promise<PullBenchResult> {
  if (process.getuid?.() !== 0) throw new Error('the pods pull bench needs root (layers keep their ownership): run `npm run bench` as root');
  const big = await buildBigImage(path.join(benchDir, 'pods-image'));
  const registry = await startTestRegistry({ auth: 'none' });
  const work = fs.mkdtempSync(path.join(benchDir, 'pods-pull-'));
  try {
    await registry.push(big.layout, big.tag, 'big:latest');
    const ref = `${registry.host}/big:latest`;
    const oursS: number[] = [];
    const skopeoUmociS: number[] = [];
    let imageBytes = 0;
    let layers = 0;
    for (let i = 0; i < runs; i++) {
      const dir = path.join(work, `ours-${i}`);
      const core = createImages({ db: openDatabase(':memory:'), dir, config: { registries: { [registry.host]: { insecure: true, caFile: null, auth: null } } }, log: silentLogger });
      let t = performance.now();
      const record = await core.pull(ref);
      oursS.push((performance.now() - t) / 1000);
      await core.close();
      imageBytes = record.size;
      layers = record.layers.length;
      fs.rmSync(dir, { recursive: true, force: true });

      const oci = path.join(work, `skopeo-${i}`);
      const bundle = path.join(work, `bundle-${i}`);
      t = performance.now();
      await exec('skopeo', ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${oci}:big`]);
      await exec('umoci', ['unpack', '--image', `${oci}:big`, bundle]);
      skopeoUmociS.push((performance.now() - t) / 1000);
      fs.rmSync(oci, { recursive: true, force: true });
      fs.rmSync(bundle, { recursive: true, force: true });
      log(`pods: pull + unpack run ${i + 1}/${runs}: ours ${oursS.at(-1)!.toFixed(2)} s, skopeo + umoci ${skopeoUmociS.at(-1)!.toFixed(2)} s`);
    }
    return { imageBytes, layers, oursS, skopeoUmociS };
  } finally {
    await registry.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Poll (every `intervalMs`, 10 by default) until `probe` yields a value; the interval bounds the measurement error. */
async function until<T>(probe: () => Promise<T | null | undefined | false>, timeoutMs: number, what: string, intervalMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`pods bench: ${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

async function firstLine(client: AuraeClient, pod: string, container: string): Promise<string | null> {
  for await (const entry of client.observe.logs(pod, container, { tail: 1 })) return entry.line;
  return null;
}

function parseKiB(text: string, field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
}

/** Part 2, in a booted node that pulls from a host registry holding the fixture's busybox. */
export async function benchGuestPods(image: BuiltImage, log: (l: string) => void, opts: { runs?: number; pods?: number; vmPods?: number } = {}): Promise<GuestPodsBenchResult> {
  const runs = opts.runs ?? 5;
  const podCount = opts.pods ?? 10;
  const vmPodRuns = opts.vmPods ?? 2;
  const test = await buildTestImages(testImagesDir());
  const registry: TestRegistry = await startTestRegistry({ auth: 'none' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-bench-pods-'));
  let vm: Awaited<ReturnType<typeof launchVm>> | null = null;
  let client: AuraeClient | null = null;
  try {
    await registry.push(test.layout, test.tags.base, 'busybox:latest');
    const port = await freeLoopbackPort();
    vm = await launchVm({
      kernel: image.kernel,
      initrd: await initramfsWithConfig(image, withGuestRegistry, dir),
      append: `${image.manifest.cmdline} aurae.debug_shell=/dev/hvc0`,
      // 2 GiB, as the nested-spawn tests and bench: room for a VM pod's 512 MiB child beside the node itself.
      memoryMiB: NODE_MEMORY_MIB,
      cpus: 1,
      accel: detectAccel(),
      machine: 'microvm',
      forwards: [{ hostPort: port, guestPort: image.manifest.apiPort }],
      guestForwards: [relayForward(GUEST_REGISTRY.address, GUEST_REGISTRY.port, registry.port)],
      qmpSocket: path.join(dir, 'qmp.sock'),
      debugConsoleSocket: path.join(dir, 'hvc0.sock'),
      noReboot: true,
      // The boot volume: the node spawns VM pods' child VMs from its own kernel and initramfs (and QEMU).
      disks: [{ path: image.esp, readOnly: true, format: 'raw' }],
      fwCfg: [{ name: IDENTITY_FW_CFG, file: image.identity }],
    });
    await vm.waitForConsole(READY_LINE, 180_000);
    const sh = await DebugShell.connect(path.join(dir, 'hvc0.sock'));
    client = connect({ config: image.clientConfig, address: `127.0.0.1:${port}`, timeoutMs: 120_000 });
    const c = client;
    const busybox = `${GUEST_REGISTRY_HOST}/busybox:latest`;
    await c.images.pull(busybox);

    // Container start → first line, through the API; then bare crun on the same bundle in the guest.
    const podFirstLineMs: number[] = [];
    const rpcMs: number[] = [];
    const phasesMs: GuestPodsBenchResult['phasesMs'] = [];
    for (let i = 0; i < runs; i++) {
      let t = performance.now();
      await c.health.check();
      rpcMs.push(performance.now() - t);
      const name = `first-${i}`;
      t = performance.now();
      await c.pods.run({ name, containers: [{ name: 'app', image: busybox, command: ['/bin/echo', 'first-line'] }] });
      await until(async () => (await firstLine(c, name, 'app')) === 'first-line', 60_000, `${name}'s first line`);
      podFirstLineMs.push(performance.now() - t);
      const events = await until(async () => {
        const all: ObservedEvent[] = [];
        for await (const e of c.observe.events({ cell: name })) all.push(e);
        return all.some((e) => e.kind === 'container_started') && all;
      }, 30_000, `${name}'s container_started event`);
      const at = (kind: string) => Date.parse(events.find((e) => e.kind === kind)!.time);
      phasesMs.push({ prepare: at('container_created') - at('cell_allocated'), launch: at('executable_started') - at('container_created'), crun: at('container_started') - at('executable_started') });
      log(`pods: container start → first line ${i + 1}/${runs}: ${podFirstLineMs.at(-1)!.toFixed(0)} ms (${JSON.stringify(phasesMs.at(-1))})`);
    }
    // The last pod's bundle (config.json + the mounted overlay rootfs, joining its pinned namespaces) for crun.
    const bundle = `/var/lib/aurae/pods/first-${runs - 1}/app`;
    const script = [
      "const {spawn,execFileSync}=require('child_process');const out=[];let i=0;",
      "const root='/run/aurae/bench-crun';",
      `const next=()=>{if(i++>=${runs}){console.log(JSON.stringify(out));return;}`,
      "const id='bench-'+i;const t=performance.now();let seen=false;",
      `const c=spawn('/usr/bin/crun',['--root',root,'--cgroup-manager=disabled','run','--bundle','${bundle}',id]);`,
      "c.stdout.on('data',()=>{if(!seen){seen=true;out.push(performance.now()-t);}});",
      "c.once('exit',()=>{try{execFileSync('/usr/bin/crun',['--root',root,'delete','--force',id],{stdio:'ignore'})}catch{};next();});};next();",
    ].join('');
    const crunFirstLineMs = JSON.parse((await sh.ok(`/usr/bin/node -e "${script.replace(/"/g, '\\"')}"`, 120_000)).trim().split('\n').pop()!) as number[];
    log(`pods: bare crun run → first line: ${crunFirstLineMs.map((x) => x.toFixed(0)).join(', ')} ms`);
    for (let i = 0; i < runs; i++) await c.pods.remove(`first-${i}`, { force: true });

    // Memory: auraed before/after N long-running pods; each pod's start time (Run → running).
    await new Promise((r) => setTimeout(r, 3000)); // let the garbage of the runs above be collected
    const auraed = async () => {
      const text = await sh.ok('cat /proc/$(cat /run/aurae/auraed.pid)/smaps_rollup');
      return { rssKiB: parseKiB(text, 'Rss'), pssKiB: parseKiB(text, 'Pss') };
    };
    const meminfo = async () => {
      const text = await sh.ok('cat /proc/meminfo');
      return { total: parseKiB(text, 'MemTotal'), available: parseKiB(text, 'MemAvailable') };
    };
    const before = await auraed();
    const memBefore = await meminfo();
    const cellPodStartMs: number[] = [];
    for (let i = 0; i < podCount; i++) {
      const name = `idle-${i}`;
      const t = performance.now();
      await c.pods.run({ name, containers: [{ name: 'app', image: busybox, command: ['/bin/sleep', '3600'] }] });
      await until(async () => (await c.pods.inspect(name)).containers[0]!.state === 'running', 60_000, `${name} to run`);
      cellPodStartMs.push(performance.now() - t);
    }
    log(`pods: cell pod start (Run → running): ${cellPodStartMs.map((x) => x.toFixed(0)).join(', ')} ms`);
    await new Promise((r) => setTimeout(r, 3000));
    const after = await auraed();
    const memAfter = await meminfo();
    const podCgroupsKiB = Number((await sh.ok(`cat ${Array.from({ length: podCount }, (_, i) => `/sys/fs/cgroup/aurae/idle-${i}/memory.current`).join(' ')} | awk '{s+=$1} END {print int(s/1024)}'`)).trim());
    for (let i = 0; i < podCount; i++) await c.pods.remove(`idle-${i}`, { force: true });

    // VM-sandboxed pods in the same node: Run → running (the node asks the child) and → the first log line.
    const vmPods: GuestPodsBenchResult['vmPods'] = { startMs: [], firstLineMs: [], runReturnedMs: [] };
    for (let i = 0; i < vmPodRuns; i++) {
      const name = `vm-${i}`;
      const t = performance.now();
      await c.pods.run({ name, sandbox: 'vm', containers: [{ name: 'app', image: busybox, command: ['/bin/sh', '-c', 'echo first-line; exec sleep 3600'] }] });
      vmPods.runReturnedMs.push(performance.now() - t);
      await until(async () => (await c.pods.inspect(name)).containers[0]!.state === 'running', VM_POD_MS, `${name} to run`, 50);
      vmPods.startMs.push(performance.now() - t);
      const child = connect({ config: image.clientConfig, address: `127.0.0.1:${port}`, targetNode: `aurae/pod-${name}`, timeoutMs: 120_000 });
      try {
        await until(async () => (await firstLine(child, name, 'app')) === 'first-line', VM_POD_MS, `${name}'s first line`, 50);
      } finally {
        child.close();
      }
      vmPods.firstLineMs.push(performance.now() - t);
      log(`pods: VM pod ${i + 1}/${vmPodRuns}: Run returned ${vmPods.runReturnedMs.at(-1)!.toFixed(0)} ms, running ${vmPods.startMs.at(-1)!.toFixed(0)} ms, first line ${vmPods.firstLineMs.at(-1)!.toFixed(0)} ms`);
      await c.pods.remove(name, { force: true });
    }
    sh.close();
    await (await vm.qmp()).systemPowerdown();
    await vm.waitForExit(60_000).catch(() => vm?.kill());
    return {
      podFirstLineMs,
      rpcMs,
      phasesMs,
      crunFirstLineMs,
      cellPodStartMs,
      vmPods,
      memory: {
        pods: podCount,
        auraedBefore: before,
        auraedAfter: after,
        podCgroupsKiB,
        memTotalKiB: memBefore.total,
        memAvailableBeforeKiB: memBefore.available,
        memAvailableAfterKiB: memAfter.available,
      },
    };
  } finally {
    client?.close();
    await vm?.kill();
    await registry.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchPods(image: BuiltImage, benchDir: string, log: (l: string) => void): Promise<PodsBenchResult> {
  const pull = await benchPull(benchDir, log);
  const guest = await benchGuestPods(image, log);
  return { pull, guest };
}

export const PODS_SECTION_BEGIN = '<!-- pods bench: begin (image/bench/pods.ts; `npm run bench -- --only pods` rewrites this part) -->';
export const PODS_SECTION_END = '<!-- pods bench: end -->';

/** The BENCHMARKS.md section, between its markers. */
export function podsSection(r: PodsBenchResult, when: string): string[] {
  const g = r.guest;
  const m = g.memory;
  const ours = mean(r.pull.oursS);
  const base = mean(r.pull.skopeoUmociS);
  const podLine = median(g.podFirstLineMs);
  const rpc = median(g.rpcMs);
  const crun = median(g.crunFirstLineMs);
  const rssPerPod = (m.auraedAfter.rssKiB - m.auraedBefore.rssKiB) / m.pods;
  const pssPerPod = (m.auraedAfter.pssKiB - m.auraedBefore.pssKiB) / m.pods;
  const cgroupPerPod = m.podCgroupsKiB / m.pods;
  const availPerPod = (m.memAvailableBeforeKiB - m.memAvailableAfterKiB) / m.pods;
  // Per pod: the larger of (its cgroups + auraed's share) and what MemAvailable lost per pod (kernel objects too).
  const perPodKiB = Math.max(cgroupPerPod + Math.max(0, rssPerPod), availPerPod);
  const podsPerNode = Math.floor(m.memAvailableBeforeKiB / perPodKiB);
  const mib = (kib: number) => (kib / 1024).toFixed(2);
  const vmStart = g.vmPods.startMs.at(-1) ?? NaN;
  return [
    PODS_SECTION_BEGIN,
    '## Pods (issue 11)',
    '',
    `Measured ${when}. Pull + unpack on this host as root; the rest in one booted node (TCG, 1 vCPU, ${mib(m.memTotalKiB)} MiB usable, with its boot volume for VM pods) pulling from a registry on the host through QEMU's guestfwd.`,
    '',
    `### Pull + unpack: ${r.pull.layers} layers, ${(r.pull.imageBytes / 1e6).toFixed(1)} MB compressed (busybox + data layers, half incompressible), from docker-registry on 127.0.0.1`,
    '',
    '| | runs (s) | mean (s) |',
    '|---|---|---|',
    `| ours (createImages: verify while streaming, per-layer snapshots) | ${r.pull.oursS.map((x) => x.toFixed(2)).join(', ')} | ${ours.toFixed(2)} |`,
    `| \`skopeo copy docker://… oci:…\` + \`umoci unpack\` | ${r.pull.skopeoUmociS.map((x) => x.toFixed(2)).join(', ')} | ${base.toFixed(2)} |`,
    `| **ratio** | | **${(ours / base).toFixed(2)}×** (target ≤ 1.2×) |`,
    '',
    '### Container start → first output line (in the node, TCG)',
    '',
    `| measure | median of ${g.podFirstLineMs.length} (ms) | runs (ms) |`,
    '|---|---|---|',
    `| PodService.Run from the host → the line in the container's logs (image stored: no pull) | ${podLine.toFixed(0)} | ${g.podFirstLineMs.map((x) => x.toFixed(0)).join(', ')} |`,
    `| Health.Check over the same path (the RPC's share) | ${rpc.toFixed(0)} | ${g.rpcMs.map((x) => x.toFixed(0)).join(', ')} |`,
    `| \`crun run\` on the same bundle in the guest (spawned by Node there) → first stdout byte | ${crun.toFixed(0)} | ${g.crunFirstLineMs.map((x) => x.toFixed(0)).join(', ')} |`,
    '',
    `Ratio: **${(podLine / crun).toFixed(2)}×**; without the RPC round trip **${((podLine - rpc) / crun).toFixed(2)}×** (target ≤ 1.5×). The pod's time includes what \`crun run\` alone does not: the cell (cgroup), the pinned namespaces, the overlay mount, the bundle, the pod's network and the executable's start script, plus polling the logs every 10 ms.`,
    '',
    "Where a pod's start goes, from its events (auraed's clock, medians):",
    '',
    '| phase | median (ms) |',
    '|---|---|',
    `| cell_allocated → container_created: pin namespaces, mount the overlay, write the bundle, connect the pod's network | ${median(g.phasesMs.map((p) => p.prepare)).toFixed(0)} |`,
    `| container_created → executable_started: the cell launches the start script (aurae-exec, leaf cgroup) | ${median(g.phasesMs.map((p) => p.launch)).toFixed(0)} |`,
    `| executable_started → container_started: the script, then \`crun run\` until it wrote the pid | ${median(g.phasesMs.map((p) => p.crun)).toFixed(0)} |`,
    `| the rest: the RPC, validation, the pods row (SQLite), the cell's allocation, the first line reaching the logs | ${(podLine - median(g.phasesMs.map((p) => p.prepare + p.launch + p.crun))).toFixed(0)} |`,
    '',
    `### Cell pod start (Run from the host → the container reported running, i.e. crun wrote its pid), TCG`,
    '',
    `| median of ${g.cellPodStartMs.length} (ms) | runs (ms) |`,
    '|---|---|',
    `| ${median(g.cellPodStartMs).toFixed(0)} | ${g.cellPodStartMs.map((x) => x.toFixed(0)).join(', ')} |`,
    '',
    "The 300 ms target is for KVM-class hardware; under TCG every step (fork/exec of sh, crun, unshare, ip; the overlay mount; SQLite's fsync) runs on an emulated CPU. The executable-start table above gives TCG's scale: CellService.Start alone is tens of ms.",
    '',
    '### VM-sandbox pod start vs cell pod start (the same node, TCG)',
    '',
    '| sandbox | Run → container running (ms) | Run → first log line (ms) | Run returned (ms) |',
    '|---|---|---|---|',
    `| cell (median of ${g.cellPodStartMs.length} / ${g.podFirstLineMs.length}; image stored) | ${median(g.cellPodStartMs).toFixed(0)} | ${podLine.toFixed(0)} | |`,
    ...g.vmPods.startMs.map(
      (start, i) =>
        `| vm, run ${i + 1}${i === 0 ? " (builds the image's rootfs disk, mke2fs -d)" : ' (rootfs disk reused)'} | ${start.toFixed(0)} | ${g.vmPods.firstLineMs[i]!.toFixed(0)} | ${g.vmPods.runReturnedMs[i]!.toFixed(0)} |`,
    ),
    '',
    `Ratio, VM pod to cell pod (the last VM run, to the running state): **${(vmStart / median(g.cellPodStartMs)).toFixed(1)}×**. A VM pod's start is a child microVM's boot (its kernel, its initramfs, its own auraed: see the spawn tables; Run returns once the child runs the pod) plus the cell pod's start inside it. Here the child is emulated inside an emulated node; with KVM the child's boot shrinks toward the host tier's spawn time above (not measured here: this host has no KVM).`,
    '',
    `### Memory per pod (${m.pods} pods running \`sleep 3600\`)`,
    '',
    '| measure | value |',
    '|---|---|',
    `| auraed RSS before → after | ${mib(m.auraedBefore.rssKiB)} → ${mib(m.auraedAfter.rssKiB)} MiB: **${mib(rssPerPod)} MiB per pod** (target ≤ 1 MiB) |`,
    `| auraed PSS before → after | ${mib(m.auraedBefore.pssKiB)} → ${mib(m.auraedAfter.pssKiB)} MiB: ${mib(pssPerPod)} MiB per pod |`,
    `| the pods' cgroups (crun + the container), memory.current | ${mib(cgroupPerPod)} MiB per pod |`,
    `| the node's MemAvailable before → after | ${mib(m.memAvailableBeforeKiB)} → ${mib(m.memAvailableAfterKiB)} MiB: ${mib(availPerPod)} MiB per pod |`,
    `| **pods per node before memory runs out** (MemAvailable before the pods ÷ the larger per-pod figure, ${mib(perPodKiB)} MiB) | **~${podsPerNode}** on this ${mib(m.memTotalKiB)} MiB node |`,
    '',
    "auraed's RSS delta is noisy (V8's heap grows in steps and is collected when it likes); the estimate of pods per node uses the larger of cgroups + auraed's delta and MemAvailable's drop, which also counts kernel memory (namespaces, overlay mounts, page cache of the rootfs) that no cgroup of ours is charged for. Pods that do real work need their own working set on top.",
    PODS_SECTION_END,
  ];
}

/** Replace the pods section of BENCHMARKS.md (or insert it before the notes, or append it). */
export function replacePodsSection(markdown: string, section: string[]): string {
  const text = section.join('\n');
  const begin = markdown.indexOf(PODS_SECTION_BEGIN);
  const end = markdown.indexOf(PODS_SECTION_END);
  if (begin >= 0 && end > begin) return markdown.slice(0, begin) + text + markdown.slice(end + PODS_SECTION_END.length);
  const notes = markdown.indexOf('## What the numbers say');
  if (notes >= 0) return `${markdown.slice(0, notes)}${text}\n\n${markdown.slice(notes)}`;
  return `${markdown.trimEnd()}\n\n${text}\n`;
}
