// CRI benchmarks (not tests; issue 12 item 4), in one booted node (TCG here) that pulls the fixture's busybox from a
// registry on the host through QEMU's guestfwd, its CRI socket (/run/aurae/cri.sock) reached from the host through
// a relay in the guest (image/lib/guest-relay.ts, as qemu-tests/45) — the way kubelet drives a node, minus kubelet:
// 1. Start latency: RunPodSandbox + CreateContainer + StartContainer until the container's first output line,
//    versus the native PodService.Run of the same image and command, alternating, median of N each. Both are timed
//    from the host to the line in the node's log store (observe), polled every 10 ms on both sides.
// 2. Churn: for a bounded time, CRI pods created and removed one after the other (RunPodSandbox, CreateContainer,
//    StartContainer, StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox), pods/s; then the same time
//    through the native API (Run, Stop, Remove). auraed's RSS (/proc/PID/status VmRSS in the guest) before and after
//    each, and what is left listed afterwards (nothing should be).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { type AuraeClient, connect } from '../../aer/sdk';
import { IDENTITY_FW_CFG } from '../../init/identity/document';
import { call } from '../../supervisor/cri/testing';
import { CreateContainerRequest, type DeepPartial, RunPodSandboxRequest, RuntimeServiceClient } from '../../supervisor/gen/runtime/v1/api';
import { buildTestImages, startTestRegistry, testImagesDir, type TestRegistry } from '../../supervisor/images/test-registry';
import { READY_LINE } from '../../supervisor/ipc';
import { detectAccel, freeLoopbackPort, launchVm } from '../../supervisor/vms';
import type { BuiltImage } from '../build';
import { DebugShell } from '../lib/debug-shell';
import { GUEST_REGISTRY, GUEST_REGISTRY_HOST, initramfsWithConfig, relayForward, withGuestRegistry } from '../lib/guest-registry';
import { startGuestRelay } from '../lib/guest-relay';
import { PODS_SECTION_END } from './pods';

export interface ChurnResult {
  /** Pods created, started, stopped and removed. */
  pods: number;
  /** Wall time of the loop (the last pod finishes after the bound), s. */
  seconds: number;
  /** auraed's VmRSS before and after the loop (each read after a short settle), KiB. */
  rssBeforeKiB: number;
  rssAfterKiB: number;
  /** Pods (CRI: sandboxes; native: aurae pods) still listed after the loop. */
  leftover: number;
}

export interface CriBenchResult {
  /** RunPodSandbox → CreateContainer → StartContainer → the first line in the logs, from the host (ms). */
  criFirstLineMs: number[];
  /** The same split by call: RunPodSandbox returned, CreateContainer returned, StartContainer returned (ms from the start). */
  criPhasesMs: { sandbox: number; create: number; start: number }[];
  /** PodService.Run of the same image and command → the first line in the logs (ms). */
  nativeFirstLineMs: number[];
  cri: ChurnResult;
  native: ChurnResult;
  /** The node's memory (MiB). */
  memoryMiB: number;
}

export interface CriBenchOptions {
  /** Start-latency runs per API (default 5). */
  runs?: number;
  /** How long each churn loop runs (default 60 s). */
  churnSeconds?: number;
}

const NODE_MEMORY_MIB = 1024;
/** The guest port of the relay to /run/aurae/cri.sock (the host forwards a free port to it). */
const CRI_RELAY_PORT = 10010;
const LOG_DIR = '/var/log/pods';
const FIRST_LINE = 'first-line';

/** The median (the mean of the two middle values for an even count); NaN for none. */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Pods per second of a churn loop. */
export function podsPerSecond(r: Pick<ChurnResult, 'pods' | 'seconds'>): number {
  return r.seconds > 0 ? r.pods / r.seconds : NaN;
}

/** VmRSS out of /proc/PID/status, KiB. */
export function parseVmRssKiB(status: string): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error('cri bench: /proc/PID/status has no VmRSS line: is the pid a live process?');
  return Number(m[1]);
}

/** What auraed's RSS did over a churn loop, in words. */
export function growthNote(r: ChurnResult): string {
  const delta = r.rssAfterKiB - r.rssBeforeKiB;
  const pct = (100 * delta) / r.rssBeforeKiB;
  const perPod = r.pods > 0 ? delta / r.pods : NaN;
  const sign = delta >= 0 ? '+' : '−';
  const abs = (x: number) => Math.abs(x);
  const summary = `${sign}${(abs(delta) / 1024).toFixed(2)} MiB (${sign}${abs(pct).toFixed(1)} %, ${sign}${abs(perPod).toFixed(1)} KiB per pod)`;
  // Under ~5 % is within the step of V8's heap (it grows in chunks and is collected when it likes).
  if (pct <= 5) return `${summary}: no growth beyond the noise of V8's heap`;
  return `${summary}: **grows**; a longer run tells a leak (growth in proportion to pods) from a heap that settles higher`;
}

/** Poll (every `intervalMs`, 10 by default) until `probe` yields a value; the interval bounds the measurement error. */
async function until<T>(probe: () => Promise<T | null | undefined | false>, timeoutMs: number, what: string, intervalMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`cri bench: ${what}: not within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

async function firstLine(client: AuraeClient, pod: string, container: string): Promise<string | null> {
  for await (const entry of client.observe.logs(pod, container, { tail: 1 })) return entry.line;
  return null;
}

/** The aurae names of a CRI sandbox and container (supervisor/cri: one model, two APIs). */
const podOf = (sandboxId: string) => `k8s-${sandboxId.slice(0, 12)}`;
const containerOf = (containerId: string) => `c-${containerId.slice(0, 12)}`;

export async function benchCri(image: BuiltImage, log: (l: string) => void, opts: CriBenchOptions = {}): Promise<CriBenchResult> {
  const runs = opts.runs ?? 5;
  const churnMs = (opts.churnSeconds ?? 60) * 1000;
  const test = await buildTestImages(testImagesDir());
  const registry: TestRegistry = await startTestRegistry({ auth: 'none' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-bench-cri-'));
  let vm: Awaited<ReturnType<typeof launchVm>> | null = null;
  let client: AuraeClient | null = null;
  let rt: InstanceType<typeof RuntimeServiceClient> | null = null;
  let sh: DebugShell | null = null;
  try {
    await registry.push(test.layout, test.tags.base, 'busybox:latest');
    const port = await freeLoopbackPort();
    const criPort = await freeLoopbackPort();
    vm = await launchVm({
      kernel: image.kernel,
      initrd: await initramfsWithConfig(image, withGuestRegistry, dir),
      append: `${image.manifest.cmdline} aurae.debug_shell=/dev/hvc0`,
      memoryMiB: NODE_MEMORY_MIB,
      cpus: 1,
      accel: detectAccel(),
      machine: 'microvm',
      forwards: [
        { hostPort: port, guestPort: image.manifest.apiPort },
        { hostPort: criPort, guestPort: CRI_RELAY_PORT },
      ],
      guestForwards: [relayForward(GUEST_REGISTRY.address, GUEST_REGISTRY.port, registry.port)],
      qmpSocket: path.join(dir, 'qmp.sock'),
      debugConsoleSocket: path.join(dir, 'hvc0.sock'),
      noReboot: true,
      disks: [],
      fwCfg: [{ name: IDENTITY_FW_CFG, file: image.identity }],
    });
    await vm.waitForConsole(READY_LINE, 180_000);
    const shell = (sh = await DebugShell.connect(path.join(dir, 'hvc0.sock')));
    await startGuestRelay(shell, CRI_RELAY_PORT, '/run/aurae/cri.sock');
    const c = (client = connect({ config: image.clientConfig, address: `127.0.0.1:${port}`, timeoutMs: 120_000 }));
    const r = (rt = new RuntimeServiceClient(`127.0.0.1:${criPort}`, credentials.createInsecure()));
    await until(async () => (await call(r, r.version, { version: 'v1' }, 2000)).runtimeName === 'aurae', 60_000, 'the CRI through the relay', 250);
    const busybox = `${GUEST_REGISTRY_HOST}/busybox:latest`;
    await c.images.pull(busybox); // stored once: neither API pulls below

    const runSandbox = async (name: string) =>
      (
        await call(
          r,
          r.runPodSandbox,
          RunPodSandboxRequest.fromPartial(<DeepPartial<RunPodSandboxRequest>>{
            config: { metadata: { name, uid: `uid-${name}`, namespace: 'bench', attempt: 0 }, logDirectory: `${LOG_DIR}/bench_${name}`, labels: { bench: 'cri' } },
          }),
          120_000,
        )
      ).podSandboxId;
    const createContainer = async (sandbox: string, command: string[]) =>
      (
        await call(
          r,
          r.createContainer,
          CreateContainerRequest.fromPartial(<DeepPartial<CreateContainerRequest>>{
            podSandboxId: sandbox,
            config: { metadata: { name: 'app', attempt: 0 }, image: { image: busybox }, command, logPath: 'app/0.log' },
          }),
          60_000,
        )
      ).containerId;
    const removeSandbox = async (id: string) => {
      await call(r, r.stopPodSandbox, { podSandboxId: id }, 60_000);
      await call(r, r.removePodSandbox, { podSandboxId: id }, 60_000);
    };

    // 1. Start → first line, CRI and native alternating.
    const criFirstLineMs: number[] = [];
    const criPhasesMs: CriBenchResult['criPhasesMs'] = [];
    const nativeFirstLineMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      let t = performance.now();
      const sandbox = await runSandbox(`first-${i}`);
      const sandboxMs = performance.now() - t;
      const id = await createContainer(sandbox, ['/bin/echo', FIRST_LINE]);
      const createMs = performance.now() - t;
      await call(r, r.startContainer, { containerId: id }, 60_000);
      const startMs = performance.now() - t;
      await until(async () => (await firstLine(c, podOf(sandbox), containerOf(id))) === FIRST_LINE, 60_000, `CRI sandbox first-${i}'s first line`);
      criFirstLineMs.push(performance.now() - t);
      criPhasesMs.push({ sandbox: sandboxMs, create: createMs, start: startMs });

      const name = `native-${i}`;
      t = performance.now();
      await c.pods.run({ name, containers: [{ name: 'app', image: busybox, command: ['/bin/echo', FIRST_LINE] }] });
      await until(async () => (await firstLine(c, name, 'app')) === FIRST_LINE, 60_000, `${name}'s first line`);
      nativeFirstLineMs.push(performance.now() - t);
      log(`cri: start → first line ${i + 1}/${runs}: CRI ${criFirstLineMs.at(-1)!.toFixed(0)} ms (${JSON.stringify(criPhasesMs.at(-1), (_, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}), native ${nativeFirstLineMs.at(-1)!.toFixed(0)} ms`);
      await removeSandbox(sandbox);
      await c.pods.remove(name, { force: true });
    }

    // 2. Churn, CRI then native, each for churnMs.
    const rss = async () => {
      await new Promise((res) => setTimeout(res, 3000)); // let the garbage of what came before be collected
      return parseVmRssKiB(await shell.ok('cat /proc/$(cat /run/aurae/auraed.pid)/status'));
    };
    const churn = async (what: string, once: (i: number) => Promise<void>, leftover: () => Promise<number>): Promise<ChurnResult> => {
      const rssBeforeKiB = await rss();
      const t = performance.now();
      let pods = 0;
      while (performance.now() - t < churnMs) await once(pods++);
      const seconds = (performance.now() - t) / 1000;
      const rssAfterKiB = await rss();
      const result = { pods, seconds, rssBeforeKiB, rssAfterKiB, leftover: await leftover() };
      log(`cri: churn ${what}: ${pods} pods in ${seconds.toFixed(1)} s (${podsPerSecond(result).toFixed(2)} pods/s), auraed RSS ${rssBeforeKiB} → ${rssAfterKiB} KiB, ${result.leftover} left`);
      return result;
    };
    const cri = await churn(
      'CRI',
      async (i) => {
        const sandbox = await runSandbox(`churn-${i}`);
        const id = await createContainer(sandbox, ['/bin/sleep', '3600']);
        await call(r, r.startContainer, { containerId: id }, 60_000);
        await call(r, r.stopContainer, { containerId: id, timeout: 0n }, 60_000);
        await call(r, r.removeContainer, { containerId: id }, 60_000);
        await removeSandbox(sandbox);
      },
      async () => (await call(r, r.listPodSandbox, {})).items.length,
    );
    const native = await churn(
      'native',
      async (i) => {
        const name = `churn-${i}`;
        await c.pods.run({ name, containers: [{ name: 'app', image: busybox, command: ['/bin/sleep', '3600'] }] });
        await c.pods.stop(name, { graceMs: 0 });
        await c.pods.remove(name);
      },
      async () => (await c.pods.list()).length,
    );
    await (await vm.qmp()).systemPowerdown();
    await vm.waitForExit(60_000).catch(() => vm?.kill());
    return { criFirstLineMs, criPhasesMs, nativeFirstLineMs, cri, native, memoryMiB: NODE_MEMORY_MIB };
  } finally {
    sh?.close();
    rt?.close();
    client?.close();
    await vm?.kill();
    await registry.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const CRI_SECTION_BEGIN = '<!-- cri bench: begin (image/bench/cri.ts; `npm run bench -- --only cri` rewrites this part) -->';
export const CRI_SECTION_END = '<!-- cri bench: end -->';

const ms = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
const mib = (kib: number) => (kib / 1024).toFixed(2);

/** The BENCHMARKS.md section, between its markers. */
export function criSection(r: CriBenchResult, when: string): string[] {
  const cri = median(r.criFirstLineMs);
  const native = median(r.nativeFirstLineMs);
  const phase = (f: (p: CriBenchResult['criPhasesMs'][number]) => number) => median(r.criPhasesMs.map(f));
  const sandbox = phase((p) => p.sandbox);
  const create = phase((p) => p.create - p.sandbox);
  const start = phase((p) => p.start - p.create);
  const criRate = podsPerSecond(r.cri);
  const nativeRate = podsPerSecond(r.native);
  const churnRow = (name: string, c: ChurnResult) =>
    `| ${name} | ${c.pods} in ${c.seconds.toFixed(1)} s | **${podsPerSecond(c).toFixed(2)}** | ${mib(c.rssBeforeKiB)} → ${mib(c.rssAfterKiB)} MiB: ${growthNote(c)} | ${c.leftover} |`;
  return [
    CRI_SECTION_BEGIN,
    '## Kubernetes CRI (issue 12)',
    '',
    `Measured ${when}, in one booted node (TCG, 1 vCPU, ${r.memoryMiB} MiB) pulling busybox from a registry on the host through QEMU's guestfwd; the host drives the node's CRI socket (/run/aurae/cri.sock) through a relay in the guest, as kubelet would drive it locally, and the native API over mTLS through the forwarded port. The image is stored before the runs: neither side pulls.`,
    '',
    '### Start → first output line: CRI versus the native API (alternating runs)',
    '',
    `| flow | median of ${r.criFirstLineMs.length} (ms) | runs (ms) |`,
    '|---|---|---|',
    `| CRI: RunPodSandbox + CreateContainer + StartContainer → the line in the container's logs | ${cri.toFixed(0)} | ${ms(r.criFirstLineMs)} |`,
    `| native: PodService.Run of the same image and command → the same line | ${native.toFixed(0)} | ${ms(r.nativeFirstLineMs)} |`,
    '',
    `CRI ÷ native: **${(cri / native).toFixed(2)}×**. Where the CRI flow's time goes (medians): RunPodSandbox ${sandbox.toFixed(0)} ms (the pod's cell, pinned namespaces, network), CreateContainer ${create.toFixed(0)} ms (overlay, bundle, the CRI log file), StartContainer ${start.toFixed(0)} ms (hands the container to the pod's cell), then ${(cri - phase((p) => p.start)).toFixed(0)} ms to the first line (the start script, \`crun run\`, the output reaching the log store, polled every 10 ms). The CRI makes three round trips where Run makes one and keeps its own records (ids, metadata, log path) beside the pod's; the container's start itself is the same work on both sides (one model, two APIs).`,
    '',
    `### Pod churn (create, start, stop and remove one pod after the other, ${Math.round(r.cri.seconds)} s each)`,
    '',
    '| API | pods | pods/s | auraed VmRSS before → after | left listed |',
    '|---|---|---|---|---|',
    churnRow('CRI (RunPodSandbox, CreateContainer, StartContainer, StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox)', r.cri),
    churnRow('native (PodService Run, Stop, Remove)', r.native),
    '',
    `CRI churn ÷ native churn: **${(criRate / nativeRate).toFixed(2)}×** the rate. Each pod runs \`sleep 3600\` and is stopped with no grace (SIGKILL). RSS is read from /proc/PID/status after 3 s of quiet; V8's heap grows in steps and is collected when it likes, so a small rise over one run is noise, not a leak — a leak grows with the number of pods.`,
    CRI_SECTION_END,
  ];
}

/** Replace the cri section of BENCHMARKS.md (or put it after the pods section, or before the notes, or at the end). */
export function replaceCriSection(markdown: string, section: string[]): string {
  const text = section.join('\n');
  const begin = markdown.indexOf(CRI_SECTION_BEGIN);
  const end = markdown.indexOf(CRI_SECTION_END);
  if (begin >= 0 && end > begin) return markdown.slice(0, begin) + text + markdown.slice(end + CRI_SECTION_END.length);
  const after = markdown.indexOf(PODS_SECTION_END);
  if (after >= 0) {
    const at = after + PODS_SECTION_END.length;
    return `${markdown.slice(0, at)}\n\n${text}${markdown.slice(at)}`;
  }
  const notes = markdown.indexOf('## What the numbers say');
  if (notes >= 0) return `${markdown.slice(0, notes)}${text}\n\n${markdown.slice(notes)}`;
  return `${markdown.trimEnd()}\n\n${text}\n`;
}
