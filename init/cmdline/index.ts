// Kernel command line parsing and config merging (see parse.ts, merge.ts).
import { ConfigError, type NodeConfig } from '../../supervisor/config';
import type { Logger } from '../log';
import { mergeConfig } from './merge';
import { parseCmdline } from './parse';

export { parseCmdline, parseIpParam, tokenizeCmdline, netmaskToPrefix, CMDLINE_KEYS } from './parse';
export type { CmdlineError, CmdlineOverride, ConfigPatch, ParsedCmdline } from './parse';
export { mergeConfig, deepMerge } from './merge';
export type { MergedConfig } from './merge';

/**
 * The effective node config: the image's config file text (source names it), with the
 * kernel command line applied. Bad parameters are logged and ignored; an unreadable or
 * invalid image config throws ConfigError (the caller treats it as fatal).
 */
export function resolveNodeConfig(imageConfigText: string, source: string, cmdlineText: string, log: Logger): NodeConfig {
  let image: unknown;
  try {
    image = JSON.parse(imageConfigText);
  } catch (err) {
    throw new ConfigError(source, [`not valid JSON: ${(err as Error).message}`]);
  }
  const parsed = parseCmdline(cmdlineText);
  const merged = mergeConfig(image, source, parsed.overrides, parsed.errors);
  for (const param of merged.applied) log.info(`kernel command line: applied ${param}`);
  for (const error of merged.errors) log.warn(`kernel command line: ignoring ${error.param}: ${error.message}`);
  return merged.config;
}
