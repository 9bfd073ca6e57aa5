import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSnapshots, lowerDirsFor, snapshotFs, snapshotId } from './snapshots';
import { OCI_GZIP, gzip, sha256, tarOf } from './test-layers';
import type { UnpackSyscalls } from './unpack';

const sys: UnpackSyscalls = { mknod: () => undefined, lsetxattr: () => undefined, syncfs: () => undefined };
const hex = (c: string) => c.repeat(64);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'aurae-snapshots-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function layerBlob(name: string, body: string) {
  const tar = tarOf([{ path: name, body }]);
  const file = path.join(dir, `blob-${name}`);
  writeFileSync(file, gzip(tar));
  return { file, layer: { digest: sha256(gzip(tar)), mediaType: OCI_GZIP, diffId: sha256(tar) } };
}

describe('snapshot layout', () => {
  it('names a snapshot by the hex of its diffId: <dir>/snapshots/<hex>/fs', () => {
    expect(snapshotId(`sha256:${hex('a')}`)).toBe(hex('a'));
    expect(snapshotFs('/s/images', hex('a'))).toBe(`/s/images/snapshots/${hex('a')}/fs`);
    expect(() => snapshotId('sha512:abc')).toThrow('layer diffId "sha512:abc": must be "sha256:" and 64 lowercase hex digits');
  });

  it('gives lower dirs top layer first, a repeated layer only at its topmost place', () => {
    const layers = [`sha256:${hex('a')}`, `sha256:${hex('e')}`, `sha256:${hex('b')}`, `sha256:${hex('e')}`].map((diffId) => ({ diffId }));
    expect(lowerDirsFor('/i', layers)).toEqual([snapshotFs('/i', hex('e')), snapshotFs('/i', hex('b')), snapshotFs('/i', hex('a'))]);
  });
});

describe('createSnapshots', () => {
  it('unpacks a layer once, even when two pulls ask at the same time, and lists it', async () => {
    const snaps = createSnapshots(dir);
    const { file, layer } = layerBlob('hello', 'world');
    const [a, b] = await Promise.all([snaps.ensure(layer, file, { syscalls: sys }), snaps.ensure(layer, file, { syscalls: sys })]);
    expect(a).toBe(b);
    expect(a).toEqual({ id: snapshotId(layer.diffId), fs: snapshotFs(dir, snapshotId(layer.diffId)), created: true });
    expect(readFileSync(path.join(a.fs, 'hello'), 'utf8')).toBe('world');
    expect(await snaps.ensure(layer, file, { syscalls: sys })).toMatchObject({ created: false });
    expect(await snaps.list()).toEqual([a.id]);
    expect(snaps.lowerDirs([layer])).toEqual([a.fs]);
  });

  it('refuses a blob whose content is not the diffId the config names, leaving nothing', async () => {
    const snaps = createSnapshots(dir);
    const { file, layer } = layerBlob('x', 'y');
    const wrong = { ...layer, diffId: `sha256:${hex('0')}` };
    await expect(snaps.ensure(wrong, file, { syscalls: sys })).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect(await snaps.has(hex('0'))).toBe(false);
    expect(readdirSync(path.join(dir, 'snapshots', hex('0')))).toEqual([]);
    expect(await snaps.cleanLeftovers()).toBe(1);
    expect(readdirSync(path.join(dir, 'snapshots'))).toEqual([]);
  });

  it('removes snapshots and sweeps what a cut left (temp unpack dirs, half removals)', async () => {
    const snaps = createSnapshots(dir);
    const { file, layer } = layerBlob('k', 'v');
    const { id } = await snaps.ensure(layer, file, { syscalls: sys });
    mkdirSync(path.join(dir, 'snapshots', id, 'fs.unpack-0a0b0c'), { recursive: true });
    mkdirSync(path.join(dir, 'snapshots', `.trash-${hex('c')}-1234`), { recursive: true });
    mkdirSync(path.join(dir, 'snapshots', hex('d'), 'fs.unpack-99'), { recursive: true });
    expect(await snaps.cleanLeftovers()).toBe(4);
    expect(readdirSync(path.join(dir, 'snapshots'))).toEqual([id]);
    expect(readdirSync(path.join(dir, 'snapshots', id))).toEqual(['fs']);
    expect(await snaps.remove(id)).toBe(true);
    expect(await snaps.remove(id)).toBe(false);
    expect(existsSync(path.join(dir, 'snapshots', id))).toBe(false);
    expect(await snaps.list()).toEqual([]);
  });
});
