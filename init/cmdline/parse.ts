// Kernel command line → node config overrides. Pure: text in, data out.
//
// Understood (README.md, "Kernel command line"): aurae.name, aurae.on_fatal, aurae.debug_shell,
// aurae.listen_tcp, aurae.grace_ms, aurae.bless_after_ms, aurae.bless_deadline_ms, and the kernel's static `ip=` form for eth0.
// Anything else that is not aurae.* belongs to the kernel and is ignored; an unknown
// aurae.* key is an error (a typo must not silently do nothing).
import type { NodeConfigInput } from '../../supervisor/config';

/** A partial node config; applied over the image config. */
export type ConfigPatch = {
  [K in keyof NodeConfigInput]?: NodeConfigInput[K] extends object | undefined
    ? Partial<NonNullable<NodeConfigInput[K]>>
    : NodeConfigInput[K];
};

export interface CmdlineOverride {
  /** The parameter as written, e.g. "aurae.grace_ms=2000". */
  param: string;
  patch: ConfigPatch;
}

export interface CmdlineError {
  param: string;
  message: string;
}

export interface ParsedCmdline {
  overrides: CmdlineOverride[];
  errors: CmdlineError[];
}

/**
 * Split like the kernel's next_arg(): whitespace separates parameters, double quotes
 * group (around the whole parameter or just the value) and are removed. Parameters after
 * a bare `--` are for init's argv, not the kernel, and are dropped here.
 */
export function tokenizeCmdline(text: string): string[] {
  const tokens: string[] = [];
  let current = '';
  let inQuotes = false;
  let started = false;
  for (const ch of text) {
    if (ch === '"') {
      inQuotes = !inQuotes;
      started = true;
    } else if (!inQuotes && /\s/.test(ch)) {
      if (started) tokens.push(current);
      current = '';
      started = false;
    } else {
      current += ch;
      started = true;
    }
  }
  if (started) tokens.push(current);
  const end = tokens.indexOf('--');
  return end === -1 ? tokens : tokens.slice(0, end);
}

type KeyParser = (value: string) => ConfigPatch | string;

const OFF = new Set(['off', 'none']);

/** Each aurae.* key: returns a patch, or an error message that names the allowed values. */
const AURAE_KEYS: Record<string, KeyParser> = {
  'aurae.name': (value) => ({ node: { name: value } }),
  'aurae.on_fatal': (value) =>
    value === 'reboot' || value === 'poweroff' ? { node: { onFatal: value } } : 'expected reboot or poweroff',
  'aurae.debug_shell': (value) => {
    if (OFF.has(value)) return { debug: { shell: null } };
    return value.startsWith('/') ? { debug: { shell: value } } : 'expected a device path such as /dev/hvc0, or off';
  },
  'aurae.listen_tcp': (value) =>
    OFF.has(value) ? { listen: { tcp: null } } : { listen: { tcp: value } },
  'aurae.bless_after_ms': (value) =>
    /^\d{1,9}$/.test(value) ? { upgrade: { blessAfterMs: Number(value) } } : 'expected a whole number of milliseconds, e.g. 30000',
  'aurae.bless_deadline_ms': (value) =>
    /^\d{1,9}$/.test(value) ? { upgrade: { blessDeadlineMs: Number(value) } } : 'expected a whole number of milliseconds, e.g. 600000',
  'aurae.grace_ms': (value) =>
    /^\d{1,9}$/.test(value) ? { shutdown: { graceMs: Number(value) } } : 'expected a whole number of milliseconds, e.g. 5000',
};

/** Allowed keys, for error messages. */
export const CMDLINE_KEYS = [...Object.keys(AURAE_KEYS), 'ip'];

/** Netmask "255.255.255.0" → 24; null when not a contiguous IPv4 mask. */
export function netmaskToPrefix(mask: string): number | null {
  const octets = mask.split('.');
  if (octets.length !== 4 || !octets.every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255)) return null;
  const bits = octets.map((o) => Number(o).toString(2).padStart(8, '0')).join('');
  return /^1*0*$/.test(bits) ? bits.indexOf('0') === -1 ? 32 : bits.indexOf('0') : null;
}

const IP_FORM = 'expected ip=<client-ip>::<gw-ip>:<netmask>:<hostname>:eth0:off, or ip=off';

/**
 * The kernel's `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>`,
 * static form only (the kernel's own IP autoconfig is not built in; init applies it).
 * The server and hostname fields are accepted and unused (the node name is aurae.name).
 */
export function parseIpParam(value: string): ConfigPatch | string {
  if (OFF.has(value)) return { network: { eth0: { mode: 'none' } } };
  const fields = value.split(':');
  if (fields.length < 4 || fields.length > 9) return IP_FORM;
  const [client = '', , gateway = '', netmask = '', , device = '', autoconf = ''] = fields;
  if (!client) return `${IP_FORM} (client-ip is empty)`;
  if (device !== '' && device !== 'eth0') return `only device eth0 is supported, got "${device}"`;
  if (!['', 'off', 'none'].includes(autoconf)) return `only static configuration (autoconf off) is supported, got "${autoconf}"`;
  const prefix = netmask === '' ? 24 : netmaskToPrefix(netmask);
  if (prefix === null) return `netmask "${netmask}" is not a valid IPv4 netmask, e.g. 255.255.255.0`;
  return {
    network: {
      eth0: { mode: 'static', address: `${client}/${prefix}`, ...(gateway ? { gateway } : {}) },
    },
  };
}

/** Parse /proc/cmdline text into overrides and per-parameter errors. Never throws. */
export function parseCmdline(text: string): ParsedCmdline {
  const overrides: CmdlineOverride[] = [];
  const errors: CmdlineError[] = [];
  for (const param of tokenizeCmdline(text)) {
    const eq = param.indexOf('=');
    const key = eq === -1 ? param : param.slice(0, eq);
    const value = eq === -1 ? undefined : param.slice(eq + 1);
    let result: ConfigPatch | string;
    if (key === 'ip') {
      result = value === undefined ? IP_FORM : parseIpParam(value);
    } else if (key.startsWith('aurae.')) {
      const parser = AURAE_KEYS[key];
      if (!parser) {
        errors.push({ param, message: `unknown parameter "${key}"; known: ${CMDLINE_KEYS.join(', ')}` });
        continue;
      }
      result = value === undefined || value === '' ? `${key} needs a value (${key}=...)` : parser(value);
    } else {
      continue; // The kernel's, or an init env/argv parameter: not ours.
    }
    if (typeof result === 'string') errors.push({ param, message: result });
    else overrides.push({ param, patch: result });
  }
  return { overrides, errors };
}
