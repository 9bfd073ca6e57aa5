// The real FlashFiles: node:fs with the open flags flash.ts asks for.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { pathStatOf } from './block-devices';
import type { FlashFiles, OpenFile, OpenMode } from './flash';

const { O_RDONLY, O_WRONLY, O_EXCL, O_CREAT, O_NOFOLLOW } = fs.constants;

const FLAGS: Record<OpenMode, number> = {
  read: O_RDONLY,
  // O_EXCL without O_CREAT on a block device is Linux's exclusive open: EBUSY when it is mounted, used by
  // device-mapper or md, or opened exclusively by another program.
  'write-device': O_WRONLY | O_EXCL,
  // No O_TRUNC: the file is emptied only after fstat showed it is the one that was checked (flash.ts).
  // O_NOFOLLOW: a symbolic link put there since the check fails the open (ELOOP) instead of being followed.
  'write-file': O_WRONLY | O_NOFOLLOW,
  // O_EXCL with O_CREAT: fails (EEXIST) when anything, a dangling symbolic link included, appeared at the path.
  'create-file': O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
};

export function nodeFlashFiles(): FlashFiles {
  return {
    async open(file, mode): Promise<OpenFile> {
      const handle = await fs.promises.open(file, FLAGS[mode], 0o644);
      return {
        read: async (buf, position) => (await handle.read(buf, 0, buf.length, position)).bytesRead,
        write: async (buf, position) => (await handle.write(buf, 0, buf.length, position)).bytesWritten,
        sync: () => handle.sync(),
        truncate: (length) => handle.truncate(length),
        stat: async () => pathStatOf(await handle.stat({ bigint: true })),
        close: () => handle.close(),
      };
    },
    async dropCache(device) {
      await promisify(execFile)('blockdev', ['--flushbufs', device], { timeout: 60_000 });
    },
    readText(file) {
      try {
        return fs.readFileSync(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    },
  };
}
