// The shapes program.ts hands to each command group's register function.
import type { Command } from 'commander';
import type { AuraeClient } from '../sdk';

export type OutputFormat = 'json' | 'text';
/** program.ts's wrapper: connect with the global options, run, set the exit code. */
export type WithClient = <A extends unknown[]>(
  run: (client: AuraeClient, output: OutputFormat, ...args: A) => Promise<number | void>,
) => (...args: [...A, Record<string, unknown>, Command]) => Promise<void>;
export type Print = (output: OutputFormat, json: unknown, text: string) => void;
