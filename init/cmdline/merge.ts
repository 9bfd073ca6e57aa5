// Image config + kernel command line overrides → one validated NodeConfig.
// The image config must be valid on its own (a broken image is fatal); each override is
// then applied and validated on its own, so one bad parameter is reported and dropped
// without taking the good ones (or the boot) with it.
import { ConfigError, parseNodeConfig, type NodeConfig } from '../../supervisor/config';
import type { CmdlineError, CmdlineOverride, ConfigPatch } from './parse';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Deep merge for JSON-like objects: objects merge key by key, everything else replaces. */
export function deepMerge(base: unknown, patch: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(patch)) return patch;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    // A discriminated union (network.eth0) is replaced whole: merging a static address
    // into {mode: 'none'} must not leave stale fields behind, nor the reverse.
    out[key] = key === 'eth0' ? value : deepMerge(base[key], value);
  }
  return out;
}

export interface MergedConfig {
  config: NodeConfig;
  /** Overrides that were applied, in order. */
  applied: string[];
  /** Overrides rejected by the schema (plus any passed in). */
  errors: CmdlineError[];
}

/**
 * Validate `image` (throws ConfigError naming `source` when invalid), then apply each
 * override in order, keeping those that still validate.
 */
export function mergeConfig(
  image: unknown,
  source: string,
  overrides: CmdlineOverride[],
  earlierErrors: CmdlineError[] = [],
): MergedConfig {
  let config = parseNodeConfig(image, source);
  // Apply over the validated config (defaults filled in) so a patch of one field never
  // depends on whether the image spelled out its neighbours.
  let current: unknown = config;
  const applied: string[] = [];
  const errors = [...earlierErrors];
  for (const override of overrides) {
    const candidate = deepMerge(current, override.patch as ConfigPatch);
    try {
      config = parseNodeConfig(candidate, `kernel command line ${override.param}`);
      current = candidate;
      applied.push(override.param);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems.join('; ') : String(err);
      errors.push({ param: override.param, message: problems });
    }
  }
  return { config, applied, errors };
}
