import { execFileSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseNodeConfig, type NodeConfig } from '../supervisor/config';
import { ensurePki, splitPemCertificates, type PkiFiles } from '../supervisor/pki';
import {
  GUEST_PAYLOAD_FW_CFG,
  GUEST_PAYLOAD_MAX_BYTES,
  GuestError,
  guestPayloadParts,
  unpackGuestPayload,
  buildGuestPayload,
  childPathOf,
  depthLeftOf,
  guestPayloadText,
  guestPkiFiles,
  mintChildIdentity,
  mintParentClientCert,
  nodeDepth,
  nodeLabelOf,
  parentPathOf,
  parseGuestPayload,
  tlsNameOf,
  type ChildIdentity,
  type SpawnCa,
} from './index';
import { NODE_PKI_FILES } from '../supervisor/config/node-paths';
import { GUEST_PAYLOAD_MAX_PARTS, GUEST_PAYLOAD_PART_BYTES, guestPayloadPartSysfsPath, readGuestPayloadParts } from './payload';

const scratch = mkdtempSync(join(tmpdir(), 'aurae-guest-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let files: PkiFiles;
let root: { certPem: string; keyPem: string };
let spawnCa: SpawnCa;
const read = (path: string) => readFileSync(path, 'utf8');

beforeAll(async () => {
  ({ files } = await ensurePki(join(scratch, 'pki'), { nodeName: 'aurae' }));
  root = { certPem: read(files.caCert), keyPem: read(files.caKey) };
  spawnCa = { certPem: read(files.spawnCaCert), keyPem: read(files.spawnCaKey) };
});

/** `openssl verify -x509_strict -purpose P -CAfile ca [-untrusted chain] cert`, status and output. */
function opensslVerify(purpose: 'sslserver' | 'sslclient', certPem: string, untrustedPem: string | null, caPem = root.certPem): { ok: boolean; out: string } {
  const dir = mkdtempSync(join(scratch, 'verify-'));
  writeFileSync(join(dir, 'ca.crt'), caPem);
  writeFileSync(join(dir, 'leaf.crt'), splitPemCertificates(certPem)[0]!);
  const untrusted = untrustedPem === null ? [] : (writeFileSync(join(dir, 'spawn-ca.crt'), untrustedPem), ['-untrusted', join(dir, 'spawn-ca.crt')]);
  try {
    const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', join(dir, 'ca.crt'), ...untrusted, join(dir, 'leaf.crt')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { ok: true, out };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

function basicConstraints(certPem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-ext', 'basicConstraints'], { input: certPem, encoding: 'utf8' });
}

/** A TLS 1.3 server on loopback with `server` creds that requires a client certificate from `clientCa`. */
async function handshake(options: {
  server: { cert: string; key: string };
  client: { cert: string; key: string };
  servername: string;
  clientCa?: string;
}): Promise<{ ok: true; protocol: string | null; peerCn: string | undefined } | { ok: false; error: string }> {
  let peerCn: string | undefined;
  const server = tls.createServer(
    { cert: options.server.cert, key: options.server.key, ca: options.clientCa ?? root.certPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
    (socket) => {
      peerCn = socket.getPeerCertificate().subject?.CN as string | undefined;
      socket.end('hello\n');
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  try {
    return await new Promise((resolve) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        servername: options.servername,
        ca: root.certPem,
        cert: options.client.cert,
        key: options.client.key,
        minVersion: 'TLSv1.3',
      });
      let data = '';
      const timer = setTimeout(() => (socket.destroy(), resolve({ ok: false, error: 'timeout' })), 5000);
      socket.on('data', (chunk) => (data += chunk));
      socket.on('error', (err) => (clearTimeout(timer), resolve({ ok: false, error: err.message })));
      socket.on('end', () => {
        clearTimeout(timer);
        // In TLS 1.3 the server rejects a client certificate after the client's handshake completes:
        // only the server's application data proves it accepted us.
        resolve(data === 'hello\n' ? { ok: true, protocol: socket.getProtocol(), peerCn } : { ok: false, error: 'closed without data' });
      });
    });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

const admin = () => ({ cert: read(files.adminCert), key: read(files.adminKey) });

describe('node paths', () => {
  it('derives TLS names, depths, labels and parents', () => {
    expect(tlsNameOf('aurae')).toBe('aurae');
    expect(tlsNameOf('aurae/web')).toBe('web.aurae');
    expect(tlsNameOf('aurae/web/db')).toBe('db.web.aurae');
    expect(nodeDepth('aurae')).toBe(0);
    expect(nodeDepth('aurae/web/db')).toBe(2);
    expect(nodeLabelOf('aurae/web')).toBe('web');
    expect(parentPathOf('aurae/web')).toBe('aurae');
    expect(parentPathOf('aurae')).toBeNull();
    expect(childPathOf('aurae', 'web')).toBe('aurae/web');
  });

  it.each(['', 'Aurae', 'a//b', '/a', 'a/', 'a/../b', 'a/./b', 'wéb', '-a', 'a/b-'])('rejects %j naming the field', (bad) => {
    expect(() => tlsNameOf(bad)).toThrow(/node path: .* is invalid: expected DNS labels joined by "\/"/);
  });

  it('rejects bad child labels and paths deeper than 8 below the root', () => {
    expect(() => childPathOf('aurae', 'a/b')).toThrow(/child name: "a\/b" is invalid: expected a DNS label/);
    expect(() => childPathOf('a/b/c/d/e/f/g/h/i', 'j')).toThrow(/parent node path|child node path/);
  });

  it('depthLeftOf is vms.maxDepth minus the node depth', () => {
    expect(depthLeftOf(config('aurae'))).toBe(2);
    expect(depthLeftOf(config('aurae/web', { parent: 'aurae', depth: 1 }))).toBe(1);
    expect(depthLeftOf(config('aurae/web/db', { parent: 'aurae/web', depth: 2 }))).toBe(0);
  });
});

function config(name: string, guest: { parent: string; depth: number } | null = null, extra: Record<string, unknown> = {}): NodeConfig {
  return parseNodeConfig(
    {
      version: 1,
      node: { name },
      pki: { caCert: '/etc/aurae/pki/ca.crt', serverCert: '/etc/aurae/pki/node.crt', serverKey: '/etc/aurae/pki/node.key', spawnCaCert: '/etc/aurae/pki/spawn-ca.crt', spawnCaKey: '/etc/aurae/pki/spawn-ca.key' },
      guest,
      ...extra,
    },
    'test',
  );
}

describe('spawn CA and child identities', () => {
  let child: ChildIdentity;
  let grandchild: ChildIdentity;
  beforeAll(async () => {
    child = await mintChildIdentity({ nodePath: 'aurae', spawnCa }, 'web', 2);
    grandchild = await mintChildIdentity({ nodePath: 'aurae/web', spawnCa: child.spawnCa! }, 'db', 1);
  });

  it('ensurePki makes an unconstrained root and a spawn CA with pathLen maxDepth-1 that openssl accepts', () => {
    expect(basicConstraints(root.certPem)).toMatch(/CA:TRUE\s*$/m);
    expect(basicConstraints(spawnCa.certPem)).toMatch(/CA:TRUE, pathlen:1/);
    expect(new X509Certificate(spawnCa.certPem).verify(new X509Certificate(root.certPem).publicKey)).toBe(true);
    // The node's own certificate is unchanged by the spawn CA: still issued by the root.
    expect(opensslVerify('sslserver', read(files.nodeCert), null).ok).toBe(true);
  });

  it('the child server certificate: CN = path, one SAN (the TLS name), chain verifies with only the root trusted', () => {
    const [leaf, ...rest] = splitPemCertificates(child.serverCertChainPem);
    expect(rest).toEqual([spawnCa.certPem]);
    const cert = new X509Certificate(leaf!);
    expect(cert.subject).toBe('CN=aurae/web');
    // Only the TLS name: the spawn CA's name constraints permit nothing else (no loopback names, no IPs).
    expect(cert.subjectAltName).toBe('DNS:web.aurae');
    expect(child).toMatchObject({ nodePath: 'aurae/web', tlsName: 'web.aurae' });
    const verified = opensslVerify('sslserver', leaf!, spawnCa.certPem);
    expect(verified.out).toMatch(/OK/);
    expect(verified.ok).toBe(true);
    // Without the spawn CA the root alone cannot vouch for it: the chain is what makes it verifiable.
    expect(opensslVerify('sslserver', leaf!, null).ok).toBe(false);
  });

  it('the child gets its own spawn CA with pathLen one less; the grandchild (depth 2 of 2) gets none', () => {
    expect(basicConstraints(child.spawnCa!.certPem)).toMatch(/CA:TRUE, pathlen:0/);
    expect(splitPemCertificates(child.spawnCa!.certPem)).toEqual([splitPemCertificates(child.spawnCa!.certPem)[0], spawnCa.certPem]);
    expect(child.spawnCa!.keyPem).not.toBe(spawnCa.keyPem);
    expect(grandchild.nodePath).toBe('aurae/web/db');
    expect(grandchild.tlsName).toBe('db.web.aurae');
    expect(grandchild.spawnCa).toBeUndefined();
    const [leaf, ...chain] = splitPemCertificates(grandchild.serverCertChainPem);
    expect(chain).toHaveLength(2);
    expect(opensslVerify('sslserver', leaf!, chain.join('')).ok).toBe(true);
  });

  it('refuses to mint at the depth limit, and a pathLen-0 spawn CA cannot sign a further CA', async () => {
    const err = await mintChildIdentity({ nodePath: 'aurae/web/db', spawnCa: child.spawnCa! }, 'x', 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestError);
    expect(err).toMatchObject({ code: 'GUEST_DEPTH_EXCEEDED' });
    expect((err as Error).message).toMatch(/cannot spawn "x" under node "aurae\/web\/db" \(depth 2\): the depth limit vms.maxDepth is reached/);
    // A parent with depthLeft 2 but a pathLen 0 CA: the child gets no spawn CA rather than an invalid one.
    const limited = await mintChildIdentity({ nodePath: 'aurae/web', spawnCa: child.spawnCa! }, 'db', 2);
    expect(limited.spawnCa).toBeUndefined();
    await expect(mintChildIdentity({ nodePath: 'aurae', spawnCa }, 'Web', 2)).rejects.toThrow(/child name: "Web" is invalid/);
  });

  it('a client trusting only the root completes TLS 1.3 with the child (servername = TLS name), admin cert accepted', async () => {
    const result = await handshake({ server: { cert: child.serverCertChainPem, key: child.serverKeyPem }, client: admin(), servername: 'web.aurae' });
    expect(result).toEqual({ ok: true, protocol: 'TLSv1.3', peerCn: 'admin' });
    const deeper = await handshake({ server: { cert: grandchild.serverCertChainPem, key: grandchild.serverKeyPem }, client: admin(), servername: 'db.web.aurae' });
    expect(deeper).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
  });

  it('the handshake fails for the parent\'s name and without the chain', async () => {
    const wrongName = await handshake({ server: { cert: child.serverCertChainPem, key: child.serverKeyPem }, client: admin(), servername: 'aurae' });
    expect(wrongName).toMatchObject({ ok: false, error: expect.stringMatching(/does not match certificate's altnames/) });
    const leafOnly = splitPemCertificates(child.serverCertChainPem)[0]!;
    const noChain = await handshake({ server: { cert: leafOnly, key: child.serverKeyPem }, client: admin(), servername: 'web.aurae' });
    expect(noChain).toMatchObject({ ok: false, error: expect.stringMatching(/unable to (get|verify)/) });
  });

  it('a parent client certificate minted by the spawn CA is accepted by a server whose CA is the root', async () => {
    const parent = await mintParentClientCert({ nodePath: 'aurae', spawnCa });
    expect(opensslVerify('sslclient', parent.certChainPem, spawnCa.certPem).ok).toBe(true);
    const server = { cert: read(files.nodeCert), key: read(files.nodeKey) };
    const accepted = await handshake({ server, client: { cert: parent.certChainPem, key: parent.keyPem }, servername: 'aurae' });
    expect(accepted).toEqual({ ok: true, protocol: 'TLSv1.3', peerCn: 'aurae' });
    // The same leaf without its chain is not: the server has only the root.
    const leafOnly = splitPemCertificates(parent.certChainPem)[0]!;
    const rejected = await handshake({ server, client: { cert: leafOnly, key: parent.keyPem }, servername: 'aurae' });
    expect(rejected.ok).toBe(false);
  });
});

describe('guest payload', () => {
  let child: ChildIdentity;
  const parentConfig = () =>
    config('aurae', null, {
      authz: { admins: ['admin', 'ops'], policy: [{ identity: 'viewer', allow: ['grpc.health.v1.Health/*'] }] },
      debug: { shell: '/dev/hvc0' },
      shutdown: { graceMs: 1234 },
    });
  beforeAll(async () => {
    child = await mintChildIdentity({ nodePath: 'aurae', spawnCa }, 'web', 2);
  });

  it('derives the child config: own name, PKI under /run/aurae/pki, parent, inherited trust and policy', () => {
    const payload = buildGuestPayload(parentConfig(), root.certPem, child);
    expect(GUEST_PAYLOAD_FW_CFG).toBe('opt/aurae/payload');
    const c = payload.config;
    expect(c.node.name).toBe('aurae/web');
    expect(c.guest).toEqual({ parent: 'aurae', depth: 1 });
    expect(c.pki).toEqual({ ...NODE_PKI_FILES });
    expect(c.authz.admins).toEqual(['admin', 'ops']);
    // The parent's rules become the child's inherited rules (source 'parent' there), not config rules.
    expect(c.authz.policy).toEqual([]);
    expect(c.authz.inherited).toEqual([{ identity: 'viewer', effect: 'allow', method: 'grpc.health.v1.Health/*' }]);
    expect(c.shutdown.graceMs).toBe(1234);
    expect(c.vms.maxDepth).toBe(2);
    expect(c.debug.shell).toBeNull();
    expect(c.network.eth0).toEqual({ mode: 'static', address: '10.0.2.15/24', gateway: '10.0.2.2' });
    expect(payload.pki.caCert).toBe(root.certPem);
    expect(payload.pki.serverCertChain).toBe(child.serverCertChainPem);
    expect(payload.pki.spawnCaCert).toBe(child.spawnCa!.certPem);
  });

  it('never carries a key of the parent', () => {
    const text = guestPayloadText(buildGuestPayload(parentConfig(), root.certPem, child));
    for (const parentKey of [files.caKey, files.nodeKey, files.spawnCaKey, files.adminKey]) {
      const body = read(parentKey).split('\n')[1]!;
      expect(text).not.toContain(body);
    }
    expect(text).toContain(child.serverKeyPem.split('\n')[1]!);
  });

  it('travels as gzip fw_cfg parts of at most a page, read back in order until one is missing', () => {
    const text = guestPayloadText(buildGuestPayload(parentConfig(), root.certPem, child));
    const parts = guestPayloadParts(text);
    // A real payload (certificates, key, config) fits one page compressed: one read, no re-read from the start.
    expect(parts).toHaveLength(1);
    expect(parts[0]!.length).toBeLessThanOrEqual(GUEST_PAYLOAD_PART_BYTES);
    expect(guestPayloadParts(text)).toEqual(parts); // deterministic
    const served = new Map(parts.map((p, i) => [guestPayloadPartSysfsPath(i), p]));
    expect(readGuestPayloadParts((path) => served.get(path) ?? null)?.toString()).toBe(text);
    expect(guestPayloadPartSysfsPath(1)).toBe('/sys/firmware/qemu_fw_cfg/by_name/opt/aurae/payload/1/raw');
    expect(readGuestPayloadParts(() => null)).toBeNull();

    // Several parts: text that does not compress (random base64), cut at page size, joined again.
    const big = randomBytes(9000).toString('base64');
    const many = guestPayloadParts(big);
    expect(many.length).toBeGreaterThan(2);
    expect(many.slice(0, -1).every((p) => p.length === GUEST_PAYLOAD_PART_BYTES)).toBe(true);
    expect(unpackGuestPayload(many).toString()).toBe(big);
    // A missing middle part, junk, or too much unpacked text is refused, naming where it came from.
    expect(() => unpackGuestPayload([many[0]!, many[2]!])).toThrow(/fw_cfg part\(s\) \(\/sys\/firmware\/qemu_fw_cfg\/by_name\/opt\/aurae\/payload\) do not unpack/);
    expect(() => unpackGuestPayload([Buffer.from('not gzip')])).toThrow(GuestError);
    expect(() => unpackGuestPayload(guestPayloadParts(Buffer.alloc(GUEST_PAYLOAD_MAX_BYTES + 1, 0x20)))).toThrow(/do not unpack to at most 262144 bytes/);
    // More than fw_cfg has room for: refused at the parent, before QEMU starts.
    expect(() => guestPayloadParts(randomBytes(GUEST_PAYLOAD_MAX_PARTS * GUEST_PAYLOAD_PART_BYTES).toString('base64'))).toThrow(/more than the 65536 that fit in fw_cfg/);
  });

  it('round-trips through text, and guestPkiFiles writes keys 0600', () => {
    const payload = buildGuestPayload(parentConfig(), root.certPem, child);
    const parsed = parseGuestPayload(Buffer.from(guestPayloadText(payload)));
    expect(parsed).toEqual(payload);
    expect(guestPkiFiles(parsed).map((f) => [f.path, f.mode.toString(8)])).toEqual([
      ['/run/aurae/pki/ca.crt', '644'],
      ['/run/aurae/pki/node.crt', '644'],
      ['/run/aurae/pki/node.key', '600'],
      ['/run/aurae/pki/spawn-ca.crt', '644'],
      ['/run/aurae/pki/spawn-ca.key', '600'],
    ]);
  });

  it('a child without a spawn CA has none in its config or files', async () => {
    const grandchild = await mintChildIdentity({ nodePath: 'aurae/web', spawnCa: child.spawnCa! }, 'db', 1);
    const webConfig = buildGuestPayload(parentConfig(), root.certPem, child).config;
    const payload = buildGuestPayload(webConfig, root.certPem, grandchild);
    expect(payload.config.guest).toEqual({ parent: 'aurae/web', depth: 2 });
    expect(payload.config.pki.spawnCaCert).toBeNull();
    expect(guestPkiFiles(payload)).toHaveLength(3);
    // And that node may not spawn: depth 2 of 2.
    expect(() => buildGuestPayload(payload.config, root.certPem, grandchild)).toThrow(GuestError);
  });

  it('rejects a child of another node and a parent at its depth limit', async () => {
    expect(() => buildGuestPayload(config('other'), root.certPem, child)).toThrow(/child "aurae\/web" is not a child of node "other"/);
    const shallow = config('aurae', null, { vms: { maxDepth: 0 } });
    expect(() => buildGuestPayload(shallow, root.certPem, child)).toThrow(/vms.maxDepth 0 is reached/);
  });

  describe('parseGuestPayload errors name the field', () => {
    const good = () => JSON.parse(guestPayloadText(buildGuestPayload(parentConfig(), root.certPem, child))) as Record<string, any>;
    const problemsOf = (value: unknown): string[] => {
      try {
        parseGuestPayload(typeof value === 'string' ? value : JSON.stringify(value), 'fw_cfg');
      } catch (err) {
        expect(err).toBeInstanceOf(GuestError);
        expect((err as GuestError).code).toBe('GUEST_PAYLOAD_INVALID');
        expect((err as Error).message).toMatch(/^fw_cfg: invalid guest payload:/);
        return (err as GuestError).problems;
      }
      throw new Error('parsed');
    };
    it('not JSON', () => expect(problemsOf('{')).toEqual([expect.stringMatching(/^\(root\): not valid JSON/)]));
    it('unknown field', () => expect(problemsOf({ ...good(), extra: 1 })).toEqual([expect.stringMatching(/extra/)]));
    it('wrong version', () => expect(problemsOf({ ...good(), version: 2 })[0]).toMatch(/^version: /));
    it('bad certificate', () => {
      const p = good();
      p.pki.caCert = 'hello';
      expect(problemsOf(p)).toEqual([expect.stringMatching(/^pki.caCert: expected PEM certificate/)]);
    });
    it('bad key', () => {
      const p = good();
      p.pki.serverKey = p.pki.caCert;
      expect(problemsOf(p)).toEqual([expect.stringMatching(/^pki.serverKey: expected one PEM PKCS#8 private key/)]);
    });
    it('bad node name', () => {
      const p = good();
      p.config.node.name = 'Web';
      expect(problemsOf(p)[0]).toMatch(/^config.node.name: expected a DNS label/);
    });
    it('PEM paths outside /run/aurae/pki', () => {
      const p = good();
      p.config.pki.serverKey = '/etc/shadow';
      expect(problemsOf(p)).toEqual(['config.pki.serverKey: must be /run/aurae/pki/node.key (where init writes the payload\'s PEMs), not /etc/shadow']);
    });
    it('no guest section', () => {
      const p = good();
      p.config.guest = null;
      expect(problemsOf(p)).toContain('config.node.name: "aurae/web" is a child\'s path: a spawned node\'s config also names its parent (guest section)');
    });
    it('wrong parent and depth', () => {
      const p = good();
      p.config.guest = { parent: 'other', depth: 2 };
      expect(problemsOf(p)).toEqual(['config.guest.parent: "other" is not the parent of node "aurae/web"', 'config.guest.depth: node "aurae/web" is at depth 1, not 2']);
    });
    it('spawn CA half-present', () => {
      const p = good();
      p.pki.spawnCaKey = null;
      expect(problemsOf(p)).toEqual(['pki.spawnCaKey: spawnCaCert and spawnCaKey go together']);
    });
    it('too large', () => expect(problemsOf(' '.repeat(300 * 1024))[0]).toMatch(/bytes is more than/));
  });
});
