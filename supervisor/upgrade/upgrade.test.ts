// The upgrade service end to end without a node: the SDK (aer/sdk/upgrade.ts) over a real grpc-js server on
// loopback (insecure; the caller's certificate is faked: authorization is the policy's, tested below with the real
// policy), the service and core over an ESP folder in a temp dir, a state folder, and a fake booted-entry reader.
// Upload → a new entry `+3` with the release's bytes (written temp → fsync → rename → fsync folder); tampered,
// unsigned or foreign-signed → refused with nothing written; a cut stream resumes; Rollback; Status.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, Server, ServerCredentials, type ServiceError, credentials } from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createUpgradeApi, type ReleaseSource, releaseFromDir, type UpgradeApi } from '../../aer/sdk/upgrade';
import { toApiError } from '../../aer/sdk/errors';
import { ADMIN_ONLY_METHODS, decide, denialMessage, OPEN_METHODS, type Policy } from '../authz/policy';
import { UpgradeServiceClient, UpgradeServiceService, type UpgradeServiceServer, type UpgradeServiceUploadResponse } from '../gen/aurae/upgrade/v0/upgrade';
import { silentLogger } from '../log';
import { fakeAuthContext, fakeAuthorizer, issuerByName } from '../server/testing';
import { type EspTrace, fsEsp } from './esp';
import { fsPartialStore } from './partial-store';
import { RELEASE_MANIFEST_FILE, RELEASE_SIGNATURE_FILE } from './release';
import { type BootedBy, ESP_PATHS, planBless } from './slots';
import { makeSigningIdentity, type SigningIdentity, treeSnapshot, writeTestRelease, writeTestSlot } from './testing';
import { createUpgradeCore } from './upgrade-core';
import { parseNodeConfig } from '../config';
import { AuraeError } from '../errors';
import type { UploadSession } from './upgrade-core';
import { createUpgradeService, runUpload, validateUploadHeader } from './upgrade-service';

let trusted: SigningIdentity;
let stranger: SigningIdentity;
let server: Server;
let address: string;
let service: UpgradeServiceServer;
let api: UpgradeApi;
let raw: UpgradeServiceClient;

beforeAll(async () => {
  [trusted, stranger] = await Promise.all([makeSigningIdentity('Aurae image signing (test)'), makeSigningIdentity('Someone else')]);
  server = new Server();
  // Every call comes from "admin" (mTLS is faked); the handlers are the current test's service.
  const asAdmin = (name: keyof UpgradeServiceServer) => (call: { getAuthContext: unknown }, callback?: unknown) => {
    call.getAuthContext = () => fakeAuthContext('admin');
    return (service[name] as (c: unknown, cb?: unknown) => void)(call, callback);
  };
  server.addService(UpgradeServiceService, { status: asAdmin('status'), upload: asAdmin('upload'), rollback: asAdmin('rollback') } as never);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  address = `127.0.0.1:${port}`;
  const creds = credentials.createInsecure();
  raw = new UpgradeServiceClient(address, creds);
  api = createUpgradeApi({
    address,
    credentials: creds,
    options: {},
    unary: (method, start) => new Promise((resolve, reject) => start((err, res) => (err ? reject(toApiError(err, method, address)) : resolve(res)))),
    callOptions: () => ({ deadline: Date.now() + 10_000 }),
  });
});
afterAll(() => {
  raw.close();
  server.forceShutdown();
});

let tmp: string;
let esp: string;
let state: string;
let booted: BootedBy;
let trace: Parameters<EspTrace>[];
let pinned: string[];

function makeService(options: { child?: boolean; failWriting?: RegExp; stateInMemory?: boolean; uploadIdleMs?: number; failSync?: boolean } = {}) {
  const ctx = { log: silentLogger, admins: new Set(['admin']), authz: fakeAuthorizer(), parentIdentity: null, issuerOf: issuerByName() };
  const real = fsEsp(esp, null, { trace: (...a) => void trace.push(a) });
  const failing = options.failWriting;
  const core = createUpgradeCore({
    esp: failing
      ? {
          ...real,
          writable: (fn) => real.writable(fn),
          writeFile: async (p, chunks, sha256) => {
            if (failing.test(p)) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
            return real.writeFile(p, chunks, sha256);
          },
        }
      : real,
    partial: {
      ...fsPartialStore(state),
      ...(options.stateInMemory ? { room: () => ({ freeBytes: 2 ** 40, inMemory: true }) } : {}),
      ...(options.failSync ? { sync: () => { throw Object.assign(new Error('input/output error'), { code: 'EIO' }); } } : {}),
    },
    bootedBy: () => booted,
    signingCertFiles: pinned,
    bootSlotStatus: () => null,
    child: options.child,
    uploadIdleMs: options.uploadIdleMs ?? 60_000,
    clock: () => 1_700_000_000_000,
    log: silentLogger,
  });
  service = createUpgradeService(ctx, core);
}

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'aurae-upgrade-'));
  esp = join(tmp, 'esp');
  state = join(tmp, 'state');
  writeTestSlot(esp, { generation: 1, version: '0.1.0' });
  booted = { entrySelected: 'aurae-000001-0.1.0.efi', bootCountPath: null };
  trace = [];
  writeFileSync(join(tmp, 'signing.crt'), trusted.certPem);
  pinned = [join(tmp, 'signing.crt')];
  makeService();
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

const entriesDir = () => join(esp, ESP_PATHS.entries);
/** Poll `check` until it is true, at most `ms`. */
async function waitFor(check: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met within the deadline');
    await new Promise((r) => setTimeout(r, 20));
  }
}
const ls = () => Object.keys(treeSnapshot(entriesDir())).sort();
/** `promise`, or a failure naming `what` when it has not settled within `ms`. */
function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe('UpgradeService/Upload', () => {
  it('is refused on a node whose state is in RAM (no STATE volume): nothing kept, nothing written', async () => {
    makeService({ stateInMemory: true });
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted);
    const before = ls();
    await expect(api.upload(releaseFromDir(release.dir))).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(/keeps its state in RAM/) });
    expect(ls()).toEqual(before);
    expect(existsSync(join(state, 'upgrade', 'partial.data'))).toBe(false);
  });
  it('writes a signed release into the inactive slot: a new entry +3 with the same bytes, written durably, UKI last', async () => {
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted);
    const accepted: unknown[] = [];
    const r = await api.upload(releaseFromDir(release.dir), { onAccepted: (a) => void accepted.push(a) });
    expect(accepted).toEqual([{ resumeOffset: 0, total: 3_500_000, version: '0.2.0', signer: 'CN=Aurae image signing (test)' }]);
    expect(r.entry).toMatchObject({ id: 'aurae-000002-0.2.0', version: '0.2.0', generation: 2, file: 'EFI/Linux/aurae-000002-0.2.0+3.efi', triesLeft: 3, triesDone: 0, bootsNext: true, running: false });
    expect(r.sent).toBe(3_500_000);
    const id = 'aurae-000002-0.2.0';
    expect(readFileSync(join(entriesDir(), `${id}+3.efi`)).equals(release.files.uki)).toBe(true);
    expect(readFileSync(join(entriesDir(), `${id}.vmlinuz`)).equals(release.files.kernel)).toBe(true);
    expect(readFileSync(join(entriesDir(), `${id}.initramfs`)).equals(release.files.initramfs)).toBe(true);
    expect(readFileSync(join(entriesDir(), `${id}.json`)).equals(release.manifestBytes)).toBe(true);
    expect(readFileSync(join(entriesDir(), `${id}.json.sig`), 'utf8')).toBe(readFileSync(join(release.dir, RELEASE_SIGNATURE_FILE), 'utf8'));
    // Every file: written to its temp name, fsync'd, renamed, fsync'd under its new name (vfat writes a renamed
    // file's size and clusters only then), then the folder fsync'd; the UKI is the last one.
    const written = trace.filter(([op]) => op === 'rename').map(([, , to]) => to);
    expect(written).toEqual([`${id}.json`, `${id}.json.sig`, `${id}.vmlinuz`, `${id}.initramfs`, `${id}+3.efi`].map((n) => `${ESP_PATHS.entries}/${n}`));
    for (const to of written) {
      const i = trace.findIndex(([op, , t]) => op === 'rename' && t === to);
      expect(trace[i - 1]).toEqual(['fsync', `${to}.tmp`]);
      expect(trace[i + 1]).toEqual(['fsync-renamed', to]);
      expect(trace[i + 2]).toEqual(['fsync-dir', ESP_PATHS.entries]);
    }
    // The running slot is untouched; nothing is left on the state volume.
    expect(ls()).toContain('aurae-000001-0.1.0.efi');
    expect(ls().some((n) => n.endsWith('.tmp'))).toBe(false);
    expect((await api.status()).partial).toBeNull();
  });

  it('replaces the other slot on the next upgrade and never the running one', async () => {
    writeTestSlot(esp, { generation: 2, version: '0.2.0', triesLeft: 0, triesDone: 3 });
    const release = writeTestRelease(join(tmp, 'release'), '0.3.0', trusted, { uki: 1000, kernel: 1000, initramfs: 1000 });
    const r = await api.upload(releaseFromDir(release.dir));
    expect(r.entry.id).toBe('aurae-000003-0.3.0');
    expect(r.removed).toEqual(expect.arrayContaining(['EFI/Linux/aurae-000002-0.2.0+0-3.efi', 'EFI/Linux/aurae-000002-0.2.0.vmlinuz']));
    expect(ls().filter((n) => n.startsWith('aurae-000002'))).toEqual([]);
    expect(ls().filter((n) => n.startsWith('aurae-000001'))).toHaveLength(5);
  });

  it('refuses a tampered file after the whole upload with INVALID_ARGUMENT: nothing written, the bytes dropped', async () => {
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted);
    const kernel = join(release.dir, 'vmlinuz');
    const bytes = readFileSync(kernel);
    bytes[1000] = bytes[1000]! ^ 0xff; // same size, one byte changed after signing
    writeFileSync(kernel, bytes);
    const before = treeSnapshot(esp);
    await expect(api.upload(releaseFromDir(release.dir))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      details: expect.stringMatching(/vmlinuz \(kernel\) has sha256 [0-9a-f]{64}, the signed manifest says [0-9a-f]{64}: .*nothing was written to the ESP/),
    });
    expect(treeSnapshot(esp)).toEqual(before);
    expect(trace).toEqual([]);
    expect((await api.status()).partial).toBeNull();
  });

  it('refuses a release signed by a key that is not pinned, and an unsigned one, before taking any byte', async () => {
    const foreign = writeTestRelease(join(tmp, 'foreign'), '0.2.0', stranger);
    const before = treeSnapshot(esp);
    await expect(api.upload(releaseFromDir(foreign.dir))).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
      details: expect.stringMatching(/does not verify with any pinned image-signing certificate \("CN=Aurae image signing \(test\)"/),
    });
    const unsigned = writeTestRelease(join(tmp, 'unsigned'), '0.2.0', null);
    await expect(api.upload(releaseFromDir(unsigned.dir))).rejects.toMatchObject({ code: 'PERMISSION_DENIED', details: expect.stringMatching(/the manifest is unsigned/) });
    // A signature of another manifest (the version changed after signing).
    const edited = writeTestRelease(join(tmp, 'edited'), '0.2.0', trusted);
    writeFileSync(join(edited.dir, RELEASE_MANIFEST_FILE), readFileSync(join(edited.dir, RELEASE_MANIFEST_FILE), 'utf8').replace('"0.2.0"', '"0.9.0"'));
    await expect(api.upload(releaseFromDir(edited.dir))).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(treeSnapshot(esp)).toEqual(before);
    expect(trace).toEqual([]);
    expect((await api.status()).partial).toBeNull();
  });

  it('refuses every upload while no certificate is pinned, saying how to pin one', async () => {
    pinned = [];
    makeService();
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted);
    await expect(api.upload(releaseFromDir(release.dir))).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      details: expect.stringMatching(/no image-signing certificate is pinned.*upgrade\.signingCerts/),
    });
    pinned = [join(tmp, 'missing.crt')];
    makeService();
    await expect(api.upload(releaseFromDir(release.dir))).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(/cannot read .*missing\.crt \(ENOENT\)/) });
    // auraed serves on; Status says what is wrong.
    expect(await api.status()).toMatchObject({ signingCerts: [], signingProblem: expect.stringMatching(/^upgrade\.signingCerts: cannot read .*missing\.crt \(ENOENT\)/) });
  });

  it('answers FAILED_PRECONDITION with why on a direct-kernel boot and on a child VM', async () => {
    booted = { entrySelected: null, bootCountPath: null };
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted, { uki: 10, kernel: 10, initramfs: 10 });
    await expect(api.upload(releaseFromDir(release.dir))).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(/did not boot through systemd-boot .*direct-kernel boot/) });
    await expect(api.rollback()).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(/^rollback: this node did not boot through systemd-boot/) });
    expect(await api.status()).toMatchObject({ slotted: false, reason: expect.stringMatching(/direct-kernel/), running: '', bootsNext: 'aurae-000001-0.1.0' });
    makeService({ child: true });
    await expect(api.upload(releaseFromDir(release.dir))).rejects.toMatchObject({ details: expect.stringMatching(/child VM: it boots from its parent's running slot .*upgrade the parent/) });
    expect(trace).toEqual([]);
  });

  it('refuses while the running entry is still on trial (not blessed)', async () => {
    rmSync(entriesDir(), { recursive: true });
    writeTestSlot(esp, { generation: 1, version: '0.1.0', triesLeft: 2, triesDone: 1 });
    booted = { entrySelected: 'aurae-000001-0.1.0.efi', bootCountPath: '\\EFI\\Linux\\aurae-000001-0.1.0+2-1.efi' };
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted, { uki: 10, kernel: 10, initramfs: 10 });
    await expect(api.upload(releaseFromDir(release.dir))).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(/still on trial/) });
  });

  it('resumes a cut upload from the bytes the node kept', async () => {
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted);
    const source = releaseFromDir(release.dir);
    // A caller that sends 1.5 MiB and then closes its side: the node keeps them and says how to continue.
    const cut = await new Promise<ServiceError>((resolve) => {
      const call = raw.upload(new Metadata());
      call.on('data', (m: UpgradeServiceUploadResponse) => {
        if (!m.accepted) return;
        const all = Buffer.concat([release.files.uki, release.files.kernel, release.files.initramfs]);
        call.write({ chunk: { offset: 0n, data: all.subarray(0, 1024 * 1024) } });
        call.write({ chunk: { offset: BigInt(1024 * 1024), data: all.subarray(1024 * 1024, 1536 * 1024) } });
        call.end();
      });
      call.on('error', resolve);
      call.write({ header: { manifest: source.manifestBytes, signature: source.signature, totalSize: 3_500_000n } });
    });
    expect(cut.details).toMatch(/the stream ended after 1572864 of 3500000 bytes: they are kept .*continue from byte 1572864/);
    expect((await api.status()).partial).toMatchObject({ version: '0.2.0', kept: 1572864, total: 3_500_000 });
    expect(ls().filter((n) => n.startsWith('aurae-000002'))).toEqual([]);

    const accepted: number[] = [];
    const r = await api.upload(source, { onAccepted: (a) => void accepted.push(a.resumeOffset) });
    expect(accepted).toEqual([1572864]);
    expect(r.sent).toBe(3_500_000 - 1572864);
    expect(readFileSync(join(entriesDir(), 'aurae-000002-0.2.0+3.efi')).equals(release.files.uki)).toBe(true);
    expect((await api.status()).partial).toBeNull();
  });

  it('a failing ESP write leaves no entry and keeps the bytes; the next upload sends nothing again and finishes the slot', async () => {
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted, { uki: 5000, kernel: 100, initramfs: 100 });
    makeService({ failWriting: /\.efi$/ });
    await expect(api.upload(releaseFromDir(release.dir))).rejects.toMatchObject({
      code: 'INTERNAL',
      details: expect.stringMatching(/^upgrade: writing aurae-000002-0\.2\.0 to the ESP .* failed \(ENOSPC\): the running entry is untouched and the received bytes are kept/),
    });
    expect(ls().filter((n) => n.endsWith('.efi'))).toEqual(['aurae-000001-0.1.0.efi']);
    expect((await api.status()).partial).toMatchObject({ kept: 5200, total: 5200 });
    makeService();
    const accepted: number[] = [];
    const r = await api.upload(releaseFromDir(release.dir), { onAccepted: (a) => void accepted.push(a.resumeOffset) });
    expect(accepted).toEqual([5200]);
    expect(r.sent).toBe(0);
    expect(r.entry.id).toBe('aurae-000003-0.2.0');
    expect(ls().filter((n) => n.startsWith('aurae-000002'))).toEqual([]);
    expect(readFileSync(join(entriesDir(), 'aurae-000003-0.2.0+3.efi')).equals(release.files.uki)).toBe(true);
  });

  it('a cancelled upload (the caller went away) keeps what arrived; the next one continues from there', async () => {
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted);
    const full = releaseFromDir(release.dir);
    const abort = new AbortController();
    const MiB = 1024 * 1024;
    // Sends the first MiB, waits until the node has it, then the caller goes away (cancel) mid-stream.
    const stalling: ReleaseSource = {
      origin: full.origin,
      manifestBytes: full.manifestBytes,
      manifest: full.manifest,
      signature: full.signature,
      async *open(offset) {
        for await (const piece of full.open(offset)) {
          yield piece;
          await waitFor(async () => (await api.status()).partial?.kept === MiB);
          abort.abort();
          await new Promise(() => {});
        }
      },
    };
    await expect(api.upload(stalling, { signal: abort.signal })).rejects.toThrow(/aborted/);
    // The node notices the cancel and lets go of the upload (Status: no longer uploading, the MiB kept).
    await waitFor(async () => !(await api.status()).uploading);
    expect((await api.status()).partial).toMatchObject({ kept: MiB, total: 3_500_000 });
    const accepted: number[] = [];
    await api.upload(full, { onAccepted: (a) => void accepted.push(a.resumeOffset) });
    expect(accepted).toEqual([MiB]);
    expect(readFileSync(join(entriesDir(), 'aurae-000002-0.2.0+3.efi')).equals(release.files.uki)).toBe(true);
  });

  it('ends a stream idle for upgrade.uploadIdleMs with DEADLINE_EXCEEDED: the upload is free again and the next one resumes from the kept bytes', async () => {
    makeService({ uploadIdleMs: 300 });
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted);
    const source = releaseFromDir(release.dir);
    const MiB = 1024 * 1024;
    // A caller that sends one MiB and then nothing, its side left open.
    const call = raw.upload(new Metadata());
    const ended = new Promise<ServiceError>((resolve) => call.on('error', resolve));
    call.on('data', (m: UpgradeServiceUploadResponse) => {
      if (m.accepted) call.write({ chunk: { offset: 0n, data: release.files.uki.subarray(0, MiB) } });
    });
    call.write({ header: { manifest: source.manifestBytes, signature: source.signature, totalSize: 3_500_000n } });
    const err = await within(ended, 'the node ending the idle upload');
    expect(err.code).toBe(4); // DEADLINE_EXCEEDED
    expect(err.details).toMatch(/^upload: nothing arrived for 300 ms \(upgrade\.uploadIdleMs\), so the node ended the stream .*the 1048576 of 3500000 bytes received are kept .*continue from byte 1048576$/);
    expect(await api.status()).toMatchObject({ uploading: false, partial: { version: '0.2.0', kept: MiB, total: 3_500_000 } });
    // The session is free: the next upload is accepted and continues from the kept MiB.
    const accepted: number[] = [];
    const r = await api.upload(source, { onAccepted: (a) => void accepted.push(a.resumeOffset) });
    expect(accepted).toEqual([MiB]);
    expect(r.sent).toBe(3_500_000 - MiB);
    expect(readFileSync(join(entriesDir(), 'aurae-000002-0.2.0+3.efi')).equals(release.files.uki)).toBe(true);
  });

  it('an idle end whose sync of the kept bytes fails still frees the upload (logged, not thrown from the timer)', async () => {
    makeService({ uploadIdleMs: 200, failSync: true });
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted, { uki: 1000, kernel: 10, initramfs: 10 });
    const source = releaseFromDir(release.dir);
    const call = raw.upload(new Metadata());
    const ended = new Promise<ServiceError>((resolve) => call.on('error', resolve));
    call.on('data', (m: UpgradeServiceUploadResponse) => m.accepted && call.write({ chunk: { offset: 0n, data: release.files.uki.subarray(0, 100) } }));
    call.write({ header: { manifest: source.manifestBytes, signature: source.signature, totalSize: 1020n } });
    expect((await within(ended, 'the node ending the idle upload')).code).toBe(4);
    expect(await api.status()).toMatchObject({ uploading: false, partial: { kept: 100 } });
  });

  it('the SDK retries an upload the node ended as idle (attempts) and resumes it', async () => {
    makeService({ uploadIdleMs: 300 });
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted);
    const full = releaseFromDir(release.dir);
    const MiB = 1024 * 1024;
    let firstEnded: () => void = () => {};
    const firstAttemptOver = new Promise<void>((r) => (firstEnded = r));
    const offsets: number[] = [];
    // The first attempt's source stalls after one MiB (a hung HTTP server) until the node has ended that attempt.
    const stalling: ReleaseSource = {
      ...full,
      open(offset) {
        offsets.push(offset);
        if (offsets.length > 1) return full.open(offset);
        return (async function* () {
          for await (const piece of full.open(offset)) {
            yield piece;
            await firstAttemptOver;
            return;
          }
        })();
      },
    };
    const accepted: number[] = [];
    const r = await within(
      api.upload(stalling, {
        attempts: 2,
        onAccepted: (a) => {
          accepted.push(a.resumeOffset);
          if (accepted.length === 2) firstEnded();
        },
      }),
      'the retried upload',
    );
    expect(accepted).toEqual([0, MiB]);
    expect(offsets).toEqual([0, MiB]);
    expect(r.sent).toBe(3_500_000 - MiB);
    expect(readFileSync(join(entriesDir(), 'aurae-000002-0.2.0+3.efi')).equals(release.files.uki)).toBe(true);
  });

  it('starts over when the kept bytes belong to another release', async () => {
    const first = writeTestRelease(join(tmp, 'first'), '0.2.0', trusted, { uki: 2_000_000, kernel: 10, initramfs: 10 });
    const s1 = releaseFromDir(first.dir);
    await new Promise<void>((resolve) => {
      const call = raw.upload(new Metadata());
      call.on('data', (m: UpgradeServiceUploadResponse) => {
        if (!m.accepted) return;
        call.write({ chunk: { offset: 0n, data: first.files.uki.subarray(0, 1000) } });
        call.end();
      });
      call.on('error', () => resolve());
      call.write({ header: { manifest: s1.manifestBytes, signature: s1.signature, totalSize: 2_000_020n } });
    });
    expect((await api.status()).partial?.kept).toBe(1000);
    const second = writeTestRelease(join(tmp, 'second'), '0.3.0', trusted, { uki: 10, kernel: 10, initramfs: 10 });
    const accepted: number[] = [];
    await api.upload(releaseFromDir(second.dir), { onAccepted: (a) => void accepted.push(a.resumeOffset) });
    expect(accepted).toEqual([0]);
  });

  it('checks each chunk: in order, within the release', async () => {
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted, { uki: 100, kernel: 10, initramfs: 10 });
    const source = releaseFromDir(release.dir);
    const err = await new Promise<ServiceError>((resolve) => {
      const call = raw.upload(new Metadata());
      call.on('data', (m: UpgradeServiceUploadResponse) => m.accepted && call.write({ chunk: { offset: 5n, data: Buffer.alloc(10) } }));
      call.on('error', resolve);
      call.write({ header: { manifest: source.manifestBytes, signature: source.signature, totalSize: 120n } });
    });
    expect(err.details).toMatch(/^chunk\.offset: 5, but 0 bytes were received/);
  });
});

describe('Upload idle timer (runUpload over a fake stream, fake clock)', () => {
  const IDLE = 1000;
  /** A session taking any chunk, and a stream the test drives; `outcome` records how runUpload settled. */
  function start() {
    let received = 0;
    const session = {
      accepted: { resumeOffset: 0, total: 100, version: '0.2.0', signer: 'CN=test' },
      get received() {
        return received;
      },
      idleMs: IDLE,
      write: (_offset: number, data: Uint8Array) => void (received += data.length),
      finish: vi.fn(async () => ({ entry: { id: 'e', version: '0.2.0', generation: 2, file: 'f', triesLeft: 3, triesDone: 0, running: false, bootsNext: true }, removed: [] })),
      abandon: vi.fn(),
    } satisfies UploadSession;
    const call = Object.assign(new EventEmitter(), { write: vi.fn(), end: vi.fn(), resume: vi.fn() });
    const outcome: { settled?: 'resolved' | 'rejected'; err?: unknown } = {};
    runUpload(session, call as never).then(
      () => void (outcome.settled = 'resolved'),
      (err: unknown) => Object.assign(outcome, { settled: 'rejected', err }),
    );
    const chunk = (offset: number) => call.emit('data', { chunk: { offset: BigInt(offset), data: Buffer.alloc(10) } });
    return { session, call, outcome, chunk };
  }
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('restarts on every message and ends the stream after IDLE ms of silence, keeping the bytes (abandon)', async () => {
    const { session, outcome, chunk } = start();
    await vi.advanceTimersByTimeAsync(IDLE - 1);
    chunk(0);
    await vi.advanceTimersByTimeAsync(IDLE - 1);
    expect(outcome.settled).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(outcome).toMatchObject({ settled: 'rejected', err: expect.objectContaining({ code: 'DEADLINE_EXCEEDED', message: expect.stringMatching(/the 10 of 100 bytes received are kept/) }) });
    expect(outcome.err).toBeInstanceOf(AuraeError);
    expect(session.abandon).toHaveBeenCalledOnce();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('is stopped on every other end: done, cancel, a stream error, a refused message', async () => {
    const done = start();
    done.chunk(0);
    done.call.emit('end');
    await vi.advanceTimersByTimeAsync(0);
    expect(done.outcome.settled).toBe('resolved');
    expect(vi.getTimerCount()).toBe(0);
    // The slot write takes as long as it takes: no idle end once the caller half-closed.
    await vi.advanceTimersByTimeAsync(10 * IDLE);
    expect(done.session.abandon).not.toHaveBeenCalled();

    for (const end of [(s: ReturnType<typeof start>) => s.call.emit('cancelled'), (s: ReturnType<typeof start>) => s.call.emit('error', new Error('reset')), (s: ReturnType<typeof start>) => s.call.emit('data', {})]) {
      const s = start();
      expect(vi.getTimerCount()).toBe(1);
      end(s);
      await vi.advanceTimersByTimeAsync(0);
      expect(s.outcome.settled).toBe('rejected');
      expect(s.session.abandon).toHaveBeenCalledOnce();
      expect(vi.getTimerCount()).toBe(0);
    }
  });
});

describe('upgrade.uploadIdleMs (node config)', () => {
  const base = { version: 1, node: { name: 'n1' }, pki: { caCert: '/ca.pem', serverCert: '/s.pem', serverKey: '/s.key' } };
  it('defaults to 60 s, allows 1 s to 1 h, and names the field otherwise', () => {
    expect(parseNodeConfig(base, 'test').upgrade.uploadIdleMs).toBe(60_000);
    expect(parseNodeConfig({ ...base, upgrade: { uploadIdleMs: 5_000 } }, 'test').upgrade.uploadIdleMs).toBe(5_000);
    for (const bad of [999, 3_600_001, 1500.5, '60000']) {
      expect(() => parseNodeConfig({ ...base, upgrade: { uploadIdleMs: bad } }, 'test')).toThrow(/\n {2}upgrade\.uploadIdleMs: /);
    }
  });
});

describe('UpgradeService/Rollback and Status', () => {
  it('after an upgrade that booted and was blessed, Rollback makes the old release boot next under a new id', async () => {
    const release = writeTestRelease(join(tmp, 'release'), '0.2.0', trusted, { uki: 100, kernel: 100, initramfs: 100 });
    await api.upload(releaseFromDir(release.dir));
    // The reboot: systemd-boot counts one try and boots the new entry; init blesses it (slots.ts planBless).
    const counted = 'aurae-000002-0.2.0+2-1.efi';
    writeFileSync(join(entriesDir(), counted), readFileSync(join(entriesDir(), 'aurae-000002-0.2.0+3.efi')));
    rmSync(join(entriesDir(), 'aurae-000002-0.2.0+3.efi'));
    booted = { entrySelected: 'aurae-000002-0.2.0.efi', bootCountPath: `\\EFI\\Linux\\${counted}` };
    const bless = planBless(booted.bootCountPath)!;
    writeFileSync(join(esp, bless.to), readFileSync(join(esp, bless.from)));
    rmSync(join(esp, bless.from));

    const s = await api.status();
    expect(s).toMatchObject({ slotted: true, running: 'aurae-000002-0.2.0', bootsNext: 'aurae-000002-0.2.0', lastRollback: null });
    expect(s.entries.map((e) => [e.id, e.triesLeft, e.running, e.bootsNext])).toEqual([
      ['aurae-000002-0.2.0', null, true, true],
      ['aurae-000001-0.1.0', null, false, false],
    ]);
    expect(s.signingCerts).toEqual([expect.objectContaining({ subject: 'CN=Aurae image signing (test)', fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/) })]);

    trace = [];
    const r = await api.rollback();
    expect(r.from).toBe('aurae-000002-0.2.0');
    expect(r.bootsNext).toMatchObject({ id: 'aurae-000003-0.1.0', version: '0.1.0', triesLeft: 3, bootsNext: true });
    expect(ls()).toEqual(
      ['aurae-000002-0.2.0.efi', 'aurae-000002-0.2.0.initramfs', 'aurae-000002-0.2.0.json', 'aurae-000002-0.2.0.json.sig', 'aurae-000002-0.2.0.vmlinuz',
        'aurae-000003-0.1.0+3.efi', 'aurae-000003-0.1.0.initramfs', 'aurae-000003-0.1.0.json', 'aurae-000003-0.1.0.json.sig', 'aurae-000003-0.1.0.vmlinuz'].sort(),
    );
    expect(trace.slice(-3)).toEqual([
      ['rename', 'EFI/Linux/aurae-000001-0.1.0.efi', 'EFI/Linux/aurae-000003-0.1.0+3.efi'],
      ['fsync-renamed', 'EFI/Linux/aurae-000003-0.1.0+3.efi'],
      ['fsync-dir', 'EFI/Linux'],
    ]);
    expect((await api.status()).lastRollback).toEqual({ from: 'aurae-000002-0.2.0', to: 'aurae-000003-0.1.0', reason: 'rolled back by admin (UpgradeService/Rollback)', at: 1_700_000_000_000, by: 'admin' });
  });

  it('Rollback without another entry is FAILED_PRECONDITION', async () => {
    await expect(api.rollback()).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', details: expect.stringMatching(/no other boot entry/) });
  });

  it('Status names a rollback by boot counting: a newer entry out of tries while an older one runs', async () => {
    writeTestSlot(esp, { generation: 2, version: '0.2.0', triesLeft: 0, triesDone: 3 });
    const s = await api.status();
    expect(s.lastRollback).toMatchObject({ from: 'aurae-000002-0.2.0', to: 'aurae-000001-0.1.0', reason: expect.stringMatching(/aurae-000002-0.2.0 was booted 3 time\(s\) without being blessed/) });
    expect(s.entries.find((e) => e.id === 'aurae-000002-0.2.0')).toMatchObject({ triesLeft: 0, triesDone: 3, bootsNext: false });
  });
});

describe('Upload header validation', () => {
  const header = (over: Partial<{ manifest: Buffer; signature: Buffer; totalSize: bigint }> = {}) => ({
    header: { manifest: Buffer.from(JSON.stringify({ format: 'aurae-release/1', version: '0.2.0', files: [{ role: 'uki', name: 'a.efi', size: 5, sha256: 'a'.repeat(64) }, { role: 'kernel', name: 'k', size: 1, sha256: 'b'.repeat(64) }, { role: 'initramfs', name: 'i', size: 1, sha256: 'c'.repeat(64) }] })), signature: Buffer.alloc(256), totalSize: 7n, ...over },
  });
  it('names the field', () => {
    expect(validateUploadHeader(header()).manifest.version).toBe('0.2.0');
    expect(() => validateUploadHeader({})).toThrow(/^header: required in the first message/);
    expect(() => validateUploadHeader({ ...header(), chunk: { offset: 0n, data: Buffer.alloc(1) } })).toThrow(/^chunk: not allowed in the first message/);
    expect(() => validateUploadHeader(header({ totalSize: 8n }))).toThrow(/^header\.total_size: 8, but the manifest's files add up to 7 bytes/);
    expect(() => validateUploadHeader(header({ totalSize: 0n }))).toThrow(/^header\.total_size: 0 is out of range/);
    expect(() => validateUploadHeader(header({ manifest: Buffer.from('{') }))).toThrow(/^header\.manifest: not valid JSON/);
    expect(() => validateUploadHeader(header({ manifest: Buffer.from(JSON.stringify({ format: 'aurae-release/1', version: '1-2', files: [] })) }))).toThrow(
      /^header\.manifest\.version: expected 1\.\.64 letters.*; manifest\.files: /,
    );
    expect(() => validateUploadHeader(header({ signature: Buffer.alloc(4096) }))).toThrow(/^header\.signature: 4096 bytes: at most 2048/);
  });
});

describe('authorization', () => {
  it('Upload and Rollback are admin-only whatever the rules say; Status is a read rules may grant', () => {
    const policy: Policy = { admins: new Set(['admin']), open: OPEN_METHODS, adminOnly: ADMIN_ONLY_METHODS, rules: [{ identity: 'ops', effect: 'allow', pattern: '*', source: 'config' }] };
    for (const m of ['Upload', 'Rollback']) {
      const d = decide(policy, 'ops', `aurae.upgrade.v0.UpgradeService/${m}`);
      expect(d).toMatchObject({ allowed: false, reason: 'admin-only' });
      expect(denialMessage('ops', `aurae.upgrade.v0.UpgradeService/${m}`, d as never)).toMatch(/only identities in authz\.admins \(node config\) may change the node's boot image/);
      expect(decide(policy, 'admin', `aurae.upgrade.v0.UpgradeService/${m}`)).toMatchObject({ allowed: true });
    }
    expect(decide(policy, 'ops', 'aurae.upgrade.v0.UpgradeService/Status')).toMatchObject({ allowed: true });
  });
});
