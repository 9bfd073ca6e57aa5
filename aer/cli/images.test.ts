// `aer image pull|list|inspect|rm` over a fake SDK client: parsing, credentials from stdin, progress rendering
// (terminal and log), formatting; and `aer image flash` still in the same group.
import { describe, expect, it } from 'vitest';
import type { AuraeClient, ImageInfo, PullOptions, PullProgress } from '../sdk';
import { formatImage, formatImageTable, formatLayerProgress, pullProgressDisplay, readAuth, shortDigest } from './images';
import { runAer } from './program';

const NOW = Date.parse('2026-12-02T12:00:00Z');
const IMAGE: ImageInfo = {
  name: '127.0.0.1:5000/busybox',
  tags: ['latest', '1.36'],
  digest: `sha256:${'ab'.repeat(32)}`,
  configDigest: `sha256:${'cd'.repeat(32)}`,
  config: { entrypoint: [], cmd: ['sh'], env: ['PATH=/bin'], workingDir: '', user: '', exposedPorts: [], labels: {}, stopSignal: '' },
  layers: [{ digest: `sha256:${'ef'.repeat(32)}`, size: 2_200_000, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: '' }],
  size: 2_200_000,
  pulledAt: NOW - 125_000,
};
const LAYER = `sha256:${'ef'.repeat(32)}`;

function fakeClient() {
  const calls: unknown[] = [];
  const client = {
    config: { path: '/c.json', node: 'n', address: 'unix:///x', version: 1, ca: '', cert: '', key: '' },
    images: {
      pull: async (ref: string, opts: PullOptions = {}) => {
        calls.push(['pull', ref, opts.auth]);
        const steps: PullProgress[] = [
          { layer: LAYER, done: 0, total: 2_200_000, state: 'downloading' },
          { layer: LAYER, done: 1_100_000, total: 2_200_000, state: 'downloading' },
          { layer: LAYER, done: 2_200_000, total: 2_200_000, state: 'done' },
        ];
        for (const p of steps) opts.onProgress?.(p);
        return IMAGE;
      },
      list: async () => [IMAGE],
      inspect: async (ref: string) => (calls.push(['inspect', ref]), IMAGE),
      remove: async (ref: string, o: { force?: boolean }) => (calls.push(['rm', ref, o.force]), { removed: [`${ref}:latest`] }),
    },
    close: () => {},
  } as unknown as AuraeClient;
  return { client, calls };
}

async function run(argv: string[], options: { stdin?: string[]; tty?: boolean } = {}) {
  const { client, calls } = fakeClient();
  const out: string[] = [];
  const err: string[] = [];
  const partial: string[] = [];
  const stdin = [...(options.stdin ?? [])];
  const code = await runAer(argv, {
    out: (t) => void out.push(t),
    err: (t) => void err.push(t),
    errPartial: (t) => void partial.push(t),
    stderrIsTTY: options.tty ?? false,
    readLine: async () => stdin.shift() ?? null,
    env: {},
    connect: () => client,
  });
  return { code, out, err, partial, calls };
}

describe('aer image (container images)', () => {
  it('pull: progress per layer state in a log, the result on stdout, no credentials by default', async () => {
    const r = await run(['image', 'pull', '127.0.0.1:5000/busybox']);
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([['pull', '127.0.0.1:5000/busybox', undefined]]);
    expect(r.partial.join('').split('\n').filter(Boolean)).toEqual([`efefefefefef  downloading  0B / 2.1M  0%`, `efefefefefef  done         2.1M`]);
    expect(r.out).toEqual([`pulled 127.0.0.1:5000/busybox:latest ${IMAGE.digest} (2.1M)`]);
  });

  it('pull on a terminal redraws the layer block in place', async () => {
    const r = await run(['image', 'pull', 'busybox'], { tty: true });
    expect(r.partial[0]).toBe('\r\x1b[Kefefefefefef  downloading  0B / 2.1M  0%\n');
    expect(r.partial[1]).toBe('\x1b[1A\r\x1b[Kefefefefefef  downloading  1.0M / 2.1M  50%\n');
    expect(r.partial).toHaveLength(3);
  });

  it('pull --username --password-stdin reads the password from stdin; half of it is a usage error', async () => {
    const r = await run(['image', 'pull', '--username', 'alice', '--password-stdin', 'busybox'], { stdin: ['hunter2'] });
    expect(r.calls).toEqual([['pull', 'busybox', { username: 'alice', password: 'hunter2' }]]);
    expect(r.out.join('\n')).not.toContain('hunter2');
    const half = await run(['image', 'pull', '--username', 'alice', 'busybox']);
    expect(half.code).toBe(2);
    expect(half.err.join('\n')).toContain('--username needs --password-stdin');
    expect(half.calls).toEqual([]);
    expect((await run(['image', 'pull', '--username', 'alice', '--password-stdin', 'busybox'], { stdin: [] })).code).toBe(2);
  });

  it('list, inspect and rm (with --force); -o json prints the SDK objects', async () => {
    const list = await run(['image', 'ls']);
    expect(list.out[0]).toContain('NAME');
    const json = await run(['-o', 'json', 'image', 'inspect', 'busybox']);
    expect(JSON.parse(json.out[0]!)).toEqual(IMAGE);
    const rm = await run(['image', 'rm', '--force', 'busybox']);
    expect(rm.calls).toEqual([['rm', 'busybox', true]]);
    expect(rm.out).toEqual(['removed busybox:latest']);
  });

  it('keeps aer image flash in the same group', async () => {
    const r = await run(['image', '--help']);
    const help = r.out.join('\n');
    for (const sub of ['flash', 'pull', 'list', 'inspect', 'rm']) expect(help).toContain(sub);
  });
});

describe('image formatting', () => {
  it('a table row per tag, digests shortened, ages relative', () => {
    expect(formatImageTable([IMAGE, { ...IMAGE, name: 'docker.io/library/alpine', tags: [] }], NOW).split('\n')).toEqual([
      'NAME                      TAG     DIGEST        SIZE  PULLED',
      '127.0.0.1:5000/busybox    latest  abababababab  2.1M  2m 5s ago',
      '127.0.0.1:5000/busybox    1.36    abababababab  2.1M  2m 5s ago',
      'docker.io/library/alpine  <none>  abababababab  2.1M  2m 5s ago',
    ]);
    expect(formatImageTable([], NOW)).toBe('no images');
    expect(shortDigest('sha256:0123456789abcdef')).toBe('0123456789ab');
  });

  it('inspect text names every config field', () => {
    const text = formatImage(IMAGE);
    expect(text).toContain('cmd         "sh"');
    expect(text).toContain('entrypoint  -');
    expect(text).toContain(`  ${LAYER}  2.1M  application/vnd.oci.image.layer.v1.tar+gzip`);
  });

  it('layer lines for each state, with the image for pod pulls', () => {
    expect(formatLayerProgress({ layer: LAYER, done: 0, total: 0, state: 'exists' })).toBe('efefefefefef  exists       already stored');
    expect(formatLayerProgress({ layer: LAYER, done: 5, total: 10, state: 'unpacking', image: 'busybox' })).toBe('busybox  efefefefefef  unpacking    10B');
  });

  it('a log gets one line per layer state change, however many byte updates', () => {
    const written: string[] = [];
    const d = pullProgressDisplay(false, (t) => written.push(t));
    for (let i = 0; i < 10; i++) d.update({ layer: LAYER, done: i, total: 10, state: 'downloading' });
    d.update({ layer: LAYER, done: 10, total: 10, state: 'done' });
    expect(written).toHaveLength(2);
  });

  it('readAuth: none without --username', async () => {
    const fail = (m: string): never => {
      throw new Error(m);
    };
    expect(await readAuth({}, {}, fail)).toBeUndefined();
    await expect(readAuth({ passwordStdin: true }, {}, fail)).rejects.toThrow('--password-stdin needs --username');
  });
});
