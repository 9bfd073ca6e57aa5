import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { detectAccel, hostTscKhz } from './accel';
import { kernelCmdline, qemuArgs, VmSpecError, type VmSpec } from './qemu-args';
import { QmpClient, QmpError } from './qmp';

const spec: VmSpec = {
  kernel: '/k',
  initrd: '/i',
  append: 'panic=-1 quiet',
  memoryMiB: 1024,
  cpus: 1,
  accel: 'tcg',
  machine: 'microvm',
  forwards: [{ hostPort: 18443, guestPort: 8443 }],
  qmpSocket: '/tmp/q.sock',
  debugConsoleSocket: '/tmp/d.sock',
  noReboot: true,
  disks: [{ path: '/state.img', readOnly: false, format: 'raw' }],
  tscKhz: 2600000,
};

const argAfter = (args: string[], flag: string) => args[args.indexOf(flag) + 1];

describe('qemuArgs', () => {
  it('boots microvm with virtio-mmio devices, a restricted user network and the forwarded port', () => {
    const args = qemuArgs(spec);
    expect(argAfter(args, '-M')).toBe('microvm,x-option-roms=off,isa-serial=on,rtc=on');
    expect(argAfter(args, '-cpu')).toBe('max');
    expect(argAfter(args, '-netdev')).toBe('user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:18443-:8443');
    expect(args).toContain('virtio-net-device,netdev=net0');
    expect(args).toContain('virtio-serial-device');
    expect(args).toContain('virtconsole,chardev=dbg0');
    expect(argAfter(args, '-qmp')).toBe('unix:/tmp/q.sock,server=on,wait=off');
    expect(args).toContain('-no-reboot');
    expect(args).toContain('if=none,id=disk0,file=/state.img,format=raw,readonly=off');
  });

  it('uses PCI devices and host CPU where they apply', () => {
    const args = qemuArgs({ ...spec, machine: 'pc', accel: 'kvm', noReboot: false, debugConsoleSocket: null });
    expect(argAfter(args, '-M')).toBe('pc');
    expect(argAfter(args, '-cpu')).toBe('host');
    expect(args).toContain('virtio-net-pci,netdev=net0');
    expect(args).not.toContain('-no-reboot');
    expect(args).not.toContain('virtconsole,chardev=dbg0');
  });

  it('boots UEFI firmware from pflash instead of a kernel, on q35', () => {
    const args = qemuArgs({ ...spec, machine: 'q35', debugConsoleSocket: null, firmware: { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/tmp/vars.fd' } });
    expect(argAfter(args, '-M')).toBe('q35');
    expect(args).toContain('if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd');
    expect(args).toContain('if=pflash,format=raw,unit=1,file=/tmp/vars.fd');
    expect(args).not.toContain('-kernel');
    expect(args).not.toContain('-append');
    expect(args).toContain('virtio-blk-pci,drive=disk0');
    expect(() => qemuArgs({ ...spec, firmware: { code: '/c', vars: '/v' } })).toThrow(/machine is invalid: expected pc or q35 with firmware/);
  });

  it('gives Secure Boot firmware SMM and a flash only SMM may write, on q35 only', () => {
    const firmware = { code: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd', vars: '/tmp/vars.fd', secureBoot: true };
    const args = qemuArgs({ ...spec, machine: 'q35', debugConsoleSocket: null, firmware });
    expect(argAfter(args, '-M')).toBe('q35,smm=on');
    expect(argAfter(args, '-global')).toBe('driver=cfi.pflash01,property=secure,value=on');
    expect(args).toContain('if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd');
    expect(qemuArgs({ ...spec, machine: 'q35', firmware: { code: '/c', vars: '/v' } })).not.toContain('-global');
    expect(() => qemuArgs({ ...spec, machine: 'pc', firmware })).toThrow(/machine is invalid: expected q35 with Secure Boot firmware/);
  });

  it('puts console, pci=off and the TSC frequency before the caller’s parameters', () => {
    expect(kernelCmdline(spec)).toBe('console=ttyS0 pci=off tsc_early_khz=2600000 panic=-1 quiet');
    expect(kernelCmdline({ ...spec, machine: 'pc', tscKhz: null, append: '' })).toBe('console=ttyS0');
  });

  it('rejects bad values naming the field and what is allowed', () => {
    expect(() => qemuArgs({ ...spec, memoryMiB: 64 })).toThrow(/memoryMiB is invalid: expected an integer 128..65536/);
    expect(() => qemuArgs({ ...spec, cpus: 0 })).toThrow(VmSpecError);
    expect(() => qemuArgs({ ...spec, forwards: [{ hostPort: 70000, guestPort: 1 }] })).toThrow(/forwards\[0\]\.hostPort/);
    expect(() => qemuArgs({ ...spec, append: 'a\nb' })).toThrow(/append/);
    expect(() => qemuArgs({ ...spec, tscKhz: 12.5 })).toThrow(/tscKhz/);
    expect(() => qemuArgs({ ...spec, fwCfg: [{ name: 'etc/x', file: '/f' }] })).toThrow(/fwCfg\[0\]\.name/);
    expect(() => qemuArgs({ ...spec, tcgTbSizeMiB: 4 })).toThrow(/tcgTbSizeMiB/);
    expect(argAfter(qemuArgs({ ...spec, tcgTbSizeMiB: 64 }), '-accel')).toBe('tcg,tb-size=64');
    expect(argAfter(qemuArgs({ ...spec, accel: 'kvm', tcgTbSizeMiB: 64 }), '-accel')).toBe('kvm');
    expect(argAfter(qemuArgs({ ...spec, fwCfg: [{ name: 'opt/aurae/payload', file: '/tmp/p.json' }] }), '-fw_cfg')).toBe('name=opt/aurae/payload,file=/tmp/p.json');
  });

  it('adds guest forwards to the restricted user network (each connection runs the command)', () => {
    const relay = { guestAddress: '10.0.2.100', guestPort: 5000, command: '/usr/bin/node /t/relay.cjs 41234' };
    expect(argAfter(qemuArgs({ ...spec, guestForwards: [relay] }), '-netdev')).toBe(
      'user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:18443-:8443,guestfwd=tcp:10.0.2.100:5000-cmd:/usr/bin/node /t/relay.cjs 41234',
    );
    expect(() => qemuArgs({ ...spec, guestForwards: [{ ...relay, guestAddress: '10.0.2.2' }] })).toThrow(/guestForwards\[0\]\.guestAddress/);
    expect(() => qemuArgs({ ...spec, guestForwards: [{ ...relay, command: 'a,b' }] })).toThrow(/guestForwards\[0\]\.command/);
  });
});

describe('accelerator and TSC', () => {
  const cpuinfo = (flags: string, mhz = '2600.000') => `processor\t: 0\ncpu MHz\t\t: ${mhz}\nflags\t\t: fpu ${flags} tsc\n`;
  it('uses KVM only with a usable /dev/kvm AND VMX/SVM', () => {
    expect(detectAccel({ readCpuinfo: () => cpuinfo('vmx'), canOpenKvm: () => true }, {})).toBe('kvm');
    expect(detectAccel({ readCpuinfo: () => cpuinfo('svm'), canOpenKvm: () => false }, {})).toBe('tcg');
    expect(detectAccel({ readCpuinfo: () => cpuinfo('sse'), canOpenKvm: () => true }, {})).toBe('tcg');
    expect(detectAccel({ readCpuinfo: () => cpuinfo('sse'), canOpenKvm: () => true }, { AURAE_ACCEL: 'kvm' })).toBe('kvm');
  });
  it('reads the TSC rate only when it is constant', () => {
    expect(hostTscKhz(cpuinfo('constant_tsc'))).toBe(2600000);
    expect(hostTscKhz(cpuinfo('constant_tsc', '2599.993'))).toBe(2599993);
    expect(hostTscKhz(cpuinfo('sse'))).toBeNull();
  });
});

describe('QmpClient', () => {
  let dir: string;
  let server: net.Server;
  afterEach(() => {
    server?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates, matches replies by id, reports errors and delivers events', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qmp-'));
    const sock = path.join(dir, 'q.sock');
    const seen: string[] = [];
    server = net.createServer((c) => {
      c.write('{"QMP": {"version": {}, "capabilities": []}}\r\n');
      let buf = '';
      c.on('data', (d) => {
        buf += d.toString();
        for (let nl; (nl = buf.indexOf('\n')) >= 0; ) {
          const msg = JSON.parse(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          seen.push(msg.execute);
          if (msg.execute === 'query-status') c.write(`{"return": {"running": true, "status": "running"}, "id": "${msg.id}"}\r\n`);
          else if (msg.execute === 'bogus') c.write(`{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": "${msg.id}"}\r\n`);
          else if (msg.execute === 'system_powerdown') {
            c.write('{"event": "POWERDOWN", "timestamp": {"seconds": 1, "microseconds": 0}}\r\n');
            c.write(`{"return": {}, "id": "${msg.id}"}\r\n`);
          } else c.write(`{"return": {}, "id": "${msg.id}"}\r\n`);
        }
      });
    });
    await new Promise<void>((r) => server.listen(sock, r));
    const qmp = await QmpClient.connect(sock, 2000);
    expect(await qmp.queryStatus()).toEqual({ running: true, status: 'running' });
    await expect(qmp.execute('bogus')).rejects.toThrow(QmpError);
    const event = qmp.waitForEvent('POWERDOWN', 2000);
    await qmp.systemPowerdown();
    expect((await event).event).toBe('POWERDOWN');
    expect(seen).toEqual(['qmp_capabilities', 'query-status', 'bogus', 'system_powerdown']);
    qmp.close();
  });

  it('fails with a clear message when nothing listens', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qmp-'));
    await expect(QmpClient.connect(path.join(dir, 'none.sock'), 300)).rejects.toThrow(/cannot connect .* is QEMU running/);
  });
});
