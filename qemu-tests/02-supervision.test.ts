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
      // The boot report survives the restart: init sent its part again; the boot's first SERVING is the first auraed's.
      const boot = (await client.discovery.discover()).boot!;
      expect(boot).toMatchObject({ fromInit: true, auraedStarts: 2 });
      expect(boot.initPhases.map((p) => p.name).at(-1)).toBe('auraed');
      expect(boot.firstServingMs).toBeGreaterThan(0);
      expect(boot.servingMs).toBeGreaterThan(boot.firstServingMs);
      expect(boot.auraedStartedMs).toBeGreaterThan(boot.firstServingMs);
    } finally {
      client.close();
    }
  });

  it('reaps orphaned grandchildren: no zombie is left', async () => {
    const sh = await node().shell();
    // Each subshell forks a child and exits at once, so the children are re-parented to PID 1;
    // they exit a second later (long enough to be seen re-parented below, even on a fast machine) and must then be reaped by init.
    await sh.ok('for i in 1 2 3 4 5 6 7 8; do (sleep 1 &) ; done; sh -c "sleep 1.5 & exit 0"');
    // One awk over every stat line: a process that exits between the glob and the read only drops its line
    // (a per-file loop would end with that awk's failure and fail the test for a race the test itself made).
    const procStat = (awk: string) => sh.ok(`cat /proc/[0-9]*/stat 2>/dev/null | awk '${awk}'`);
    const zombies = () => procStat('$3 == "Z" { print $1, $2, $4 }');
    // First make sure the orphans really were re-parented to init (the test can fail), then that they vanish.
    const orphansSeen = await procStat('$4 == 1 && $2 == "(sleep)" { print $1 }');
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
