// `aer image upgrade|status|rollback` over a fake SDK client: the release read from a build's folder, progress in a
// log, --reboot, --node routed like every command, and the status text. The wire and the node side:
// supervisor/upgrade/upgrade.test.ts.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeSigningIdentity, writeTestRelease } from '../../supervisor/upgrade/testing';
import type { AuraeClient, ConnectOptions, ReleaseSource, UpgradeStatusInfo, UploadOptions } from '../sdk';
import { runAer } from './program';
import { formatUpgradeStatus, openRelease } from './upgrade';
import { releaseFromDir, releaseFromUrl } from '../sdk/upgrade';

const ENTRY = { id: 'aurae-000002-0.2.0', version: '0.2.0', generation: 2, file: 'EFI/Linux/aurae-000002-0.2.0+3.efi', triesLeft: 3, triesDone: 0, running: false, bootsNext: true };

let tmp: string;
beforeEach(() => void (tmp = mkdtempSync(join(tmpdir(), 'aer-upgrade-'))));
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

function fakeClient() {
  const calls: unknown[] = [];
  const client = {
    config: { path: '/c.json', node: 'aurae', address: 'unix:///x', version: 1, ca: '', cert: '', key: '' },
    upgrade: {
      upload: async (release: ReleaseSource, o: UploadOptions = {}) => {
        calls.push(['upload', release.manifest.version, o.attempts]);
        o.onAccepted?.({ resumeOffset: 1_000_000, total: 3_500_000, version: '0.2.0', signer: 'CN=Aurae image signing' });
        for (const received of [1_000_000, 2_000_000, 3_500_000]) o.onProgress?.({ received, total: 3_500_000 });
        return { entry: ENTRY, removed: ['EFI/Linux/aurae-000000-x.efi'], sent: 2_500_000 };
      },
      status: async () => STATUS,
      rollback: async () => (calls.push(['rollback']), { bootsNext: { ...ENTRY, id: 'aurae-000003-0.1.0', version: '0.1.0' }, from: 'aurae-000002-0.2.0' }),
    },
    node: { reboot: async (o: { reason?: string }) => void calls.push(['reboot', o.reason]) },
    close: () => {},
  } as unknown as AuraeClient;
  return { client, calls };
}

async function run(argv: string[]) {
  const { client, calls } = fakeClient();
  const out: string[] = [];
  const err: string[] = [];
  const connected: ConnectOptions[] = [];
  const code = await runAer(argv, { out: (t) => void out.push(t), err: (t) => void err.push(t), env: {}, connect: (o) => (connected.push(o), client) });
  return { code, out, err, calls, connected };
}

const STATUS: UpgradeStatusInfo = {
  slotted: true,
  reason: '',
  entries: [
    { ...ENTRY, triesLeft: 0, triesDone: 3, bootsNext: false },
    { id: 'aurae-000001-0.1.0', version: '0.1.0', generation: 1, file: 'EFI/Linux/aurae-000001-0.1.0.efi', triesLeft: null, triesDone: null, running: true, bootsNext: true },
  ],
  running: 'aurae-000001-0.1.0',
  bootsNext: 'aurae-000001-0.1.0',
  lastRollback: { from: 'aurae-000002-0.2.0', to: 'aurae-000001-0.1.0', reason: 'aurae-000002-0.2.0 was booted 3 time(s) without being blessed', at: 0, by: '' },
  partial: { version: '0.3.0', manifestSha256: 'a'.repeat(64), kept: 1024 * 1024, total: 4 * 1024 * 1024 },
  signingCerts: [{ subject: 'CN=Aurae image signing', fingerprint: 'ab'.repeat(32), notAfter: 0, file: '/etc/aurae/pki/image-signing.crt' }],
  signingProblem: '',
  bootNote: '',
  uploading: false,
};

describe('aer image upgrade', () => {
  it("reads the release from a build's image folder (release/ inside), shows progress, reboots with --reboot, routes with --node", async () => {
    const key = await makeSigningIdentity();
    writeTestRelease(join(tmp, 'release'), '0.2.0', key, { uki: 100, kernel: 10, initramfs: 10 });
    const r = await run(['--node', 'aurae/web', 'image', 'upgrade', tmp, '--reboot']);
    expect(r.code).toBe(0);
    expect(r.connected[0]).toMatchObject({ targetNode: 'aurae/web' });
    expect(r.calls).toEqual([['upload', '0.2.0', 3], ['reboot', 'upgrade to 0.2.0']]);
    expect(r.err[0]).toMatch(/release 0\.2\.0 signed by CN=Aurae image signing; continuing from 977K kept on the node/);
    expect(r.err.slice(1)).toEqual(['upload 0.2.0: 977K / 3.3M  28%', 'upload 0.2.0: 1.9M / 3.3M  57%', 'upload 0.2.0: 3.3M / 3.3M  100%']);
    expect(r.out).toEqual(['aurae: aurae-000002-0.2.0 written to EFI/Linux/aurae-000002-0.2.0+3.efi (removed EFI/Linux/aurae-000000-x.efi); it boots next: rebooting']);
  });

  it('refuses a folder without a release, naming the file', async () => {
    const r = await run(['image', 'upgrade', tmp]);
    expect(r.code).toBe(1);
    expect(r.err.join('\n')).toMatch(/cannot read aurae-release\.json \(ENOENT\): give the release folder of a build/);
    await expect(openRelease(join(tmp, 'nope'))).rejects.toThrow(/cannot read aurae-release\.json/);
  });
});

describe('aer image status / rollback', () => {
  it('status: a table of entries, the last rollback, an unfinished upload, the pinned certificates', async () => {
    const r = await run(['image', 'status']);
    expect(r.out[0]).toBe(formatUpgradeStatus(STATUS));
    expect(r.out[0]!.split('\n')).toEqual([
      'ENTRY               VERSION  TRIES                  STATE',
      'aurae-000002-0.2.0  0.2.0    out of tries (3 done)  -',
      'aurae-000001-0.1.0  0.1.0    blessed                running, boots next',
      'last rollback: aurae-000002-0.2.0 → aurae-000001-0.1.0: aurae-000002-0.2.0 was booted 3 time(s) without being blessed',
      'unfinished upload: 0.3.0, 1.0M of 4.0M kept (aer image upgrade with the same release continues it)',
      'image-signing certificate: CN=Aurae image signing sha256 abababababababab… (/etc/aurae/pki/image-signing.crt)',
    ]);
    expect(formatUpgradeStatus({ ...STATUS, slotted: false, reason: 'a direct-kernel boot', entries: [], lastRollback: null, partial: null, signingCerts: [] }).split('\n')).toEqual([
      'not upgradable in place: a direct-kernel boot',
      'image-signing certificates: none pinned (upgrade.signingCerts in the node config): uploads are refused',
    ]);
    expect(formatUpgradeStatus({ ...STATUS, entries: [], lastRollback: null, partial: null, signingCerts: [], signingProblem: 'upgrade.signingCerts: cannot read /x.crt (ENOENT): fix it', bootNote: 'on trial: blessed after 30 s of serving' }).split('\n')).toEqual([
      'no boot entries',
      'this boot: on trial: blessed after 30 s of serving',
      'image-signing certificates unusable: upgrade.signingCerts: cannot read /x.crt (ENOENT): fix it',
    ]);
  });

  it('rollback (and --reboot), JSON output', async () => {
    const r = await run(['-o', 'json', 'image', 'rollback', '--reboot']);
    expect(r.calls).toEqual([['rollback'], ['reboot', 'rollback to 0.1.0']]);
    expect(JSON.parse(r.out[0]!)).toMatchObject({ from: 'aurae-000002-0.2.0', bootsNext: { id: 'aurae-000003-0.1.0' }, rebooting: true });
  });

  it('image flash and the container image commands stay in the group', async () => {
    const r = await run(['image', '--help']);
    const help = r.out.join('\n');
    for (const c of ['flash', 'pull', 'list', 'upgrade', 'status', 'rollback']) expect(help).toMatch(new RegExp(`\\n  ${c}\\b`));
  });
});

describe('release over HTTP: a resumed GET', () => {
  it('takes a 206 only when its Content-Range starts where the upload resumes', async () => {
    const { rangeStartsAt } = await import('../sdk/upgrade');
    expect(rangeStartsAt('bytes 100-199/200', 100)).toBe(true);
    expect(rangeStartsAt('bytes 100-199/*', 100)).toBe(true);
    expect(rangeStartsAt('bytes 0-199/200', 100)).toBe(false);
    expect(rangeStartsAt(undefined, 100)).toBe(false);
    expect(rangeStartsAt(['bytes 100-199/200'], 100)).toBe(false);
  });
});

describe('release over HTTP: resuming', () => {
  let dir: string;
  beforeEach(() => void (dir = mkdtempSync(join(tmpdir(), 'aurae-release-http-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A release folder served by a fake GET: `mode` says how it answers a Range request. */
  async function served(mode: 'range' | 'ignores-range' | 'wrong-range') {
    const release = writeTestRelease(join(dir, 'r'), '0.2.0', await makeSigningIdentity(), { uki: 300_000, kernel: 200_000, initramfs: 100_000 });
    const get = async (url: string, fromByte?: number) => {
      const data = readFileSync(join(release.dir, new URL(url).pathname.split('/').pop()!));
      const from = fromByte ?? 0;
      const answer = (status: number, body: Buffer, contentRange?: string) => ({
        status,
        body: (async function* () {
          yield body;
        })(),
        close: () => {},
        ...(contentRange ? { contentRange } : {}),
      });
      if (from === 0 || mode === 'ignores-range') return answer(200, data);
      const start = mode === 'wrong-range' ? 0 : from;
      return answer(206, data.subarray(start), `bytes ${start}-${data.length - 1}/${data.length}`);
    };
    return { release, get };
  }
  const collect = async (it: AsyncIterable<Uint8Array>) => {
    const parts: Buffer[] = [];
    for await (const p of it) parts.push(Buffer.from(p));
    return Buffer.concat(parts);
  };

  it('gives the same bytes from any offset as the folder does, whether the server honours Range or not', async () => {
    for (const mode of ['range', 'ignores-range'] as const) {
      const { release, get } = await served(mode);
      const http = await releaseFromUrl('http://127.0.0.1:1/r/', get);
      for (const offset of [0, 123_456, 300_000, 555_555]) {
        expect((await collect(http.open(offset))).equals(await collect(releaseFromDir(release.dir).open(offset)))).toBe(true);
      }
      rmSync(join(dir, 'r'), { recursive: true, force: true });
    }
  });

  it('refuses a 206 whose Content-Range does not start at the resumed byte', async () => {
    const { get } = await served('wrong-range');
    const http = await releaseFromUrl('http://127.0.0.1:1/r/', get);
    await expect(collect(http.open(123_456))).rejects.toThrow(/from byte 123456 answered HTTP 206 with Content-Range bytes 0-/);
  });
});
