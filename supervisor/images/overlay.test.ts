import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { MOUNT_DATA_MAX, mountOverlay, overlayIndexOnByDefault, overlayMountPlan } from './overlay';

const snap = (id: string) => `/var/lib/aurae/images/snapshots/${id}/fs`;

describe('overlayMountPlan', () => {
  it('lists the lower dirs top layer first, then upper and work', () => {
    expect(overlayMountPlan([snap('c'), snap('b'), snap('a')], '/p/u', '/p/w', '/p/rootfs')).toEqual({
      source: 'overlay',
      target: '/p/rootfs',
      fstype: 'overlay',
      flags: 0,
      data: `lowerdir=${snap('c')}:${snap('b')}:${snap('a')},upperdir=/p/u,workdir=/p/w`,
      cwd: null,
    });
  });

  it('mounts a single-layer image with an upper; refuses it read-only (overlayfs needs two lowers then)', () => {
    expect(overlayMountPlan([snap('a')], '/p/u', '/p/w', '/p/r').data).toBe(`lowerdir=${snap('a')},upperdir=/p/u,workdir=/p/w`);
    expect(overlayMountPlan([snap('b'), snap('a')], null, null, '/p/r').data).toBe(`lowerdir=${snap('b')}:${snap('a')}`);
    expect(() => overlayMountPlan([snap('a')], null, null, '/p/r')).toThrow(
      'overlay lowerDirs: a read-only overlay (no upper) needs at least two layers: pass an upper and a work dir for a single-layer image',
    );
  });

  it('keeps only the topmost place of a layer listed twice (overlayfs refuses duplicates)', () => {
    expect(overlayMountPlan([snap('e'), snap('b'), snap('e'), snap('a')], '/u', '/w', '/r').data).toBe(
      `lowerdir=${snap('e')}:${snap('b')}:${snap('a')},upperdir=/u,workdir=/w`,
    );
  });

  it('refuses bad input naming the field', () => {
    const bad = (f: () => unknown, msg: string) => {
      expect(f).toThrow(AuraeError);
      expect(f).toThrow(msg);
    };
    bad(() => overlayMountPlan([], '/u', '/w', '/r'), 'overlay lowerDirs: at least one layer is needed');
    bad(() => overlayMountPlan(['rel/fs'], '/u', '/w', '/r'), 'overlay lowerDirs[0]: "rel/fs" must be an absolute path');
    bad(() => overlayMountPlan(['/a:b'], '/u', '/w', '/r'), 'overlay lowerDirs[0]: "/a:b" contains one of');
    bad(() => overlayMountPlan(['/a'], '/u,x', '/w', '/r'), 'overlay upper: "/u,x" contains one of');
    bad(() => overlayMountPlan(['/a'], '/u', null, '/r'), 'overlay upper/work: give both or neither');
    bad(() => overlayMountPlan(['/a'], '/u', '/w', 'r'), 'overlay target: "r" must be an absolute path');
  });

  it('switches to paths relative to the snapshots dir past a page of options, and refuses past that', () => {
    const id = (i: number) => i.toString(16).padStart(64, '0');
    const many = Array.from({ length: 45 }, (_, i) => snap(id(i)));
    const plan = overlayMountPlan(many, '/p/u', '/p/w', '/p/r');
    expect(many.join(':').length).toBeGreaterThan(MOUNT_DATA_MAX);
    expect(plan.cwd).toBe('/var/lib/aurae/images/snapshots');
    expect(plan.data).toBe(`lowerdir=${many.map((_, i) => `${id(i)}/fs`).join(':')},upperdir=/p/u,workdir=/p/w`);
    expect(plan.data.length).toBeLessThanOrEqual(MOUNT_DATA_MAX);

    const tooMany = Array.from({ length: 70 }, (_, i) => snap(id(i)));
    expect(() => overlayMountPlan(tooMany, '/p/u', '/p/w', '/p/r')).toThrow(
      /overlay for \/p\/r: 70 layers need \d+ bytes of mount options even relative to \/var\/lib\/aurae\/images\/snapshots, over the kernel's 4095: flatten the image to fewer layers/,
    );
  });
});

describe('mountOverlay', () => {
  it('mounts with the addon, from the plan cwd when it has one, and comes back', () => {
    const calls: unknown[][] = [];
    const here = process.cwd();
    const sys = { mount: (...args: unknown[]) => void calls.push([process.cwd(), ...args]) };
    mountOverlay({ source: 'overlay', target: '/r', fstype: 'overlay', flags: 0, data: 'lowerdir=a/fs', cwd: '/tmp' }, sys, false);
    expect(calls).toEqual([['/tmp', 'overlay', '/r', 'overlay', 0, 'lowerdir=a/fs']]);
    expect(process.cwd()).toBe(here);
  });

  it('adds index=off when the kernel indexes by default (shared lower layers)', () => {
    const calls: unknown[][] = [];
    mountOverlay(overlayMountPlan(['/a'], '/u', '/w', '/r'), { mount: (...a: unknown[]) => void calls.push(a) }, true);
    expect(calls[0]![4]).toBe('lowerdir=/a,upperdir=/u,workdir=/w,index=off');
    expect(overlayIndexOnByDefault(() => 'Y\n')).toBe(true);
    expect(overlayIndexOnByDefault(() => 'N\n')).toBe(false);
    expect(overlayIndexOnByDefault(() => { throw new Error('ENOENT'); })).toBe(false);
  });

  it('says what to check when the mount fails', () => {
    const sys = { mount: () => { throw Object.assign(new Error('mount(…): ENODEV'), { code: 'ENODEV' }); } };
    expect(() => mountOverlay(overlayMountPlan(['/a'], '/u', '/w', '/r'), sys, false)).toThrow(
      'mounting the overlay rootfs at /r failed (ENODEV): the kernel has no overlayfs: enable CONFIG_OVERLAY_FS',
    );
  });
});
