// Inheritance: what a child gets from its parent (the payload's authz.inherited, then pushes), how it keeps it
// across an auraed restart, who may push, and the push loop itself. The wire path (a real parent pushing to a
// real child over mTLS) is in inherit.route.test.ts.
import { EventEmitter } from 'node:events';
import { type Client, type ServerUnaryCall, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { parseNodeConfig } from '../config';
import { Effect } from '../gen/aurae/authz/v0/authz';
import { silentLogger } from '../log';
import type { RpcContext } from '../server';
import { type Db, migrate, openDatabase } from '../store';
import { createAuthz } from './authz';
import { AUTHZ_MIGRATIONS, createAuthzStore } from './authz-store';
import { createAuthzService } from './authz-service';
import { createParentRulePusher } from './push';
import type { InheritedRule } from './rule-store';
import { configInheritable } from '../../guest/payload';
import { fakeAuthContext, issuerByName } from '../server/testing';

const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});
const newDb = () => {
  const db = openDatabase(':memory:');
  dbs.push(db);
  return db;
};
const admin = { identity: 'admin', peer: 'p', admin: true };
const who = (identity: string) => ({ identity, peer: 'p', admin: false });
const CELLS = 'aurae.cells.v0.CellService';

function node(db: Db, inherited: InheritedRule[] = [], configRules = [] as Parameters<typeof createAuthz>[0]['configRules']) {
  return createAuthz({ admins: ['admin'], configRules, store: createAuthzStore(db, { auditMaxRecords: 100 }), log: silentLogger, nodePath: 'aurae/web', inherited });
}

describe('inherited rules at a child', () => {
  it('are rules of source "parent": a parent deny holds for calls that reach the child directly, over a child allow', () => {
    const child = node(newDb(), [
      { identity: 'nova', effect: 'allow', method: `${CELLS}/*`, cells: ['nova/*'] },
      { identity: 'nova', effect: 'deny', method: `${CELLS}/Free` },
    ]);
    // A direct caller (no parent in between) is judged by the inherited rules too.
    expect(child.check(who('nova'), `${CELLS}/Stop`, { resource: { cell: 'nova/web' } })).toBeNull();
    expect(child.check(who('nova'), `${CELLS}/Stop`, { resource: { cell: 'other' } })).not.toBeNull();
    // The child's own admin cannot lift the parent's deny with an API allow (deny wins).
    child.allow(admin, 'nova', `${CELLS}/Free`);
    expect(child.check(who('nova'), `${CELLS}/Free`, { resource: { cell: 'nova/web' } })?.message).toMatch(/inherited from this node's parent/);
    expect(child.policy('nova').rules.map((r) => r.source)).toEqual(['parent', 'parent', 'api']);
    // Inherited rules are read-only here: revoking them says where to change them.
    child.revoke(admin, 'nova', `${CELLS}/Free`);
    expect(() => child.revoke(admin, 'nova', `${CELLS}/Free`)).toThrow(expect.objectContaining({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/inherited from this node's parent/) }));
  });

  it('a push replaces them at once, survives an auraed restart on the same boot, and is dropped for a newer boot', () => {
    const db = newDb();
    const boot: InheritedRule[] = [{ identity: 'nova', effect: 'allow', method: `${CELLS}/List` }];
    const child = node(db, boot);
    const changes: number[] = [];
    child.onChange(() => changes.push(child.policy().rules.length));
    expect(child.check(who('nova'), `${CELLS}/List`, { resource: {} })).toBeNull();
    expect(child.setParentRules([{ identity: 'nova', effect: 'deny', method: '*' }])).toBe(1);
    expect(changes).toEqual([1]);
    expect(child.check(who('nova'), `${CELLS}/List`, { resource: {} })?.detail).toBe('denied by parent rule deny *');
    // auraed restarts inside the same VM (same payload, same state database): the pushed set stays.
    expect(node(db, boot).check(who('nova'), `${CELLS}/List`, { resource: {} })).not.toBeNull();
    // A new boot brings a new payload: its set is newer than anything pushed before.
    expect(node(db, [{ identity: 'nova', effect: 'allow', method: '*' }]).check(who('nova'), `${CELLS}/List`, { resource: {} })).toBeNull();
  });

  it('what a node hands on is its whole effective policy: config, inherited and API rules, with scopes', () => {
    const parent = node(newDb(), [{ identity: 'a', effect: 'deny', method: '*' }], [{ identity: 'b', allow: [`${CELLS}/*`], deny: [], cells: ['b'] }]);
    parent.allow(admin, 'c', `${CELLS}/Start`, { cells: ['c/*'], uids: ['1000-1999'] });
    expect(parent.inheritable()).toEqual([
      { identity: 'b', effect: 'allow', method: `${CELLS}/*`, cells: ['b'] },
      { identity: 'a', effect: 'deny', method: '*' },
      { identity: 'c', effect: 'allow', method: `${CELLS}/Start`, cells: ['c/*'], uids: ['1000-1999'] },
    ]);
    // An API edit is a change listeners (the push to children) hear about; a repeat is not.
    let heard = 0;
    parent.onChange(() => heard++);
    parent.deny(admin, 'c', `${CELLS}/Stop`);
    parent.deny(admin, 'c', `${CELLS}/Stop`);
    parent.revoke(admin, 'c', null);
    expect(heard).toBe(2);
  });

  it('the payload default (no running authz) is the parent config\'s own rules; the child config accepts them', () => {
    const config = parseNodeConfig({
      version: 1,
      node: { name: 'aurae' },
      pki: { caCert: '/p/ca.crt', serverCert: '/p/n.crt', serverKey: '/p/n.key' },
      authz: { policy: [{ identity: 'nova', allow: [`${CELLS}/*`], deny: [`${CELLS}/Free`], cells: ['nova/*'] }], inherited: [{ identity: 'x', effect: 'deny', method: '*' }] },
    } as never, 'test');
    expect(configInheritable(config.authz)).toEqual([
      { identity: 'x', effect: 'deny', method: '*' },
      { identity: 'nova', effect: 'allow', method: `${CELLS}/*`, cells: ['nova/*'] },
      { identity: 'nova', effect: 'deny', method: `${CELLS}/Free`, cells: ['nova/*'] },
    ]);
  });
});

describe('AuthzService/SetParentRules and scoped edits over the API', () => {
  function service(parentIdentity: string | null) {
    const authz = node(newDb());
    const ctx: RpcContext = { log: silentLogger, admins: new Set(['admin']), authz, parentIdentity, issuerOf: issuerByName(parentIdentity) };
    const svc = createAuthzService(ctx, authz);
    const call = (method: keyof typeof svc, request: object, cn: string) =>
      new Promise<{ code: number; details?: string; value?: any }>((resolve) => {
        const c = Object.assign(new EventEmitter(), {
          request,
          getPeer: () => 'p',
          getAuthContext: () => fakeAuthContext(cn),
        }) as unknown as ServerUnaryCall<never, unknown>;
        (svc[method] as unknown as (c: unknown, cb: (e: any, v?: unknown) => void) => void)(c, (e, v) => resolve(e ? { code: e.code, details: e.details } : { code: 0, value: v }));
      });
    return { authz, call };
  }
  const rule = (identity: string, effect: Effect, method: string, extra: object = {}) => ({ identity, effect, method, source: 0, createdBy: '', createdAt: '', cells: [], vms: [], nodes: [], uids: [], gids: [], ...extra });

  it('only the parent itself may push; admins and strangers are PERMISSION_DENIED', async () => {
    const { authz, call } = service('aurae');
    const push = { rules: [rule('nova', Effect.EFFECT_DENY, '*')] };
    expect(await call('setParentRules', push, 'admin')).toMatchObject({ code: status.PERMISSION_DENIED, details: expect.stringMatching(/only this node's parent may set the rules it inherits/) });
    expect(await call('setParentRules', push, 'nova')).toMatchObject({ code: status.PERMISSION_DENIED });
    expect(authz.policy().rules).toEqual([]);
    expect(await call('setParentRules', push, 'aurae')).toEqual({ code: 0, value: { rules: 1 } });
    expect(authz.policy().rules).toEqual([{ identity: 'nova', effect: 'deny', pattern: '*', source: 'parent' }]);
    // A node that was not spawned has no parent: nobody may push.
    expect((await service(null).call('setParentRules', push, 'aurae')).code).toBe(status.PERMISSION_DENIED);
  });

  it('bad pushes and bad scopes are INVALID_ARGUMENT naming the field', async () => {
    const { call } = service('aurae');
    expect(await call('setParentRules', { rules: [rule('nova', Effect.EFFECT_UNSPECIFIED, '*')] }, 'aurae')).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'rules[0].effect: must be EFFECT_ALLOW or EFFECT_DENY (got 0)' });
    expect(await call('setParentRules', { rules: [rule('nova', Effect.EFFECT_ALLOW, '*', { cells: ['../x'] })] }, 'aurae')).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^rules\[0\]\.cells\[0\]: "\.\.\/x" is not a cell path pattern/) });
    for (const [field, value, message] of [
      ['cells', ['nova', 'Bad'], /^cells\[1\]: "Bad" is not a cell path pattern/],
      ['nodes', ['aurae/'], /^nodes\[0\]: "aurae\/" is not a node path pattern/],
      ['vms', ['a b'], /^vms\[0\]: "a b" is not a VM name pattern/],
      ['uids', ['1000-'], /^uids\[0\]: "1000-" is not an id range/],
      ['gids', ['99999999999'], /^gids\[0\]: "99999999999" is not an id range/],
    ] as const) {
      const res = await call('allow', { identity: 'nova', method: '*', cells: [], vms: [], nodes: [], uids: [], gids: [], [field]: value }, 'admin');
      expect(res, field).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(message) });
    }
  });

  it('a scoped allow is stored with its scope, shown in GetPolicy, and audited with its flags', async () => {
    const { authz, call } = service('aurae');
    const res = await call('allow', { identity: 'nova', method: `${CELLS}/*`, cells: ['nova/*', 'nova/*'], vms: [], nodes: [], uids: ['1000-1999'], gids: [] }, 'admin');
    expect(res.value.rules).toEqual([expect.objectContaining({ identity: 'nova', cells: ['nova/*'], uids: ['1000-1999'], vms: [] })]);
    expect(authz.listAudit({ limit: 1 })[0]).toMatchObject({ code: 'OK', detail: `allow nova ${CELLS}/* --cell 'nova/*' --uid 1000-1999` });
    // The same pattern with another scope is another rule; deny of exactly this scope replaces it.
    await call('allow', { identity: 'nova', method: `${CELLS}/*`, cells: ['shared'], vms: [], nodes: [], uids: [], gids: [] }, 'admin');
    expect(authz.policy('nova').rules).toHaveLength(2);
    await call('deny', { identity: 'nova', method: `${CELLS}/*`, cells: ['shared'], vms: [], nodes: [], uids: [], gids: [] }, 'admin');
    expect(authz.policy('nova').rules.map((r) => `${r.effect} ${JSON.stringify(r.scope)}`)).toEqual(['allow {"cells":["nova/*"],"uids":["1000-1999"]}', 'deny {"cells":["shared"]}']);
  });
});

describe('the rule store migration', () => {
  it('keeps the rules of a database from before scopes, unscoped', () => {
    const db = newDb();
    migrate(db, 'authz', AUTHZ_MIGRATIONS);
    db.prepare("INSERT INTO authz_rules (identity, effect, pattern, created_by, created_at) VALUES ('nova', 'allow', '*', 'admin', 't')").run();
    const authz = node(db);
    expect(authz.policy().rules).toEqual([{ identity: 'nova', effect: 'allow', pattern: '*', source: 'api', createdBy: 'admin', createdAt: 't' }]);
    authz.allow(admin, 'nova', '*', { cells: ['x'] });
    expect(authz.policy().rules).toHaveLength(2);
  });
});

describe('the push to children', () => {
  function fakeChild(fail = 0) {
    const received: unknown[] = [];
    let failures = fail;
    const client = {
      makeUnaryRequest: (path: string, _ser: unknown, _de: unknown, request: unknown, _md: unknown, _opts: unknown, cb: (err: unknown) => void) => {
        expect(path).toBe('/aurae.authz.v0.AuthzService/SetParentRules');
        if (failures-- > 0) return setImmediate(() => cb(Object.assign(new Error('unavailable'), { code: 14 })));
        received.push(request);
        setImmediate(() => cb(null));
      },
    } as unknown as Client;
    return { client, received };
  }

  it('sends the current rules to every running child; a change during a push is sent after it (latest wins)', async () => {
    let rules: InheritedRule[] = [{ identity: 'nova', effect: 'allow', method: '*' }];
    const web = fakeChild();
    const db = fakeChild();
    const pusher = createParentRulePusher({ rules: () => rules, runningChildren: () => ['web', 'db'], clientFor: async (l) => (l === 'web' ? web : db).client, log: silentLogger });
    pusher.pushAll();
    rules = [{ identity: 'nova', effect: 'deny', method: '*', cells: ['x'] }];
    pusher.pushAll();
    await pusher.idle();
    expect(web.received).toHaveLength(2);
    expect((web.received[1] as { rules: unknown[] }).rules).toEqual([expect.objectContaining({ identity: 'nova', effect: Effect.EFFECT_DENY, method: '*', cells: ['x'] })]);
    expect(db.received).toHaveLength(2);
  });

  it('retries a failed push while the child runs, and gives up when it stopped', async () => {
    const web = fakeChild(2);
    const delays: number[] = [];
    const pusher = createParentRulePusher({
      rules: () => [],
      runningChildren: () => ['web'],
      clientFor: async () => web.client,
      log: silentLogger,
      setTimer: (fn, ms) => (delays.push(ms), setImmediate(fn)),
    });
    pusher.pushTo('web');
    await pusher.idle();
    expect(delays).toEqual([1000, 2000]);
    expect(web.received).toHaveLength(1);

    const gone = fakeChild(1);
    const stopped = createParentRulePusher({ rules: () => [], runningChildren: () => [], clientFor: async () => gone.client, log: silentLogger, setTimer: () => { throw new Error('must not retry'); } });
    stopped.pushTo('web');
    await stopped.idle();
    expect(gone.received).toEqual([]);
  });
});

describe('scopes in the node config (authz.policy, authz.inherited)', () => {
  const base = { version: 1, node: { name: 'aurae' }, pki: { caCert: '/p/ca.crt', serverCert: '/p/n.crt', serverKey: '/p/n.key' } };
  const parse = (authz: object) => parseNodeConfig({ ...base, authz } as never, 'node.json');
  const problems = (authz: object) => {
    try {
      parse(authz);
      return [];
    } catch (err) {
      return (err as { problems: string[] }).problems;
    }
  };

  it('an identity may have one entry per scope; the same scope twice is refused', () => {
    const ok = parse({ policy: [
      { identity: 'nova', allow: [`${CELLS}/*`], cells: ['nova/*'] },
      { identity: 'nova', allow: ['aurae.vms.v0.VmService/*'], vms: ['nova-*'] },
    ] });
    expect(ok.authz.policy).toHaveLength(2);
    expect(problems({ policy: [{ identity: 'nova', allow: ['*'], cells: ['a', 'b'] }, { identity: 'nova', deny: ['*'], cells: ['b', 'a'] }] })).toEqual([
      expect.stringMatching(/^authz\.policy\.1\.identity: "nova" already has an entry with the same scope \(authz\.policy\.0\)/),
    ]);
  });

  it('bad scope entries name the field', () => {
    expect(problems({ policy: [{ identity: 'nova', allow: ['*'], cells: ['nova', 'Nova/*'] }] })).toEqual([expect.stringMatching(/^authz\.policy\.0\.cells\.1: "Nova\/\*" is not a cell path pattern/)]);
    expect(problems({ policy: [{ identity: 'nova', allow: ['*'], uids: ['1-0'] }] })).toEqual([expect.stringMatching(/^authz\.policy\.0\.uids\.0: "1-0" is not an id range/)]);
    expect(problems({ inherited: [{ identity: 'nova', effect: 'allow', method: '*', nodes: ['aurae//x'] }] })).toEqual([expect.stringMatching(/^authz\.inherited\.0\.nodes\.0: "aurae\/\/x" is not a node path pattern/)]);
    expect(problems({ inherited: [{ identity: 'nova', effect: 'maybe', method: '*' }] })).toEqual([expect.stringMatching(/^authz\.inherited\.0\.effect/)]);
  });
});
