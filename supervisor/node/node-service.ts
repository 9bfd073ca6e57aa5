import { AuraeError } from '../errors';
import type {
  NodeServiceRebootRequest,
  NodeServiceRebootResponse,
  NodeServiceRenewIdentityRequest,
  NodeServiceRenewIdentityResponse,
  NodeServiceServer,
  NodeServiceShutdownRequest,
  NodeServiceShutdownResponse,
} from '../gen/aurae/node/v0/node';
import { type RpcContext, unary } from '../server';
import type { IdentityRenewal, NodeIdentity } from './identity-renewal';
import { type PowerControl, validateReason } from './power';

/**
 * @param identity this node's renewable identity (spawned nodes); null on a node whose certificate comes from
 *   the image build: RenewIdentity then answers FAILED_PRECONDITION.
 */
export function createNodeService(ctx: RpcContext, power: PowerControl, identity: NodeIdentity | null = null): NodeServiceServer {
  return {
    // Parent-only (supervisor/authz PARENT_ONLY_METHODS): admins included in the refusal.
    renewIdentity: unary(ctx, {
      method: 'aurae.node.v0.NodeService/RenewIdentity',
      access: 'admin',
      validate: validateRenewal,
      summary: () => 'identity renewed',
      run: (renewal): NodeServiceRenewIdentityResponse => {
        if (!identity) throw new AuraeError('FAILED_PRECONDITION', 'this node was not spawned by a parent: its certificate comes from the image build (aer pki), not from a renewal');
        return identity.renew(renewal);
      },
    }),
    shutdown: unary(ctx, {
      method: 'aurae.node.v0.NodeService/Shutdown',
      access: 'admin',
      validate: (request: NodeServiceShutdownRequest) => validateReason(request.reason),
      run: async (reason, caller): Promise<NodeServiceShutdownResponse> => {
        await power.request('poweroff', reason, caller);
        return {};
      },
    }),
    reboot: unary(ctx, {
      method: 'aurae.node.v0.NodeService/Reboot',
      access: 'admin',
      validate: (request: NodeServiceRebootRequest) => validateReason(request.reason),
      run: async (reason, caller): Promise<NodeServiceRebootResponse> => {
        await power.request('reboot', reason, caller);
        return {};
      },
    }),
  };
}

/** A few certificates and one key: far below this. */
const MAX_PEM_CHARS = 64 * 1024;
const PEM_CERTS = /^(-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?)+$/;
const PEM_KEY = /^-{5}BEGIN PRIVATE KEY-{5}\r?\n[A-Za-z0-9+/=\r\n]+-{5}END PRIVATE KEY-{5}\r?\n?$/;

/** RenewIdentity's fields: PEM shapes and sizes (what they say is checked by the node identity). */
export function validateRenewal(request: NodeServiceRenewIdentityRequest): IdentityRenewal {
  const field = (name: string, value: string, shape: RegExp, what: string, optional = false): string => {
    if (optional && value === '') return value;
    if (value.length > MAX_PEM_CHARS) throw new AuraeError('INVALID_ARGUMENT', `${name}: at most ${MAX_PEM_CHARS} characters (got ${value.length})`);
    if (!shape.test(value)) throw new AuraeError('INVALID_ARGUMENT', `${name}: expected ${what}`);
    return value;
  };
  return {
    serverCertChainPem: field('server_cert_chain', request.serverCertChain, PEM_CERTS, 'PEM certificate(s) ("-----BEGIN CERTIFICATE-----")'),
    serverKeyPem: field('server_key', request.serverKey, PEM_KEY, 'one PEM PKCS#8 private key'),
    spawnCaCertPem: field('spawn_ca_cert', request.spawnCaCert, PEM_CERTS, 'PEM certificate(s), or empty when the node has no spawn CA', true),
  };
}
