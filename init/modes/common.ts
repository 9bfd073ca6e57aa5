// Wiring shared by both modes.
import { readFileSync } from 'node:fs';
import type { Logger } from '../log';

/**
 * Route uncaught exceptions and unhandled rejections to `onFatal` instead of Node's
 * default (print and exit — fatal for PID 1: the kernel panics when init exits).
 */
export function installFatalHandlers(log: Logger, onFatal: (reason: string) => void): void {
  const handle = (kind: string) => (err: unknown) => {
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log.error(`${kind}: ${detail}`);
    const first = err instanceof Error ? err.message : String(err);
    onFatal(`fatal error: ${first.split('\n')[0]}`);
  };
  process.on('uncaughtException', handle('uncaught exception'));
  process.on('unhandledRejection', handle('unhandled rejection'));
  // A console that goes away (EPIPE, EIO) must not become an uncaught exception.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
}

/** Read a file, or null if it cannot be read. */
export function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function writeStdout(text: string): void {
  process.stdout.write(text);
}
