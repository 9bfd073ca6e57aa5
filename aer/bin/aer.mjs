#!/usr/bin/env node
// Launcher for the `aer` bin: the esbuild bundle when it was built (fast start), else the TypeScript sources
// through tsx (development). Either way stdio, exit code and signals are the CLI's own.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { constants } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bundle = join(root, 'out', 'bundle', 'aer.cjs');
const require = createRequire(import.meta.url);

if (existsSync(bundle)) {
  require(bundle);
} else {
  // Resolve tsx from this repository, not from the caller's working directory.
  const tsx = join(dirname(require.resolve('tsx/package.json')), 'dist', 'loader.mjs');
  const result = spawnSync(process.execPath, ['--import', pathToFileURL(tsx).href, join(root, 'aer', 'cli.ts'), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (result.error) {
    process.stderr.write(`aer: cannot start node with tsx (${result.error.message}): run npm install in ${root}\n`);
    process.exit(1);
  }
  process.exit(result.status ?? 128 + (result.signal ? constants.signals[result.signal] : 1));
}
