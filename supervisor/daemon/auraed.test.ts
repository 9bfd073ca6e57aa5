import { describe, expect, it } from 'vitest';
import { parseNodeConfig } from '../config';
import { childPowerdownMs, shutdownTimeoutMs } from './auraed';

const config = (graceMs: number) =>
  parseNodeConfig({ version: 1, node: { name: 'n' }, pki: { caCert: '/a', serverCert: '/b', serverKey: '/c' }, shutdown: { graceMs } }, 'test');

describe('shutdownTimeoutMs', () => {
  it('stays well inside init\'s grace period, between 100 ms and 3 s', () => {
    expect(shutdownTimeoutMs(config(5000))).toBe(3000);
    expect(shutdownTimeoutMs(config(1000))).toBe(600);
    expect(shutdownTimeoutMs(config(0))).toBe(100);
  });
});

describe('childPowerdownMs (vms.shutdownPowerdownMs)', () => {
  const withVms = (graceMs: number, vms: Record<string, unknown>) =>
    parseNodeConfig({ version: 1, node: { name: 'n' }, pki: { caCert: '/a', serverCert: '/b', serverKey: '/c' }, shutdown: { graceMs }, vms }, 'test');

  it('defaults to the in-flight call timeout, min(3 s, 0.6 × shutdown.graceMs), as before', () => {
    expect(config(5000).vms.shutdownPowerdownMs).toBeNull();
    expect(childPowerdownMs(config(5000), shutdownTimeoutMs(config(5000)))).toBe(3000);
    expect(childPowerdownMs(config(1000), shutdownTimeoutMs(config(1000)))).toBe(600);
  });

  it('can be raised past 3 s when shutdown.graceMs leaves room for it', () => {
    const raised = withVms(30_000, { shutdownPowerdownMs: 20_000 });
    expect(childPowerdownMs(raised, shutdownTimeoutMs(raised))).toBe(20_000);
    expect(shutdownTimeoutMs(raised)).toBe(3000); // in-flight calls keep their own bound
  });

  it('must stay below shutdown.graceMs, and within 100..300000 ms: the error names the field and the fix', () => {
    expect(() => withVms(5000, { shutdownPowerdownMs: 5000 })).toThrow(
      /vms\.shutdownPowerdownMs: 5000 is not below shutdown\.graceMs \(5000\): init kills auraed and its QEMUs once shutdown\.graceMs has passed, so raise shutdown\.graceMs with it/,
    );
    expect(() => withVms(5000, { shutdownPowerdownMs: 50 })).toThrow(/vms\.shutdownPowerdownMs: /);
    expect(() => withVms(5000, { shutdownPowerdownMs: '4000' })).toThrow(/vms\.shutdownPowerdownMs: /);
    expect(() => withVms(5000, { shutdownPowerdownMS: 4000 })).toThrow(/vms: .*shutdownPowerdownMS/);
  });
});
