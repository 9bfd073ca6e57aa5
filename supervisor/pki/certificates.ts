// Certificate issuing for the node's small private PKI: one CA, a server certificate per node and client
// certificates per identity. ECDSA P-256 with SHA-256 throughout (small, fast under QEMU TCG, accepted by
// grpc-js/OpenSSL). Pure functions over PEM strings; writing files is ensure-pki.ts's job.
import './reflect-metadata';
import { isIP } from 'node:net';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_authorityKeyIdentifier, id_ce_nameConstraints } from '@peculiar/asn1-x509';

/** A PEM certificate and its PEM ("PRIVATE KEY", PKCS#8) private key. */
export interface CertifiedKey {
  certPem: string;
  /** PKCS#8 ("BEGIN PRIVATE KEY"). */
  keyPem: string;
}

/** The CA's certificate and signing key. Keep `keyPem` secret: anyone holding it can mint admin certificates. */
export type CertificateAuthority = CertifiedKey;

export interface IssueOptions {
  /** Issue time (tests pin it); default now. notBefore is backdated an hour to tolerate guest clock skew. */
  now?: Date;
  /** Validity in days from `now`. */
  validityDays?: number;
}

export interface ServerCertRequest extends IssueOptions {
  /** The node name (a DNS label); becomes the CN and the first DNS SAN, and is the TLS server name clients use. */
  nodeName: string;
  /** CN when it differs from nodeName: a spawned child's CN is its node path (`aurae/web`), its SAN `web.aurae`. */
  commonName?: string;
  /** Extra SANs beside the defaults (nodeName, localhost, 127.0.0.1, ::1); IPs are recognised, the rest are DNS. */
  sans?: string[];
  /**
   * Add the loopback SANs localhost, 127.0.0.1 and ::1 (default true). False for certificates a spawn CA issues:
   * its name constraints permit only names below its node, so a loopback SAN would fail every handshake.
   */
  loopback?: boolean;
}

export interface ClientCertRequest extends IssueOptions {
  /** The caller identity auraed sees (CN), e.g. "admin". 1-64 printable ASCII characters. */
  identity: string;
}

export class PkiError extends Error {
  constructor(
    readonly code: 'PKI_INVALID_REQUEST' | 'PKI_INVALID_CA' | 'PKI_INCONSISTENT',
    message: string,
  ) {
    super(message);
    this.name = 'PkiError';
  }
}

export const CA_VALIDITY_DAYS = 20 * 365;
export const LEAF_VALIDITY_DAYS = 10 * 365;
/**
 * Client certificates (admins, users: `aer pki issue`, ensurePki's admin): one year. Unlike a node's own
 * certificate nothing breaks on a node when one expires; the holder asks for a new one.
 */
export const CLIENT_VALIDITY_DAYS = 365;
/**
 * What a parent mints for a spawned child (its server certificate, its spawn CA, the parent's own client
 * certificate for calls to children): three days. The parent renews them while the child runs, at half-life
 * (guest/identity.ts renewChildIdentity, supervisor/vms/cert-renewal.ts), so a child outlives a parent that
 * cannot reach it for up to a day and a half; a certificate, or spawn CA, left behind by a freed or re-spawned
 * VM (or stolen from one) is worthless three days after its last renewal at most, without any revocation list.
 */
export const CHILD_VALIDITY_DAYS = 3;
const CLOCK_SKEW_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

// Node's WebCrypto; passed explicitly so no library-global provider has to be configured.
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const crypto = webcrypto;
const KEY_ALGORITHM: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

const DNS_NAME = /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;
const IDENTITY = /^[\x21-\x7e]([\x20-\x7e]{0,62}[\x21-\x7e])?$/;

export interface CaOptions extends IssueOptions {
  /**
   * basicConstraints pathLenConstraint: how many intermediate CAs may follow below this one. Default 0 (signs
   * end-entity certificates only); null: unconstrained (a root whose spawn CAs carry the limit).
   */
  pathLength?: number | null;
}

/** Create a self-signed CA (CN = name); by default it may sign end-entity certificates only (pathLength 0). */
export async function createCa(name: string, options: CaOptions = {}): Promise<CertificateAuthority> {
  checkCaName(name);
  return selfSignedCa(name, await generateKeyPair(), options);
}

/**
 * Re-issue a self-signed CA's certificate with the SAME key and subject but a new pathLength (and validity from
 * `now`). Everything the old certificate signed still verifies against the new one; used to lift the
 * pathLength 0 of roots made before spawn CAs existed.
 */
export async function recertifyCa(ca: CertificateAuthority, options: CaOptions = {}): Promise<CertificateAuthority> {
  const { caCert, caKey } = await loadCa(ca, true);
  const name = caCert.subjectName.getField('CN')[0];
  if (name === undefined) throw new PkiError('PKI_INVALID_CA', `CA certificate "${caCert.subject}" has no CN`);
  const publicKey = await caCert.publicKey.export(KEY_ALGORITHM, ['verify'], crypto);
  const recertified = await selfSignedCa(name, { privateKey: caKey, publicKey }, options);
  return { certPem: recertified.certPem, keyPem: ca.keyPem };
}

/**
 * Create an intermediate CA (CN = name) signed by `issuer` with pathLenConstraint `pathLength`. Its certPem is
 * a chain: the new certificate, then the issuer's certificate(s) unless the issuer is a self-signed root, so a
 * server presenting `leaf + certPem` is verifiable by a client that trusts only the root.
 */
export async function createIntermediateCa(
  issuer: CertificateAuthority,
  request: IssueOptions & {
    name: string;
    pathLength: number;
    /**
     * Name constraints (critical): the CA may vouch only for proper subdomains of this DNS name (a spawn CA of
     * node `aurae/web` gets "web.aurae": it can issue db.web.aurae, never web.aurae or aurae) and for no IP
     * address. OpenSSL enforces them in every handshake below this CA. Omitted: unconstrained.
     */
    permittedDnsSubtree?: string;
  },
): Promise<CertificateAuthority> {
  checkCaName(request.name);
  if (request.permittedDnsSubtree !== undefined && !DNS_NAME.test(request.permittedDnsSubtree)) {
    throw new PkiError('PKI_INVALID_REQUEST', `permittedDnsSubtree ${JSON.stringify(request.permittedDnsSubtree)} is invalid: expected a DNS name, e.g. web.aurae`);
  }
  if (!Number.isInteger(request.pathLength) || request.pathLength < 0) {
    throw new PkiError('PKI_INVALID_REQUEST', `pathLength ${request.pathLength} is invalid: expected an integer >= 0`);
  }
  const { caCert, caKey } = await loadCa(issuer);
  const issuerLimit = caCert.getExtension(x509.BasicConstraintsExtension)?.pathLength;
  if (issuerLimit !== undefined && request.pathLength >= issuerLimit) {
    throw new PkiError(
      'PKI_INVALID_REQUEST',
      `CA "${caCert.subject}" has pathLenConstraint ${issuerLimit}: an intermediate below it may have at most ${issuerLimit - 1} (asked ${request.pathLength})`,
    );
  }
  const { cert, keys } = await signNewKey(caCert, caKey, request.name, request, [
    new x509.BasicConstraintsExtension(true, request.pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ...(request.permittedDnsSubtree !== undefined ? [nameConstraintsExtension(request.permittedDnsSubtree)] : []),
  ]);
  return { certPem: cert.toString('pem') + '\n' + issuerChainPem(issuer.certPem), keyPem: await exportPrivateKey(keys.privateKey) };
}

/**
 * Re-issue the intermediate CA whose certificate (chain) is `caCertPem` from `issuer`: the SAME subject, public
 * key and extensions (path length, name constraints), a new serial and validity from `now`. Needs no private
 * key of the CA itself, and everything that CA signed verifies against the new certificate (same key and
 * subject key identifier). Used to renew a running child's spawn CA. Returns the new certificate followed by
 * the issuer's chain, as createIntermediateCa does.
 */
export async function recertifyIntermediateCa(issuer: CertificateAuthority, caCertPem: string, options: IssueOptions = {}): Promise<string> {
  const first = splitPemCertificates(caCertPem)[0];
  if (first === undefined) throw new PkiError('PKI_INVALID_CA', 'no PEM certificate found in the CA to re-certify');
  const old = new x509.X509Certificate(first);
  if (!old.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw new PkiError('PKI_INVALID_CA', `certificate "${old.subject}" is not a CA: only a spawn CA is re-certified`);
  }
  const { caCert, caKey } = await loadCa(issuer);
  if (old.issuer !== caCert.subject) {
    throw new PkiError('PKI_INVALID_REQUEST', `CA "${old.subject}" is issued by "${old.issuer}", not by "${caCert.subject}": only its own issuer re-certifies it`);
  }
  const caKeyId = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const { notBefore, notAfter } = validity(options, LEAF_VALIDITY_DAYS);
  const publicKey = await old.publicKey.export(KEY_ALGORITHM, ['verify'], crypto);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: old.subjectName,
      issuer: caCert.subjectName,
      notBefore,
      notAfter,
      publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        ...old.extensions.filter((e) => e.type !== id_ce_authorityKeyIdentifier),
        ...(caKeyId ? [new x509.AuthorityKeyIdentifierExtension(caKeyId, false)] : []),
      ],
    },
    crypto,
  );
  return cert.toString('pem') + '\n' + issuerChainPem(issuer.certPem);
}

/**
 * NameConstraints (RFC 5280 §4.2.1.10, critical as it MUST be): permitted dNSName ".<dnsName>" (OpenSSL reads a
 * leading dot as "proper subdomains only"), excluded every IPv4 and IPv6 address (0.0.0.0/0, ::/0). Built with
 * the ASN.1 schema classes @peculiar/x509 itself uses, so no DER is written by hand.
 */
function nameConstraintsExtension(dnsName: string): x509.Extension {
  const value = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees([new GeneralSubtree({ base: new GeneralName({ dNSName: `.${dnsName}` }) })]),
    excludedSubtrees: new GeneralSubtrees([
      new GeneralSubtree({ base: new GeneralName({ iPAddress: '0.0.0.0/0' }) }),
      new GeneralSubtree({ base: new GeneralName({ iPAddress: '::/0' }) }),
    ]),
  });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(value));
}

/**
 * The DNS name a CA's name constraints confine it to (its permitted dNSName without the leading dot), null
 * when the first certificate in `certPem` has no name constraints, or a problem string when they are not the
 * shape createIntermediateCa writes (one permitted dNSName, every IP address excluded).
 */
export function caNameConstraints(certPem: string): { dnsSubtree: string } | { problem: string } | null {
  const first = splitPemCertificates(certPem)[0];
  if (first === undefined) throw new PkiError('PKI_INVALID_CA', 'no PEM certificate found');
  const ext = new x509.X509Certificate(first).getExtension(id_ce_nameConstraints);
  if (!ext) return null;
  const nc = AsnConvert.parse(ext.value, NameConstraints);
  const permitted = [...(nc.permittedSubtrees ?? [])].map((s) => s.base);
  const excluded = [...(nc.excludedSubtrees ?? [])].map((s) => s.base.iPAddress);
  const dns = permitted.length === 1 ? permitted[0]!.dNSName : undefined;
  if (!ext.critical) return { problem: 'name constraints are not critical' };
  if (dns === undefined || !dns.startsWith('.')) return { problem: 'name constraints do not permit exactly one DNS subtree ".NAME"' };
  if (!excluded.includes('0.0.0.0/0') || !excluded.includes('::/0')) return { problem: 'name constraints do not exclude every IP address' };
  return { dnsSubtree: dns.slice(1) };
}

/** The PEM certificates in `pem`, in order. */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((c) => `${c}\n`) ?? [];
}

/**
 * What a certificate issued by the CA `caCertPem` (a cert or chain) must be sent with: the CA's chain, minus a
 * self-signed root (clients have that). Empty for certificates issued directly by a root.
 */
export function issuerChainPem(caCertPem: string): string {
  return splitPemCertificates(caCertPem)
    .filter((pem) => {
      const cert = new x509.X509Certificate(pem);
      return cert.subject !== cert.issuer;
    })
    .join('');
}

/** The pathLenConstraint of the first certificate in `certPem` (undefined: none or not a CA). */
export function caPathLength(certPem: string): number | undefined {
  const first = splitPemCertificates(certPem)[0];
  if (first === undefined) throw new PkiError('PKI_INVALID_CA', 'no PEM certificate found');
  return new x509.X509Certificate(first).getExtension(x509.BasicConstraintsExtension)?.pathLength;
}

function checkCaName(name: string): void {
  if (!IDENTITY.test(name)) {
    throw new PkiError('PKI_INVALID_REQUEST', `CA name ${JSON.stringify(name)} is invalid: use 1-64 printable ASCII characters`);
  }
}

async function selfSignedCa(name: string, keys: CryptoKeyPair, options: CaOptions): Promise<CertificateAuthority> {
  const pathLength = options.pathLength === undefined ? 0 : options.pathLength;
  const { notBefore, notAfter } = validity(options, CA_VALIDITY_DAYS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: [{ CN: [name] }],
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, pathLength ?? undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportPrivateKey(keys.privateKey) };
}

/** The SANs a node's server certificate carries, in order, without duplicates. */
export function serverCertSans(nodeName: string, extra: string[] = [], loopback = true): x509.JsonGeneralName[] {
  const names = [nodeName, ...(loopback ? ['localhost', '127.0.0.1', '::1'] : []), ...extra];
  const seen = new Set<string>();
  const sans: x509.JsonGeneralName[] = [];
  for (const name of names) {
    if (seen.has(name)) continue;
    seen.add(name);
    if (isIP(name)) sans.push({ type: 'ip', value: name });
    else if (DNS_NAME.test(name)) sans.push({ type: 'dns', value: name });
    else throw new PkiError('PKI_INVALID_REQUEST', `SAN ${JSON.stringify(name)} is neither an IP address nor a DNS name`);
  }
  return sans;
}

/** Issue the node's TLS server certificate (EKU serverAuth). */
export async function issueServerCert(ca: CertificateAuthority, request: ServerCertRequest): Promise<CertifiedKey> {
  const sans = serverCertSans(request.nodeName, request.sans, request.loopback ?? true);
  if (request.commonName !== undefined && !IDENTITY.test(request.commonName)) {
    throw new PkiError('PKI_INVALID_REQUEST', `common name ${JSON.stringify(request.commonName)} is invalid: use 1-64 printable ASCII characters`);
  }
  return issueLeaf(ca, request.commonName ?? request.nodeName, request, [
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
    new x509.SubjectAlternativeNameExtension(sans, false),
  ]);
}

/** Issue a client certificate for `identity` (CN = identity, EKU clientAuth), valid CLIENT_VALIDITY_DAYS by default. */
export async function issueClientCert(ca: CertificateAuthority, request: ClientCertRequest): Promise<CertifiedKey> {
  if (!IDENTITY.test(request.identity)) {
    throw new PkiError(
      'PKI_INVALID_REQUEST',
      `client identity ${JSON.stringify(request.identity)} is invalid: use 1-64 printable ASCII characters, no leading or trailing space`,
    );
  }
  if (request.validityDays !== undefined && !(Number.isInteger(request.validityDays) && request.validityDays >= 1 && request.validityDays <= 3650)) {
    throw new PkiError('PKI_INVALID_REQUEST', `validity ${request.validityDays} days is invalid: expected a whole number of days from 1 to 3650`);
  }
  return issueLeaf(ca, request.identity, { ...request, validityDays: request.validityDays ?? CLIENT_VALIDITY_DAYS }, [
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
  ]);
}

async function issueLeaf(
  ca: CertificateAuthority,
  commonName: string,
  options: IssueOptions,
  extensions: x509.Extension[],
): Promise<CertifiedKey> {
  const { caCert, caKey } = await loadCa(ca);
  const { cert, keys } = await signNewKey(caCert, caKey, commonName, options, [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ...extensions,
  ]);
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportPrivateKey(keys.privateKey) };
}

/**
 * A fresh key pair and its certificate CN=commonName signed by the CA (validity from `options`, default
 * LEAF_VALIDITY_DAYS): `extensions`, then the subject key identifier and the CA's key identifier. The one
 * place both intermediate CAs and leaves are signed.
 */
async function signNewKey(
  caCert: x509.X509Certificate,
  caKey: CryptoKey,
  commonName: string,
  options: IssueOptions,
  extensions: x509.Extension[],
): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair }> {
  const caKeyId = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const keys = await generateKeyPair();
  const { notBefore, notAfter } = validity(options, LEAF_VALIDITY_DAYS);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: [{ CN: [commonName] }],
      issuer: caCert.subjectName,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        ...extensions,
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        ...(caKeyId ? [new x509.AuthorityKeyIdentifierExtension(caKeyId, false)] : []),
      ],
    },
    crypto,
  );
  return { cert, keys };
}

/** The CA's own (first) certificate and its signing key; `extractable` for re-certifying. */
async function loadCa(ca: CertificateAuthority, extractable = false): Promise<{ caCert: x509.X509Certificate; caKey: CryptoKey }> {
  let caCert: x509.X509Certificate;
  try {
    // certPem may be a chain (an intermediate CA followed by its issuers): the CA is the first certificate.
    caCert = new x509.X509Certificate(splitPemCertificates(ca.certPem)[0] ?? ca.certPem);
  } catch (err) {
    throw new PkiError('PKI_INVALID_CA', `CA certificate is not a valid PEM certificate (${(err as Error).message})`);
  }
  if (!caCert.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw new PkiError('PKI_INVALID_CA', `certificate "${caCert.subject}" is not a CA (basicConstraints CA:FALSE or missing)`);
  }
  let caKey: CryptoKey;
  try {
    caKey = await crypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(ca.keyPem), KEY_ALGORITHM, extractable, ['sign']);
  } catch (err) {
    throw new PkiError('PKI_INVALID_CA', `CA key is not a PEM PKCS#8 ECDSA P-256 private key (${(err as Error).message})`);
  }
  return { caCert, caKey };
}

async function generateKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
}

async function exportPrivateKey(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY') + '\n';
}

function validity(options: IssueOptions, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const now = (options.now ?? new Date()).getTime();
  const days = options.validityDays ?? defaultDays;
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + days * DAY_MS) };
}

/** 16 random bytes as hex, first bit clear so the DER INTEGER is positive without padding (RFC 5280 §4.1.2.2). */
function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}
