// Test fixture: layer tarballs built in memory with node-tar's Header, entry by entry, including what no sane
// packer writes (absolute names, `..`, writes through symlinks) and what node-tar's packer cannot (device nodes,
// binary xattrs as PAX SCHILY.xattr records, whiteouts). Used by the unpack/snapshot unit and priv tests.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { Header } from 'tar';

export interface TestEntry {
  path: string;
  type?: 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';
  body?: Buffer | string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkpath?: string;
  devmajor?: number;
  devminor?: number;
  /** Written as PAX SCHILY.xattr.<name> records (values as raw bytes). */
  xattrs?: Record<string, Buffer | string>;
}

const TYPE_CODES = { file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' } as const;
export const TEST_MTIME = new Date('2024-01-02T03:04:05Z');

function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = rest.length + 1;
  while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
  return Buffer.concat([Buffer.from(String(len)), rest]);
}

function pad(body: Buffer): Buffer {
  const rem = body.length % 512;
  return rem === 0 ? body : Buffer.concat([body, Buffer.alloc(512 - rem)]);
}

function header(fields: ConstructorParameters<typeof Header>[0]): Buffer {
  const block = Buffer.alloc(512);
  new Header(fields).encode(block);
  return block;
}

/** A complete tar stream (with the two end blocks) of `entries`, in order. */
export function tarOf(entries: TestEntry[]): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? 'file';
    const body = type === 'file' ? Buffer.from(e.body ?? '') : Buffer.alloc(0);
    const records: Buffer[] = [];
    for (const [k, v] of Object.entries(e.xattrs ?? {})) records.push(paxRecord(`SCHILY.xattr.${k}`, Buffer.from(v)));
    if (Buffer.byteLength(e.path) > 99) records.push(paxRecord('path', Buffer.from(e.path)));
    if (records.length) {
      const pax = Buffer.concat(records);
      out.push(header({ path: 'PaxHeader/x', type: 'ExtendedHeader', size: pax.length, mode: 0o644, mtime: TEST_MTIME }), pad(pax));
    }
    out.push(
      header({
        path: Buffer.byteLength(e.path) > 99 ? e.path.slice(0, 99) : e.path,
        type: TYPE_CODES[type] as never,
        size: body.length,
        mode: e.mode ?? (type === 'dir' ? 0o755 : 0o644),
        uid: e.uid ?? 0,
        gid: e.gid ?? 0,
        mtime: e.mtime ?? TEST_MTIME,
        linkpath: e.linkpath ?? '',
        devmaj: e.devmajor ?? 0,
        devmin: e.devminor ?? 0,
        uname: '',
        gname: '',
      }),
    );
    if (body.length) out.push(pad(body));
  }
  out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

export function sha256(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

export function gzip(buf: Buffer): Buffer {
  return zlib.gzipSync(buf);
}

/** zstd-compress with Node's zlib when it has zstd, else the zstd program; null when neither exists. */
export function zstd(buf: Buffer): Buffer | null {
  const z = zlib as typeof zlib & { zstdCompressSync?: (b: Buffer) => Buffer };
  if (typeof z.zstdCompressSync === 'function') return z.zstdCompressSync(buf);
  const r = spawnSync('zstd', ['-q', '-c'], { input: buf, maxBuffer: 1 << 30 });
  return r.status === 0 && r.stdout.length ? r.stdout : null;
}

export const OCI_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
