// aurae init. As PID 1 (the appliance): mounts, config, hostname, network, reaper,
// signals, power button, debug shell, auraed, and the one shutdown path. Anywhere else:
// a dev daemon that supervises auraed on an ordinary host (see modes/dev.ts).
import { runDevDaemon, runPid1 } from './modes';

async function main(): Promise<void> {
  if (process.pid === 1) await runPid1();
  else await runDevDaemon(process.argv.slice(2));
}

main().catch((err: unknown) => {
  const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`init: error: ${detail}\n`);
  if (process.pid === 1) {
    // Exiting PID 1 panics the kernel; runPid1 handles its own failures, so this is a
    // last resort that keeps the console readable.
    setInterval(() => {}, 1 << 30);
  } else {
    process.exit(1);
  }
});
