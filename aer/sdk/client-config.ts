// The client config aer and the SDK read: which node, where, and which certificates prove who we are.
// Path: connect({ config }) → env AURAE_CONFIG → ~/.config/aurae/client.json. Relative PEM paths are resolved
// against the config file's folder, so a config and its certificates can be moved (or shipped) together.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';
import { DNS_LABEL, expectedForm, isDnsLabel } from '../../supervisor/validation';

z.config(en());

/** The client config names the root node it connects to: one label (a child is reached through it). */
const NODE_NAME_EXPECTED = 'the node name (a DNS label), e.g. node-1';

/** "unix:///abs/path" or "host:port" / "[v6]:port". */
export const AddressSchema = z.string().check(
  z.refine(
    (s) => /^unix:\/\/\/./.test(s) || /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(s),
    'expected unix:///path/to/aurae.sock or host:port, e.g. 127.0.0.1:8443',
  ),
  z.refine((s) => s.startsWith('unix:') || (Number(s.slice(s.lastIndexOf(':') + 1)) >= 1 && Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535), 'port must be between 1 and 65535'),
);

export const ClientConfigSchema = z.strictObject({
  version: z.literal(1),
  /** The node's name: the TLS server name checked against the server certificate. */
  node: z.string().check(z.regex(DNS_LABEL, `expected ${NODE_NAME_EXPECTED}`)),
  address: AddressSchema,
  /** PEM files: the node CA, our client certificate and its key. */
  ca: z.string().check(z.minLength(1, 'expected a path to the node CA certificate (PEM)')),
  cert: z.string().check(z.minLength(1, 'expected a path to the client certificate (PEM)')),
  key: z.string().check(z.minLength(1, 'expected a path to the client private key (PEM)')),
});

export type ClientConfig = z.infer<typeof ClientConfigSchema>;

/** A client config with overrides applied and absolute PEM paths. */
export interface ResolvedClientConfig extends ClientConfig {
  /** The file it came from. */
  path: string;
}

export class ClientConfigError extends Error {
  constructor(
    readonly code: 'CLIENT_CONFIG_UNREADABLE' | 'CLIENT_CONFIG_INVALID',
    message: string,
  ) {
    super(message);
    this.name = 'ClientConfigError';
  }
}

export interface ClientConfigOverrides {
  /** Config file path; otherwise env AURAE_CONFIG, otherwise ~/.config/aurae/client.json. */
  config?: string;
  /** Address to use instead of the config's (and of env AURAE_ADDRESS). */
  address?: string;
  /** TLS server name to use instead of the config's node. */
  node?: string;
}

type Env = Record<string, string | undefined>;

export function clientConfigPath(config: string | undefined, env: Env = process.env, home: string = os.homedir()): string {
  // An empty variable counts as unset, as shells treat it.
  return resolve(config ?? (env.AURAE_CONFIG || undefined) ?? join(home, '.config', 'aurae', 'client.json'));
}

/** Validate `text` as a client config and apply overrides. Pure (no file access). */
export function parseClientConfigText(text: string, path: string, overrides: ClientConfigOverrides = {}, env: Env = process.env): ResolvedClientConfig {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ClientConfigError('CLIENT_CONFIG_INVALID', `client config ${path} is not valid JSON (${(err as Error).message}): fix the file`);
  }
  const parsed = ClientConfigSchema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new ClientConfigError('CLIENT_CONFIG_INVALID', `client config ${path} is invalid: ${problems.join('; ')}`);
  }
  const config = parsed.data;
  const address = overrides.address ?? (env.AURAE_ADDRESS || undefined);
  if (address !== undefined) {
    const source = overrides.address !== undefined ? '--address' : 'AURAE_ADDRESS';
    const checked = AddressSchema.safeParse(address);
    if (!checked.success) throw new ClientConfigError('CLIENT_CONFIG_INVALID', `${source} "${address}": ${checked.error.issues[0]?.message}`);
    config.address = address;
  }
  if (overrides.node !== undefined) {
    if (!isDnsLabel(overrides.node)) throw new ClientConfigError('CLIENT_CONFIG_INVALID', expectedForm('node', overrides.node, NODE_NAME_EXPECTED));
    config.node = overrides.node;
  }
  const base = dirname(path);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  return { ...config, ca: abs(config.ca), cert: abs(config.cert), key: abs(config.key), path };
}

/** Find, read and validate the client config (synchronous: a small file, read once per client). */
export function loadClientConfig(overrides: ClientConfigOverrides = {}, env: Env = process.env): ResolvedClientConfig {
  const path = clientConfigPath(overrides.config, env);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ClientConfigError(
      'CLIENT_CONFIG_UNREADABLE',
      `cannot read client config ${path} (${code}): pass --config PATH, set AURAE_CONFIG, or create that file`,
    );
  }
  return parseClientConfigText(text, path, overrides, env);
}
