// cached(): a cache entry appears whole or not at all, and two builds filling the same entry at once both succeed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cached } from './cache';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-cache-test-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('cached', () => {
  it('fills an entry once, then reports hits', async () => {
    const dir = path.join(scratch, 'once');
    let fills = 0;
    const fill = async (tmp: string) => {
      fills += 1;
      fs.writeFileSync(path.join(tmp, 'f'), 'x');
    };
    expect(await cached(dir, fill)).toEqual({ dir, hit: false });
    expect(await cached(dir, fill)).toEqual({ dir, hit: true });
    expect(fills).toBe(1);
  });

  it('a failed fill leaves no entry and no temp folder behind', async () => {
    const dir = path.join(scratch, 'failed');
    await expect(cached(dir, async () => { throw new Error('download cut'); })).rejects.toThrow('download cut');
    expect(fs.readdirSync(scratch).filter((n) => n.startsWith('failed'))).toEqual([]);
  });

  it('when another build fills the same entry meanwhile, its entry is kept and ours dropped', async () => {
    const dir = path.join(scratch, 'raced');
    const result = await cached(dir, async (tmp) => {
      fs.writeFileSync(path.join(tmp, 'f'), 'ours');
      // The other build renames its finished entry into place while ours is still filling.
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'f'), 'theirs');
    });
    expect(result).toEqual({ dir, hit: true });
    expect(fs.readFileSync(path.join(dir, 'f'), 'utf8')).toBe('theirs');
    expect(fs.readdirSync(scratch).filter((n) => n.startsWith('raced.tmp'))).toEqual([]);
  });
});
