import { linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cachedUsage, diskUsage } from './disk-usage';

const dir = mkdtempSync(path.join(os.tmpdir(), 'cri-du-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('diskUsage', () => {
  it('counts allocated blocks and inodes, a hard-linked file once; a missing dir is zero', async () => {
    mkdirSync(path.join(dir, 'a/b'), { recursive: true });
    writeFileSync(path.join(dir, 'a/b/f'), Buffer.alloc(64 * 1024, 7));
    const one = await diskUsage(dir);
    linkSync(path.join(dir, 'a/b/f'), path.join(dir, 'a/g'));
    const linked = await diskUsage(dir);
    expect(one.inodes).toBe(4n); // dir, a, a/b, a/b/f
    expect(one.bytes).toBeGreaterThanOrEqual(64n * 1024n);
    expect(linked).toEqual(one);
    expect(await diskUsage(path.join(dir, 'absent'))).toEqual({ bytes: 0n, inodes: 0n });
  });
});

describe('cachedUsage', () => {
  it('measures at most once per ttl, and again after a failure', async () => {
    let t = 0;
    let calls = 0;
    let fail = false;
    const usage = cachedUsage(
      async () => {
        calls++;
        if (fail) throw new Error('EACCES');
        return { bytes: BigInt(calls), inodes: 1n };
      },
      1000,
      () => t,
    );
    expect((await usage()).bytes).toBe(1n);
    t = 999;
    expect((await usage()).bytes).toBe(1n);
    t = 1000;
    fail = true;
    await expect(usage()).rejects.toThrow('EACCES');
    fail = false;
    expect((await usage()).bytes).toBe(3n);
    expect(calls).toBe(3);
  });
});
