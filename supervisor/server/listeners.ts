// Where auraed listens: a plan computed from the config, and the unix socket preparation it needs.
import { mkdir, lstat, unlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import type { NodeConfig } from '../config';

export type ListenTarget =
  | { kind: 'unix'; path: string; /** grpc-js address */ address: string }
  | { kind: 'tcp'; /** host:port from the config */ address: string };

/** The listeners for `listen`, unix socket first. A disabled (null) listener is left out. */
export function listenTargets(listen: NodeConfig['listen']): ListenTarget[] {
  const targets: ListenTarget[] = [];
  if (listen.socket !== null) targets.push({ kind: 'unix', path: listen.socket, address: `unix://${listen.socket}` });
  if (listen.tcp !== null) targets.push({ kind: 'tcp', address: listen.tcp });
  return targets;
}

/** Replace the port of a host:port (or [v6]:port) address with the one actually bound. */
export function withPort(address: string, port: number): string {
  return `${address.slice(0, address.lastIndexOf(':'))}:${port}`;
}

export class ListenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenError';
  }
}

/**
 * Make `path` bindable: create its directory, and remove a socket left behind by a previous auraed that died.
 * A socket someone still answers on is NOT removed (another auraed is running), nor is anything that is not a
 * socket: both are operator errors, reported with what to do.
 */
export async function prepareUnixSocket(path: string): Promise<'fresh' | 'removed-stale'> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'fresh';
    throw err;
  }
  if (!st.isSocket()) {
    throw new ListenError(`listen.socket ${path} exists and is not a socket: remove it or choose another path`);
  }
  if (await socketAnswers(path)) {
    throw new ListenError(`listen.socket ${path} is in use: another auraed is running; stop it first`);
  }
  await unlink(path);
  return 'removed-stale';
}

function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ path });
    const done = (answer: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(true), timeoutMs); // a hung listener is still someone's listener
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false)); // ECONNREFUSED: nobody behind it
  });
}
