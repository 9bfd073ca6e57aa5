// aer logs / events / top end to end: the real CLI process against a real auraed on the host.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PreparedNode, type RunningTestAuraed, launchAuraed, runAer, prepareTestNode } from '../../supervisor/daemon/testing';

const aer = (args: string[], env: Record<string, string>) => runAer(args, env);

describe('aer observe commands against auraed', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let env: Record<string, string>;

  beforeAll(async () => {
    node = await prepareTestNode({ nodeName: 'obs-cli' });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
    env = { AURAE_CONFIG: node.clientConfigPath };
  }, 30_000);

  afterAll(async () => {
    await auraed?.stop();
    node?.cleanup();
  });

  it('aer -o json logs --daemon -n 5: auraed\'s last lines as JSON objects', async () => {
    const result = await aer(['-o', 'json', 'logs', '--daemon', '-n', '5'], env);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const entries = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { channel: string; line: string });
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.length).toBeLessThanOrEqual(5);
    expect(entries.every((e) => e.channel === 'auraed' && typeof JSON.parse(e.line).msg === 'string')).toBe(true);
  });

  it('aer logs of an executable with no output prints nothing; a bad cell name says which field', async () => {
    expect(await aer(['logs', 'web', 'api'], env)).toEqual({ code: 0, stdout: '', stderr: '' });
    const bad = await aer(['logs', 'Web', 'api'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^aer: cell: "Web" is not a cell path/);
    expect((await aer(['logs', 'web'], env)).code).toBe(2);
  });

  it('aer events on a fresh node prints nothing; aer top of an unknown cell says it is not found', async () => {
    expect(await aer(['events'], env)).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await aer(['top', 'nope', '--interval', '0'], env)).toMatchObject({ code: 1, stderr: expect.stringContaining('aer: cell "nope" not found') });
  });
});
