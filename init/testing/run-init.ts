// Helpers for init's priv tests: start init (from source, through tsx) and wait for
// console lines with a timeout that attaches the output seen so far.
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../../supervisor/config/node-paths';

export const INIT_MAIN = path.join(REPO_ROOT, 'init', 'main.ts');
export const FAKE_AURAED = path.join(REPO_ROOT, 'init', 'testing', 'fake-auraed.cjs');
export const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** argv that runs init/main.ts under the current node with tsx. */
export function initArgv(args: string[] = []): string[] {
  return [process.execPath, '--import', TSX_LOADER, INIT_MAIN, ...args];
}

export interface RunningInit {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the first line (at or after index `from`) matching `re`. */
  waitFor(re: RegExp, timeoutMs?: number, from?: number): Promise<{ line: string; index: number; match: RegExpMatchArray }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

export function startInit(command: string[], env: NodeJS.ProcessEnv): RunningInit {
  const [program, ...args] = command as [string, ...string[]];
  const child = spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const listeners = new Set<() => void>();
  const feed = (stream: NodeJS.ReadableStream | null) => {
    let buffer = '';
    stream?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      lines.push(...parts);
      listeners.forEach((l) => l());
    });
  };
  feed(child.stdout);
  feed(child.stderr);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      resolve({ code, signal });
      listeners.forEach((l) => l());
    }),
  );
  const output = () => lines.join('\n');
  return {
    child,
    lines,
    exited,
    output,
    waitFor(re, timeoutMs = 15_000, from = 0) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (let i = from; i < lines.length; i++) {
            const match = lines[i]!.match(re);
            if (match) {
              cleanup();
              resolve({ line: lines[i]!, index: i, match });
              return true;
            }
          }
          return false;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re}; init output so far:\n${output()}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(listener);
        };
        const listener = () => void check();
        listeners.add(listener);
        check();
      });
    },
  };
}

/** A valid node config for tests. */
export function testNodeConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    node: { name: 'test-node' },
    pki: { caCert: '/etc/aurae/pki/ca.crt', serverCert: '/etc/aurae/pki/node.crt', serverKey: '/etc/aurae/pki/node.key' },
    ...overrides,
  };
}
