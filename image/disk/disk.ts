// disk.raw: a GPT disk with the EFI System Partition (the boot volume, FAT32 AURAE_BOOT) and, right after it, a
// small zero-filled AURAE_IDENTITY partition: the image holds no key; `aer image flash --identity` writes the
// node's identity into that partition of the target disk (init/identity reads it at boot). The STATE partition
// is not in the image: init creates it at first boot in the space after the last partition, filling whatever
// disk the image was flashed to (init/disk). GUIDs derive from the ESP's content hash, so the same inputs give
// the same bytes.
import fs from 'node:fs';
import { ALIGNMENT_SECTORS, buildGpt, guidFromSeed, PARTITION_TYPES, SECTOR_SIZE } from '../../init/disk';
import { IDENTITY_PARTITION_BYTES, IDENTITY_PARTITION_NAME, IDENTITY_PARTITION_TYPE } from '../../init/identity/document';

/** GPT partition name of the ESP (init also finds it by its FAT label). */
export const ESP_PARTITION_NAME = 'AURAE_BOOT';
/** Room after the ESP for the backup GPT: 1 MiB keeps the image a whole number of MiB. */
const TAIL_SECTORS = ALIGNMENT_SECTORS;

export interface DiskLayout {
  diskSectors: number;
  espFirstLba: number;
  espLastLba: number;
  identityFirstLba: number;
  identityLastLba: number;
}

/** Where things go for an ESP of `espBytes` (a multiple of 512). Pure. */
export function diskLayout(espBytes: number): DiskLayout {
  if (espBytes % SECTOR_SIZE !== 0) throw new Error(`disk: ESP size ${espBytes} is not a multiple of ${SECTOR_SIZE}`);
  const espFirstLba = ALIGNMENT_SECTORS;
  const espLastLba = espFirstLba + espBytes / SECTOR_SIZE - 1;
  const identityFirstLba = Math.ceil((espLastLba + 1) / ALIGNMENT_SECTORS) * ALIGNMENT_SECTORS;
  const identityLastLba = identityFirstLba + IDENTITY_PARTITION_BYTES / SECTOR_SIZE - 1;
  return { diskSectors: identityLastLba + 1 + TAIL_SECTORS, espFirstLba, espLastLba, identityFirstLba, identityLastLba };
}

/** Write disk.raw from the ESP image `esp` (streamed: the ESP is 100+ MB). `seed` makes the GUIDs. */
export function writeDiskImage(esp: string, out: string, seed: string): DiskLayout {
  const layout = diskLayout(fs.statSync(esp).size);
  const gpt = buildGpt({
    diskSectors: layout.diskSectors,
    diskGuid: guidFromSeed(`${seed}:disk`),
    partitions: [
      { typeGuid: PARTITION_TYPES.esp, uniqueGuid: guidFromSeed(`${seed}:esp`), firstLba: layout.espFirstLba, lastLba: layout.espLastLba, name: ESP_PARTITION_NAME },
      // Zeros in the image (ftruncate below): no secret is ever in disk.raw.
      { typeGuid: IDENTITY_PARTITION_TYPE, uniqueGuid: guidFromSeed(`${seed}:identity`), firstLba: layout.identityFirstLba, lastLba: layout.identityLastLba, name: IDENTITY_PARTITION_NAME },
    ],
  });
  const tmp = `${out}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.ftruncateSync(fd, layout.diskSectors * SECTOR_SIZE);
    fs.writeSync(fd, gpt.primary, 0, gpt.primary.length, 0);
    const src = fs.openSync(esp, 'r');
    try {
      const chunk = Buffer.alloc(4 * 1024 * 1024);
      let at = 0;
      for (;;) {
        const n = fs.readSync(src, chunk, 0, chunk.length, at);
        if (n === 0) break;
        fs.writeSync(fd, chunk, 0, n, layout.espFirstLba * SECTOR_SIZE + at);
        at += n;
      }
    } finally {
      fs.closeSync(src);
    }
    fs.writeSync(fd, gpt.backup, 0, gpt.backup.length, gpt.backupOffset);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, out);
  return layout;
}
