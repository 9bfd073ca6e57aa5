// What a container runs, from its image's config and its spec (pure): argv, environment, working directory, and
// the user resolved through the image's /etc/passwd and /etc/group.
import { AuraeError } from '../errors';
import { DEFAULT_PATH } from '../executables';
import type { ImageRuntimeConfig } from '../images';
import type { ContainerSecurity, ContainerSpec, PodSpec } from './spec';

export interface ContainerProcess {
  args: string[];
  /** "NAME=value", image's first, then the pod's, then the container's (later wins, order kept). */
  env: string[];
  cwd: string;
  /** The user to resolve: the spec's, else the image's, else "" (root). */
  user: string;
}

/**
 * Kubernetes' rules: `command` replaces the Entrypoint and, when given without `args`, drops the image's Cmd too;
 * `args` replaces the Cmd. Throws FAILED_PRECONDITION when nothing is left to run.
 */
export function containerProcess(image: ImageRuntimeConfig, pod: Pick<PodSpec, 'name' | 'env' | 'hostname'>, c: ContainerSpec): ContainerProcess {
  const entrypoint = c.command ?? image.entrypoint;
  const cmd = c.args ?? (c.command ? [] : image.cmd);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw new AuraeError('FAILED_PRECONDITION', `pod "${pod.name}": container "${c.name}": its image ${c.image} has neither Entrypoint nor Cmd: give the container a command`);
  }
  const env = new Map<string, string>();
  for (const entry of image.env) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  env.set('HOSTNAME', pod.hostname ?? pod.name);
  for (const [k, v] of Object.entries(pod.env)) env.set(k, v);
  for (const [k, v] of Object.entries(c.env)) env.set(k, v);
  return {
    args,
    env: [...env].map(([k, v]) => `${k}=${v}`),
    cwd: c.workingDir ?? (image.workingDir || '/'),
    user: c.user ?? image.user ?? '',
  };
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

const ID = /^\d{1,10}$/;
const MAX_ID = 4_294_967_294;

function parseColonFile(text: string | null): string[][] {
  return (text ?? '')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

function parsePasswd(text: string | null): PasswdEntry[] {
  return parseColonFile(text)
    .filter((f) => f.length >= 4 && ID.test(f[2]!) && ID.test(f[3]!))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) }));
}

function parseGroup(text: string | null): { name: string; gid: number; members: string[] }[] {
  return parseColonFile(text)
    .filter((f) => f.length >= 3 && ID.test(f[2]!))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }));
}

/**
 * "uid", "uid:gid", "name", "name:group" (or "" for root) → ids, looked up in the image's /etc/passwd and
 * /etc/group (null when the image has none). A numeric uid missing from passwd gets gid = uid (what the pods API
 * declares to the policy). Supplementary groups: the groups listing the user by name.
 */
export function resolveUser(user: string, files: { passwd: string | null; group: string | null }, what: string, opts: { missingGid?: 'uid' | 'root' } = {}): ResolvedUser {
  if (user === '') return { uid: 0, gid: 0, additionalGids: [] };
  const [u = '', g] = user.split(':');
  const passwd = parsePasswd(files.passwd);
  const groups = parseGroup(files.group);
  const bad = (why: string) => new AuraeError('FAILED_PRECONDITION', `${what}: user ${JSON.stringify(user)}: ${why}`);
  const checkId = (v: string) => {
    const n = Number(v);
    if (n > MAX_ID) throw bad(`${v} is out of range: allowed 0..${MAX_ID}`);
    return n;
  };
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (ID.test(u)) {
    uid = checkId(u);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === u);
    if (!entry) throw bad(`no user "${u}" in the image's /etc/passwd: use a numeric uid or a user the image defines`);
    uid = entry.uid;
  }
  let gid: number;
  if (g === undefined) gid = entry?.gid ?? (opts.missingGid === 'root' ? 0 : uid);
  else if (ID.test(g)) gid = checkId(g);
  else {
    const group = groups.find((x) => x.name === g);
    if (!group) throw bad(`no group "${g}" in the image's /etc/group: use a numeric gid or a group the image defines`);
    gid = group.gid;
  }
  const additionalGids = entry ? [...new Set(groups.filter((x) => x.members.includes(entry.name) && x.gid !== gid).map((x) => x.gid))].sort((a, b) => a - b) : [];
  return { uid, gid, additionalGids };
}

/**
 * The user a container runs as: the security context's numeric runAsUser/runAsGroup when given (a uid the image's
 * passwd lacks gets gid 0 then, as in Kubernetes), else `user` (the spec's or the image's) through resolveUser;
 * supplementalGroups are added to the groups the image gives.
 */
export function containerUser(user: string, security: ContainerSecurity | undefined, files: { passwd: string | null; group: string | null }, what: string): ResolvedUser {
  const s = security ?? {};
  let resolved: ResolvedUser;
  if (s.runAsUser !== undefined) {
    resolved = resolveUser(s.runAsGroup !== undefined ? `${s.runAsUser}:${s.runAsGroup}` : String(s.runAsUser), files, what, { missingGid: 'root' });
  } else if (s.runAsGroup !== undefined) {
    resolved = { ...resolveUser(user, files, what), gid: s.runAsGroup };
  } else {
    resolved = resolveUser(user, files, what);
  }
  const extra = s.supplementalGroups ?? [];
  if (extra.length) resolved = { ...resolved, additionalGids: [...new Set([...resolved.additionalGids, ...extra])].filter((g) => g !== resolved.gid).sort((a, b) => a - b) };
  return resolved;
}
