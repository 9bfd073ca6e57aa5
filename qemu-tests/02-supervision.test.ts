// 02: PID 1 keeps auraed alive and reaps orphans without stealing the exits Node waits for.
import { describe, expect, it } from 'vitest';
import { eventually, useNode } from './fixture/node';

describe('02 supervision', () => {
  const node = useNode({ name: '02-supervision' });

  it('restarts auraed after SIGKILL, and the API serves again', async () => {
    const sh = await node().shell();
    const before = Number((await sh.ok('cat /run/aurae/auraed.pid')).trim());
    expect(before).toBeGreaterThan(1);
    const from = node().vm.console.length;
    await sh.ok(`kill -9 ${before}`);
    const ready = await node().waitReady(120_000, from);
    expect(ready.pid).not.toBe(before);
    expect(Number((await sh.ok('cat /run/aurae/auraed.pid')).trim())).toBe(ready.pid);
    expect(node().vm.console.slice(from)).toMatch(/init: .*auraed \(pid \d+\) was killed by SIGKILL/);
    const client = node().client();
    try {
      expect((await client.health.check('')).status).toBe('SERVING');
    } finally {
      client.close();
    }
  });

  it('reaps orphaned grandchildren: no zombie is left', async () => {
    const sh = await node().shell();
    // Each subshell forks a child and exits at once, so the children are re-parented to PID 1;
    // they exit 0.2 s later and must then be reaped by init.
    await sh.ok('for i in 1 2 3 4 5 6 7 8; do (sleep 0.2 &) ; done; sh -c "sleep 0.3 & exit 0"');
    const zombies = () => sh.ok("for f in /proc/[0-9]*/stat; do awk '$3 == \"Z\" { print $1, $2, $4 }' $f 2>/dev/null; done");
    // First make sure the orphans really were re-parented to init (the test can fail), then that they vanish.
    const orphansSeen = await sh.ok("for f in /proc/[0-9]*/stat; do awk '$4 == 1 && $2 == \"(sleep)\" { print $1 }' $f 2>/dev/null; done");
    expect(orphansSeen.trim().split(/\s+/).filter(Boolean).length).toBeGreaterThan(0);
    await eventually(async () => (await zombies()).trim() === '', 20_000, 'no zombie processes');
    // init still tracks its own children: auraed is alive and the same as before.
    const client = node().client();
    try {
      expect((await client.health.check('')).status).toBe('SERVING');
    } finally {
      client.close();
    }
  });
});
