// 11: identity and authorization in the booted node: a certificate minted with `aer pki issue` from the image's
// PKI is a non-admin identity; the node refuses it (PERMISSION_DENIED) without going down, the admin sees the
// refusal in the audit log, and a rule added with `aer authz allow` takes effect at once.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuraeClient, AuraeApiError, connect } from '../aer/sdk';
import { aer } from './fixture/aer';
import { useNode } from './fixture/node';

describe('11 authz', () => {
  const node = useNode({ name: '11-authz', debugShell: false });
  const identity = 'qemu-nova';
  let dir: string;
  let novaConfig: string;
  const clients: AuraeClient[] = [];
  const nova = () => {
    const c = connect({ config: novaConfig, address: `127.0.0.1:${node().port}`, env: {} });
    clients.push(c);
    return c;
  };
  const admin = () => {
    const c = node().client();
    clients.push(c);
    return c;
  };

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-11-authz-'));
  });
  afterAll(() => {
    for (const c of clients) c.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('`aer pki issue` (the bundled CLI) mints a client certificate from the image PKI', async () => {
    expect(fs.existsSync(path.join(node().image.pkiDir, 'ca.key'))).toBe(true);
    const res = await aer(node(), ['pki', 'issue', identity, '--pki', node().image.pkiDir, '--out', dir, '-o', 'json']);
    expect(res.code, res.stderr).toBe(0);
    const issued = JSON.parse(res.stdout) as { config: string; key: string };
    novaConfig = issued.config;
    expect(fs.statSync(issued.key).mode & 0o777).toBe(0o600);
  });

  it('the non-admin identity may probe the node but is denied Shutdown, and the node keeps serving', async () => {
    const c = nova();
    expect(await c.health.check()).toEqual({ status: 'SERVING' });
    expect((await c.discovery.discover()).healthy).toBe(true);
    const err = await c.node.shutdown({ reason: 'not allowed' }).then(
      () => new Error('Shutdown succeeded for a non-admin identity'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AuraeApiError);
    expect((err as AuraeApiError).code).toBe('PERMISSION_DENIED');
    expect((err as AuraeApiError).details).toBe(
      `identity "${identity}" may not call aurae.node.v0.NodeService/Shutdown: no rule allows it and non-admin identities are denied by default: ` +
        `an admin can grant it with: aer authz allow ${identity} aurae.node.v0.NodeService/Shutdown`,
    );
    // The same refusal through the CLI: exit 1, one line on stderr.
    const cli = await aer(node(), ['--config', novaConfig, 'shutdown']);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(new RegExp(`^aer: identity "${identity}" may not call aurae.node.v0.NodeService/Shutdown: `));
    expect(node().vm.running).toBe(true);
    expect(node().vm.console).not.toMatch(/init: shutdown: begin/);
    expect(await admin().health.check()).toEqual({ status: 'SERVING' });
  });

  it('the admin reads the denials in the audit log (SDK and `aer authz audit`)', async () => {
    const records = await admin().authz.audit({ identity, method: 'aurae.node.v0.NodeService/Shutdown' });
    // Two refusals (SDK and CLI); repeats of one refusal from one peer address are aggregated into a row with a count.
    expect(records.reduce((n, r) => n + r.count, 0)).toBe(2);
    for (const r of records) {
      expect(r).toMatchObject({ identity, code: 'PERMISSION_DENIED', detail: 'denied: no rule allows it (default deny)' });
      expect(r.peer).not.toBe('');
    }
    const cli = await aer(node(), ['authz', 'audit', '--identity', identity, '--code', 'PERMISSION_DENIED', '-o', 'json']);
    expect(cli.code, cli.stderr).toBe(0);
    const rows = JSON.parse(cli.stdout) as Array<{ method: string; count: number }>;
    expect(new Set(rows.map((r) => r.method))).toEqual(new Set(['aurae.node.v0.NodeService/Shutdown']));
    expect(rows.reduce((n, r) => n + r.count, 0)).toBe(2);
    // The audit log is the admin's to read.
    const denied = await nova().authz.audit().then(
      () => null,
      (e: unknown) => e as AuraeApiError,
    );
    expect(denied?.code).toBe('PERMISSION_DENIED');
  });

  it('`aer authz allow` grants a harmless method, which then succeeds; the edit is audited', async () => {
    const grant = await aer(node(), ['authz', 'allow', identity, 'aurae.authz.v0.AuthzService/GetPolicy']);
    expect(grant.code, grant.stderr).toBe(0);
    expect(grant.stdout.trim()).toBe(`${identity}: allowed aurae.authz.v0.AuthzService/GetPolicy`);
    const policy = await nova().authz.policy({ identity });
    expect(policy.rules).toEqual([expect.objectContaining({ identity, effect: 'allow', method: 'aurae.authz.v0.AuthzService/GetPolicy', source: 'api', createdBy: 'admin' })]);
    const [edit] = await admin().authz.audit({ limit: 1, method: 'aurae.authz.v0.AuthzService/Allow' });
    expect(edit).toMatchObject({ identity: 'admin', code: 'OK', detail: `allow ${identity} aurae.authz.v0.AuthzService/GetPolicy` });
  });

  it('attack: a tenant confined to her cells (--cell) cannot stop, see or run as root anything outside them', async () => {
    const mine = identity; // "qemu-nova": her cells live below the cell of the same name
    const a = admin();
    // The SDK in the seeds' style: nova.Allow(runtime.Run), scoped to her cells.
    const nova0 = a.authz.identity(mine);
    expect((await nova0.allow('aurae.cells.v0.CellService/*', { cells: [`${mine}/*`] })).changed).toBe(true);
    const events = await aer(node(), ['authz', 'allow', mine, 'aurae.observe.v0.ObserveService/GetEvents', '--cell', `${mine}/*`]);
    expect(events.code, events.stderr).toBe(0);
    for (const name of [mine, `${mine}/web`, 'other', 'other/db']) await a.cells.allocate({ name });
    // The other tenant's workload, started by an admin (admins are not confined).
    await a.cells.start('other/db', { name: 'db', args: ['/bin/sleep', '1000'] });

    const t = nova();
    const stop = await t.cells.stop('other/db', 'db', { graceMs: 0 }).then(
      () => null,
      (e: unknown) => e as AuraeApiError,
    );
    expect(stop?.code).toBe('PERMISSION_DENIED');
    expect(stop?.details).toMatch(new RegExp(`may not call aurae.cells.v0.CellService/Stop on cell "other/db": its rules for this method cover only --cell '${mine}/\\*'`));
    expect((await a.cells.get('other/db')).executables[0]?.state).toBe('running');
    // Root is not hers: Start without --uid is refused with how to pass one.
    const root = await t.cells.start(`${mine}/web`, { name: 'sh', args: ['/bin/sleep', '1000'] }).then(
      () => null,
      (e: unknown) => e as AuraeApiError,
    );
    expect(root?.code).toBe('PERMISSION_DENIED');
    expect(root?.details).toMatch(/may not run executables as uid 0 \(root\).*--uid 1000/);
    expect((await t.cells.start(`${mine}/web`, { name: 'app', args: ['/bin/sleep', '1000'], uid: 1000 })).pid).toBeGreaterThan(0);
    // She sees her cells only: in the list (nova itself is an admin's, not hers) and in the event stream.
    const names = (cells: Array<{ name: string; children: unknown[] }>): string[] => cells.flatMap((c) => [c.name, ...names(c.children as typeof cells)]);
    expect(names(await t.cells.list())).toEqual([`${mine}/web`]);
    const seen: string[] = [];
    for await (const e of t.observe.events({ follow: false })) if ('cell' in e) seen.push(e.cell);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((c) => c.startsWith(`${mine}/`))).toBe(true);
    // Through aer too: her `cell list` shows hers only; the admin's shows everything.
    const cli = await aer(node(), ['--config', novaConfig, 'cell', 'list', '-o', 'json']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).not.toContain('other');
    expect(names(await a.cells.list())).toEqual(expect.arrayContaining([mine, `${mine}/web`, 'other', 'other/db']));
    await a.cells.free(mine, { force: true });
    await a.cells.free('other', { force: true });
  });
});
