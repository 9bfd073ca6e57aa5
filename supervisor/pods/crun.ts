// How a container is run (pure): where its files are, the OCI spec input for supervisor/pods/oci-spec.ts, and the
// executable of the pod's cell that runs it with `crun run`.
//
// Layout. Persistent, under <state.dir>/pods/<pod>/<container>/: config.json (the bundle), rootfs/ (the overlay
// mount point), upper/ and work/ (the overlay's writable layer). Per boot (tmpfs), under /run/aurae/pods/<pod>/:
// ns/{net,ipc,uts} (the pod's pinned namespaces) and `ready` (written once this boot's preparation — namespaces
// pinned, root filesystems mounted, bundles written — is done). crun's own state: /run/aurae/crun.
//
// Sandbox. A pod's shared namespaces are not held by an infra ("pause") process: they are pinned by bind mounts of
// /proc/PID/ns/* (as CRI-O's pinns does), made by busybox `unshare --net=FILE --ipc=FILE --uts=FILE` which also
// sets the hostname and brings lo up. Containers join them by path; nothing has to be supervised, and a container
// restart or an auraed restart finds them where they were.
//
// Cgroups. crun runs with `--cgroup-manager=disabled`: the container stays in the cgroup crun was started in,
// the executable's leaf (<pod cell>/exe.<container>). So the pod cell's limits apply, the leaf's memory.events
// reports the container's OOM kills, Stop's SIGTERM → grace → cgroup.kill reaches every process of the
// container, and cells' reconcile sees no cgroup it does not know.
//
// Start. The executable is a small sh script: it waits (bounded) for the pod's `ready` file, so the cells'
// reconcile may start a container before the pods' reconcile has remounted its root filesystem after a reboot;
// it deletes what a killed crun left in its state directory; then it execs `crun run` in the foreground (crun
// forwards signals to the container's init and exits with its status). crun writes the container's pid to
// `<run>/<pod>/<container>.pid` once the container runs (the script removes a stale one first): until then the
// container is "created", not "running" (runtime.ts).
//
// Container limits (ContainerSpec.resources). crun does not touch cgroups here, so it would not apply
// linux.resources: the start script writes them into its own cgroup — the executable's leaf, which crun and the
// container stay in — before it execs crun (containerCgroupLimits: file/value pairs after the script's arguments).
// The pod's limits stay on the cell above.
//
// Stop. The executable's stopSignal is the image's StopSignal (default SIGTERM): Stop sends it to crun alone, which
// forwards it to the container's init; after the grace the leaf is killed (cgroup.kill) as for any executable.
import path from 'node:path';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { AuraeError } from '../errors';
import { DEFAULT_PATH, type ExecutableSpec, RESTART_DEFAULTS } from '../executables';
import { RUN_DIR } from '../config/node-paths';
import type { ResolvedUser } from './container-config';
import type { ContainerProcess } from './container-config';
import type { OciSpecInput } from './oci-spec';
import type { ContainerResources, ContainerSpec, PodSpec } from './spec';

/** crun's state root (tmpfs: crun state is per boot). */
export const CRUN_STATE_ROOT = `${RUN_DIR}/crun`;
/** The pods' per-boot files: pinned namespaces and ready markers. */
export const PODS_RUN_DIR = `${RUN_DIR}/pods`;
/** How long a container's start waits for its pod to be prepared. */
export const READY_WAIT_S = 60;

export interface ContainerPaths {
  dir: string;
  bundle: string;
  config: string;
  rootfs: string;
  upper: string;
  work: string;
}

export interface PodPaths {
  /** <state.dir>/pods/<pod> */
  dir: string;
  /** /run/aurae/pods/<pod> */
  runDir: string;
  ns: { net: string; ipc: string; uts: string };
  ready: string;
  container(name: string): ContainerPaths;
  /** Where crun writes the container's pid once it runs: <runDir>/<container>.pid. */
  pidFile(container: string): string;
  /** A tty container's console socket (auraed listens; crun sends the terminal's master): <runDir>/<container>.console. */
  consoleSocket(container: string): string;
  /** A stdin container's stdin, a FIFO auraed holds open: <runDir>/<container>.stdin. */
  stdinFifo(container: string): string;
}

/** See PodPaths.consoleSocket (the CRI's side finds it from the pod's runDir). */
export function consoleSocketPath(runDir: string, container: string): string {
  return path.join(runDir, `${container}.console`);
}

/** See PodPaths.stdinFifo. */
export function stdinFifoPath(runDir: string, container: string): string {
  return path.join(runDir, `${container}.stdin`);
}

/** Preconditions: `pod` and container names are validated DNS labels. */
export function podPaths(podsDir: string, pod: string, runDir = PODS_RUN_DIR): PodPaths {
  const dir = path.join(podsDir, pod);
  const run = path.join(runDir, pod);
  return {
    dir,
    runDir: run,
    ns: { net: path.join(run, 'ns', 'net'), ipc: path.join(run, 'ns', 'ipc'), uts: path.join(run, 'ns', 'uts') },
    ready: path.join(run, 'ready'),
    pidFile: (name) => path.join(run, `${name}.pid`),
    consoleSocket: (name) => consoleSocketPath(run, name),
    stdinFifo: (name) => stdinFifoPath(run, name),
    container(name) {
      const c = path.join(dir, name);
      return { dir: c, bundle: c, config: path.join(c, 'config.json'), rootfs: path.join(c, 'rootfs'), upper: path.join(c, 'upper'), work: path.join(c, 'work') };
    },
  };
}

/** crun's container id: "<pod>.<container>" (labels hold no dot, so the pair is unambiguous). */
export function containerId(pod: string, container: string): string {
  return `${pod}.${container}`;
}

/** Where crun is: env AURAE_CRUN, then each PATH directory, then /usr/bin/crun (the image's). */
export function findCrun(env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = existsSync): string {
  const candidates = [...(env.AURAE_CRUN ? [env.AURAE_CRUN] : []), ...(env.PATH ?? DEFAULT_PATH).split(':').filter(Boolean).map((d) => path.join(d, 'crun')), '/usr/bin/crun'];
  const found = candidates.find((c) => exists(c));
  if (found) return found;
  throw new AuraeError('FAILED_PRECONDITION', `crun was not found (looked in ${[...new Set(candidates)].join(', ')}): pods need crun, as in the aurae image; set AURAE_CRUN to its path`);
}

/**
 * The container's limits as the start script reads them: `<bundle>/cgroup-limits`, one "file value" line per
 * write (containerCgroupLimits). A file, not arguments: UpdateContainerResources rewrites it, and every later
 * start of the executable (its restart policy, the cells' reconcile after an auraed restart) applies the new values.
 */
export const CGROUP_LIMITS_FILE = 'cgroup-limits';

/** The cgroup-limits file's text (empty for none). */
export function cgroupLimitsText(limits: readonly (readonly [string, string])[]): string {
  return limits.map(([file, value]) => `${file} ${value}\n`).join('');
}

/**
 * The start script; positional arguments: ready file, container id, bundle, crun, crun's state root, pid file,
 * then cgroup file/value pairs to write into its own cgroup (the "0::" line of /proc/self/cgroup; executables
 * stored before CGROUP_LIMITS_FILE have them), then the lines of <bundle>/cgroup-limits (memory.swap.max is
 * skipped where the kernel has no swap accounting).
 */
export const START_SCRIPT = [
  'ready=$1 id=$2 bundle=$3 crun=$4 root=$5 pidfile=$6',
  `limits=$bundle/${CGROUP_LIMITS_FILE}`,
  'if [ "$#" -gt 6 ] || [ -s "$limits" ]; then',
  // AURAE_CGROUP_ROOT: where cgroup2 is mounted (tests point it at a directory of their own).
  '  cg=; while read -r l; do case $l in 0::*) cg=${l#0::} ;; esac; done < /proc/self/cgroup',
  '  [ -n "$cg" ] || { echo "aurae: container $id: no cgroup v2 line in /proc/self/cgroup: container limits need cgroup2" >&2; exit 125; }',
  '  cg=${AURAE_CGROUP_ROOT:-/sys/fs/cgroup}$cg; shift 6',
  '  while [ "$#" -ge 2 ]; do',
  '    echo "$2" > "$cg/$1" || { echo "aurae: container $id: writing $1 = $2 in $cg failed: is the controller enabled for the pod\'s cell?" >&2; exit 125; }',
  '    shift 2',
  '  done',
  '  if [ -s "$limits" ]; then',
  '    while read -r f v; do',
  '      [ -n "$f" ] || continue',
  '      if [ "$f" = memory.swap.max ] && [ ! -e "$cg/$f" ]; then continue; fi',
  '      echo "$v" > "$cg/$f" || { echo "aurae: container $id: writing $f = $v in $cg failed: is the controller enabled for the pod\'s cell?" >&2; exit 125; }',
  '    done < "$limits"',
  '  fi',
  'fi',
  'n=0',
  'while [ ! -e "$ready" ]; do',
  `  n=$((n + 1)); if [ "$n" -gt ${READY_WAIT_S * 10} ]; then echo "aurae: container $id: its pod was not prepared within ${READY_WAIT_S} s ($ready is missing): see auraed's log" >&2; exit 125; fi`,
  '  sleep 0.1',
  'done',
  // A crun killed with its container (stop after the grace, OOM, auraed restart) leaves its state behind.
  // Only then: another crun start costs tens of ms on a slow CPU.
  'if [ -d "$root/$id" ]; then "$crun" --root "$root" delete --force "$id" >/dev/null 2>&1; fi',
  'rm -f "$pidfile"',
  // Attach (supervisor/cri/container-stdio.ts): a kept stdin is a FIFO auraed holds open; a terminal's master goes
  // to auraed's console socket.
  'if [ -n "$AURAE_STDIN" ]; then',
  '  [ -p "$AURAE_STDIN" ] || { echo "aurae: container $id: its stdin $AURAE_STDIN is missing: auraed makes it at CreateContainer (was auraed restarted? create the container again)" >&2; exit 125; }',
  '  exec < "$AURAE_STDIN"',
  'fi',
  'set -- --root "$root" --cgroup-manager=disabled run --pid-file "$pidfile"',
  'if [ -n "$AURAE_CONSOLE_SOCKET" ]; then set -- "$@" --console-socket "$AURAE_CONSOLE_SOCKET"; fi',
  'exec "$crun" "$@" --bundle "$bundle" "$id"',
].join('\n');

/**
 * The signal that stops a container: its image's StopSignal ("SIGQUIT", "QUIT", "3", any case), SIGTERM when the
 * image names none. null when the image names a signal this node does not know (the caller warns, uses SIGTERM).
 */
export function stopSignalOf(imageStopSignal: string): NodeJS.Signals | null {
  const raw = imageStopSignal.trim();
  if (raw === '') return 'SIGTERM';
  const signals = osConstants.signals as Record<string, number>;
  if (/^\d+$/.test(raw)) {
    const name = Object.keys(signals).find((k) => signals[k] === Number(raw));
    return (name as NodeJS.Signals | undefined) ?? null;
  }
  const name = raw.toUpperCase().startsWith('SIG') ? raw.toUpperCase() : `SIG${raw.toUpperCase()}`;
  return name in signals ? (name as NodeJS.Signals) : null;
}

export interface CrunExecutableInput {
  crun: string;
  stateRoot?: string;
  pod: Pick<PodSpec, 'name' | 'restart'>;
  container: string;
  paths: Pick<ContainerPaths, 'bundle'>;
  ready: string;
  /** Where crun writes the container's pid (PodPaths.pidFile). */
  pidFile: string;
  /** Sent to crun on Stop (stopSignalOf the image's StopSignal); default SIGTERM. */
  stopSignal?: NodeJS.Signals;
  /** Written into the leaf before crun runs (containerCgroupLimits). */
  cgroupLimits?: readonly (readonly [string, string])[];
  /** A tty container: crun sends its terminal to this socket (PodPaths.consoleSocket). */
  consoleSocket?: string;
  /** A stdin container: its stdin is this FIFO (PodPaths.stdinFifo). */
  stdinFifo?: string;
}

/**
 * The container's own limits as cgroup v2 writes into its leaf: memory.max; cpu.weight from CPU shares (the
 * kubelet's cgroup v1 unit, converted as runc and crun do: 1 + (shares - 2) * 9999 / 262142); cpu.max
 * "quota period" (period default 100000 µs).
 */
export function containerCgroupLimits(r: ContainerResources | undefined): [string, string][] {
  if (!r) return [];
  const out: [string, string][] = [];
  if (r.memoryLimit !== undefined) out.push(['memory.max', String(r.memoryLimit)]);
  // memory + swap as the CRI gives it; on cgroup v2 the swap alone (crun's conversion): 0 when equal.
  if (r.memorySwapLimit !== undefined && r.memoryLimit !== undefined) out.push(['memory.swap.max', String(Math.max(0, r.memorySwapLimit - r.memoryLimit))]);
  if (r.cpuShares !== undefined) out.push(['cpu.weight', String(1 + Math.floor(((r.cpuShares - 2) * 9999) / 262_142))]);
  if (r.cpuQuota !== undefined || r.cpuPeriod !== undefined) out.push(['cpu.max', `${r.cpuQuota ?? 'max'} ${r.cpuPeriod ?? 100_000}`]);
  return out;
}

/** The executable of the pod's cell that runs one container. */
export function crunExecutable(input: CrunExecutableInput): ExecutableSpec {
  const id = containerId(input.pod.name, input.container);
  return {
    name: input.container,
    command: '',
    args: [
      '/bin/sh',
      '-c',
      START_SCRIPT,
      'aurae-container',
      input.ready,
      id,
      input.paths.bundle,
      input.crun,
      input.stateRoot ?? CRUN_STATE_ROOT,
      input.pidFile,
      ...(input.cgroupLimits ?? []).flat(),
    ],
    description: `container ${input.container} of pod ${input.pod.name}`,
    env: { PATH: DEFAULT_PATH, ...(input.consoleSocket ? { AURAE_CONSOLE_SOCKET: input.consoleSocket } : {}), ...(input.stdinFifo ? { AURAE_STDIN: input.stdinFifo } : {}) },
    cwd: '/',
    uid: null,
    gid: null,
    restart: { mode: input.pod.restart, ...RESTART_DEFAULTS },
    stopSignal: input.stopSignal ?? 'SIGTERM',
  };
}

export interface ContainerSpecInput {
  process: ContainerProcess;
  user: ResolvedUser;
  paths: Pick<ContainerPaths, 'rootfs'>;
  pod: PodPaths;
  readOnlyRootfs: boolean;
  /** The executable's leaf cgroup, relative to the cgroup2 root (crun does not manage it: see above). */
  cgroupsPath: string;
  /** The container's optional extensions (absent: the defaults). */
  container?: Pick<ContainerSpec, 'mounts' | 'security' | 'sysctls' | 'resources' | 'tty'>;
}

/**
 * The input of ociSpec (oci-spec.ts) for one container: its own pid, mount and cgroup namespaces, the pod's network,
 * ipc and uts ones (joined by path: no hostname here, the pinned UTS namespace has it); "node" namespace modes
 * leave a namespace out (the node's). Privileged: every capability, no seccomp filter, no masked or read-only
 * paths, every device allowed, /sys writable. Bind mounts with their propagation (the root's follows the widest).
 */
export function containerSpecInput(input: ContainerSpecInput): OciSpecInput {
  const security = input.container?.security ?? {};
  const privileged = security.privileged === true;
  const ns = security.namespaces ?? {};
  const namespaces: OciSpecInput['namespaces'] = [
    ...(ns.pid === 'node' ? [] : [{ type: 'pid' as const }]),
    { type: 'mount' },
    { type: 'cgroup' },
    ...(ns.network === 'node' ? [] : [{ type: 'network' as const, path: input.pod.ns.net }]),
    ...(ns.ipc === 'node' ? [] : [{ type: 'ipc' as const, path: input.pod.ns.ipc }]),
    { type: 'uts', path: input.pod.ns.uts },
  ];
  const out: OciSpecInput = {
    args: input.process.args,
    env: input.process.env,
    cwd: input.process.cwd,
    uid: input.user.uid,
    gid: input.user.gid,
    additionalGids: input.user.additionalGids,
    rootfs: input.paths.rootfs,
    readOnlyRootfs: input.readOnlyRootfs,
    terminal: input.container?.tty === true,
    namespaces,
    cgroupsPath: input.cgroupsPath,
    noNewPrivileges: security.noNewPrivs ?? true,
  };
  if (privileged) {
    Object.assign(out, { capabilities: { add: ['ALL'], drop: [] }, seccomp: 'unconfined', maskedPaths: [], readonlyPaths: [], devices: 'all', sysfsWritable: true });
  } else {
    if (security.capAdd?.length || security.capDrop?.length) out.capabilities = { add: [...(security.capAdd ?? [])], drop: [...(security.capDrop ?? [])] };
    if (security.maskedPaths) out.maskedPaths = [...security.maskedPaths];
    if (security.readonlyPaths) out.readonlyPaths = [...security.readonlyPaths];
  }
  const mounts = input.container?.mounts ?? [];
  if (mounts.length) {
    out.mounts = mounts.map((m) => ({ destination: m.containerPath, type: 'bind', source: m.hostPath, options: ['rbind', m.readonly ? 'ro' : 'rw', `r${m.propagation.replace(/^r/, '')}`] }));
    if (mounts.some((m) => m.propagation === 'rshared')) out.rootfsPropagation = 'rshared';
    else if (mounts.some((m) => m.propagation === 'rslave')) out.rootfsPropagation = 'rslave';
  }
  if (input.container?.sysctls) out.sysctl = { ...input.container.sysctls };
  if (input.container?.resources?.oomScoreAdj !== undefined) out.oomScoreAdj = input.container.resources.oomScoreAdj;
  return out;
}
