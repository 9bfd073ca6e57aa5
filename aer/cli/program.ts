// The aer command line. runAer returns the exit code: 0 ok, 1 failure (or a health status other than
// SERVING), 2 usage. Output goes through `io` so tests can drive it without a process.
import { Command, CommanderError, Option } from 'commander';
import { type AuraeClient, type ConnectOptions, RANGES, connect as sdkConnect } from '../sdk';
import { AER_VERSION } from '../version';
import { registerAuthzCommands } from './authz';
import { registerCellCommands } from './cells';
import { registerExecCommand } from './exec';
import { type ImageCliIo, registerImageCommands } from './image';
import { registerContainerImageCommands } from './images';
import { registerPodCommands } from './pods';
import { registerUpgradeCommands } from './upgrade';
import type { ExecStreams } from './pod-exec';
import { registerRunCommand } from './run';
import { describeError } from './errors';
import { formatVersion } from './format';
import { registerObserveCommands } from './observe';
import { registerPkiCommands } from './pki';
import { registerVmCommands } from './vms';

/** out/err, plus the terminal facts `aer image flash` needs (ImageCliIo; absent → not a terminal). */
export interface CliIo extends ImageCliIo {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
  /** The SDK's connect (replaced in tests). */
  connect?: (options: ConnectOptions) => AuraeClient;
  /** Byte streams for `aer pod exec` (default: the process's stdin, stdout, stderr). */
  execStreams?: ExecStreams;
}

interface GlobalOptions {
  config?: string;
  address?: string;
  node?: string;
  output: 'json' | 'text';
}

/**
 * --node NAME keeps its old meaning (the TLS server name of the node connected to); --node PARENT/CHILD (a
 * node path, always with "/") routes every call through the configured node to that descendant.
 */
export function connectOptions(opts: Pick<GlobalOptions, 'config' | 'address' | 'node'>, env: CliIo['env']): ConnectOptions {
  const base = { config: opts.config, address: opts.address, env };
  if (opts.node?.includes('/')) return { ...base, targetNode: opts.node };
  return { ...base, node: opts.node };
}

export async function runAer(argv: string[], io: CliIo): Promise<number> {
  const connect = io.connect ?? sdkConnect;
  let exitCode = 0;
  let client: AuraeClient | undefined;

  const program = new Command('aer')
    .description('Control an Aurae node (auraed) over mTLS gRPC.')
    .option('--config <path>', 'client config (default: $AURAE_CONFIG or ~/.config/aurae/client.json)')
    .option('--address <address>', 'auraed address, unix:///path or host:port (default: $AURAE_ADDRESS or the config\'s)')
    .option('--node <name|path>', 'a node name: the TLS server name to expect (default: the config\'s node); a node path such as aurae/web: send every call to that child through the configured node (metadata aurae-node)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s.replace(/\n$/, '')) })
    .showHelpAfterError('(run aer --help for usage)');

  /** Connect with the global options; `run` gets the client and the output format. */
  const withClient =
    <A extends unknown[]>(run: (client: AuraeClient, output: GlobalOptions['output'], ...args: A) => Promise<number | void>) =>
    async (...args: [...A, Record<string, unknown>, Command]) => {
      const command = args[args.length - 1] as Command;
      const opts = command.optsWithGlobals<GlobalOptions>();
      client = connect(connectOptions(opts, io.env));
      exitCode = (await run(client, opts.output, ...(args.slice(0, -1) as unknown as A))) ?? 0;
    };
  const print = (output: GlobalOptions['output'], json: unknown, text: string) => io.out(output === 'json' ? JSON.stringify(json) : text);

  program
    .command('health')
    .description('show the serving status of auraed, or of one service; exits 1 unless SERVING')
    .argument('[service]', 'service name, e.g. aurae.node.v0.NodeService (default: the whole server)', '')
    .action(
      withClient(async (c, output, service: string) => {
        const { status } = await c.health.check(service);
        print(output, { service, status }, service ? `${service}: ${status}` : status);
        return status === 'SERVING' ? 0 : 1;
      }),
    );

  program
    .command('version')
    .description('show the versions of aer and of auraed on the node (Discover)')
    .action(
      withClient(async (c, output) => {
        const info = await c.discovery.discover();
        print(output, { aer: AER_VERSION, auraed: info }, formatVersion(AER_VERSION, info));
      }),
    );

  for (const [name, action, verb] of [
    ['shutdown', 'poweroff', 'powering off'],
    ['reboot', 'reboot', 'rebooting'],
  ] as const) {
    program
      .command(name)
      .description(`${action === 'poweroff' ? 'power off' : 'reboot'} the node (through aurae init)`)
      .option('--reason <text>', `why, for the node's logs and console (at most ${RANGES.reasonChars[1]} printable characters)`)
      .action(
        withClient(async (c, output, options: { reason?: string }) => {
          await (action === 'poweroff' ? c.node.shutdown({ reason: options.reason }) : c.node.reboot({ reason: options.reason }));
          print(output, { node: c.config.node, action, accepted: true }, `${c.config.node}: ${verb}`);
        }),
      );
  }

  registerAuthzCommands(program, withClient, print);
  registerObserveCommands(program, withClient, print);
  registerCellCommands(program, withClient, print);
  registerVmCommands(program, withClient, print);
  registerExecCommand(program, withClient, print, io);
  registerRunCommand(program, (code) => (exitCode = code));
  registerPkiCommands(program, io, print);
  registerImageCommands(program, io, print);
  registerContainerImageCommands(program, withClient, print, io);
  registerUpgradeCommands(program, withClient, print, io);
  registerPodCommands(program, withClient, print, io);

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version requests are not errors; everything else commander reports is a usage error.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version' ? 0 : 2;
    }
    io.err(describeError(err, { configPath: client?.config.path }));
    return 1;
  } finally {
    client?.close();
  }
}
