// client.images: container images stored on the node (aurae.images.v0.ImageService), as plain objects with
// numbers. Pull streams per-layer progress to a callback and resolves with the image; credentials passed here go
// to the node for that one pull and nowhere else.
import { type ClientReadableStream, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import {
  type Image,
  ImageServiceClient,
  type ImageServiceInspectResponse,
  type ImageServiceListResponse,
  type ImageServicePullResponse,
  type ImageServiceRemoveResponse,
  type PullProgress as ProtoPullProgress,
  type RegistryAuth as ProtoRegistryAuth,
} from '../../supervisor/gen/aurae/images/v0/images';
import type { ImageRuntimeConfig } from '../../supervisor/images/types';
import type { SdkCallContext } from './call-context';
import { toApiError } from './errors';
import { fromWireInt } from './int64';

const SERVICE = 'aurae.images.v0.ImageService';

/** Credentials for one pull: username + password, or a registry identity token. */
export interface RegistryAuth {
  username?: string;
  password?: string;
  registryToken?: string;
}

export type LayerPullState = 'exists' | 'downloading' | 'unpacking' | 'done';

/** Where one layer of a pull stands (bytes of its compressed blob). */
export interface PullProgress {
  layer: string;
  done: number;
  total: number;
  state: LayerPullState | 'unknown';
}

export interface ImageLayerInfo {
  digest: string;
  size: number;
  mediaType: string;
  diffId: string;
}

export interface ImageInfo {
  /** Canonical repository, e.g. "docker.io/library/busybox". */
  name: string;
  tags: string[];
  /** Manifest digest. */
  digest: string;
  configDigest: string;
  config: ImageRuntimeConfig;
  /** Bottom layer first. */
  layers: ImageLayerInfo[];
  /** Compressed bytes. */
  size: number;
  /** ms since the Unix epoch. */
  pulledAt: number;
}

export interface PullOptions {
  auth?: RegistryAuth;
  /** Called for each progress message (state changes; byte counts at most 5 times a second per layer). */
  onProgress?(progress: PullProgress): void;
  /** Cancel the pull (the node stops downloading; what was verified stays stored for the next pull). */
  signal?: AbortSignal;
}

export interface ImagesApi {
  /** Pull REFERENCE onto the node; resolves with the stored image. No deadline: large pulls take their time. */
  pull(reference: string, options?: PullOptions): Promise<ImageInfo>;
  list(): Promise<ImageInfo[]>;
  /** By reference, digest, or a unique digest prefix (≥ 12 hex). Rejects NOT_FOUND when it is not stored. */
  inspect(reference: string): Promise<ImageInfo>;
  /** Rejects FAILED_PRECONDITION while a pod uses it, unless force. */
  remove(reference: string, options?: { force?: boolean }): Promise<{ removed: string[] }>;
}

const STATES: readonly string[] = ['exists', 'downloading', 'unpacking', 'done'];

export function fromProtoProgress(p: ProtoPullProgress): PullProgress {
  return { layer: p.layer, done: fromWireInt(p.done), total: fromWireInt(p.total), state: STATES.includes(p.state) ? (p.state as LayerPullState) : 'unknown' };
}

export function toProtoAuth(auth: RegistryAuth | undefined): ProtoRegistryAuth | undefined {
  if (!auth) return undefined;
  return { username: auth.username ?? '', password: auth.password ?? '', registryToken: auth.registryToken ?? '' };
}

export function fromProtoImage(image: Image): ImageInfo {
  const c = image.config;
  return {
    name: image.name,
    tags: image.tags,
    digest: image.digest,
    configDigest: image.configDigest,
    config: {
      entrypoint: c?.entrypoint ?? [],
      cmd: c?.cmd ?? [],
      env: c?.env ?? [],
      workingDir: c?.workingDir ?? '',
      user: c?.user ?? '',
      exposedPorts: c?.exposedPorts ?? [],
      labels: c?.labels ?? {},
      stopSignal: c?.stopSignal ?? '',
    },
    layers: image.layers.map((l) => ({ digest: l.digest, size: fromWireInt(l.size), mediaType: l.mediaType, diffId: l.diffId })),
    size: fromWireInt(image.size),
    pulledAt: fromWireInt(image.pulledAt),
  };
}

/**
 * Read a server stream to its end: `onMessage` sees every message; resolves with the last one `pick` returned
 * (the final result message), rejects with the call's status as an AuraeApiError. Shared with pods.ts (Run).
 */
export function consumeStream<M, R>(
  ctx: Pick<SdkCallContext, 'address'>,
  method: string,
  start: () => ClientReadableStream<M>,
  onMessage: (message: M) => R | undefined,
  signal?: AbortSignal,
): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error(`${method}: aborted`));
    const call = start();
    let result: R | undefined;
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (err: unknown) => {
      signal?.removeEventListener('abort', onAbort);
      if (err) {
        if ((err as Partial<ServiceError>).code === status.CANCELLED && signal?.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error(`${method}: aborted`));
        return reject(toApiError(err, method, ctx.address));
      }
      if (result === undefined) return reject(new Error(`${method}: the node ended the stream without a result`));
      resolve(result);
    };
    call.on('data', (message: M) => {
      try {
        const r = onMessage(message);
        if (r !== undefined) result = r;
      } catch (err) {
        call.cancel();
        finish(err);
      }
    });
    call.on('error', finish);
    call.on('end', () => finish(null));
  });
}

export function createImagesApi(ctx: SdkCallContext): ImagesApi {
  const client = new ImageServiceClient(ctx.address, ctx.credentials, ctx.options);
  const name = (method: string) => `${SERVICE}/${method}`;
  return {
    pull: (reference, options = {}) =>
      consumeStream<ImageServicePullResponse, ImageInfo>(
        ctx,
        name('Pull'),
        () => client.pull({ reference, auth: toProtoAuth(options.auth) }),
        (m) => {
          if (m.progress) options.onProgress?.(fromProtoProgress(m.progress));
          return m.image ? fromProtoImage(m.image) : undefined;
        },
        options.signal,
      ),
    list: async () => {
      const r = await ctx.unary<ImageServiceListResponse>(name('List'), (done) => client.list({}, new Metadata(), ctx.callOptions(), done));
      return r.images.map(fromProtoImage);
    },
    inspect: async (reference) => {
      const r = await ctx.unary<ImageServiceInspectResponse>(name('Inspect'), (done) => client.inspect({ reference }, new Metadata(), ctx.callOptions(), done));
      if (!r.image) throw new Error(`image ${reference}: the node returned no image`);
      return fromProtoImage(r.image);
    },
    remove: async (reference, options = {}) => {
      const r = await ctx.unary<ImageServiceRemoveResponse>(name('Remove'), (done) =>
        client.remove({ reference, force: options.force ?? false }, new Metadata(), ctx.callOptions(), done),
      );
      return { removed: r.removed };
    },
  };
}
