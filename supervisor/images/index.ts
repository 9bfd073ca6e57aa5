// Images: pull OCI/Docker images from registries (distribution API over undici, auth, CA files), store their blobs
// content-addressed and verified, unpack their layers into snapshots for overlayfs, keep records and holders in
// the state database, collect garbage. The API service (image-service.ts) and pods use only what is exported here.
export { type ImagesCore, type ImagesDeps, createImages } from './images';
export { IMAGES_MIGRATIONS } from './image-store';
export { type ImageReference, familiarName, formatReference, parseReference } from './reference';
export type { ImageLayer, ImageRecord, ImageRuntimeConfig, Images, ImagesConfig, Platform, PullAuth, PullOptions, PullProgress, RegistrySettings } from './types';
export { NODE_PLATFORM } from './types';
// H2 (unpack, snapshots, overlay): exports below.
export { LAYER_MEDIA_TYPES, layerCompression, unpackLayer, type UnpackOptions } from './unpack';
export { createSnapshots, lowerDirsFor, type Snapshots } from './snapshots';
export { MOUNT_DATA_MAX, mountOverlay, overlayMountPlan, type OverlayMountPlan } from './overlay';
// H4 (API): the gRPC service over Images, and its request checks (PodService/Run reuses them for credentials).
export { createImageService, progressThrottle, progressToProto, validateAuth, validateReference } from './image-service';
export { ImageServiceService } from '../gen/aurae/images/v0/images';
// VM pods: an image's rootfs as a read-only ext4 file (mke2fs -d), handed to a child VM as a disk.
export { createRootfsDisks, pruneRootfsDisks, ROOTFS_DISK_META, ROOTFS_DISK_ROOT, type RootfsDiskMeta, type RootfsDisks, rootfsDiskLabel, rootfsDiskPath } from './rootfs-disk';
