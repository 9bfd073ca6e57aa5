import { describe, expect, it } from 'vitest';
import {
  canTransition,
  checkSpawnDepth,
  childVmSpec,
  restartDelayMs,
  shouldRestart,
  validateVmRequest,
  VM_TRANSITIONS,
  type VmState,
} from './vm-model';
import { harness } from './testing';
import { resolveBootDisk, resolveQemu } from './vm-host';
import { unpackGuestPayload } from '../../guest/payload';
import { qemuArgs } from './qemu-args';

const limits = { maxMemoryMiB: 1024, maxDepth: 2 };

describe('validateVmRequest', () => {
  it('applies defaults and keeps valid values', () => {
    expect(validateVmRequest({ name: 'web' }, limits)).toEqual({ name: 'web', memoryMiB: 512, cpus: 1, restart: 'never' });
    expect(validateVmRequest({ name: 'a-1', memoryMiB: 1024, cpus: 2, restart: 'on-failure' }, limits)).toEqual({ name: 'a-1', memoryMiB: 1024, cpus: 2, restart: 'on-failure' });
  });
  it.each([
    [{ name: '' }, /vm name "" is invalid: expected a DNS label/],
    [{ name: 'Web' }, /DNS label/],
    [{ name: 'a/b' }, /DNS label/],
    [{ name: '..' }, /DNS label/],
    [{ name: 'web', memoryMiB: 4096 }, /memory_mib 4096 is out of range: expected 128\.\.1024 \(vms\.maxMemoryMiB/],
    [{ name: 'web', memoryMiB: 64 }, /memory_mib 64 is out of range/],
    [{ name: 'web', cpus: 99 }, /cpus 99 is out of range: expected 1\.\.16/],
    [{ name: 'web', restart: 'sometimes' }, /restart "sometimes" is invalid: expected one of never, on-failure, always/],
  ])('rejects %j', (raw, message) => {
    expect(() => validateVmRequest(raw, limits)).toThrow(message);
    try {
      validateVmRequest(raw, limits);
    } catch (err) {
      expect((err as { code: string }).code).toBe('INVALID_ARGUMENT');
    }
  });
});

describe('depth', () => {
  it('allows children up to vms.maxDepth', () => {
    expect(checkSpawnDepth('aurae', 2)).toBe(1);
    expect(checkSpawnDepth('aurae/web', 2)).toBe(2);
  });
  it('refuses past vms.maxDepth with FAILED_PRECONDITION', () => {
    expect(() => checkSpawnDepth('aurae/web/db', 2)).toThrow(/depth 3, past vms\.maxDepth 2/);
    expect(() => checkSpawnDepth('aurae', 0)).toThrow(expect.objectContaining({ code: 'FAILED_PRECONDITION' }));
  });
});

describe('state table', () => {
  it('allows the lifecycle paths and nothing from a state to itself', () => {
    const path: VmState[] = ['allocated', 'starting', 'running', 'stopping', 'stopped', 'starting', 'running', 'crashed', 'starting', 'failed'];
    for (let i = 1; i < path.length; i++) expect(canTransition(path[i - 1]!, path[i]!), `${path[i - 1]} → ${path[i]}`).toBe(true);
    for (const [from, tos] of Object.entries(VM_TRANSITIONS)) expect(tos).not.toContain(from);
    expect(canTransition('allocated', 'running')).toBe(false);
    expect(canTransition('stopped', 'running')).toBe(false);
  });
  it('restart policy', () => {
    expect(shouldRestart('never', { code: 1, signal: null })).toBe(false);
    expect(shouldRestart('on-failure', { code: 0, signal: null })).toBe(false);
    expect(shouldRestart('on-failure', { code: null, signal: 'SIGKILL' })).toBe(true);
    expect(shouldRestart('always', { code: 0, signal: null })).toBe(true);
    expect([1, 2, 3, 10].map(restartDelayMs)).toEqual([1000, 2000, 4000, 30_000]);
  });
});

describe('childVmSpec', () => {
  it('boots the node kernel/initrd on microvm with one loopback forward, QMP, the payload as fw_cfg, no reboot', () => {
    const spec = childVmSpec(
      { name: 'web', memoryMiB: 512, cpus: 2, restart: 'never' },
      { kernel: '/boot/vmlinuz', initrd: '/boot/initramfs', rootDisk: null, bootDisk: null, accel: 'tcg', hostPort: 40001, guestPort: 8443, qmpSocket: '/s/web/qmp.sock', payload: [{ name: 'opt/aurae/payload/0', file: '/s/web/payload.json' }] },
    );
    expect(spec).toMatchObject({
      kernel: '/boot/vmlinuz',
      initrd: '/boot/initramfs',
      machine: 'microvm',
      memoryMiB: 512,
      cpus: 2,
      forwards: [{ hostPort: 40001, guestPort: 8443 }],
      qmpSocket: '/s/web/qmp.sock',
      noReboot: true,
      fwCfg: [{ name: 'opt/aurae/payload/0', file: '/s/web/payload.json' }],
      disks: [],
    });
  });

  it('gives the child the boot volume read-only, so it has /boot (and can spawn in turn)', () => {
    const spec = childVmSpec(
      { name: 'web', memoryMiB: 512, cpus: 2, restart: 'never' },
      { kernel: '/boot/vmlinuz', initrd: '/boot/initramfs', rootDisk: null, bootDisk: '/dev/vda1', accel: 'kvm', hostPort: 40001, guestPort: 8443, qmpSocket: '/s/q', payload: [{ name: 'opt/aurae/payload/0', file: '/s/p' }] },
    );
    expect(spec.disks).toEqual([{ path: '/dev/vda1', readOnly: true, format: 'raw' }]);
  });

  it('with the root image as a disk: the stage initramfs, and the image first (vda), read-only, by offset and serial', () => {
    const rootDisk = { path: '/boot/initramfs', offset: 8192, size: 4096 * 100, serial: 'aurae-root' };
    const spec = childVmSpec(
      { name: 'web', memoryMiB: 256, cpus: 1, restart: 'never', disks: ['/d/a.ext4'] },
      { kernel: '/boot/vmlinuz', initrd: '/s/stage.cpio', rootDisk, bootDisk: '/dev/vda1', accel: 'kvm', hostPort: 1, guestPort: 2, qmpSocket: '/s/q', payload: [{ name: 'opt/aurae/payload/0', file: '/s/p' }] },
    );
    expect(spec.initrd).toBe('/s/stage.cpio');
    expect(spec.disks).toEqual([
      { ...rootDisk, readOnly: true, format: 'raw' },
      { path: '/dev/vda1', readOnly: true, format: 'raw' },
      { path: '/d/a.ext4', readOnly: true, format: 'raw' },
    ]);
    const args = qemuArgs(spec);
    expect(args).toContain('if=none,id=disk0,file=/boot/initramfs,format=raw,readonly=on,offset=8192,size=409600');
    expect(args).toContain('virtio-blk-device,drive=disk0,serial=aurae-root');
    expect(() => qemuArgs({ ...spec, disks: [{ ...rootDisk, offset: 100, readOnly: true, format: 'raw' }] })).toThrow(/disks\[0\]\.offset is invalid: expected a non-negative multiple of 512 bytes/);
    expect(() => qemuArgs({ ...spec, disks: [{ ...rootDisk, serial: 'a b', readOnly: true, format: 'raw' }] })).toThrow(/disks\[0\]\.serial is invalid/);
  });
});

describe('resolveQemu / resolveBootDisk', () => {
  it('prefers the config, then the boot volume, then PATH', () => {
    expect(resolveQemu('/opt/q', () => true)).toBe('/opt/q');
    expect(resolveQemu(null, (p) => p === '/boot/qemu/qemu-system-x86_64')).toBe('/boot/qemu/qemu-system-x86_64');
    expect(resolveQemu(null, () => false)).toBe('qemu-system-x86_64');
  });

  it('finds the device mounted on /boot in mountinfo', () => {
    const mountinfo = [
      '22 1 0:20 / /proc rw,nosuid - proc proc rw',
      '30 1 254:2 / /var/lib/aurae rw,nosuid,nodev,relatime - ext4 /dev/vda2 rw',
      '31 1 254:1 / /boot ro,nosuid,nodev - vfat /dev/vda1 ro,fmask=0022',
    ].join('\n');
    expect(resolveBootDisk(null, mountinfo)).toBe('/dev/vda1');
    expect(resolveBootDisk('/img/esp.img', mountinfo)).toBe('/img/esp.img');
    expect(resolveBootDisk(null, '22 1 0:20 / /proc rw - proc proc rw')).toBeNull();
    expect(resolveBootDisk(null, null)).toBeNull();
  });
});

// --- The core with fakes (./testing) ---------------------------------------------------------------

const web = { name: 'web', memoryMiB: 512, cpus: 1, restart: 'never' as const };

describe('VmRuntime', () => {
  it('spawn boots, writes the payload, records address/state/pid; stop is graceful (powerdown)', async () => {
    const h = harness();
    const status = await h.runtime.spawn(web);
    expect(status).toMatchObject({ nodePath: 'aurae/web', state: 'running', address: '127.0.0.1:40001', tlsName: 'web.aurae', pid: 1000 });
    // The payload as fw_cfg parts (gzip, at most a page each): this one fits in one.
    expect(unpackGuestPayload([h.files.get('/state/vms/web/payload.0')!.data]).toString()).toContain('aurae/web');
    expect(h.files.get('/state/vms/web/payload.0')?.mode).toBe('0600');
    expect(h.launched[0]!.spec.fwCfg).toEqual([{ name: 'opt/aurae/payload/0', file: '/state/vms/web/payload.0' }]);
    expect(h.runtime.route('web')).toEqual({ address: '127.0.0.1:40001', tlsName: 'web.aurae', nodePath: 'aurae/web', serverCertPem: 'CERT' });
    const stopped = await h.runtime.stop('web');
    expect(stopped).toMatchObject({ state: 'stopped', pid: 0, address: '' });
    expect(h.launched[0]!.powerdowns).toBe(1);
    expect(h.launched[0]!.quits).toBe(0);
    expect(h.events.map((e) => e.kind)).toEqual(['vm_started', 'vm_exited']);
    h.runtime.free('web');
    expect(h.runtime.list()).toEqual([]);
    expect(h.files.size).toBe(0);
  });

  it('a stop that arrives before QEMU is launched still stops the VM once it booted', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const h = harness();
    const launch = h.deps.launch;
    const slow = harness({ launch: async (spec, onLine) => (await gate, launch(spec, onLine)) });
    const spawning = slow.runtime.spawn(web);
    await new Promise((r) => setTimeout(r, 0));
    expect((await slow.runtime.stop('web')).state).toBe('starting'); // nothing to stop yet
    release();
    expect((await spawning).state).toBe('stopped');
    expect(h.launched[0]!.powerdowns).toBe(1);
  });

  it('free releases the VM\'s cell', async () => {
    const released: string[] = [];
    const h = harness({ unconfine: (name) => void released.push(name) });
    await h.runtime.spawn(web);
    await h.runtime.stop('web');
    expect(released).toEqual([]);
    h.runtime.free('web');
    expect(released).toEqual(['web']);
  });

  it('stop quits QEMU when the guest ignores the powerdown', async () => {
    const h = harness({}, { ready: true, obeysPowerdown: false });
    await h.runtime.spawn(web);
    expect((await h.runtime.stop('web')).state).toBe('stopped');
    expect(h.launched[0]!.quits).toBe(1);
  });

  it('bad inputs start no QEMU', async () => {
    const h = harness({ kernel: '/missing/vmlinuz' });
    await expect(h.runtime.spawn(web)).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/vms\.kernel \/missing\/vmlinuz does not exist/) });
    const deep = harness({ nodePath: 'aurae/web/db' });
    await expect(deep.runtime.spawn(web)).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/past vms\.maxDepth 2/) });
    const big = harness();
    await expect(big.runtime.spawn({ ...web, memoryMiB: 4096 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const noCa = harness({ guest: null });
    await expect(noCa.runtime.spawn(web)).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/no spawn CA/) });
    for (const x of [h, deep, big, noCa]) {
      expect(x.launched).toEqual([]);
      expect(x.runtime.list()).toEqual([]);
    }
  });

  it('a child that resets while booting with no panic on its console (a triple fault) is booted again, at most 3 times', async () => {
    const once = harness({}, { ready: true, obeysPowerdown: true, bootResets: 1 });
    const status = await once.runtime.spawn(web);
    expect(status).toMatchObject({ state: 'running' });
    expect(once.launched.map((v) => v.running)).toEqual([false, true]);
    expect(once.launched[1]!.spec).toEqual(once.launched[0]!.spec);

    const always = harness({}, { ready: true, obeysPowerdown: true, bootResets: 5 });
    await expect(always.runtime.spawn(web)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringMatching(/did not become ready \(boot attempt 3; the earlier ones reset without a panic\): QEMU exited .*guest-reset/),
    });
    expect(always.launched).toHaveLength(3);
    expect(always.runtime.list()).toEqual([]);

    // A kernel panic (panic=-1 makes it a reset too) is the child's own failure: no second boot.
    const panic = harness({}, { ready: true, obeysPowerdown: true, bootResets: 1, console: 'Kernel panic - not syncing: Attempted to kill init!' });
    await expect(panic.runtime.spawn(web)).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/^vm "web" did not become ready: .*Kernel panic/s) });
    expect(panic.launched).toHaveLength(1);
  });

  it('a child that never becomes ready is killed and the spawn leaves nothing behind', async () => {
    const h = harness({}, { ready: false, obeysPowerdown: true });
    await expect(h.runtime.spawn(web)).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/did not become ready/) });
    expect(h.launched[0]!.running).toBe(false);
    expect(h.runtime.list()).toEqual([]);
    expect(h.files.size).toBe(0);
  });

  it('names are unique; free refuses a running VM', async () => {
    const h = harness();
    await h.runtime.spawn(web);
    await expect(h.runtime.spawn(web)).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    expect(() => h.runtime.free('web')).toThrow(expect.objectContaining({ code: 'FAILED_PRECONDITION' }));
    expect(() => h.runtime.route('nope')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    await h.runtime.close(50);
  });

  it('a crash is an event; on-failure restarts it, never leaves it crashed', async () => {
    const h = harness();
    await h.runtime.spawn({ ...web, restart: 'on-failure' });
    h.launched[0]!.exit(1);
    await waitUntil(() => h.runtime.get('web').state === 'running' && h.launched.length === 2);
    expect(h.runtime.get('web')).toMatchObject({ restarts: 1, pid: 1001 });
    expect(h.events.map((e) => e.kind)).toEqual(['vm_started', 'vm_exited', 'vm_restarted', 'vm_started']);
    expect(h.events[1]).toEqual({ kind: 'vm_exited', vm: 'web', pid: 1000, code: 1, signal: null, expected: false });
    expect(h.events[2]).toEqual({ kind: 'vm_restarted', vm: 'web', attempt: 1, delayMs: 1000 });
    expect(h.events[3]).toEqual({ kind: 'vm_started', vm: 'web', pid: 1001, address: '127.0.0.1:40002' });

    const n = harness();
    await n.runtime.spawn(web);
    n.launched[0]!.exit(null, 'SIGKILL');
    await waitUntil(() => n.runtime.get('web').state === 'crashed');
    expect(n.runtime.get('web').lastExit).toBe('QEMU killed by SIGKILL');
    expect(() => n.runtime.route('web')).toThrow(/is crashed, not running/);

    // QEMU's own reason for stopping the machine (its QMP SHUTDOWN event) is kept with the exit.
    const r = harness();
    await r.runtime.spawn(web);
    r.launched[0]!.exit(0, null, 'guest-reset');
    await waitUntil(() => r.runtime.get('web').state === 'crashed');
    expect(r.runtime.get('web').lastExit).toBe('QEMU exited with code 0 (QMP shutdown reason: guest-reset)');
  });

  it('a child crash the policy cannot recover from ends in vm_failed: restart limit, or a restart that fails', async () => {
    const h = harness();
    await h.runtime.spawn({ ...web, restart: 'always' });
    // Five crashes are restarted (backoff sleeps are instant here); the sixth reaches the limit.
    for (let i = 0; i < 5; i++) {
      h.launched.at(-1)!.exit(1);
      await waitUntil(() => h.launched.length === i + 2 && h.runtime.get('web').state === 'running');
    }
    h.launched.at(-1)!.exit(1);
    await waitUntil(() => h.runtime.get('web').state === 'failed');
    expect(h.events.at(-1)).toEqual({ kind: 'vm_failed', vm: 'web', reason: 'restart limit (5) reached' });

    let kernel = true;
    const g = harness({ files: { ...h.deps.files, exists: (p) => p.startsWith('/img/') && (kernel || !p.endsWith('vmlinuz')) } });
    await g.runtime.spawn({ ...web, restart: 'on-failure' });
    kernel = false;
    g.launched[0]!.exit(null, 'SIGSEGV');
    await waitUntil(() => g.runtime.get('web').state === 'failed');
    expect(g.events.map((e) => e.kind)).toEqual(['vm_started', 'vm_exited', 'vm_restarted', 'vm_failed']);
    expect(g.events[3]).toMatchObject({ kind: 'vm_failed', reason: expect.stringMatching(/vms\.kernel \/img\/vmlinuz does not exist/) });
    expect(g.runtime.get('web').lastExit).toMatch(/vms\.kernel/);
    expect(g.launched).toHaveLength(1);
  });

  it('a stop during the restart backoff calls the restart off', async () => {
    let release!: () => void;
    const h = harness({ sleep: () => new Promise<void>((r) => (release = r)) });
    await h.runtime.spawn({ ...web, restart: 'always' });
    h.launched[0]!.exit(1);
    await waitUntil(() => h.runtime.get('web').state === 'crashed' && release !== undefined);
    await h.runtime.stop('web');
    release();
    await new Promise((r) => setTimeout(r, 20));
    expect(h.launched).toHaveLength(1);
    expect(h.runtime.get('web').state).toBe('crashed');
    expect(h.store.rows.get('web')).toMatchObject({ desiredRunning: false });
  });

  it('persists every VM: request, desired state, QEMU pid and QMP socket while it runs; free deletes the row', async () => {
    const h = harness();
    h.runtime.allocate({ ...web, name: 'db' });
    expect(h.store.rows.get('db')).toMatchObject({ desiredRunning: false, state: 'allocated', pid: 0 });
    await h.runtime.spawn({ ...web, restart: 'on-failure', cpus: 2 });
    expect(h.store.rows.get('web')).toEqual({
      request: { name: 'web', memoryMiB: 512, cpus: 2, restart: 'on-failure' },
      desiredRunning: true,
      state: 'running',
      pid: 1000,
      qmpSocket: '/state/vms/web/qmp.sock',
      restarts: 0,
      lastExit: '',
      exit: null,
    });
    await h.runtime.stop('web');
    expect(h.store.rows.get('web')).toMatchObject({ desiredRunning: false, state: 'stopped', pid: 0, exit: { code: 0, signal: null } });
    await h.runtime.start('web');
    // The parent's shutdown stops the child but keeps what its owner asked for: the next auraed starts it again.
    await h.runtime.close(50);
    expect(h.store.rows.get('web')).toMatchObject({ desiredRunning: true, state: 'stopped', pid: 0 });
    h.runtime.free('web');
    h.runtime.free('db');
    expect(h.store.rows.size).toBe(0);
  });

  it('a spawn that fails leaves no row; a store that cannot write refuses the allocation', async () => {
    const h = harness({}, { ready: false, obeysPowerdown: true });
    await expect(h.runtime.spawn(web)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(h.store.rows.size).toBe(0);
    const broken = harness({ store: { list: () => [], put: () => { throw new Error('SQLITE_FULL: database or disk is full'); }, delete: () => undefined } });
    await expect(broken.runtime.spawn(web)).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/writing it to the state database failed: SQLITE_FULL/) });
    expect(broken.launched).toEqual([]);
    expect(broken.runtime.list()).toEqual([]);
  });

  it('parent shutdown stops every child and refuses new starts', async () => {
    const h = harness();
    await h.runtime.spawn(web);
    await h.runtime.spawn({ ...web, name: 'db' });
    await h.runtime.close(50);
    expect(h.runtime.list().map((s) => s.state)).toEqual(['stopped', 'stopped']);
    expect(h.launched.every((v) => !v.running && v.powerdowns === 1)).toBe(true);
    await expect(h.runtime.start('web')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

async function waitUntil(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
}

describe('childBaseConfig', () => {
  it("resets what describes the parent's machine and keeps policy and limits", async () => {
    const { parseNodeConfig } = await import('../config');
    const { childBaseConfig } = await import('./vm-model');
    const parent = parseNodeConfig(
      {
        version: 1,
        node: { name: 'aurae' },
        pki: { caCert: '/p/ca.crt', serverCert: '/p/n.crt', serverKey: '/p/n.key' },
        listen: { socket: '/tmp/x/aurae.sock', tcp: '127.0.0.1:40000' },
        state: { dir: '/tmp/x/state' },
        authz: { admins: ['ops'] },
        vms: { kernel: '/repo/out/image/vmlinuz', initrd: '/repo/out/image/initramfs.cpio', maxMemoryMiB: 1024 },
      },
      'test',
    );
    const base = childBaseConfig(parent);
    expect(base.listen).toEqual({ socket: '/run/aurae/aurae.sock', tcp: '0.0.0.0:8443' });
    expect(base.state.dir).toBe('/var/lib/aurae');
    expect(base.vms).toMatchObject({ kernel: '/boot/vmlinuz', initrd: '/boot/initramfs', maxMemoryMiB: 1024 });
    expect(base.authz.admins).toEqual(['ops']);
    expect(parent.listen.tcp).toBe('127.0.0.1:40000'); // not mutated
  });
});
