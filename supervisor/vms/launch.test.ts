// The streams of a child QEMU read as untrusted input: a fake QEMU (a shell script) floods its console without
// newlines, a fake QMP server floods its socket; memory held stays bounded, over-long lines are cut and counted,
// and what comes after the flood is still read.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cutMarker, LINE_LIMITS } from '../log';
import { CONSOLE_RETAIN_CHARS, launchVm, type Vm } from './launch';
import type { VmSpec } from './qemu-args';
import { QmpClient } from './qmp';

const MiB = 1024 * 1024;
const dirs: string[] = [];
const vms: Vm[] = [];

afterEach(async () => {
  for (const vm of vms.splice(0)) await vm.kill();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-launch-'));
  dirs.push(dir);
  return dir;
}

/** A "QEMU" that runs `script` (sh) instead of a guest; the kernel and initrd only have to exist. */
function fakeQemu(dir: string, script: string): { binary: string; spec: VmSpec } {
  const binary = path.join(dir, 'fake-qemu');
  fs.writeFileSync(binary, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
  for (const f of ['kernel', 'initrd']) fs.writeFileSync(path.join(dir, f), '');
  const spec: VmSpec = {
    kernel: path.join(dir, 'kernel'),
    initrd: path.join(dir, 'initrd'),
    append: '',
    memoryMiB: 256,
    cpus: 1,
    accel: 'kvm',
    machine: 'microvm',
    forwards: [],
    qmpSocket: null,
    debugConsoleSocket: null,
    noReboot: true,
    disks: [],
    tscKhz: null,
  };
  return { binary, spec };
}

describe('Vm console (a child writing to ttyS0)', () => {
  it('64 MiB without a newline: the line is cut at the cap and counted, the console kept is bounded, AURAE_READY after it is seen', async () => {
    const dir = tempDir();
    const { binary, spec } = fakeQemu(dir, `head -c ${64 * MiB} /dev/zero | tr '\\000' A\nprintf '\\r\\nAURAE_READY {"node":"aurae/web"}\\r\\n'\nexec sleep 60`);
    const seen: string[] = [];
    const vm = await launchVm(spec, { qemuBinary: binary, onConsoleLine: (line) => seen.push(line) });
    vms.push(vm);
    const m = await vm.waitForConsole(/AURAE_READY (\{.*\})\n/, 120_000);
    expect(JSON.parse(m[1]!)).toEqual({ node: 'aurae/web' });
    const cap = LINE_LIMITS.consoleLineBytes;
    expect(seen).toEqual([`${'A'.repeat(cap)}${cutMarker(64 * MiB - cap)}`, 'AURAE_READY {"node":"aurae/web"}']);
    expect(vm.consoleStats).toEqual({ lines: 2, cutLines: 1, cutBytes: 64 * MiB - cap });
    expect(vm.console.length).toBeLessThanOrEqual(CONSOLE_RETAIN_CHARS);
    expect(vm.tail(1)).toBe('AURAE_READY {"node":"aurae/web"}');
  }, 180_000);

  it('a flood of lines keeps only the newest CONSOLE_RETAIN_CHARS; waitForConsole from an offset sees only later lines', async () => {
    const dir = tempDir();
    // 16 MiB of 1 KiB lines, then a marker line.
    const { binary, spec } = fakeQemu(
      dir,
      `i=0; line=$(head -c 1023 /dev/zero | tr '\\000' B); while [ $i -lt 16384 ]; do echo "$line"; i=$((i+1)); done\necho DONE\nexec sleep 60`,
    );
    const vm = await launchVm(spec, { qemuBinary: binary });
    vms.push(vm);
    await vm.waitForConsole(/^DONE\n/, 120_000);
    expect(vm.console.length).toBeLessThanOrEqual(CONSOLE_RETAIN_CHARS);
    expect(vm.console.length).toBeGreaterThan(CONSOLE_RETAIN_CHARS - 2048);
    expect(vm.console.endsWith('DONE\n')).toBe(true);
    expect(vm.consoleStats.cutLines).toBe(0);
    // An offset past DONE: DONE does not count again.
    const later = vm.waitForConsole(/^DONE\n/, 200, 16384 * 1024 + 5);
    await expect(later).rejects.toThrow(/no \/\^DONE\\n\/ on the console within 200 ms/);
  }, 180_000);
});

describe('Vm exit (why QEMU stopped the machine)', () => {
  /** A "QEMU" in Node: serves QMP on its -qmp socket, sends SHUTDOWN with `reason` once greeted, then exits 0. */
  function qmpQemu(dir: string, reason: string): { binary: string; spec: VmSpec } {
    const script = `const net = require('node:net');
const at = process.argv.indexOf('-qmp');
const sock = /^unix:([^,]+)/.exec(process.argv[at + 1])[1];
const server = net.createServer((c) => {
  c.write('{"QMP": {"version": {}, "capabilities": []}}\\n');
  c.on('data', (d) => {
    const msg = JSON.parse(String(d).trim().split('\\n')[0]);
    c.write(JSON.stringify({ return: {}, id: msg.id }) + '\\n');
    c.write(JSON.stringify({ event: 'SHUTDOWN', data: { guest: true, reason: ${JSON.stringify(reason)} } }) + '\\n', () => process.exit(0));
  });
});
server.listen(sock);
`;
    fs.writeFileSync(path.join(dir, 'qemu.cjs'), script);
    const fake = fakeQemu(dir, `exec "${process.execPath}" "${path.join(dir, 'qemu.cjs')}" "$@"`);
    return { binary: fake.binary, spec: { ...fake.spec, qmpSocket: path.join(dir, 'qmp.sock') } };
  }

  it('an exit nobody asked for carries the reason of QEMU\'s SHUTDOWN event, and a wait for the console says it', async () => {
    const dir = tempDir();
    const { binary, spec } = qmpQemu(dir, 'guest-reset');
    const vm = await launchVm(spec, { qemuBinary: binary });
    vms.push(vm);
    const ready = vm.waitForConsole(/AURAE_READY/, 60_000).catch((err: Error) => err);
    expect(await vm.exited).toEqual({ code: 0, signal: null, shutdown: 'guest-reset' });
    expect(String(await ready)).toMatch(/QEMU exited \(\{"code":0,"signal":null,"shutdown":"guest-reset"\}\) before the console showed/);
  }, 60_000);

  it('a QEMU that exits before serving QMP: the exit has no reason and comes at once (the QMP watch stops trying)', async () => {
    const dir = tempDir();
    const fake = fakeQemu(dir, 'exit 3');
    const vm = await launchVm({ ...fake.spec, qmpSocket: path.join(dir, 'qmp.sock') }, { qemuBinary: fake.binary });
    vms.push(vm);
    const started = Date.now();
    expect(await vm.exited).toEqual({ code: 3, signal: null });
    // Well under the watch's own connect deadline (60 s): the exit did not wait for it.
    expect(Date.now() - started).toBeLessThan(30_000);
    await expect(vm.qmp()).rejects.toThrow(/not connecting .* QEMU exited/);
  }, 60_000);
});

describe('QmpClient (QEMU monitor replies)', () => {
  it('a reply line beyond the cap is cut and dropped, never buffered whole; the replies after it are read', async () => {
    const dir = tempDir();
    const sock = path.join(dir, 'qmp.sock');
    const server = net.createServer((socket) => {
      // 8 MiB of garbage without a newline first, then the greeting.
      const junk = Buffer.alloc(MiB, 'x');
      for (let i = 0; i < 8; i++) socket.write(junk);
      socket.write('\n{"QMP": {"version": {}, "capabilities": []}}\n');
      let buffered = '';
      socket.on('data', (d) => {
        buffered += d.toString();
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const msg = JSON.parse(buffered.slice(0, nl)) as { execute: string; id: string };
          buffered = buffered.slice(nl + 1);
          const ret = msg.execute === 'query-status' ? { running: true, status: 'running' } : {};
          socket.write(`${JSON.stringify({ return: ret, id: msg.id })}\n`);
        }
      });
    });
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const qmp = await QmpClient.connect(sock, 30_000);
      expect(qmp.cutLines).toBe(1);
      expect(await qmp.queryStatus()).toEqual({ running: true, status: 'running' });
      qmp.close();
    } finally {
      server.close();
    }
  }, 60_000);
});
