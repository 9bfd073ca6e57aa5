// `aer run SCRIPT.ts [ARGS...]`: run a TypeScript (or JavaScript) program with the SDK available as the module
// "aurae" — the seeds' "Aurae language" is TypeScript here. The script is bundled with esbuild (so it may import
// its own files and npm packages), "aurae" resolves to the SDK aer itself is running, and the script may use
// top-level await. Its argv is process.argv.slice(2); a thrown error fails the command with its message.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import * as sdk from '../sdk';

async function loadEsbuild(): Promise<typeof import('esbuild')> {
  try {
    return await import('esbuild');
  } catch {
    throw new Error('aer run needs esbuild, which comes with a checkout of this repository: run `npm run aer -- run SCRIPT` there');
  }
}

/** Bundle and run `script`; resolves when its top level has finished. */
export async function runScript(script: string, args: string[]): Promise<void> {
  const file = path.resolve(script);
  if (!fs.existsSync(file)) throw new Error(`aer run: ${script} does not exist`);
  const esbuild = await loadEsbuild();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aer-run-'));
  try {
    // "aurae" → a shim that hands out the SDK instance of this process (so it shares aer's config handling).
    const shim = path.join(dir, 'aurae-sdk.cjs');
    fs.writeFileSync(shim, 'module.exports = globalThis.__aurae_sdk;\n');
    const out = path.join(dir, 'script.mjs');
    await esbuild.build({
      entryPoints: [file],
      outfile: out,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      alias: { aurae: shim },
      // ESM output still meets require() in CommonJS dependencies.
      banner: { js: "import { createRequire as __aurae_cr } from 'node:module'; const require = __aurae_cr(import.meta.url);" },
      logLevel: 'silent',
    }).catch((err: Error) => {
      throw new Error(`aer run: ${script} does not compile:\n${err.message}`);
    });
    (globalThis as { __aurae_sdk?: unknown }).__aurae_sdk = sdk;
    const savedArgv = process.argv;
    process.argv = [process.argv[0]!, file, ...args];
    try {
      await import(pathToFileURL(out).href);
    } finally {
      process.argv = savedArgv;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function registerRunCommand(program: Command, setExitCode: (code: number) => void): void {
  program
    .command('run')
    .description('run a TypeScript program that uses the SDK: import { connect } from "aurae"')
    .argument('<script>', 'the .ts or .js file')
    .argument('[args...]', 'arguments for the script (process.argv.slice(2))')
    .allowUnknownOption()
    .action(async (script: string, args: string[], _options: unknown, command: Command) => {
      // The script's connect() reads the same settings aer would: pass --config/--address on through the env.
      const globals = command.optsWithGlobals<{ config?: string; address?: string }>();
      if (globals.config) process.env.AURAE_CONFIG = path.resolve(globals.config);
      if (globals.address) process.env.AURAE_ADDRESS = globals.address;
      await runScript(script, args);
      setExitCode(0);
    });
}
