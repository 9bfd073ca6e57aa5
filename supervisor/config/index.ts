// The node configuration: one schema, read by init, auraed and (later) guests.
// The zod schema is the only source of truth; the TypeScript type is derived from it,
// and unknown fields are rejected everywhere (Firecracker-style strict structs).
import { z } from 'zod';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** `host:port`, `[v6]:port`; port 1..65535. */
const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 0.0.0.0:8443 or [::]:8443')
  .refine((s) => {
    const port = Number(s.slice(s.lastIndexOf(':') + 1));
    return port >= 1 && port <= 65535;
  }, 'port must be between 1 and 65535');

const absPath = z.string().startsWith('/', 'expected an absolute path').max(4096);

/** IPv4 address with prefix, e.g. 10.0.2.15/24. */
const ipv4Cidr = z
  .string()
  .regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'expected IPv4/prefix, e.g. 10.0.2.15/24')
  .refine((s) => {
    const [addr, prefix] = s.split('/') as [string, string];
    return addr.split('.').every((o) => Number(o) <= 255) && Number(prefix) <= 32;
  }, 'octets must be 0..255 and prefix 0..32');
const ipv4 = z.ipv4({ message: 'expected an IPv4 address, e.g. 10.0.2.2' });

export const NetworkInterfaceSchema = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('none') }),
  z.strictObject({
    mode: z.literal('static'),
    address: ipv4Cidr,
    gateway: ipv4.optional(),
  }),
]);

export const NodeConfigSchema = z.strictObject({
  version: z.literal(1),
  node: z.strictObject({
    name: z.string().regex(DNS_LABEL, 'expected a DNS label: 1-63 of a-z, 0-9 and "-", not starting or ending with "-"'),
    /** What PID 1 does after a fatal error, once workloads are stopped. */
    onFatal: z.enum(['reboot', 'poweroff']).default('reboot'),
  }),
  pki: z.strictObject({
    caCert: absPath,
    serverCert: absPath,
    serverKey: absPath,
  }),
  listen: z.strictObject({
    socket: absPath.nullable().default('/run/aurae/aurae.sock'),
    tcp: hostPort.nullable().default('0.0.0.0:8443'),
  })
    .default({ socket: '/run/aurae/aurae.sock', tcp: '0.0.0.0:8443' }),
  network: z
    .strictObject({
      eth0: NetworkInterfaceSchema.default({ mode: 'none' }),
    })
    .default({ eth0: { mode: 'none' } }),
  authz: z
    .strictObject({
      /** Identities (client certificate common names) with full rights. */
      admins: z.array(z.string().min(1).max(64)).default(['admin']),
    })
    .default({ admins: ['admin'] }),
  supervise: z
    .strictObject({
      /** auraed restart backoff: doubles from initialMs up to maxMs, resets after stableMs of uptime. */
      initialMs: z.number().int().min(10).max(60_000).default(100),
      maxMs: z.number().int().min(10).max(600_000).default(10_000),
      stableMs: z.number().int().min(100).max(3_600_000).default(10_000),
    })
    .default({ initialMs: 100, maxMs: 10_000, stableMs: 10_000 }),
  shutdown: z
    .strictObject({
      /** Time between SIGTERM and SIGKILL, for auraed and then for every remaining process. */
      graceMs: z.number().int().min(0).max(300_000).default(5_000),
    })
    .default({ graceMs: 5_000 }),
  debug: z
    .strictObject({
      /** Device for a root shell (tests and development only), e.g. /dev/hvc0; null disables it. */
      shell: absPath.nullable().default(null),
    })
    .default({ shell: null }),
});

export type NodeConfig = z.infer<typeof NodeConfigSchema>;
/** What a config file may contain before defaults are applied. */
export type NodeConfigInput = z.input<typeof NodeConfigSchema>;

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`${source}: invalid node config:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Validate `value` (parsed JSON) as a node config; `source` names it in errors (a path or "kernel command line"). */
export function parseNodeConfig(value: unknown, source: string): NodeConfig {
  const result = NodeConfigSchema.safeParse(value);
  if (result.success) return result.data;
  throw new ConfigError(
    source,
    result.error.issues.map((issue) => {
      const field = issue.path.length ? issue.path.join('.') : '(root)';
      return `${field}: ${issue.message}`;
    }),
  );
}

/** Parse a JSON text and validate it; JSON syntax errors become ConfigErrors too. */
export function parseNodeConfigText(text: string, source: string): NodeConfig {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(source, [`not valid JSON: ${(err as Error).message}`]);
  }
  return parseNodeConfig(value, source);
}

/** Where the image puts the node config, and where init writes the effective (cmdline-merged) copy for auraed. */
export const IMAGE_CONFIG_PATH = '/etc/aurae/config.json';
export const RUNTIME_CONFIG_PATH = '/run/aurae/config.json';
