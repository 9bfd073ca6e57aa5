import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCa, createIntermediateCa, issueClientCert } from '../pki';
import { createIssuerCheck } from './issuer';

const der = (pem: string) => new X509Certificate(pem).raw;

describe('issuer check', () => {
  it('tells root-signed identities from spawn-CA-signed certificates', async () => {
    const root = await createCa('root', { pathLength: null });
    const parentSpawnCa = await createIntermediateCa(root, { name: 'aurae spawn CA', pathLength: 0 });
    const otherSpawnCa = await createIntermediateCa(root, { name: 'aurae/web spawn CA', pathLength: 0 });
    const admin = await issueClientCert(root, { identity: 'admin' });
    const parent = await issueClientCert(parentSpawnCa, { identity: 'aurae' });
    // What a compromised child could mint with its own spawn CA key.
    const forged = await issueClientCert(otherSpawnCa, { identity: 'admin' });
    const check = createIssuerCheck(root.certPem, parentSpawnCa.certPem);
    expect(check(der(admin.certPem))).toBe('root');
    expect(check(der(parent.certPem))).toBe('parent');
    expect(check(der(forged.certPem))).toBe('other');
    expect(createIssuerCheck(root.certPem, null)(der(parent.certPem))).toBe('other');
    expect(check(Buffer.from('not a certificate'))).toBe('other');
  });
});

describe('callerFromCall with the issuer check', () => {
  it('refuses identities a spawn CA minted, and lets only the parent speak for others', async () => {
    const { callerFromCall } = await import('./caller');
    const { Metadata } = await import('@grpc/grpc-js');
    const root = await createCa('root', { pathLength: null });
    const parentSpawnCa = await createIntermediateCa(root, { name: 'aurae spawn CA', pathLength: 0 });
    const childSpawnCa = await createIntermediateCa(root, { name: 'aurae/web spawn CA', pathLength: 0 });
    const check = createIssuerCheck(root.certPem, parentSpawnCa.certPem);
    const call = (pem: string, onBehalfOf?: string) => {
      const metadata = new Metadata();
      if (onBehalfOf) metadata.set('aurae-on-behalf-of', onBehalfOf);
      const cert = new X509Certificate(pem);
      return {
        getPeer: () => '127.0.0.1:1',
        getAuthContext: () => ({ transportSecurityType: 'ssl', sslPeerCertificate: { subject: { CN: cert.subject.replace(/^CN=/, '').split('\n')[0] }, raw: cert.raw } }),
        metadata,
      } as never;
    };
    const admins = new Set(['admin']);
    const admin = await issueClientCert(root, { identity: 'admin' });
    expect(callerFromCall(call(admin.certPem), admins, 'aurae', check)).toMatchObject({ identity: 'admin', admin: true });
    const forged = await issueClientCert(childSpawnCa, { identity: 'admin' });
    expect(() => callerFromCall(call(forged.certPem), admins, 'aurae', check)).toThrow(expect.objectContaining({ code: 'UNAUTHENTICATED' }));
    const parent = await issueClientCert(parentSpawnCa, { identity: 'aurae' });
    expect(callerFromCall(call(parent.certPem, 'admin'), admins, 'aurae', check)).toMatchObject({ identity: 'admin', admin: true, via: 'aurae' });
    expect(callerFromCall(call(parent.certPem), admins, 'aurae', check)).toMatchObject({ identity: 'aurae', admin: false });
    // A root-signed certificate named like the parent is not the parent.
    const impostor = await issueClientCert(root, { identity: 'aurae' });
    expect(() => callerFromCall(call(impostor.certPem, 'admin'), admins, 'aurae', check)).toThrow(expect.objectContaining({ code: 'PERMISSION_DENIED' }));
  });
});
