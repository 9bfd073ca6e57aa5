// `aer pki issue --days`: how long a client certificate is valid (the rest of the command: authz.test.ts).
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensurePki } from '../../supervisor/pki';
import type { AuraeClient } from '../sdk';
import { PKI_ISSUE_DEFAULT_DAYS, issueIdentity, parseDays } from './pki';
import { runAer } from './program';

const DAY_MS = 24 * 60 * 60 * 1000;
let dir: string;
let pkiDir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aer-pki-days-'));
  pkiDir = join(dir, 'pki');
  await ensurePki(pkiDir, { nodeName: 'node-7' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runAer(argv, { out: (t) => void out.push(t), err: (t) => void err.push(t), env: {}, connect: () => ({}) as AuraeClient });
  return { code, out, err };
}

/** Days from issue to notAfter (notBefore is backdated an hour for clock skew). */
const daysValid = (certPath: string, issuedAt: number) => Math.round((new Date(new X509Certificate(readFileSync(certPath)).validTo).getTime() - issuedAt) / DAY_MS);

describe('aer pki issue --days', () => {
  it('defaults to one year; --days N gives N days', async () => {
    expect(PKI_ISSUE_DEFAULT_DAYS).toBe(365);
    const now = Date.now();
    const byDefault = await run(['--address', 'unix:///s.sock', 'pki', 'issue', 'nova', '--pki', pkiDir, '-o', 'json']);
    expect(byDefault).toMatchObject({ code: 0, err: [] });
    expect(daysValid(join(pkiDir, 'nova.crt'), now)).toBe(365);
    const short = await run(['--address', 'unix:///s.sock', 'pki', 'issue', 'ci', '--pki', pkiDir, '--days', '7', '-o', 'json']);
    expect(short).toMatchObject({ code: 0, err: [] });
    expect(daysValid(join(pkiDir, 'ci.crt'), now)).toBe(7);
    expect(JSON.parse(short.out[0]!).notAfter).toBe(new Date(new X509Certificate(readFileSync(join(pkiDir, 'ci.crt'))).validTo).toISOString());
  });

  it('refuses a bad --days naming the option and the range, and writes nothing', async () => {
    for (const bad of ['0', '-1', '3651', '1.5', 'ten', '', '1e3']) {
      const res = await run(['--address', 'unix:///s.sock', 'pki', 'issue', 'bad', '--pki', pkiDir, '--days', bad]);
      expect(res.code, bad).toBe(1);
      expect(res.err[0]).toBe(`aer: --days ${JSON.stringify(bad)} is invalid: expected a whole number of days from 1 to 3650 (default 365)`);
    }
    expect(existsSync(join(pkiDir, 'bad.crt'))).toBe(false);
    expect(parseDays('3650')).toBe(3650);
    await expect(issueIdentity({ identity: 'x', pkiDir, outDir: dir, node: 'n', address: 'unix:///s', force: false, days: 0 })).rejects.toThrow(/--days "0" is invalid/);
  });

  it('ensurePki\'s admin certificate is a client certificate too: one year, renewed by the build within 30 days of expiry', () => {
    const admin = new X509Certificate(readFileSync(join(pkiDir, 'admin.crt')));
    expect(Math.round((new Date(admin.validTo).getTime() - new Date(admin.validFrom).getTime()) / DAY_MS)).toBe(365);
  });
});
