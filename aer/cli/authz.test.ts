import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensurePki } from '../../supervisor/pki';
import { type AuraeClient, type AuthzPolicy, AuraeApiError, loadClientConfig } from '../sdk';
import { formatAudit, formatPolicy } from './authz';
import { issueIdentity, planPkiIssue } from './pki';
import { runAer } from './program';

const policy: AuthzPolicy = {
  admins: ['admin'],
  openMethods: ['grpc.health.v1.Health/*', 'aurae.discovery.v0.DiscoveryService/Discover'],
  adminOnlyMethods: ['aurae.authz.v0.AuthzService/Allow'],
  rules: [
    { identity: 'nova', effect: 'allow', method: 'aurae.node.v0.NodeService/Reboot', source: 'config' },
    { identity: 'viewer-1', effect: 'deny', method: '*', source: 'api', createdBy: 'admin', createdAt: '2026-01-02T03:04:05.000Z' },
  ],
};
const record = { id: 7, time: '2026-01-02T03:04:05.000Z', identity: 'nova', method: 'aurae.node.v0.NodeService/Shutdown', code: 'PERMISSION_DENIED', detail: 'denied: no rule allows it (default deny)', peer: '127.0.0.1:5', count: 1, firstTime: '2026-01-02T03:04:05.000Z' };

function fakeClient(fail?: Error) {
  const calls: unknown[][] = [];
  const act = async <T>(args: unknown[], value: T): Promise<T> => {
    calls.push(args);
    if (fail) throw fail;
    return value;
  };
  const client = {
    config: { path: '/c.json', node: 'node-1', address: 'unix:///x.sock', version: 1, ca: '', cert: '', key: '' },
    authz: {
      policy: (o?: { identity?: string }) => act(['policy', o?.identity], policy),
      allow: (i: string, m: string) => act(['allow', i, m], { changed: true, rules: [], notes: [] }),
      deny: (i: string, m: string) => act(['deny', i, m], { changed: false, rules: [], notes: ['health checks and Discover stay open'] }),
      revoke: (i: string, m?: string) => act(['revoke', i, m], { removed: 2, rules: [], notes: [] }),
      audit: (q: unknown) => act(['audit', q], [record]),
    },
    close: () => {},
  } as unknown as AuraeClient;
  return { client, calls };
}

async function run(argv: string[], client = fakeClient().client, env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runAer(argv, { out: (t) => void out.push(t), err: (t) => void err.push(t), env, connect: () => client });
  return { code, out, err };
}

describe('aer authz', () => {
  it('policy: text table and json; --identity filters on the node', async () => {
    const { client, calls } = fakeClient();
    const text = await run(['authz', 'policy', '--identity', 'nova'], client);
    expect(text.code).toBe(0);
    expect(text.out[0]).toBe(formatPolicy(policy));
    expect(formatPolicy(policy).split('\n')).toEqual([
      'admins (may call everything): admin',
      'open to every node certificate: grpc.health.v1.Health/*, aurae.discovery.v0.DiscoveryService/Discover',
      'admin-only: aurae.authz.v0.AuthzService/Allow',
      '',
      'IDENTITY  EFFECT  METHOD                            SOURCE',
      'nova      allow   aurae.node.v0.NodeService/Reboot  config',
      'viewer-1  deny    *                                 api (admin, 2026-01-02T03:04:05.000Z)',
    ]);
    expect(calls).toEqual([['policy', 'nova']]);
    expect(JSON.parse((await run(['-o', 'json', 'authz', 'policy'])).out[0]!)).toEqual(policy);
    expect(formatPolicy({ ...policy, rules: [] })).toMatch(/no rules: identities other than the admins may call only the open methods$/);
  });

  it('allow, deny and revoke pass their arguments and report changes and notes', async () => {
    const { client, calls } = fakeClient();
    expect((await run(['authz', 'allow', 'nova', 'aurae.node.v0.NodeService/*'], client)).out).toEqual(['nova: allowed aurae.node.v0.NodeService/*']);
    expect((await run(['authz', 'deny', 'nova', 'grpc.health.v1.Health/Check'], client)).out).toEqual([
      'nova: already denied grpc.health.v1.Health/Check (no change)\nnote: health checks and Discover stay open',
    ]);
    expect((await run(['authz', 'revoke', 'nova'], client)).out).toEqual(['nova: revoked 2 rules']);
    expect(JSON.parse((await run(['authz', 'revoke', 'nova', 'a.B/C', '-o', 'json'], client)).out[0]!)).toEqual({
      identity: 'nova',
      method: 'a.B/C',
      removed: 2,
      rules: [],
      notes: [],
    });
    expect(calls).toEqual([
      ['allow', 'nova', 'aurae.node.v0.NodeService/*'],
      ['deny', 'nova', 'grpc.health.v1.Health/Check'],
      ['revoke', 'nova', undefined],
      ['revoke', 'nova', 'a.B/C'],
    ]);
  });

  it('allow/deny with scope flags (--cell, --vm, --on-node, --uid, --gid, repeatable) send the scope; policy shows a SCOPE column', async () => {
    const calls: unknown[][] = [];
    const client = {
      ...fakeClient().client,
      authz: {
        allow: async (...args: unknown[]) => (calls.push(args), { changed: true, rules: [], notes: [] }),
        deny: async (...args: unknown[]) => (calls.push(args), { changed: true, rules: [], notes: [] }),
      },
    } as unknown as AuraeClient;
    const res = await run(['authz', 'allow', 'nova', 'aurae.cells.v0.CellService/*', '--cell', 'nova/*', '--cell', 'shared', '--uid', '1000-1999', '--on-node', 'aurae/web'], client);
    expect(res.out).toEqual([`nova: allowed aurae.cells.v0.CellService/* --cell 'nova/*' --cell shared --on-node aurae/web --uid 1000-1999`]);
    await run(['authz', 'deny', 'nova', 'aurae.vms.v0.VmService/*', '--vm', 'prod-*', '--gid', '0'], client);
    expect(calls).toEqual([
      ['nova', 'aurae.cells.v0.CellService/*', { cells: ['nova/*', 'shared'], nodes: ['aurae/web'], uids: ['1000-1999'] }],
      ['nova', 'aurae.vms.v0.VmService/*', { vms: ['prod-*'], gids: ['0'] }],
    ]);
    const scoped = formatPolicy({
      ...policy,
      rules: [
        { identity: 'nova', effect: 'allow', method: 'aurae.cells.v0.CellService/*', source: 'api', scope: { cells: ['nova/*'], uids: ['1000'] } },
        { identity: 'nova', effect: 'deny', method: '*', source: 'parent' },
      ],
    });
    expect(scoped.split('\n').slice(4)).toEqual([
      'IDENTITY  EFFECT  METHOD                        SCOPE                       SOURCE',
      "nova      allow   aurae.cells.v0.CellService/*  --cell 'nova/*' --uid 1000  api",
      'nova      deny    *                             (all)                       parent (inherited)',
    ]);
  });

  it('audit: options become the query; --limit is checked locally (usage error)', async () => {
    const { client, calls } = fakeClient();
    const res = await run(['authz', 'audit', '--limit', '5', '--identity', 'nova', '--code', 'PERMISSION_DENIED', '--before', '9'], client);
    expect(res.out).toEqual([formatAudit([record])]);
    expect(calls).toEqual([['audit', { limit: 5, identity: 'nova', method: undefined, code: 'PERMISSION_DENIED', beforeId: 9 }]]);
    expect(formatAudit([record]).split('\n')[1]).toBe(
      '7   2026-01-02T03:04:05.000Z  nova      aurae.node.v0.NodeService/Shutdown  PERMISSION_DENIED  127.0.0.1:5  denied: no rule allows it (default deny)',
    );
    expect(formatAudit([])).toBe('no audit records match');
    // Forwarded (NODE, on the parent) and relayed (VIA, on the child) calls add their columns; "-" where absent.
    const forwarded = { ...record, id: 8, code: 'OK', detail: 'web (512 MiB, 1 cpu)', node: 'aurae/web' };
    const relayed = { ...record, id: 9, code: 'OK', detail: '', via: 'aurae' };
    expect(formatAudit([forwarded, relayed, record]).split('\n').map((l) => l.trimEnd())).toEqual([
      'ID  TIME                      IDENTITY  METHOD                              CODE               PEER         NODE       VIA    DETAIL',
      '8   2026-01-02T03:04:05.000Z  nova      aurae.node.v0.NodeService/Shutdown  OK                 127.0.0.1:5  aurae/web  -      web (512 MiB, 1 cpu)',
      '9   2026-01-02T03:04:05.000Z  nova      aurae.node.v0.NodeService/Shutdown  OK                 127.0.0.1:5  -          aurae',
      '7   2026-01-02T03:04:05.000Z  nova      aurae.node.v0.NodeService/Shutdown  PERMISSION_DENIED  127.0.0.1:5  -          -      denied: no rule allows it (default deny)',
    ]);
    expect(formatAudit([relayed]).split('\n')[0]).toMatch(/ PEER +VIA +DETAIL$/); // no NODE column without a forwarded record
    // An aggregated refusal adds COUNT and FIRST (TIME is its last occurrence); "-" for rows seen once.
    const repeated = { ...record, id: 10, count: 4000, firstTime: '2026-01-01T00:00:00.000Z' };
    expect(formatAudit([repeated, forwarded]).split('\n').map((l) => l.trimEnd().replace(/ {2,}/g, '  '))).toEqual([
      'ID  TIME  COUNT  FIRST  IDENTITY  METHOD  CODE  PEER  NODE  DETAIL',
      '10  2026-01-02T03:04:05.000Z  4000  2026-01-01T00:00:00.000Z  nova  aurae.node.v0.NodeService/Shutdown  PERMISSION_DENIED  127.0.0.1:5  -  denied: no rule allows it (default deny)',
      '8  2026-01-02T03:04:05.000Z  1  -  nova  aurae.node.v0.NodeService/Shutdown  OK  127.0.0.1:5  aurae/web  web (512 MiB, 1 cpu)',
    ]);
    expect(JSON.parse((await run(['authz', 'audit', '-o', 'json'], client)).out[0]!)).toEqual([record]);
    for (const bad of ['0', '1001', '-3', 'ten', '1.5']) {
      const usage = await run(['authz', 'audit', '--limit', bad], client);
      expect(usage.code, bad).toBe(2);
      expect(usage.err.join('\n')).toMatch(/expected an integer from 1 to 1000/);
    }
  });

  it('a refusal from the node is one line with its message (exit 1)', async () => {
    const denied = new AuraeApiError('PERMISSION_DENIED', 'identity "nova" may not call aurae.authz.v0.AuthzService/Allow: only identities in authz.admins (node config) may change the policy', 'aurae.authz.v0.AuthzService/Allow', 'unix:///x.sock');
    const res = await run(['authz', 'allow', 'x', 'a.B/C'], fakeClient(denied).client);
    expect(res).toMatchObject({ code: 1, err: [`aer: ${denied.details}`] });
  });
});

describe('aer pki issue', () => {
  let dir: string;
  let pkiDir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aer-pki-'));
    pkiDir = join(dir, 'pki');
    await ensurePki(pkiDir, { nodeName: 'node-7' });
    writeFileSync(join(dir, 'client.json'), JSON.stringify({ version: 1, node: 'node-7', address: '127.0.0.1:8443', ca: 'pki/ca.crt', cert: 'pki/admin.crt', key: 'pki/admin.key' }));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('plans the files and a relocatable client config', () => {
    expect(planPkiIssue({ identity: 'nova', pkiDir: '/p', outDir: '/o/ids', node: 'n', address: 'unix:///s', force: false })).toEqual({
      files: { caCert: '/p/ca.crt', caKey: '/p/ca.key', cert: '/o/ids/nova.crt', key: '/o/ids/nova.key', config: '/o/ids/nova.json' },
      clientConfig: { version: 1, node: 'n', address: 'unix:///s', ca: '../../p/ca.crt', cert: 'nova.crt', key: 'nova.key' },
    });
    for (const bad of ['', '../x', 'a/b', '.hidden', 'with space', 'x'.repeat(65), 'ünï']) {
      expect(() => planPkiIssue({ identity: bad, pkiDir: '/p', outDir: '/o', node: 'n', address: 'unix:///s', force: false })).toThrow(/is not usable: use 1-64 of/);
    }
  });

  it('next to the client config\'s CA by default: NAME.crt (CN = NAME, signed by the CA), NAME.key 0600, NAME.json usable by aer', async () => {
    const res = await run(['--config', join(dir, 'client.json'), 'pki', 'issue', 'nova', '-o', 'json']);
    expect(res.err).toEqual([]);
    expect(res.code).toBe(0);
    const issued = JSON.parse(res.out[0]!);
    expect(issued).toMatchObject({ identity: 'nova', cert: join(pkiDir, 'nova.crt'), key: join(pkiDir, 'nova.key'), config: join(pkiDir, 'nova.json') });
    const cert = new X509Certificate(readFileSync(issued.cert));
    expect(cert.subject).toBe('CN=nova');
    expect(cert.verify(new X509Certificate(readFileSync(join(pkiDir, 'ca.crt'))).publicKey)).toBe(true);
    expect(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(readFileSync(issued.key)))).toBe(true);
    expect(statSync(issued.key).mode & 0o777).toBe(0o600);
    const config = loadClientConfig({ config: issued.config }, {});
    expect(config).toMatchObject({ node: 'node-7', address: '127.0.0.1:8443', ca: join(pkiDir, 'ca.crt'), cert: issued.cert, key: issued.key });

    // Refuses to overwrite without --force.
    const again = await run(['--config', join(dir, 'client.json'), 'pki', 'issue', 'nova']);
    expect(again).toMatchObject({ code: 1, err: [`aer: ${join(pkiDir, 'nova.key')} already exists: pass --force to replace it (the certificate it holds stays valid until it expires)`] });
    const forced = await run(['--config', join(dir, 'client.json'), 'pki', 'issue', 'nova', '--force']);
    expect(forced.code).toBe(0);
    expect(forced.out[0]).toMatch(/^issued a client certificate for "nova" \(valid until 20\d\d-/);
    expect(new X509Certificate(readFileSync(issued.cert)).serialNumber).not.toBe(cert.serialNumber);
  });

  it('--pki and --out without a client config: node name from node.crt, address from --address', async () => {
    const out = join(dir, 'elsewhere');
    const res = await run(['--config', join(dir, 'missing.json'), '--address', '127.0.0.1:9999', 'pki', 'issue', 'ci@build', '--pki', pkiDir, '--out', out]);
    expect(res.code).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'ci@build.json'), 'utf8'))).toEqual({
      version: 1,
      node: 'node-7',
      address: '127.0.0.1:9999',
      ca: '../pki/ca.crt',
      cert: 'ci@build.crt',
      key: 'ci@build.key',
    });
  });

  it('says what to do when the CA key is missing, and writes nothing', async () => {
    const noKey = join(dir, 'nokey');
    await ensurePki(noKey, { nodeName: 'node-7' });
    rmSync(join(noKey, 'ca.key'));
    const res = await run(['pki', 'issue', 'nova', '--pki', noKey]);
    expect(res.code).toBe(1);
    expect(res.err[0]).toBe(
      `aer: cannot read the CA key ${join(noKey, 'ca.key')} (ENOENT): issuing a client certificate needs the node CA's certificate and private key: ` +
        'run aer pki issue where the PKI was created (the image build keeps it in out/pki) or pass --pki DIR',
    );
    expect(existsSync(join(noKey, 'nova.crt'))).toBe(false);
    await expect(issueIdentity({ identity: 'x', pkiDir: join(dir, 'nope'), outDir: dir, node: 'n', address: 'unix:///s', force: false })).rejects.toThrow(/cannot read the CA certificate/);
  });

  it('without --pki and without a client config it says so', async () => {
    const res = await run(['--config', join(dir, 'missing.json'), 'pki', 'issue', 'nova']);
    expect(res.code).toBe(1);
    expect(res.err[0]).toMatch(/^aer: no --pki DIR given and no client config to find the CA from \(cannot read client config .*missing.json \(ENOENT\).*\): pass --pki DIR$/);
  });
});
