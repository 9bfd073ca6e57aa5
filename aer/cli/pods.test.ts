// `aer pod …` over a fake SDK client: the spec built from options or a file, usage errors, formatting, and logs
// read from the pod's cell and the container's executable.
import { describe, expect, it } from 'vitest';
import type { AuraeClient, LogStreamOptions, PodInfo, PodSpec, RunOptions } from '../sdk';
import { formatPod, formatPodTable, logsContainer, podSpecFromOptions } from './pods';
import { runAer } from './program';

const NOW = Date.parse('2026-12-02T12:00:00Z');
const fail = (m: string): never => {
  throw new Error(m);
};
const noFile = () => {
  throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
};

function info(spec: PodSpec, state: PodInfo['state'] = 'running'): PodInfo {
  return {
    name: spec.name,
    sandbox: 'cell',
    state,
    containers: spec.containers.map((c) => ({ name: c.name, image: c.image, imageDigest: `sha256:${'ab'.repeat(32)}`, state: 'running', pid: 42, exit: null, restarts: 0 })),
    createdAt: NOW - 65_000,
    spec,
    ip: '10.88.0.2',
  };
}

function fakeClient() {
  const calls: unknown[] = [];
  const pods = new Map<string, PodInfo>();
  const client = {
    config: { path: '/c.json', node: 'n', address: 'unix:///x', version: 1, ca: '', cert: '', key: '' },
    pods: {
      run: async (spec: PodSpec, opts: RunOptions = {}) => {
        calls.push(['run', spec, opts.auth]);
        opts.onProgress?.({ image: spec.containers[0]!.image, layer: `sha256:${'ef'.repeat(32)}`, done: 10, total: 10, state: 'done' });
        pods.set(spec.name, info(spec));
        return pods.get(spec.name)!;
      },
      list: async () => [...pods.values()],
      inspect: async (name: string) => {
        const p = pods.get(name) ?? info({ name, containers: [{ name: 'app', image: 'busybox' }, { name: 'side', image: 'busybox' }] });
        return p;
      },
      stop: async (name: string, o: { graceMs?: number }) => (calls.push(['stop', name, o.graceMs]), { ...info({ name, containers: [{ name: 'app', image: 'busybox' }] }), state: 'stopped' }),
      remove: async (name: string, o: { force?: boolean }) => void calls.push(['rm', name, o.force]),
    },
    observe: {
      logs: (cell: string, executable: string, o: LogStreamOptions) => {
        calls.push(['logs', cell, executable, o.follow, o.tail]);
        return (async function* () {
          yield { channel: 'stdout', time: '2026-12-02T12:00:00.000Z', line: 'hello from web' };
        })();
      },
    },
    close: () => {},
  } as unknown as AuraeClient;
  return { client, calls, pods };
}

async function run(argv: string[], files: Record<string, string> = {}) {
  const { client, calls } = fakeClient();
  const out: string[] = [];
  const err: string[] = [];
  const partial: string[] = [];
  const code = await runAer(argv, {
    out: (t) => void out.push(t),
    err: (t) => void err.push(t),
    errPartial: (t) => void partial.push(t),
    env: {},
    connect: () => client,
    now: () => NOW,
    readFile: (path: string) => {
      if (!(path in files)) noFile();
      return files[path]!;
    },
  } as Parameters<typeof runAer>[1]);
  return { code, out, err, partial, calls };
}

describe('aer pod run', () => {
  it('one container from options: image, args after --, env, limits, expose, restart', async () => {
    const r = await run(['pod', 'run', 'web', '--image', 'busybox', '--env', 'key=value', '--env', 'foo=bar', '--memory', '64M', '--expose', '80', '--expose', '8080', '--restart', 'on-failure', '--', 'sh', '-c', 'echo hi']);
    expect(r.code).toBe(0);
    expect(r.calls[0]).toEqual([
      'run',
      {
        name: 'web',
        containers: [{ name: 'app', image: 'busybox', args: ['sh', '-c', 'echo hi'] }],
        env: { key: 'value', foo: 'bar' },
        restart: 'on-failure',
        limits: { memoryMax: 64 * 1024 * 1024 },
        expose: [80, 8080],
      },
      undefined,
    ]);
    expect(r.partial.join('')).toContain('busybox  efefefefefef  done');
    expect(r.out).toEqual(['web  running  app running pid 42']);
  });

  it('--publish NODE:POD[/proto] or PORT[/proto]; a later one replaces the same node port; a malformed one is a usage error', async () => {
    const r = await run(['pod', 'run', 'web', '--image', 'busybox', '--publish', '8080:80', '--publish', '53/udp', '--publish', '9000', '--publish', '8080:81/tcp']);
    expect(r.code).toBe(0);
    expect(r.calls[0]).toMatchObject([
      'run',
      {
        publish: [
          { nodePort: 53, podPort: 53, protocol: 'udp' },
          { nodePort: 9000, podPort: 9000, protocol: 'tcp' },
          { nodePort: 8080, podPort: 81, protocol: 'tcp' },
        ],
      },
      undefined,
    ]);
    for (const bad of ['80:', 'x', '80:90/sctp', '0:80', '80:70000']) {
      const b = await run(['pod', 'run', 'web', '--image', 'busybox', '--publish', bad]);
      expect(b.code, bad).toBe(2);
      expect(b.calls).toEqual([]);
    }
    const file = JSON.stringify({ name: 'f', containers: [{ name: 'a', image: 'busybox' }], publish: [{ nodePort: 8080, podPort: 80 }, { nodePort: 9090, podPort: 90 }] });
    const f = await run(['pod', 'run', '--file', 'pod.json', '--publish', '8080:8000'], { 'pod.json': file });
    expect(f.calls[0]).toMatchObject(['run', { publish: [{ nodePort: 9090, podPort: 90 }, { nodePort: 8080, podPort: 8000, protocol: 'tcp' }] }, undefined]);
  });

  it('several containers from --file; NAME renames; container options are refused with --file', async () => {
    const file = JSON.stringify({ name: 'duo', containers: [{ name: 'a', image: 'busybox' }, { name: 'b', image: 'busybox', args: ['sleep', '9'] }], env: { x: '1' } });
    const r = await run(['pod', 'run', '--file', 'pod.json', '--env', 'y=2'], { 'pod.json': file });
    expect(r.code).toBe(0);
    expect(r.calls[0]).toMatchObject(['run', { name: 'duo', env: { x: '1', y: '2' }, containers: [{ name: 'a' }, { name: 'b', args: ['sleep', '9'] }] }, undefined]);
    expect((await run(['pod', 'run', 'other', '--file', 'pod.json'], { 'pod.json': file })).calls[0]).toMatchObject(['run', { name: 'other' }, undefined]);
    const clash = await run(['pod', 'run', '--file', 'pod.json', '--image', 'busybox'], { 'pod.json': file });
    expect(clash.code).toBe(2);
    expect(clash.err.join('\n')).toContain('--image describes a container: with --file, put it in the file');
  });

  it('usage errors: no name, no image, unreadable or malformed file, bad port', async () => {
    expect((await run(['pod', 'run', '--image', 'busybox'])).err.join('\n')).toContain('missing the pod name');
    expect((await run(['pod', 'run', 'web'])).err.join('\n')).toContain('missing --image IMAGE');
    expect((await run(['pod', 'run', '--file', 'nope.json'])).err.join('\n')).toContain('--file nope.json: cannot read it (ENOENT)');
    expect((await run(['pod', 'run', '--file', 'p.json'], { 'p.json': '[1]' })).err.join('\n')).toContain('expected a JSON object');
    const badPort = await run(['pod', 'run', 'web', '--image', 'busybox', '--expose', '70000']);
    expect(badPort.code).toBe(2);
    expect(badPort.calls).toEqual([]);
  });

  it('--sandbox vm asks for a VM-sandboxed pod; anything but cell or vm is a usage error', async () => {
    expect(podSpecFromOptions('web', [], { image: 'busybox', sandbox: 'vm' }, noFile, fail)).toEqual({ name: 'web', sandbox: 'vm', containers: [{ name: 'app', image: 'busybox' }] });
    const r = await run(['pod', 'run', 'web', '--image', 'busybox', '--sandbox', 'jail']);
    expect(r.code).not.toBe(0);
    expect(r.err.join('\n')).toMatch(/--sandbox.*jail.*cell, vm/);
  });

  it('podSpecFromOptions keeps what was not given out of the spec', () => {
    expect(podSpecFromOptions('web', [], { image: 'busybox' }, noFile, fail)).toEqual({ name: 'web', containers: [{ name: 'app', image: 'busybox' }] });
    expect(podSpecFromOptions('web', [], { image: 'b', entrypoint: '/bin/sh', workdir: '/tmp', user: '1000', readOnly: true, container: 'c' }, noFile, fail).containers[0]).toEqual({
      name: 'c',
      image: 'b',
      command: ['/bin/sh'],
      workingDir: '/tmp',
      user: '1000',
      readOnlyRootfs: true,
    });
  });
});

describe('aer pod list|inspect|stop|rm|logs', () => {
  it('stop passes the grace; rm passes force', async () => {
    expect((await run(['pod', 'stop', 'web', '--grace', '2000'])).calls).toEqual([['stop', 'web', 2000]]);
    expect((await run(['pod', 'rm', '--force', 'web'])).calls).toEqual([['rm', 'web', true]]);
    expect((await run(['pod', 'rm', 'web'])).out).toEqual(['removed web']);
  });

  it('logs read the pod cell and the container executable; several containers need --container', async () => {
    const one = await run(['pod', 'run', 'web', '--image', 'busybox']);
    expect(one.code).toBe(0);
    const several = await run(['pod', 'logs', 'duo']);
    expect(several.code).toBe(2);
    expect(several.err.join('\n')).toContain('pod duo has 2 containers (app, side): choose one with --container');
    const chosen = await run(['pod', 'logs', 'duo', '--container', 'side', '-f', '-n', '5']);
    expect(chosen.calls).toEqual([['logs', 'duo', 'side', true, 5]]);
    expect(chosen.out).toEqual(['hello from web']);
  });

  it('logs of a VM pod are read on its child node pod-NAME, routed through the node; a stopped VM has none', async () => {
    const { client, calls, pods } = fakeClient();
    pods.set('vmweb', { ...info({ name: 'vmweb', containers: [{ name: 'app', image: 'busybox' }] }), sandbox: 'vm' });
    let vmState = 'running';
    Object.assign(client, { vms: { list: async () => [{ name: 'pod-vmweb', nodePath: 'aurae/pod-vmweb', state: vmState }] } });
    const routedTo: string[] = [];
    const logs = async () => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runAer(['pod', 'logs', 'vmweb'], {
        out: (t) => void out.push(t),
        err: (t) => void err.push(t),
        env: {},
        connect: () => client,
        connectTo: (_c: AuraeClient, nodePath: string) => (routedTo.push(nodePath), client),
      } as Parameters<typeof runAer>[1]);
      return { code, out, err };
    };
    const ok = await logs();
    expect(ok.code).toBe(0);
    expect(routedTo).toEqual(['aurae/pod-vmweb']);
    expect(calls).toContainEqual(['logs', 'vmweb', 'app', false, undefined]);
    expect(ok.out).toEqual(['hello from web']);
    vmState = 'stopped';
    const gone = await logs();
    expect(gone.code).not.toBe(0);
    expect(gone.err.join('\n')).toContain('pod vmweb runs in a VM sandbox and its VM pod-vmweb is stopped: its logs lived in that VM');
  });

  it('logsContainer picks the only container or checks the chosen one', () => {
    const pod = info({ name: 'web', containers: [{ name: 'app', image: 'busybox' }] });
    expect(logsContainer(pod, undefined, fail)).toBe('app');
    expect(() => logsContainer(pod, 'nope', fail)).toThrow('pod web has no container "nope": it has app');
  });

  it('formats the table and the details', () => {
    const pod = info({ name: 'web', containers: [{ name: 'app', image: 'busybox', args: ['sh'] }], env: { key: 'value' }, expose: [80], publish: [{ nodePort: 8080, podPort: 80, protocol: 'tcp' }] });
    expect(formatPodTable([pod], NOW).split('\n')).toEqual(['NAME  STATE    READY  IP         IMAGES   AGE', 'web   running  1/1    10.88.0.2  busybox  1m 5s']);
    expect(formatPodTable([{ ...pod, ip: null }], NOW).split('\n')[1]).toBe('web   running  1/1    -   busybox  1m 5s');
    expect(formatPodTable([], NOW)).toBe('no pods');
    const text = formatPod(pod);
    expect(text).toContain('expose    80');
    expect(text).toContain('publish   8080:80/tcp');
    expect(text).toContain('ip        10.88.0.2');
    expect(text).toContain('    image   busybox (abababababab)');
    expect(text).toContain('    args    "sh"');
  });
});
