// ExecutableSpec: what the caller asked to run, validated. Stored as JSON (so: plain data) and turned back into
// the API message for List/Get.
import { type Executable, RestartMode as RestartModeProto } from '../gen/aurae/cells/v0/cells';
import { checkInt, checkLabel, checkText, invalid, RANGES, shown, utf8Bytes } from '../validation';

export type RestartMode = 'never' | 'on-failure' | 'always';

export interface RestartPolicySpec {
  mode: RestartMode;
  initialDelayMs: number;
  maxDelayMs: number;
  startLimitBurst: number;
  startLimitIntervalMs: number;
}

export interface ExecutableSpec {
  name: string;
  /** The shell form (run as /bin/sh -c command), or '' when `args` is used. */
  command: string;
  /** argv as given, or [] with the shell form. */
  args: string[];
  description: string;
  env: Record<string, string>;
  cwd: string;
  uid: number | null;
  gid: number | null;
  restart: RestartPolicySpec;
  /**
   * When set, Stop sends this signal to the main process only (it passes it on: `crun run` forwards it to its
   * container's init) instead of SIGTERM to every process of the leaf; the grace then cgroup.kill still apply.
   * Set by pods (an image's StopSignal); not in the CellService API.
   */
  stopSignal?: NodeJS.Signals;
}

export const RESTART_DEFAULTS: Omit<RestartPolicySpec, 'mode'> = {
  initialDelayMs: 100,
  maxDelayMs: 30_000,
  startLimitBurst: 5,
  startLimitIntervalMs: 10_000,
};

export const LIMITS = {
  argvEntries: 1024,
  argvBytes: 256 * 1024,
  commandBytes: 128 * 1024,
  envEntries: 256,
  envNameChars: 256,
  envBytes: 256 * 1024,
  pathChars: 4096,
  descriptionChars: 256,
} as const;

/** Standard PATH when the caller sets none (the image's busybox applets live in /bin and /usr/bin). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The argv the helper executes. */
export function effectiveArgv(spec: Pick<ExecutableSpec, 'command' | 'args'>): string[] {
  return spec.command !== '' ? ['/bin/sh', '-c', spec.command] : spec.args;
}

/** The program's environment: exactly the caller's, plus a standard PATH when it sets none. */
export function effectiveEnv(spec: Pick<ExecutableSpec, 'env'>): Record<string, string> {
  return { PATH: DEFAULT_PATH, ...spec.env };
}

export function validateExecutable(message: Executable | undefined, field = 'executable'): ExecutableSpec {
  if (!message) throw invalid(field, 'required');
  const name = checkLabel(`${field}.name`, message.name);
  const command = message.command ?? '';
  const args = message.args ?? [];
  if (command !== '' && args.length > 0) throw invalid(field, 'give either command (a shell command) or args (argv), not both');
  if (command === '' && args.length === 0) throw invalid(`${field}.args`, 'required: argv with at least the program (or a shell command in command)');
  if (command !== '') {
    if (command.includes('\0')) throw invalid(`${field}.command`, 'NUL characters are not allowed');
    if (utf8Bytes(command) > LIMITS.commandBytes) throw invalid(`${field}.command`, `too long: at most ${LIMITS.commandBytes} bytes`);
  }
  if (args.length > LIMITS.argvEntries) throw invalid(`${field}.args`, `too many entries (${args.length}): at most ${LIMITS.argvEntries}`);
  let argvBytes = 0;
  args.forEach((arg, i) => {
    if (arg.includes('\0')) throw invalid(`${field}.args[${i}]`, 'NUL characters are not allowed');
    argvBytes += utf8Bytes(arg) + 1;
  });
  if (argvBytes > LIMITS.argvBytes) throw invalid(`${field}.args`, `too long: ${argvBytes} bytes, at most ${LIMITS.argvBytes}`);
  if (args.length > 0 && args[0] === '') throw invalid(`${field}.args[0]`, 'the program must not be empty');

  const env = validateEnv(`${field}.env`, message.env ?? {});
  const cwd = validateCwd(`${field}.cwd`, message.cwd ?? '');
  const uid = checkInt(`${field}.uid`, message.uid, RANGES.id) ?? null;
  const gid = checkInt(`${field}.gid`, message.gid, RANGES.id) ?? null;
  // A gid alone would drop the groups but keep uid 0: a root process the caller believed unprivileged.
  if (gid !== null && uid === null) throw invalid(`${field}.gid`, 'set uid too: a gid without a uid would still run the program as root');
  return {
    name,
    command,
    args: [...args],
    description: checkText(`${field}.description`, message.description ?? '', LIMITS.descriptionChars),
    env,
    cwd,
    uid,
    gid,
    restart: validateRestart(`${field}.restart`, message.restart),
  };
}

function validateEnv(field: string, env: Record<string, string>): Record<string, string> {
  const entries = Object.entries(env);
  if (entries.length > LIMITS.envEntries) throw invalid(field, `too many variables (${entries.length}): at most ${LIMITS.envEntries}`);
  let bytes = 0;
  const out: Record<string, string> = {};
  for (const [key, value] of entries) {
    if (key.length > LIMITS.envNameChars || !ENV_NAME.test(key)) {
      throw invalid(`${field}`, `${shown(key)} is not a variable name: [A-Za-z_][A-Za-z0-9_]*, at most ${LIMITS.envNameChars} characters`);
    }
    if (value.includes('\0')) throw invalid(`${field}[${key}]`, 'NUL characters are not allowed');
    bytes += utf8Bytes(key) + utf8Bytes(value) + 2;
    out[key] = value;
  }
  if (bytes > LIMITS.envBytes) throw invalid(field, `too large: ${bytes} bytes, at most ${LIMITS.envBytes}`);
  return out;
}

function validateCwd(field: string, cwd: string): string {
  if (cwd === '') return '/';
  if (!cwd.startsWith('/')) throw invalid(field, `${shown(cwd)} is not an absolute path`);
  if (cwd.length > LIMITS.pathChars) throw invalid(field, `too long: at most ${LIMITS.pathChars} characters`);
  if (/\p{C}/u.test(cwd)) throw invalid(field, 'control, format or unassigned characters are not allowed');
  if (cwd.split('/').some((part) => part === '..' || part === '.')) throw invalid(field, `${shown(cwd)}: "." and ".." components are not allowed`);
  return cwd;
}

const MODES: Partial<Record<number, RestartMode>> = {
  [RestartModeProto.RESTART_MODE_UNSPECIFIED]: 'never',
  [RestartModeProto.RESTART_MODE_NEVER]: 'never',
  [RestartModeProto.RESTART_MODE_ON_FAILURE]: 'on-failure',
  [RestartModeProto.RESTART_MODE_ALWAYS]: 'always',
};

function validateRestart(field: string, message: Executable['restart']): RestartPolicySpec {
  const mode = MODES[message?.mode ?? 0];
  if (!mode) throw invalid(`${field}.mode`, `${String(message?.mode)} is not a restart mode: NEVER, ON_FAILURE or ALWAYS`);
  const initialDelayMs = checkInt(`${field}.initial_delay_ms`, message?.initialDelayMs, RANGES.restartDelayMs) ?? RESTART_DEFAULTS.initialDelayMs;
  const maxDelayMs = checkInt(`${field}.max_delay_ms`, message?.maxDelayMs, RANGES.restartDelayMs) ?? Math.max(RESTART_DEFAULTS.maxDelayMs, initialDelayMs);
  if (maxDelayMs < initialDelayMs) throw invalid(`${field}.max_delay_ms`, `${maxDelayMs} is below initial_delay_ms (${initialDelayMs})`);
  return {
    mode,
    initialDelayMs,
    maxDelayMs,
    startLimitBurst: checkInt(`${field}.start_limit_burst`, message?.startLimitBurst, RANGES.startLimitBurst) ?? RESTART_DEFAULTS.startLimitBurst,
    startLimitIntervalMs: checkInt(`${field}.start_limit_interval_ms`, message?.startLimitIntervalMs, RANGES.startLimitIntervalMs) ?? RESTART_DEFAULTS.startLimitIntervalMs,
  };
}

const MODE_TO_PROTO: Record<RestartMode, RestartModeProto> = {
  never: RestartModeProto.RESTART_MODE_NEVER,
  'on-failure': RestartModeProto.RESTART_MODE_ON_FAILURE,
  always: RestartModeProto.RESTART_MODE_ALWAYS,
};

/** The API message for a stored spec (List/Get echo what was asked, with defaults filled in). */
export function executableToProto(spec: ExecutableSpec): Executable {
  return {
    name: spec.name,
    command: spec.command,
    description: spec.description,
    args: [...spec.args],
    env: { ...spec.env },
    cwd: spec.cwd,
    uid: spec.uid ?? undefined,
    gid: spec.gid ?? undefined,
    restart: {
      mode: MODE_TO_PROTO[spec.restart.mode],
      initialDelayMs: spec.restart.initialDelayMs,
      maxDelayMs: spec.restart.maxDelayMs,
      startLimitBurst: spec.restart.startLimitBurst,
      startLimitIntervalMs: spec.restart.startLimitIntervalMs,
    },
  };
}
