// The resumable upload's rules, pure.
import { describe, expect, it } from 'vitest';
import { checkChunk, checkComplete, MAX_CHUNK_BYTES, planResume } from './upload-plan';

const kept = { manifestSha256: 'a'.repeat(64), version: '0.2.0', total: 100, kept: 40 };

describe('planResume', () => {
  it('continues the same manifest from the kept bytes; starts over for anything else', () => {
    expect(planResume(null, { manifestSha256: 'a'.repeat(64), total: 100 })).toEqual({ discard: false, offset: 0 });
    expect(planResume(kept, { manifestSha256: 'a'.repeat(64), total: 100 })).toEqual({ discard: false, offset: 40 });
    expect(planResume({ ...kept, kept: 100 }, { manifestSha256: 'a'.repeat(64), total: 100 })).toEqual({ discard: false, offset: 100 });
    expect(planResume(kept, { manifestSha256: 'b'.repeat(64), total: 100 })).toEqual({ discard: true, offset: 0 });
    expect(planResume(kept, { manifestSha256: 'a'.repeat(64), total: 99 })).toEqual({ discard: true, offset: 0 });
    expect(planResume({ ...kept, kept: 101 }, { manifestSha256: 'a'.repeat(64), total: 100 })).toEqual({ discard: true, offset: 0 });
  });
});

describe('checkChunk / checkComplete', () => {
  it('takes chunks in order within the release', () => {
    expect(() => checkChunk(0, 100, { offset: 0, length: 100 })).not.toThrow();
    expect(() => checkChunk(40, 100, { offset: 0, length: 10 })).toThrow(/^chunk\.offset: 0, but 40 bytes were received/);
    expect(() => checkChunk(90, 100, { offset: 90, length: 11 })).toThrow(/^chunk: bytes 90\.\.101 go past the release's 100 bytes/);
    expect(() => checkChunk(0, 100, { offset: 0, length: 0 })).toThrow(/^chunk\.data: empty/);
    expect(() => checkChunk(0, 2 ** 30, { offset: 0, length: MAX_CHUNK_BYTES + 1 })).toThrow(/^chunk\.data: \d+ bytes: at most/);
  });
  it('an early end keeps the bytes and says so', () => {
    expect(() => checkComplete(100, 100)).not.toThrow();
    expect(() => checkComplete(40, 100)).toThrow(expect.objectContaining({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/ended after 40 of 100 bytes: they are kept/) }));
  });
});
