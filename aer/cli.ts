// aer: the Aurae CLI. Thin main: everything is in cli/program.ts. (No top-level await: bundled as CJS.)
import { readOneLine } from './cli/image';
import { runAer } from './cli/program';

void runAer(process.argv.slice(2), {
  out: (text) => void process.stdout.write(text + '\n'),
  err: (text) => void process.stderr.write(text + '\n'),
  errPartial: (text) => void process.stderr.write(text),
  stdinIsTTY: process.stdin.isTTY === true,
  stderrIsTTY: process.stderr.isTTY === true,
  readLine: () => readOneLine(process.stdin),
  env: process.env,
}).then((code) => {
  process.exitCode = code;
});
