// runtime.v1.ImageService over the images core (supervisor/images): decode and check → core → CRI shapes
// (image-mapping.ts). Ids are config digests, as containerd's; RemoveImage of an image that is not there is OK.
import type {
  ImageFsInfoResponse,
  ImageServiceServer,
  ImageStatusRequest,
  ImageStatusResponse,
  ListImagesRequest,
  ListImagesResponse,
  PullImageRequest,
  PullImageResponse,
  RemoveImageRequest,
  RemoveImageResponse,
} from '../gen/runtime/v1/api';
import { AuraeError } from '../errors';
import { type Images, parseReference } from '../images';
import type { Logger } from '../log';
import type { DiskUsage } from './disk-usage';
import { findImage, groupImages, pulledImageRef, pullAuth, recordReference, toCriImage, verboseImageInfo } from './image-mapping';
import { criUnary } from './rpc';

const SERVICE = 'runtime.v1.ImageService';

export interface CriImageServiceDeps {
  images: Pick<Images, 'pull' | 'list' | 'get' | 'remove'>;
  /** The images directory (the `fs_id.mountpoint` ImageFsInfo reports). */
  imagesDir: string;
  /** What the images directory occupies (disk-usage.ts, cached). */
  usage: () => Promise<DiskUsage>;
  log: Logger;
  /** ms since the epoch. */
  clock?: () => number;
}

/** Nanoseconds since the epoch, as every CRI timestamp. */
export function nanos(ms: number): bigint {
  return BigInt(Math.trunc(ms)) * 1_000_000n;
}

export function createCriImageService(deps: CriImageServiceDeps): ImageServiceServer {
  const { images, log } = deps;
  const clock = deps.clock ?? Date.now;
  const find = (spec: string | undefined, field: string) => findImage(images.list(), spec ?? '', field, (ref) => images.get(ref));

  return {
    listImages: criUnary(`${SERVICE}/ListImages`, log, (request: ListImagesRequest): ListImagesResponse => {
      const spec = request.filter?.image?.image ?? '';
      if (spec === '') return { images: groupImages(images.list()).map(toCriImage) };
      const group = find(spec, 'filter.image.image');
      return { images: group ? [toCriImage(group)] : [] };
    }),

    imageStatus: criUnary(`${SERVICE}/ImageStatus`, log, (request: ImageStatusRequest): ImageStatusResponse => {
      const group = find(request.image?.image, 'image.image');
      // Not on the node: an empty answer, not an error (kubelet then pulls).
      if (!group) return { info: {} };
      return { image: toCriImage(group), info: request.verbose ? verboseImageInfo(group) : {} };
    }),

    pullImage: criUnary(`${SERVICE}/PullImage`, log, async (request: PullImageRequest, call): Promise<PullImageResponse> => {
      const reference = request.image?.image ?? '';
      if (reference === '') throw new AuraeError('INVALID_ARGUMENT', 'image.image: required: the image to pull, e.g. busybox:1.36 or registry.example.com/app@sha256:…');
      const parsed = parseReference(reference, 'image.image');
      const auth = pullAuth(request.auth, parsed.registry);
      // The sandbox config is not needed: images are node-wide, pulled the same way for every pod.
      const abort = new AbortController();
      const onCancelled = () => abort.abort(new AuraeError('UNAVAILABLE', `pulling ${reference}: the client cancelled the call`));
      call.on('cancelled', onCancelled);
      try {
        const record = await images.pull(reference, { ...(auth ? { auth } : {}), signal: abort.signal });
        log.info('image pulled', { reference, id: record.configDigest, digest: record.digest });
        return { imageRef: pulledImageRef(record) };
      } finally {
        call.off('cancelled', onCancelled);
      }
    }),

    removeImage: criUnary(`${SERVICE}/RemoveImage`, log, async (request: RemoveImageRequest): Promise<RemoveImageResponse> => {
      const spec = request.image?.image ?? '';
      const group = find(spec, 'image.image');
      // Idempotent (the CRI's rule): an image that is not there is already removed.
      if (!group) return {};
      // Every name of the image goes, like containerd's RemoveImage; in use by a pod: FAILED_PRECONDITION.
      const removed: string[] = [];
      for (const record of group.records) {
        try {
          removed.push(...(await images.remove(recordReference(record))).removed);
        } catch (err) {
          // Removed meanwhile (a concurrent RemoveImage): that is the goal.
          if (!(err instanceof AuraeError && err.code === 'NOT_FOUND')) throw err;
        }
      }
      log.info('image removed', { image: spec, id: group.id, removed });
      return {};
    }),

    imageFsInfo: criUnary(`${SERVICE}/ImageFsInfo`, log, async (): Promise<ImageFsInfoResponse> => {
      let usage: DiskUsage;
      try {
        usage = await deps.usage();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        throw new AuraeError('INTERNAL', `measuring ${deps.imagesDir} failed (${code}): is the state volume readable by auraed?`, { cause: err });
      }
      return {
        imageFilesystems: [
          { timestamp: nanos(clock()), fsId: { mountpoint: deps.imagesDir }, usedBytes: { value: usage.bytes }, inodesUsed: { value: usage.inodes } },
        ],
        // Containers' writable layers live beside the images (the same state volume): nothing separate to report.
        containerFilesystems: [],
      };
    }),
  };
}
