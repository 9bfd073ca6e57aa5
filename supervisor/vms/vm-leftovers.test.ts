// Reconcile against real processes (no root): stand-ins for a previous auraed's QEMUs are node processes whose
// argv[0] is qemu-system-x86_64 and whose command line carries -qmp unix:<socket>, as QEMU's does; one of them
// answers QMP like QEMU (greeting, qmp_capabilities, quit). The pid-reuse guard is checked with a process that
// holds a recorded pid but is not QEMU.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { harness } from './testing';
import { procLeftovers } from './vm-leftovers';
import { memoryVmStore, type StoredVm } from './vm-store';

const dir = mkdtempSync(join(tmpdir(), 'aurae-lo-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

// A QMP server on the socket named by -qmp: greets, answers every command, exits 0 on quit.
const QMP_SERVER = `
const net = require('node:net');
const sock = process.argv[process.argv.indexOf('-qmp') + 1].slice(5).split(',')[0];
net.createServer((c) => {
  c.write('{"QMP":{"version":{}}}\\n');
  let buf = '';
  c.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\\n'); i >= 0; i = buf.indexOf('\\n')) {
      const m = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      const reply = JSON.stringify({ return: {}, id: m.id }) + '\\n';
      if (m.execute === 'quit') c.end(reply, () => process.exit(0));
      else c.write(reply);
    }
  });
}).listen(sock, () => process.stdout.write('ready\\n'));
`;
const IDLE = 'setInterval(() => {}, 1000); process.stdout.write("ready\\n");';

async function start(argv0: string, script: string, args: string[]): Promise<ChildProcess> {
  // "--": what follows is the script's, not node's options (as it is QEMU's on a real command line).
  const child = spawn(process.execPath, ['-e', script, '--', ...args], { argv0, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const died = once(child, 'exit').then(([code]) => {
    throw new Error(`the stand-in ${argv0} exited (${code}) before it was ready`);
  });
  await Promise.race([once(child.stdout!, 'data'), died]);
  died.catch(() => undefined); // it exits later, by design
  return child;
}

const exitOf = (c: ChildProcess) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve([c.exitCode, c.signalCode]) : once(c, 'exit'));

function row(name: string, pid: number): StoredVm {
  return {
    request: { name, memoryMiB: 512, cpus: 1, restart: 'never' },
    desiredRunning: true,
    state: 'running',
    pid,
    qmpSocket: join(dir, `${name}.sock`),
    restarts: 0,
    lastExit: '',
    exit: null,
  };
}

describe('reconcile with real processes', () => {
  it('quits a QEMU through QMP, SIGKILLs one that does not answer, and never signals a pid that is not that QEMU', async () => {
    const qmpArg = (name: string) => ['-M', 'microvm', '-qmp', `unix:${join(dir, `${name}.sock`)},server=on,wait=off`];
    const web = await start('qemu-system-x86_64', QMP_SERVER, qmpArg('web'));
    const stuck = await start('qemu-system-x86_64', IDLE, qmpArg('stuck'));
    // Holds the pid recorded for "db", with db's socket on its command line, but it is not QEMU.
    const reused = await start('sshd', IDLE, qmpArg('db'));
    expect(procLeftovers().cmdline(web.pid!)?.[0]).toBe('qemu-system-x86_64');

    const store = memoryVmStore([row('web', web.pid!), row('stuck', stuck.pid!), row('db', reused.pid!)]);
    const h = harness({ store, leftovers: procLeftovers(), limits: { maxMemoryMiB: 1024, maxDepth: 2, bootTimeoutMs: 1000, stopTimeoutMs: 300 } });
    const plan = await h.runtime.init();

    expect(plan.filter((a) => a.kind !== 'restore').map((a) => `${a.kind}:${a.vm}`)).toEqual(['ignore_pid:db', 'stop_leftover:stuck', 'stop_leftover:web']);
    expect(await exitOf(web)).toEqual([0, null]); // QMP quit
    expect(await exitOf(stuck)).toEqual([null, 'SIGKILL']);
    expect(reused.exitCode).toBeNull();
    expect(reused.signalCode).toBeNull();
    expect(procLeftovers().cmdline(reused.pid!)?.[0]).toBe('sshd');

    // Every VM that should run comes back, spawned anew.
    for (let i = 0; i < 100 && h.launched.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(h.launched.map((v) => v.spec.qmpSocket).sort()).toEqual(['/state/vms/db/qmp.sock', '/state/vms/stuck/qmp.sock', '/state/vms/web/qmp.sock']);
    await h.runtime.close(50);
  });
});
