// Pure parts of the log store: where an executable's log files live, how a line is stored and read back.
// One JSON object per line: {"time":ISO,"stream":"stdout"|"stderr","line":"..."}.
import { join } from 'node:path';
import type { CellPath, LogLine, LogStream } from './types';

/** `<dir>/<cell path>/<executable>.log`, then `.log.1` … `.log.<files-1>` (older), newest first. */
export function logFilePaths(dir: string, cell: CellPath, executable: string, files: number): string[] {
  const current = join(dir, ...cell.split('/'), `${executable}.log`);
  return Array.from({ length: files }, (_, i) => (i === 0 ? current : `${current}.${i}`));
}

export function encodeLogLine(line: LogLine): string {
  return `${JSON.stringify({ time: line.time, stream: line.stream, line: line.line })}\n`;
}

const STREAMS: ReadonlySet<string> = new Set<LogStream>(['stdout', 'stderr']);

/**
 * The lines of one log file. A line that does not parse (the torn tail of a write cut short by a crash or a
 * full disk) is skipped: the rest of the file is still good.
 */
export function parseLogLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const raw of text.split('\n')) {
    if (!raw) continue;
    try {
      const value = JSON.parse(raw) as Partial<LogLine>;
      if (typeof value.time === 'string' && typeof value.line === 'string' && STREAMS.has(value.stream as string)) {
        out.push({ time: value.time, stream: value.stream as LogStream, line: value.line });
      }
    } catch {
      // torn line: skip
    }
  }
  return out;
}
