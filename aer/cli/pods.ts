// `aer pod run|list|inspect|stop|rm|logs|exec` (exec: pod-exec.ts): pods of containers (aurae.pods.v0.PodService). `run` takes one
// container from options (`--image`, `-- ARGS…`) or several from `--file pod.json` (the SDK's PodSpec as JSON).
// A pod is a cell and its containers are that cell's executables, so `aer pod logs` reads ObserveService logs
// of cell POD, executable CONTAINER (the same as `aer logs POD CONTAINER`); for a VM pod, on its child node
// pod-POD, through the node (aurae-node routing).
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type AuraeClient, connect, type ContainerSpec, DEFAULTS, type PodInfo, type PodRestart, type PodSpec, type PortPublish, RANGES } from '../sdk';
import { bytes } from './cells';
import { formatDuration } from './format';
import { type ImagesCliIo, pullProgressDisplay, readAuth, shortDigest, type UsageFail, usageFail } from './images';
import { formatLogEntry } from './observe-format';
import { intIn } from './options';
import { type ExecStreams, registerPodExecCommand } from './pod-exec';
import type { Print, WithClient } from './types';

export interface PodRunOptions {
  image?: string;
  file?: string;
  container?: string;
  env?: Record<string, string>;
  restart?: PodRestart;
  memory?: number;
  pids?: number;
  cpuWeight?: number;
  expose?: number[];
  publish?: PortPublish[];
  entrypoint?: string;
  workdir?: string;
  user?: string;
  readOnly?: boolean;
  sandbox?: 'cell' | 'vm';
}

function envPair(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('expected NAME=VALUE');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function port(value: string, previous: number[] = []): number[] {
  return [...previous, intIn(1, 65_535)(value)];
}

/** `--publish NODEPORT:PODPORT[/tcp|udp]`, or `--publish PORT[/tcp|udp]` (the same port on the node). */
export function publishOption(value: string, previous: PortPublish[] = []): PortPublish[] {
  const m = /^(\d{1,5})(?::(\d{1,5}))?(?:\/(tcp|udp))?$/.exec(value);
  if (!m) throw new InvalidArgumentError('expected NODEPORT:PODPORT[/tcp|udp] or PORT[/tcp|udp], e.g. 8080:80 or 53/udp');
  const nodePort = intIn(1, 65_535)(m[1]!);
  const podPort = m[2] === undefined ? nodePort : intIn(1, 65_535)(m[2]);
  const protocol = (m[3] ?? 'tcp') as 'tcp' | 'udp';
  return [...previous.filter((p) => !(p.nodePort === nodePort && (p.protocol ?? 'tcp') === protocol)), { nodePort, podPort, protocol }];
}

/**
 * The PodSpec for `aer pod run` (pure; tested): from --file (NAME, when given, renames it; the other container
 * options are refused with it), or one container from the options. Pod-wide options (--env, --restart, limits,
 * --expose, --publish) apply in both cases, on top of the file's (a --publish replaces the file's same node port).
 */
export function podSpecFromOptions(name: string | undefined, argv: string[], o: PodRunOptions, readFile: (path: string) => string, fail: UsageFail): PodSpec {
  const podWide = (spec: PodSpec): PodSpec => {
    const limits = { ...spec.limits, ...defined({ memoryMax: o.memory, pidsMax: o.pids, cpuWeight: o.cpuWeight }) };
    const expose = [...new Set([...(spec.expose ?? []), ...(o.expose ?? [])])];
    const publish = (o.publish ?? []).reduce((list, p) => [...list.filter((x) => !(x.nodePort === p.nodePort && (x.protocol ?? 'tcp') === p.protocol)), p], spec.publish ?? []);
    return {
      ...spec,
      ...(o.env || spec.env ? { env: { ...spec.env, ...o.env } } : {}),
      ...(o.restart ? { restart: o.restart } : {}),
      ...(o.sandbox ? { sandbox: o.sandbox } : {}),
      ...(Object.keys(limits).length ? { limits } : {}),
      ...(expose.length ? { expose } : {}),
      ...(publish.length ? { publish } : {}),
    };
  };
  if (o.file !== undefined) {
    const clash = (['image', 'container', 'entrypoint', 'workdir', 'user', 'readOnly'] as const).find((k) => o[k] !== undefined);
    if (clash) fail(`--${clash === 'readOnly' ? 'read-only' : clash} describes a container: with --file, put it in the file`);
    if (argv.length) fail('arguments after -- describe a container: with --file, put them in the file ("args")');
    const spec = parsePodFile(o.file, readFile, fail);
    return podWide(name === undefined ? spec : { ...spec, name });
  }
  if (name === undefined) fail('missing the pod name: aer pod run NAME --image IMAGE [-- ARGS...] (or --file pod.json)');
  if (o.image === undefined) fail('missing --image IMAGE (or --file pod.json for several containers)');
  const container: ContainerSpec = {
    name: o.container ?? 'app',
    image: o.image!,
    ...(o.entrypoint !== undefined ? { command: [o.entrypoint] } : {}),
    ...(argv.length ? { args: argv } : {}),
    ...(o.workdir !== undefined ? { workingDir: o.workdir } : {}),
    ...(o.user !== undefined ? { user: o.user } : {}),
    ...(o.readOnly ? { readOnlyRootfs: true } : {}),
  };
  return podWide({ name: name!, containers: [container] });
}

function defined<T extends Record<string, unknown>>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A pod file: JSON of the SDK's PodSpec ({ name, containers: [{ name, image, args, … }], env, restart, … }). */
export function parsePodFile(path: string, readFile: (path: string) => string, fail: UsageFail): PodSpec {
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    return fail(`--file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    return fail(`--file ${path}: not JSON (${(err as Error).message})`);
  }
  const s = spec as Partial<PodSpec> | null;
  if (typeof s !== 'object' || s === null || Array.isArray(s)) return fail(`--file ${path}: expected a JSON object like {"name": "web", "containers": [{"name": "app", "image": "busybox"}]}`);
  if (typeof s.name !== 'string') return fail(`--file ${path}: "name" must be a string (the pod's name)`);
  if (!Array.isArray(s.containers)) return fail(`--file ${path}: "containers" must be a list of {"name", "image", …}`);
  // The node checks every field and names the one it refuses.
  return s as PodSpec;
}

/** "web  running  app running pid 42, side exited 0". */
export function formatPodLine(p: PodInfo): string {
  return `${p.name}  ${p.state}  ${p.containers.map(formatContainerState).join(', ')}`;
}

function formatContainerState(c: PodInfo['containers'][number]): string {
  const exit = c.exit ? ` ${c.exit.signal ?? `code ${c.exit.code}`}${c.exit.oomKilled ? ' (OOM-killed)' : ''}` : '';
  return `${c.name} ${c.state}${c.pid ? ` pid ${c.pid}` : ''}${c.state === 'running' ? '' : exit}${c.restarts ? ` restarts ${c.restarts}` : ''}`;
}

export function formatPodTable(pods: PodInfo[], now: number): string {
  if (pods.length === 0) return 'no pods';
  const rows = [
    ['NAME', 'STATE', 'READY', 'IP', 'IMAGES', 'AGE'],
    ...pods.map((p) => [
      p.name,
      p.state,
      `${p.containers.filter((c) => c.state === 'running').length}/${p.containers.length}`,
      p.ip || '-',
      [...new Set(p.containers.map((c) => c.image))].join(','),
      formatDuration((now - p.createdAt) / 1000),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function formatPod(p: PodInfo): string {
  const lines = [`name      ${p.name}`, `state     ${p.state}`, `sandbox   ${p.sandbox}`, `created   ${new Date(p.createdAt).toISOString()}`];
  if (p.ip) lines.push(`ip        ${p.ip}`);
  if (p.spec) {
    const s = p.spec;
    lines.push(`restart   ${s.restart ?? 'never'}`);
    if (s.limits && Object.keys(s.limits).length) lines.push(`limits    ${Object.entries(s.limits).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    if (s.env && Object.keys(s.env).length) lines.push(`env       ${Object.entries(s.env).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    if (s.expose?.length) lines.push(`expose    ${s.expose.join(' ')}`);
    if (s.publish?.length) lines.push(`publish   ${s.publish.map((m) => `${m.nodePort}:${m.podPort}/${m.protocol ?? 'tcp'}`).join(' ')}`);
  }
  lines.push('containers');
  for (const c of p.containers) {
    const spec = p.spec?.containers.find((x) => x.name === c.name);
    lines.push(`  ${formatContainerState(c)}`);
    lines.push(`    image   ${c.image}${c.imageDigest ? ` (${shortDigest(c.imageDigest)})` : ''}`);
    if (spec?.command) lines.push(`    command ${spec.command.map((a) => JSON.stringify(a)).join(' ')}`);
    if (spec?.args) lines.push(`    args    ${spec.args.map((a) => JSON.stringify(a)).join(' ')}`);
  }
  return lines.join('\n');
}

/** The container `aer pod logs` reads: --container, else the pod's only one. */
export function logsContainer(pod: PodInfo, wanted: string | undefined, fail: UsageFail): string {
  if (wanted !== undefined) {
    if (!pod.containers.some((c) => c.name === wanted)) fail(`pod ${pod.name} has no container "${wanted}": it has ${pod.containers.map((c) => c.name).join(', ')}`);
    return wanted;
  }
  if (pod.containers.length !== 1) fail(`pod ${pod.name} has ${pod.containers.length} containers (${pod.containers.map((c) => c.name).join(', ')}): choose one with --container`);
  return pod.containers[0]!.name;
}

/** A client for node `nodePath`, routed through the node `c` is connected to (same config, address, identity). */
function connectTo(c: AuraeClient, nodePath: string): AuraeClient {
  return connect({ config: c.config.path, address: c.config.address, targetNode: nodePath });
}

export function registerPodCommands(
  program: Command,
  withClient: WithClient,
  print: Print,
  io: ImagesCliIo & { readFile?: (path: string) => string; execStreams?: ExecStreams; connectTo?: (c: AuraeClient, nodePath: string) => AuraeClient },
): void {
  const pod = program.command('pod').description('pods: containers from images, in a cell sandbox (shared network, IPC and UTS namespaces)');
  const now = io.now ?? Date.now;
  const readFile = io.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  registerPodExecCommand(pod, withClient, io.execStreams);

  const run: Command = pod
    .command('run')
    .description('run a pod: aer pod run NAME --image IMAGE [-- ARGS...] (one container), or --file pod.json (several); pulls what the node lacks')
    .argument('[name]', 'pod name (DNS label); with --file, renames the file\'s pod')
    .argument('[args...]', "the container's command line after -- (replaces the image's Cmd)")
    .option('--image <reference>', 'the container image, e.g. busybox or 127.0.0.1:5000/app:1.0')
    .option('--file <pod.json>', 'the pod as JSON: {"name", "containers": [{"name", "image", "command", "args", "env", "workingDir", "user"}], "env", "restart", "limits", "expose", "publish": [{"nodePort", "podPort", "protocol"}]}')
    .option('--container <name>', 'container name (default app)')
    .option('--env <NAME=VALUE>', 'environment variable for every container (repeatable)', envPair)
    .addOption(new Option('--restart <policy>', 'when a container exits (default never)').choices(['never', 'on-failure', 'always']))
    .addOption(new Option('--sandbox <kind>', 'cell (default: namespaces + a cell on the node) or vm (a child microVM booted from the node\'s image)').choices(['cell', 'vm']))
    .option('--memory <bytes>', "memory.max of the pod's cell (K/M/G suffixes)", bytes)
    .option('--pids <n>', "pids.max of the pod's cell", intIn(...RANGES.pidsMax))
    .option('--cpu-weight <n>', `cpu.weight ${RANGES.cpuWeight.join('..')}`, intIn(...RANGES.cpuWeight))
    .option('--expose <port>', 'a port the pod listens on, published on the same node port (repeatable)', port)
    .option('--publish <[node:]pod[/proto]>', 'map a node port to a pod port, e.g. 8080:80, 80 (same port) or 53/udp (repeatable)', publishOption)
    .option('--entrypoint <program>', "replaces the image's Entrypoint")
    .option('--workdir <dir>', "working directory (absolute; default the image's)")
    .option('--user <user>', "uid, uid:gid, name or name:group (default the image's)")
    .option('--read-only', 'mount the root filesystem read-only')
    .option('--username <name>', 'registry user for pulling the images (password from --password-stdin)')
    .option('--password-stdin', 'read the registry password from stdin (one line)')
    .option('-q, --quiet', 'no pull progress');
  run.action(
    withClient(async (c, output, name: string | undefined, argv: string[], options: PodRunOptions & { username?: string; passwordStdin?: boolean; quiet?: boolean }) => {
      const fail = usageFail(run);
      const spec = podSpecFromOptions(name, argv, { ...options, readOnly: options.readOnly || undefined }, readFile, fail);
      const auth = await readAuth(options, io, fail);
      const display = pullProgressDisplay(io.stderrIsTTY === true && io.errPartial !== undefined, (text) => (io.errPartial ? io.errPartial(text) : io.err(text.replace(/\n$/, ''))));
      const info = await c.pods.run(spec, { auth, onProgress: options.quiet ? undefined : (p) => display.update(p) });
      display.finish();
      print(output, info, formatPodLine(info));
    }),
  );

  pod
    .command('list')
    .alias('ls')
    .description('every pod with its state')
    .action(
      withClient(async (c, output) => {
        const pods = await c.pods.list();
        print(output, pods, formatPodTable(pods, now()));
      }),
    );

  pod
    .command('inspect')
    .description('one pod: its spec and each container\'s state, pid, image digest and last exit')
    .argument('<name>', 'pod name')
    .action(
      withClient(async (c, output, name: string) => {
        const info = await c.pods.inspect(name);
        print(output, info, formatPod(info));
      }),
    );

  pod
    .command('stop')
    .description('stop every container: stop signal, SIGKILL after the grace period; the pod stays (stopped)')
    .argument('<name>', 'pod name')
    .option('--grace <ms>', `grace period in milliseconds (default ${DEFAULTS.stopGraceMs})`, intIn(...RANGES.stopGraceMs))
    .action(
      withClient(async (c, output, name: string, options: { grace?: number }) => {
        const info = await c.pods.stop(name, { graceMs: options.grace });
        print(output, info, `stopped ${formatPodLine(info)}`);
      }),
    );

  pod
    .command('rm')
    .alias('remove')
    .description('remove a pod: its containers\' files and its cell (refused while a container runs, unless --force)')
    .argument('<name>', 'pod name')
    .option('--force', 'kill running containers first (no grace)')
    .action(
      withClient(async (c, output, name: string, options: { force?: boolean }) => {
        await c.pods.remove(name, { force: options.force ?? false });
        print(output, { name, removed: true }, `removed ${name}`);
      }),
    );

  const logs: Command = pod
    .command('logs')
    .description("a container's output (stdout and stderr): the logs of the pod's cell and the container's executable")
    .argument('<name>', 'pod name')
    .option('--container <name>', 'which container (default: the only one)')
    .option('-n, --tail <lines>', 'only the last N lines (0: none, useful with -f)', intIn(...RANGES.logTail))
    .option('-f, --follow', 'keep printing new lines until interrupted')
    .option('-t, --timestamps', 'prefix each line with its time and stream');
  logs.action(
    withClient(async (c, output, name: string, options: { container?: string; tail?: number; follow?: boolean; timestamps?: boolean }) => {
      const info = await c.pods.inspect(name);
      const container = logsContainer(info, options.container, usageFail(logs));
      // A VM pod's containers are executables of its child node pod-NAME: read there, routed through this node.
      let source: AuraeClient = c;
      if (info.sandbox === 'vm') {
        const vm = (await c.vms.list()).find((v) => v.name === `pod-${name}`);
        if (!vm?.nodePath || vm.state !== 'running') {
          throw new Error(`pod ${name} runs in a VM sandbox and its VM pod-${name} is ${vm?.state ?? 'gone'}: its logs lived in that VM and went with it`);
        }
        source = (io.connectTo ?? connectTo)(c, vm.nodePath);
      }
      try {
        // The pod's cell is the pod's name; each container is an executable of that cell (supervisor/pods).
        for await (const entry of source.observe.logs(name, container, { tail: options.tail, follow: options.follow ?? false })) {
          print(output, entry, formatLogEntry(entry, options.timestamps ?? false));
        }
      } finally {
        if (source !== c) source.close();
      }
    }),
  );
}
