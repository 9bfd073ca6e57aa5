// Disk images on the client side: flashing one onto a disk (aer image flash).
export {
  CHUNK_BYTES,
  FlashError,
  type FlashDeps,
  type FlashErrorCode,
  type FlashFiles,
  type FlashHooks,
  type FlashRequest,
  type FlashResult,
  type ImageInfo,
  type OpenFile,
  type OpenMode,
  type TargetInfo,
  checkImage,
  checkTarget,
  confirmationQuestion,
  confirmationStep,
  describeTarget,
  diskChanges,
  formatBytes,
  isYes,
  parseSidecar,
  runFlash,
} from './flash';
export { type BlockDevice, type HostProbe, type MountEntry, type PathStat, hostProbe } from './block-devices';
export { nodeFlashFiles } from './files';
