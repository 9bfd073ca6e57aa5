// The virtio-9p share options (qemu-args.ts shareFsdevOptions): a read-only share shows the host's files as they
// are; a writable one keeps what the guest sets as metadata (mapped-file), so a guest running as root behind a
// QEMU running as root cannot leave a setuid-root file, a root-owned file of its choosing or a device node on the
// host.
import { describe, expect, it } from 'vitest';
import { qemuArgs, shareFsdevOptions, type VmSpec } from './qemu-args';

const spec: VmSpec = {
  machine: 'microvm',
  accel: 'tcg',
  kernel: '/k',
  initrd: '/i',
  append: '',
  memoryMiB: 256,
  cpus: 1,
  noReboot: true,
  forwards: [],
  qmpSocket: null,
  debugConsoleSocket: null,
  disks: [],
};

describe('virtio-9p share options', () => {
  it('read-only: security_model=none, readonly=on (an image\'s owners and setuid bits as they are, nothing changes)', () => {
    expect(shareFsdevOptions({})).toBe('security_model=none,readonly=on,multidevs=remap');
    expect(shareFsdevOptions({ writable: false })).toBe('security_model=none,readonly=on,multidevs=remap');
  });

  it('writable: mapped-file with files 0600 and directories 0700 on the host; never none or passthrough', () => {
    const options = shareFsdevOptions({ writable: true });
    expect(options).toBe('security_model=mapped-file,fmode=0600,dmode=0700,multidevs=remap');
    expect(options).not.toMatch(/security_model=(none|passthrough)|readonly/);
  });

  it('qemuArgs: one -fsdev and one virtio-9p device per share, in order, each with its own options', () => {
    const args = qemuArgs({
      ...spec,
      shares: [
        { tag: 'aurae-images', path: '/run/aurae/vm-pod-shares/web' },
        { tag: 'aurae-volumes', path: '/run/aurae/vm-pod-volumes/web', writable: true },
      ],
    });
    const fsdevs = args.flatMap((a, i) => (a === '-fsdev' ? [args[i + 1]] : []));
    expect(fsdevs).toEqual([
      'local,id=fs0,path=/run/aurae/vm-pod-shares/web,security_model=none,readonly=on,multidevs=remap',
      'local,id=fs1,path=/run/aurae/vm-pod-volumes/web,security_model=mapped-file,fmode=0600,dmode=0700,multidevs=remap',
    ]);
    expect(args).toContain('virtio-9p-device,fsdev=fs1,mount_tag=aurae-volumes');
  });
});
