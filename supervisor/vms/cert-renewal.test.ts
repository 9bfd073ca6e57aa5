// The renewer's bookkeeping with a fake clock and a fake delivery: when it renews, what the router may accept
// while a delivery is unconfirmed, and what it accepts after (never the old certificate).
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../log';
import { CHILD_VALIDITY_DAYS, createCa, issueServerCert } from '../pki';
import { pemFingerprint } from '../pki/node-subtree';
import { type ChildRenewal, createChildCertRenewer } from './cert-renewal';

const DAY_MS = 86_400_000;

async function setup() {
  const ca = await createCa('test-ca');
  let now = Date.now();
  // Issued on the fake clock, as the parent would at that time.
  const cert = async () => (await issueServerCert(ca, { nodeName: 'web.aurae', validityDays: CHILD_VALIDITY_DAYS, now: new Date(now) })).certPem;
  const run = await cert();
  let deliver: (label: string, renewal: ChildRenewal) => Promise<void> = async () => undefined;
  const mints: string[] = [];
  const renewer = createChildCertRenewer({
    runningChildren: () => ['web'],
    runCertOf: () => run,
    mint: async () => {
      const pem = await cert();
      mints.push(pem);
      return { serverCertChainPem: pem, serverKeyPem: 'k', spawnCaCertPem: null };
    },
    send: (label, renewal) => deliver(label, renewal),
    now: () => now,
    log: silentLogger,
    checkEveryMs: 0,
  });
  renewer.minted('web', run, null);
  return { renewer, run, mints, advance: (ms: number) => void (now += ms), setDeliver: (d: typeof deliver) => void (deliver = d) };
}

describe('child certificate renewer', () => {
  it('renews only past half-life, or when forced', async () => {
    const { renewer, mints, advance } = await setup();
    await renewer.check();
    expect(mints).toHaveLength(0);
    advance((CHILD_VALIDITY_DAYS / 2) * DAY_MS + 1000);
    await renewer.check();
    expect(mints).toHaveLength(1);
    await renewer.check(); // the renewed certificate is fresh
    expect(mints).toHaveLength(1);
    await renewer.check(true);
    expect(mints).toHaveLength(2);
  });

  it('a lost answer keeps the sent certificates acceptable until one is confirmed; then only that one', async () => {
    const { renewer, run, mints, setDeliver } = await setup();
    setDeliver(async () => {
      throw new Error('deadline exceeded'); // the child may have installed it before the answer was lost
    });
    await renewer.check(true);
    await renewer.check(true);
    expect(renewer.pinsFor('web', run)).toEqual([run, ...mints].map(pemFingerprint));
    setDeliver(async () => undefined);
    await renewer.check(true);
    expect(renewer.pinsFor('web', run)).toEqual([pemFingerprint(mints[2]!)]);
    expect(renewer.pinsFor('web', run)).not.toContain(pemFingerprint(run));
  });

  it('a new run (re-spawn) starts over: the previous run\'s renewals are not accepted for it', async () => {
    const { renewer, run, mints } = await setup();
    await renewer.check(true);
    const ca = await createCa('other');
    const respawned = (await issueServerCert(ca, { nodeName: 'web.aurae' })).certPem;
    renewer.minted('web', respawned, null);
    expect(renewer.pinsFor('web', respawned)).toEqual([pemFingerprint(respawned)]);
    expect(renewer.pinsFor('web', run)).toEqual([pemFingerprint(run)]);
    expect(renewer.pinsFor('web', respawned)).not.toContain(pemFingerprint(mints[0]!));
  });
});

describe('renewNow (VmService/Renew)', () => {
  it('renews at once, whatever the age, and resolves with the certificate the child now serves: the only one pinned', async () => {
    const { renewer, run, mints } = await setup();
    const served = await renewer.renewNow('web');
    expect(mints).toHaveLength(1);
    expect(served).toBe(mints[0]);
    expect(renewer.pinsFor('web', run)).toEqual([pemFingerprint(served)]);
  });

  it('a failed delivery rejects with its cause and leaves the sent certificate pinned beside the current one', async () => {
    const { renewer, run, mints, setDeliver } = await setup();
    setDeliver(async () => {
      throw new Error('14 UNAVAILABLE: connection refused');
    });
    await expect(renewer.renewNow('web')).rejects.toThrow(/connection refused/);
    expect(renewer.pinsFor('web', run)).toEqual([run, mints[0]!].map(pemFingerprint));
  });

  it('waits for a renewal already in flight, then renews again (never two deliveries at once)', async () => {
    const { renewer, mints, setDeliver } = await setup();
    let inFlight = 0;
    let most = 0;
    setDeliver(async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setImmediate(r));
      inFlight--;
    });
    const [, served] = await Promise.all([renewer.check(true), renewer.renewNow('web')]);
    expect(mints).toHaveLength(2);
    expect(served).toBe(mints[1]);
    expect(most).toBe(1);
  });

  it('refuses a child this auraed did not mint the current run of', async () => {
    const { renewer } = await setup();
    await expect(renewer.renewNow('db')).rejects.toThrow(/child "db" does not run with an identity this auraed minted/);
  });
});
