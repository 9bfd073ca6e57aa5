// A real auraed on this host, from the checkout: a temp dir with its own PKI, config, socket and a free loopback
// port (prepareHostNode), and auraed spawned as `node --import tsx supervisor/main.ts` (launchAuraed). Used by the
// host tests of supervisor/ and aer/ (through ./testing) and by the benchmarks (image/bench). Not part of auraed.
//
// auraed is started as one process rather than through the npx/tsx wrappers, so the IPC channel, signals and
// the pid reach auraed itself, as they do under init.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeConfigInput } from '../config';
import { inCheckout } from '../config/node-paths';
import type { AuraedToInitMessage } from '../ipc';
import { type PkiFiles, ensurePki, issueClientCert } from '../pki';
import { freeLoopbackPort } from '../vms';

/** Everything on disk a host node needs, before any process runs. */
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
export async function prepareHostNode(options: { nodeName?: string; config?: Record<string, unknown>; vms?: Record<string, unknown> } = {}): Promise<PreparedNode> {
  const nodeName = options.nodeName ?? 'test-node';
  const dir = mkdtempSync(join(tmpdir(), 'auraed-test-'));
  const { files: pki } = await ensurePki(join(dir, 'pki'), { nodeName });
  const port = await freeLoopbackPort();
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
    // Never the node default (/var/lib/aurae): every host node keeps its state in its own temp dir.
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

export interface AuraedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningAuraed {
  proc: ChildProcess;
  /** Parsed stdout JSON log lines so far. */
  logs: Array<Record<string, unknown>>;
  stderr(): string;
  /** IPC messages received from auraed (when launched with ipc). */
  messages: AuraedToInitMessage[];
  exited: Promise<AuraedExit>;
  /** Resolves with the first IPC message matching `predicate`; rejects after timeoutMs. */
  waitForMessage(predicate: (m: AuraedToInitMessage) => boolean, timeoutMs?: number): Promise<AuraedToInitMessage>;
  /** Resolves once auraed logged "ready"; rejects if it exits first or after timeoutMs. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** SIGTERM and wait for the exit (SIGKILL after timeoutMs). Idempotent. */
  stop(timeoutMs?: number): Promise<AuraedExit>;
}

/** Spawn auraed from the checkout with `configPath`; with `ipc` the caller plays aurae init (stdio fd 3 'ipc', as init does). */
/** How long an exit waits for auraed's stdout to end. */
const STDOUT_DRAIN_MS = 2000;

export function launchAuraed(configPath: string, options: { ipc?: boolean } = {}): RunningAuraed {
  const proc = spawn(process.execPath, ['--import', 'tsx', inCheckout('supervisor/main.ts'), '--config', configPath], {
    cwd: inCheckout('.'),
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
  // After the exit, what auraed wrote last is read too (stdout can end after 'exit'); a descendant still holding the
  // pipe does not hold the exit back for more than a moment.
  const exited = new Promise<AuraedExit>((resolve) =>
    proc.once('exit', (code, signal) => {
      const done = () => resolve({ code, signal });
      if (proc.stdout!.readableEnded) return done();
      const timer = setTimeout(done, STDOUT_DRAIN_MS);
      proc.stdout!.once('end', () => (clearTimeout(timer), done()));
    }),
  );
  let exit: AuraedExit | null = null;
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
