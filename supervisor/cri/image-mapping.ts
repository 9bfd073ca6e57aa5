// The images core's records seen through the CRI, the way containerd shows them: one CRI image per image config
// (its id is the config digest), named by every `name:tag` (repo_tags) and `name@manifest-digest` (repo_digests)
// that points at it; the default user split into a uid or a name. Plus how an ImageSpec finds its image, and
// how an AuthConfig becomes pull credentials. Pure (the lookup takes the core's get as a function).
import type { Image as CriImage } from '../gen/runtime/v1/api';
import { AuraeError } from '../errors';
import { type ImageRecord, type PullAuth, parseReference, validateAuth } from '../images';
import { invalid } from '../validation';

/** One image config and every stored record (name + manifest) that uses it. */
export interface CriImageGroup {
  /** `sha256:<hex>` of the image config: the CRI image id. */
  id: string;
  /** Sorted by name, then manifest digest. */
  records: ImageRecord[];
}

/** Group records by config digest, sorted by id. */
export function groupImages(records: readonly ImageRecord[]): CriImageGroup[] {
  const byId = new Map<string, ImageRecord[]>();
  for (const r of records) {
    const list = byId.get(r.configDigest) ?? [];
    list.push(r);
    byId.set(r.configDigest, list);
  }
  return [...byId.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([id, list]) => ({ id, records: list.sort((a, b) => (a.name === b.name ? (a.digest < b.digest ? -1 : 1) : a.name < b.name ? -1 : 1)) }));
}

/**
 * The image config's User as the CRI reports it (containerd's rule): only the part before ":" counts; a number is
 * the uid, anything else the user name; empty is neither.
 */
export function imageUser(user: string): { uid: bigint | null; username: string } {
  const name = user.split(':')[0] ?? '';
  if (name === '') return { uid: null, username: '' };
  return /^\d+$/.test(name) ? { uid: BigInt(name), username: '' } : { uid: null, username: name };
}

/** The CRI Image for a group (its records share one config, so the user is the same in each). */
export function toCriImage(group: CriImageGroup): CriImage {
  const repoTags = new Set<string>();
  const repoDigests = new Set<string>();
  let size = 0;
  for (const r of group.records) {
    for (const tag of r.tags) repoTags.add(`${r.name}:${tag}`);
    repoDigests.add(`${r.name}@${r.digest}`);
    size = Math.max(size, r.size);
  }
  const { uid, username } = imageUser(group.records[0]?.config.user ?? '');
  return {
    id: group.id,
    repoTags: [...repoTags].sort(),
    repoDigests: [...repoDigests].sort(),
    size: BigInt(size),
    ...(uid === null ? {} : { uid: { value: uid } }),
    username,
    spec: { image: group.id, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' },
    pinned: false,
  };
}

/** What ImageStatus says with verbose: the records behind the id, their runtime config and layers (JSON). */
export function verboseImageInfo(group: CriImageGroup): Record<string, string> {
  const first = group.records[0];
  return {
    info: JSON.stringify({
      id: group.id,
      manifests: group.records.map((r) => ({ name: r.name, digest: r.digest, tags: r.tags, pulledAt: new Date(r.pulledAt).toISOString() })),
      config: first?.config ?? null,
      layers: first?.layers ?? [],
    }),
  };
}

const FULL_ID = /^sha256:[0-9a-f]{64}$/;
/** An id as crictl prints it (13 hex digits) or longer; a shorter one would be easy to confuse with a name. */
const ID_PREFIX = /^(?:sha256:)?([0-9a-f]{12,64})$/;

/**
 * The group `spec` (ImageSpec.image) names, or null when no image on the node matches: a CRI id (config digest),
 * a unique prefix of one (≥ 12 hex digits), a manifest digest, or a reference (`busybox`, `name:tag`,
 * `name@sha256:…`). `get` is the core's lookup by reference or manifest digest. Throws INVALID_ARGUMENT naming
 * `field` for an empty spec, an ambiguous id prefix or a malformed reference.
 */
export function findImage(records: readonly ImageRecord[], spec: string, field: string, get: (ref: string) => ImageRecord | undefined): CriImageGroup | null {
  if (spec === '') throw invalid(field, 'required: an image id (sha256:…), a digest or a reference such as busybox:1.36');
  const groups = groupImages(records);
  const byId = (id: string) => groups.find((g) => g.id === id) ?? null;
  if (FULL_ID.test(spec)) {
    const exact = byId(spec);
    if (exact) return exact;
  }
  const hex = ID_PREFIX.exec(spec)?.[1];
  if (hex !== undefined) {
    const matches = groups.filter((g) => g.id.slice('sha256:'.length).startsWith(hex));
    if (matches.length > 1) throw invalid(field, `"${spec}" matches ${matches.length} images: give more digits of the id`);
    if (matches.length === 1) return matches[0]!;
    if (spec.startsWith('sha256:')) {
      // A manifest digest (kubelet may use one it got from a registry).
      const record = records.find((r) => r.digest === spec);
      return record ? byId(record.configDigest) : null;
    }
  }
  parseReference(spec, field); // names the field when the reference is malformed
  const record = get(spec);
  return record ? byId(record.configDigest) : null;
}

/** How the core removes exactly one record (every tag of that name and manifest). */
export function recordReference(record: ImageRecord): string {
  return `${record.name}@${record.digest}`;
}

/** The fields of runtime.v1.AuthConfig that matter here. */
export interface CriAuthConfig {
  username: string;
  password: string;
  auth: string;
  serverAddress: string;
  identityToken: string;
  registryToken: string;
}

const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** The registry host[:port] of a server_address such as `https://index.docker.io/v1/` or `127.0.0.1:5000`. */
export function serverAddressHost(address: string): string {
  const withoutScheme = address.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  return withoutScheme.split('/')[0]!.toLowerCase();
}

function sameRegistry(a: string, b: string): boolean {
  return a === b || (DOCKER_HUB_ALIASES.has(a) && DOCKER_HUB_ALIASES.has(b));
}

/**
 * Pull credentials from a CRI AuthConfig for an image in `registry` (parseReference's registry), or undefined
 * for none. Like containerd: credentials for another server_address are not used; username/password win over
 * `auth` (base64 of "username:password"); registry_token is a bearer token used as is. identity_token (an OAuth
 * refresh token) is not supported by the images core yet and is refused, naming the field.
 */
export function pullAuth(auth: CriAuthConfig | undefined, registry: string): PullAuth | undefined {
  if (!auth) return undefined;
  if (auth.serverAddress !== '' && !sameRegistry(serverAddressHost(auth.serverAddress), registry)) return undefined;
  let { username, password } = auth;
  if (username === '' && auth.auth !== '') {
    const decoded = decodeBasic(auth.auth);
    if (decoded === null) throw invalid('auth.auth', 'expected base64 of "username:password"');
    ({ username, password } = decoded);
  }
  if (auth.identityToken !== '' && username === '' && auth.registryToken === '') {
    throw invalid('auth.identity_token', 'identity tokens are not supported by auraed yet: give username and password (or auth), or registry_token');
  }
  return validateAuth('auth', { username, password, registryToken: auth.registryToken });
}

function decodeBasic(value: string): { username: string; password: string } | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return null;
  const text = Buffer.from(value, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0) return null;
  // Docker's config.json sometimes pads with NULs.
  return { username: text.slice(0, colon), password: text.slice(colon + 1).replace(/\0+$/, '') };
}

/** A pull's image_ref: the id later calls (CreateContainer, ImageStatus) name the image by. */
export function pulledImageRef(record: ImageRecord): string {
  if (!FULL_ID.test(record.configDigest)) throw new AuraeError('INTERNAL', `image ${record.name}@${record.digest} has no valid config digest: pull it again`);
  return record.configDigest;
}
