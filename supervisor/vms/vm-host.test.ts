import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { plainDirCgroupFs } from '../cgroup/testing';
import { QEMU_OVERHEAD_MIB, cgroupConfiner, cgroupReleaser, nodeVmFiles } from './vm-host';

const dirs: string[] = [];
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), 'vm-host-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('cgroupConfiner', () => {
  it('without cgroup v2 it reports false and writes nothing', async () => {
    const root = temp();
    expect(await cgroupConfiner(root)('web', 123, { memoryMiB: 512, cpus: 2 })).toBe(false);
    expect(() => statSync(join(root, 'aurae-vms'))).toThrow();
  });
  it('with cgroup v2 it bounds memory (guest RAM + QEMU overhead) and CPU, then moves QEMU in', async () => {
    const root = temp();
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids');
    // A plain directory: its "control files" are created by the writes.
    expect(await cgroupConfiner(root, plainDirCgroupFs)('web', 123, { memoryMiB: 512, cpus: 2 })).toBe(true);
    const read = (f: string) => readFileSync(join(root, 'aurae-vms', f), 'utf8');
    expect(read('cgroup.subtree_control')).toBe('+memory +cpu');
    expect(read('web/memory.max')).toBe(String((512 + QEMU_OVERHEAD_MIB) * 1024 * 1024));
    expect(read('web/cpu.max')).toBe('200000 100000');
    expect(read('web/cgroup.procs')).toBe('123');
  });
  it('the releaser removes a freed VM\'s empty cell and ignores one that is absent', () => {
    const root = temp();
    mkdirSync(join(root, 'aurae-vms', 'web'), { recursive: true });
    cgroupReleaser(root)('web');
    expect(() => statSync(join(root, 'aurae-vms', 'web'))).toThrow();
    expect(() => cgroupReleaser(root)('never-confined')).not.toThrow();
  });
});

describe('nodeVmFiles', () => {
  it('writes the payload with mode 0600 in a 0700 directory, replacing an old one', () => {
    const dir = join(temp(), 'vms', 'web');
    nodeVmFiles.mkdirPrivate(dir);
    const file = join(dir, 'payload.json');
    nodeVmFiles.writePrivate(file, 'old');
    nodeVmFiles.writePrivate(file, 'secret');
    expect(readFileSync(file, 'utf8')).toBe('secret');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    nodeVmFiles.remove(dir);
    expect(nodeVmFiles.exists(dir)).toBe(false);
  });
});
