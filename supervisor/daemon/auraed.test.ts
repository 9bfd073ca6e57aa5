import { describe, expect, it } from 'vitest';
import { parseNodeConfig } from '../config';
import { shutdownTimeoutMs } from './auraed';

const config = (graceMs: number) =>
  parseNodeConfig({ version: 1, node: { name: 'n' }, pki: { caCert: '/a', serverCert: '/b', serverKey: '/c' }, shutdown: { graceMs } }, 'test');

describe('shutdownTimeoutMs', () => {
  it('stays well inside init\'s grace period, between 100 ms and 3 s', () => {
    expect(shutdownTimeoutMs(config(5000))).toBe(3000);
    expect(shutdownTimeoutMs(config(1000))).toBe(600);
    expect(shutdownTimeoutMs(config(0))).toBe(100);
  });
});
