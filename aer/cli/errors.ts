// One line per failure, saying what failed and what to do. Transport failures surface from grpc-js as
// UNAVAILABLE with a description; TLS problems are told apart by that text because the fix differs
// (the client config, not the network).
import { AuraeApiError, ClientConfigError } from '../sdk';

export interface ErrorContext {
  /** The client config in use, when it was loaded. */
  configPath?: string;
}

const TLS_FAILURE = /certificate|self[- ]signed|unable to (get|verify)|alert|handshake|SSL|TLS|Hostname\/IP|altnames|ERR_/i;

export function describeError(err: unknown, context: ErrorContext = {}): string {
  if (err instanceof ClientConfigError) return `aer: ${err.message}`;
  if (err instanceof AuraeApiError) {
    const at = `auraed at ${err.address}`;
    const config = context.configPath ? `the client config ${context.configPath}` : 'the client config';
    switch (err.code) {
      case 'UNAVAILABLE':
        if (TLS_FAILURE.test(err.details)) {
          return `aer: TLS with ${at} failed (${oneLine(err.details)}): check ${config}: ca, cert and key must come from this node's PKI and "node" must be its name`;
        }
        return `aer: cannot reach ${at}: is the node running and is the address right? (${oneLine(err.details)})`;
      case 'DEADLINE_EXCEEDED':
        return `aer: ${at} did not answer in time: is the address right and the node responsive?`;
      case 'UNAUTHENTICATED':
        return `aer: ${at} did not accept our identity (${oneLine(err.details)}): check the cert and key in ${config}`;
      case 'PERMISSION_DENIED':
      case 'FAILED_PRECONDITION':
      case 'INVALID_ARGUMENT':
      case 'NOT_FOUND':
      case 'RESOURCE_EXHAUSTED':
        return `aer: ${oneLine(err.details)}`;
      case 'UNIMPLEMENTED':
        return `aer: ${at} does not implement ${err.method}: is aer newer than auraed?`;
      default:
        return `aer: ${err.method} failed at ${err.address} (${err.code}): ${oneLine(err.details)}`;
    }
  }
  return `aer: ${err instanceof Error ? err.message : String(err)}`;
}

/** Collapse whitespace; drop grpc-js's empty trailing "Resolution note:". */
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').replace(/\s*Resolution note:\s*$/, '').trim();
}
