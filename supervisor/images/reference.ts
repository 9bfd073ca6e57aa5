// Image references as users type them (`busybox`, `docker.io/library/busybox:1.36`, `host:5000/x@sha256:…`),
// parsed and normalised the way the Docker CLI and containerd do (distribution/reference's grammar): a first
// component with a dot or a colon, or `localhost`, names a registry; otherwise the image is on Docker Hub and a
// one-component name gets the `library/` prefix; no tag and no digest means `latest`. Pure.
import { AuraeError } from '../errors';

export const DOCKER_HUB = 'docker.io';
/** Where Docker Hub's distribution API actually answers. */
export const DOCKER_HUB_ENDPOINT = 'registry-1.docker.io';
export const DEFAULT_TAG = 'latest';

export interface ImageReference {
  /** The registry as written (normalised): `docker.io`, `127.0.0.1:5000`, `ghcr.io`. Keys the node config. */
  registry: string;
  /** The host[:port] to connect to: registry-1.docker.io for Docker Hub, else `registry`. */
  endpoint: string;
  /** The repository path inside the registry: `library/busybox`, `team/app`. */
  repository: string;
  /** The canonical repository name, `registry/repository`: `docker.io/library/busybox`. */
  name: string;
  /** The tag; `latest` when neither tag nor digest was given; null when only a digest was given. */
  tag: string | null;
  /** `sha256:<64 hex>` when pinned by digest. */
  digest: string | null;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6 = /^\[[0-9a-fA-F:.]+\]$/;
export const DIGEST = /^sha256:[0-9a-f]{64}$/;
const MAX_NAME = 255;

const FORM = 'expected [registry[:port]/]name[:tag][@sha256:<64 hex>], e.g. busybox, docker.io/library/busybox:1.36 or 127.0.0.1:5000/app@sha256:…';

function invalid(field: string, input: string, why: string): AuraeError {
  return new AuraeError('INVALID_ARGUMENT', `${field}: "${input}" is not a valid image reference: ${why}: ${FORM}`);
}

function validDomain(domain: string): boolean {
  const colon = domain.lastIndexOf(':');
  const hasPort = colon > domain.lastIndexOf(']');
  const host = hasPort ? domain.slice(0, colon) : domain;
  if (hasPort) {
    const port = domain.slice(colon + 1);
    if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return false;
  }
  if (IPV6.test(host)) return true;
  return host.length > 0 && host.length <= 253 && host.split('.').every((label) => DOMAIN_LABEL.test(label));
}

/** Is the first path component a registry (Docker's rule)? */
function isRegistry(first: string): boolean {
  return first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase();
}

/**
 * Parse and normalise `input`; `field` names the request field in errors ("image", "container.image").
 * Throws INVALID_ARGUMENT naming the field and the rule broken.
 */
export function parseReference(input: string, field = 'reference'): ImageReference {
  if (typeof input !== 'string' || input.trim() === '') throw invalid(field, String(input ?? ''), 'empty');
  if (input !== input.trim() || /\s/.test(input)) throw invalid(field, input, 'whitespace is not allowed');
  if (input.length > 1024) throw invalid(field, input.slice(0, 64) + '…', 'longer than 1024 characters');

  let rest = input;
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      throw invalid(field, input, digest.startsWith('sha256:') ? 'a sha256 digest is 64 lowercase hex digits' : `digest "${digest}": only sha256:<64 hex> digests are supported`);
    }
  }

  let tag: string | null = null;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(field, input, `tag "${tag}": letters, digits, _ . - (at most 128, not starting with . or -)`);
  }
  if (rest === '') throw invalid(field, input, 'the name is missing');

  const slash = rest.indexOf('/');
  let registry = DOCKER_HUB;
  let repository = rest;
  if (slash >= 0 && isRegistry(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    repository = rest.slice(slash + 1);
    if (!validDomain(registry)) throw invalid(field, input, `registry "${registry}": expected host[:port] (port 1..65535)`);
    if (registry === 'index.docker.io' || registry === DOCKER_HUB_ENDPOINT) registry = DOCKER_HUB;
  }
  if (repository === '') throw invalid(field, input, 'the repository name is missing');
  const components = repository.split('/');
  for (const c of components) {
    if (!COMPONENT.test(c)) {
      throw invalid(field, input, `name component "${c}": lowercase letters and digits, separated by . _ __ or -`);
    }
  }
  if (registry === DOCKER_HUB && components.length === 1) repository = `library/${repository}`;
  const name = `${registry}/${repository}`;
  if (name.length > MAX_NAME) throw invalid(field, input, `the name is longer than ${MAX_NAME} characters`);
  if (tag === null && digest === null) tag = DEFAULT_TAG;
  return { registry, endpoint: registry === DOCKER_HUB ? DOCKER_HUB_ENDPOINT : registry, repository, name, tag, digest };
}

/** The normalised text: `name[:tag][@digest]`. */
export function formatReference(ref: Pick<ImageReference, 'name' | 'tag' | 'digest'>): string {
  return `${ref.name}${ref.tag !== null ? `:${ref.tag}` : ''}${ref.digest !== null ? `@${ref.digest}` : ''}`;
}

/**
 * The short form a user would type back: Docker Hub's `library/` and `docker.io/` dropped
 * (`busybox:latest`, `team/app:1`), other registries kept.
 */
export function familiarName(name: string): string {
  if (!name.startsWith(`${DOCKER_HUB}/`)) return name;
  const repo = name.slice(DOCKER_HUB.length + 1);
  return repo.startsWith('library/') && !repo.slice(8).includes('/') ? repo.slice(8) : repo;
}

/** The node config keys that may hold settings for `registry` (Docker Hub has three spellings). */
export function registryConfigKeys(registry: string): string[] {
  return registry === DOCKER_HUB ? [DOCKER_HUB, DOCKER_HUB_ENDPOINT, 'index.docker.io'] : [registry];
}
