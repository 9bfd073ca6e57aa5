// Where the CRI socket is: the node config's cri.socket, or beside the API socket. Pure.
import { dirname, join } from 'node:path';
import type { NodeConfig } from '../config';
import { RUN_DIR } from '../config/node-paths';

/** The file name beside listen.socket: /run/aurae/cri.sock on a node (what kubelet is pointed at). */
export const CRI_SOCKET_NAME = 'cri.sock';

/**
 * The CRI socket's path, or null when the CRI is disabled. Beside listen.socket when cri.socket is not set, so that
 * every auraed that keeps its API socket in a directory of its own (host-tier test nodes, the dev node) keeps its
 * CRI socket there too instead of sharing /run/aurae/cri.sock.
 */
export function criSocketPath(config: Pick<NodeConfig, 'cri' | 'listen'>): string | null {
  if (!config.cri.enabled) return null;
  if (config.cri.socket !== null) return config.cri.socket;
  return join(config.listen.socket === null ? RUN_DIR : dirname(config.listen.socket), CRI_SOCKET_NAME);
}
