// The trust chain attacked as a compromised child would: its spawn CA key minting certificates for nodes outside
// its subtree, a sibling's or an old incarnation's certificates presented to the parent or to a grandchild.
// Everything runs real TLS on loopback (node:tls and grpc-js), as aer, the SDK and the parent's router do.
import { execFileSync } from 'node:child_process';
import { X509Certificate, webcrypto } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { Metadata, type ServiceError, credentials, status } from '@grpc/grpc-js';
import '../supervisor/pki/reflect-metadata'; // before @peculiar/x509, as supervisor/pki does
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostPki, useTrustBed } from './testing';
import { connect } from '../aer/sdk';
import { HealthClient } from '../supervisor/gen/grpc/health/v1/health';
import { HealthRegistry, HealthService, createHealthService } from '../supervisor/health';
import { silentLogger } from '../supervisor/log';
import {
  type CertificateAuthority,
  caNameConstraints,
  issueClientCert,
  issueServerCert,
  issuerChainPem,
  nodeServerIdentityCheck,
  nodeSubtreeProblem,
  splitPemCertificates,
  verifiedChainProblem,
} from '../supervisor/pki';
import { checkSpawnCaPair } from '../supervisor/pki/ensure-pki';
import { type RpcContext, createIssuerCheck, mtlsServerCredentials, startServer } from '../supervisor/server';
import { createChildRouter } from '../supervisor/vms/vm-host';
import { type ChildIdentity, mintChildIdentity, mintParentClientCert } from './index';

const { scratch, servers, clients } = useTrustBed('aurae-trust-test-');

let root: CertificateAuthority;
let rootSpawnCa: CertificateAuthority;
let node: { certPem: string; keyPem: string };
let admin: { certPem: string; keyPem: string };
/** aurae/web (may spawn), its sibling aurae/other (may spawn), and aurae/web/db. */
let web: ChildIdentity;
let other: ChildIdentity;
let db: ChildIdentity;

beforeAll(async () => {
  ({ root, rootSpawnCa, node, admin } = await hostPki(join(scratch, 'pki')));
  web = await mintChildIdentity({ nodePath: 'aurae', spawnCa: rootSpawnCa }, 'web', 2);
  other = await mintChildIdentity({ nodePath: 'aurae', spawnCa: rootSpawnCa }, 'other', 2);
  db = await mintChildIdentity({ nodePath: 'aurae/web', spawnCa: web.spawnCa! }, 'db', 1);
});

/** What an attacker holding a spawn CA key can sign: any subject and SANs (none at all, too), serverAuth. */
async function forgeServerCert(ca: CertificateAuthority, cn: string, sans: x509.JsonGeneralName[]): Promise<{ certPem: string; keyPem: string }> {
  const forged = await forge(ca, { cn, sans });
  return { certPem: forged.certPem + issuerChainPem(ca.certPem), keyPem: forged.keyPem };
}

/**
 * One certificate signed by `signer` (its first certificate and key), or self-signed with `selfKeyPem` when
 * signer is null: a leaf (serverAuth) or, with `ca`, a CA. AKI/SKI set so `openssl verify -x509_strict` takes it.
 */
async function forge(
  signer: CertificateAuthority | null,
  options: { cn: string; sans?: x509.JsonGeneralName[]; ca?: boolean; selfKeyPem?: string },
): Promise<{ certPem: string; keyPem: string }> {
  const crypto = webcrypto;
  const alg = { name: 'ECDSA', namedCurve: 'P-256' } as const;
  const importKey = async (pem: string, usages: webcrypto.KeyUsage[]) => crypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), alg, true, usages);
  let keys: webcrypto.CryptoKeyPair;
  if (options.selfKeyPem) {
    const privateKey = await importKey(options.selfKeyPem, ['sign']);
    const jwk = await crypto.subtle.exportKey('jwk', privateKey);
    const publicKey = await crypto.subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, alg, true, ['verify']);
    keys = { privateKey, publicKey };
  } else {
    keys = await crypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  }
  const signerCert = signer ? new x509.X509Certificate(splitPemCertificates(signer.certPem)[0]!) : null;
  const signingKey = signer ? await importKey(signer.keyPem, ['sign']) : keys.privateKey;
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: '01',
      subject: [{ CN: [options.cn] }],
      issuer: signerCert ? signerCert.subjectName : [{ CN: [options.cn] }],
      notBefore: new Date(Date.now() - 3600_000),
      notAfter: new Date(Date.now() + 86400_000),
      publicKey: keys.publicKey,
      signingKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        ...(options.ca
          ? [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)]
          : [
              new x509.BasicConstraintsExtension(false, undefined, true),
              new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
              new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
            ]),
        ...(options.sans?.length ? [new x509.SubjectAlternativeNameExtension(options.sans, false)] : []),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        ...(signerCert ? [new x509.AuthorityKeyIdentifierExtension(signerCert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId, false)] : []),
      ],
    },
    crypto,
  );
  const keyPem = x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY') + '\n';
  return { certPem: cert.toString('pem') + '\n', keyPem };
}

/** `openssl verify` of the chain's leaf with only the root trusted. */
function opensslVerify(chainPem: string): { ok: boolean; out: string } {
  const dir = mkdtempSync(join(scratch, 'verify-'));
  const [leaf, ...rest] = splitPemCertificates(chainPem);
  writeFileSync(join(dir, 'ca.crt'), root.certPem);
  writeFileSync(join(dir, 'leaf.crt'), leaf!);
  writeFileSync(join(dir, 'chain.crt'), rest.join('') || root.certPem);
  try {
    const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', join(dir, 'ca.crt'), '-untrusted', join(dir, 'chain.crt'), join(dir, 'leaf.crt')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { ok: true, out };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/**
 * A TLS 1.3 server on loopback presenting `server`; a client trusting only the root connects with `servername`
 * and `check` as checkServerIdentity (default: Node's own). ok once the server's data arrived.
 */
async function handshake(server: { certPem: string; keyPem: string }, servername: string, check?: typeof tls.checkServerIdentity): Promise<{ ok: boolean; error?: string }> {
  const srv = tls.createServer({ cert: server.certPem, key: server.keyPem, minVersion: 'TLSv1.3' }, (socket) => socket.end('hello\n'));
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  try {
    return await new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername, ca: root.certPem, minVersion: 'TLSv1.3', ...(check ? { checkServerIdentity: check } : {}) });
      let data = '';
      socket.on('data', (chunk) => (data += chunk));
      socket.on('error', (err) => resolve({ ok: false, error: err.message }));
      socket.on('end', () => resolve(data === 'hello\n' ? { ok: true } : { ok: false, error: 'closed without data' }));
    });
  } finally {
    await new Promise((resolve) => srv.close(resolve));
  }
}

const subtreeCheck = (host: string, cert: tls.PeerCertificate) => nodeServerIdentityCheck(tls.checkServerIdentity, root.certPem)(host, cert);

describe('spawn CAs carry name constraints', () => {
  it('the root node\'s spawn CA may vouch for *.aurae only, a child\'s for *.web.aurae only, and for no IP', () => {
    expect(caNameConstraints(rootSpawnCa.certPem)).toEqual({ dnsSubtree: 'aurae' });
    expect(caNameConstraints(web.spawnCa!.certPem)).toEqual({ dnsSubtree: 'web.aurae' });
    const text = execFileSync('openssl', ['x509', '-noout', '-ext', 'nameConstraints'], { input: splitPemCertificates(web.spawnCa!.certPem)[0], encoding: 'utf8' });
    expect(text).toMatch(/critical/);
    expect(text).toMatch(/Permitted:\s+DNS:\.web\.aurae/);
    expect(text).toMatch(/Excluded:\s+IP:0\.0\.0\.0\/0\.0\.0\.0\s+IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0/);
  });

  it('the certificates the tree really mints still verify and complete handshakes', async () => {
    expect(opensslVerify(web.serverCertChainPem)).toMatchObject({ ok: true });
    expect(opensslVerify(db.serverCertChainPem)).toMatchObject({ ok: true });
    expect(await handshake({ certPem: web.serverCertChainPem, keyPem: web.serverKeyPem }, 'web.aurae', subtreeCheck)).toEqual({ ok: true });
    expect(await handshake({ certPem: db.serverCertChainPem, keyPem: db.serverKeyPem }, 'db.web.aurae', subtreeCheck)).toEqual({ ok: true });
    expect(await handshake(node, 'aurae', subtreeCheck)).toEqual({ ok: true });
  });

  it('attack: aurae/web\'s spawn CA mints "aurae", "aurae/other", an IP, or its own name: OpenSSL refuses each', async () => {
    const forgeries = [
      await issueServerCert(web.spawnCa!, { nodeName: 'aurae', loopback: false }),
      await issueServerCert(web.spawnCa!, { nodeName: 'other.aurae', commonName: 'aurae/other', loopback: false }),
      await issueServerCert(web.spawnCa!, { nodeName: 'web.aurae', commonName: 'aurae/web', loopback: false }),
      await issueServerCert(web.spawnCa!, { nodeName: 'x.web.aurae', commonName: 'aurae/web/x', sans: ['127.0.0.1'], loopback: false }),
    ].map((c) => ({ certPem: c.certPem + issuerChainPem(web.spawnCa!.certPem), keyPem: c.keyPem }));
    for (const forged of forgeries) {
      expect(opensslVerify(forged.certPem)).toMatchObject({ ok: false, out: expect.stringMatching(/(permitted|excluded) subtree violation/) });
    }
    // As a client reaching "aurae" (aer, the SDK) and "other.aurae" (a router) would: Node's own check alone.
    expect(await handshake(forgeries[0]!, 'aurae')).toMatchObject({ ok: false, error: expect.stringMatching(/subtree violation/) });
    expect(await handshake(forgeries[1]!, 'other.aurae')).toMatchObject({ ok: false, error: expect.stringMatching(/subtree violation/) });
    expect(await handshake(forgeries[2]!, 'web.aurae')).toMatchObject({ ok: false, error: expect.stringMatching(/subtree violation/) });
  });

  it('attack: a certificate with no SAN and CN "aurae" passes OpenSSL (a CN without a dot is no DNS name to it) but not the subtree check', async () => {
    const forged = await forgeServerCert(web.spawnCa!, 'aurae', []);
    expect(opensslVerify(forged.certPem)).toMatchObject({ ok: true });
    // Why the CN check exists: Node's host name check falls back to the CN when there is no DNS SAN.
    expect(await handshake(forged, 'aurae')).toEqual({ ok: true });
    expect(await handshake(forged, 'aurae', subtreeCheck)).toMatchObject({ ok: false, error: expect.stringMatching(/server "aurae" refused: server certificate "aurae" is issued by the spawn CA of "aurae\/web"/) });
    // The same with the root's own spawn CA: it vouches for nodes below "aurae", never for "aurae" itself.
    const byRootSpawnCa = await forgeServerCert(rootSpawnCa, 'aurae', []);
    expect(await handshake(byRootSpawnCa, 'aurae', subtreeCheck)).toMatchObject({ ok: false, error: expect.stringMatching(/vouches only for nodes below "aurae"/) });
  });
});

describe('the chain a client is shown is checked again, by signature', () => {
  it('attack: a CA a spawn CA signs under another name (and a self-signed look-alike of it) vouches for nothing', async () => {
    // The root node's spawn CA (pathLen 1: room for one CA below it) signs a CA "evil" (no spawn CA name),
    // which signs CN=aurae without SANs. OpenSSL verifies leaf → evil → aurae's spawn CA → root. A self-signed
    // "evil" with the same key is sent too: Node links the leaf to whichever "evil" it finds when it builds the
    // chain for checkServerIdentity, so the chain shown may end at the look-alike instead of the root.
    const evil = await forge(rootSpawnCa, { cn: 'evil', ca: true });
    const lookAlike = await forge(null, { cn: 'evil', ca: true, selfKeyPem: evil.keyPem });
    const leaf = await forge(evil, { cn: 'aurae' });
    const results: string[] = [];
    for (const order of [[evil, lookAlike], [lookAlike, evil]]) {
      const sent = { certPem: leaf.certPem + order.map((c) => c.certPem).join('') + issuerChainPem(rootSpawnCa.certPem), keyPem: leaf.keyPem };
      if (!(await handshake(sent, 'aurae')).ok) continue; // OpenSSL itself refused this order
      results.push((await handshake(sent, 'aurae', subtreeCheck)).error ?? 'accepted');
    }
    // At least one order gets through OpenSSL and Node's host name check, and the subtree check refuses each.
    expect(results.length).toBeGreaterThan(0);
    for (const error of results) expect(error).toMatch(/does not end at the trusted root CA|not signed by the next one|CA "evil" is issued by the spawn CA of "aurae"/);
  });

  it('a chain shown ending at a look-alike (Node links issuers by name) is refused: every link is checked by signature to the root', async () => {
    const evil = await forge(rootSpawnCa, { cn: 'evil', ca: true });
    const lookAlike = await forge(null, { cn: 'evil', ca: true, selfKeyPem: evil.keyPem });
    const leaf = await forge(evil, { cn: 'aurae' });
    const shown = [leaf, lookAlike].map((c) => new X509Certificate(c.certPem));
    // The subtree rule alone would stop at the self-signed top and find nothing wrong: why it needs the check.
    expect(nodeSubtreeProblem(shown, 'server', 'aurae')).toBeNull();
    expect(verifiedChainProblem(shown, [new X509Certificate(root.certPem)])).toMatch(/does not end at the trusted root CA/);
    const real = [leaf.certPem, evil.certPem, rootSpawnCa.certPem, root.certPem].map((p) => new X509Certificate(p));
    expect(verifiedChainProblem(real, [new X509Certificate(root.certPem)])).toBeNull();
    expect(verifiedChainProblem([real[0]!, real[2]!, real[3]!], [new X509Certificate(root.certPem)])).toMatch(/is not signed by the next one/);
  });
});

describe('nodeSubtreeProblem', () => {
  const chain = (...pems: string[]) => pems.flatMap((p) => splitPemCertificates(p)).map((p) => new X509Certificate(p)).concat(new X509Certificate(root.certPem));
  it('accepts the tree as minted', async () => {
    expect(nodeSubtreeProblem(chain(web.serverCertChainPem), 'server', 'aurae/web')).toBeNull();
    expect(nodeSubtreeProblem(chain(db.serverCertChainPem), 'server', 'aurae/web/db')).toBeNull();
    expect(nodeSubtreeProblem(chain(node.certPem), 'server', 'aurae')).toBeNull();
    const parent = await mintParentClientCert({ nodePath: 'aurae/web', spawnCa: web.spawnCa! });
    expect(nodeSubtreeProblem(chain(parent.certChainPem), 'client')).toBeNull();
  });
  it('refuses a server named for another node than the one dialled, a client named for anyone but the CA\'s node', async () => {
    expect(nodeSubtreeProblem(chain(db.serverCertChainPem), 'server', 'aurae/web')).toMatch(/names node "aurae\/web\/db", not "aurae\/web"/);
    const asAdmin = await issueClientCert(web.spawnCa!, { identity: 'admin' });
    expect(nodeSubtreeProblem(chain(asAdmin.certPem + issuerChainPem(web.spawnCa!.certPem)), 'client')).toMatch(/vouches only for "aurae\/web" itself/);
  });
});

describe('the SDK (aer) verifies the node, not only the chain', () => {
  async function healthServer(server: { certPem: string; keyPem: string }): Promise<string> {
    const registry = new HealthRegistry();
    registry.set('', 'SERVING');
    const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz: { check: () => null, audit: () => undefined } as never, parentIdentity: null, issuerOf: createIssuerCheck(root.certPem, null) };
    const running = await startServer({
      credentials: mtlsServerCredentials({ ca: Buffer.from(root.certPem), cert: Buffer.from(server.certPem), key: Buffer.from(server.keyPem) }),
      targets: [{ kind: 'tcp', address: '127.0.0.1:0' }],
      services: [{ definition: HealthService, implementation: createHealthService(ctx, registry) }],
      log: silentLogger,
    });
    servers.push(running);
    return running.tcp!;
  }
  function clientConfig(address: string): string {
    const dir = mkdtempSync(join(scratch, 'client-'));
    writeFileSync(join(dir, 'ca.crt'), root.certPem);
    writeFileSync(join(dir, 'admin.crt'), admin.certPem);
    writeFileSync(join(dir, 'admin.key'), admin.keyPem, { mode: 0o600 });
    const path = join(dir, 'client.json');
    writeFileSync(path, JSON.stringify({ version: 1, node: 'aurae', address, ca: 'ca.crt', cert: 'admin.crt', key: 'admin.key' }));
    return path;
  }

  it('attack: a server presenting a spawn-CA-minted "aurae" certificate is refused; the real node is reached', async () => {
    const real = connect({ config: clientConfig(await healthServer(node)), env: {}, timeoutMs: 5000 });
    expect(await real.health.check()).toEqual({ status: 'SERVING' });
    real.close();
    for (const forged of [await forgeServerCert(web.spawnCa!, 'aurae', []), await forgeServerCert(rootSpawnCa, 'aurae', [])]) {
      const fooled = connect({ config: clientConfig(await healthServer(forged)), env: {}, timeoutMs: 5000 });
      await expect(fooled.health.check()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      fooled.close();
    }
  });
});

describe("the parent's router pins the child's current certificate", () => {
  async function childServer(server: { certPem: string; keyPem: string }): Promise<string> {
    const registry = new HealthRegistry();
    registry.set('', 'SERVING');
    const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz: { check: () => null, audit: () => undefined } as never, parentIdentity: 'aurae', issuerOf: createIssuerCheck(root.certPem, rootSpawnCa.certPem) };
    const running = await startServer({
      credentials: mtlsServerCredentials({ ca: Buffer.from(root.certPem), cert: Buffer.from(server.certPem), key: Buffer.from(server.keyPem) }),
      targets: [{ kind: 'tcp', address: '127.0.0.1:0' }],
      services: [{ definition: HealthService, implementation: createHealthService(ctx, registry) }],
      log: silentLogger,
    });
    servers.push(running);
    return running.tcp!;
  }
  const viaRouter = async (address: string, pinnedPem: string): Promise<ServiceError | null> => {
    const router = createChildRouter({
      nodePath: 'aurae',
      runtime: { route: () => ({ address, tlsName: 'web.aurae', nodePath: 'aurae/web', serverCertPem: pinnedPem }) },
      rootCaPem: root.certPem,
      mintClientCert: () => mintParentClientCert({ nodePath: 'aurae', spawnCa: rootSpawnCa }),
      log: silentLogger,
    });
    const client = await router.clientFor('web');
    const health = new HealthClient(address, credentials.createInsecure(), { channelOverride: client.getChannel() });
    try {
      return await new Promise((resolve) => health.check({ service: '' }, new Metadata(), { deadline: Date.now() + 5000 }, (err) => resolve(err)));
    } finally {
      router.close();
    }
  };

  it('the current incarnation answers; an old incarnation of aurae/web (freed, then spawned again) is refused', async () => {
    const old = web;
    const current = await mintChildIdentity({ nodePath: 'aurae', spawnCa: rootSpawnCa }, 'web', 2);
    const address = await childServer({ certPem: current.serverCertChainPem, keyPem: current.serverKeyPem });
    expect(await viaRouter(address, current.serverCertChainPem)).toBeNull();
    // The old child (or whoever kept its key) listens where the router goes: valid chain, right name, not pinned.
    const stale = await childServer({ certPem: old.serverCertChainPem, keyPem: old.serverKeyPem });
    const err = await viaRouter(stale, current.serverCertChainPem);
    expect(err?.code).toBe(status.UNAVAILABLE);
  });

  it('the router mints its client certificate again once half of it is gone, and reconnects with it', async () => {
    const current = await mintChildIdentity({ nodePath: 'aurae', spawnCa: rootSpawnCa }, 'web', 2);
    const address = await childServer({ certPem: current.serverCertChainPem, keyPem: current.serverKeyPem });
    const routerMinting = (issuedDaysAgo: number) => {
      let mints = 0;
      const router = createChildRouter({
        nodePath: 'aurae',
        runtime: { route: () => ({ address, tlsName: 'web.aurae', nodePath: 'aurae/web', serverCertPem: current.serverCertChainPem }) },
        rootCaPem: root.certPem,
        mintClientCert: () => (mints++, mintParentClientCert({ nodePath: 'aurae', spawnCa: rootSpawnCa }, { now: new Date(Date.now() - issuedDaysAgo * 86400_000) })),
        log: silentLogger,
      });
      return { router, mints: () => mints };
    };
    const fresh = routerMinting(0);
    const a = await fresh.router.clientFor('web');
    expect(await fresh.router.clientFor('web')).toBe(a);
    expect(fresh.mints()).toBe(1);
    fresh.router.close();
    const aging = routerMinting(200); // valid a few days (CHILD_VALIDITY_DAYS), 200 gone
    const b = await aging.router.clientFor('web');
    expect(await aging.router.clientFor('web')).not.toBe(b);
    expect(aging.mints()).toBe(2);
    aging.router.close();
  });

  it('attack: a sibling\'s spawn CA minting web.aurae fails the name constraints before the pin is even consulted', async () => {
    const forged = await issueServerCert(other.spawnCa!, { nodeName: 'web.aurae', commonName: 'aurae/web', loopback: false });
    const chainPem = forged.certPem + issuerChainPem(other.spawnCa!.certPem);
    const address = await childServer({ certPem: chainPem, keyPem: forged.keyPem });
    // Even pinned (as if the parent had minted it), the subtree rule refuses it.
    expect((await viaRouter(address, chainPem))?.code).toBe(status.UNAVAILABLE);
  });
});

describe('a child accepts its parent only through the parent\'s current spawn CA', () => {
  // aurae/web/db's server, pinning aurae/web's spawn CA (as auraed does from its chain), and its admin "admin".
  async function dbServer(): Promise<string> {
    const registry = new HealthRegistry();
    registry.set('', 'SERVING');
    const parentSpawnCa = splitPemCertificates(db.serverCertChainPem)[1]!;
    const ctx: RpcContext = {
      log: silentLogger,
      admins: new Set(['admin']),
      authz: { check: () => null, audit: () => undefined } as never,
      parentIdentity: 'aurae/web',
      issuerOf: createIssuerCheck(root.certPem, parentSpawnCa),
    };
    const running = await startServer({
      credentials: mtlsServerCredentials({ ca: Buffer.from(root.certPem), cert: Buffer.from(db.serverCertChainPem), key: Buffer.from(db.serverKeyPem) }),
      targets: [{ kind: 'tcp', address: '127.0.0.1:0' }],
      services: [{ definition: HealthService, implementation: createHealthService(ctx, registry) }],
      log: silentLogger,
    });
    servers.push(running);
    return running.tcp!;
  }
  const callAs = async (address: string, client: { certChainPem: string; keyPem: string }): Promise<ServiceError | null> => {
    const health = new HealthClient(address, credentials.createSsl(Buffer.from(root.certPem), Buffer.from(client.keyPem), Buffer.from(client.certChainPem)), {
      'grpc.ssl_target_name_override': 'db.web.aurae',
      'grpc.default_authority': 'db.web.aurae',
    });
    clients.push(health);
    const md = new Metadata();
    md.set('aurae-on-behalf-of', 'admin');
    return new Promise((resolve) => health.check({ service: '' }, md, { deadline: Date.now() + 5000 }, (err) => resolve(err)));
  };

  it('the real parent may speak for admin; a sibling\'s and an old incarnation\'s "CN=aurae/web" are UNAUTHENTICATED', async () => {
    const address = await dbServer();
    expect(await callAs(address, await mintParentClientCert({ nodePath: 'aurae/web', spawnCa: web.spawnCa! }))).toBeNull();
    // aurae/other's spawn CA signs "CN=aurae/web": it chains to the root, so TLS accepts it; the pin does not.
    const sibling = await issueClientCert(other.spawnCa!, { identity: 'aurae/web' });
    const siblingErr = await callAs(address, { certChainPem: sibling.certPem + issuerChainPem(other.spawnCa!.certPem), keyPem: sibling.keyPem });
    expect(siblingErr).toMatchObject({ code: status.UNAUTHENTICATED });
    // aurae/web freed and spawned again: its new spawn CA mints the parent certificate; db pinned the old one
    // (and vice versa: whoever kept the old key cannot reach the new incarnation's children).
    const respawned = await mintChildIdentity({ nodePath: 'aurae', spawnCa: rootSpawnCa }, 'web', 2);
    const oldErr = await callAs(address, await mintParentClientCert({ nodePath: 'aurae/web', spawnCa: respawned.spawnCa! }));
    expect(oldErr).toMatchObject({ code: status.UNAUTHENTICATED });
    // The parent's spawn CA itself cannot mint other identities: "CN=admin" from it is not the parent.
    const asAdmin = await issueClientCert(web.spawnCa!, { identity: 'admin' });
    expect(await callAs(address, { certChainPem: asAdmin.certPem + issuerChainPem(web.spawnCa!.certPem), keyPem: asAdmin.keyPem })).toMatchObject({ code: status.UNAUTHENTICATED });
  });
});

describe('ensurePki', () => {
  it('replaces a spawn CA made before name constraints', async () => {
    const { createIntermediateCa } = await import('../supervisor/pki');
    const unconstrained = await createIntermediateCa(root, { name: 'aurae-spawn-ca aurae', pathLength: 1 });
    const now = new Date();
    expect(checkSpawnCaPair(unconstrained, root, { now, renewMs: 0, pathLength: 1, nodeName: 'aurae' })).toMatch(/no name constraints/);
    expect(checkSpawnCaPair(rootSpawnCa, root, { now, renewMs: 0, pathLength: 1, nodeName: 'aurae' })).toBeNull();
    expect(checkSpawnCaPair(rootSpawnCa, root, { now, renewMs: 0, pathLength: 1, nodeName: 'node-2' })).toMatch(/permit \.aurae, want \.node-2/);
  });
});
