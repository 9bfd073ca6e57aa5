// 43: exec into a running container over the real API (crun exec on the guest). The host registry serves busybox
// (as in 41); the guest pulls it as 10.0.2.100:5000/busybox. A pod whose main process writes a marker file and
// sleeps; then, with the SDK: output and exit codes (0, 7, a signal, 127 for a missing program), stderr apart
// from stdout, a stdin round trip through `cat` (streamed, then closed), 5 MiB of output arriving whole (its
// sha256 as the container computed it), the container's filesystem and pid namespace seen from the exec'd
// process, its user and env overrides, cancelling killing the process, and a stopped pod refused with
// FAILED_PRECONDITION. With the bundled CLI: `aer pod exec` passes stdout/stderr through, exits with the
// process's status, and forwards stdin with -i.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AuraeClient, AuraeApiError } from '../aer/sdk';
import { REPO_ROOT } from '../image/build';
import { GUEST_REGISTRY, GUEST_REGISTRY_HOST, withGuestRegistry } from '../image/lib/guest-registry';
import { buildTestImages, startTestRegistry, testImagesDir, type TestRegistry } from '../supervisor/images/test-registry';
import { aer } from './fixture/aer';
import { type BootedNode, bootNode, eventually } from './fixture/node';

const IMAGE = `${GUEST_REGISTRY_HOST}/busybox:latest`;
const POD = 'box';
/** The main process: a marker in the container's filesystem, then sleep (pid 1 of the container). */
const MAIN = 'echo from-main > /tmp/marker; exec sleep 100000';

describe('43 pod exec', () => {
  let registry: TestRegistry | null = null;
  let node: BootedNode | null = null;
  let sdk: AuraeClient | null = null;
  const booted = () => {
    if (!node) throw new Error('the node did not boot (see the beforeAll error)');
    return node;
  };
  const client = () => (sdk ??= booted().client());

  beforeAll(async () => {
    const images = await buildTestImages(testImagesDir());
    registry = await startTestRegistry();
    await registry.push(images.layout, images.tags.base, 'busybox:latest');
    node = await bootNode({
      name: '43-pod-exec',
      guestForwards: [{ guestAddress: GUEST_REGISTRY.address, guestPort: GUEST_REGISTRY.port, hostPort: registry.port }],
      nodeConfig: withGuestRegistry,
    });
    await client().pods.run({ name: POD, env: { FROM_POD: 'pod-env' }, containers: [{ name: 'main', image: IMAGE, command: ['/bin/sh', '-c', MAIN] }] });
    // Running once the marker is there (the container's main process ran).
    await eventually(async () => {
      const p = await client().pods.inspect(POD);
      if (p.containers[0]?.state !== 'running') return false;
      const r = await client().pods.exec(POD, ['cat', '/tmp/marker']).catch(() => null);
      return r?.code === 0;
    }, 120_000, `pod ${POD} running with its marker`);
  }, 600_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console of 43-pod-exec (full log: ${node.consoleLog}) ---\n${node.vm.tail(60)}`);
  });
  afterAll(async () => {
    sdk?.close();
    await node?.stop();
    await registry?.stop();
  });

  const exec = (command: string[], options?: Parameters<AuraeClient['pods']['exec']>[2]) => client().pods.exec(POD, command, options);

  it('runs a command: its stdout and exit code 0; `exit 7` gives 7; a signal death its name; a missing program 127', async () => {
    const hello = await exec(['echo', 'hello', 'exec']);
    expect(hello).toMatchObject({ code: 0, signal: null });
    expect(hello.stdout.toString()).toBe('hello exec\n');
    expect(hello.stderr.length).toBe(0);
    expect(await exec(['sh', '-c', 'exit 7'])).toMatchObject({ code: 7, signal: null });
    expect(await exec(['sh', '-c', 'kill -9 $$'])).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(await exec(['no-such-program'])).toMatchObject({ code: 127, signal: null });
  });

  it('keeps stderr apart from stdout', async () => {
    const r = await exec(['sh', '-c', 'echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3']);
    expect(r.code).toBe(3);
    expect(r.stdout.toString()).toBe('out1\nout2\n');
    expect(r.stderr.toString()).toBe('err1\nerr2\n');
  });

  it('streams stdin: cat echoes each chunk as it is sent; closing stdin ends it with 0', async () => {
    const s = client().pods.execStream(POD, ['cat'], { stdin: true });
    let out = '';
    s.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    s.stdin!.write('ping 1\n');
    await eventually(async () => out === 'ping 1\n', 30_000, 'the first chunk echoed');
    s.stdin!.write('ping 2\n');
    await eventually(async () => out === 'ping 1\nping 2\n', 30_000, 'the second chunk echoed');
    s.stdin!.end();
    expect(await s.exit).toEqual({ code: 0, signal: null });
    // The collecting form: stdin given whole.
    const r = await exec(['wc', '-c'], { stdin: 'x'.repeat(100_000) });
    expect(r.stdout.toString().trim()).toBe('100000');
  });

  it('delivers 5 MiB of output whole', async () => {
    const made = await exec(['sh', '-c', 'head -c 5242880 /dev/urandom > /tmp/big && sha256sum /tmp/big']);
    expect(made.code).toBe(0);
    const expected = made.stdout.toString().split(/\s+/)[0];
    const big = await exec(['cat', '/tmp/big']);
    expect(big.code).toBe(0);
    expect(big.stdout.length).toBe(5 * 1024 * 1024);
    expect(createHash('sha256').update(big.stdout).digest('hex')).toBe(expected);
  }, 300_000);

  it("sees the container's filesystem, its pid namespace (pid 1 is the main process) and its environment", async () => {
    expect((await exec(['cat', '/tmp/marker'])).stdout.toString()).toBe('from-main\n');
    const ns = await exec(['sh', '-c', 'tr "\\0" " " < /proc/1/cmdline; echo; echo "FROM_POD=$FROM_POD EXTRA=$EXTRA"'], { env: { EXTRA: 'exec-env' } });
    // The main process exec'd sleep: pid 1 of the container's pid namespace.
    expect(ns.stdout.toString()).toBe('sleep 100000 \nFROM_POD=pod-env EXTRA=exec-env\n');
  });

  it('runs as the given user in the given working directory', async () => {
    const r = await exec(['sh', '-c', 'id -u; id -g; pwd'], { user: '1000:1001', workingDir: '/tmp' });
    expect(r.stdout.toString()).toBe('1000\n1001\n/tmp\n');
  });

  it('cancelling the call kills the process in the container', async () => {
    const abort = new AbortController();
    const s = client().pods.execStream(POD, ['sh', '-c', 'echo up; exec sleep 4242'], { signal: abort.signal });
    let out = '';
    s.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await eventually(async () => out === 'up\n', 30_000, 'the exec to start');
    const running = async () => (await exec(['ps'])).stdout.toString().includes('sleep 4242');
    expect(await running()).toBe(true);
    abort.abort();
    await expect(s.exit).rejects.toMatchObject({ code: 'CANCELLED' });
    await eventually(async () => !(await running()), 30_000, 'sleep 4242 to be killed');
  });

  it('`aer pod exec` passes output through, exits with the status, forwards stdin with -i', async () => {
    const r = await aer(booted(), ['pod', 'exec', POD, '--', 'sh', '-c', 'echo to-out; echo to-err >&2; exit 5']);
    expect(r).toMatchObject({ code: 5, stdout: 'to-out\n', stderr: 'to-err\n' });
    const killed = await aer(booted(), ['pod', 'exec', POD, '--', 'sh', '-c', 'kill -TERM $$']);
    expect(killed.code).toBe(128 + 15);
    const echoed = await aerWithStdin(booted(), ['pod', 'exec', '-i', POD, '--', 'tr', 'a-z', 'A-Z'], 'shout\n');
    expect(echoed).toMatchObject({ code: 0, stdout: 'SHOUT\n' });
  });

  it('refuses bad requests: INVALID_ARGUMENT naming the field, NOT_FOUND for a missing pod or container', async () => {
    await expect(exec(['echo'], { workingDir: 'relative' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', details: expect.stringMatching(/^start\.working_dir:/) });
    await expect(client().pods.exec('nope', ['true'])).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(exec(['true'], { container: 'other' })).rejects.toMatchObject({ code: 'NOT_FOUND', details: expect.stringMatching(/has no container "other"/) });
  });

  it('refuses a stopped pod with FAILED_PRECONDITION', async () => {
    await client().pods.stop(POD, { graceMs: 1000 });
    const err = await exec(['true']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuraeApiError);
    expect(err).toMatchObject({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(/container "main" is not running/) });
  });
});

/** The bundled CLI with `input` on its stdin. */
function aerWithStdin(node: BootedNode, args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const cli = path.join(REPO_ROOT, 'out/bundle/aer.cjs');
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cli, '--config', node.image.clientConfig, '--address', `127.0.0.1:${node.port}`, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
    child.stdin!.end(input);
  });
}
