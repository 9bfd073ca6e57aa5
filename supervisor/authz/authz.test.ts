import { afterEach, describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { type LogFields, createJsonLogger, silentLogger } from '../log';
import { type Db, openDatabase } from '../store';
import { type AuthzOptions, createAuthz, methodNames } from './authz';
import { type AuthzStore, createAuthzStore } from './authz-store';

const admin = { identity: 'admin', peer: '127.0.0.1:1', admin: true };
const KNOWN = new Set([
  'grpc.health.v1.Health/Check',
  'aurae.discovery.v0.DiscoveryService/Discover',
  'aurae.node.v0.NodeService/Shutdown',
  'aurae.node.v0.NodeService/Reboot',
  'aurae.authz.v0.AuthzService/ListAudit',
]);
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});

function setup(over: Partial<AuthzOptions> = {}, db?: Db) {
  const database = db ?? openDatabase(':memory:');
  if (!db) dbs.push(database);
  const store = createAuthzStore(database, { auditMaxRecords: 100 });
  const authz = createAuthz({
    admins: ['admin'],
    configRules: [{ identity: 'nova', allow: ['aurae.node.v0.NodeService/Reboot'], deny: ['aurae.node.v0.NodeService/Shutdown'] }],
    store,
    knownMethods: () => KNOWN,
    log: silentLogger,
    clock: () => new Date('2026-02-03T04:05:06.000Z'),
    ...over,
  });
  return { authz, store, db: database };
}
const who = (identity: string) => ({ identity, peer: 'p', admin: identity === 'admin' });

describe('createAuthz', () => {
  it('checks calls against config rules; denials carry the message and a short detail', () => {
    const { authz } = setup();
    expect(authz.check(who('nova'), 'aurae.node.v0.NodeService/Reboot')).toBeNull();
    expect(authz.check(who('admin'), 'aurae.node.v0.NodeService/Shutdown')).toBeNull();
    expect(authz.check(who('nova'), 'aurae.node.v0.NodeService/Shutdown')).toEqual({
      message: expect.stringContaining('denied by the rule deny "aurae.node.v0.NodeService/Shutdown" in the node config'),
      detail: 'denied by config rule deny aurae.node.v0.NodeService/Shutdown',
    });
    expect(authz.check(who('viewer'), 'aurae.node.v0.NodeService/Reboot')?.message).toContain('aer authz allow viewer aurae.node.v0.NodeService/Reboot');
  });

  it('merges API rules with config rules: API allows add, API denies carve out, config denies stay', () => {
    const { authz } = setup();
    authz.allow(admin, 'viewer', 'aurae.node.v0.NodeService/*');
    expect(authz.check(who('viewer'), 'aurae.node.v0.NodeService/Reboot')).toBeNull();

    // An API allow cannot lift a config deny; the response says so.
    const change = authz.allow(admin, 'nova', 'aurae.node.v0.NodeService/Shutdown');
    expect(change.notes).toEqual(['still denied by the config rule deny "aurae.node.v0.NodeService/Shutdown" (deny wins over allow)']);
    expect(authz.check(who('nova'), 'aurae.node.v0.NodeService/Shutdown')).not.toBeNull();

    // An API deny switches off a config allow.
    authz.deny(admin, 'nova', 'aurae.node.v0.NodeService/Reboot');
    expect(authz.check(who('nova'), 'aurae.node.v0.NodeService/Reboot')?.detail).toBe('denied by api rule deny aurae.node.v0.NodeService/Reboot');

    expect(authz.policy('nova').rules).toEqual([
      { identity: 'nova', effect: 'allow', pattern: 'aurae.node.v0.NodeService/Reboot', source: 'config' },
      { identity: 'nova', effect: 'deny', pattern: 'aurae.node.v0.NodeService/Shutdown', source: 'config' },
      { identity: 'nova', effect: 'allow', pattern: 'aurae.node.v0.NodeService/Shutdown', source: 'api', createdBy: 'admin', createdAt: '2026-02-03T04:05:06.000Z' },
      { identity: 'nova', effect: 'deny', pattern: 'aurae.node.v0.NodeService/Reboot', source: 'api', createdBy: 'admin', createdAt: '2026-02-03T04:05:06.000Z' },
    ]);
    expect(authz.policy().rules).toHaveLength(5);
    expect(authz.policy()).toMatchObject({ admins: ['admin'], open: ['grpc.health.v1.Health/*', 'aurae.discovery.v0.DiscoveryService/Discover'] });
  });

  it('the latest API edit of the same pattern wins: allow replaces deny and back; repeats change nothing', () => {
    const { authz } = setup();
    expect(authz.deny(admin, 'viewer', 'aurae.node.v0.NodeService/Reboot').changed).toBe(true);
    expect(authz.deny(admin, 'viewer', 'aurae.node.v0.NodeService/Reboot').changed).toBe(false);
    const allowed = authz.allow(admin, 'viewer', 'aurae.node.v0.NodeService/Reboot');
    expect(allowed).toMatchObject({ changed: true, notes: [] });
    expect(allowed.rules.map((r) => `${r.effect} ${r.pattern}`)).toEqual(['allow aurae.node.v0.NodeService/Reboot']);
    expect(authz.check(who('viewer'), 'aurae.node.v0.NodeService/Reboot')).toBeNull();
  });

  it('refuses patterns that match nothing this node serves, naming the services', () => {
    const { authz } = setup();
    expect(() => authz.allow(admin, 'viewer', 'aurae.nod.v0.NodeService/Shutdown')).toThrow(
      new AuraeError(
        'INVALID_ARGUMENT',
        'method: no method served by this node matches "aurae.nod.v0.NodeService/Shutdown": services are aurae.authz.v0.AuthzService, aurae.discovery.v0.DiscoveryService, aurae.node.v0.NodeService, grpc.health.v1.Health',
      ),
    );
    expect(() => authz.deny(admin, 'viewer', 'no.Such/*')).toThrow(/no method served by this node matches "no.Such\/\*"/);
    expect(authz.allow(admin, 'viewer', '*').changed).toBe(true);
  });

  it('revoke: one pattern or all API rules; NOT_FOUND when none; config-only rules are FAILED_PRECONDITION', () => {
    const { authz } = setup();
    authz.allow(admin, 'viewer', 'aurae.node.v0.NodeService/Reboot');
    authz.deny(admin, 'viewer', 'aurae.node.v0.NodeService/Shutdown');
    expect(authz.revoke(admin, 'viewer', 'aurae.node.v0.NodeService/Reboot')).toMatchObject({ removed: 1, notes: [] });
    expect(authz.revoke(admin, 'viewer', null)).toEqual({ removed: 1, rules: [], notes: [] });
    expect(() => authz.revoke(admin, 'viewer', null)).toThrow(new AuraeError('NOT_FOUND', 'identity "viewer" has no rules: see aer authz policy --identity viewer'));
    expect(() => authz.revoke(admin, 'viewer', 'a.B/C')).toThrow(/identity "viewer" has no rule for "a.B\/C"/);
    try {
      authz.revoke(admin, 'nova', 'aurae.node.v0.NodeService/Shutdown');
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringContaining('come from the node config (authz.policy)') });
    }
    authz.deny(admin, 'nova', 'aurae.node.v0.NodeService/Reboot');
    expect(authz.revoke(admin, 'nova', null)).toMatchObject({
      removed: 1,
      notes: ['2 rule(s) come from the node config (authz.policy) and stay: edit the config to change them'],
    });
  });

  it('API rules survive a restart (a new core over the same database); config rules come from the config only', () => {
    const first = setup();
    first.authz.allow(admin, 'viewer', 'aurae.node.v0.NodeService/Reboot');
    const second = setup({ configRules: [] }, first.db);
    expect(second.authz.check(who('viewer'), 'aurae.node.v0.NodeService/Reboot')).toBeNull();
    expect(second.authz.policy().rules.map((r) => r.source)).toEqual(['api']);
  });

  it('audit stamps the time; a failing write is logged, not thrown', () => {
    const { authz } = setup();
    authz.audit({ identity: 'nova', method: 'm.S/M', code: 'OK', detail: '', peer: 'p' });
    expect(authz.listAudit({ limit: 10 })).toEqual([{ id: 1, time: '2026-02-03T04:05:06.000Z', identity: 'nova', method: 'm.S/M', code: 'OK', detail: '', peer: 'p', count: 1, firstTime: '2026-02-03T04:05:06.000Z' }]);

    const records: LogFields[] = [];
    const log = createJsonLogger({ subsystem: 't', write: (l) => void records.push(JSON.parse(l)) });
    const broken: AuthzStore = { ...setup().store, appendAudit: () => { throw new Error('disk I/O error'); } };
    const failing = createAuthz({ admins: [], configRules: [], store: broken, log });
    expect(() => failing.audit({ identity: 'x', method: 'm.S/M', code: 'OK', detail: '', peer: 'p' })).not.toThrow();
    expect(records).toEqual([expect.objectContaining({ level: 'error', msg: 'audit write failed', method: 'm.S/M', err: expect.objectContaining({ message: 'disk I/O error' }) })]);
  });

  it('reports config rules that match no served method', () => {
    const { authz } = setup({ configRules: [{ identity: 'nova', allow: ['aurae.node.v0.NodeService/*'], deny: ['aurae.schedule.v0.CronService/*'] }] });
    expect(authz.unmatchedConfigRules()).toEqual([{ identity: 'nova', effect: 'deny', pattern: 'aurae.schedule.v0.CronService/*', source: 'config' }]);
  });

  it('methodNames lists the full names of grpc-js service definitions', () => {
    expect([...methodNames([{ a: { path: '/x.S/A' }, b: { path: '/x.S/B' } }, { c: { path: '/y.T/C' } }])]).toEqual(['x.S/A', 'x.S/B', 'y.T/C']);
  });
});
