// The images subsystem's public shapes (the contract in notes/pods-plan.md): what a pull produces and what pods
// consume. Kept apart from the code so index.ts re-exports one list and H2's unpack/snapshots can import them.
import type { ImageConfig } from '../gen/aurae/images/v0/images';

export interface ImageLayer {
  /** The compressed blob's digest (what the registry serves). */
  digest: string;
  size: number;
  mediaType: string;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry), verified at unpack. */
  diffId: string;
}

/** The parts of the image config a container starts from (OCI image-spec config.config): the API's ImageConfig. */
export type ImageRuntimeConfig = ImageConfig;

export interface ImageRecord {
  /** Canonical repository, e.g. "127.0.0.1:5000/busybox" or "docker.io/library/busybox". */
  name: string;
  tags: string[];
  /** The manifest digest (of the platform manifest, not of the index). */
  digest: string;
  configDigest: string;
  config: ImageRuntimeConfig;
  /** Bottom layer first (manifest order). */
  layers: ImageLayer[];
  /** Sum of the compressed layer sizes. */
  size: number;
  /** ms since the epoch. */
  pulledAt: number;
}

export interface PullProgress {
  /** The layer's blob digest. */
  layer: string;
  /** Bytes of the blob stored so far. */
  done: number;
  total: number;
  state: 'exists' | 'downloading' | 'unpacking' | 'done';
}

/** Credentials given with one pull; they win over the node config's and are never stored or logged. */
export interface PullAuth {
  username?: string;
  password?: string;
  /** A bearer token for the registry itself (Docker's `registrytoken`), used as is. */
  registryToken?: string;
}

export interface PullOptions {
  auth?: PullAuth;
  onProgress?: (p: PullProgress) => void;
  signal?: AbortSignal;
}

export interface Images {
  pull(reference: string, opts?: PullOptions): Promise<ImageRecord>;
  list(): ImageRecord[];
  /** By reference ("busybox", "host:5000/x:tag"), full digest, or a unique digest prefix (≥ 12 hex). */
  get(ref: string): ImageRecord | undefined;
  /** Refuses (FAILED_PRECONDITION) while a holder retains it unless force. */
  remove(ref: string, opts?: { force?: boolean }): Promise<{ removed: string[] }>;
  /** Overlay lower dirs for this image, TOP layer first (overlayfs lowerdir order). Snapshots exist after pull. */
  lowerDirs(image: ImageRecord): string[];
  /** Persisted: GC and remove respect it across restarts. */
  retain(imageDigest: string, holder: string): void;
  release(holder: string): void;
  gc(): Promise<{ blobs: number; snapshots: number; bytes: number }>;
}

/** The node config's images section (supervisor/config NodeConfig['images']). */
export interface RegistrySettings {
  insecure: boolean;
  caFile: string | null;
  auth: { username: string; password: string } | null;
}
export interface ImagesConfig {
  registries: Record<string, RegistrySettings>;
}

/** The platform a pull selects from an index. The node is x86_64 Linux. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}
export const NODE_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };
