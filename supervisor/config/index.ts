// The node configuration: one schema, read by init, auraed and guest mode (a spawned child's config).
// The zod schema is the only source of truth; the TypeScript type is derived from it,
// and unknown fields are rejected everywhere (Firecracker-style strict structs).
import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';
import { DEFAULT_API_SOCKET } from './node-paths';
import { cellPatternProblem, idRangeProblem, identityProblem, MAX_SCOPE_ENTRIES, methodPatternProblem, nodePatternProblem, podPatternProblem, vmPatternProblem } from '../authz/patterns';
import { MAX_NODE_DEPTH, MAX_PATH_CHARS, NODE_NAME_FORM, NODE_PATH, RANGES } from '../validation';

// zod/mini (~20 KB) rather than zod (~450 KB): init and auraed parse this on every boot, and under TCG each
// 100 KB of JavaScript costs tens of milliseconds before the node can serve. English messages, loaded once.
z.config(en());

const nodePath = z.string().check(
  z.maxLength(MAX_PATH_CHARS, `a node path is at most ${MAX_PATH_CHARS} characters`),
  z.regex(NODE_PATH, `expected ${NODE_NAME_FORM}`),
);

const portOf = (s: string) => Number(s.slice(s.lastIndexOf(':') + 1));

/** `host:port`, `[v6]:port`; port 1..65535. */
const hostPort = z.string().check(
  z.regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 0.0.0.0:8443 or [::]:8443'),
  z.refine((s) => portOf(s) >= 1 && portOf(s) <= 65535, 'port must be between 1 and 65535'),
);

const absPath = z.string().check(z.startsWith('/', 'expected an absolute path'), z.maxLength(4096));

/** IPv4 address with prefix, e.g. 10.0.2.15/24. */
const ipv4Cidr = z.string().check(
  z.regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'expected IPv4/prefix, e.g. 10.0.2.15/24'),
  z.refine((s) => {
    const [addr, prefix] = s.split('/') as [string, string];
    return addr.split('.').every((o) => Number(o) <= 255) && Number(prefix) <= 32;
  }, 'octets must be 0..255 and prefix 0..32'),
);
/** A pod network: IPv4 network/prefix with prefix 8..30 and no host bits set, e.g. 10.88.0.0/16. */
const podCidr = ipv4Cidr.check(
  z.refine((s) => {
    const [addr, prefix] = s.split('/') as [string, string];
    const p = Number(prefix);
    const n = addr.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
    return p >= 8 && p <= 30 && n % 2 ** (32 - p) === 0;
  }, 'expected a network with a prefix of 8..30 and no host bits set, e.g. 10.88.0.0/16'),
);
/** A client certificate common name, as authz checks it. */
const identity = z.string().check(z.superRefine((s, ctx) => void problem(ctx, s, identityProblem(s, 'identity'))));
/** An authz method pattern: "*", "package.Service/*" or "package.Service/Method". */
const methodPattern = z.string().check(z.superRefine((s, ctx) => void problem(ctx, s, methodPatternProblem(s, 'method pattern'))));
/** A resource scope list of an authz rule (see supervisor/authz/patterns.ts): cells, vms, pods, nodes, uids, gids. */
const scopeList = (check: (value: string, field: string) => string | null) =>
  z.optional(
    z.array(z.string().check(z.superRefine((s, ctx) => void problem(ctx, s, check(s, 'scope'))))).check(z.maxLength(MAX_SCOPE_ENTRIES, `at most ${MAX_SCOPE_ENTRIES} entries`)),
  );
/** The resources a rule applies to; absent or empty lists: every resource. */
const ruleScope = {
  /** Cell path patterns: "*", "nova" (nova and the cells below it), "nova/*" (only the cells below nova). */
  cells: scopeList(cellPatternProblem),
  /** Child VM names: "*", "web", "nova-*". */
  vms: scopeList(vmPatternProblem),
  /** Pod names: "*", "web", "nova-*" (with each pod its own cell). */
  pods: scopeList(podPatternProblem),
  /** Node paths: "aurae/web" (that node and its descendants), "aurae/*", "*". */
  nodes: scopeList(nodePatternProblem),
  /** The uids ("N" or "N-M") the identity's executables may run as; default any but 0 (root). */
  uids: scopeList(idRangeProblem),
  /** The gids likewise; default the uids' ranges when uids are given, else any but 0. */
  gids: scopeList(idRangeProblem),
};
function problem(ctx: { addIssue(issue: { code: 'custom'; input: unknown; message: string }): void }, input: string, message: string | null): void {
  // The checks start with "<field>: "; here the issue path names the field.
  if (message !== null) ctx.addIssue({ code: 'custom', input, message: message.slice(message.indexOf(': ') + 2) });
}
const ipv4 = z.ipv4({ message: 'expected an IPv4 address, e.g. 10.0.2.2' });
const intIn = (min: number, max: number) => z.int().check(z.minimum(min), z.maximum(max));

export const NetworkInterfaceSchema = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('none') }),
  z.strictObject({
    mode: z.literal('static'),
    address: ipv4Cidr,
    gateway: z.optional(ipv4),
  }),
]);

export const NodeConfigSchema = z.strictObject({
  version: z.literal(1),
  node: z.strictObject({
    /** A DNS label for a node booted from an image; `parent/child` for a node spawned by another (see guest/). */
    name: nodePath,
    /** What PID 1 does after a fatal error, once workloads are stopped. */
    onFatal: z._default(z.enum(['reboot', 'poweroff']), 'reboot'),
  }),
  pki: z
    .strictObject({
      caCert: absPath,
      /** May hold a chain: the server certificate first, then intermediates (a child's spawn CA chain). */
      serverCert: absPath,
      serverKey: absPath,
      /**
       * The node's intermediate "spawn CA" (signed by the root CA, pathLenConstraint limits the depth below it):
       * it mints the certificates of the children this node spawns. null: the node cannot spawn children.
       * The certificate file may hold a chain (the spawn CA first, then its issuers below the root).
       */
      spawnCaCert: z._default(z.nullable(absPath), null),
      spawnCaKey: z._default(z.nullable(absPath), null),
    })
    .check(
      z.superRefine((pki, ctx) => {
        if ((pki.spawnCaCert === null) !== (pki.spawnCaKey === null)) {
          ctx.addIssue({ code: 'custom', input: pki, path: [pki.spawnCaCert === null ? 'spawnCaCert' : 'spawnCaKey'], message: 'spawnCaCert and spawnCaKey go together: set both or neither' });
        }
      }),
    ),
  listen: z._default(
    z.strictObject({
      socket: z._default(z.nullable(absPath), DEFAULT_API_SOCKET),
      tcp: z._default(z.nullable(hostPort), '0.0.0.0:8443'),
    }),
    { socket: DEFAULT_API_SOCKET, tcp: '0.0.0.0:8443' },
  ),
  network: z._default(
    z.strictObject({
      eth0: z._default(NetworkInterfaceSchema, { mode: 'none' }),
    }),
    { eth0: { mode: 'none' } },
  ),
  authz: z._default(
    z.strictObject({
      /** Identities (client certificate common names) with full rights, policy edits included. */
      admins: z._default(z.array(identity), ['admin']),
      /**
       * Per-identity rules; everyone not in admins is denied what no rule allows. Patterns: "*",
       * "package.Service/*", "package.Service/Method". Deny wins over allow. Rules added through the API
       * (AuthzService, stored in the state database) are merged with these; see supervisor/authz.
       */
      policy: z._default(
        z.array(
          z.strictObject({
            identity,
            allow: z._default(z.array(methodPattern), []),
            deny: z._default(z.array(methodPattern), []),
            // The resources this entry's allow and deny patterns apply to (an identity may have one entry per scope).
            ...ruleScope,
          }),
        ).check(
          z.superRefine((entries, ctx) => {
            const seen = new Map<string, number>();
            entries.forEach((entry, i) => {
              const key = JSON.stringify([entry.identity, ...(['cells', 'vms', 'pods', 'nodes', 'uids', 'gids'] as const).map((f) => [...(entry[f] ?? [])].sort())]);
              const first = seen.get(key);
              if (first === undefined) seen.set(key, i);
              else ctx.addIssue({ code: 'custom', input: entry.identity, path: [i, 'identity'], message: `"${entry.identity}" already has an entry with the same scope (authz.policy.${first}): merge them into one` });
            });
          }),
        ),
        [],
      ),
      /**
       * A spawned node's inheritance: its parent's effective rules when the node booted (written by the parent
       * into the guest payload; the parent pushes newer ones while the node runs). Empty on a root node.
       */
      inherited: z._default(
        z.array(
          z.strictObject({
            identity,
            effect: z.enum(['allow', 'deny']),
            method: methodPattern,
            ...ruleScope,
          }),
        ).check(z.maxLength(10_000, 'at most 10000 inherited rules')),
        [],
      ),
      audit: z._default(
        z.strictObject({
          /** Audit records kept in the state database (the newest; older ones are dropped). */
          maxRecords: z._default(intIn(10, 10_000_000), 10_000),
        }),
        { maxRecords: 10_000 },
      ),
    }),
    { admins: ['admin'], policy: [], inherited: [], audit: { maxRecords: 10_000 } },
  ),
  supervise: z._default(
    z.strictObject({
      /** auraed restart backoff: doubles from initialMs up to maxMs, resets after stableMs of uptime. */
      initialMs: z._default(intIn(10, 60_000), 100),
      maxMs: z._default(intIn(10, 600_000), 10_000),
      stableMs: z._default(intIn(100, 3_600_000), 10_000),
    }),
    { initialMs: 100, maxMs: 10_000, stableMs: 10_000 },
  ),
  shutdown: z._default(
    z.strictObject({
      /** Time between SIGTERM and SIGKILL, for auraed and then for every remaining process. */
      graceMs: z._default(intIn(0, 300_000), 5_000),
    }),
    { graceMs: 5_000 },
  ),
  state: z._default(
    z.strictObject({
      /** auraed's persistent state: the database <dir>/aurae.db and executables' logs under <dir>/logs/. */
      dir: z._default(absPath, '/var/lib/aurae'),
    }),
    { dir: '/var/lib/aurae' },
  ),
  observe: z._default(
    z.strictObject({
      /** An executable's log file is rotated when the next line would take it past this size (bytes). */
      logMaxBytes: z._default(intIn(4096, 64 * 1024 * 1024), 1024 * 1024),
      /** Files kept per executable, the current one included: at most logMaxBytes × logFiles on disk. */
      logFiles: z._default(intIn(1, 10), 3),
      /** Lifecycle events kept in memory for GetEvents (older ones are dropped; seq shows the gap). */
      eventHistory: z._default(intIn(16, 100_000), 1000),
    }),
    { logMaxBytes: 1024 * 1024, logFiles: 3, eventHistory: 1000 },
  ),
  vms: z._default(
    z.strictObject({
      /**
       * The boot artifacts children are made from: the node's own kernel and initramfs (the image makes them
       * available under /boot). A host-tier node points these at out/image.
       */
      kernel: z._default(absPath, '/boot/vmlinuz'),
      initrd: z._default(absPath, '/boot/initramfs'),
      /**
       * The QEMU to run; null: the one on the boot volume (/boot/qemu/qemu-system-x86_64) when present, else
       * qemu-system-x86_64 from PATH.
       */
      qemu: z._default(z.nullable(absPath), null),
      /**
       * The boot volume given to children read-only (so they have /boot too, and can spawn in turn); null: the
       * device mounted on /boot, if any. A host-tier node points it at out/image/esp.img.
       */
      bootDisk: z._default(z.nullable(absPath), null),
      /** Upper bound for one child's RAM (MiB); a larger request is INVALID_ARGUMENT. */
      maxMemoryMiB: z._default(intIn(...RANGES.vmMemoryMiB), 2048),
      /** Deepest node path allowed ("a/b" is depth 1): a spawn that would exceed it is FAILED_PRECONDITION. */
      maxDepth: z._default(intIn(0, MAX_NODE_DEPTH), 2),
      /** How long a child may take from QEMU start to its AURAE_READY console line. */
      bootTimeoutMs: z._default(intIn(1000, 600_000), 120_000),
      /** Graceful stop: time after ACPI powerdown before QMP quit (then SIGKILL). */
      stopTimeoutMs: z._default(intIn(100, 300_000), 15_000),
      /**
       * When auraed stops (SIGTERM, node shutdown): time each child gets after its ACPI powerdown before QMP quit
       * (then SIGKILL). Below shutdown.graceMs (init kills what is left then). null: min(3 s, 0.6 × shutdown.graceMs).
       */
      shutdownPowerdownMs: z._default(z.nullable(intIn(100, 300_000)), null),
    }),
    { kernel: '/boot/vmlinuz', initrd: '/boot/initramfs', qemu: null, bootDisk: null, maxMemoryMiB: 2048, maxDepth: 2, bootTimeoutMs: 120_000, stopTimeoutMs: 15_000, shutdownPowerdownMs: null },
  ),
  images: z._default(
    z.strictObject({
      /**
       * Per-registry settings, keyed by the registry as image references name it: `host[:port]` (`docker.io` for
       * Docker Hub). Registries not listed are reached over HTTPS with the system CAs, anonymously.
       */
      registries: z._default(
        z.record(
          z.string().check(z.regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/, 'expected a registry host[:port], e.g. registry.example.com or 10.0.2.100:5000')),
          z.strictObject({
            /** Plain HTTP allowed (no TLS): for loopback and test registries only. */
            insecure: z._default(z.boolean(), false),
            /** A PEM CA file trusted for this registry besides the system CAs. */
            caFile: z._default(z.nullable(absPath), null),
            /** Credentials (Basic, or for a Bearer token service). Never logged or listed. */
            auth: z._default(z.nullable(z.strictObject({ username: z.string().check(z.minLength(1)), password: z.string() })), null),
          }),
        ),
        {},
      ),
    }),
    { registries: {} },
  ),
  cri: z._default(
    z.strictObject({
      /** Serve the Kubernetes CRI (runtime.v1, supervisor/cri) on a root-only Unix socket; only when auraed runs as root. */
      enabled: z._default(z.boolean(), true),
      /** The socket; null: cri.sock beside listen.socket (/run/aurae/cri.sock on a node). */
      socket: z._default(z.nullable(absPath), null),
    }),
    { enabled: true, socket: null },
  ),
  pods: z._default(
    z.strictObject({
      /** Cell pods' network (supervisor/pods/network-plan.ts): a node bridge, a veth per pod, NAT for egress. */
      network: z._default(
        z.strictObject({
          /** The node-local pod CIDR (prefix 8..30, no host bits); the bridge gets its first address. */
          cidr: z._default(podCidr, '10.88.0.0/16'),
          /** The bridge's interface name. */
          bridge: z._default(z.string().check(z.regex(/^[A-Za-z][A-Za-z0-9_-]{0,14}$/, 'expected an interface name: a letter, then letters, digits, "-" or "_", at most 15 characters')), 'aurae0'),
          /** Name servers for pods' /etc/resolv.conf; null: the node's /etc/resolv.conf, else 8.8.8.8 and 8.8.4.4. */
          nameservers: z._default(z.nullable(z.array(ipv4).check(z.maxLength(3, 'at most 3 name servers (the resolver reads no more)'))), null),
        }),
        { cidr: '10.88.0.0/16', bridge: 'aurae0', nameservers: null },
      ),
    }),
    { network: { cidr: '10.88.0.0/16', bridge: 'aurae0', nameservers: null } },
  ),
  upgrade: z._default(
    z.strictObject({
      /**
       * PEM files of the pinned image-signing certificates (supervisor/upgrade): an upload is accepted only when its
       * release manifest is signed by one of their keys. Empty: every upload is refused.
       */
      signingCerts: z._default(z.array(absPath).check(z.maxLength(16, 'at most 16 files')), []),
      /** Where the ESP (boot volume with the A/B boot entries) is mounted. */
      esp: z._default(absPath, '/boot'),
      /**
       * init blesses a boot entry on trial (systemd-boot's counter: supervisor/upgrade/slots.ts) once auraed has been
       * SERVING, without a restart, for this long.
       */
      blessAfterMs: z._default(intIn(0, 3_600_000), 30_000),
      /** A boot on trial not blessed this long after init started is rebooted, so systemd-boot counts the try. */
      blessDeadlineMs: z._default(intIn(1_000, 86_400_000), 600_000),
      /**
       * An Upload stream that sends nothing for this long is ended (DEADLINE_EXCEEDED) so it stops holding the
       * node's one upload; the bytes received are kept and the next upload of the release continues from them.
       */
      uploadIdleMs: z._default(intIn(1_000, 3_600_000), 60_000),
    }),
    { signingCerts: [], esp: '/boot', blessAfterMs: 30_000, blessDeadlineMs: 600_000, uploadIdleMs: 60_000 },
  ),
  /**
   * Set only in a spawned child (written by its parent into the guest payload, see guest/): who the parent is.
   * The child trusts the aurae-on-behalf-of header only on calls whose peer identity is `parent`.
   */
  guest: z._default(
    z.nullable(
      z.strictObject({
        /** The parent's node path, e.g. "aurae" for the child "aurae/web". */
        parent: nodePath,
        /** This node's depth: the number of "/" in node.name. */
        depth: intIn(1, MAX_NODE_DEPTH),
      }),
    ),
    null,
  ),
  debug: z._default(
    z.strictObject({
      /** Device for a root shell (tests and development only), e.g. /dev/hvc0; null disables it. */
      shell: z._default(z.nullable(absPath), null),
    }),
    { shell: null },
  ),
}).check(
  z.superRefine((config, ctx) => {
    const name = config.node.name;
    const depth = name.split('/').length - 1;
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', input: config, path, message });
    const powerdownMs = config.vms.shutdownPowerdownMs;
    if (powerdownMs !== null && powerdownMs >= config.shutdown.graceMs) {
      issue(
        ['vms', 'shutdownPowerdownMs'],
        `${powerdownMs} is not below shutdown.graceMs (${config.shutdown.graceMs}): init kills auraed and its QEMUs once shutdown.graceMs has passed, so raise shutdown.graceMs with it (or leave it null for min(3 s, 0.6 × shutdown.graceMs))`,
      );
    }
    if (config.guest === null) {
      if (depth > 0) issue(['node', 'name'], `"${name}" is a child's path: a spawned node's config also names its parent (guest section)`);
      return;
    }
    if (name.slice(0, name.lastIndexOf('/')) !== config.guest.parent || depth === 0) {
      issue(['guest', 'parent'], `"${config.guest.parent}" is not the parent of node "${name}"`);
    }
    if (config.guest.depth !== depth) issue(['guest', 'depth'], `node "${name}" is at depth ${depth}, not ${config.guest.depth}`);
  }),
);

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
export { IMAGE_CONFIG_PATH, RUNTIME_CONFIG_PATH } from './node-paths';
