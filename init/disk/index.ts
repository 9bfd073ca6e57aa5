// Disk layout of the appliance: the GPT that image/ writes into disk.raw and that init reads, extends (the
// STATE partition) and rewrites at boot. Pure code; the block-device I/O is the caller's.
export { crc32 } from './crc32';
export {
  ALIGNMENT_SECTORS,
  buildGpt,
  decodeGuid,
  encodeGuid,
  GPT_ENTRY_COUNT,
  GPT_ENTRY_SIZE,
  GPT_FIRST_USABLE_LBA,
  GPT_NAME_MAX,
  GptError,
  gptWrites,
  guidFromSeed,
  normalizeGuid,
  PARTITION_TYPES,
  parseGpt,
  planStatePartition,
  SECTOR_SIZE,
} from './gpt';
export type {
  Gpt,
  GptEntry,
  GptErrorCode,
  GptImage,
  GptPartition,
  GptSpec,
  GptWrite,
  ReadAt,
  StatePartitionPlan,
  StatePartitionSpec,
} from './gpt';
