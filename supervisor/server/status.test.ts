import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { silentLogger } from '../log';
import { MAX_STATUS_DETAILS_CHARS, toGrpcError } from './status';

describe('toGrpcError', () => {
  it('keeps an AuraeError message as it is when short', () => {
    expect(toGrpcError(new AuraeError('NOT_FOUND', 'cell "web" not found'), silentLogger, { method: 'm' })).toEqual({ code: status.NOT_FOUND, details: 'cell "web" not found' });
  });

  it('cuts a message that echoes a huge input, so the status still fits a header and reaches the caller', () => {
    const err = new AuraeError('INVALID_ARGUMENT', `name: ${JSON.stringify('x'.repeat(1 << 20))} is invalid`);
    const { code, details } = toGrpcError(err, silentLogger, { method: 'm' });
    expect(code).toBe(status.INVALID_ARGUMENT);
    expect(details).toHaveLength(MAX_STATUS_DETAILS_CHARS);
    expect(details.startsWith('name: "xxx')).toBe(true);
    expect(details.endsWith('…')).toBe(true);
  });

  it('anything else is INTERNAL without internals', () => {
    expect(toGrpcError(new TypeError('boom'), silentLogger, { method: 'a.B/C' })).toEqual({
      code: status.INTERNAL,
      details: 'internal error in auraed while handling a.B/C: see the auraed log on the node',
    });
  });
});
