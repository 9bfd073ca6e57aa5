import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addonCandidates, isErrno, loadSyscalls } from './index';
import { compilerArgs } from './build';

describe('addon lookup', () => {
  it('tries AURAE_SYSCALLS_ADDON first, then beside the bundle, then native/build', () => {
    const candidates = addonCandidates({ AURAE_SYSCALLS_ADDON: '/opt/x/syscalls.node' });
    expect(candidates[0]).toBe('/opt/x/syscalls.node');
    expect(candidates.at(-1)).toBe(path.join(__dirname, 'build', 'syscalls.node'));
    expect(addonCandidates({})[0]).not.toBe('/opt/x/syscalls.node');
  });

  it('says how to build the addon when it is missing', () => {
    expect(() => loadSyscalls({ AURAE_SYSCALLS_ADDON: '/nonexistent/syscalls.node' })).toThrow(
      'AURAE_SYSCALLS_ADDON=/nonexistent/syscalls.node: no such file',
    );
  });
});

describe('isErrno', () => {
  it('matches errors by errno name', () => {
    const err = Object.assign(new Error('mount(…): EBUSY'), { code: 'EBUSY' });
    expect(isErrno(err, 'EBUSY')).toBe(true);
    expect(isErrno(err, 'EINVAL', 'ENOENT')).toBe(false);
    expect(isErrno('EBUSY', 'EBUSY')).toBe(false);
  });
});

describe('compilerArgs', () => {
  it('are fixed flags with no debug info (which would embed paths)', () => {
    const args = compilerArgs('/usr/include/node', '/tmp/out.node');
    expect(args).toEqual(expect.arrayContaining(['-O2', '-shared', '-fPIC', '-I/usr/include/node', '-s']));
    expect(args.some((a) => a.startsWith('-g'))).toBe(false);
    expect(args.slice(-3)).toEqual(['-o', '/tmp/out.node', 'syscalls.c']);
  });
});
