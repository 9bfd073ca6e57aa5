// The real FlashFiles: node:fs with the open flags flash.ts asks for.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import type { FlashFiles, OpenFile, OpenMode } from './flash';

const { O_RDONLY, O_WRONLY, O_EXCL, O_CREAT, O_TRUNC } = fs.constants;

const FLAGS: Record<OpenMode, number> = {
  read: O_RDONLY,
  // O_EXCL without O_CREAT on a block device is Linux's exclusive open: EBUSY when it is mounted, used by
  // device-mapper or md, or opened exclusively by another program.
  'write-device': O_WRONLY | O_EXCL,
  'write-file': O_WRONLY | O_CREAT | O_TRUNC,
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
