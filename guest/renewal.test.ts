// Short-lived child identities, attacked and renewed over real TLS and gRPC on loopback: a child (aurae/web)
// served by auraed's own pieces (reloadable credentials, NodeService/RenewIdentity, the issuer check), its
// parent's renewer and router (supervisor/vms), certificates minted by guest/. Clocks are faked by minting
// certificates "days ago" and by the renewer's `now`, never by waiting.
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { Metadata, type ServiceError, credentials, status } from '@grpc/grpc-js';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostPki, useTrustBed } from './testing';
import { createAuthz, createAuthzStore } from '../supervisor/authz';
import { HealthClient } from '../supervisor/gen/grpc/health/v1/health';
import { NodeServiceClient, NodeServiceService } from '../supervisor/gen/aurae/node/v0/node';
import { HealthRegistry, HealthService, createHealthService } from '../supervisor/health';
import { silentLogger } from '../supervisor/log';
import { type NodeIdentity, createNodeIdentity, createNodeService } from '../supervisor/node';
import { CHILD_VALIDITY_DAYS, type CertificateAuthority, issueClientCert, issuerChainPem, splitPemCertificates } from '../supervisor/pki';
import { pemFingerprint } from '../supervisor/pki/node-subtree';
import { type RpcContext, type RunningServer, createIssuerCheck, mtlsServerCredentials, startServer } from '../supervisor/server';
import { openDatabase } from '../supervisor/store';
import { createChildCertRenewer } from '../supervisor/vms/cert-renewal';
import { createChildRouter } from '../supervisor/vms/vm-host';
import { type ChildIdentity, mintChildIdentity, mintParentClientCert, renewChildIdentity } from './index';

const DAY_MS = 86_400_000;
const { scratch, servers, clients } = useTrustBed('aurae-renewal-test-');

const read = (path: string) => readFileSync(path, 'utf8');
const daysAgo = (days: number) => new Date(Date.now() - days * DAY_MS);
let root: CertificateAuthority;
let rootSpawnCa: CertificateAuthority;
let admin: { certPem: string; keyPem: string };
const parent = () => ({ nodePath: 'aurae', spawnCa: rootSpawnCa });

beforeAll(async () => {
  ({ root, rootSpawnCa, admin } = await hostPki(join(scratch, 'pki')));
});

/** aurae/web as auraed serves it: mTLS with reloadable credentials, Health, and NodeService with its identity. */
async function childNode(identity: ChildIdentity): Promise<{ address: string; server: RunningServer; identity: NodeIdentity; dir: string; renewed: Array<string | null> }> {
  const dir = mkdtempSync(join(scratch, 'web-'));
  const creds = mtlsServerCredentials({ ca: Buffer.from(root.certPem), cert: Buffer.from(identity.serverCertChainPem), key: Buffer.from(identity.serverKeyPem) });
  const renewed: Array<string | null> = [];
  const nodeIdentity = createNodeIdentity({
    nodePath: identity.nodePath,
    rootCaPem: root.certPem,
    serverCertChainPem: identity.serverCertChainPem,
    spawnCaCertPem: identity.spawnCa?.certPem ?? null,
    paths: { serverCert: join(dir, 'node.crt'), serverKey: join(dir, 'node.key'), spawnCaCert: join(dir, 'spawn-ca.crt') },
    credentials: creds,
    onRenewed: (spawnCa) => void renewed.push(spawnCa),
    log: silentLogger,
  });
  const db = openDatabase(':memory:');
  const authz = createAuthz({ admins: ['admin'], configRules: [], store: createAuthzStore(db, { auditMaxRecords: 100 }), log: silentLogger, nodePath: identity.nodePath });
  const ctx: RpcContext = {
    log: silentLogger,
    admins: new Set(['admin']),
    authz,
    parentIdentity: identity.nodePath.slice(0, identity.nodePath.lastIndexOf('/')),
    issuerOf: createIssuerCheck(root.certPem, splitPemCertificates(identity.serverCertChainPem)[1]!),
  };
  const registry = new HealthRegistry();
  registry.set('', 'SERVING');
  const server = await startServer({
    credentials: creds,
    targets: [{ kind: 'tcp', address: '127.0.0.1:0' }],
    services: [
      { definition: HealthService, implementation: createHealthService(ctx, registry) },
      { definition: NodeServiceService, implementation: createNodeService(ctx, { request: async () => undefined }, nodeIdentity) as never },
    ],
    log: silentLogger,
  });
  servers.push(server);
  return { address: server.tcp!, server, identity: nodeIdentity, dir, renewed };
}

/** The fingerprint of the certificate a NEW TLS connection to `address` is served. */
function servedFingerprint(address: string): Promise<string> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, servername: 'web.aurae', ca: root.certPem, cert: admin.certPem, key: admin.keyPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.destroy();
      resolve(createHash('sha256').update(raw).digest('hex'));
    });
    socket.once('error', reject);
  });
}

/** The parent's router to aurae/web at `address`, whose run booted with `runCertPem`, with the renewer's pins. */
function routerTo(address: string, runCertPem: string, pinsFor?: (label: string, run: string) => string[]) {
  return createChildRouter({
    nodePath: 'aurae',
    runtime: { route: () => ({ address, tlsName: 'web.aurae', nodePath: 'aurae/web', serverCertPem: runCertPem }) },
    rootCaPem: root.certPem,
    mintClientCert: () => mintParentClientCert(parent()),
    ...(pinsFor ? { pinsFor } : {}),
    log: silentLogger,
  });
}

async function healthVia(router: ReturnType<typeof createChildRouter>): Promise<ServiceError | null> {
  try {
    const client = await router.clientFor('web');
    const health = new HealthClient('ignored', credentials.createInsecure(), { channelOverride: client.getChannel() });
    return await new Promise((resolve) => health.check({ service: '' }, new Metadata(), { deadline: Date.now() + 5000 }, (err) => resolve(err)));
  } catch (err) {
    return err as ServiceError;
  }
}

/** RenewIdentity called straight at the child with `as`'s certificate (an attacker, or an admin). */
function renewAs(address: string, as: { certChainPem: string; keyPem: string }, request: { serverCertChain: string; serverKey: string; spawnCaCert: string }): Promise<ServiceError | null> {
  const client = new NodeServiceClient(address, credentials.createSsl(Buffer.from(root.certPem), Buffer.from(as.keyPem), Buffer.from(as.certChainPem)), {
    'grpc.ssl_target_name_override': 'web.aurae',
    'grpc.default_authority': 'web.aurae',
  });
  clients.push(client);
  return new Promise((resolve) => client.renewIdentity(request, new Metadata(), { deadline: Date.now() + 5000 }, (err) => resolve(err)));
}

describe('children are short-lived', () => {
  it(`a child's certificate and spawn CA, and the parent's client certificate, live ${CHILD_VALIDITY_DAYS} days`, async () => {
    const web = await mintChildIdentity(parent(), 'web', 2);
    const days = (pem: string) => {
      const cert = new X509Certificate(pem);
      return (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / DAY_MS;
    };
    // notBefore is backdated an hour for clock skew.
    expect(days(web.serverCertChainPem)).toBeCloseTo(CHILD_VALIDITY_DAYS, 1);
    expect(days(web.spawnCa!.certPem)).toBeCloseTo(CHILD_VALIDITY_DAYS, 1);
    expect(days((await mintParentClientCert(parent())).certChainPem)).toBeCloseTo(CHILD_VALIDITY_DAYS, 1);
  });

  it('attack: an expired child certificate is refused by the router, even though it is the pinned one', async () => {
    const expired = await mintChildIdentity(parent(), 'web', 2, { now: daysAgo(CHILD_VALIDITY_DAYS + 1) });
    const { address } = await childNode(expired);
    const router = routerTo(address, expired.serverCertChainPem);
    expect((await healthVia(router))?.code).toBe(status.UNAVAILABLE);
    router.close();
  });

  it("attack: a freed VM's spawn CA is worthless once expired: TLS refuses what it mints, without any revocation list", async () => {
    const dial = async (spawnCa: CertificateAuthority) => {
      const db = await mintChildIdentity({ nodePath: 'aurae/web', spawnCa }, 'db', 1);
      const address = (await childNode(db)).address;
      const client = new HealthClient(address, credentials.createSsl(Buffer.from(root.certPem), Buffer.from(admin.keyPem), Buffer.from(admin.certPem)), {
        'grpc.ssl_target_name_override': 'db.web.aurae',
      });
      clients.push(client);
      return new Promise<ServiceError | null>((resolve) => client.check({ service: '' }, new Metadata(), { deadline: Date.now() + 5000 }, (e) => resolve(e)));
    };
    // The control: a spawn CA inside its validity vouches for db.web.aurae (the pins of parents and children
    // are what refuse it then, see trust.test.ts).
    expect(await dial((await mintChildIdentity(parent(), 'web', 2)).spawnCa!)).toBeNull();
    // aurae/web freed four days ago: whoever kept its spawn CA key mints db.web.aurae for a client to dial.
    const freed = await mintChildIdentity(parent(), 'web', 2, { now: daysAgo(CHILD_VALIDITY_DAYS + 1) });
    expect((await dial(freed.spawnCa!))?.code).toBe(status.UNAVAILABLE);
  });
});

describe('the parent renews a running child without restarting it', () => {
  it('renewed at half-life: served on new connections, written to disk, pinned by the router; the old certificate is refused', async () => {
    const web = await mintChildIdentity(parent(), 'web', 2);
    const child = await childNode(web);
    let now = Date.now();
    let router: ReturnType<typeof createChildRouter> | null = null;
    const renewer = createChildCertRenewer({
      runningChildren: () => ['web'],
      runCertOf: () => web.serverCertChainPem,
      mint: (label, spawnCa) => renewChildIdentity(parent(), label, spawnCa),
      send: async (label, renewal) => {
        const client = new NodeServiceClient('ignored', credentials.createInsecure(), { channelOverride: (await router!.clientFor(label)).getChannel() });
        await new Promise<void>((resolve, reject) =>
          client.renewIdentity(
            { serverCertChain: renewal.serverCertChainPem, serverKey: renewal.serverKeyPem, spawnCaCert: renewal.spawnCaCertPem ?? '' },
            new Metadata(),
            { deadline: Date.now() + 5000 },
            (err) => (err ? reject(err) : resolve()),
          ),
        );
      },
      now: () => now,
      log: silentLogger,
      checkEveryMs: 0,
    });
    renewer.minted('web', web.serverCertChainPem, web.spawnCa!.certPem);
    router = routerTo(child.address, web.serverCertChainPem, (label, run) => renewer.pinsFor(label, run));
    expect(await healthVia(router)).toBeNull();

    // Before half-life nothing happens.
    await renewer.check();
    expect(child.renewed).toEqual([]);
    expect(await servedFingerprint(child.address)).toBe(pemFingerprint(web.serverCertChainPem));

    now += (CHILD_VALIDITY_DAYS / 2) * DAY_MS + 60_000;
    await renewer.check();
    expect(child.renewed).toHaveLength(1);
    const [renewedPin] = renewer.pinsFor('web', web.serverCertChainPem);
    expect(renewedPin).not.toBe(pemFingerprint(web.serverCertChainPem));
    // The same server (never restarted) serves the renewed certificate to new connections.
    expect(servers).toContain(child.server);
    expect(await servedFingerprint(child.address)).toBe(renewedPin);
    expect(pemFingerprint(read(join(child.dir, 'node.crt')))).toBe(renewedPin);
    expect(statSync(join(child.dir, 'node.key')).mode & 0o777).toBe(0o600);
    // The spawn CA came back re-certified: same key, new certificate.
    const spawnCa = child.renewed[0]!;
    expect(spawnCa).not.toBe(web.spawnCa!.certPem);
    expect(read(join(child.dir, 'spawn-ca.crt'))).toBe(spawnCa);
    // The router follows: a new client to the renewed pin answers.
    expect(await healthVia(router)).toBeNull();
    router.close();

    // Attack: whoever kept the old certificate and key listens where the router goes: refused after renewal.
    const impostor = await childNode(web);
    const stale = routerTo(impostor.address, web.serverCertChainPem, (label, run) => renewer.pinsFor(label, run));
    expect((await healthVia(stale))?.code).toBe(status.UNAVAILABLE);
    stale.close();
  });

  it('grandchildren keep verifying: a renewal minted from the re-certified spawn CA (same key) is accepted by aurae/web/db', async () => {
    const web = await mintChildIdentity(parent(), 'web', 2);
    const db = await mintChildIdentity({ nodePath: 'aurae/web', spawnCa: web.spawnCa! }, 'db', 1);
    const renewedWeb = await renewChildIdentity(parent(), 'web', web.spawnCa!.certPem);
    const webSpawnCa = { certPem: renewedWeb.spawnCaCertPem!, keyPem: web.spawnCa!.keyPem };
    const reloads: string[] = [];
    const dbIdentity = createNodeIdentity({
      nodePath: 'aurae/web/db',
      rootCaPem: root.certPem,
      serverCertChainPem: db.serverCertChainPem,
      spawnCaCertPem: null,
      paths: { serverCert: join(scratch, 'db.crt'), serverKey: join(scratch, 'db.key'), spawnCaCert: null },
      credentials: { reload: (pki) => void reloads.push(pki.cert.toString()) },
      onRenewed: () => undefined,
      log: silentLogger,
    });
    const renewedDb = await renewChildIdentity({ nodePath: 'aurae/web', spawnCa: webSpawnCa }, 'db', null);
    expect(renewedDb.serverCertChainPem).toContain(splitPemCertificates(webSpawnCa.certPem)[0]!.trim());
    expect(dbIdentity.renew({ serverCertChainPem: renewedDb.serverCertChainPem, serverKeyPem: renewedDb.serverKeyPem, spawnCaCertPem: '' }).notAfter).toMatch(/^\d{4}-/);
    expect(reloads).toEqual([renewedDb.serverCertChainPem]);
  });
});

describe('attacks on RenewIdentity', () => {
  it('only the parent may call it: an admin is PERMISSION_DENIED, a sibling\'s "CN=aurae" UNAUTHENTICATED; nothing changes', async () => {
    const web = await mintChildIdentity(parent(), 'web', 2);
    const other = await mintChildIdentity(parent(), 'other', 2);
    const child = await childNode(web);
    // What the attacker wants the child to serve: a certificate it holds the key of (minted by a sibling's CA).
    const mine = await issueClientCert(other.spawnCa!, { identity: 'x' });
    const request = { serverCertChain: mine.certPem, serverKey: mine.keyPem, spawnCaCert: '' };
    expect(await renewAs(child.address, { certChainPem: admin.certPem, keyPem: admin.keyPem }, request)).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: expect.stringMatching(/only this node's parent may renew the certificate it serves/),
    });
    const forgedParent = await issueClientCert(other.spawnCa!, { identity: 'aurae' });
    expect(await renewAs(child.address, { certChainPem: forgedParent.certPem + issuerChainPem(other.spawnCa!.certPem), keyPem: forgedParent.keyPem }, request)).toMatchObject({
      code: status.UNAUTHENTICATED,
    });
    expect(child.renewed).toEqual([]);
    expect(await servedFingerprint(child.address)).toBe(pemFingerprint(web.serverCertChainPem));
  });

  it('even from the parent, a certificate for another node, an expired one, or a re-keyed spawn CA is refused', async () => {
    const web = await mintChildIdentity(parent(), 'web', 2);
    const child = await childNode(web);
    const asParent = await mintParentClientCert(parent());
    const good = await renewChildIdentity(parent(), 'web', web.spawnCa!.certPem);
    const forOther = await renewChildIdentity(parent(), 'other', null);
    const expired = await renewChildIdentity(parent(), 'web', web.spawnCa!.certPem, { now: daysAgo(CHILD_VALIDITY_DAYS + 1) });
    const rekeyed = await mintChildIdentity(parent(), 'web', 2);
    const cases: Array<[string, { serverCertChain: string; serverKey: string; spawnCaCert: string }, RegExp]> = [
      ['another node', { serverCertChain: forOther.serverCertChainPem, serverKey: forOther.serverKeyPem, spawnCaCert: good.spawnCaCertPem! }, /not this node/],
      ['expired', { serverCertChain: expired.serverCertChainPem, serverKey: expired.serverKeyPem, spawnCaCert: good.spawnCaCertPem! }, /expired/],
      ['key of another certificate', { serverCertChain: good.serverCertChainPem, serverKey: forOther.serverKeyPem, spawnCaCert: good.spawnCaCertPem! }, /does not belong/],
      ['re-keyed spawn CA', { serverCertChain: good.serverCertChainPem, serverKey: good.serverKeyPem, spawnCaCert: rekeyed.spawnCa!.certPem }, /another key/],
      ['spawn CA dropped', { serverCertChain: good.serverCertChainPem, serverKey: good.serverKeyPem, spawnCaCert: '' }, /spawn_ca_cert missing/],
    ];
    for (const [, request, why] of cases) {
      expect(await renewAs(child.address, asParent, request)).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(why) });
    }
    expect(child.renewed).toEqual([]);
    expect(await servedFingerprint(child.address)).toBe(pemFingerprint(web.serverCertChainPem));
    // The well-formed one goes through.
    expect(await renewAs(child.address, asParent, { serverCertChain: good.serverCertChainPem, serverKey: good.serverKeyPem, spawnCaCert: good.spawnCaCertPem! })).toBeNull();
    expect(await servedFingerprint(child.address)).toBe(pemFingerprint(good.serverCertChainPem));
  });
});

describe('a child pins its current parent', () => {
  it("after the parent's own renewal (spawn CA re-certified, same key) the grandchild still takes it; the freed predecessor's CA never", async () => {
    const web = await mintChildIdentity(parent(), 'web', 2);
    const db = await mintChildIdentity({ nodePath: 'aurae/web', spawnCa: web.spawnCa! }, 'db', 1);
    const { address } = await childNode(db);
    const asParentOnBehalfOfAdmin = (as: { certChainPem: string; keyPem: string }) => {
      const client = new HealthClient(address, credentials.createSsl(Buffer.from(root.certPem), Buffer.from(as.keyPem), Buffer.from(as.certChainPem)), {
        'grpc.ssl_target_name_override': 'db.web.aurae',
        'grpc.default_authority': 'db.web.aurae',
      });
      clients.push(client);
      const md = new Metadata();
      md.set('aurae-on-behalf-of', 'admin');
      return new Promise<ServiceError | null>((resolve) => client.check({ service: '' }, md, { deadline: Date.now() + 5000 }, (err) => resolve(err)));
    };
    const renewed = await renewChildIdentity(parent(), 'web', web.spawnCa!.certPem);
    const webAfterRenewal = { certPem: renewed.spawnCaCertPem!, keyPem: web.spawnCa!.keyPem };
    expect(await asParentOnBehalfOfAdmin(await mintParentClientCert({ nodePath: 'aurae/web', spawnCa: webAfterRenewal }))).toBeNull();
    // aurae/web freed and spawned again before db was: the old incarnation's spawn CA (a valid chain to the
    // root, the right CN) is not the key db pinned.
    const predecessor = await mintChildIdentity(parent(), 'web', 2);
    expect(await asParentOnBehalfOfAdmin(await mintParentClientCert({ nodePath: 'aurae/web', spawnCa: predecessor.spawnCa! }))).toMatchObject({ code: status.UNAUTHENTICATED });
  });
});
