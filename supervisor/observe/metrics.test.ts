import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { type MetricsFs, createMetricsReader } from './metrics';

/** A cgroup tree in memory: directories are keys ending in "/", files map to their text. */
function fakeCgroupFs(files: Record<string, string>, fail?: { path: string; code: string }): MetricsFs {
  const dirs = new Set<string>();
  for (const path of Object.keys(files)) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const check = (path: string) => {
    if (fail && path === fail.path) throw Object.assign(new Error(fail.code), { code: fail.code });
  };
  return {
    read(path) {
      check(path);
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return text;
    },
    exists: (path) => dirs.has(path) || path in files,
    subdirs(path) {
      check(path);
      if (!dirs.has(path)) return [];
      const names = new Set<string>();
      for (const dir of dirs) if (dir.startsWith(`${path}/`) && !dir.slice(path.length + 1).includes('/')) names.add(dir.slice(path.length + 1));
      return [...names];
    },
  };
}

const group = (usage: number, extra: Record<string, string> = {}) => ({ 'cpu.stat': `usage_usec ${usage}\nuser_usec 0\nsystem_usec 0\n`, 'pids.current': '1\n', ...extra });
function tree(): Record<string, string> {
  const out: Record<string, string> = {};
  const put = (dir: string, files: Record<string, string>) => {
    for (const [name, text] of Object.entries(files)) out[`${dir}/${name}`] = text;
  };
  put('/cg/web', group(100, { 'memory.current': '4096\n' }));
  put('/cg/web/exe.api', group(60));
  put('/cg/web/exe.worker', group(40));
  put('/cg/web/cache', group(10));
  put('/cg/web/cache/exe.redis', group(10));
  put('/cg/batch', group(5));
  put('/cg/Not_A_Cell', group(1)); // foreign directory: ignored
  return out;
}

describe('createMetricsReader', () => {
  it('every cell: tree order, each cell then its executables then its child cells', async () => {
    const read = createMetricsReader({ root: '/cg', fs: fakeCgroupFs(tree()), clock: () => 1234 });
    const snapshot = await read(null);
    expect(snapshot.timestamp).toBe(1234);
    expect(snapshot.cells.map((r) => [r.cell, r.executable, r.metrics.cpuUsageUsec])).toEqual([
      ['batch', null, 5],
      ['web', null, 100],
      ['web', 'api', 60],
      ['web', 'worker', 40],
      ['web/cache', null, 10],
      ['web/cache', 'redis', 10],
    ]);
    expect(snapshot.cells[1]!.metrics).toEqual({ cpuUsageUsec: 100, cpuUserUsec: 0, cpuSystemUsec: 0, memoryCurrentBytes: 4096, pidsCurrent: 1 });
  });

  it('one cell: its subtree only', async () => {
    const read = createMetricsReader({ root: '/cg', fs: fakeCgroupFs(tree()) });
    expect((await read('web/cache')).cells.map((r) => `${r.cell}:${r.executable}`)).toEqual(['web/cache:null', 'web/cache:redis']);
  });

  it('an unknown cell is NOT_FOUND; no cell tree at all is an empty answer', async () => {
    const read = createMetricsReader({ root: '/cg', fs: fakeCgroupFs(tree()) });
    await expect(read('nope')).rejects.toMatchObject({ code: 'NOT_FOUND', message: 'cell "nope" not found (no cgroup at /cg/nope): see aer cell list' });
    expect(await createMetricsReader({ root: '/missing', fs: fakeCgroupFs({}) })(null)).toMatchObject({ cells: [] });
  });

  it('an unreadable cgroup file is UNAVAILABLE naming it', async () => {
    const read = createMetricsReader({ root: '/cg', fs: fakeCgroupFs(tree(), { path: '/cg/web/exe.api/cpu.stat', code: 'EACCES' }) });
    const err = await read('web').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuraeError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE', message: 'reading /cg/web/exe.api/cpu.stat failed (EACCES): is cgroup2 mounted at /cg?' });
  });

  it('a tree larger than the row limit is RESOURCE_EXHAUSTED rather than a huge answer', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 4100; i++) files[`/cg/c${i}/pids.current`] = '0\n';
    const read = createMetricsReader({ root: '/cg', fs: fakeCgroupFs(files) });
    await expect(read(null)).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
  });
});
