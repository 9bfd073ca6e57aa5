// `aer authz …`: show and edit the node's authorization policy, read its audit log.
import type { Command } from 'commander';
import { type AuditRecord, type AuraeClient, type AuthzPolicy, type AuthzRule, type AuthzScope, RANGES } from '../sdk';
import { intIn } from './options';
import type { OutputFormat, Print, WithClient } from './types';


/** commander collector for a repeatable option. */
const collect = (value: string, previous: string[]): string[] => [...previous, value];

interface ScopeOptions {
  cell: string[];
  vm: string[];
  /** Optional: callers written before pod scopes leave it out. */
  pod?: string[];
  onNode: string[];
  uid: string[];
  gid: string[];
}

/** The rule scope the flags give; undefined when none (the rule applies to every resource). */
export function scopeFromOptions(o: ScopeOptions): AuthzScope | undefined {
  const scope: AuthzScope = {};
  if (o.cell.length) scope.cells = o.cell;
  if (o.vm.length) scope.vms = o.vm;
  if (o.pod?.length) scope.pods = o.pod;
  if (o.onNode.length) scope.nodes = o.onNode;
  if (o.uid.length) scope.uids = o.uid;
  if (o.gid.length) scope.gids = o.gid;
  return Object.keys(scope).length ? scope : undefined;
}

/** The scope as the flags that give it, e.g. "--cell 'nova/*' --uid 1000-1999"; "" for none. */
export function formatScope(scope: AuthzScope | undefined): string {
  const flags: Array<[keyof AuthzScope, string]> = [['cells', '--cell'], ['vms', '--vm'], ['pods', '--pod'], ['nodes', '--on-node'], ['uids', '--uid'], ['gids', '--gid']];
  const word = (w: string) => (/^[A-Za-z0-9._/:@=+-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);
  return flags.flatMap(([field, flag]) => (scope?.[field] ?? []).map((v) => `${flag} ${word(v)}`)).join(' ');
}

export function registerAuthzCommands(program: Command, withClient: WithClient, print: Print): void {
  const authz = program
    .command('authz')
    .description('who may call what on the node: policy rules per identity (certificate CN) and the audit log');

  authz
    .command('policy')
    .description('show admins, open methods and the effective rules (config, inherited from the parent, API) with their scopes')
    .option('--identity <name>', 'only this identity\'s rules')
    .action(
      withClient(async (c, output, options: { identity?: string }) => {
        const policy = await c.authz.policy({ identity: options.identity });
        print(output, policy, formatPolicy(policy));
      }),
    );

  for (const effect of ['allow', 'deny'] as const) {
    authz
      .command(effect)
      .description(
        effect === 'allow'
          ? 'allow IDENTITY to call METHOD ("*", "package.Service/*" or "package.Service/Method"); admins only'
          : 'deny IDENTITY the METHOD pattern; deny wins over allow; admins only',
      )
      .argument('<identity>', 'the client certificate common name, e.g. nova')
      .argument('<method>', 'method pattern, e.g. aurae.node.v0.NodeService/Reboot (quote patterns with *)')
      .option('--cell <pattern>', 'only cells: "nova" (nova and below), "nova/*" (only below nova), "*"; repeatable', collect, [])
      .option('--vm <pattern>', 'only child VMs: a name "web", a prefix "nova-*", "*"; repeatable', collect, [])
      .option('--pod <pattern>', 'only pods (with their cells, logs, events): a name "web", a prefix "nova-*", "*"; repeatable', collect, [])
      .option('--on-node <pattern>', 'only on nodes of the tree: "aurae/web" (that node and below), "aurae/*"; repeatable', collect, [])
      .option('--uid <range>', `user ids executables may run as, "1000" or "1000-1999" (default: any but root); repeatable`, collect, [])
      .option('--gid <range>', 'group ids executables may run as (default: the --uid ranges, else any but root); repeatable', collect, [])
      .action(
        withClient(async (c, output, identity: string, method: string, options: ScopeOptions) => {
          const scope = scopeFromOptions(options);
          const change = await c.authz[effect](identity, method, scope);
          const verb = effect === 'allow' ? 'allowed' : 'denied';
          const on = scope ? ` ${formatScope(scope)}` : '';
          const head = change.changed ? `${identity}: ${verb} ${method}${on}` : `${identity}: already ${verb} ${method}${on} (no change)`;
          print(output, { identity, effect, method, ...(scope ? { scope } : {}), ...change }, [head, ...change.notes.map((n) => `note: ${n}`)].join('\n'));
        }),
      );
  }

  authz
    .command('revoke')
    .description('remove IDENTITY\'s API rules for METHOD, or all of them (of every scope, or only of the scope the flags give); config rules stay; admins only')
    .argument('<identity>', 'the client certificate common name')
    .argument('[method]', 'the pattern to revoke (both allow and deny); default: every API rule of the identity')
    .option('--cell <pattern>', 'only the rules with exactly this scope (as allow/deny gave it); repeatable', collect, [])
    .option('--vm <pattern>', 'as --cell, for the VM scope; repeatable', collect, [])
    .option('--pod <pattern>', 'as --cell, for the pod scope; repeatable', collect, [])
    .option('--on-node <pattern>', 'as --cell, for the node scope; repeatable', collect, [])
    .option('--uid <range>', 'as --cell, for the uid scope; repeatable', collect, [])
    .option('--gid <range>', 'as --cell, for the gid scope; repeatable', collect, [])
    .action(
      withClient(async (c, output, identity: string, method: string | undefined, options: ScopeOptions) => {
        const scope = scopeFromOptions(options);
        const result = await c.authz.revoke(identity, method, scope);
        const head = `${identity}: revoked ${result.removed} rule${result.removed === 1 ? '' : 's'}${method ? ` for ${method}` : ''}${scope ? ` ${formatScope(scope)}` : ''}`;
        print(output, { identity, method: method ?? null, ...(scope ? { scope } : {}), ...result }, [head, ...result.notes.map((n) => `note: ${n}`)].join('\n'));
      }),
    );

  authz
    .command('audit')
    .description('mutating and refused calls, newest first')
    .option('--limit <n>', `at most n records (${RANGES.auditLimit.join('-')})`, intIn(...RANGES.auditLimit), 20)
    .option('--identity <name>', 'only this identity\'s calls')
    .option('--method <pattern>', 'only methods matching the pattern')
    .option('--code <status>', 'only this outcome, e.g. PERMISSION_DENIED')
    .option('--before <id>', 'only records older than this id (page back)', intIn(1, Number.MAX_SAFE_INTEGER))
    .action(
      withClient(async (c, output, options: { limit: number; identity?: string; method?: string; code?: string; before?: number }) => {
        const records = await c.authz.audit({ limit: options.limit, identity: options.identity, method: options.method, code: options.code, beforeId: options.before });
        print(output, records, formatAudit(records));
      }),
    );
}

/** Left-aligned columns, two spaces apart; the last column is not padded. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

function ruleOrigin(rule: AuthzRule): string {
  if (rule.source === 'config') return 'config';
  if (rule.source === 'parent') return 'parent (inherited)';
  return `api${rule.createdBy ? ` (${rule.createdBy}${rule.createdAt ? `, ${rule.createdAt}` : ''})` : ''}`;
}

export function formatPolicy(policy: AuthzPolicy): string {
  const lines = [
    `admins (may call everything): ${policy.admins.join(', ') || '(none)'}`,
    `open to every node certificate: ${policy.openMethods.join(', ')}`,
    `admin-only: ${policy.adminOnlyMethods.join(', ')}`,
    '',
  ];
  if (policy.rules.length === 0) {
    lines.push('no rules: identities other than the admins may call only the open methods');
  } else {
    // SCOPE only when a rule has one: unscoped rules apply to every cell, VM and node.
    const scoped = policy.rules.some((r) => r.scope);
    lines.push(
      formatTable([
        ['IDENTITY', 'EFFECT', 'METHOD', ...(scoped ? ['SCOPE'] : []), 'SOURCE'],
        ...policy.rules.map((r) => [r.identity, r.effect, r.method, ...(scoped ? [formatScope(r.scope) || '(all)'] : []), ruleOrigin(r)]),
      ]),
    );
  }
  return lines.join('\n');
}

/**
 * The audit table; NODE (forwarded to) and VIA (relayed by the parent) columns only when a record has them,
 * COUNT and FIRST (the first of an aggregated refusal's repeats; TIME is the last) only when one repeats.
 */
export function formatAudit(records: AuditRecord[]): string {
  if (records.length === 0) return 'no audit records match';
  const withCount = records.some((r) => (r.count ?? 1) > 1);
  const withNode = records.some((r) => r.node !== undefined);
  const withVia = records.some((r) => r.via !== undefined);
  const optional = (on: boolean, value: string) => (on ? [value] : []);
  return formatTable([
    ['ID', 'TIME', ...optional(withCount, 'COUNT'), ...optional(withCount, 'FIRST'), 'IDENTITY', 'METHOD', 'CODE', 'PEER', ...optional(withNode, 'NODE'), ...optional(withVia, 'VIA'), 'DETAIL'],
    ...records.map((r) => [
      String(r.id),
      r.time,
      ...optional(withCount, String(r.count ?? 1)),
      ...optional(withCount, (r.count ?? 1) > 1 ? r.firstTime || '-' : '-'),
      r.identity || '(none)',
      r.method,
      r.code,
      r.peer,
      ...optional(withNode, r.node ?? '-'),
      ...optional(withVia, r.via ?? '-'),
      r.detail,
    ]),
  ]);
}
