// Filesystem labels from a device's first 2 KiB (pure): how init finds its volumes without blkid or udev.

const EXT_SUPERBLOCK_OFFSET = 1024;
const EXT_MAGIC_OFFSET = 56; // s_magic, u16 little endian
const EXT_MAGIC = 0xef53;
const EXT_LABEL_OFFSET = 120; // s_volume_name, 16 bytes, NUL padded

/** The ext2/3/4 volume label in `head` (the first 2 KiB of a block device), or null when it is not ext. */
export function extLabel(head: Buffer): string | null {
  if (head.length < EXT_SUPERBLOCK_OFFSET + EXT_LABEL_OFFSET + 16) return null;
  if (head.readUInt16LE(EXT_SUPERBLOCK_OFFSET + EXT_MAGIC_OFFSET) !== EXT_MAGIC) return null;
  const raw = head.subarray(EXT_SUPERBLOCK_OFFSET + EXT_LABEL_OFFSET, EXT_SUPERBLOCK_OFFSET + EXT_LABEL_OFFSET + 16);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? 16 : end).toString('utf8');
}

/**
 * The FAT32 volume label in the boot sector (offset 0x47, 11 bytes space padded, after the "FAT32   " type
 * at 0x52 is checked), or null when `head` is not a FAT32 boot sector.
 */
export function fat32Label(head: Buffer): string | null {
  if (head.length < 512 || head.readUInt16LE(510) !== 0xaa55) return null;
  if (head.toString('latin1', 0x52, 0x5a) !== 'FAT32   ') return null;
  return head.toString('latin1', 0x47, 0x52).trimEnd();
}
