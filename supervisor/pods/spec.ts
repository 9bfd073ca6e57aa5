// PodSpec: a pod as requested, validated. Plain data (stored as JSON in the pods table), made from the API's Pod
// (aurae.pods.v0) by validatePodSpec, whose every error names the field and what is allowed.
import { AuraeError, checkInt64 } from '../errors';
import { EXECUTABLE_LIMITS } from '../executables';
import type { Pod, PortPublish } from '../gen/aurae/pods/v0/pods';
import { checkInt, checkLabel, invalid, RANGES, shown, utf8Bytes } from '../validation';
import type { PortMapping } from './network-plan';

export interface ContainerSpec {
  name: string;
  image: string;
  /** Replaces the image's Entrypoint; null: the image's. */
  command: string[] | null;
  /** Replaces the image's Cmd; null: the image's (unless command is set: then none, as Kubernetes does). */
  args: string[] | null;
  env: Record<string, string>;
  workingDir: string | null;
  /** "uid", "uid:gid", "name", "name:group"; null: the image's User, else root. */
  user: string | null;
  readOnlyRootfs: boolean;
}

export type PodRestart = 'never' | 'on-failure' | 'always';

export interface PodLimitsSpec {
  memoryMax: number | null;
  pidsMax: number | null;
  cpuWeight: number | null;
}

export interface PodSpec {
  name: string;
  /** "cell": namespaces + a cell on this node; "vm": inside a child microVM (vm-sandbox.ts). */
  sandbox: 'cell' | 'vm';
  containers: ContainerSpec[];
  /** Pod-wide environment; a container's own env wins. */
  env: Record<string, string>;
  restart: PodRestart;
  limits: PodLimitsSpec;
  /** Ports the containers listen on; each is published on the same node port (tcp) unless `publish` maps it. */
  expose?: number[];
  /** Node ports mapped to the pod (network-plan.ts effectivePublish adds the exposed ones). */
  publish?: PortMapping[];
}

export const POD_LIMITS = {
  containers: 16,
  imageRefChars: 512,
  userChars: 256,
  /** Published ports per pod. */
  publish: 64,
} as const;

const RESTARTS: readonly PodRestart[] = ['never', 'on-failure', 'always'];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const USER = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?$/;

/** Validate the API's Pod. Throws INVALID_ARGUMENT "<field>: <what is allowed>" (fields as in the proto). */
export function validatePodSpec(pod: Pod | undefined): PodSpec {
  if (!pod) throw invalid('pod', 'required: a pod with a name and at least one container');
  const name = checkLabel('name', pod.name);
  const sandbox = pod.sandbox ?? '';
  if (sandbox !== '' && sandbox !== 'cell' && sandbox !== 'vm') throw invalid('sandbox', `${shown(sandbox)} is not a sandbox: "cell" (or empty) or "vm"`);
  // A VM pod's child VM is "pod-<name>", one DNS label (vm-sandbox.ts vmPodName).
  if (sandbox === 'vm' && name.length > 59) throw invalid('name', `${shown(name)} is too long for sandbox "vm": at most 59 characters (its VM is named pod-NAME)`);
  const restart = (pod.restart ?? '') === '' ? 'never' : (pod.restart as PodRestart);
  if (!RESTARTS.includes(restart)) throw invalid('restart', `${shown(pod.restart)} is not a restart policy: "never", "on-failure" or "always"`);
  const containers = pod.containers ?? [];
  if (containers.length === 0) throw invalid('containers', 'required: at least one container');
  if (containers.length > POD_LIMITS.containers) throw invalid('containers', `at most ${POD_LIMITS.containers} containers (got ${containers.length})`);
  const seen = new Set<string>();
  const specs = containers.map((c, i) => {
    const spec = validateContainer(c, `containers[${i}]`);
    if (seen.has(spec.name)) throw invalid(`containers[${i}].name`, `${shown(spec.name)} is used twice: container names are unique in a pod`);
    seen.add(spec.name);
    return spec;
  });
  const l = pod.limits;
  const limits: PodLimitsSpec = {
    memoryMax: checkInt64('limits.memory_max', l?.memoryMax, RANGES.memory[0], RANGES.memory[1]) ?? null,
    pidsMax: checkInt64('limits.pids_max', l?.pidsMax, RANGES.pidsMax[0], RANGES.pidsMax[1]) ?? null,
    cpuWeight: checkInt64('limits.cpu_weight', l?.cpuWeight, RANGES.cpuWeight[0], RANGES.cpuWeight[1]) ?? null,
  };
  const spec: PodSpec = { name, sandbox: sandbox === 'vm' ? 'vm' : 'cell', containers: specs, env: validateEnv('env', pod.env ?? {}), restart, limits };
  if (pod.expose?.length) spec.expose = [...pod.expose];
  const publish = validatePublish('publish', pod.publish ?? []);
  // Pod networking (network.ts) is the cell sandbox's; a VM pod's ports are not published on this node yet.
  if (publish.length && spec.sandbox === 'vm') throw new AuraeError('UNIMPLEMENTED', 'publish: publishing ports of a "vm" sandbox pod is not implemented yet: use sandbox "cell"');
  if (publish.length) spec.publish = publish;
  return spec;
}

/** Published ports: node and pod ports 1..65535, protocol "tcp" (default) or "udp", a node port once per protocol. */
export function validatePublish(field: string, list: readonly PortPublish[]): PortMapping[] {
  if (list.length > POD_LIMITS.publish) throw invalid(field, `at most ${POD_LIMITS.publish} ports (got ${list.length})`);
  const seen = new Set<string>();
  return list.map((p, i) => {
    const nodePort = checkInt(`${field}[${i}].node_port`, p.nodePort ?? 0, [1, 65_535])!;
    const podPort = checkInt(`${field}[${i}].pod_port`, p.podPort ?? 0, [1, 65_535])!;
    const protocol = (p.protocol ?? '') === '' ? 'tcp' : p.protocol;
    if (protocol !== 'tcp' && protocol !== 'udp') throw invalid(`${field}[${i}].protocol`, `${shown(p.protocol)} is not a protocol: "tcp" (the default) or "udp"`);
    const key = `${nodePort}/${protocol}`;
    if (seen.has(key)) throw invalid(`${field}[${i}].node_port`, `node port ${key} is published twice`);
    seen.add(key);
    return { nodePort, podPort, protocol };
  });
}

function validateContainer(c: Pod['containers'][number], field: string): ContainerSpec {
  const name = checkLabel(`${field}.name`, c.name);
  const image = c.image ?? '';
  if (image === '') throw invalid(`${field}.image`, 'required: an image reference such as "busybox" or "host:5000/name:tag"');
  if (image.length > POD_LIMITS.imageRefChars || /[\s\p{C}]/u.test(image)) {
    throw invalid(`${field}.image`, `${shown(image)} is not an image reference: at most ${POD_LIMITS.imageRefChars} printable characters without spaces`);
  }
  const command = validateArgv(`${field}.command`, c.command ?? []);
  const args = validateArgv(`${field}.args`, c.args ?? []);
  const workingDir = (c.workingDir ?? '') === '' ? null : validateAbsolute(`${field}.working_dir`, c.workingDir);
  const user = (c.user ?? '') === '' ? null : c.user;
  if (user !== null && (user.length > POD_LIMITS.userChars || !USER.test(user))) {
    throw invalid(`${field}.user`, `${shown(user)} is not a user: "uid", "uid:gid", "name" or "name:group"`);
  }
  return {
    name,
    image,
    command: command.length ? command : null,
    args: args.length ? args : null,
    env: validateEnv(`${field}.env`, c.env ?? {}),
    workingDir,
    user,
    readOnlyRootfs: c.readOnlyRootfs === true,
  };
}

/** An argv list: at most EXECUTABLE_LIMITS entries and bytes, no NUL, a non-empty program. */
export function validateArgv(field: string, argv: string[]): string[] {
  if (argv.length > EXECUTABLE_LIMITS.argvEntries) throw invalid(field, `too many entries (${argv.length}): at most ${EXECUTABLE_LIMITS.argvEntries}`);
  let bytes = 0;
  argv.forEach((arg, i) => {
    if (arg.includes('\0')) throw invalid(`${field}[${i}]`, 'NUL characters are not allowed');
    bytes += utf8Bytes(arg) + 1;
  });
  if (bytes > EXECUTABLE_LIMITS.argvBytes) throw invalid(field, `too long: ${bytes} bytes, at most ${EXECUTABLE_LIMITS.argvBytes}`);
  if (argv.length > 0 && argv[0] === '') throw invalid(`${field}[0]`, 'the program must not be empty');
  return [...argv];
}

/** An absolute path without "."/".." components or control characters. */
export function validateAbsolute(field: string, value: string): string {
  if (!value.startsWith('/')) throw invalid(field, `${shown(value)} is not an absolute path`);
  if (value.length > EXECUTABLE_LIMITS.pathChars) throw invalid(field, `too long: at most ${EXECUTABLE_LIMITS.pathChars} characters`);
  if (/\p{C}/u.test(value)) throw invalid(field, 'control, format or unassigned characters are not allowed');
  if (value.split('/').some((part) => part === '..' || part === '.')) throw invalid(field, `${shown(value)}: "." and ".." components are not allowed`);
  return value;
}

/** Environment variables: names [A-Za-z_][A-Za-z0-9_]*, no NUL, within EXECUTABLE_LIMITS. */
export function validateEnv(field: string, env: Record<string, string>): Record<string, string> {
  const entries = Object.entries(env);
  if (entries.length > EXECUTABLE_LIMITS.envEntries) throw invalid(field, `too many variables (${entries.length}): at most ${EXECUTABLE_LIMITS.envEntries}`);
  let bytes = 0;
  const out: Record<string, string> = {};
  for (const [key, value] of entries) {
    if (key.length > EXECUTABLE_LIMITS.envNameChars || !ENV_NAME.test(key)) {
      throw invalid(field, `${shown(key)} is not a variable name: [A-Za-z_][A-Za-z0-9_]*, at most ${EXECUTABLE_LIMITS.envNameChars} characters`);
    }
    if (value.includes('\0')) throw invalid(`${field}[${key}]`, 'NUL characters are not allowed');
    bytes += utf8Bytes(key) + utf8Bytes(value) + 2;
    out[key] = value;
  }
  if (bytes > EXECUTABLE_LIMITS.envBytes) throw invalid(field, `too large: ${bytes} bytes, at most ${EXECUTABLE_LIMITS.envBytes}`);
  return out;
}
