// aer against a real auraed on the host (see supervisor/daemon/testing.ts): the CLI end to end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PreparedNode, type RunningTestAuraed, freePort, launchAuraed, prepareTestNode, runAer } from '../supervisor/daemon/testing';

const aer = (args: string[], env: Record<string, string>, launcher = false) => runAer(args, env, { launcher });

describe('aer CLI against auraed', () => {
  let node: PreparedNode;
  let auraed: RunningTestAuraed;
  let env: Record<string, string>;

  beforeAll(async () => {
    node = await prepareTestNode({ nodeName: 'cli-1' });
    auraed = launchAuraed(node.configPath);
    await auraed.waitReady();
    env = { AURAE_CONFIG: node.clientConfigPath };
  }, 30_000);

  afterAll(async () => {
    await auraed?.stop();
    node?.cleanup();
  });

  it('aer -o json health (unix socket from the client config, and TCP via AURAE_ADDRESS)', async () => {
    expect(await aer(['-o', 'json', 'health'], env)).toEqual({ code: 0, stdout: '{"service":"","status":"SERVING"}\n', stderr: '' });
    expect(await aer(['-o', 'json', 'health'], { ...env, AURAE_ADDRESS: `127.0.0.1:${node.port}` })).toMatchObject({
      code: 0,
      stdout: '{"service":"","status":"SERVING"}\n',
    });
  });

  it('the aer bin launcher runs the same CLI', async () => {
    expect(await aer(['-o', 'json', 'health'], env, true)).toMatchObject({ code: 0, stdout: '{"service":"","status":"SERVING"}\n' });
  });

  it('aer version shows both sides', async () => {
    const result = await aer(['version', '-o', 'json'], env);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ aer: '0.1.0', auraed: { nodeName: 'cli-1', healthy: true, pid: auraed.proc.pid } });
  });

  it('aer shutdown without init explains itself and exits 1', async () => {
    expect(await aer(['shutdown', '--reason', 'test'], env)).toEqual({
      code: 1,
      stdout: '',
      stderr: 'aer: auraed is not running under aurae init; stop it with SIGTERM\n',
    });
  });

  it('errors say what to do: unreachable address, wrong node name, usage', async () => {
    const closed = await freePort();
    const unreachable = await aer(['--address', `127.0.0.1:${closed}`, 'health'], env);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(new RegExp(`^aer: cannot reach auraed at 127.0.0.1:${closed}: is the node running and is the address right\\? \\(.*ECONNREFUSED.*\\)\\n$`));

    const wrongName = await aer(['--node', 'someone-else', 'health'], env);
    expect(wrongName.code).toBe(1);
    expect(wrongName.stderr).toMatch(/^aer: TLS with auraed at unix:\/\/.* failed \(.*\): check the client config .*client\.json: ca, cert and key/);
    expect(wrongName.stderr.trim().split('\n')).toHaveLength(1);

    expect((await aer(['-o', 'xml', 'health'], env)).code).toBe(2);
  });
});
