// Test fixture: run the real auraed on the host (temp PKI, socket in a temp dir, TCP on a free loopback port).
// Used by the host tests of supervisor/ and aer/. Not part of auraed.
//
// auraed is started as `node --import tsx supervisor/main.ts` (one process) rather than through the npx/tsx
// wrappers, so the IPC channel, signals and the pid reach auraed itself, as they do under init.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeConfigInput } from '../config';
import type { AuraedToInitMessage } from '../ipc';
import { type PkiFiles, ensurePki, issueClientCert } from '../pki';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Everything on disk a test node needs, before any process runs. */
export interface PreparedNode {
  dir: string;
  nodeName: string;
  pki: PkiFiles;
  socket: string;
  port: number;
  configPath: string;
  /** Client config for aer/the SDK: admin certificate, address = the unix socket. */
  clientConfigPath: string;
  /** Issue another client certificate from the node CA; returns PEM file paths. */
  issueClient(identity: string): Promise<{ cert: string; key: string }>;
  /** Remove the temp dir. */
  cleanup(): void;
}

/**
 * `vms`: make the node able to spawn children (its spawn CA in the config, and this `vms` section, e.g. the built
 * image's kernel and initrd).
 */
export async function prepareTestNode(options: { nodeName?: string; config?: Record<string, unknown>; vms?: Record<string, unknown> } = {}): Promise<PreparedNode> {
  const nodeName = options.nodeName ?? 'test-node';
  const dir = mkdtempSync(join(tmpdir(), 'auraed-test-'));
  const { files: pki } = await ensurePki(join(dir, 'pki'), { nodeName });
  const port = await freePort();
  const socket = join(dir, 'run', 'aurae.sock');
  const config: NodeConfigInput = {
    version: 1,
    node: { name: nodeName },
    pki: {
      caCert: pki.caCert,
      serverCert: pki.nodeCert,
      serverKey: pki.nodeKey,
      ...(options.vms ? { spawnCaCert: pki.spawnCaCert, spawnCaKey: pki.spawnCaKey } : {}),
    },
    ...(options.vms ? { vms: options.vms } : {}),
    listen: { socket, tcp: `127.0.0.1:${port}` },
    // Never the node default (/var/lib/aurae): every test node keeps its state in its own temp dir.
    state: { dir: join(dir, 'state') },
    ...options.config,
  };
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const clientConfigPath = join(dir, 'client.json');
  // Relative paths on purpose: the SDK resolves them against the config's folder.
  writeFileSync(
    clientConfigPath,
    JSON.stringify({ version: 1, node: nodeName, address: `unix://${socket}`, ca: 'pki/ca.crt', cert: 'pki/admin.crt', key: 'pki/admin.key' }),
  );
  return {
    dir,
    nodeName,
    pki,
    socket,
    port,
    configPath,
    clientConfigPath,
    async issueClient(identity) {
      const { readFile } = await import('node:fs/promises');
      const ca = { certPem: await readFile(pki.caCert, 'utf8'), keyPem: await readFile(pki.caKey, 'utf8') };
      const issued = await issueClientCert(ca, { identity });
      const cert = join(dir, `${identity}.crt`);
      const key = join(dir, `${identity}.key`);
      writeFileSync(cert, issued.certPem);
      writeFileSync(key, issued.keyPem, { mode: 0o600 });
      return { cert, key };
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningTestAuraed {
  proc: ChildProcess;
  /** Parsed stdout JSON log lines so far. */
  logs: Array<Record<string, unknown>>;
  stderr(): string;
  /** IPC messages received from auraed (when launched with ipc). */
  messages: AuraedToInitMessage[];
  exited: Promise<Exit>;
  /** Resolves with the first IPC message matching `predicate`; rejects after timeoutMs. */
  waitForMessage(predicate: (m: AuraedToInitMessage) => boolean, timeoutMs?: number): Promise<AuraedToInitMessage>;
  /** Resolves once auraed logged "ready"; rejects if it exits first or after timeoutMs. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** SIGTERM and wait for the exit (SIGKILL after timeoutMs). Idempotent. */
  stop(timeoutMs?: number): Promise<Exit>;
}

/** Spawn auraed with `configPath`; with `ipc` the test plays aurae init (stdio fd 3 'ipc', as init does). */
export function launchAuraed(configPath: string, options: { ipc?: boolean } = {}): RunningTestAuraed {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'supervisor', 'main.ts'), '--config', configPath], {
    cwd: REPO_ROOT,
    stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const messages: AuraedToInitMessage[] = [];
  let stderr = '';
  let partial = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: 'non-JSON stdout line', line });
      }
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => void (stderr += chunk));
  proc.on('message', (m) => void messages.push(m as AuraedToInitMessage));
  const exited = new Promise<Exit>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  let exit: Exit | null = null;
  void exited.then((e) => (exit = e));

  const until = <T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const started = Date.now();
      const poll = setInterval(() => {
        const found = check();
        if (found !== undefined) {
          clearInterval(poll);
          resolve(found);
        } else if (exit) {
          clearInterval(poll);
          reject(new Error(`auraed exited (${JSON.stringify(exit)}) before ${what}; stderr:\n${stderr}`));
        } else if (Date.now() - started > timeoutMs) {
          clearInterval(poll);
          reject(new Error(`no ${what} within ${timeoutMs} ms; stderr:\n${stderr}\nlogs:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`));
        }
      }, 20);
    });

  return {
    proc,
    logs,
    stderr: () => stderr,
    messages,
    exited,
    waitForMessage: (predicate, timeoutMs = 10_000) => until('the expected IPC message', () => messages.find(predicate), timeoutMs),
    waitReady: async (timeoutMs = 20_000) => {
      await until('"ready" log line', () => logs.find((l) => l.msg === 'ready'), timeoutMs);
    },
    stop: async (timeoutMs = 10_000) => {
      if (exit) return exit;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run the aer CLI as a separate process (from source through tsx, or through the bin launcher) with `env` on top
 * of this process's environment; AURAE_ADDRESS is cleared unless `env` sets it.
 */
export function runAer(args: string[], env: Record<string, string>, options: { launcher?: boolean } = {}): Promise<CliResult> {
  const argv = options.launcher ? [join(REPO_ROOT, 'aer/bin/aer.mjs'), ...args] : ['--import', 'tsx', join(REPO_ROOT, 'aer/cli.ts'), ...args];
  return new Promise((resolve) => {
    execFile(process.execPath, argv, { cwd: REPO_ROOT, env: { ...process.env, AURAE_ADDRESS: '', ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
