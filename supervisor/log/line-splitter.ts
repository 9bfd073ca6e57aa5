// Lines from a byte stream we do not control: a child VM's console, QEMU's monitor, a workload's stdout/stderr.
// Whatever the other side writes, memory stays bounded and the work per chunk is O(chunk): a line longer than
// the cap keeps its first `maxLineBytes` bytes (cut at a UTF-8 character boundary), the rest is dropped and
// counted, and the line is emitted with a marker "…[cut N bytes]" once its newline (or the stream's end) arrives.
// A stream that never sends a newline therefore costs at most `maxLineBytes` of memory, however long it runs.
// A second, lossless view is optional (`onPiece`, for the CRI container log files): every line in pieces of at most
// `maxLineBytes`, the pieces of an over-long line flagged partial but the last; it costs another `maxLineBytes`.

/** The caps, one owner: every reader of an outside stream takes its limit from here. */
export const LINE_LIMITS = {
  /** A child VM's serial console line (launch.ts). */
  consoleLineBytes: 16 * 1024,
  /** One line of a workload's stdout/stderr (executables/launcher.ts → the log store). */
  outputLineBytes: 16 * 1024,
  /** One QMP message from QEMU (qmp.ts); the replies we ask for are a few hundred bytes. */
  qmpLineBytes: 64 * 1024,
  /** One line of auraed's stdout/stderr that init relays to the console (init/service). */
  auraedLineBytes: 16 * 1024,
} as const;

/** How much of the stream was cut, for logs and tests. */
export interface LineSplitterStats {
  lines: number;
  /** Lines longer than the cap. */
  cutLines: number;
  /** Bytes dropped from them. */
  cutBytes: number;
}

export interface LineSplitterOptions {
  /** Bytes kept of one line (without the newline); the default is LINE_LIMITS.outputLineBytes. */
  maxLineBytes?: number;
  /** Drop a "\r" before the newline (serial consoles send CRLF). */
  trimCr?: boolean;
  /** Called once per cut line, before the line itself is emitted (e.g. to log the cut). */
  onCut?: (cutBytes: number) => void;
  /**
   * Also emit every line losslessly, in pieces of at most maxLineBytes cut at UTF-8 character boundaries, before
   * the (possibly cut) line itself: `partial` is true for a piece that the next one continues, and for a last line
   * that the stream's end cut short of its newline (the CRI log format's "P"; "F" otherwise).
   */
  onPiece?: (piece: string, partial: boolean) => void;
}

const NEWLINE = 0x0a;

/** The marker appended to a cut line. */
export function cutMarker(cutBytes: number): string {
  return `…[cut ${cutBytes} bytes]`;
}

export class LineSplitter {
  readonly stats: LineSplitterStats = { lines: 0, cutLines: 0, cutBytes: 0 };
  private readonly maxBytes: number;
  private readonly trimCr: boolean;
  /** The kept head of the current line: copies, never views (a view would keep a whole chunk alive). */
  private parts: Buffer[] = [];
  private kept = 0;
  private dropped = 0;
  /** Whether the last byte dropped was a CR (trimmed, not counted, when trimCr). */
  private droppedCr = false;
  /** The current piece of the lossless view (onPiece): copies, at most maxLineBytes. */
  private pieceParts: Buffer[] = [];
  private pieceKept = 0;

  constructor(
    private readonly emit: (line: string) => void,
    private readonly options: LineSplitterOptions = {},
  ) {
    this.maxBytes = options.maxLineBytes ?? LINE_LIMITS.outputLineBytes;
    this.trimCr = options.trimCr ?? false;
    if (!Number.isInteger(this.maxBytes) || this.maxBytes < 1) throw new RangeError(`maxLineBytes: ${this.maxBytes} is not a positive integer`);
  }

  /** Feed a chunk (bytes, or text as UTF-8). */
  push(chunk: Buffer | string): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(NEWLINE, start);
      if (nl < 0) {
        this.keep(buf, start, buf.length);
        return;
      }
      this.keep(buf, start, nl);
      this.finishLine(true);
      start = nl + 1;
    }
  }

  /** The stream ended: emit a last line that had no newline. */
  end(): void {
    if (this.kept > 0 || this.dropped > 0) this.finishLine(false);
  }

  /** Bytes held for the current (unfinished) line; never above maxLineBytes. */
  get pendingBytes(): number {
    return this.kept;
  }

  private keep(buf: Buffer, from: number, to: number): void {
    if (this.options.onPiece) this.keepPiece(buf, from, to);
    const room = this.maxBytes - this.kept;
    const take = Math.min(room, to - from);
    if (take > 0) {
      this.parts.push(Buffer.from(buf.subarray(from, from + take)));
      this.kept += take;
    }
    if (to - from > take) {
      this.dropped += to - from - take;
      this.droppedCr = buf[to - 1] === 0x0d;
    }
  }

  /** The lossless view: a full piece is emitted (partial) only once a further byte of its line arrives. */
  private keepPiece(buf: Buffer, from: number, to: number): void {
    for (let at = from; at < to; ) {
      if (this.pieceKept === this.maxBytes) this.emitPiece(true);
      const take = Math.min(this.maxBytes - this.pieceKept, to - at);
      this.pieceParts.push(Buffer.from(buf.subarray(at, at + take)));
      this.pieceKept += take;
      at += take;
    }
  }

  /** Emit the current piece; a partial one keeps an incomplete last UTF-8 character for the next piece. */
  private emitPiece(partial: boolean, lineEnded = false): void {
    let bytes = this.pieceParts.length === 1 ? this.pieceParts[0]! : Buffer.concat(this.pieceParts, this.pieceKept);
    let carry: Buffer | null = null;
    if (partial && !lineEnded) {
      const end = charBoundary(bytes);
      // A cap below 4 bytes may hold nothing but an incomplete character: emit it as it is rather than loop.
      if (end > 0 && end < bytes.length) {
        carry = Buffer.from(bytes.subarray(end));
        bytes = bytes.subarray(0, end);
      }
    } else if (this.trimCr && bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) {
      bytes = bytes.subarray(0, bytes.length - 1);
    }
    this.pieceParts = carry ? [carry] : [];
    this.pieceKept = carry ? carry.length : 0;
    this.options.onPiece!(bytes.toString('utf8'), partial);
  }

  private finishLine(terminated: boolean): void {
    if (this.options.onPiece) this.emitPiece(!terminated, true);
    let bytes = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.kept);
    const dropped = this.dropped - (this.trimCr && this.droppedCr ? 1 : 0);
    this.droppedCr = false;
    this.parts = [];
    this.kept = 0;
    this.dropped = 0;
    let line: string;
    if (dropped === 0) {
      if (this.trimCr && bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, bytes.length - 1);
      line = bytes.toString('utf8');
    } else {
      const end = charBoundary(bytes);
      const cut = dropped + (bytes.length - end);
      this.stats.cutLines++;
      this.stats.cutBytes += cut;
      this.options.onCut?.(cut);
      line = bytes.subarray(0, end).toString('utf8') + cutMarker(cut);
    }
    this.stats.lines++;
    this.emit(line);
  }
}

/** Where `bytes` ends at a UTF-8 character boundary: before an incomplete last character (its lead byte and the
 *  continuation bytes 10xxxxxx that follow it), else at its length. */
function charBoundary(bytes: Buffer): number {
  const end = bytes.length;
  let back = 0;
  while (end - back - 1 >= 0 && back < 3 && (bytes[end - back - 1]! & 0xc0) === 0x80) back++;
  const lead = end - back - 1;
  if (lead >= 0 && bytes[lead]! >= 0xc0) {
    const need = bytes[lead]! >= 0xf0 ? 4 : bytes[lead]! >= 0xe0 ? 3 : 2;
    if (back + 1 < need) return lead; // the last character is incomplete
  }
  return end;
}
