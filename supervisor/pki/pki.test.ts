import { X509Certificate, createPrivateKey } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PkiError, caPathLength, createCa, createIntermediateCa, ensurePki, issueClientCert, issueServerCert, pkiFiles, recertifyCa, serverCertSans } from './index';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const scratch = mkdtempSync(join(tmpdir(), 'aurae-pki-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** `openssl verify`; returns its exit status and output instead of throwing. */
function opensslVerify(caPem: string, certPem: string, purpose: 'sslserver' | 'sslclient'): { ok: boolean; out: string } {
  const dir = mkdtempSync(join(scratch, 'verify-'));
  writeFileSync(join(dir, 'ca.pem'), caPem);
  writeFileSync(join(dir, 'cert.pem'), certPem);
  try {
    const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', join(dir, 'ca.pem'), join(dir, 'cert.pem')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { ok: true, out };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('certificates', () => {
  it('creates a self-signed P-256 CA limited to signing end-entity certificates', async () => {
    const ca = await createCa('test-ca');
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe('CN=test-ca');
    expect(cert.issuer).toBe('CN=test-ca');
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(cert.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: ca.certPem, encoding: 'utf8' });
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/ecdsa-with-SHA256/);
  });

  it('issues a server certificate with the node SANs and serverAuth, accepted by openssl verify', async () => {
    const ca = await createCa('test-ca');
    const server = await issueServerCert(ca, { nodeName: 'node-1', sans: ['10.0.2.15', 'node-1.example'] });
    const cert = new X509Certificate(server.certPem);
    expect(cert.subject).toBe('CN=node-1');
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toEqual([SERVER_AUTH]);
    expect(cert.checkHost('node-1')).toBe('node-1');
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkHost('node-1.example')).toBe('node-1.example');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkIP('::1')).toBe('::1');
    expect(cert.checkIP('10.0.2.15')).toBe('10.0.2.15');
    expect(cert.checkHost('other')).toBeUndefined();
    expect(cert.checkPrivateKey(createPrivateKey(server.keyPem))).toBe(true);
    expect(opensslVerify(ca.certPem, server.certPem, 'sslserver')).toEqual({ ok: true, out: expect.stringContaining('OK') });
    // The EKU restricts it: it must not pass as a client certificate.
    expect(opensslVerify(ca.certPem, server.certPem, 'sslclient').ok).toBe(false);
  });

  it('issues a client certificate whose CN is the identity, clientAuth only', async () => {
    const ca = await createCa('test-ca');
    const client = await issueClientCert(ca, { identity: 'admin' });
    const cert = new X509Certificate(client.certPem);
    expect(cert.subject).toBe('CN=admin');
    expect(cert.keyUsage).toEqual([CLIENT_AUTH]);
    expect(cert.subjectAltName).toBeUndefined();
    expect(opensslVerify(ca.certPem, client.certPem, 'sslclient').ok).toBe(true);
    expect(opensslVerify(ca.certPem, client.certPem, 'sslserver').ok).toBe(false);
  });

  it('a certificate from another CA does not verify', async () => {
    const ca = await createCa('test-ca');
    const other = await createCa('other-ca');
    const client = await issueClientCert(other, { identity: 'admin' });
    const result = opensslVerify(ca.certPem, client.certPem, 'sslclient');
    expect(result.ok).toBe(false);
    expect(result.out).toMatch(/unable to get local issuer certificate/);
  });

  it('lists SANs in a fixed order without duplicates and rejects junk', () => {
    expect(serverCertSans('localhost', ['127.0.0.1', 'a.b'])).toEqual([
      { type: 'dns', value: 'localhost' },
      { type: 'ip', value: '127.0.0.1' },
      { type: 'ip', value: '::1' },
      { type: 'dns', value: 'a.b' },
    ]);
    expect(() => serverCertSans('node', ['not a name'])).toThrow(/neither an IP address nor a DNS name/);
  });

  it('rejects identities that are empty, too long or contain control characters', async () => {
    const ca = await createCa('test-ca');
    for (const identity of ['', ' admin', 'a'.repeat(65), 'ad\nmin']) {
      await expect(issueClientCert(ca, { identity })).rejects.toThrow(PkiError);
    }
  });

  it('refuses to sign with something that is not a CA', async () => {
    const ca = await createCa('test-ca');
    const client = await issueClientCert(ca, { identity: 'admin' });
    await expect(issueClientCert(client, { identity: 'x' })).rejects.toThrow(/is not a CA/);
  });
});

describe('ensurePki', () => {
  const snapshot = (dir: string) => Object.fromEntries(Object.entries(pkiFiles(dir)).map(([k, p]) => [k, readFileSync(p, 'utf8')]));

  it('creates the eight files (spawn CA included), keys 0600, and reuses them byte for byte on the next run', async () => {
    const dir = join(scratch, 'pki-1');
    const first = await ensurePki(dir, { nodeName: 'node-1' });
    expect(first.actions).toEqual({
      ca: { action: 'create', reason: 'missing' },
      node: { action: 'create', reason: 'new CA' },
      admin: { action: 'create', reason: 'new CA' },
      spawnCa: { action: 'create', reason: 'missing' },
    });
    const files = pkiFiles(dir);
    expect(readdirSync(dir).sort()).toEqual(['admin.crt', 'admin.key', 'ca.crt', 'ca.key', 'node.crt', 'node.key', 'spawn-ca.crt', 'spawn-ca.key']);
    for (const key of [files.caKey, files.nodeKey, files.adminKey, files.spawnCaKey]) expect(statSync(key).mode & 0o777).toBe(0o600);
    for (const cert of [files.caCert, files.nodeCert, files.adminCert, files.spawnCaCert]) expect(statSync(cert).mode & 0o777).toBe(0o644);
    const before = snapshot(dir);
    expect(opensslVerify(before.caCert!, before.nodeCert!, 'sslserver').ok).toBe(true);
    expect(opensslVerify(before.caCert!, before.adminCert!, 'sslclient').ok).toBe(true);

    const second = await ensurePki(dir, { nodeName: 'node-1' });
    expect(Object.values(second.actions).map((a) => a.action)).toEqual(['reuse', 'reuse', 'reuse', 'reuse']);
    expect(snapshot(dir)).toEqual(before);
  });

  it('reissues only what no longer fits: a renamed node, a lost admin key', async () => {
    const dir = join(scratch, 'pki-2');
    await ensurePki(dir, { nodeName: 'node-1' });
    const before = snapshot(dir);

    const renamed = await ensurePki(dir, { nodeName: 'node-2' });
    expect(renamed.actions.node).toEqual({ action: 'create', reason: 'not valid for node name "node-2"' });
    expect(renamed.actions.admin.action).toBe('reuse');
    const after = snapshot(dir);
    expect(after.caCert).toBe(before.caCert);
    expect(after.adminCert).toBe(before.adminCert);
    expect(new X509Certificate(after.nodeCert!).checkHost('node-2')).toBe('node-2');

    unlinkSync(pkiFiles(dir).adminKey);
    const relost = await ensurePki(dir, { nodeName: 'node-2' });
    expect(relost.actions.admin).toEqual({ action: 'create', reason: `${pkiFiles(dir).adminKey} missing` });
    expect(relost.actions.node.action).toBe('reuse');
  });

  it('reissues a leaf that is not from the current CA, and tightens a key left world-readable', async () => {
    const dir = join(scratch, 'pki-3');
    await ensurePki(dir, { nodeName: 'node-1' });
    const stranger = await issueClientCert(await createCa('other'), { identity: 'admin' });
    writeFileSync(pkiFiles(dir).adminCert, stranger.certPem);
    writeFileSync(pkiFiles(dir).adminKey, stranger.keyPem, { mode: 0o644 });
    const result = await ensurePki(dir, { nodeName: 'node-1' });
    expect(result.actions.admin).toEqual({ action: 'create', reason: 'not issued by the current CA' });
    expect(statSync(pkiFiles(dir).adminKey).mode & 0o777).toBe(0o600);
  });

  it('never replaces a half-present CA: it says which file to restore', async () => {
    const dir = join(scratch, 'pki-4');
    await ensurePki(dir, { nodeName: 'node-1' });
    unlinkSync(pkiFiles(dir).caKey);
    await expect(ensurePki(dir, { nodeName: 'node-1' })).rejects.toThrow(
      `found ${pkiFiles(dir).caCert} but not ${pkiFiles(dir).caKey}: restore`,
    );
  });

  it('spawn CA: reused while valid, recreated for another maxDepth, none for maxDepth 0', async () => {
    const dir = join(scratch, 'pki-5');
    await ensurePki(dir, { nodeName: 'node-1' });
    const before = snapshot(dir);
    expect(caPathLength(before.caCert!)).toBeUndefined();
    expect(caPathLength(before.spawnCaCert!)).toBe(1);
    const deeper = await ensurePki(dir, { nodeName: 'node-1', maxDepth: 3 });
    expect(deeper.actions.spawnCa).toEqual({ action: 'create', reason: 'pathLenConstraint is 1, want 2 (vms.maxDepth 3)' });
    expect(caPathLength(readFileSync(pkiFiles(dir).spawnCaCert, 'utf8'))).toBe(2);
    const none = await ensurePki(dir, { nodeName: 'node-1', maxDepth: 0 });
    expect(none.actions.spawnCa.action).toBe('none');
  });

  it('re-certifies a pathLen-0 root made before spawn CAs with the same key: old certificates still verify', async () => {
    const dir = join(scratch, 'pki-6');
    const files = pkiFiles(dir);
    const old = await createCa('aurae-ca old'); // pathLength 0, as every root used to be
    mkdirSync(dir, { recursive: true });
    writeFileSync(files.caCert, old.certPem);
    writeFileSync(files.caKey, old.keyPem, { mode: 0o600 });
    const node = await issueServerCert(old, { nodeName: 'node-1' });
    writeFileSync(files.nodeCert, node.certPem);
    writeFileSync(files.nodeKey, node.keyPem, { mode: 0o600 });
    // Why: with the old root a spawn CA's chain fails openssl's path length check.
    const spawnUnderOld = await createIntermediateCa(old, { name: 'spawn', pathLength: 0 }).catch((e: Error) => e);
    expect(spawnUnderOld).toBeInstanceOf(PkiError);

    const result = await ensurePki(dir, { nodeName: 'node-1' });
    expect(result.actions.ca.action).toBe('recertify');
    expect(result.actions.node.action).toBe('reuse');
    const after = snapshot(dir);
    expect(after.caKey).toBe(old.keyPem);
    expect(caPathLength(after.caCert!)).toBeUndefined();
    expect(opensslVerify(after.caCert!, node.certPem, 'sslserver').ok).toBe(true);
    const child = await issueServerCert({ certPem: after.spawnCaCert!, keyPem: after.spawnCaKey! }, { nodeName: 'web.node-1', commonName: 'node-1/web', loopback: false });
    expect(opensslVerify(after.caCert! + after.spawnCaCert!, child.certPem, 'sslserver').ok).toBe(true);
    expect(opensslVerify(old.certPem + after.spawnCaCert!, child.certPem, 'sslserver')).toMatchObject({ ok: false, out: expect.stringMatching(/path length/) });
    // Idempotent: the next run reuses everything.
    const again = await ensurePki(dir, { nodeName: 'node-1' });
    expect(Object.values(again.actions).map((a) => a.action)).toEqual(['reuse', 'reuse', 'reuse', 'reuse']);
    expect(snapshot(dir)).toEqual(after);
    expect((await recertifyCa(old)).keyPem).toBe(old.keyPem);
  });
});
