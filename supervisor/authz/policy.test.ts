import { describe, expect, it } from 'vitest';
import { covers, identityProblem, matches, methodPatternProblem, pathWithin, scopeProblem, shellWord } from './patterns';
import { ADMIN_ONLY_METHODS, OPEN_METHODS, PARENT_ONLY_METHODS, type Policy, type PolicyRule, type Target, decide, decisionDetail, denialMessage, ruleNotes } from './policy';

const rule = (identity: string, effect: 'allow' | 'deny', pattern: string, source: 'config' | 'api' = 'config'): PolicyRule => ({
  identity,
  effect,
  pattern,
  source,
  ...(source === 'api' ? { createdBy: 'admin', createdAt: '2026-01-01T00:00:00.000Z' } : {}),
});

// The seeds' example: nova.Allow(runtime.Run), nova.Deny(schedule.Cron), written against this node's names.
const policy: Policy = {
  admins: new Set(['admin']),
  open: OPEN_METHODS,
  adminOnly: ADMIN_ONLY_METHODS,
  rules: [
    rule('nova', 'allow', 'aurae.runtime.v0.CellService/*'),
    rule('nova', 'deny', 'aurae.runtime.v0.CellService/Free'),
    rule('nova', 'deny', 'aurae.schedule.v0.CronService/*'),
    rule('nova', 'allow', 'aurae.schedule.v0.CronService/List', 'api'),
    rule('ops', 'allow', '*'),
    rule('ops', 'deny', 'aurae.node.v0.NodeService/Shutdown', 'api'),
    rule('reader', 'allow', 'aurae.observe.v0.ObserveService/GetLogs'),
    // Rules for an admin change nothing.
    rule('admin', 'deny', '*'),
  ],
};

describe('decide', () => {
  it.each([
    // identity, method, allowed, reason
    ['admin', 'aurae.node.v0.NodeService/Shutdown', true, 'admin'],
    ['admin', 'aurae.authz.v0.AuthzService/Allow', true, 'admin'],
    ['admin', 'no.such.Service/Anything', true, 'admin'],
    ['stranger', 'grpc.health.v1.Health/Check', true, 'open'],
    ['stranger', 'grpc.health.v1.Health/Watch', true, 'open'],
    ['stranger', 'aurae.discovery.v0.DiscoveryService/Discover', true, 'open'],
    ['stranger', 'aurae.node.v0.NodeService/Shutdown', false, 'default'],
    ['stranger', 'aurae.authz.v0.AuthzService/GetPolicy', false, 'default'],
    ['nova', 'aurae.runtime.v0.CellService/Allocate', true, 'allow'],
    ['nova', 'aurae.runtime.v0.CellService/Free', false, 'deny'],
    ['nova', 'aurae.schedule.v0.CronService/Add', false, 'deny'],
    // Deny wins over allow, across sources: the API allow does not lift the config deny.
    ['nova', 'aurae.schedule.v0.CronService/List', false, 'deny'],
    ['nova', 'aurae.node.v0.NodeService/Reboot', false, 'default'],
    // "*" grants everything except policy edits, and an API deny still carves out.
    ['ops', 'aurae.node.v0.NodeService/Reboot', true, 'allow'],
    ['ops', 'aurae.authz.v0.AuthzService/ListAudit', true, 'allow'],
    ['ops', 'aurae.authz.v0.AuthzService/Allow', false, 'admin-only'],
    ['ops', 'aurae.authz.v0.AuthzService/Revoke', false, 'admin-only'],
    ['ops', 'aurae.node.v0.NodeService/Shutdown', false, 'deny'],
    // Names match exactly: case and prefixes matter.
    ['reader', 'aurae.observe.v0.ObserveService/GetLogs', true, 'allow'],
    ['reader', 'aurae.observe.v0.ObserveService/getlogs', false, 'default'],
    ['reader', 'aurae.observe.v0.ObserveService/GetLogsAll', false, 'default'],
    ['nova', 'aurae.runtime.v0.CellServiceX/Allocate', false, 'default'],
    ['Nova', 'aurae.runtime.v0.CellService/Allocate', false, 'default'],
  ] as const)('%s → %s: allowed=%s (%s)', (identity, method, allowed, reason) => {
    const decision = decide(policy, identity, method);
    expect(decision.allowed).toBe(allowed);
    expect(decision.reason).toBe(reason);
  });

  it('names the rule that decided', () => {
    expect(decide(policy, 'nova', 'aurae.schedule.v0.CronService/List')).toEqual({ allowed: false, reason: 'deny', rule: policy.rules[2] });
    expect(decide(policy, 'nova', 'aurae.runtime.v0.CellService/Start')).toEqual({ allowed: true, reason: 'allow', rule: policy.rules[0] });
  });

  it('an empty policy allows admins and probes only', () => {
    const empty: Policy = { admins: new Set(), open: OPEN_METHODS, adminOnly: ADMIN_ONLY_METHODS, rules: [] };
    expect(decide(empty, 'admin', 'aurae.node.v0.NodeService/Shutdown').allowed).toBe(false);
    expect(decide(empty, 'admin', 'grpc.health.v1.Health/Check').allowed).toBe(true);
  });
});

describe('denialMessage', () => {
  const message = (identity: string, method: string) => {
    const d = decide(policy, identity, method);
    if (d.allowed) throw new Error('expected a denial');
    return denialMessage(identity, method, d);
  };

  it('default deny: names identity and method and gives the grant command', () => {
    expect(message('stranger', 'aurae.node.v0.NodeService/Shutdown')).toBe(
      'identity "stranger" may not call aurae.node.v0.NodeService/Shutdown: no rule allows it and non-admin identities are denied by default: ' +
        'an admin can grant it with: aer authz allow stranger aurae.node.v0.NodeService/Shutdown',
    );
    // Identities that are not plain shell words are quoted in the hint.
    expect(message("o'brien x", 'aurae.node.v0.NodeService/Reboot')).toMatch(/aer authz allow 'o'\\''brien x' aurae\.node\.v0\.NodeService\/Reboot$/);
  });

  it('deny by a config rule says to change the config; by an API rule gives the revoke command', () => {
    expect(message('nova', 'aurae.schedule.v0.CronService/Add')).toBe(
      'identity "nova" may not call aurae.schedule.v0.CronService/Add: denied by the rule deny "aurae.schedule.v0.CronService/*" in the node config ' +
        '(authz.policy); deny wins over allow: remove that rule from the config to lift it',
    );
    expect(message('ops', 'aurae.node.v0.NodeService/Shutdown')).toBe(
      'identity "ops" may not call aurae.node.v0.NodeService/Shutdown: denied by the rule deny "aurae.node.v0.NodeService/Shutdown" (added by admin); ' +
        'deny wins over allow: an admin can lift it with: aer authz revoke ops aurae.node.v0.NodeService/Shutdown',
    );
  });

  it('admin-only methods say so', () => {
    expect(message('ops', 'aurae.authz.v0.AuthzService/Deny')).toBe(
      'identity "ops" may not call aurae.authz.v0.AuthzService/Deny: only identities in authz.admins (node config) may change the policy',
    );
  });

  it('audit details are short and name the deciding rule', () => {
    expect(decisionDetail(decide(policy, 'stranger', 'a.B/C'))).toBe('denied: no rule allows it (default deny)');
    expect(decisionDetail(decide(policy, 'nova', 'aurae.schedule.v0.CronService/Add'))).toBe('denied by config rule deny aurae.schedule.v0.CronService/*');
    expect(decisionDetail(decide(policy, 'ops', 'aurae.authz.v0.AuthzService/Allow'))).toBe('denied: policy edits are admin-only');
  });
});

describe('ruleNotes', () => {
  it('warns when a new allow stays shadowed by a deny, targets an admin, or includes policy edits', () => {
    expect(ruleNotes(policy, 'nova', 'allow', 'aurae.schedule.v0.CronService/Add')).toEqual([
      'still denied by the config rule deny "aurae.schedule.v0.CronService/*" (deny wins over allow)',
    ]);
    expect(ruleNotes(policy, 'admin', 'allow', 'a.B/C')).toEqual(['"admin" is in authz.admins: rules do not restrict admins', 'still denied by the config rule deny "*" (deny wins over allow)']);
    expect(ruleNotes(policy, 'ops', 'allow', 'aurae.authz.v0.AuthzService/*')).toEqual(['policy edits (AuthzService Allow/Deny/Revoke) stay admin-only']);
    expect(ruleNotes(policy, 'nova', 'allow', 'aurae.runtime.v0.CellService/Start')).toEqual([]);
  });

  it('warns that denying probes has no effect', () => {
    expect(ruleNotes(policy, 'nova', 'deny', 'grpc.health.v1.Health/Check')).toEqual(['health checks and Discover stay open to every certificate of the node CA']);
    expect(ruleNotes(policy, 'nova', 'deny', '*')).toHaveLength(1);
    expect(ruleNotes(policy, 'nova', 'deny', 'aurae.node.v0.NodeService/*')).toEqual([]);
  });
});

describe('patterns', () => {
  it.each(['*', 'aurae.node.v0.NodeService/*', 'aurae.node.v0.NodeService/Shutdown', 'grpc.health.v1.Health/Check', 'a.B/c_1'])('accepts %s', (p) => {
    expect(methodPatternProblem(p)).toBeNull();
  });

  it.each([
    ['', 'method: must not be empty: use "*", "package.Service/*" or "package.Service/Method", e.g. "aurae.node.v0.NodeService/Shutdown"'],
    ['runtime.Run', 'method: "runtime.Run" has no "/": use'],
    ['NodeService/Shutdown', 'method: "NodeService" is not a full service name'],
    ['/Shutdown', 'method: "" is not a full service name'],
    ['aurae.node.v0.NodeService/', 'method: "" is not a method name'],
    ['aurae.node.v0.NodeService/Shut*', 'method: "Shut*" is not a method name'],
    ['aurae.node.v0.NodeService/a/b', 'method: "a/b" is not a method name'],
    ['aurae..v0.NodeService/*', 'method: "aurae..v0.NodeService" is not a full service name'],
    ['**', 'method: "**" has no "/"'],
    ['aurae.node.v0.NodeService/Shut down', 'method: character 31 (U+0020) is not allowed'],
    ['aurae.node.v0.NodeService/Shutdown\n', 'method: character 35 (U+000A) is not allowed'],
    ['aurae.node.v0.NodéService/*', 'method: character 18 (U+00E9) is not allowed'],
    ['a.B/\u202e', 'method: character 5 (U+202E) is not allowed'],
    ['a.B/' + 'x'.repeat(253), 'method: at most 256 characters (got 257)'],
  ])('rejects %j', (p, message) => {
    expect(methodPatternProblem(p)).toContain(message);
  });

  it.each([
    ['', 'identity: must not be empty'],
    ['x'.repeat(65), 'identity: at most 64 characters (got 65)'],
    [' nova', 'identity: must not start or end with a space'],
    ['nova\t', 'identity: character 5 (U+0009) is not printable ASCII'],
    ['növa', 'identity: character 2 (U+00F6) is not printable ASCII'],
    ['👾', 'identity: character 1 (U+1F47E) is not printable ASCII'],
  ])('rejects identity %j', (identity, message) => {
    expect(identityProblem(identity)).toContain(message);
  });

  it('accepts the identities the PKI issues', () => {
    for (const identity of ['admin', 'nova', 'ci@example', 'x', 'a b', 'x'.repeat(64)]) expect(identityProblem(identity)).toBeNull();
  });

  it('matches and covers', () => {
    expect(matches('*', 'a.B/C')).toBe(true);
    expect(matches('a.B/*', 'a.B/C')).toBe(true);
    expect(matches('a.B/*', 'a.BC/D')).toBe(false);
    expect(matches('a.B/C', 'a.B/C')).toBe(true);
    expect(matches('a.B/C', 'a.B/CD')).toBe(false);
    expect(covers('*', 'a.B/*')).toBe(true);
    expect(covers('a.B/*', '*')).toBe(false);
    expect(covers('a.B/*', 'a.B/C')).toBe(true);
    expect(covers('a.B/C', 'a.B/*')).toBe(false);
    expect(covers('a.B/C', 'a.B/C')).toBe(true);
  });

  it('shellWord quotes what a shell would split or expand', () => {
    expect(shellWord('nova')).toBe('nova');
    expect(shellWord('a.B/*')).toBe(`'a.B/*'`);
    expect(shellWord("it's")).toBe(`'it'\\''s'`);
  });
});

describe('decide with resources, nodes and run-as (scoped rules)', () => {
  const CELLS = 'aurae.cells.v0.CellService';
  const scoped = (identity: string, effect: 'allow' | 'deny', pattern: string, scope: PolicyRule['scope'], source: PolicyRule['source'] = 'config'): PolicyRule => ({ identity, effect, pattern, source, scope });
  const tenants: Policy = {
    admins: new Set(['admin']),
    open: OPEN_METHODS,
    adminOnly: ADMIN_ONLY_METHODS,
    parentOnly: PARENT_ONLY_METHODS,
    rules: [
      scoped('nova', 'allow', `${CELLS}/*`, { cells: ['nova/*'] }),
      scoped('nova', 'deny', `${CELLS}/Free`, { cells: ['nova/keep'] }),
      scoped('nova', 'allow', 'aurae.vms.v0.VmService/*', { vms: ['nova-*'] }),
      scoped('web-ops', 'allow', `${CELLS}/*`, { nodes: ['aurae/web'] }),
      scoped('builder', 'allow', `${CELLS}/Start`, { cells: ['ci'], uids: ['0', '1000-1999'] }),
      scoped('builder', 'deny', `${CELLS}/Start`, { uids: ['1500'] }, 'parent'),
      rule('ops', 'allow', '*'),
    ],
  };
  const user = { uid: 1000, gid: 1000 };
  const root = { uid: 0, gid: 0 };

  it.each([
    // identity, method, target, allowed, reason
    ['nova', `${CELLS}/Stop`, { resource: { cell: 'nova/web' } }, true, 'allow'],
    ['nova', `${CELLS}/Stop`, { resource: { cell: 'nova/web/cache' } }, true, 'allow'],
    // Another tenant's cell, the tenant's own top cell, and a look-alike name are outside "nova/*".
    ['nova', `${CELLS}/Stop`, { resource: { cell: 'other/db' } }, false, 'default'],
    ['nova', `${CELLS}/Free`, { resource: { cell: 'nova' } }, false, 'default'],
    ['nova', `${CELLS}/Allocate`, { resource: { cell: 'novax' } }, false, 'default'],
    // A scoped deny carves out one cell (and its subtree).
    ['nova', `${CELLS}/Free`, { resource: { cell: 'nova/keep/x' } }, false, 'deny'],
    ['nova', `${CELLS}/Free`, { resource: { cell: 'nova/other' } }, true, 'allow'],
    // Node-level calls ({}): rules scoped to cells do not allow them.
    ['nova', `${CELLS}/Stop`, { resource: {} }, false, 'default'],
    ['nova', 'aurae.node.v0.NodeService/Reboot', {}, false, 'default'],
    // Method level (resource not known yet): allowed when some rule could allow, the resource check follows.
    ['nova', `${CELLS}/List`, { resource: null }, true, 'allow'],
    ['nova', 'aurae.node.v0.NodeService/Reboot', { resource: null }, false, 'default'],
    // VMs by name pattern; a VM rule says nothing about cells.
    ['nova', 'aurae.vms.v0.VmService/Stop', { resource: { vm: 'nova-1' } }, true, 'allow'],
    ['nova', 'aurae.vms.v0.VmService/Stop', { resource: { vm: 'prod' } }, false, 'default'],
    ['nova', `${CELLS}/Stop`, { resource: { vm: 'nova-1' } }, false, 'default'],
    // Nodes: a rule for aurae/web applies there and below, not at the root nor where the node is unknown.
    ['web-ops', `${CELLS}/Stop`, { node: 'aurae/web', resource: { cell: 'x' } }, true, 'allow'],
    ['web-ops', `${CELLS}/Stop`, { node: 'aurae/web/db', resource: { cell: 'x' } }, true, 'allow'],
    ['web-ops', `${CELLS}/Stop`, { node: 'aurae', resource: { cell: 'x' } }, false, 'default'],
    ['web-ops', `${CELLS}/Stop`, { node: 'aurae/webby', resource: { cell: 'x' } }, false, 'default'],
    ['web-ops', `${CELLS}/Stop`, { resource: { cell: 'x' } }, false, 'default'],
    // Run-as: non-root by default; pinned ranges exactly; a deny pinned to a uid refuses only that uid.
    ['nova', `${CELLS}/Start`, { resource: { cell: 'nova/web', runAs: user } }, true, 'allow'],
    ['nova', `${CELLS}/Start`, { resource: { cell: 'nova/web', runAs: root } }, false, 'run-as'],
    ['nova', `${CELLS}/Start`, { resource: { cell: 'nova/web', runAs: { uid: 1000, gid: 0 } } }, false, 'run-as'],
    ['ops', `${CELLS}/Start`, { resource: { cell: 'any', runAs: root } }, false, 'run-as'],
    ['ops', `${CELLS}/Start`, { resource: { cell: 'any', runAs: user } }, true, 'allow'],
    ['builder', `${CELLS}/Start`, { resource: { cell: 'ci', runAs: root } }, true, 'allow'],
    ['builder', `${CELLS}/Start`, { resource: { cell: 'ci/x', runAs: { uid: 1999, gid: 1999 } } }, true, 'allow'],
    ['builder', `${CELLS}/Start`, { resource: { cell: 'ci', runAs: { uid: 2000, gid: 2000 } } }, false, 'run-as'],
    ['builder', `${CELLS}/Start`, { resource: { cell: 'ci', runAs: { uid: 1000, gid: 5 } } }, false, 'run-as'],
    ['builder', `${CELLS}/Start`, { resource: { cell: 'ci', runAs: { uid: 1500, gid: 1500 } } }, false, 'deny'],
    // Admins are not confined, run-as included; parent-only methods: only the parent itself, not even admins.
    ['admin', `${CELLS}/Start`, { resource: { cell: 'other', runAs: root } }, true, 'admin'],
    ['admin', 'aurae.authz.v0.AuthzService/SetParentRules', {}, false, 'parent-only'],
    ['aurae', 'aurae.authz.v0.AuthzService/SetParentRules', { fromParent: true }, true, 'parent'],
    ['ops', 'aurae.authz.v0.AuthzService/SetParentRules', {}, false, 'parent-only'],
    // The parent itself drives the pods of its VM sandbox (it is their agent's owner); relayed callers are not it.
    ['aurae', 'aurae.pods.v0.PodService/Run', { fromParent: true, resource: { cell: 'web', runAs: root } }, true, 'parent'],
    ['aurae', 'aurae.pods.v0.PodService/Run', { resource: { cell: 'web', runAs: root } }, false, 'default'],
    ['aurae', `${CELLS}/Start`, { fromParent: true, resource: { cell: 'web', runAs: root } }, false, 'default'],
  ] as const)('%s → %s %j: allowed=%s (%s)', (identity, method, target, allowed, reason) => {
    const decision = decide(tenants, identity, method, target as Target);
    expect(decision.allowed).toBe(allowed);
    expect(decision.reason).toBe(reason);
  });

  it('denial messages name the resource and the grant; inherited denies say where to lift them', () => {
    const message = (identity: string, method: string, target: Target) => {
      const d = decide(tenants, identity, method, target);
      if (d.allowed) throw new Error('expected a denial');
      return denialMessage(identity, method, d);
    };
    expect(message('nova', `${CELLS}/Stop`, { resource: { cell: 'other/db' } })).toBe(
      `identity "nova" may not call ${CELLS}/Stop on cell "other/db": its rules for this method cover only --cell 'nova/*': an admin can grant it with: aer authz allow nova ${CELLS}/Stop --cell other/db`,
    );
    expect(message('stranger', 'aurae.vms.v0.VmService/Stop', { resource: { vm: 'web' } })).toBe(
      'identity "stranger" may not call aurae.vms.v0.VmService/Stop on VM "web": no rule allows it and non-admin identities are denied by default: an admin can grant it with: aer authz allow stranger aurae.vms.v0.VmService/Stop --vm web',
    );
    expect(message('builder', `${CELLS}/Start`, { resource: { cell: 'ci', runAs: { uid: 1500, gid: 1500 } } })).toMatch(
      /denied by the rule deny "aurae.cells.v0.CellService\/Start" --uid 1500 inherited from this node's parent; .*at the node where it was written/,
    );
    expect(message('builder', `${CELLS}/Start`, { resource: { cell: 'ci', runAs: { uid: 2000, gid: 2000 } } })).toMatch(/its rules allow only --uid 0 --uid 1000-1999: .* --cell ci --uid 2000$/);
    expect(decisionDetail(decide(tenants, 'nova', `${CELLS}/Stop`, { resource: { cell: 'other' } }))).toBe('denied: no rule allows it on cell "other" (default deny)');
    expect(decisionDetail(decide(tenants, 'nova', `${CELLS}/Free`, { resource: { cell: 'nova/keep' } }))).toBe("denied by config rule deny aurae.cells.v0.CellService/Free --cell nova/keep");
  });

  it('a scoped deny does not shadow an allow of wider scope in the notes; root grants are noted', () => {
    expect(ruleNotes(tenants, 'nova', 'allow', `${CELLS}/Free`, { cells: ['nova/*'] })).toEqual([]);
    expect(ruleNotes(tenants, 'nova', 'allow', `${CELLS}/Free`, { cells: ['nova/keep'] })).toEqual(['still denied by the config rule deny "aurae.cells.v0.CellService/Free" --cell nova/keep (deny wins over allow)']);
    expect(ruleNotes(tenants, 'nova', 'allow', `${CELLS}/Start`, { uids: ['0-10'] })).toEqual(['executables of "nova" may run as root (uid 0) where this rule applies']);
  });
});

describe('scope patterns', () => {
  it.each([
    ['cells', '*'], ['cells', 'nova'], ['cells', 'nova/*'], ['cells', 'nova/web/x'],
    ['nodes', 'aurae'], ['nodes', 'aurae/*'], ['vms', 'web'], ['vms', 'nova-*'], ['vms', '*'],
    ['uids', '0'], ['uids', '1000-1999'], ['gids', '4294967294'],
  ] as const)('accepts %s %j', (field, value) => {
    expect(scopeProblem({ [field]: [value] })).toBeNull();
  });

  it.each([
    ['cells', 'Nova', 'cells[0]: "Nova" is not a cell path pattern'],
    ['cells', 'nova/', 'cells[0]: "nova/" is not a cell path pattern'],
    ['cells', '../etc', 'cells[0]: "../etc" is not a cell path pattern'],
    ['cells', 'nova/**', 'cells[0]: "nova/**" is not a cell path pattern'],
    ['cells', '', 'cells[0]: "" is not a cell path pattern'],
    ['nodes', 'aurae//web', 'nodes[0]: "aurae//web" is not a node path pattern'],
    ['vms', 'web/x', 'vms[0]: "web/x" is not a VM name pattern'],
    ['vms', '*-x', 'vms[0]: "*-x" is not a VM name pattern'],
    ['uids', '-1', 'uids[0]: "-1" is not an id range'],
    ['uids', '2000-1000', 'uids[0]: "2000-1000" is not an id range'],
    ['gids', '4294967295', 'gids[0]: "4294967295" is not an id range'],
    ['uids', 'root', 'uids[0]: "root" is not an id range'],
  ] as const)('rejects %s %j naming the field', (field, value, message) => {
    expect(scopeProblem({ [field]: [value] })).toContain(message);
  });

  it('matches paths as subtrees: "x" is x and below, "x/*" only below', () => {
    expect(pathWithin('nova', 'nova')).toBe(true);
    expect(pathWithin('nova', 'nova/a/b')).toBe(true);
    expect(pathWithin('nova', 'novax')).toBe(false);
    expect(pathWithin('nova/*', 'nova')).toBe(false);
    expect(pathWithin('nova/*', 'nova/a')).toBe(true);
    expect(pathWithin('*', 'anything')).toBe(true);
  });
});
