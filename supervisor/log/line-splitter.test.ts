import { describe, expect, it } from 'vitest';
import { cutMarker, LineSplitter } from './line-splitter';

const MiB = 1024 * 1024;

function collect(options: ConstructorParameters<typeof LineSplitter>[1] = {}) {
  const lines: string[] = [];
  const cuts: number[] = [];
  const splitter = new LineSplitter((l) => lines.push(l), { ...options, onCut: (n) => cuts.push(n) });
  return { lines, cuts, splitter };
}

describe('LineSplitter', () => {
  it('splits on newlines across chunks, keeps empty lines, flushes the tail at the end', () => {
    const { lines, splitter } = collect({ maxLineBytes: 8 });
    splitter.push('ab');
    splitter.push(Buffer.from('c\n\nde'));
    splitter.push('f\n');
    splitter.push('tail');
    expect(lines).toEqual(['abc', '', 'def']);
    splitter.end();
    expect(lines).toEqual(['abc', '', 'def', 'tail']);
    expect(splitter.stats).toEqual({ lines: 4, cutLines: 0, cutBytes: 0 });
  });

  it('trims the CR of CRLF when asked (serial consoles)', () => {
    const { lines, splitter } = collect({ trimCr: true });
    splitter.push('one\r\ntwo\r');
    splitter.push('\n');
    expect(lines).toEqual(['one', 'two']);
    // Past the cap the CR is not counted as cut; a line of exactly the cap plus CRLF is not cut at all.
    const short = collect({ trimCr: true, maxLineBytes: 3 });
    short.splitter.push('abcdef\r\nxyz\r\n');
    expect(short.lines).toEqual([`abc${cutMarker(3)}`, 'xyz']);
  });

  it('keeps the first maxLineBytes of a long line, drops and counts the rest, marks the line', () => {
    const { lines, cuts, splitter } = collect({ maxLineBytes: 4 });
    splitter.push('0123456789');
    splitter.push('ab\nnext\n');
    expect(lines).toEqual([`0123${cutMarker(8)}`, 'next']);
    expect(cuts).toEqual([8]);
    expect(splitter.stats).toEqual({ lines: 2, cutLines: 1, cutBytes: 8 });
  });

  it('cuts at a UTF-8 character boundary (a split character is dropped whole and counted)', () => {
    const { lines, splitter } = collect({ maxLineBytes: 5 });
    splitter.push('ab€€\n'); // € is 3 bytes: "ab" + 3 bytes fit, the second € and 0 more
    splitter.push('abcd€x\n'); // "abcd" + the first byte of €: that byte goes too
    expect(lines).toEqual([`ab€${cutMarker(3)}`, `abcd${cutMarker(4)}`]);
    expect(lines.join('')).not.toContain('\uFFFD');
  });

  it('64 MiB without a newline in 64 KiB chunks: memory held stays at the cap; the line is cut and counted', () => {
    const cap = 16 * 1024;
    const { lines, cuts, splitter } = collect({ maxLineBytes: cap });
    const chunk = Buffer.alloc(64 * 1024, 'A');
    let maxPending = 0;
    for (let sent = 0; sent < 64 * MiB; sent += chunk.length) {
      splitter.push(chunk);
      maxPending = Math.max(maxPending, splitter.pendingBytes);
    }
    expect(maxPending).toBe(cap);
    expect(lines).toEqual([]);
    splitter.push('\nafter\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(`${'A'.repeat(cap)}${cutMarker(64 * MiB - cap)}`);
    expect(lines[1]).toBe('after');
    expect(cuts).toEqual([64 * MiB - cap]);
    expect(splitter.stats).toEqual({ lines: 2, cutLines: 1, cutBytes: 64 * MiB - cap });
    expect(splitter.pendingBytes).toBe(0);
  });

  it('a flood of tiny chunks holds copies of at most the cap (no view keeps a large chunk alive)', () => {
    const { splitter } = collect({ maxLineBytes: 4 });
    const big = Buffer.alloc(MiB, 'B');
    splitter.push(big.subarray(0, 1));
    splitter.push(big.subarray(1, 2));
    // The held parts are copies: mutating the source does not change the line.
    big.fill('C');
    const lines: string[] = [];
    const s2 = new LineSplitter((l) => lines.push(l), { maxLineBytes: 4 });
    const src = Buffer.from('xy');
    s2.push(src);
    src.fill('z');
    s2.push('\n');
    expect(lines).toEqual(['xy']);
    expect(splitter.pendingBytes).toBe(2);
  });

  it('refuses a cap that is not a positive integer', () => {
    expect(() => new LineSplitter(() => {}, { maxLineBytes: 0 })).toThrow(/maxLineBytes: 0/);
  });
});

describe('LineSplitter onPiece (the lossless view: CRI log records)', () => {
  function pieces(options: ConstructorParameters<typeof LineSplitter>[1] = {}) {
    const out: [string, boolean][] = [];
    const lines: string[] = [];
    const splitter = new LineSplitter((l) => lines.push(l), { ...options, onPiece: (p, partial) => out.push([p, partial]) });
    return { out, lines, splitter };
  }

  it('short lines: one full piece each, the same as the lines; a tail without newline is partial', () => {
    const { out, lines, splitter } = pieces({ maxLineBytes: 8 });
    splitter.push('ab\n\ncd');
    splitter.push('ef\ntail');
    splitter.end();
    expect(out).toEqual([
      ['ab', false],
      ['', false],
      ['cdef', false],
      ['tail', true],
    ]);
    expect(lines).toEqual(['ab', '', 'cdef', 'tail']);
  });

  it('an over-long line comes whole in pieces of the cap (partial but the last) while the line is cut as before', () => {
    const { out, lines, splitter } = pieces({ maxLineBytes: 4 });
    splitter.push('0123456789');
    splitter.push('ab\n4444\n');
    expect(out).toEqual([
      ['0123', true],
      ['4567', true],
      ['89ab', false],
      ['4444', false], // exactly the cap: one full piece
    ]);
    expect(lines).toEqual([`0123${cutMarker(8)}`, '4444']);
  });

  it('pieces end at UTF-8 character boundaries: a split character starts the next piece', () => {
    const { out, splitter } = pieces({ maxLineBytes: 5 });
    splitter.push('abcd€xy\n'); // "abcd" + the first byte of € fill the cap: € moves to the next piece
    splitter.push('ab€€\n'); // "ab" + € fill the cap exactly: the second € is the next piece
    expect(out).toEqual([
      ['abcd', true],
      ['€xy', false],
      ['ab€', true],
      ['€', false],
    ]);
    expect(out.map(([t]) => t).join('')).not.toContain('\uFFFD');
  });

  it('4 MiB without a newline: every piece at most the cap, the head of the cut line at the cap, nothing lost', () => {
    const cap = 16 * 1024;
    let total = 0;
    let count = 0;
    const splitter = new LineSplitter(() => {}, {
      maxLineBytes: cap,
      onPiece: (p, partial) => {
        expect(p.length).toBeLessThanOrEqual(cap);
        total += p.length;
        count++;
        expect(partial).toBe(true);
      },
    });
    const chunk = Buffer.alloc(64 * 1024, 'A');
    for (let sent = 0; sent < 4 * MiB; sent += chunk.length) splitter.push(chunk);
    expect(splitter.pendingBytes).toBe(cap);
    expect(total).toBe(4 * MiB - cap);
    expect(count).toBe((4 * MiB) / cap - 1);
  });
});
