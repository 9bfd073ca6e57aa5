// `aer pki issue NAME`: mint a client certificate for identity NAME with the node CA, plus a client config
// that uses it. Local, not an RPC: it needs the CA's private key, which lives where the PKI was created
// (the image build writes it to out/pki), never on the node.
import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_API_SOCKET } from '../../supervisor/config/node-paths';
import { type ClientConfig, type ClientConfigOverrides, type ResolvedClientConfig, loadClientConfig } from '../sdk';
import type { OutputFormat, Print } from './types';

/** Identities this command issues: they name files too, so no "/", spaces or leading dots. */
const FILE_SAFE_IDENTITY = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const DEFAULT_ADDRESS = `unix://${DEFAULT_API_SOCKET}`;

export class PkiIssueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PkiIssueError';
  }
}

export interface PkiIssueRequest {
  identity: string;
  /** Folder with ca.crt and ca.key. */
  pkiDir: string;
  /** Where NAME.crt, NAME.key and NAME.json go. */
  outDir: string;
  /** The client config's node (TLS server name) and address. */
  node: string;
  address: string;
  /** Replace existing files. */
  force: boolean;
  /** Validity in days from now (1-3650); default PKI_ISSUE_DEFAULT_DAYS. */
  days?: number;
}

/**
 * Client certificates are valid one year unless --days says otherwise: there is no revocation list, so an
 * identity that should lose access sooner needs a short certificate (or a deny rule, `aer authz deny`).
 */
export const PKI_ISSUE_DEFAULT_DAYS = 365;
export const PKI_ISSUE_MAX_DAYS = 3650;

/** `--days` text → days, or PkiIssueError naming the option and what is allowed. */
export function parseDays(text: string): number {
  const days = /^[0-9]{1,4}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(days) || days < 1 || days > PKI_ISSUE_MAX_DAYS) {
    throw new PkiIssueError(`--days ${JSON.stringify(text)} is invalid: expected a whole number of days from 1 to ${PKI_ISSUE_MAX_DAYS} (default ${PKI_ISSUE_DEFAULT_DAYS})`);
  }
  return days;
}

export interface PkiIssuePlan {
  files: { caCert: string; caKey: string; cert: string; key: string; config: string };
  /** The client config written to files.config; PEM paths relative to it so the folder can be moved. */
  clientConfig: ClientConfig;
}

/** Pure: where everything goes and what the client config says. Throws PkiIssueError for a bad NAME. */
export function planPkiIssue(request: PkiIssueRequest): PkiIssuePlan {
  if (!FILE_SAFE_IDENTITY.test(request.identity)) {
    throw new PkiIssueError(
      `NAME ${JSON.stringify(request.identity)} is not usable: use 1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit (it becomes the certificate CN and the file names)`,
    );
  }
  const pkiDir = resolve(request.pkiDir);
  const outDir = resolve(request.outDir);
  const files = {
    caCert: join(pkiDir, 'ca.crt'),
    caKey: join(pkiDir, 'ca.key'),
    cert: join(outDir, `${request.identity}.crt`),
    key: join(outDir, `${request.identity}.key`),
    config: join(outDir, `${request.identity}.json`),
  };
  return {
    files,
    clientConfig: {
      version: 1,
      node: request.node,
      address: request.address,
      ca: relative(outDir, files.caCert),
      cert: `${request.identity}.crt`,
      key: `${request.identity}.key`,
    },
  };
}

export interface IssuedIdentity {
  identity: string;
  cert: string;
  key: string;
  config: string;
  /** RFC 3339 expiry of the certificate. */
  notAfter: string;
}

/** Read the CA, issue the certificate, write the three files (key 0600). */
export async function issueIdentity(request: PkiIssueRequest, now?: Date): Promise<IssuedIdentity> {
  const plan = planPkiIssue(request);
  const read = async (file: string, what: string) => {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new PkiIssueError(
        `cannot read the ${what} ${file} (${code}): issuing a client certificate needs the node CA's certificate and private key: ` +
          'run aer pki issue where the PKI was created (the image build keeps it in out/pki) or pass --pki DIR',
      );
    }
  };
  const ca = { certPem: await read(plan.files.caCert, 'CA certificate'), keyPem: await read(plan.files.caKey, 'CA key') };
  // Loaded on demand: the x509 library is large and no other aer command needs it.
  const { issueClientCert } = await import('../../supervisor/pki');
  const days = request.days ?? PKI_ISSUE_DEFAULT_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > PKI_ISSUE_MAX_DAYS) parseDays(String(days));
  const issued = await issueClientCert(ca, { identity: request.identity, now, validityDays: days });
  await mkdir(dirname(plan.files.cert), { recursive: true });
  const flag = request.force ? 'w' : 'wx';
  const write = async (file: string, data: string, mode: number) => {
    try {
      await writeFile(file, data, { mode, flag });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      if (code === 'EEXIST') {
        throw new PkiIssueError(`${file} already exists: pass --force to replace it (the certificate it holds stays valid until it expires)`);
      }
      throw new PkiIssueError(`writing ${file} failed (${code}): is ${dirname(file)} writable?`);
    }
  };
  // The key first: if it cannot be written, no certificate without its key is left behind.
  await write(plan.files.key, issued.keyPem, 0o600);
  await write(plan.files.cert, issued.certPem, 0o644);
  await write(plan.files.config, JSON.stringify(plan.clientConfig, null, 2) + '\n', 0o644);
  if (request.force) {
    // writeFile's mode applies only to new files; a replaced key must not keep looser permissions.
    await chmod(plan.files.key, 0o600);
  }
  return {
    identity: request.identity,
    cert: plan.files.cert,
    key: plan.files.key,
    config: plan.files.config,
    notAfter: new Date(new X509Certificate(issued.certPem).validTo).toISOString(),
  };
}

/** The node name from a PKI folder's server certificate (its CN), for when there is no client config. */
async function nodeNameFromPki(pkiDir: string): Promise<string | null> {
  try {
    const cert = new X509Certificate(await readFile(join(pkiDir, 'node.crt')));
    return /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1] ?? null;
  } catch {
    return null;
  }
}

interface PkiGlobals extends ClientConfigOverrides {
  output: OutputFormat;
}

export function registerPkiCommands(program: Command, io: { env: Record<string, string | undefined> }, print: Print): void {
  const pki = program.command('pki').description('the node PKI on this machine (needs the CA key)');
  pki
    .command('issue')
    .description('mint a client certificate for identity NAME, plus a client config NAME.json that uses it')
    .argument('<name>', 'the identity (certificate CN), e.g. nova')
    .option('--pki <dir>', 'folder with ca.crt and ca.key (default: the folder of the client config\'s CA, e.g. out/pki)')
    .option('--out <dir>', 'where to write NAME.crt, NAME.key and NAME.json (default: the PKI folder)')
    .option('--force', 'replace existing files for NAME', false)
    .option('--days <n>', `validity in days, 1-${PKI_ISSUE_MAX_DAYS} (default ${PKI_ISSUE_DEFAULT_DAYS})`)
    .action(async (name: string, options: { pki?: string; out?: string; force: boolean; days?: string }, command: Command) => {
      const days = options.days === undefined ? PKI_ISSUE_DEFAULT_DAYS : parseDays(options.days);
      const globals = command.optsWithGlobals<PkiGlobals>();
      let base: ResolvedClientConfig | null = null;
      let baseError: Error | null = null;
      try {
        base = loadClientConfig({ config: globals.config, address: globals.address, node: globals.node }, io.env);
      } catch (err) {
        baseError = err as Error;
      }
      const pkiDir = options.pki ?? (base ? dirname(base.ca) : null);
      if (!pkiDir) throw new PkiIssueError(`no --pki DIR given and no client config to find the CA from (${baseError?.message}): pass --pki DIR`);
      const node = globals.node ?? base?.node ?? (await nodeNameFromPki(pkiDir));
      if (!node) throw new PkiIssueError(`cannot tell the node name: no client config and no readable ${join(pkiDir, 'node.crt')}: pass --node NAME`);
      const issued = await issueIdentity({
        identity: name,
        pkiDir,
        outDir: options.out ?? pkiDir,
        node,
        address: globals.address ?? base?.address ?? DEFAULT_ADDRESS,
        force: options.force,
        days,
      });
      print(
        globals.output,
        issued,
        [
          `issued a client certificate for "${name}" (valid until ${issued.notAfter}):`,
          `  certificate  ${issued.cert}`,
          `  key          ${issued.key} (0600)`,
          `  config       ${issued.config}`,
          `use it:  aer --config ${issued.config} health`,
          `grant:   aer authz allow ${name} METHOD   (identities not in authz.admins are denied by default)`,
        ].join('\n'),
      );
    });
}
