// The node's private PKI: a CA, the node's server certificate and client certificates (ECDSA P-256).
// Used by the image build and by tests; auraed itself only reads the resulting PEM files.
export {
  type CertificateAuthority,
  type CaOptions,
  type CertifiedKey,
  type ClientCertRequest,
  type IssueOptions,
  type ServerCertRequest,
  CA_VALIDITY_DAYS,
  LEAF_VALIDITY_DAYS,
  PkiError,
  caPathLength,
  createCa,
  createIntermediateCa,
  issuerChainPem,
  issueClientCert,
  issueServerCert,
  recertifyCa,
  serverCertSans,
  splitPemCertificates,
} from './certificates';
export { type EnsurePkiOptions, type EnsurePkiResult, type PkiFiles, ensurePki, pkiFiles } from './ensure-pki';
