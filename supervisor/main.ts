// auraed: the Aurae node daemon. Started by aurae init (or by hand/tests): `auraed --config PATH`.
// Exit codes: 0 after a clean stop on SIGTERM/SIGINT, 1 when startup fails, 2 for usage or config errors.
// The image starts it from a V8 startup snapshot of this bundle (image/bundle/snapshot.ts): loading every module
// happened when the image was built, and `main` runs after deserialisation. So nothing at module level may
// read the environment, the clock, randomness or the process: all of that happens in `main`.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startupSnapshot } from 'node:v8';
import { parseNodeConfigText } from './config';
import { shutdownTimeoutMs, startAuraed } from './daemon';
import { initChannelFromProcess } from './ipc';
import { createJsonLogger, createLogRing, type LogRing, type Logger } from './log';

function loadConfig() {
  let path: string | undefined;
  try {
    path = parseArgs({ options: { config: { type: 'string' } }, strict: true }).values.config;
  } catch (err) {
    return usage((err as Error).message);
  }
  if (!path) return usage('missing --config PATH');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return fail(`cannot read config ${path} (${(err as NodeJS.ErrnoException).code}): pass the node config file with --config`);
  }
  try {
    return parseNodeConfigText(text, path);
  } catch (err) {
    return fail((err as Error).message);
  }
}

function usage(message: string): never {
  return fail(`${message}\nusage: auraed --config PATH`);
}

function fail(message: string): never {
  process.stderr.write(`auraed: ${message}\n`);
  process.exit(2);
}

async function main(log: Logger, daemonLog: LogRing): Promise<void> {
  const config = loadConfig();
  const init = initChannelFromProcess();
  const auraed = await startAuraed({ config, log, init, daemonLog });
  const { type: _type, ...ready } = auraed.ready;
  log.info('ready', { ...ready, pid: process.pid, underInit: init !== null });
  await init?.send(auraed.ready);

  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { why });
    const how = await auraed.stop(shutdownTimeoutMs(config));
    log.info('stopped', { how });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  // Without init auraed would be an orphan nobody supervises: stop rather than linger.
  if (init) process.on('disconnect', () => void stop('aurae init closed the IPC channel'));
}

function run(): void {
  process.title = 'auraed';
  // Every line also goes into a bounded ring, served by ObserveService/GetAuraeDaemonLogStream.
  const daemonLog = createLogRing();
  const log = createJsonLogger({ subsystem: 'auraed', write: daemonLog.tee((line) => void process.stdout.write(line)) });
  main(log, daemonLog).catch((err: unknown) => {
    log.error('auraed failed to start', { err: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  });
}

if (startupSnapshot.isBuildingSnapshot()) startupSnapshot.setDeserializeMainFunction(run);
else run();
