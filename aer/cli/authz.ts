// `aer authz …`: show and edit the node's authorization policy, read its audit log.
import { type Command, InvalidArgumentError } from 'commander';
import type { AuditRecord, AuraeClient, AuthzPolicy, AuthzRule } from '../sdk';
import type { OutputFormat, Print, WithClient } from './types';


/** commander parser for a positive integer option (usage error otherwise). */
export function positiveInt(max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) throw new InvalidArgumentError(`expected an integer from 1 to ${max}`);
    return Number(value);
  };
}

export function registerAuthzCommands(program: Command, withClient: WithClient, print: Print): void {
  const authz = program
    .command('authz')
    .description('who may call what on the node: policy rules per identity (certificate CN) and the audit log');

  authz
    .command('policy')
    .description('show admins, open methods and the effective rules (config + API)')
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
      .action(
        withClient(async (c, output, identity: string, method: string) => {
          const change = await c.authz[effect](identity, method);
          const verb = effect === 'allow' ? 'allowed' : 'denied';
          const head = change.changed ? `${identity}: ${verb} ${method}` : `${identity}: already ${verb} ${method} (no change)`;
          print(output, { identity, effect, method, ...change }, [head, ...change.notes.map((n) => `note: ${n}`)].join('\n'));
        }),
      );
  }

  authz
    .command('revoke')
    .description('remove IDENTITY\'s API rules for METHOD, or all of them; config rules stay; admins only')
    .argument('<identity>', 'the client certificate common name')
    .argument('[method]', 'the pattern to revoke (both allow and deny); default: every API rule of the identity')
    .action(
      withClient(async (c, output, identity: string, method: string | undefined) => {
        const result = await c.authz.revoke(identity, method);
        const head = `${identity}: revoked ${result.removed} rule${result.removed === 1 ? '' : 's'}${method ? ` for ${method}` : ''}`;
        print(output, { identity, method: method ?? null, ...result }, [head, ...result.notes.map((n) => `note: ${n}`)].join('\n'));
      }),
    );

  authz
    .command('audit')
    .description('mutating and refused calls, newest first')
    .option('--limit <n>', 'at most n records (1-1000)', positiveInt(1000), 20)
    .option('--identity <name>', 'only this identity\'s calls')
    .option('--method <pattern>', 'only methods matching the pattern')
    .option('--code <status>', 'only this outcome, e.g. PERMISSION_DENIED')
    .option('--before <id>', 'only records older than this id (page back)', positiveInt(Number.MAX_SAFE_INTEGER))
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
    lines.push(formatTable([['IDENTITY', 'EFFECT', 'METHOD', 'SOURCE'], ...policy.rules.map((r) => [r.identity, r.effect, r.method, ruleOrigin(r)])]));
  }
  return lines.join('\n');
}

/** The audit table; NODE (forwarded to) and VIA (relayed by the parent) columns only when a record has them. */
export function formatAudit(records: AuditRecord[]): string {
  if (records.length === 0) return 'no audit records match';
  const withNode = records.some((r) => r.node !== undefined);
  const withVia = records.some((r) => r.via !== undefined);
  const optional = (on: boolean, value: string) => (on ? [value] : []);
  return formatTable([
    ['ID', 'TIME', 'IDENTITY', 'METHOD', 'CODE', 'PEER', ...optional(withNode, 'NODE'), ...optional(withVia, 'VIA'), 'DETAIL'],
    ...records.map((r) => [
      String(r.id),
      r.time,
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
