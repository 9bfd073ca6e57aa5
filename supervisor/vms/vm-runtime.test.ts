import { describe, expect, it } from 'vitest';
import { silentLogger } from '../log';
import type { VmSpec } from './qemu-args';
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
import { type GuestAdapter, type VmEvent, type VmProcess, VmRuntime, type VmRuntimeDeps } from './vm-runtime';

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
      { kernel: '/boot/vmlinuz', initrd: '/boot/initramfs', accel: 'tcg', hostPort: 40001, guestPort: 8443, qmpSocket: '/s/web/qmp.sock', payloadFile: '/s/web/payload.json', payloadName: 'opt/aurae/payload' },
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
      fwCfg: [{ name: 'opt/aurae/payload', file: '/s/web/payload.json' }],
    });
  });
});

// --- The core with fakes --------------------------------------------------------------------------------

class FakeVm implements VmProcess {
  readonly process: { pid: number };
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running = true;
  powerdowns = 0;
  quits = 0;
  private resolveExit!: (e: { code: number | null; signal: NodeJS.Signals | null }) => void;
  constructor(
    readonly spec: VmSpec,
    pid: number,
    private readonly behaviour: { ready: boolean; obeysPowerdown: boolean },
  ) {
    this.process = { pid };
    this.exited = new Promise((r) => (this.resolveExit = r));
  }
  exit(code: number | null, signal: NodeJS.Signals | null = null) {
    if (!this.running) return;
    this.running = false;
    this.resolveExit({ code, signal });
  }
  async waitForConsole(pattern: RegExp) {
    if (!this.behaviour.ready) throw new Error('no AURAE_READY on the console within 10 ms');
    const m = pattern.exec('AURAE_READY {"node":"aurae/web"}');
    if (!m) throw new Error('pattern mismatch');
    return m;
  }
  async waitForExit(timeoutMs: number) {
    const timeout = new Promise<never>((_, r) => setTimeout(() => r(new Error(`QEMU did not exit within ${timeoutMs} ms`)), timeoutMs));
    return Promise.race([this.exited, timeout]);
  }
  async qmp() {
    return {
      systemPowerdown: async () => {
        this.powerdowns++;
        if (this.behaviour.obeysPowerdown) setTimeout(() => this.exit(0), 1);
      },
      quit: async () => {
        this.quits++;
        this.exit(0);
      },
    };
  }
  async kill() {
    this.quits++;
    this.exit(null, 'SIGKILL');
    return this.exited;
  }
  tail() {
    return '(console)';
  }
}

function harness(overrides: Partial<VmRuntimeDeps> = {}, behaviour = { ready: true, obeysPowerdown: true }) {
  const launched: FakeVm[] = [];
  const files = new Map<string, { data: string; mode: string }>();
  const events: VmEvent[] = [];
  let port = 40000;
  const guest: GuestAdapter = {
    payloadName: 'opt/aurae/payload',
    mintChildIdentity: async (label) => ({ nodePath: `aurae/${label}`, tlsName: `${label}.aurae`, serverCertChainPem: 'CERT', serverKeyPem: 'KEY' }),
    payloadBytes: (child) => JSON.stringify({ node: child.nodePath, key: child.serverKeyPem }),
  };
  const deps: VmRuntimeDeps = {
    nodePath: 'aurae',
    limits: { maxMemoryMiB: 1024, maxDepth: 2, bootTimeoutMs: 1000, stopTimeoutMs: 50 },
    kernel: '/img/vmlinuz',
    initrd: '/img/initramfs',
    stateDir: '/state/vms',
    guestPort: 8443,
    guest,
    launch: async (spec) => {
      const vm = new FakeVm(spec, 1000 + launched.length, behaviour);
      launched.push(vm);
      return vm;
    },
    accel: () => 'tcg',
    freePort: async () => ++port,
    files: {
      exists: (p) => p.startsWith('/img/'),
      mkdirPrivate: () => undefined,
      writePrivate: (p, d) => void files.set(p, { data: String(d), mode: '0600' }),
      remove: (p) => {
        for (const k of [...files.keys()]) if (k.startsWith(p)) files.delete(k);
      },
    },
    confine: async () => false,
    onEvent: (e) => void events.push(e),
    log: silentLogger,
    sleep: async () => undefined,
    ...overrides,
  };
  return { runtime: new VmRuntime(deps), launched, files, events };
}

const web = { name: 'web', memoryMiB: 512, cpus: 1, restart: 'never' as const };

describe('VmRuntime', () => {
  it('spawn boots, writes the payload, records address/state/pid; stop is graceful (powerdown)', async () => {
    const h = harness();
    const status = await h.runtime.spawn(web);
    expect(status).toMatchObject({ nodePath: 'aurae/web', state: 'running', address: '127.0.0.1:40001', tlsName: 'web.aurae', pid: 1000 });
    expect(h.files.get('/state/vms/web/payload.json')?.data).toContain('aurae/web');
    expect(h.launched[0]!.spec.fwCfg).toEqual([{ name: 'opt/aurae/payload', file: '/state/vms/web/payload.json' }]);
    expect(h.runtime.route('web')).toEqual({ address: '127.0.0.1:40001', tlsName: 'web.aurae', nodePath: 'aurae/web' });
    const stopped = await h.runtime.stop('web');
    expect(stopped).toMatchObject({ state: 'stopped', pid: 0, address: '' });
    expect(h.launched[0]!.powerdowns).toBe(1);
    expect(h.launched[0]!.quits).toBe(0);
    expect(h.events.map((e) => e.kind)).toEqual(['vm_started', 'vm_exited']);
    h.runtime.free('web');
    expect(h.runtime.list()).toEqual([]);
    expect(h.files.size).toBe(0);
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
    expect(h.events[1]).toMatchObject({ expected: false, code: 1 });

    const n = harness();
    await n.runtime.spawn(web);
    n.launched[0]!.exit(null, 'SIGKILL');
    await waitUntil(() => n.runtime.get('web').state === 'crashed');
    expect(n.runtime.get('web').lastExit).toBe('QEMU killed by SIGKILL');
    expect(() => n.runtime.route('web')).toThrow(/is crashed, not running/);
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
