// CLI: build (or fetch from the cache) the appliance kernel and print where it is.
//   npx tsx image/kernel/main.ts [--jobs N] [--cache-dir DIR]
import { Command } from 'commander';
import { buildKernel } from './index';

const program = new Command('kernel')
  .description('Build the Aurae kernel (linux-source-6.1 + tinyconfig + image/kernel/fragment.config)')
  .option('-j, --jobs <n>', 'parallel make jobs (default: number of CPUs)', (v) => Number.parseInt(v, 10))
  .option('--cache-dir <dir>', 'cache directory (default: ~/.cache/aurae)')
  .parse();

const opts = program.opts<{ jobs?: number; cacheDir?: string }>();
const started = Date.now();
const stamp = () => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;

buildKernel({ log: (line) => console.error(`${stamp()} ${line}`), jobs: opts.jobs, cacheDir: opts.cacheDir }).then(
  (result) => {
    console.log(JSON.stringify({ ...result, seconds: (Date.now() - started) / 1000 }, null, 2));
  },
  (err: Error) => {
    console.error(`${stamp()} ${err.message}`);
    process.exitCode = 1;
  },
);
