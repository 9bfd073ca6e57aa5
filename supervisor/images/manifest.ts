// Manifests, indexes and image configs: Docker v2 schema 2 (+ manifest list) and OCI (+ index). Pure parsing and
// platform selection; the registry client fetches the bytes and checks their digest.
import { AuraeError } from '../errors';
import { DIGEST } from './reference';
import type { ImageRuntimeConfig, Platform } from './types';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What GET /v2/<name>/manifests/<ref> asks for, most preferred first. */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerList, MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest].join(', ');

/** Layer media types the unpacker understands (compression by suffix). */
export const SUPPORTED_LAYER_MEDIA_TYPES = [
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.diff.tar',
] as const;

/** The largest manifest, index or config accepted (containerd uses 4 MiB for manifests). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export type ParsedManifest =
  | { kind: 'index'; mediaType: string; manifests: Descriptor[] }
  | { kind: 'manifest'; mediaType: string; config: Descriptor; layers: Descriptor[] };

function bad(what: string, why: string): AuraeError {
  return new AuraeError('FAILED_PRECONDITION', `${what}: ${why}: the registry served an invalid document; check the image was pushed correctly`);
}

/** The document as a JSON object, or FAILED_PRECONDITION naming `what`. */
function jsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw bad(what, `not JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null) throw bad(what, 'not a JSON object');
  return doc;
}

function descriptor(value: unknown, what: string): Descriptor {
  const d = value as Record<string, unknown> | null;
  if (typeof d !== 'object' || d === null) throw bad(what, 'not an object');
  if (typeof d.digest !== 'string' || !DIGEST.test(d.digest)) throw bad(what, `digest ${JSON.stringify(d.digest)} is not sha256:<64 hex>`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw bad(what, `size ${JSON.stringify(d.size)} is not a non-negative integer`);
  if (typeof d.mediaType !== 'string' || d.mediaType === '') throw bad(what, 'mediaType is missing');
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  const p = d.platform as Record<string, unknown> | undefined;
  if (p && typeof p === 'object') {
    out.platform = { os: String(p.os ?? ''), architecture: String(p.architecture ?? '') };
    if (typeof p.variant === 'string') out.platform.variant = p.variant;
  }
  if (d.annotations && typeof d.annotations === 'object') out.annotations = d.annotations as Record<string, string>;
  return out;
}

/**
 * Parse a manifest or index. `contentType` is the response's Content-Type; the document's own mediaType wins when
 * present (OCI makes it optional, registries sometimes send a generic Content-Type).
 */
export function parseManifest(bytes: Buffer, contentType: string, what = 'manifest'): ParsedManifest {
  const doc = jsonObject(bytes, what);
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : contentType.split(';')[0]!.trim();
  if (doc.schemaVersion === 1 || declared === MEDIA_TYPES.dockerSchema1 || declared === MEDIA_TYPES.dockerSchema1Signed) {
    throw new AuraeError('UNIMPLEMENTED', `${what}: Docker schema 1 manifests are not supported: push the image again with a current client (schema 2 or OCI)`);
  }
  if (doc.schemaVersion !== 2) throw bad(what, `schemaVersion ${JSON.stringify(doc.schemaVersion)} is not 2`);
  const isIndex = Array.isArray(doc.manifests) && !('config' in doc);
  if (isIndex) {
    const mediaType = declared === MEDIA_TYPES.dockerList ? MEDIA_TYPES.dockerList : MEDIA_TYPES.ociIndex;
    return { kind: 'index', mediaType, manifests: (doc.manifests as unknown[]).map((m, i) => descriptor(m, `${what}.manifests[${i}]`)) };
  }
  if (!Array.isArray(doc.layers)) throw bad(what, 'neither layers (a manifest) nor manifests (an index)');
  const mediaType = declared === MEDIA_TYPES.dockerManifest ? MEDIA_TYPES.dockerManifest : MEDIA_TYPES.ociManifest;
  return {
    kind: 'manifest',
    mediaType,
    config: descriptor(doc.config, `${what}.config`),
    layers: (doc.layers as unknown[]).map((l, i) => descriptor(l, `${what}.layers[${i}]`)),
  };
}

/** Docker buildx puts attestation manifests (platform unknown/unknown) beside the images: never pick them. */
function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || d.platform?.os === 'unknown';
}

/**
 * Pick `platform`'s manifest from an index: same os and architecture; among several, the one with the requested
 * variant, else one without a variant, else the first. NOT_FOUND lists what the index offers.
 */
export function selectPlatform(index: Descriptor[], platform: Platform, what: string): Descriptor {
  const candidates = index.filter((d) => !isAttestation(d) && d.platform?.os === platform.os && d.platform?.architecture === platform.architecture);
  const pick =
    candidates.find((d) => platform.variant !== undefined && d.platform?.variant === platform.variant) ??
    candidates.find((d) => d.platform?.variant === undefined) ??
    candidates[0];
  if (pick) return pick;
  const offered = index
    .filter((d) => !isAttestation(d))
    .map((d) => (d.platform ? `${d.platform.os}/${d.platform.architecture}${d.platform.variant ? `/${d.platform.variant}` : ''}` : 'unspecified'))
    .join(', ');
  throw new AuraeError('NOT_FOUND', `${what}: no ${platform.os}/${platform.architecture} image in the index (it offers: ${offered || 'nothing'}): pull an image built for ${platform.os}/${platform.architecture}`);
}

export interface ParsedImageConfig {
  os: string;
  architecture: string;
  diffIds: string[];
  runtime: ImageRuntimeConfig;
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : []);

/** The image config blob (OCI image-spec config / Docker image JSON). */
export function parseImageConfig(bytes: Buffer, what = 'image config'): ParsedImageConfig {
  const doc = jsonObject(bytes, what);
  const rootfs = doc.rootfs as { type?: unknown; diff_ids?: unknown } | undefined;
  if (!rootfs || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids)) throw bad(what, 'rootfs.diff_ids is missing');
  const diffIds = rootfs.diff_ids.map((d, i) => {
    if (typeof d !== 'string' || !DIGEST.test(d)) throw bad(what, `rootfs.diff_ids[${i}] is not sha256:<64 hex>`);
    return d;
  });
  const c = (doc.config ?? {}) as Record<string, unknown>;
  const labels: Record<string, string> = {};
  if (c.Labels && typeof c.Labels === 'object') {
    for (const [k, v] of Object.entries(c.Labels as Record<string, unknown>)) if (typeof v === 'string') labels[k] = v;
  }
  return {
    os: typeof doc.os === 'string' ? doc.os : '',
    architecture: typeof doc.architecture === 'string' ? doc.architecture : '',
    diffIds,
    runtime: {
      entrypoint: strings(c.Entrypoint),
      cmd: strings(c.Cmd),
      env: strings(c.Env),
      workingDir: typeof c.WorkingDir === 'string' ? c.WorkingDir : '',
      user: typeof c.User === 'string' ? c.User : '',
      exposedPorts: c.ExposedPorts && typeof c.ExposedPorts === 'object' ? Object.keys(c.ExposedPorts).sort() : [],
      labels,
      stopSignal: typeof c.StopSignal === 'string' ? c.StopSignal : '',
    },
  };
}

/** Check a manifest's layers before fetching anything: known media types, one diff_id per layer. */
export function checkLayers(layers: Descriptor[], diffIds: string[], what: string): void {
  layers.forEach((l, i) => {
    if (!(SUPPORTED_LAYER_MEDIA_TYPES as readonly string[]).includes(l.mediaType)) {
      throw new AuraeError('UNIMPLEMENTED', `${what}: layer ${i} (${l.digest}) has media type ${l.mediaType}: supported are tar, tar+gzip and tar+zstd layers`);
    }
  });
  if (layers.length !== diffIds.length) {
    throw bad(what, `${layers.length} layers but ${diffIds.length} rootfs.diff_ids in the config`);
  }
}
