// A child that floods its console cannot stall or crash its parent: the real auraed (daemon mode, on this
// machine) spawns a "VM" whose QEMU is a fake that writes zero bytes to its stdout without a newline, forever.
// While more than V8's longest string goes through (the old reader appended it to one string and died there),
// every API call to the parent keeps succeeding, and auraed is still up afterwards.
// No image needed (the kernel and initrd only have to exist); priv tier: it spawns daemons and binds sockets.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuraeClient, connect } from '../../aer/sdk';
import { type PreparedNode, type RunningTestAuraed, launchAuraed, prepareTestNode } from '../daemon/testing';

const MiB = 1024 * 1024;
/** More than V8's maximum string length (2^29 - 24 characters on 64-bit). */
const FLOOD_BYTES = 768 * MiB;

/** Bytes the process `pid` has written so far (/proc/PID/io wchar); null once it is gone. */
function written(pid: number): number | null {
  try {
    const m = /^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('a child flooding its console (fake QEMU, real auraed)', () => {
  let dir: string;
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let client: AuraeClient;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aurae-flood-'));
    const qemu = join(dir, 'fake-qemu');
    // The flood: our pid (kept by exec) for the test, then zero bytes on stdout, no newline ever.
    writeFileSync(qemu, `#!/bin/sh\necho $$ > ${dir}/pid\nexec cat /dev/zero\n`, { mode: 0o755 });
    for (const f of ['kernel', 'initrd']) writeFileSync(join(dir, f), '');
    node = await prepareTestNode({
      nodeName: 'aurae',
      vms: { kernel: join(dir, 'kernel'), initrd: join(dir, 'initrd'), qemu, maxMemoryMiB: 1024, bootTimeoutMs: 600_000, stopTimeoutMs: 5_000 },
    });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
    client = connect({ config: node.clientConfigPath, timeoutMs: 20_000 });
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await auraed?.stop(30_000);
    node?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('the parent keeps answering while the child writes more than V8 can hold in a string', async () => {
    // Spawn waits for AURAE_READY, which never comes: it runs in the background for the whole test.
    const spawning = client.vms.spawn({ name: 'flood', memoryMiB: 256 }).catch((err: unknown) => err);
    const deadline = Date.now() + 300_000;
    let pid: number | null = null;
    while (pid === null) {
      if (Date.now() > deadline) throw new Error('the fake QEMU never started');
      try {
        pid = Number(readFileSync(join(dir, 'pid'), 'utf8').trim()) || null;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    let calls = 0;
    let flooded = 0;
    while (flooded < FLOOD_BYTES) {
      if (Date.now() > deadline) throw new Error(`only ${flooded} bytes flooded by the deadline (${calls} calls answered)`);
      // Any failure here (a stalled loop runs into the 20 s call timeout; a crash refuses the connection) fails the test.
      const policy = await client.authz.policy();
      expect(policy.admins).toContain('admin');
      calls++;
      flooded = written(pid) ?? flooded;
      expect(alive(pid), 'the fake QEMU is still flooding').toBe(true);
    }
    expect(calls).toBeGreaterThan(0);
    expect({ code: auraed.proc.exitCode, signal: auraed.proc.signalCode }, 'auraed must not exit').toEqual({ code: null, signal: null });
    // Stopping the VM ends the flood; auraed is still serving.
    const vms = await client.vms.list();
    expect(vms.map((v) => v.name)).toContain('flood');
    await client.vms.stop('flood').catch(() => undefined);
    await spawning;
    expect((await client.authz.policy()).admins).toContain('admin');
    console.log(`flood: ${Math.round(flooded / MiB)} MiB from the child while auraed answered ${calls} calls`);
  }, 360_000);
});
