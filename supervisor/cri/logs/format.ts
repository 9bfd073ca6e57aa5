// The CRI container log format, as kubelet reads it (k8s.io/kubelet pkg/kubelet/kuberuntime/logs, parseCRILog) and
// containerd writes it: one record per line, `<RFC3339Nano time> <stdout|stderr> <P|F> <text>\n`. "P" (partial)
// means the next record of the same stream continues the line; "F" (full) ends it. The time is formatted as Go's
// time.RFC3339Nano formats a UTC time: nanoseconds with trailing zeros trimmed (no fraction on a whole second), "Z".
import type { LogStream } from '../../observe/types';

/** The record's tag: a line that the next record continues, or the end of a line. */
export type CriLogTag = 'P' | 'F';

export interface CriLogRecord {
  /** Nanoseconds since the epoch. */
  timeNs: bigint;
  stream: LogStream;
  partial: boolean;
  text: string;
}

const NS_PER_S = 1_000_000_000n;
const NS_PER_MS = 1_000_000n;

/**
 * `time` (a Date, or nanoseconds since the epoch) as Go's time.RFC3339Nano formats it in UTC, e.g.
 * "2026-12-03T06:39:14.1234Z", "2026-12-03T06:39:14Z". Precondition: a year in 0000–9999 (RangeError otherwise).
 */
export function formatRfc3339Nano(time: Date | bigint): string {
  const ns = typeof time === 'bigint' ? time : BigInt(time.getTime()) * NS_PER_MS;
  let seconds = ns / NS_PER_S;
  let fraction = ns % NS_PER_S;
  // BigInt division truncates towards zero: before 1970 the fraction must still count forwards.
  if (fraction < 0n) {
    fraction += NS_PER_S;
    seconds -= 1n;
  }
  const ms = Number(seconds) * 1000;
  const year = new Date(ms).getUTCFullYear();
  if (!Number.isFinite(ms) || year < 0 || year > 9999) throw new RangeError(`CRI log time: ${ns}ns is outside the years 0000-9999`);
  const whole = new Date(ms).toISOString().slice(0, 19);
  const digits = fraction === 0n ? '' : `.${fraction.toString().padStart(9, '0').replace(/0+$/, '')}`;
  return `${whole}${digits}Z`;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))$/;

/** Parse an RFC 3339 time with up to nanoseconds and "Z" or an offset (what Go's RFC3339Nano parser takes). */
export function parseRfc3339Nano(text: string): bigint {
  const m = RFC3339.exec(text);
  if (!m) throw new Error(`CRI log time "${text}": not an RFC 3339 time (2006-01-02T15:04:05.999999999Z07:00)`);
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const back = new Date(ms);
  // Date.UTC rolls 02-30 over to 03-02: a field out of range shows as a different date.
  if (
    back.getUTCFullYear() !== year ||
    back.getUTCMonth() !== month - 1 ||
    back.getUTCDate() !== day ||
    back.getUTCHours() !== hour ||
    back.getUTCMinutes() !== minute ||
    back.getUTCSeconds() !== second
  ) {
    throw new Error(`CRI log time "${text}": a field is out of range`);
  }
  let ns = BigInt(ms) * NS_PER_MS + BigInt((m[7] ?? '').padEnd(9, '0') || '0');
  if (!m[8]) {
    const offsetMin = Number(m[10]) * 60 + Number(m[11]);
    if (Number(m[10]) > 23 || Number(m[11]) > 59) throw new Error(`CRI log time "${text}": the offset is out of range`);
    ns -= BigInt((m[9] === '-' ? -1 : 1) * offsetMin) * 60n * NS_PER_S;
  }
  return ns;
}

/**
 * One CRI log record with its newline. `text` is one piece of a line without its newline (a "\n" inside would
 * start a record kubelet cannot parse, so callers pass the LineSplitter's pieces).
 */
export function criLogLine(time: Date | bigint, stream: LogStream, partial: boolean, text: string): string {
  return `${formatRfc3339Nano(time)} ${stream} ${partial ? 'P' : 'F'} ${text}\n`;
}

/**
 * Parse one record (with or without its trailing newline), as kubelet does: time, stream, then tags separated by
 * ":" of which the first is P or F, then the text to the end. Throws an Error naming what is wrong.
 */
export function parseCriLogLine(line: string): CriLogRecord {
  const record = line.endsWith('\n') ? line.slice(0, -1) : line;
  const timeEnd = record.indexOf(' ');
  if (timeEnd < 0) throw new Error(`CRI log record "${preview(record)}": no space after the time`);
  const timeNs = parseRfc3339Nano(record.slice(0, timeEnd));
  const streamEnd = record.indexOf(' ', timeEnd + 1);
  if (streamEnd < 0) throw new Error(`CRI log record "${preview(record)}": no space after the stream`);
  const stream = record.slice(timeEnd + 1, streamEnd);
  if (stream !== 'stdout' && stream !== 'stderr') throw new Error(`CRI log record "${preview(record)}": stream "${stream}" is not stdout or stderr`);
  const tagsEnd = record.indexOf(' ', streamEnd + 1);
  if (tagsEnd < 0) throw new Error(`CRI log record "${preview(record)}": no space after the tag`);
  const tag = record.slice(streamEnd + 1, tagsEnd).split(':')[0];
  if (tag !== 'P' && tag !== 'F') throw new Error(`CRI log record "${preview(record)}": tag "${tag}" is not P or F`);
  return { timeNs, stream, partial: tag === 'P', text: record.slice(tagsEnd + 1) };
}

/** A log file's records, in order (a last record without its newline, being written, is included). */
export function parseCriLog(text: string): CriLogRecord[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map(parseCriLogLine);
}

/**
 * Whole lines from records, as kubelet shows them: the pieces of a partial line are joined (per stream) up to its
 * "F" record; the time is the first piece's. A partial line the file ends with is returned as it is.
 */
export function joinCriLogRecords(records: readonly CriLogRecord[]): { timeNs: bigint; stream: LogStream; text: string; complete: boolean }[] {
  const out: { timeNs: bigint; stream: LogStream; text: string; complete: boolean }[] = [];
  const open = new Map<LogStream, { timeNs: bigint; stream: LogStream; text: string; complete: boolean }>();
  for (const r of records) {
    let line = open.get(r.stream);
    if (!line) {
      line = { timeNs: r.timeNs, stream: r.stream, text: '', complete: false };
      open.set(r.stream, line);
      out.push(line);
    }
    line.text += r.text;
    if (!r.partial) {
      line.complete = true;
      open.delete(r.stream);
    }
  }
  return out;
}

function preview(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/**
 * A wall clock in nanoseconds for log records: Date.now() has milliseconds only, so the monotonic clock adds the
 * rest from an anchor; when the two drift apart by more than `maxDriftNs` (the wall clock was set or stepped) it
 * re-anchors. Between re-anchors the times it returns never go backwards.
 */
export function createWallClockNs(
  options: { wallMs?: () => number; monoNs?: () => bigint; maxDriftNs?: bigint } = {},
): () => bigint {
  const wallMs = options.wallMs ?? Date.now;
  const monoNs = options.monoNs ?? process.hrtime.bigint;
  const maxDrift = options.maxDriftNs ?? NS_PER_S;
  let anchorWall = BigInt(wallMs()) * NS_PER_MS;
  let anchorMono = monoNs();
  return () => {
    const mono = monoNs();
    const now = anchorWall + (mono - anchorMono);
    const wall = BigInt(wallMs()) * NS_PER_MS;
    const drift = now - wall;
    if (drift > maxDrift || drift < -maxDrift) {
      anchorWall = wall;
      anchorMono = mono;
      return wall;
    }
    return now;
  };
}
